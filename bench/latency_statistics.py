"""Benchmark: which statistic of interleaved timings repeats best? (issue #14)

`collect` times N SubTransformers of the Multi30k space (space0.yml, 8000-token vocabulary, 30
tokens, beam 5, one thread), each in --rounds rounds of --runs runs alternating in a random order
with three references (small, middle, large, by the latency proxy), and keeps every run's total
latency (JSON); `--rounds 30 --runs 1` times pairs of single runs, as hat does by default. Run
it twice, 20+ minutes apart; `compare` then computes each candidate statistic on both passes
from the same runs and prints, per statistic, the median and 90th percentile over the
SubTransformers of |second / first - 1| (%), with a bootstrap 95% interval of the median.
Normalized statistics use the first pass's calibration (each reference's trimmed mean over 30
quiet runs), so their difference is that of the ratio.

    python bench/latency_statistics.py collect runs/stats/pass1.json
    python bench/latency_statistics.py collect runs/stats/pass2.json     # 20+ minutes later
    python bench/latency_statistics.py compare runs/stats/pass1.json runs/stats/pass2.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

import numpy as np

from hat.cli.args import settings_from_args, space_from_args
from hat.cli.latency_dataset import build_parser
from hat.latency.measure import measure_latency, trimmed_stats
from hat.latency.plan import plan_configs, proxy_cost
from hat.transformer import Transformer

SPACE = "configs/multi30k/supertransformer/space0.yml"
REFERENCES = ("small", "middle", "large")


def collect(out: str, n: int, rounds: int, runs: int) -> None:
    cli = build_parser().parse_args([f"--configs={SPACE}", "--vocab-size", "8000"])
    space, settings = space_from_args(cli), settings_from_args(cli, 8000)
    by_cost = sorted(plan_configs(space, 200, 3), key=lambda c: proxy_cost(c, 30, 5, 256))
    refs = {
        "small": Transformer(by_cost[20], settings),
        "middle": Transformer(space.middle(), settings),
        "large": Transformer(by_cost[180], settings),
    }

    def timed(model: Transformer, iters: int, warmup: int) -> list[float]:
        return list(measure_latency(model, 30, 5, "cpu", iters, warmup, threads=1).runs_ms)

    rng = random.Random(1)
    result = {"calibration": {k: timed(m, 30, 5) for k, m in refs.items()}, "rows": []}
    for i, arch in enumerate(plan_configs(space, n, 7)):
        model = Transformer(arch, settings)
        row = {"start": time.time(), "rounds": []}
        for r in range(rounds):
            items = [("sub", model), *refs.items()]
            rng.shuffle(items)
            dry = 3 if r == 0 else 1 if runs > 1 else 0  # hat's rule: no dry runs in pairs
            row["rounds"].append({k: timed(m, runs, dry) for k, m in items})
        result["rows"].append(row)
        print(f"{i + 1}/{n}", flush=True)
    with open(out, "w") as f:
        json.dump(result, f)


def _pooled(row: dict, name: str) -> list[float]:
    return [t for r in row["rounds"] for t in r[name]]


def _trimmed(runs: list[float]) -> float:
    return trimmed_stats(runs)[0]


def statistics_of(row: dict, calibration: dict[str, float]) -> dict[str, float]:
    """Every candidate latency of one SubTransformer (ms) from its runs."""
    sub, cal = _pooled(row, "sub"), calibration["middle"]
    rounds = row["rounds"]
    half = len(rounds) // 2

    def ratio(stat: Callable[[list[float]], float], rows=None) -> float:
        chosen = rounds if rows is None else [rounds[i] for i in rows]
        s = [t for r in chosen for t in r["sub"]]
        m = [t for r in chosen for t in r["middle"]]
        return stat(s) / stat(m) * cal

    out = {
        "raw trimmed mean": _trimmed(sub),
        "raw minimum": min(sub),
        "median of per-round trimmed-mean ratios": statistics.median(
            _trimmed(r["sub"]) / _trimmed(r["middle"]) for r in rounds
        )
        * cal,
        "median of per-round ratios of medians (hat's ratio; with --runs 1: pairs)": (
            statistics.median(
                statistics.median(r["sub"]) / statistics.median(r["middle"]) for r in rounds
            )
            * cal
        ),
        "pooled trimmed means": ratio(_trimmed),
        "pooled minima": ratio(min),
        "pooled 10th percentiles": ratio(lambda x: float(np.percentile(x, 10))),
        "pooled 25th percentiles": ratio(lambda x: float(np.percentile(x, 25))),
        "pooled medians": ratio(statistics.median),
        "pooled medians, first half of the rounds": ratio(statistics.median, range(half)),
        "pooled medians, second half of the rounds": ratio(
            statistics.median, range(half, len(rounds))
        ),
    }
    ratios = {k: _trimmed(sub) / _trimmed(_pooled(row, k)) for k in REFERENCES}
    per_ref = {k: ratios[k] * calibration[k] for k in REFERENCES}
    nearest = min(REFERENCES, key=lambda k: abs(np.log(ratios[k])))
    out["nearest of 3 references, trimmed means"] = per_ref[nearest]
    out["geometric mean over 3 references"] = float(np.exp(np.mean(np.log(list(per_ref.values())))))
    return out


def compare(first: str, second: str) -> None:
    with open(first) as f:
        a = json.load(f)
    with open(second) as f:
        b = json.load(f)
    calibration = {k: _trimmed(v) for k, v in a["calibration"].items()}
    sa = [statistics_of(r, calibration) for r in a["rows"]]
    sb = [statistics_of(r, calibration) for r in b["rows"]]
    minutes = statistics.median(
        (y["start"] - x["start"]) / 60 for x, y in zip(a["rows"], b["rows"], strict=True)
    )
    result = {"rows": len(sa), "minutes_apart_median": round(minutes, 1), "statistics": {}}
    rng = np.random.default_rng(0)
    for name in sa[0]:
        d = [abs(y[name] / x[name] - 1) * 100 for x, y in zip(sa, sb, strict=True)]
        boot = np.median(rng.choice(d, (2000, len(d))), axis=1)  # the median's spread
        result["statistics"][name] = {
            "median_pct": round(statistics.median(d), 2),
            "median_ci95_pct": [round(float(x), 2) for x in np.percentile(boot, [2.5, 97.5])],
            "p90_pct": round(float(np.percentile(d, 90)), 1),
        }
    print(json.dumps(result, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("out")
    c.add_argument("--n", type=int, default=30)
    c.add_argument("--rounds", type=int, default=6)
    c.add_argument("--runs", type=int, default=5, help="timed runs per model and round")
    m = sub.add_parser("compare")
    m.add_argument("first")
    m.add_argument("second")
    args = p.parse_args()
    if args.command == "collect":
        collect(args.out, args.n, args.rounds, args.runs)
    else:
        compare(args.first, args.second)


if __name__ == "__main__":
    main()
