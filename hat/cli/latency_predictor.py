"""`hat latency-predictor` / latency_predictor.py: train a latency predictor on a latency dataset,
report its accuracy on the held-out test split, or predict one SubTransformer's latency.

  python latency_predictor.py --configs=configs/iwslt14.de-en/latency_predictor/cpu.yml
  python latency_predictor.py --configs=... --predictor hat          (HAT's recipe)
  python latency_predictor.py --ckpt-path P.pt --predict SUB.yml     (no training)

hat's datasets store each row's normalized latency (from its ratios to reference SubTransformers
timed around it and their quiet-device calibrations): the predictor learns it, so datasets
collected in a slow and a quiet hour agree, and keeps the calibrations, protocol and settings
in its metadata for `hat search --verify-top`. --raw-latency learns the timings as measured.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hat.cli import run_command
from hat.cli.parser import HatArgumentParser
from hat.errors import HatError
from hat.latency.features import HAT_FEATURE_NORM
from hat.latency.fit import FEATURE_SETS, RECIPES, HatRecipe, fit_predictor
from hat.latency.predictor import load_predictor
from hat.latency.table import load_table
from hat.latency.training import ENSEMBLE_MEMBERS
from hat.settings import add_settings, from_flags
from hat.space import ArchConfig


def build_parser() -> HatArgumentParser:
    p = HatArgumentParser("hat latency-predictor", __doc__)
    g = p.add_argument_group("HAT's keys")
    g.add_argument("--lat-dataset-path", help="latency CSV (HAT's or hat's)")
    g.add_argument(
        "--feature-norm",
        type=float,
        nargs="+",
        help=f"divisors of HAT's 10 features (default {list(HAT_FEATURE_NORM)})",
    )
    g.add_argument(
        "--lat-norm", type=float, help="divisor of the latency in HAT's recipe (default 200)"
    )
    g.add_argument("--feature-dim", type=int, default=10, help="HAT's feature count (checked)")
    g.add_argument(
        "--ckpt-path",
        default="latency_dataset/predictors/predictor.pt",
        help="where the predictor goes",
    )
    add_settings(g, HatRecipe)
    g = p.add_argument_group("hat")
    g.add_argument(
        "--predictor",
        choices=RECIPES,
        default="default",
        help="default: physics x MLP-ensemble (uncertainty); hat: HAT's MLP recipe",
    )
    g.add_argument(
        "--features",
        choices=FEATURE_SETS,
        default="auto",
        help="auto: per-layer when the dataset stores configs (hat's do), else HAT's 10",
    )
    g.add_argument(
        "--members", type=int, default=ENSEMBLE_MEMBERS, help="default predictor: ensemble size"
    )
    g.add_argument(
        "--drift-normalize",
        action="store_true",
        help="older hat datasets: scale rows by median(reference_ms) / reference_ms",
    )
    g.add_argument(
        "--raw-latency",
        action="store_true",
        help="learn the latency as timed, not the normalized latency (hat's datasets)",
    )
    g.add_argument("--seed", type=int, default=1, help="shuffle / split / init seed")
    g.add_argument(
        "--plot", help="predicted-vs-measured scatter PNG (default: next to --ckpt-path)"
    )
    g.add_argument(
        "--predict", metavar="SUB.yml", help="predict this SubTransformer's latency (no training)"
    )
    g.add_argument("--json", action="store_true", help="last line: one JSON object")
    return p


def scatter_plot(pred: np.ndarray, true: np.ndarray, metrics: dict, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true, pred, s=12, alpha=0.7, label="test SubTransformers")
    lo, hi = min(true.min(), pred.min()), max(true.max(), pred.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="predicted = measured")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(
        f"{title}\nMAPE {metrics['mape']:.2f}%, RMSE {metrics['rmse']:.2f} ms, "
        f"Kendall tau {metrics['kendall_tau']:.3f}",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def predict_one(args: argparse.Namespace) -> None:
    predictor = load_predictor(args.ckpt_path, args.feature_norm, args.lat_norm)
    arch = ArchConfig.from_yaml(args.predict)
    mean, std = predictor.predict_archs([arch])
    kind = predictor.meta.get("latency", "raw")
    spread = f" ± {std[0]:.2f}" if std[0] else ""
    print(f"{args.predict}: predicted {kind} latency {mean[0]:.2f} ms{spread}  ({args.ckpt_path})")
    if args.json:
        print(json.dumps({"latency_ms": float(mean[0]), "std_ms": float(std[0]), "latency": kind}))


def train(args: argparse.Namespace) -> None:
    if not args.lat_dataset_path:
        raise HatError("--lat-dataset-path is required to train a predictor (or use --predict)")
    hat_norm = args.feature_norm or list(HAT_FEATURE_NORM)
    if len(hat_norm) != args.feature_dim:
        raise HatError(
            f"--feature-norm has {len(hat_norm)} values but --feature-dim is {args.feature_dim}"
        )
    if args.drift_normalize and args.raw_latency:
        raise HatError("choose one of --drift-normalize and --raw-latency")
    table = load_table(
        args.lat_dataset_path, drift_normalize=args.drift_normalize, raw=args.raw_latency
    )
    hat_recipe = from_flags(
        HatRecipe,
        vars(args),
        feature_norm=tuple(hat_norm),
        lat_norm=args.lat_norm or HatRecipe.lat_norm,
    )
    fit = fit_predictor(
        table,
        recipe=args.predictor,
        features=args.features,
        seed=args.seed,
        members=args.members,
        hat_recipe=hat_recipe,
    )
    fit.predictor.save(args.ckpt_path)
    plot = args.plot or str(Path(args.ckpt_path).with_suffix(".png"))
    label = (
        "HAT's MLP recipe"
        if args.predictor == "hat"
        else f"hat default ({fit.predictor.feature_set} features)"
    )
    m, kind, seconds = fit.metrics["test"], table.latency_kind, fit.train_seconds
    scatter_plot(
        fit.test_pred,
        table.latency[fit.test_index],
        m,
        f"{Path(args.lat_dataset_path).stem}: {label}",
        plot,
    )
    print(
        f"{args.lat_dataset_path}: {len(table.latency)} rows ({kind} latency"
        + (f", calibration {table.environment['calibration_ms']} ms" if table.normalized else "")
        + f"), split 8:1:1 (seed {args.seed})"
    )
    print(f"{label}: trained in {seconds:.1f} s")
    print(
        f"test ({len(fit.test_index)}): RMSE {m['rmse']:.2f} ms | MAPE {m['mape']:.2f}% | "
        f"max APE {m['max_ape']:.1f}% | Kendall tau {m['kendall_tau']:.3f} | "
        f"Spearman {m['spearman']:.3f} | ensemble spread ± {m['mean_std_ms']:.2f} ms (mean std)"
    )
    print(f"saved {args.ckpt_path} and {plot}")
    if args.json:
        print(json.dumps({**m, "train_seconds": seconds, "latency": kind}))


def run(args: argparse.Namespace) -> None:
    if args.predict:
        predict_one(args)
    else:
        train(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser, run, argv)
