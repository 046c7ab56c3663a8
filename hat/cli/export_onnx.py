"""`hat export-onnx`: a compact SubTransformer as ONNX (encoder + decoder step with KV cache),
checked against PyTorch; beam search then runs on onnxruntime (`hat.onnx_export.OnnxTransformer`).

  hat export-onnx --path checkpoints/model.pt --out onnx/ [--data DIR --gen-subset test]

The graphs come from PyTorch's TorchScript exporter (legacy, deprecated, but as exact, no
slower on onnxruntime and ~20x faster to export) or, with `--exporter dynamo`, from its
torch.export-based one (needs onnxscript); docs/deployment.md compares them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch

from hat.checkpoint import load_checkpoint
from hat.cli import run_command
from hat.cli.parser import HatArgumentParser
from hat.data.dataset import DataDir
from hat.errors import HatError
from hat.evaluate import translate_dataset
from hat.onnx_export import OnnxTransformer, export_onnx
from hat.quantize import cpu_only
from hat.train.checkpoints import load_model


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat export-onnx", __doc__)
    p.add_argument(
        "--path", required=True, help="compact model / trained SubTransformer checkpoint"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--data", help="data directory: translate --gen-subset with both and compare")
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch.onnx exporter: the legacy TorchScript one, or dynamo (torch.export)",
    )
    p.add_argument("--json", action="store_true")
    return p


def max_logprob_difference(model, onnx: OnnxTransformer, steps: int = 8) -> float:
    """Largest |log-prob| difference over a few incremental steps of a random batch."""
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, model.settings.vocab_size, (3, 11), generator=gen)
    src[1, 7:] = 1
    worst = 0.0
    with torch.no_grad():
        a_state = model.start_decoding(model.encode(src), beam=2, max_steps=steps)
        b_state = onnx.start_decoding(onnx.encode(src), beam=2)
        tokens = torch.full((6,), 2)
        for _ in range(steps):
            a, b = model.decode_step(tokens, a_state), onnx.decode_step(tokens, b_state)
            worst = max(worst, float((a - b).abs().max()))
            tokens = a.argmax(-1)
    return worst


def run(args: argparse.Namespace) -> None:
    if cpu_only(load_checkpoint(args.path)):  # before its int8 layers are built
        raise HatError(f"{args.path} is int8-quantized: export the fp32 model")
    model, _ = load_model(args.path)
    start = time.perf_counter()
    out = export_onnx(model, args.out, dynamo=args.exporter == "dynamo")
    seconds = time.perf_counter() - start
    onnx = OnnxTransformer(out)
    result = {
        "exporter": args.exporter,
        "export_seconds": seconds,
        "max_abs_logprob_diff": max_logprob_difference(model, onnx),
    }
    print(
        f"{args.path} -> {out}/encoder.onnx, decoder_step.onnx; "
        "max |log-prob difference| vs PyTorch: "
        f"{result['max_abs_logprob_diff']:.2e}"
    )
    if args.data:
        data = DataDir(args.data)
        split = data.split(args.gen_subset)
        a = translate_dataset(model, split, data.tokenizer, beam=args.beam)
        b = translate_dataset(onnx, split, data.tokenizer, beam=args.beam)
        same = sum(x == y for x, y in zip(a.hypotheses, b.hypotheses, strict=True))
        result.update(
            identical=same,
            sentences=len(a.hypotheses),
            bleu_torch=a.sacrebleu,
            bleu_onnx=b.sacrebleu,
        )
        print(
            f"{args.gen_subset}: {same}/{len(a.hypotheses)} translations identical; "
            "SacreBLEU torch "
            f"{a.sacrebleu:.2f}, onnxruntime {b.sacrebleu:.2f}"
        )
    if args.json:
        print(json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
