"""`hat pipeline`: the whole HAT method on this machine, driven by one YAML.

  hat pipeline --configs configs/toy/pipeline.yml       (the embedded toy task, ~7 min, 2 cores)
  hat pipeline --configs configs/multi30k/pipeline.yml     (real data)

preprocess -> latency dataset on this device -> latency predictor -> train the
SuperTransformer (beside the scaled-down baseline Transformers) -> search per budget -> train
the found SubTransformers -> BLEU, measured latency, #params, FLOPs -> RUN_DIR/report.md with
plots. A stage whose outputs are complete is skipped, so a killed pipeline resumes where it was.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from hat.cli import run_command
from hat.cli.args import add_space_args, space_from_args
from hat.cli.parser import HatArgumentParser
from hat.errors import HatError
from hat.latency.timing import MeasureSettings, device_name
from hat.pipeline.config import PER_JOB, DataConfig, PipelineConfig
from hat.pipeline.report import write_report
from hat.pipeline.run import Pipeline, summary_rows
from hat.search.evolution import EvolutionConfig
from hat.settings import add_settings, from_flags
from hat.train.sampling import SamplingConfig
from hat.train.trainer import TrainConfig
from hat.transformer import ModelSettings

# the pipeline's own keys, by group
_TRAINING = (
    "stop_after",
    "supernet_max_update",
    "supernet_checkpoint",
    "subtransformer_max_update",
    "finetune_inherited",
    "finetune_fraction",
    "seeds",
    "train_jobs",
    "results_ledger",
)
_SEARCH = ("latency_constraint", "latency_constraint_fraction", "verify_top", "search_result")
_TEST = ("gen_beam", "lenpen", "max_len_a", "max_len_b", "baselines", "ranking_study")


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat pipeline", __doc__)
    add_settings(p.add_argument_group("run"), PipelineConfig, only=("run_dir",), nested=False)
    add_settings(
        p.add_argument_group("data: the embedded toy task, or raw parallel text"), DataConfig
    )
    g = p.add_argument_group(
        "training (one recipe for the SuperTransformer, the found models, the baselines)"
    )
    add_settings(g, TrainConfig, skip=PER_JOB)
    add_settings(g, SamplingConfig)
    add_settings(g, PipelineConfig, only=_TRAINING, nested=False)
    g = p.add_argument_group("latency on this device")
    add_settings(g, MeasureSettings)
    add_settings(g, PipelineConfig, only=("lat_dataset_size",), nested=False)
    g = p.add_argument_group("search (HAT's keys)")
    add_settings(g, EvolutionConfig)
    add_settings(g, PipelineConfig, only=_SEARCH, nested=False)
    add_settings(p.add_argument_group("test"), PipelineConfig, only=_TEST, nested=False)
    add_space_args(p)
    add_settings(p.add_argument_group("model"), ModelSettings)
    return p


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The checked PipelineConfig of the parsed flags."""
    cfg = from_flags(PipelineConfig, vars(args), space=space_from_args(args))
    cfg.check()
    return cfg


def run(args: argparse.Namespace) -> None:
    cfg = pipeline_config(args)
    if cfg.measure.device == "cuda" and not torch.cuda.is_available():
        raise HatError("--latgpu: no CUDA device is available here")
    results = Pipeline(cfg).run()
    if "stopped_after" in results:
        print(
            f"stopped after the {results['stopped_after']} stage (--stop-after): the same "
            f"command without it goes on from there"
        )
        return
    rows = summary_rows(results)
    env = {
        "device": device_name(cfg.measure.device),
        "torch": torch.__version__,
        "sentence_length": cfg.measure.sentence_length,
        "beam": cfg.measure.beam,
    }
    report = write_report(results, rows, cfg.run_dir, env)
    print(
        f"\n{'model':<34} {'budget':>8} {'predicted':>10} {'measured':>10} "
        f"{'BLEU':>6} {'params':>8}"
    )
    for r in rows:
        budget = f"{r['budget_ms']:.1f}" if r["budget_ms"] else "-"
        predicted = f"{r['predicted_ms']:.1f}" if r["predicted_ms"] else "-"
        print(
            f"{r['model']:<34} {budget:>8} {predicted:>10} {r['latency_ms']:>10.1f} "
            f"{r['bleu']:>6.2f} "
            f"{r['params'] / 1e6:>7.2f}M"
        )
    print(f"\nreport: {report}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
