"""`hat toy`: write the embedded toy translation task (English -> German-like) as raw text."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from hat.cli import run_command
from hat.cli.parser import HatArgumentParser
from hat.data.toy import SOURCE_LANG, TARGET_LANG, write_toy_task
from hat.errors import HatError


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat toy", __doc__)
    p.add_argument("--out", required=True, help="directory for {train,valid,test}.{en,de}")
    p.add_argument("--train-size", type=int, default=50_000, help="training pairs")
    p.add_argument("--valid-size", type=int, default=1_000, help="validation pairs")
    p.add_argument("--test-size", type=int, default=1_000, help="test pairs")
    p.add_argument("--seed", type=int, default=1, help="generator seed (same seed, same corpus)")
    return p


def run(args: argparse.Namespace) -> None:
    for name in ("train_size", "valid_size", "test_size"):
        if getattr(args, name) <= 0:
            raise HatError(f"--{name.replace('_', '-')} must be positive")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise HatError(
            f"--out {args.out} is a file, not a directory: give a directory for the splits"
        )
    start = time.time()
    sizes = write_toy_task(args.out, args.train_size, args.valid_size, args.test_size, args.seed)
    print(
        f"wrote toy task {SOURCE_LANG}->{TARGET_LANG} to {args.out}: "
        + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
        + f" pairs [{time.time() - start:.1f} s]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
