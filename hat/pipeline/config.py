"""The settings of `hat pipeline`: one YAML with HAT's key names where they exist."""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field

from hat.cli.args import (
    add_evolution_args,
    add_model_args,
    add_space_args,
    evolution_from_args,
    settings_from_args,
    space_from_args,
)
from hat.config import HatArgumentParser
from hat.errors import HatError
from hat.generate import MAX_LEN_A, MAX_LEN_B
from hat.latency.dataset import MeasureSettings
from hat.latency.predictor import MIN_SPLIT_ROWS
from hat.search.evolution import EvolutionConfig
from hat.space import SearchSpace
from hat.train.schedule import SCHEDULERS, ScheduleConfig
from hat.train.trainer import TrainConfig
from hat.transformer import ModelSettings


@dataclass
class PipelineConfig:
    run_dir: str
    toy: bool
    raw: dict  # source_lang, target_lang, trainpref, validpref, testpref (real data)
    toy_sizes: tuple[int, int, int]
    vocab_size: int
    space: SearchSpace
    model: argparse.Namespace  # model settings flags; the vocabulary comes from the data
    train: TrainConfig  # the recipe shared by every training run (its max_update is set per run)
    supernet_updates: int
    subtransformer_updates: int
    sampling: str
    finetune_inherited: bool
    finetune_fraction: float
    measure: MeasureSettings
    lat_dataset_size: int
    evolution: EvolutionConfig
    budgets_ms: list[float] = field(default_factory=list)
    budget_fractions: list[float] = field(default_factory=list)
    verify_top: int = 3
    gen_beam: int = 5
    lenpen: float = 1.0
    max_len_a: float = MAX_LEN_A
    max_len_b: int = MAX_LEN_B
    baselines: int = 4

    def settings(self, vocab_size: int) -> ModelSettings:
        return settings_from_args(self.model, vocab_size)


