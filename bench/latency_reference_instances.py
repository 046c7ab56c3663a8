"""Benchmark: is a pass's shift against its reference the reference instance or the host? (#14)

In one process, the same N SubTransformers of the Multi30k space (space0.yml, 8000-token
vocabulary, 30 tokens, beam 5, one thread on --core) are timed in several passes, --gap-s
apart, each interleaved (hat's single-run rounds) with three references: L, the large bracket
reference built once per pass (as a latency dataset does); F, the same architecture built
fresh for every SubTransformer; S, the small bracket reference built once per pass. If the
shift of a pass came from L's instance, F would not follow it. Printed (JSON): each pass's
median ratios and the median change of the bracket's normalized latency (S with L, S with F)
against pass 0, with the calibrations given.

    python bench/latency_reference_instances.py [--n 8] [--passes 5] [--latiter 20] \
        [--out runs/reference_instances.json]
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
from hat.latency.timing import MeasureSettings, interleaved, normalize, protocol_timer
from hat.transformer import Transformer


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--gap-s", type=float, default=60.0, help="pause between passes")
    p.add_argument("--latiter", type=int, default=20)
    p.add_argument("--core", default="1", help="the timing's CPU")
    p.add_argument(
        "--calibrations-ms",
        type=float,
        nargs=2,
        default=[65.5, 183.4],
        help="small and large reference's quiet latency (the bracket confirmation's)",
    )
    p.add_argument("--out", default="runs/reference_instances.json")
    args = p.parse_args()
    cli = build_parser().parse_args([f"--configs={SPACE}", "--vocab-size", "8000"])
    space, settings = space_from_args(cli), settings_from_args(cli, 8000)
    measure = MeasureSettings(30, 5, args.latiter, 3, "cpu", 1, cores=args.core)
    small, large = reference_archs(space, "bracket")
    subs = plan_configs(space, args.n, 7)
    passes = []
    for k in range(args.passes):
        if k:
            time.sleep(args.gap_s)
        pass_large, pass_small = Transformer(large, settings), Transformer(small, settings)
        start = time.time()
        rows = [
            interleaved(
                Transformer(a, settings),
                [pass_large, Transformer(large, settings), pass_small],
                measure,
                protocol_timer,
                random.Random(i + 100 * k),
            ).ratios
            for i, a in enumerate(subs)
        ]
        passes.append({"rows": rows, "seconds": round(time.time() - start)})
        print(json.dumps({"pass": k, "seconds": passes[-1]["seconds"]}), flush=True)
    cal = args.calibrations_ms
    for run in passes:
        for name, col in (("L", 0), ("F", 1), ("S", 2)):
            run[f"median_ratio_{name}"] = statistics.median(r[col] for r in run["rows"])
        for name, col in (("bracket_L", 0), ("bracket_F", 1)):
            now = [normalize([r[2], r[col]], cal) for r in run["rows"]]
            first = [normalize([r[2], r[col]], cal) for r in passes[0]["rows"]]
            run[f"{name}_median_change_pct"] = round(
                (statistics.median(b / a for a, b in zip(first, now, strict=True)) - 1) * 100, 2
            )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "passes": passes}, f)
    print(json.dumps({"passes": [{k: v for k, v in r.items() if k != "rows"} for r in passes]}))


if __name__ == "__main__":
    main()
