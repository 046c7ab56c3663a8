"""`hat convert`: import a HAT (fairseq) checkpoint, without fairseq and without running
pickled code, as a hat SuperTransformer checkpoint, or export one SubTransformer of it.

  hat convert --path downloaded_models/HAT_wmt14ende_super_space0.pt --out supernet.pt
  hat convert --path HAT_wmt14ende_xeon@137.9ms_bleu@25.8.pt --configs SUB.yml --out compact.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hat.checkpoint import save_checkpoint
from hat.cli import run_command
from hat.cli.args import add_arch_args, arch_from_args, arch_given
from hat.cli.parser import HatArgumentParser
from hat.hub import import_hat_checkpoint
from hat.train.checkpoints import TRAIN_FORMAT


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat convert", __doc__, config_options=("--configs", "--sub-configs"))
    p.add_argument("--path", required=True, help="HAT's checkpoint (.pt)")
    p.add_argument("--out", required=True, help="hat checkpoint to write")
    add_arch_args(p)
    return p


def run(args: argparse.Namespace) -> None:
    net = import_hat_checkpoint(args.path)
    if arch_given(args):
        compact = net.export(arch_from_args(args))
        compact.save(args.out)
        print(
            f"{args.path}: SubTransformer {compact.arch} "
            f"({compact.num_params() / 1e6:.2f}M params) -> {args.out}"
        )
        return
    save_checkpoint(
        {
            "format": TRAIN_FORMAT,
            "version": 1,
            "kind": "supernet",
            "space": net.space.to_hat_dict(),
            "settings": net.settings.to_dict(),
            "model": net.state_dict(),
            "train_state": None,
            "imported_from": str(args.path),
        },
        args.out,
    )
    print(
        f"{args.path}: SuperTransformer "
        f"({net.space.encoder_embed_dim}/{net.space.decoder_embed_dim} embed, "
        f"vocab {net.settings.vocab_size}) -> {args.out}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
