"""Benchmark: latency predictors on HAT's published datasets and on hat's own CPU dataset.

For each dataset and 5 seeds of HAT's 8:1:1 split: HAT's recipe (MLP on the 10 features,
MSE, Adam 1e-5, 5000 steps of 128) vs hat's default (physics x MLP ensemble); test MAPE, RMSE,
Kendall tau, training seconds. Then few-shot transfer between HAT's WMT devices (n = 20, 50,
100 samples of the new device), and, when present, hat's CPU dataset with per-layer features.
Prints one JSON object per result line and a summary line.

    python bench/latency_predictors.py [--seeds 5] [--parts hat few-shot ours] \
        [--ours latency_dataset/iwslt14deen_cpu_epyc.csv]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from hat.latency.features import (
    HAT_FEATURE_NORM,
    cost_terms_from_hat,
    per_layer_features,
    per_layer_norm,
)
from hat.latency.fit import timed
from hat.latency.metrics import regression_metrics, split_indices
from hat.latency.table import load_table
from hat.latency.training import adapt, train_ensemble, train_hat_recipe

SHARED = Path(__file__).resolve().parents[2] / "shared/data/hat-latency"
HAT_DATASETS = {  # name -> lat-norm of HAT's predictor YAML
    "iwslt14deen_gpu_titanxp": 200,
    "wmt14ende_cpu_raspberrypi": 5000,
    "wmt14ende_cpu_xeon": 300,
    "wmt14ende_gpu_titanxp": 200,
}
NORM = list(HAT_FEATURE_NORM)


def evaluate(predictor, feats, cost, latency, idx) -> dict:
    return regression_metrics(predictor.predict(feats[idx], cost[idx])[0], latency[idx])


def compare(name: str, table, seeds: int, per_layer: bool = False, recipe: bool = True) -> dict:
    cost = cost_terms_from_hat(table.features)
    feats, norm = table.features, NORM
    if per_layer:
        counts = (
            max(c.encoder_layer_num for c in table.configs),
            max(c.decoder_layer_num for c in table.configs),
        )
        feats, norm = (
            np.array([per_layer_features(c, *counts) for c in table.configs]),
            per_layer_norm(*counts),
        )
    lat_norm = HAT_DATASETS.get(name, float(np.median(table.latency)))
    rows = {"hat": [], "ours": []}
    for seed in range(1, seeds + 1):
        train, _, test = split_indices(len(table.latency), seed)
        ours, t_ours = timed(
            train_ensemble,
            feats[train],
            cost[train],
            table.latency[train],
            norm,
            "per-layer" if per_layer else "hat10",
            seed=seed,
        )
        if recipe:
            hat, t_hat = timed(
                train_hat_recipe,
                table.features[train],
                table.latency[train],
                NORM,
                lat_norm,
                seed=seed,
            )
            rows["hat"].append(
                {**evaluate(hat, table.features, cost, table.latency, test), "train_seconds": t_hat}
            )
        rows["ours"].append(
            {**evaluate(ours, feats, cost, table.latency, test), "train_seconds": t_ours}
        )
    out = {"dataset": name, "features_ours": "per-layer" if per_layer else "hat10", "seeds": seeds}
    for who, results in rows.items():
        if results:
            out[who] = {k: statistics.fmean(r[k] for r in results) for k in results[0]}
    if recipe:
        out["mape_ratio_ours_over_hat"] = out["ours"]["mape"] / out["hat"]["mape"]
    return out


def few_shot(src: str, dst: str, seeds: int) -> dict:
    a, b = load_table(SHARED / f"{src}_all.csv"), load_table(SHARED / f"{dst}_all.csv")
    ca, cb = cost_terms_from_hat(a.features), cost_terms_from_hat(b.features)
    train_a, _, _ = split_indices(len(a.latency), 1)
    base = train_ensemble(
        a.features[train_a], ca[train_a], a.latency[train_a], NORM, "hat10", seed=1
    )
    out = {"from": src, "to": dst, "zero_shot_mape": None, "mape": {}}
    _, _, test_b = split_indices(len(b.latency), 1)
    for n in (20, 50, 100):
        results = {"scale": [], "physics": [], "scratch": []}
        for seed in range(1, seeds + 1):
            pool, _, _ = split_indices(len(b.latency), 1)
            few = np.random.default_rng(seed).choice(pool, n, replace=False)
            for mode in ("scale", "physics"):
                tuned = adapt(base, b.features[few], cb[few], b.latency[few], mode)
                results[mode].append(evaluate(tuned, b.features, cb, b.latency, test_b)["mape"])
            scratch = train_ensemble(
                b.features[few], cb[few], b.latency[few], NORM, "hat10", seed=seed
            )
            results["scratch"].append(evaluate(scratch, b.features, cb, b.latency, test_b)["mape"])
        out["mape"][n] = {k: statistics.fmean(v) for k, v in results.items()}
    out["zero_shot_mape"] = evaluate(base, b.features, cb, b.latency, test_b)["mape"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--ours",
        default=str(
            Path(__file__).resolve().parents[1] / "latency_dataset/iwslt14deen_cpu_epyc.csv"
        ),
    )
    p.add_argument(
        "--parts",
        nargs="+",
        choices=("hat", "few-shot", "ours"),
        default=["hat", "few-shot", "ours"],
        help="which comparisons to run (each prints its own lines)",
    )
    p.add_argument(
        "--no-recipe",
        action="store_true",
        help="skip training HAT's recipe (its results are seeded: reuse an earlier run's)",
    )
    args = p.parse_args()
    summary = {}
    if "hat" in args.parts:
        for name in HAT_DATASETS:
            r = compare(
                name, load_table(SHARED / f"{name}_all.csv"), args.seeds, recipe=not args.no_recipe
            )
            print(json.dumps(r), flush=True)
            summary[name] = round(r.get("mape_ratio_ours_over_hat", r["ours"]["mape"]), 3)
    if "few-shot" in args.parts:
        for src, dst in (
            ("wmt14ende_cpu_xeon", "wmt14ende_cpu_raspberrypi"),
            ("wmt14ende_cpu_raspberrypi", "wmt14ende_cpu_xeon"),
            ("wmt14ende_cpu_xeon", "wmt14ende_gpu_titanxp"),
        ):
            print(json.dumps(few_shot(src, dst, args.seeds)), flush=True)
    if "ours" in args.parts and Path(args.ours).is_file():
        table = load_table(args.ours)
        for per_layer in (False, True):
            r = compare(
                Path(args.ours).stem,
                table,
                args.seeds,
                per_layer=per_layer,
                recipe=not args.no_recipe,
            )
            print(json.dumps(r), flush=True)
            summary[f"{Path(args.ours).stem} ({r['features_ours']})"] = round(
                r.get("mape_ratio_ours_over_hat", r["ours"]["mape"]), 3
            )
    print(json.dumps({"mape_ratio_ours_over_hat" if not args.no_recipe else "mape_ours": summary}))


if __name__ == "__main__":
    main()
