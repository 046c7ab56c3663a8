"""Benchmark: does normalized latency survive a noisy device? (issue #14)

On the Multi30k space (configs/multi30k/supertransformer/space0.yml, 8000-token vocabulary,
30 tokens, beam 5), N SubTransformers are timed, each interleaved with the references
(--reference: bracket, hat's default, or middle):
  quiet     the first pass; its calibrations are used by every later pass;
  later     the same N again after --gap-min minutes;
  loaded    the same N while a background process keeps one core busy (a bounded
            matrix-multiply loop this script starts and stops itself);
  verify    verify_top on the same candidates, quiet and under that load: do they ship the same
            SubTransformer, and which drift factor do they report? The "predictor" here is the
            quiet pass's own normalized latency, so only the device side is tested;
  predictor MAPE of hat's default predictor on normalized vs raw latency, same rows (all passes).
Median relative differences are per SubTransformer against the quiet pass. With --sweeps S > 1
every pass times its rows in S sweeps and the sweep journals (every run) give, side by side from
the same runs: one sweep alone (latiter / S runs: one sweep of that latiter), the first
1/S of every sweep's rounds (as many runs, spread over the sweeps) and all of them (the rows).
Prints one JSON line per result and writes them to OUT/results.json.

    python bench/latency_repeatability.py [--n 30] [--gap-min 20] [--latiter 30] [--sweeps 2] \
        [--threads 1] [--out runs/latency_repeat]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hat.cli.args import settings_from_args, space_from_args
from hat.cli.latency_dataset import build_parser
from hat.latency.dataset import collect
from hat.latency.features import cost_terms_from_hat, per_layer_features, per_layer_norm
from hat.latency.measure import core_load
from hat.latency.metrics import regression_metrics, split_indices
from hat.latency.rows import REFERENCE_COLUMNS, read_rows, references_in
from hat.latency.sweeps import journal_path
from hat.latency.table import load_table
from hat.latency.timing import REFERENCE_KINDS, MeasureSettings, normalize
from hat.latency.training import train_ensemble
from hat.search.evolution import Candidate
from hat.search.verify import verify_top
from hat.space import ArchConfig
from hat.transformer import Transformer

SPACE = "configs/multi30k/supertransformer/space0.yml"


def _burn(core: int, seconds: float) -> None:
    """Keep `core` busy with matrix multiplies for at most `seconds`."""
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a = torch.tanh(a @ a)


class Load:
    """A background process keeping one core busy, started and stopped here."""

    def __init__(self, core: int, seconds: float):
        self.proc = multiprocessing.get_context("spawn").Process(
            target=_burn, args=(core, seconds), daemon=True
        )

    def __enter__(self) -> Load:
        self.proc.start()
        time.sleep(2)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.join()


def drift(row: dict[str, str]) -> float:
    """The references' timings around a row over their calibrations (geometric mean)."""
    factors = [
        float(row[timed]) / float(row[cal])
        for _, cal, timed, _ in REFERENCE_COLUMNS
        if row.get(timed) and row.get(cal)
    ]
    return float(np.exp(np.mean(np.log(factors))))


def totals(path: Path) -> dict[int, tuple[float, float, float, int]]:
    """config_id -> (raw ms, normalized ms, drift factor, decoder embedding dim)."""
    return {
        int(r["config_id"]): (
            float(r["latency_mean_encoder"]) + float(r["latency_mean_decoder"]),
            float(r["normalized_ms"]),
            drift(r),
            json.loads(r["config"])["decoder_embed_dim"],
        )
        for r in read_rows(path)
    }


def compare(a: dict, b: dict) -> dict:
    """Median / max relative difference (%) of raw and normalized latency, b vs a; the signed
    median of normalized latency's, over all rows and by decoder embedding dim."""
    ids = sorted(set(a) & set(b))
    raw = [abs(b[i][0] - a[i][0]) / a[i][0] * 100 for i in ids]
    signed = {i: (b[i][1] - a[i][1]) / a[i][1] * 100 for i in ids}
    norm = [abs(signed[i]) for i in ids]
    dims = sorted({a[i][3] for i in ids})
    return {
        "n": len(ids),
        "raw_median_pct": statistics.median(raw),
        "raw_max_pct": max(raw),
        "normalized_median_pct": statistics.median(norm),
        "normalized_max_pct": max(norm),
        "normalized_signed_median_pct": statistics.median(signed.values()),
        "normalized_signed_median_by_decoder_dim": {
            d: statistics.median(signed[i] for i in ids if a[i][3] == d) for d in dims
        },
        "raw_median_ratio": statistics.median(b[i][0] / a[i][0] for i in ids),
        "drift_factor_median": statistics.median(b[i][2] for i in ids),
    }


