"""`hat average` / average_checkpoints.py: average the weights of the last N checkpoints
(HAT tests IWSLT with the average of the last 10 epochs).

  python average_checkpoints.py --inputs checkpoints/ --num-epoch-checkpoints 10 --output avg.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hat.checkpoint import save_checkpoint
from hat.cli import run_command
from hat.cli.parser import HatArgumentParser
from hat.errors import HatError
from hat.train.checkpoints import average_checkpoints, epoch_checkpoints, update_checkpoints


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat average", __doc__)
    p.add_argument(
        "--inputs", nargs="+", required=True, help="checkpoint files, or one checkpoint directory"
    )
    p.add_argument(
        "--num-epoch-checkpoints",
        type=int,
        help="average the last N checkpoint<epoch>.pt of the directory",
    )
    p.add_argument(
        "--num-update-checkpoints", type=int, help="average the last N checkpoint_<e>_<u>.pt"
    )
    p.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    return p


def select_inputs(args: argparse.Namespace) -> list[Path]:
    paths = [Path(p) for p in args.inputs]
    if args.num_epoch_checkpoints or args.num_update_checkpoints:
        if len(paths) != 1 or not paths[0].is_dir():
            raise HatError(
                "--num-epoch-checkpoints / --num-update-checkpoints need one directory as --inputs"
            )
        found = (epoch_checkpoints if args.num_epoch_checkpoints else update_checkpoints)(paths[0])
        n = args.num_epoch_checkpoints or args.num_update_checkpoints
        if len(found) < n:
            raise HatError(
                f"{paths[0]} has {len(found)} such checkpoints, fewer than the {n} asked for"
            )
        return found[:n]
    return paths


def run(args: argparse.Namespace) -> None:
    paths = select_inputs(args)
    save_checkpoint(average_checkpoints(paths), args.output)
    print(
        f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {args.output}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
