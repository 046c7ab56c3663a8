"""`hat train` / train.py: train a SuperTransformer, or one SubTransformer from scratch.

  python train.py --configs=configs/multi30k/supertransformer/space0.yml
  python train.py --configs=SUB.yml --sub-configs=configs/multi30k/subtransformer/common.yml
  torchrun --nproc_per_node=8 train.py --configs=...        (multi-GPU / multi-node)

A run resumes from SAVE_DIR/checkpoint_last.pt when it exists (--restore-file).
"""

from __future__ import annotations

import argparse
import ast
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
from hat.config import HatArgumentParser
from hat.data.dataset import DataDir
from hat.errors import HatError
from hat.space import SUPERNET_KEYS
from hat.supernet import SuperTransformer
from hat.train.distributed import init_distributed
from hat.train.sampling import MODES, ConfigSampler
from hat.train.schedule import SCHEDULERS, ScheduleConfig
from hat.train.trainer import TrainConfig, Trainer
from hat.transformer import Transformer

log = logging.getLogger(__name__)


def add_training_args(p: HatArgumentParser) -> None:
    g = p.add_argument_group("training (fairseq/HAT names)")
    g.add_argument("--data", required=True, help="data directory written by `hat preprocess`")
    g.add_argument(
        "--save-dir", default="checkpoints", help="where checkpoints and train_log.jsonl go"
    )
    g.add_argument(
        "--restore-file",
        default="checkpoint_last.pt",
        help="checkpoint to resume from: the default name is looked up in --save-dir, "
        "any other path is used as given (fairseq's rule)",
    )
    g.add_argument(
        "--train-subtransformer",
        action="store_true",
        help="train the SubTransformer of --configs alone (compact model, from scratch)",
    )
    g.add_argument(
        "--max-tokens", type=int, default=4096, help="tokens per batch, padding included"
    )
    g.add_argument("--max-sentences", "--batch-size", type=int, help="sentences per batch")
    g.add_argument(
        "--update-freq", type=int, default=1, help="batches per update (gradient accumulation)"
    )
    g.add_argument(
        "--max-update", type=int, default=0, help="stop after this many updates (0: no limit)"
    )
    g.add_argument(
        "--max-epoch", type=int, default=0, help="stop after this many epochs (0: no limit)"
    )
    g.add_argument(
        "--stop-time-hours", type=float, default=0.0, help="stop after this much wall time"
    )
    g.add_argument(
        "--optimizer", default="adam", choices=("adam",), help="Adam with decoupled weight decay"
    )
    g.add_argument("--adam-betas", default="(0.9, 0.98)", help="Adam betas, e.g. '(0.9, 0.98)'")
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument(
        "--clip-norm", type=float, default=0.0, help="clip gradients to this norm (0: off)"
    )
    g.add_argument(
        "--criterion",
        default="label_smoothed_cross_entropy",
        choices=("label_smoothed_cross_entropy",),
    )
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--lr-scheduler", default="inverse_sqrt", choices=SCHEDULERS)
    g.add_argument(
        "--lr", type=float, default=5e-4, help="peak lr (inverse_sqrt) or final lr (cosine)"
    )
    g.add_argument("--max-lr", type=float, help="peak lr of the cosine schedule")
    g.add_argument("--warmup-updates", type=int, default=4000)
    g.add_argument("--warmup-init-lr", type=float, default=1e-7)
    g.add_argument("--lr-shrink", type=float, default=1.0, help="cosine: factor per restart")
    g.add_argument(
        "--fp16", action="store_true", help="mixed precision (CUDA AMP, fp16 + loss scaling)"
    )
    g.add_argument("--bf16", action="store_true", help="mixed precision with bfloat16 autocast")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument(
        "--save-interval", type=int, default=1, help="keep checkpoint<epoch>.pt every N epochs"
    )
    g.add_argument(
        "--save-interval-updates", type=int, default=0, help="also checkpoint every N updates"
    )
    g.add_argument(
        "--keep-last-epochs", type=int, default=-1, help="keep only the last N epoch checkpoints"
    )
    g.add_argument(
        "--keep-interval-updates",
        type=int,
        default=-1,
        help="keep only the last N update checkpoints",
    )
    g.add_argument("--validate-interval", type=int, default=1, help="validate every N epochs")
    g.add_argument(
        "--validate-interval-updates", type=int, default=0, help="also validate every N updates"
    )
    g.add_argument("--valid-subset", default="valid")
    g.add_argument(
        "--eval-bleu", action="store_true", help="also report validation BLEU (beam search)"
    )
    g.add_argument("--eval-bleu-beam", type=int, default=4)
    g.add_argument("--log-interval", type=int, default=50, help="log every N updates")
    g.add_argument("--no-progress-bar", action="store_true")
    g = p.add_argument_group("SuperTransformer sampling")
    g.add_argument(
        "--sampling",
        default="uniform",
        choices=MODES,
        help="uniform: one SubTransformer per update (HAT); sandwich: largest + smallest + "
        "--sandwich-random random ones, with in-place distillation from the largest",
    )
    g.add_argument("--sandwich-random", type=int, default=2)
    g.add_argument(
        "--distill-weight",
        type=float,
        default=1.0,
        help="sandwich: weight of the distillation loss (the rest: label-smoothed CE)",
    )


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat train", __doc__, config_options=("--configs", "--sub-configs"))
    add_training_args(p)
    add_model_args(p)
    add_space_args(p)
    add_arch_args(p)
    return p


