"""How well predicted latencies match measured ones, on HAT's 8:1:1 split of a dataset."""

from __future__ import annotations

import numpy as np
from scipy import stats

MIN_SPLIT_ROWS = 16  # the fewest rows whose 8:1:1 split leaves 2 in valid and test (rank metrics)


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau (scipy's tau-c). Without ties (continuous latencies) tau-a, tau-b and tau-c
    agree, and tau-c is computed as tau-a is, in one division: a perfect (anti-)ranking is
    exactly 1 (-1), where tau-b's square roots give 0.9999999999999999."""
    return float(stats.kendalltau(a, b, variant="c").statistic)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (scipy; tied values share their average rank)."""
    return float(stats.spearmanr(a, b).statistic)


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """RMSE (ms), MAPE (%), max absolute % error, Kendall tau, Spearman rho."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    ape = np.abs(pred - true) / np.abs(true) * 100
    return {
        "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
        "mape": float(ape.mean()),
        "max_ape": float(ape.max()),
        "kendall_tau": kendall_tau(pred, true),
        "spearman": spearman(pred, true),
    }


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HAT's 8:1:1 train / valid / test split of a shuffled dataset."""
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(n * 0.8), int(n * 0.9)
    return perm[:a], perm[a:b], perm[b:]
