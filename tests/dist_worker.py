"""Run under torchrun by test_distributed.py: train with hat's trainer, then save this
rank's parameters to SAVE_DIR/rank<r>.pt so the test can compare the replicas."""

import sys
from pathlib import Path

import torch

from hat.cli.train import build_parser, build_trainer

if __name__ == "__main__":
    args = build_parser().parse_args(sys.argv[1:])
    trainer = build_trainer(args)
    trainer.train()
    torch.save(trainer.model.state_dict(), Path(args.save_dir) / f"rank{trainer.world.rank}.pt")