def _betas(text: str) -> tuple[float, float]:
    try:
        betas = tuple(float(b) for b in ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError):
        raise HatError(f"--adam-betas must look like '(0.9, 0.98)', got {text!r}") from None
    if len(betas) != 2:
        raise HatError(f"--adam-betas needs two numbers, got {text!r}")
    return betas


def train_config(args: argparse.Namespace) -> TrainConfig:
    if args.fp16 and args.bf16:
        raise HatError("--fp16 and --bf16 exclude each other")
    for name in ("max_tokens", "update_freq"):
        if getattr(args, name) <= 0:
            raise HatError(f"--{name.replace('_', '-')} must be positive")
    schedule = ScheduleConfig(
        name=args.lr_scheduler,
        lr=args.lr,
        warmup_updates=args.warmup_updates,
        warmup_init_lr=args.warmup_init_lr,
        max_lr=args.max_lr,
        max_update=args.max_update,
        lr_shrink=args.lr_shrink,
    )
    return TrainConfig(
        save_dir=args.save_dir,
        max_tokens=args.max_tokens,
        max_sentences=args.max_sentences,
        update_freq=args.update_freq,
        max_update=args.max_update,
        max_epoch=args.max_epoch,
        stop_time_hours=args.stop_time_hours,
        schedule=schedule,
        adam_betas=_betas(args.adam_betas),
        adam_eps=args.adam_eps,
        weight_decay=args.weight_decay,
        clip_norm=args.clip_norm,
        label_smoothing=args.label_smoothing,
        precision="fp16" if args.fp16 else "bf16" if args.bf16 else "fp32",
        seed=args.seed,
        save_interval=args.save_interval,
        save_interval_updates=args.save_interval_updates,
        keep_last_epochs=args.keep_last_epochs,
        keep_interval_updates=args.keep_interval_updates,
        validate_interval=args.validate_interval,
        validate_interval_updates=args.validate_interval_updates,
        valid_subset=args.valid_subset,
        eval_bleu=args.eval_bleu,
        eval_bleu_beam=args.eval_bleu_beam,
        distill_weight=args.distill_weight,
        log_interval=args.log_interval,
        progress_bar=not args.no_progress_bar,
        restore_file=args.restore_file,
    )


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
    if args.fp16 and not use_cuda:
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
        meta = {"kind": "subtransformer", "arch": arch.to_dict()}
    else:
        space = space_from_args(args)
        model = SuperTransformer(space, settings)
        sampler = ConfigSampler(space, args.sampling, args.seed, args.sandwich_random)
        meta = {"kind": "supernet", "space": space.to_hat_dict()}
    meta.update(
        settings=model.settings.to_dict(),
        args=_plain_args(args),
        data={"source_lang": data.source_lang, "target_lang": data.target_lang},
    )
    trainer = Trainer(model, cfg, data, sampler, init_distributed(use_cuda), meta)
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
