"""`hat train` / train.py: train a SuperTransformer, or one SubTransformer from scratch.

  python train.py --configs=configs/multi30k/supertransformer/space0.yml
  python train.py --configs=SUB.yml --sub-configs=configs/multi30k/subtransformer/common.yml
  torchrun --nproc_per_node=8 train.py --configs=...        (multi-GPU / multi-node)

A run resumes from SAVE_DIR/checkpoint_last.pt when it exists (--restore-file).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import torch

from hat.cli import run_command
from hat.cli.args import (
    add_arch_args,
    add_model_args,
    add_space_args,
    arch_from_args,
    settings_from_args,
    space_from_args,
)
from hat.cli.parser import HatArgumentParser
from hat.data.dataset import DataDir
from hat.settings import add_settings, from_flags
from hat.space import SUPERNET_KEYS
from hat.supernet import SuperTransformer
from hat.train.distributed import init_distributed
from hat.train.sampling import ConfigSampler, SamplingConfig
from hat.train.trainer import TrainConfig, Trainer
from hat.transformer import Transformer

log = logging.getLogger(__name__)


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat train", __doc__, config_options=("--configs", "--sub-configs"))
    g = p.add_argument_group("training (fairseq/HAT names)")
    g.add_argument("--data", required=True, help="data directory written by `hat preprocess`")
    g.add_argument(
        "--train-subtransformer",
        action="store_true",
        help="train the SubTransformer of --configs alone (compact model, from scratch)",
    )
    g.add_argument(
        "--optimizer", default="adam", choices=("adam",), help="Adam with decoupled weight decay"
    )
    g.add_argument(
        "--criterion",
        default="label_smoothed_cross_entropy",
        choices=("label_smoothed_cross_entropy",),
    )
    g.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    add_settings(g, TrainConfig)
    add_settings(p.add_argument_group("SuperTransformer sampling"), SamplingConfig)
    add_model_args(p)
    add_space_args(p)
    add_arch_args(p)
    return p


def train_config(args: argparse.Namespace) -> TrainConfig:
    cfg = from_flags(TrainConfig, vars(args))
    cfg.check()
    return cfg


def _plain_args(args: argparse.Namespace) -> dict:
    ok = (str, int, float, bool, type(None))
    return {
        k: v
        for k, v in vars(args).items()
        if not k.startswith("unused_hat_key_")
        and (isinstance(v, ok) or (isinstance(v, list) and all(isinstance(x, ok) for x in v)))
    }


def build_trainer(args: argparse.Namespace) -> Trainer:
    """The model, sampler and trainer the arguments describe, resumed when a checkpoint exists."""
    cfg = train_config(args)
    use_cuda = torch.cuda.is_available() and not args.cpu
    if cfg.precision == "fp16" and not use_cuda:
        log.warning("--fp16 needs CUDA: training in fp32 on the CPU")
        cfg.precision = "fp32"
    data = DataDir(args.data)
    torch.manual_seed(args.seed)  # same initial weights on every rank
    settings = settings_from_args(args, data.vocab_size)
    if args.train_subtransformer:
        arch = arch_from_args(args)
        if all(getattr(args, k.replace("-", "_")) is not None for k in SUPERNET_KEYS.values()):
            space_from_args(args).validate(arch)  # the SubTransformer must fit its SuperTransformer
        model = Transformer(arch, settings)
        sampler = None
    else:
        space = space_from_args(args)
        model = SuperTransformer(space, settings)
        sampling = from_flags(SamplingConfig, vars(args))
        sampler = ConfigSampler(space, sampling.sampling, args.seed, sampling.sandwich_random)
    world = init_distributed(use_cuda)
    trainer = Trainer(model, cfg, data, sampler, world, {"args": _plain_args(args)})
    trainer.resume()
    return trainer


def run(args: argparse.Namespace) -> None:
    trainer = build_trainer(args)
    valid = trainer.train()
    cfg = trainer.cfg
    if trainer.world.is_main:
        losses = ", ".join(
            f"{k} {v:.3f}" for k, v in valid.items() if k.endswith(("_loss", "_bleu"))
        )
        print(
            f"done: {trainer.state.updates} updates, epoch {trainer.state.epoch}, "
            f"{trainer.state.wall_seconds / 60:.1f} min; valid: {losses or 'n/a'}; "
            f"checkpoints in {cfg.save_dir}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
