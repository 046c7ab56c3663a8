"""`hat pipeline`: the whole HAT method on this machine, driven by one YAML.

  hat pipeline --configs configs/toy/pipeline.yml          (the embedded toy task, ~15 min on 2 cores)
  hat pipeline --configs configs/multi30k/pipeline.yml     (real data)

preprocess -> train SuperTransformer -> latency dataset on this device -> latency predictor ->
search per budget -> train the found SubTransformers (and scaled-down baseline Transformers)
-> BLEU, measured latency, #params, FLOPs -> RUN_DIR/report.md with plots. A stage whose
outputs are complete is skipped, so a killed pipeline resumes where it was.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from hat.cli import run_command
from hat.errors import HatError
from hat.latency.dataset import device_name
from hat.pipeline.config import build_parser as pipeline_parser
from hat.pipeline.config import pipeline_config
from hat.pipeline.report import write_report
from hat.pipeline.run import Pipeline, summary_rows


def build_parser():
    return pipeline_parser("hat pipeline", __doc__)


def run(args: argparse.Namespace) -> None:
    cfg = pipeline_config(args)
    if cfg.measure.device == "cuda" and not torch.cuda.is_available():
        raise HatError("--latgpu: no CUDA device is available here")
    results = Pipeline(cfg).run()
    rows = summary_rows(results)
    env = {
        "device": device_name(cfg.measure.device),
        "torch": torch.__version__,
        "sentence_length": cfg.measure.sentence_length,
        "beam": cfg.measure.beam,
    }
    report = write_report(results, rows, cfg.run_dir, env)
    print(
        f"\n{'model':<34} {'budget':>8} {'predicted':>10} {'measured':>10} {'BLEU':>6} {'params':>8}"
    )
    for r in rows:
        budget = f"{r['budget_ms']:.1f}" if r["budget_ms"] else "-"
        predicted = f"{r['predicted_ms']:.1f}" if r["predicted_ms"] else "-"
        print(
            f"{r['model']:<34} {budget:>8} {predicted:>10} {r['latency_ms']:>10.1f} {r['bleu']:>6.2f} "
            f"{r['params'] / 1e6:>7.2f}M"
        )
    print(f"\nreport: {report}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
