"""`hat latency-dataset` / latency_dataset.py: time sampled SubTransformers on this device.

  python latency_dataset.py --configs=configs/iwslt14.de-en/latency_dataset/cpu.yml
  python latency_dataset.py --configs=SPACE.yml --measure SUB.yml      (time one SubTransformer)

The protocol on the compact model (--protocol beam-search: the real beam search, deployment
latency; --protocol hat: HAT's decoder steps without search, to compare with HAT's CSVs):
encoder on one sentence of --sentence-length tokens, the decoder for as many incremental
steps, dry runs, --latiter timed runs, mean/std of the runs between the 10th and 90th
percentile. Each SubTransformer is timed alternating with fixed reference SubTransformers (one
run of each per round, or --rounds rounds of several runs): by default a small and a large one
(--reference bracket), or the space's middle one (--reference middle). A row stores the ratios
and the normalized latency (with two references, interpolated between their estimates in log
latency; with one, ratio x the reference's quiet-device calibration). Rows are appended as
measured; re-running the same command resumes and stops at --lat-dataset-size.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from hat.cli import run_command
from hat.cli.args import add_model_args, add_space_args, settings_from_args, space_from_args
from hat.cli.parser import HatArgumentParser
from hat.data.dataset import DataDir
from hat.errors import HatError
from hat.latency.dataset import collect, recheck
from hat.latency.measure import parse_cores
from hat.latency.plan import SAMPLINGS
from hat.latency.timing import MeasureSettings, device_name
from hat.settings import add_settings, from_flags
from hat.space import ArchConfig
from hat.transformer import Transformer


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat latency-dataset", __doc__)
    g = p.add_argument_group("latency dataset (HAT's keys)")
    g.add_argument(
        "--lat-dataset-path", default="latency_dataset/latency.csv", help="CSV to write (appended)"
    )
    g.add_argument("--lat-dataset-size", type=int, default=2000, help="SubTransformers to measure")
    g.add_argument("--cpu", action="store_true", help="same as --latcpu")
    g.add_argument("--latsilent", action="store_true", help="no progress bar")
    add_settings(g, MeasureSettings)
    g.add_argument(
        "--calibration-ms",
        type=float,
        nargs="+",
        metavar="MS",
        help="the references' quiet latencies on this device, one per reference, small first "
        "(default: the file's, else the fastest of 3 timings each at the start)",
    )
    g.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default="uniform",
        help="uniform (HAT) or stratified over a latency proxy (covers small and large nets)",
    )
    g.add_argument("--seed", type=int, default=1, help="sampling seed")
    g.add_argument("--data", help="data directory: its vocabulary size sizes the output layer")
    g.add_argument(
        "--vocab-size", type=int, default=10_000, help="vocabulary size when --data is absent"
    )
    g.add_argument(
        "--measure", metavar="SUB.yml", help="time this one SubTransformer and print the result"
    )
    g.add_argument(
        "--recheck",
        type=int,
        metavar="N",
        help="after collecting, re-time N random rows and report the median relative difference",
    )
    g.add_argument("--json", action="store_true", help="last line: one JSON object")
    add_space_args(p)
    add_model_args(p)
    return p


def _vocab_size(args: argparse.Namespace) -> int:
    """The data directory's vocabulary when it exists here (HAT's YAMLs name theirs), else
    --vocab-size."""
    if args.data and (Path(args.data) / "metadata.json").is_file():
        return DataDir(args.data).vocab_size
    return args.vocab_size


def run(args: argparse.Namespace) -> None:
    measure = from_flags(MeasureSettings, vars(args))
    if args.cpu and measure.device == "cuda":
        raise HatError("choose one of --latgpu and --cpu")
    if measure.device == "cuda" and not torch.cuda.is_available():
        raise HatError("--latgpu: no CUDA device is available here (use --latcpu)")
    for name in ("latiter", "lat_dataset_size", "beam", "sentence_length", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise HatError(f"--{name.replace('_', '-')} must be at least 1")
    space = space_from_args(args)
    settings = settings_from_args(args, _vocab_size(args))
    if measure.cores:
        parse_cores(measure.cores)  # a clear error before anything is timed
    if args.calibration_ms is not None and min(args.calibration_ms) <= 0:
        raise HatError("--calibration-ms must be positive")
    if args.measure:
        arch = ArchConfig.from_yaml(args.measure)
        try:
            space.validate(arch)
        except HatError as e:
            raise HatError(f"{args.measure}: outside the space of --configs: {e}") from None
        lat = measure.time(Transformer(arch, settings))
        print(f"{args.measure}: {lat.summary()}")
        if args.json:
            print(json.dumps(lat.to_dict()))
        return
    report = collect(
        space,
        settings,
        measure,
        args.lat_dataset_path,
        args.lat_dataset_size,
        seed=args.seed,
        sampling=args.sampling,
        progress=not args.latsilent,
        calibrations_ms=args.calibration_ms,
    )
    print(
        f"{args.lat_dataset_path}: {args.lat_dataset_size} SubTransformers on "
        f"{device_name(measure.device)}"
    )
    if report.get("reference_measurements", 0) > 1:
        print(
            f"drift of the reference SubTransformer over {report['reference_measurements']} "
            f"timings: range {report['drift_range_pct']:.1f}% of its median "
            f"{report['reference_median_ms']:.1f} ms, "
            f"first -> last {report['drift_first_to_last_pct']:+.1f}%"
        )
    if "calibration_ms" in report:
        print(
            f"calibration of the (first) reference {report['calibration_ms']:.2f} ms: "
            f"drift factor median {report['drift_factor_median']:.2f}, "
            f"max {report['drift_factor_max']:.2f} (taken out of normalized_ms)"
        )
    if "sweep_spread_median_pct" in report:
        print(
            f"sweeps of a row: normalized latency spread {report['sweep_spread_median_pct']:.1f}% "
            f"median (max {report['sweep_spread_max_pct']:.1f}%)"
        )
    if args.recheck:
        check = recheck(
            args.lat_dataset_path, settings, measure, args.recheck, args.seed, not args.latsilent
        )
        report["recheck"] = check
        print(
            f"repeatability: {check['rechecked']} rows re-timed, median relative difference "
            f"{check['median_rel_diff_pct']:.1f}% (max {check['max_rel_diff_pct']:.1f}%)"
            + (
                f", normalized {check['normalized_median_rel_diff_pct']:.1f}%"
                if "normalized_median_rel_diff_pct" in check
                else ""
            )
        )
    if args.json:
        print(json.dumps(report))


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