def journal_rounds(path: Path) -> dict[int, tuple[int, list]]:
    """A pass's sweep journal: config_id -> (decoder embedding dim, each sweep's per-reference
    round ratios)."""
    rounds: dict[int, dict[int, list]] = {}
    dims: dict[int, int] = {}
    for line in journal_path(path).read_text().splitlines():
        entry = json.loads(line)
        rounds.setdefault(entry["config_id"], {})[entry["sweep"]] = entry["timings"]["round_ratios"]
        dims[entry["config_id"]] = entry["config"]["decoder_embed_dim"]
    return {cid: (dims[cid], [by[s] for s in sorted(by)]) for cid, by in rounds.items()}


def pooled(sweeps: list, calibrations: list[float]) -> float:
    """Normalized latency from the round ratios of several sweeps, pooled."""
    ratios = [statistics.median(x for s in sweeps for x in s[i]) for i in range(len(calibrations))]
    return normalize(ratios, calibrations)


def sweep_estimates(path: Path, calibrations: list[float]) -> dict[str, dict]:
    """Per estimator, config_id -> (1, normalized ms, 1, decoder dim) (the shape `compare`
    reads): one_sweep (the first sweep's rounds), spread (the first 1/S of every sweep's rounds:
    as many runs, spread over the sweeps), all (every round)."""
    out: dict[str, dict] = {"one_sweep": {}, "spread": {}, "all": {}}
    for cid, (dim, sweeps) in journal_rounds(path).items():
        share = len(sweeps[0][0]) // len(sweeps)
        chosen = {
            "one_sweep": [sweeps[0]],
            "spread": [[ref[:share] for ref in s] for s in sweeps],
            "all": sweeps,
        }
        for name, picked in chosen.items():
            out[name][cid] = (1.0, pooled(picked, calibrations), 1.0, dim)
    return out


def normalized_only(result: dict) -> dict:
    return {k: v for k, v in result.items() if k.startswith("normalized")}


def compare_estimates(a: Path, b: Path, calibrations: list[float]) -> dict:
    """Median / max relative difference of each sweep estimator, pass b vs pass a."""
    ea, eb = sweep_estimates(a, calibrations), sweep_estimates(b, calibrations)
    return {name: normalized_only(compare(ea[name], eb[name])) for name in ea}


