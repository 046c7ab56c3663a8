"""Benchmark: can two references follow a size-dependent slowdown under load? (issue #14)

Under a busy core, the smallest SubTransformers slow down relatively more than the middle
reference, so normalizing by one reference leaves a size-dependent error (docs/benchmarks.md).
Here N SubTransformers of the Multi30k space (space0.yml, 8000-token vocabulary, 30 tokens,
beam 5, one thread pinned to --core) are each timed in --rounds rounds of single runs of
(SubTransformer, small, middle, large reference) in a random order: small and large are the
10th and 190th of 200 samples by the latency proxy. Pass 1 is quiet, pass 2 runs while a
bounded matrix-multiply loop keeps the same core busy. Printed (JSON): per estimate, the
median |loaded / quiet - 1| (%) over the SubTransformers; estimates: normalized by each
reference alone (median of the rounds' ratios x that reference's quiet median run), and
"interpolated": the small and the large reference's estimates combined in log latency at the
middle estimate's position between their calibrations (clipped to that range).

    python bench/latency_two_references.py [--n 10] [--rounds 30] [--out runs/two_refs.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import statistics
import time

import numpy as np
import torch
from latency_repeatability import SPACE, Load

from hat.cli.args import settings_from_args, space_from_args
from hat.cli.latency_dataset import build_parser
from hat.generate import beam_search
from hat.latency.plan import plan_configs, proxy_cost
from hat.transformer import Transformer

REFERENCES = ("small", "middle", "large")


def estimates(runs: dict[str, list[float]], cal: dict[str, float]) -> dict[str, float]:
    """Normalized latency of one SubTransformer by each reference, and interpolated."""
    sub = np.array(runs["sub"])
    by = {k: float(np.median(sub / np.array(runs[k]))) * cal[k] for k in REFERENCES}
    lo, hi = math.log(cal["small"]), math.log(cal["large"])
    w = min(1.0, max(0.0, (math.log(by["middle"]) - lo) / (hi - lo)))
    return {
        **by,
        "interpolated": math.exp((1 - w) * math.log(by["small"]) + w * math.log(by["large"])),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--core", type=int, default=1, help="the timing's core and the load's")
    p.add_argument("--out", default="runs/two_references.json")
    args = p.parse_args()
    cli = build_parser().parse_args([f"--configs={SPACE}", "--vocab-size", "8000"])
    space, settings = space_from_args(cli), settings_from_args(cli, 8000)
    os.sched_setaffinity(0, {args.core})
    torch.set_num_threads(1)
    by_cost = sorted(plan_configs(space, 200, 3), key=lambda c: proxy_cost(c, 30, 5, 256))
    refs = {
        "small": Transformer(by_cost[10], settings).eval(),
        "middle": Transformer(space.middle(), settings).eval(),
        "large": Transformer(by_cost[190], settings).eval(),
    }
    models = [Transformer(a, settings).eval() for a in plan_configs(space, args.n, 7)]
    src = torch.randint(4, 8000, (1, 30), generator=torch.Generator().manual_seed(0))

    def run(model: Transformer) -> float:
        t = time.perf_counter()
        model.encode(src)
        beam_search(model, src, beam=5, max_len_a=0, max_len_b=29, min_len=29)
        return (time.perf_counter() - t) * 1000

    rng = random.Random(0)
    passes: dict[str, list[dict[str, list[float]]]] = {}
    with torch.inference_mode():
        cal = {}
        for k, m in refs.items():
            run(m)
            cal[k] = statistics.median(run(m) for _ in range(20))
        for name in ("quiet", "loaded"):
            load = Load(args.core, 3600) if name == "loaded" else contextlib.nullcontext()
            rows = []
            with load:
                for model in models:
                    items = [("sub", model), *refs.items()]
                    for _, m in items:
                        run(m)  # one dry run each
                    runs: dict[str, list[float]] = {k: [] for k, _ in items}
                    for _ in range(args.rounds):
                        rng.shuffle(items)
                        for k, m in items:
                            runs[k].append(run(m))
                    rows.append(runs)
            passes[name] = rows
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"calibration_ms": cal, "passes": passes}, f)
    quiet = [estimates(r, cal) for r in passes["quiet"]]
    loaded = [estimates(r, cal) for r in passes["loaded"]]
    result = {"calibration_ms": cal, "n": args.n, "rounds": args.rounds}
    for k in quiet[0]:
        d = [(b[k] / a[k] - 1) * 100 for a, b in zip(quiet, loaded, strict=True)]
        result[k] = {
            "median_abs_pct": round(float(np.median(np.abs(d))), 2),
            "per_subtransformer_pct": [round(x, 1) for x in d],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
