"""`hat latency-predictor` / latency_predictor.py: train a latency predictor on a latency dataset,
report its accuracy on the held-out test split, or predict one SubTransformer's latency.

  python latency_predictor.py --configs=configs/iwslt14.de-en/latency_predictor/cpu.yml
  python latency_predictor.py --configs=... --predictor hat          (HAT's recipe)
  python latency_predictor.py --ckpt-path P.pt --predict SUB.yml     (no training)

hat's datasets store each row's normalized latency (ratio to a reference SubTransformer timed
around it x the reference's quiet-device calibration): the predictor learns it, so datasets
collected in a slow and a quiet hour agree, and keeps the calibration, protocol and settings
in its metadata for `hat search --verify-top`. --raw-latency learns the timings as measured.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hat.cli import run_command
from hat.config import HatArgumentParser
from hat.errors import HatError
from hat.latency.dataset import LatencyTable, load_table
from hat.latency.features import (
    HAT_FEATURE_NORM,
    cost_terms_from_hat,
    per_layer_features,
    per_layer_norm,
)
from hat.latency.predictor import (
    MIN_SPLIT_ROWS,
    load_predictor,
    regression_metrics,
    split_indices,
    timed,
    train_ensemble,
    train_hat_recipe,
)
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
    g.add_argument("--hidden-dim", type=int, default=400, help="HAT's recipe: hidden width")
    g.add_argument("--hidden-layer-num", type=int, default=3, help="HAT's recipe: hidden layers")
    g.add_argument(
        "--ckpt-path",
        default="latency_dataset/predictors/predictor.pt",
        help="where the predictor goes",
    )
    g.add_argument("--train-steps", type=int, default=5000, help="HAT's recipe: training steps")
    g.add_argument("--bsz", type=int, default=128, help="HAT's recipe: batch size")
    g.add_argument("--lr", type=float, default=1e-5, help="HAT's recipe: Adam learning rate")
    g = p.add_argument_group("hat")
    g.add_argument(
        "--predictor",
        choices=("default", "hat"),
        default="default",
        help="default: physics x MLP-ensemble (uncertainty); hat: HAT's MLP recipe",
    )
    g.add_argument(
        "--features",
        choices=("auto", "hat10", "per-layer"),
        default="auto",
        help="auto: per-layer when the dataset stores configs (hat's do), else HAT's 10",
    )
    g.add_argument("--members", type=int, default=5, help="default predictor: ensemble size")
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


def feature_matrix(
    table: LatencyTable, feature_set: str
) -> tuple[np.ndarray, list[float], tuple[int, int] | None]:
    """(raw features, their norm, layer counts) of a table in the chosen feature set."""
    if feature_set == "hat10":
        return table.features, list(HAT_FEATURE_NORM), None
    counts = (
        max(c.encoder_layer_num for c in table.configs),
        max(c.decoder_layer_num for c in table.configs),
    )
    feats = np.array([per_layer_features(c, *counts) for c in table.configs])
    return feats, per_layer_norm(*counts), counts


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
    if len(table.latency) < MIN_SPLIT_ROWS:
        raise HatError(
            f"{args.lat_dataset_path} has {len(table.latency)} rows: a predictor "
            f"needs at least {MIN_SPLIT_ROWS} rows for a train/valid/test split (8:1:1, "
            f"2 or more in valid and test); measure more with `hat latency-dataset`"
        )
    feature_set = args.features
    if feature_set == "auto":
        feature_set = "per-layer" if table.configs and args.predictor == "default" else "hat10"
    if feature_set == "per-layer" and not table.configs:
        raise HatError(
            f"{args.lat_dataset_path} stores no configs: per-layer features need hat's datasets"
        )
    if args.predictor == "hat" and feature_set != "hat10":
        raise HatError(
            "HAT's recipe uses HAT's 10 features: drop --features per-layer or use --predictor default"
        )
    feats, norm, counts = feature_matrix(table, feature_set)
    if args.predictor == "hat":
        norm = hat_norm
    cost = cost_terms_from_hat(table.features)
    train_idx, valid_idx, test_idx = split_indices(len(table.latency), args.seed)
    if args.predictor == "hat":
        predictor, seconds = timed(
            train_hat_recipe,
            feats[train_idx],
            table.latency[train_idx],
            norm,
            args.lat_norm or 200.0,
            steps=args.train_steps,
            bsz=args.bsz,
            lr=args.lr,
            hidden_dim=args.hidden_dim,
            hidden_layer_num=args.hidden_layer_num,
            seed=args.seed,
        )
    else:
        predictor, seconds = timed(
            train_ensemble,
            feats[train_idx],
            cost[train_idx],
            table.latency[train_idx],
            norm,
            feature_set,
            members=args.members,
            seed=args.seed,
            layer_counts=counts,
        )
    results = {}
    for name, idx in (("valid", valid_idx), ("test", test_idx)):
        mean, std = predictor.predict(feats[idx], cost[idx])
        results[name] = {
            **regression_metrics(mean, table.latency[idx]),
            "mean_std_ms": float(std.mean()),
        }
    predictor.metrics = {**results, "train_seconds": seconds, "seed": args.seed}
    kind = (
        "normalized" if table.normalized else "drift-normalized" if args.drift_normalize else "raw"
    )
    predictor.meta = {
        "dataset": str(args.lat_dataset_path),
        "rows": len(table.latency),
        "drift_normalized": args.drift_normalize,
        "latency": kind,
        **table.environment,
    }
    predictor.save(args.ckpt_path)
    plot = args.plot or str(Path(args.ckpt_path).with_suffix(".png"))
    test_mean, _ = predictor.predict(feats[test_idx], cost[test_idx])
    label = (
        "HAT's MLP recipe" if args.predictor == "hat" else f"hat default ({feature_set} features)"
    )
    scatter_plot(
        test_mean,
        table.latency[test_idx],
        results["test"],
        f"{Path(args.lat_dataset_path).stem}: {label}",
        plot,
    )
    m = results["test"]
    print(
        f"{args.lat_dataset_path}: {len(table.latency)} rows ({kind} latency"
        + (f", calibration {table.environment['calibration_ms']} ms" if table.normalized else "")
        + f"), split 8:1:1 (seed {args.seed})"
    )
    print(f"{label}: trained in {seconds:.1f} s")
    print(
        f"test ({len(test_idx)}): RMSE {m['rmse']:.2f} ms | MAPE {m['mape']:.2f}% | max APE {m['max_ape']:.1f}% | "
        f"Kendall tau {m['kendall_tau']:.3f} | Spearman {m['spearman']:.3f} | "
        f"ensemble spread ± {m['mean_std_ms']:.2f} ms (mean std)"
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