def states_averaged(a: Path, b: Path, calibrations: list[float]) -> dict:
    """Two estimates per row, each pooling one sweep of pass a and one of pass b (sweep k of
    each), against each other: what a row timed in two host states repeats to when both
    measurements average the same two states (no third state)."""
    ra, rb = journal_rounds(a), journal_rounds(b)
    first, second = {}, {}
    for cid in sorted(set(ra) & set(rb)):
        (dim, sa), (_, sb) = ra[cid], rb[cid]
        first[cid] = (1.0, pooled([sa[0], sb[0]], calibrations), 1.0, dim)
        second[cid] = (1.0, pooled([sa[1], sb[1]], calibrations), 1.0, dim)
    return normalized_only(compare(first, second))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--gap-min", type=float, default=20.0)
    p.add_argument("--latiter", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--sweeps", type=int, default=MeasureSettings.sweeps, help="sweeps per pass (latiter split)"
    )
    p.add_argument(
        "--rounds", type=int, help="rounds of the interleaving (default: pairs of single runs)"
    )
    p.add_argument("--threads", type=int, help="torch threads while timing (default: torch's)")
    p.add_argument("--reference", choices=REFERENCE_KINDS, default="bracket")
    p.add_argument("--load-core", type=int, default=1, help="the core the background load uses")
    p.add_argument(
        "--cores",
        help="pin every timing to these CPUs, e.g. 1 (the load core: then the load pass shares "
        "the timing's core, as a busy device does; default: wherever the scheduler puts it)",
    )
    p.add_argument(
        "--parts", nargs="+", default=["quiet", "later", "loaded", "verify", "predictor"]
    )
    p.add_argument("--out", default="runs/latency_repeat")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cli = build_parser().parse_args([f"--configs={SPACE}", "--vocab-size", "8000"])
    space, settings = space_from_args(cli), settings_from_args(cli, 8000)
    measure = MeasureSettings(
        30,
        5,
        args.latiter,
        args.warmup,
        "cpu",
        args.threads,
        rounds=args.rounds,
        cores=args.cores,
        reference=args.reference,
        sweeps=args.sweeps,
    )
    results: dict = {
        "machine": os.uname().nodename,
        "cpus": sorted(os.sched_getaffinity(0)),
        "load_at_start": core_load(),
        "args": vars(args),
    }

    def record(name: str, value) -> None:
        results[name] = value
        print(json.dumps({name: value}), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))

    quiet = out / "quiet.csv"
    start = time.time()
    if "quiet" in args.parts:
        collect(space, settings, measure, quiet, args.n, seed=7, progress=False)
        record("quiet_seconds", round(time.time() - start))
    references, calibrations = references_in(read_rows(quiet)[0], quiet)
    record("calibrations_ms", calibrations)
    if "later" in args.parts:
        time.sleep(max(0.0, args.gap_min * 60 - (time.time() - start)))
        later, later_start = out / "later.csv", time.time()
        collect(
            space,
            settings,
            measure,
            later,
            args.n,
            seed=7,
            progress=False,
            calibrations_ms=calibrations,
        )
        record(
            "repeatability",
            {
                **compare(totals(quiet), totals(later)),
                "minutes_between_starts": round((later_start - start) / 60, 1),
            },
        )
        if args.sweeps > 1:
            record("repeatability_by_sweeps", compare_estimates(quiet, later, calibrations))
            record("states_averaged", states_averaged(quiet, later, calibrations))
    if "loaded" in args.parts:
        loaded = out / "loaded.csv"
        with Load(args.load_core, 3600):
            record("load_during", core_load())
            collect(
                space,
                settings,
                measure,
                loaded,
                args.n,
                seed=7,
                progress=False,
                calibrations_ms=calibrations,
            )
        record("under_load", compare(totals(quiet), totals(loaded)))
        if args.sweeps > 1:
            record("under_load_by_sweeps", compare_estimates(quiet, loaded, calibrations))
    if "verify" in args.parts:
        rows = read_rows(quiet)
        archs = [ArchConfig.from_dict(json.loads(r["config"])) for r in rows]
        norm = [float(r["normalized_ms"]) for r in rows]
        budget = float(np.median(norm))
        rng = random.Random(0)  # a loss that prefers bigger models, as a supernet's does
        ranked = sorted(
            (
                Candidate(a, -ms * rng.uniform(0.9, 1.1), ms, 0.0)
                for a, ms in zip(archs, norm, strict=False)
                if ms <= budget
            ),
            key=lambda c: c.loss,
        )

        def verify():
            best, report = verify_top(
                ranked,
                budget,
                3,
                lambda a: Transformer(a, settings),
                measure,
                references=references,
                calibrations_ms=calibrations,
            )
            return best.arch.to_dict(), [
                {
                    k: r[k]
                    for k in (
                        "predicted_ms",
                        "measured_ms",
                        "normalized_ms",
                        "drift",
                        "meets_budget",
                    )
                }
                for r in report
            ]

        quiet_best, quiet_report = verify()
        with Load(args.load_core, 3600):
            loaded_best, loaded_report = verify()
        record(
            "verify",
            {
                "budget_ms": budget,
                "same_shipped": quiet_best == loaded_best,
                "quiet": quiet_report,
                "loaded": loaded_report,
            },
        )
    if "predictor" in args.parts:
        files = [f for f in (quiet, out / "later.csv", out / "loaded.csv") if f.exists()]
        tables = [load_table(f) for f in files]
        configs = [c for t in tables for c in t.configs]
        feats = np.array([per_layer_features(c, 3, 3) for c in configs])
        cost = cost_terms_from_hat(np.concatenate([t.features for t in tables]))
        latency = {
            "normalized": np.concatenate([t.latency for t in tables]),
            "raw": np.concatenate([t.raw_latency for t in tables]),
        }
        mape = {}
        for kind, y in latency.items():
            per_seed = []
            for seed in range(3):
                train, _, test = split_indices(len(y), seed)
                pred = train_ensemble(
                    feats[train],
                    cost[train],
                    y[train],
                    per_layer_norm(3, 3),
                    "per-layer",
                    members=3,
                    steps=500,
                    seed=seed,
                    layer_counts=(3, 3),
                )
                per_seed.append(
                    regression_metrics(pred.predict(feats[test], cost[test])[0], y[test])["mape"]
                )
            mape[kind] = {"mape_mean": statistics.fmean(per_seed), "mape_per_seed": per_seed}
        record("predictor", {"rows": len(configs), "files": [f.name for f in files], **mape})


if __name__ == "__main__":
    main()
