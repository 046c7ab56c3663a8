"""Fit a latency predictor on a latency dataset (`hat latency-predictor`, `hat pipeline`).

HAT's 8:1:1 train / valid / test split; the chosen recipe on the chosen feature set; metrics
on valid and test, and the dataset's settings and environment in the predictor's metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from hat.errors import HatError
from hat.latency.features import (
    HAT_FEATURE_NORM,
    cost_terms_from_hat,
    per_layer_features,
    per_layer_norm,
)
from hat.latency.metrics import MIN_SPLIT_ROWS, regression_metrics, split_indices
from hat.latency.predictor import Predictor
from hat.latency.rows import REFERENCE_TIMED_KEYS
from hat.latency.table import LatencyTable
from hat.latency.training import ENSEMBLE_MEMBERS, train_ensemble, train_hat_recipe
from hat.settings import setting

RECIPES = ("default", "hat")  # physics x MLP ensemble (uncertainty); HAT's MLP recipe
FEATURE_SETS = ("auto", "hat10", "per-layer")
T = TypeVar("T")


@dataclass(frozen=True)
class HatRecipe:
    """HAT's MLP recipe (`train_hat_recipe`): features / feature_norm -> latency / lat_norm."""

    feature_norm: tuple[float, ...] = HAT_FEATURE_NORM  # the CLI's --feature-norm (optional)
    lat_norm: float = 200.0  # the CLI's --lat-norm (optional)
    steps: int = setting(5000, "HAT's recipe: training steps", key="train-steps", hat=True)
    bsz: int = setting(128, "HAT's recipe: batch size", hat=True)
    lr: float = setting(1e-5, "HAT's recipe: Adam learning rate", hat=True)
    hidden_dim: int = setting(400, "HAT's recipe: hidden width", hat=True)
    hidden_layer_num: int = setting(3, "HAT's recipe: hidden layers", hat=True)


@dataclass
class FitResult:
    predictor: Predictor  # its metrics and meta filled in
    metrics: dict[str, dict[str, float]]  # "valid" / "test" -> regression metrics, mean std
    test_index: np.ndarray  # the table's rows in the test split
    test_pred: np.ndarray  # their predicted (mean) latency, ms
    train_seconds: float


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """fn(*args, **kwargs) and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def choose_features(table: LatencyTable, recipe: str, features: str) -> str:
    """The feature set: `features`, or for "auto" per-layer when the table stores configs
    (hat's datasets do) and the recipe is hat's default, else HAT's 10."""
    if recipe not in RECIPES or features not in FEATURE_SETS:
        raise HatError(
            f"unknown recipe {recipe!r} or feature set {features!r}: the recipes are "
            f"{', '.join(RECIPES)}, the feature sets {', '.join(FEATURE_SETS)}"
        )
    if features == "auto":
        features = "per-layer" if table.configs and recipe == "default" else "hat10"
    if features == "per-layer" and not table.configs:
        raise HatError(f"{table.path} stores no configs: per-layer features need hat's datasets")
    if recipe == "hat" and features != "hat10":
        raise HatError(
            "HAT's recipe uses HAT's 10 features: "
            "drop --features per-layer or use --predictor default"
        )
    return features


def feature_matrix(
    table: LatencyTable, feature_set: str, layer_counts: tuple[int, int] | None = None
) -> tuple[np.ndarray, list[float], tuple[int, int] | None]:
    """(raw features, their norm, layer counts) of a table in a feature set; per-layer features
    pad to `layer_counts` (default: the table's deepest encoder and decoder)."""
    if feature_set == "hat10":
        return table.features, list(HAT_FEATURE_NORM), None
    counts = layer_counts or (
        max(c.encoder_layer_num for c in table.configs),
        max(c.decoder_layer_num for c in table.configs),
    )
    feats = np.array([per_layer_features(c, *counts) for c in table.configs])
    return feats, per_layer_norm(*counts), counts


def fit_predictor(
    table: LatencyTable,
    *,
    recipe: str = "default",
    features: str = "auto",
    seed: int = 1,
    members: int = ENSEMBLE_MEMBERS,
    layer_counts: tuple[int, int] | None = None,
    hat_recipe: HatRecipe | None = None,
) -> FitResult:
    """Train a predictor with `recipe` ("default" or "hat", then `hat_recipe`'s settings) on
    the train split of `table`, `seed` fixing the split and the training."""
    n = len(table.latency)
    if n < MIN_SPLIT_ROWS:
        raise HatError(
            f"{table.path} has {n} rows: a predictor needs at least {MIN_SPLIT_ROWS} rows for a "
            f"train/valid/test split (8:1:1, 2 or more in valid and test); measure more with "
            f"`hat latency-dataset`"
        )
    feature_set = choose_features(table, recipe, features)
    feats, norm, counts = feature_matrix(table, feature_set, layer_counts)
    cost = cost_terms_from_hat(table.features)
    train, valid, test = split_indices(n, seed)
    if recipe == "hat":
        hat = hat_recipe or HatRecipe()
        predictor, seconds = timed(
            train_hat_recipe,
            feats[train],
            table.latency[train],
            list(hat.feature_norm),
            hat.lat_norm,
            steps=hat.steps,
            bsz=hat.bsz,
            lr=hat.lr,
            hidden_dim=hat.hidden_dim,
            hidden_layer_num=hat.hidden_layer_num,
            seed=seed,
        )
    else:
        predictor, seconds = timed(
            train_ensemble,
            feats[train],
            cost[train],
            table.latency[train],
            norm,
            feature_set,
            members=members,
            seed=seed,
            layer_counts=counts,
        )
    splits = {"valid": valid, "test": test}
    predicted = {name: predictor.predict(feats[idx], cost[idx]) for name, idx in splits.items()}
    metrics = {
        name: {
            **regression_metrics(mean, table.latency[splits[name]]),
            "mean_std_ms": float(std.mean()),
        }
        for name, (mean, std) in predicted.items()
    }
    predictor.metrics = {**metrics, "train_seconds": seconds, "seed": seed}
    predictor.meta = {
        "dataset": table.path,
        "rows": n,
        "drift_normalized": table.drift_normalized,
        "latency": table.latency_kind,
        **table.environment,
    }
    for key, timings in zip(
        REFERENCE_TIMED_KEYS, (table.reference_ms, table.reference2_ms), strict=True
    ):
        if timings is not None:  # the reference as the rows timed it: drift's baseline
            predictor.meta[key] = float(np.median(timings))
    return FitResult(
        predictor=predictor,
        metrics=metrics,
        test_index=test,
        test_pred=predicted["test"][0],
        train_seconds=seconds,
    )
