"""Benchmark: does a whole pass shift against its reference, and does calibrating cause it? (#14)

Every confirmation of bench/latency_repeatability.py showed its later passes shifted by about
+2% against the first, which alone calibrates its references. Here, in one process, the same N
SubTransformers of the Multi30k space (space0.yml, 8000-token vocabulary, 30 tokens, beam 5,
one thread on --core) are timed against a fresh instance of the large bracket reference in
several passes (hat's interleaving, --latiter single-run rounds), the reference calibrated
first in the passes marked "c" of --passes. Printed (JSON): each pass's ratios and the median
ratio change against pass 0 (%).

    python bench/latency_pass_shift.py [--n 8] [--passes c,n,c,n,n,c] [--out runs/pass_shift.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

from latency_repeatability import SPACE

from hat.cli.args import settings_from_args, space_from_args
from hat.cli.latency_dataset import build_parser
from hat.latency.plan import plan_configs, reference_archs
from hat.latency.timing import MeasureSettings, calibrate, interleaved, protocol_timer
from hat.transformer import Transformer


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--passes", default="c,n,c,n,n,c", help="c: calibrate first, n: do not")
    p.add_argument("--latiter", type=int, default=30)
    p.add_argument("--core", default="1", help="the timing's CPU")
    p.add_argument("--out", default="runs/pass_shift.json")
    args = p.parse_args()
    cli = build_parser().parse_args([f"--configs={SPACE}", "--vocab-size", "8000"])
    space, settings = space_from_args(cli), settings_from_args(cli, 8000)
    measure = MeasureSettings(30, 5, args.latiter, 3, "cpu", 1, cores=args.core)
    large = reference_archs(space, "bracket")[1]
    subs = plan_configs(space, args.n, 7)
    passes = []
    for kind in args.passes.split(","):
        ref = Transformer(large, settings)  # a fresh instance each pass
        start = time.time()
        if kind == "c":
            calibrate(ref, measure, protocol_timer)
        ratios = [
            interleaved(
                Transformer(a, settings), [ref], measure, protocol_timer, random.Random(i)
            ).ratios[0]
            for i, a in enumerate(subs)
        ]
        passes.append(
            {"calibrated": kind == "c", "ratios": ratios, "seconds": round(time.time() - start)}
        )
    for run in passes:
        change = statistics.median(
            b / a for a, b in zip(passes[0]["ratios"], run["ratios"], strict=True)
        )
        run["median_change_pct"] = round((change - 1) * 100, 2)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(passes, f)
    print(
        json.dumps(
            {"passes": [{k: r[k] for k in ("calibrated", "median_change_pct")} for r in passes]}
        )
    )


if __name__ == "__main__":
    main()
