"""`hat profile`: #params, FLOPs (and latency) of a SubTransformer given as HAT's YAML.

  hat profile \\
      --configs configs/iwslt14.de-en/subtransformer/HAT_iwslt14deen_titanxp@45.6ms_bleu@33.4.yml \\
      --sentence-length 23 [--latency cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from hat.cli import run_command
from hat.cli.args import (
    add_arch_args,
    add_model_args,
    add_space_args,
    arch_from_args,
    settings_from_args,
)
from hat.cli.parser import HatArgumentParser
from hat.errors import HatError
from hat.latency.measure import measure_latency
from hat.profile import profile
from hat.quantize import cpu_only
from hat.train.checkpoints import load_model
from hat.transformer import Transformer


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat profile", __doc__, config_options=("--configs", "--sub-configs"))
    p.add_argument(
        "--path",
        help="profile this model file (compact, trained or quantized) instead of --configs",
    )
    add_arch_args(p)
    add_space_args(p, choices=False)
    add_model_args(p)
    p.add_argument(
        "--vocab-size", type=int, default=10_000, help="vocabulary size (total #params only)"
    )
    p.add_argument(
        "--sentence-length",
        type=int,
        default=30,
        help="dummy sentence length (HAT: 23 IWSLT, 30 WMT)",
    )
    p.add_argument("--latency", choices=("cpu", "cuda"), help="also measure latency on this device")
    p.add_argument("--beam", type=int, default=5, help="beam size for the latency decoder")
    p.add_argument("--latiter", type=int, default=20, help="timed runs (after 5 dry runs)")
    p.add_argument("--threads", type=int, help="CPU threads for latency (default: torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p


def run(args: argparse.Namespace) -> None:
    if args.sentence_length < 1:
        raise HatError("--sentence-length must be at least 1")
    if args.latency == "cuda" and not torch.cuda.is_available():
        raise HatError("--latency cuda: no CUDA device is available here (use --latency cpu)")
    if (
        args.path
    ):  # counts come from the fp32 architecture; latency is the model as stored (e.g. int8)
        model, payload = load_model(args.path)
        if args.latency == "cuda" and cpu_only(payload):
            raise HatError(
                f"{args.path} is an int8 model: its kernels run on the CPU only (use --latency cpu)"
            )
        arch = model.arch
        prof = profile(Transformer(arch, model.settings), args.sentence_length)
    else:
        arch = arch_from_args(args)
        model = Transformer(arch, settings_from_args(args, args.vocab_size))
        prof = profile(model, args.sentence_length)
    result = {
        "params": prof.params,
        "params_total": prof.params_total,
        "flops": prof.flops,
        "flops_total": prof.flops_total,
        "sentence_length": args.sentence_length,
        "vocab_size": model.settings.vocab_size,
        "arch": arch.to_dict(),
    }
    if args.path:
        result["file_bytes"] = Path(args.path).stat().st_size
    print(f"SubTransformer   {arch}")
    print(
        f"#params          {prof.params / 1e6:.2f}M  "
        f"({prof.params:,}; no embeddings/output layer, HAT)"
    )
    print(f"#params total    {prof.params_total / 1e6:.2f}M  (vocab {model.settings.vocab_size:,})")
    print(
        f"FLOPs            {prof.flops / 1e9:.2f}G  "
        f"(L={args.sentence_length}, no output layer, HAT)"
    )
    print(f"FLOPs total      {prof.flops_total / 1e9:.2f}G  (with the output layer)")
    if args.path:
        print(f"file size        {result['file_bytes'] / 1e6:.2f} MB  ({args.path})")
    if args.latency:
        lat = measure_latency(
            model, args.sentence_length, args.beam, args.latency, args.latiter, threads=args.threads
        )
        result["latency"] = lat.to_dict()
        print(f"latency          {lat.summary()}")
    if args.json:
        print(json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
