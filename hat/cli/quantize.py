"""`hat quantize`: int8 dynamic or k-means (2-8 bit) quantization of a compact SubTransformer.

  hat quantize --path checkpoints/model.pt --method int8 --out quantized/ [--data DIR]
  hat quantize --path checkpoints/model.pt --method kmeans --bits 4 --out quantized/ [--data DIR]

Writes OUT/model.pt (loadable wherever a compact model is: generate, profile, latency) and
reports the weights' size; with --data, also SacreBLEU and CPU latency before and after.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from hat.cli import run_command
from hat.cli.parser import HatArgumentParser
from hat.data.dataset import DataDir
from hat.evaluate import translate_dataset
from hat.latency.measure import measure_latency
from hat.quantize import METHODS, save_quantized, storage_bytes
from hat.train.checkpoints import load_model


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat quantize", __doc__)
    p.add_argument(
        "--path", required=True, help="compact model / trained SubTransformer checkpoint"
    )
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--bits", type=int, default=4, help="k-means: bits per weight (2-8)")
    p.add_argument("--out", required=True, help="output directory (model.pt)")
    p.add_argument("--data", help="data directory: also report BLEU and latency before/after")
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--sentence-length", type=int, default=30, help="latency: dummy sentence length")
    p.add_argument("--latiter", type=int, default=10)
    p.add_argument("--json", action="store_true")
    return p


def run(args: argparse.Namespace) -> None:
    model, payload = load_model(args.path)
    spm = payload.get("spm_model")
    out = Path(args.out) / "model.pt"
    fp32 = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    saved = save_quantized(model, out, args.method, args.bits, spm)
    result = {
        "method": args.method,
        "bits": saved["bits"],
        "fp32_bytes": fp32,
        "quantized_bytes": storage_bytes(saved["tensors"]),
        "file_bytes": out.stat().st_size,
    }
    result["compression"] = result["fp32_bytes"] / result["quantized_bytes"]
    bits = "" if args.method == "int8" else f" {args.bits}-bit"
    print(
        f"{args.path} -> {out}: weights {fp32 / 1e6:.2f} MB -> "
        f"{result['quantized_bytes'] / 1e6:.2f} MB "
        f"({result['compression']:.1f}x smaller, {args.method}{bits})"
    )
    if args.data:
        data = DataDir(args.data)
        quantized, _ = load_model(out)
        for name, m in (("before", model), ("after", quantized)):
            tr = translate_dataset(m, data.split(args.gen_subset), data.tokenizer, beam=args.beam)
            lat = measure_latency(m, args.sentence_length, args.beam, iters=args.latiter, warmup=3)
            result[f"bleu_{name}"], result[f"latency_ms_{name}"] = tr.sacrebleu, lat.total_ms
        print(
            f"SacreBLEU {result['bleu_before']:.2f} -> {result['bleu_after']:.2f}; CPU latency "
            f"{result['latency_ms_before']:.1f} -> {result['latency_ms_after']:.1f} ms "
            f"(beam {args.beam}, {args.sentence_length} tokens)"
        )
    if args.json:
        print(json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