def build_parser(prog: str, description: str) -> HatArgumentParser:
    p = HatArgumentParser(prog, description)
    g = p.add_argument_group("run")
    g.add_argument("--run-dir", default="runs/pipeline", help="every stage's artefacts go here")
    g = p.add_argument_group("data: the embedded toy task, or raw parallel text")
    g.add_argument(
        "--toy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use the embedded toy task (--no-toy: the raw text below)",
    )
    g.add_argument("--toy-train-size", type=int, default=50_000)
    g.add_argument("--toy-valid-size", type=int, default=1_000)
    g.add_argument("--toy-test-size", type=int, default=1_000)
    g.add_argument("--source-lang", "-s")
    g.add_argument("--target-lang", "-t")
    g.add_argument("--trainpref")
    g.add_argument("--validpref")
    g.add_argument("--testpref")
    g.add_argument("--vocab-size", type=int, default=2000, help="joint sentencepiece vocabulary")
    g = p.add_argument_group(
        "training (one recipe for the SuperTransformer, the found models, the baselines)"
    )
    g.add_argument("--max-tokens", type=int, default=4096)
    g.add_argument("--lr-scheduler", default="inverse_sqrt", choices=SCHEDULERS)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--max-lr", type=float)
    g.add_argument("--warmup-updates", type=int, default=400)
    g.add_argument("--warmup-init-lr", type=float, default=1e-7)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--clip-norm", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument(
        "--fp16", action="store_true", help="mixed precision, fp16 + loss scaling (needs --latgpu)"
    )
    g.add_argument("--bf16", action="store_true", help="mixed precision, bfloat16 autocast")
    g.add_argument("--supernet-max-update", type=int, default=3000, help="SuperTransformer updates")
    g.add_argument(
        "--subtransformer-max-update",
        type=int,
        default=1500,
        help="updates of each found SubTransformer and each baseline (from scratch)",
    )
    g.add_argument("--sampling", choices=("uniform", "sandwich"), default="uniform")
    g.add_argument(
        "--finetune-inherited",
        action="store_true",
        help="start the found SubTransformers from the supernet's weights and train them for "
        "--finetune-fraction of the updates (cheaper than from scratch)",
    )
    g.add_argument("--finetune-fraction", type=float, default=0.25)
    g = p.add_argument_group("latency on this device (HAT's protocol)")
    g.add_argument("--lat-dataset-size", type=int, default=100)
    g.add_argument("--latiter", type=int, default=10)
    g.add_argument("--lat-warmup", type=int, default=3)
    g.add_argument("--sentence-length", type=int, default=20)
    g.add_argument("--beam", type=int, default=5)
    g.add_argument("--latgpu", action="store_true", help="measure (and train) on the GPU")
    g.add_argument("--threads", type=int)
    g = p.add_argument_group("search (HAT's keys)")
    add_evolution_args(
        g,
        EvolutionConfig(
            evo_iter=15, population_size=50, parent_size=10, mutation_size=20, crossover_size=20
        ),
    )
    g.add_argument("--latency-constraint", type=float, nargs="+", help="budgets in ms")
    g.add_argument(
        "--latency-constraint-fraction",
        type=float,
        nargs="+",
        default=[0.15, 0.4, 0.7],
        help="budgets as fractions of the way from the smallest to the largest SubTransformer's "
        "predicted latency (portable across devices); ignored with --latency-constraint",
    )
    g.add_argument("--verify-top", type=int, default=3)
    g = p.add_argument_group("test")
    g.add_argument("--gen-beam", type=int, default=5, help="beam for the BLEU test")
    g.add_argument("--lenpen", type=float, default=1.0)
    g.add_argument(
        "--max-len-a", type=float, default=MAX_LEN_A, help="max output length = a * source + b"
    )
    g.add_argument("--max-len-b", type=int, default=MAX_LEN_B)
    g.add_argument(
        "--baselines", type=int, default=4, help="plain Transformers scaled down from the largest"
    )
    add_space_args(p)
    add_model_args(p)
    return p


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    raw = {
        k: getattr(args, k)
        for k in ("source_lang", "target_lang", "trainpref", "validpref", "testpref")
    }
    if not args.toy and not all(raw.values()):
        missing = [f"--{k.replace('_', '-')}" for k, v in raw.items() if not v]
        raise HatError(f"--no-toy needs raw parallel text: missing {', '.join(missing)}")
    for name in ("supernet_max_update", "subtransformer_max_update", "lat_dataset_size", "latiter"):
        if getattr(args, name) < 1:
            raise HatError(f"--{name.replace('_', '-')} must be at least 1")
    if args.lat_dataset_size < MIN_SPLIT_ROWS:
        raise HatError(
            f"--lat-dataset-size {args.lat_dataset_size}: the latency predictor needs at least "
            f"{MIN_SPLIT_ROWS} rows for its train/valid/test split"
        )
    if args.fp16 and not args.latgpu:
        raise HatError("--fp16 trains on the GPU: add --latgpu, or use --bf16 on the CPU")
    if not 0 < args.finetune_fraction <= 1:
        raise HatError("--finetune-fraction must be in (0, 1]")
    space = space_from_args(args)
    space.sample(random.Random(0))  # fails clearly on a space without choices
    schedule = ScheduleConfig(
        args.lr_scheduler,
        args.lr,
        args.warmup_updates,
        args.warmup_init_lr,
        args.max_lr,
        max_update=args.supernet_max_update,
    )
    train = TrainConfig(
        max_tokens=args.max_tokens,
        schedule=schedule,
        weight_decay=args.weight_decay,
        clip_norm=args.clip_norm,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        precision="fp16" if args.fp16 else "bf16" if args.bf16 else "fp32",
        save_interval_updates=200,
        keep_interval_updates=1,
        keep_last_epochs=1,
        log_interval=50,
        progress_bar=False,
    )
    evolution = evolution_from_args(args)
    measure = MeasureSettings(
        args.sentence_length,
        args.beam,
        args.latiter,
        args.lat_warmup,
        "cuda" if args.latgpu else "cpu",
        args.threads,
    )
    return PipelineConfig(
        run_dir=args.run_dir,
        toy=args.toy,
        raw=raw,
        toy_sizes=(args.toy_train_size, args.toy_valid_size, args.toy_test_size),
        vocab_size=args.vocab_size,
        space=space,
        model=args,
        train=train,
        supernet_updates=args.supernet_max_update,
        subtransformer_updates=args.subtransformer_max_update,
        sampling=args.sampling,
        finetune_inherited=args.finetune_inherited,
        finetune_fraction=args.finetune_fraction,
        measure=measure,
        lat_dataset_size=args.lat_dataset_size,
        evolution=evolution,
        budgets_ms=args.latency_constraint or [],
        budget_fractions=[] if args.latency_constraint else args.latency_constraint_fraction,
        verify_top=args.verify_top,
        gen_beam=args.gen_beam,
        lenpen=args.lenpen,
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        baselines=args.baselines,
    )
