"""Latency datasets: time the plan's SubTransformers on this device, append CSV rows.

Re-running the same command resumes: the plan (`hat.latency.plan`) is the same, and rows
already in the file are skipped. Each row is appended and flushed as soon as it is measured,
timed interleaved with fixed reference SubTransformers (`hat.latency.timing`), in one sweep or
several (`--lat-sweeps`, `hat.latency.sweeps`).
"""

from __future__ import annotations

import csv
import io
import os
import random
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from hat.errors import HatError
from hat.fsutil import complete_lines, json_sha256
from hat.latency.measure import warn_if_loaded
from hat.latency.plan import plan_configs, reference_archs
from hat.latency.rows import (
    EXTRA_COLUMNS,
    HAT_COLUMNS,
    REFERENCE_COLUMNS,
    config_json,
    parse_rows,
    read_rows,
    read_text,
    references_in,
    row_config,
    row_for,
)
from hat.latency.sweeps import SweepJournal, journal_path
from hat.latency.table import drift_report
from hat.latency.timing import (
    Interleaved,
    MeasureSettings,
    Timer,
    calibrate,
    cpu_model,
    dataset_measure,
    device_name,
    interleaved,
    merge,
    protocol_timer,
)
from hat.space import ArchConfig, SearchSpace
from hat.transformer import ModelSettings, Transformer


def _resume(
    path: Path, plan: list[ArchConfig], references: list[ArchConfig], recorded: dict[str, Any]
) -> tuple[set[int], list[float]]:
    """The plan positions `path` holds and its calibrations, checked to be this plan's, these
    references' and timed with these `recorded` settings before anything is written; only then
    is a half-written last line (a kill during a write) cut off."""
    data = path.read_bytes()
    complete = complete_lines(data)
    done: set[int] = set()
    calibrations: list[float] = []
    if complete:
        rows = parse_rows(read_text(path, complete), path, allow_empty=True)
        for row in rows:
            cid = int(row.get("config_id") or -1)
            ours = 0 <= cid < len(plan) and row.get("config") and row_config(row, path) == plan[cid]
            if not ours:
                raise HatError(
                    f"{path} holds rows of another plan (space, size, sampling or seed "
                    f"differ): use a new --lat-dataset-path, or the settings it was "
                    f"collected with"
                )
            done.add(cid)
        if next(csv.reader(io.StringIO(read_text(path, complete)))) != HAT_COLUMNS + EXTRA_COLUMNS:
            raise HatError(
                f"{path} was written by an older hat (other columns): measure into "
                f"a new --lat-dataset-path"
            )
        if rows:
            archs, calibrations = references_in(rows[0], path)
            if archs != references:
                raise HatError(
                    f"{path} was timed against other reference SubTransformers (another "
                    f"--reference or space): use a new --lat-dataset-path"
                )
            for key, value in recorded.items():
                if rows[0].get(key, "") != str(value):
                    raise HatError(
                        f"{path} was timed with {key} {rows[0].get(key)!r}, not {value!r}: "
                        f"resume with the settings it was collected with, or use a new "
                        f"--lat-dataset-path"
                    )
    elif not (",".join(HAT_COLUMNS + EXTRA_COLUMNS) + "\r\n").encode().startswith(data):
        raise HatError(
            f"{path} is not a latency dataset (no complete line, not a torn header): "
            f"use a new --lat-dataset-path"
        )
    if len(complete) < len(data):
        os.truncate(path, len(complete))
    return done, calibrations


def _sweep_rng(base: int, sweep: int) -> random.Random:
    """The interleaving order's generator of a row's sweep (sweep 0: seeded by `base` alone)."""
    return random.Random(base * 1_009**sweep)


def collect(
    space: SearchSpace,
    settings: ModelSettings,
    measure: MeasureSettings,
    path: str | Path,
    size: int,
    seed: int = 1,
    sampling: str = "uniform",
    progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
    timer: Timer = protocol_timer,
    calibrations_ms: Sequence[float] | None = None,
) -> dict:
    """Measure the plan's configs not yet in `path` (appending rows), each interleaved with the
    references (`measure.reference`); return a drift report. The calibrations (the references'
    quiet latencies) are `calibrations_ms`, else the file's, else measured now."""
    path = Path(path)
    plan = plan_configs(space, size, seed, sampling, measure.sentence_length, measure.beam)
    archs = reference_archs(space, measure.reference, measure.sentence_length, measure.beam)
    env = {
        "device": device_name(measure.device),
        "cpu_model": cpu_model(),
        "torch_version": torch.__version__,
        "runtime": measure.runtime,
        "dtype": measure.dtype,
        "warmup": measure.warmup,
        "rounds": measure.round_count,
        "sweeps": measure.sweep_count,
        **{cols[0]: config_json(a) for cols, a in zip(REFERENCE_COLUMNS, archs, strict=False)},
    }
    recorded = {
        **{k: v for k, v in env.items() if k not in ("reference", "reference2")},
        "sentence_length": measure.sentence_length,
        "beam": measure.beam,
        "iters": measure.iters,
        "protocol": measure.protocol,
    }
    sweeps = measure.sweep_count  # checked before anything is timed
    done, stored = (
        _resume(path, plan, archs, recorded)
        if path.exists() and path.stat().st_size
        else (set(), [])
    )
    todo = [i for i in range(len(plan)) if i not in done]
    journal = SweepJournal(
        journal_path(path),
        json_sha256({**recorded, "references": [env.get(c[0]) for c in REFERENCE_COLUMNS]}),
    )
    parts = journal.load(plan) if sweeps > 1 and todo else {}
    references = [Transformer(a, settings) for a in archs]
    if calibrations_ms is not None and len(calibrations_ms) != len(references):
        raise HatError(
            f"{len(calibrations_ms)} calibration(s) given for {len(references)} reference "
            f"SubTransformer(s) (--reference {measure.reference})"
        )
    if measure.device == "cpu" and todo:
        warn_if_loaded(measure.core_set)
    if (
        calibrations_ms
        and stored
        and any(abs(a - b) > 1e-3 for a, b in zip(calibrations_ms, stored, strict=True))
    ):
        raise HatError(
            f"{path} was calibrated at {' / '.join(map(str, stored))} ms, not "
            f"{' / '.join(map(str, calibrations_ms))}: one file has one calibration "
            f"(use a new --lat-dataset-path)"
        )
    calibrations = list(
        calibrations_ms
        or stored
        or ([calibrate(r, measure, timer) for r in references] if todo else [])
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HAT_COLUMNS + EXTRA_COLUMNS)
        if new_file:
            writer.writeheader()
        bar = tqdm(
            total=len(plan) * sweeps,
            initial=len(done) * sweeps + sum(1 for cid, _ in parts if cid not in done),
            desc="latency dataset" + (f" ({sweeps} sweeps)" if sweeps > 1 else ""),
            unit="timing",
            disable=not progress or None,
        )
        for sweep in range(sweeps):
            for cid in todo:
                res = parts.get((cid, sweep))
                if res is None:
                    res = interleaved(
                        Transformer(plan[cid], settings),
                        references,
                        measure.sweep(sweep),
                        timer,
                        _sweep_rng(seed * 1_000_003 + cid, sweep),
                    )
                    bar.update(1)
                    bar.set_postfix(
                        ms=f"{res.latency.total_ms:.1f}",
                        norm=f"{res.normalized_ms(calibrations):.1f}",
                        drift=f"{res.reference_ms[0] / calibrations[0]:.2f}",
                    )
                    if sweeps > 1:
                        journal.append(cid, sweep, plan[cid], res)
                        parts[(cid, sweep)] = res
                if sweep < sweeps - 1:
                    continue
                timed = [parts[(cid, s)] for s in range(sweep)] + [res]
                pooled = merge(timed)
                row = row_for(
                    plan[cid],
                    cid,
                    pooled.latency,
                    pooled.reference_ms,
                    env,
                    pooled.ratios,
                    calibrations,
                    [t.normalized_ms(calibrations) for t in timed],
                )
                writer.writerow(row)
                f.flush()
                os.fsync(f.fileno())
                if on_row:
                    on_row(row)
        bar.close()
    return drift_report(read_rows(path))


def recheck(
    path: str | Path,
    settings: ModelSettings,
    measure: MeasureSettings,
    n: int = 20,
    seed: int = 1,
    progress: bool = True,
    timer: Timer = protocol_timer,
) -> dict:
    """Re-time `n` random rows of a dataset (interleaved with its references) with the protocol
    and settings it records (on `measure.device`; `measure` where it records none): the
    measurement's repeatability, of the raw latency and, where the file has it, of the
    normalized latency."""
    rows = [r for r in read_rows(path) if r.get("config")]
    if not rows:
        raise HatError(f"{path} stores no configs (a HAT dataset?): cannot re-measure its rows")
    if rows[0].get("protocol"):
        measure = dataset_measure(rows[0], measure.device)
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    archs, calibrations = references_in(rows[0], path)
    references = [Transformer(a, settings) for a in archs]
    models = [Transformer(row_config(row, path), settings) for row in picked]
    bar = tqdm(
        total=len(picked) * measure.sweep_count if references else len(picked),
        desc="re-measure",
        unit="timing",
        disable=not progress or None,
    )
    if references:
        timed: list[list[Interleaved]] = [[] for _ in picked]
        for sweep in range(measure.sweep_count):
            for row, model, parts in zip(picked, models, timed, strict=True):
                rng = _sweep_rng(seed + int(row["config_id"]), sweep)
                parts.append(interleaved(model, references, measure.sweep(sweep), timer, rng))
                bar.update(1)
        pooled = [merge(parts) for parts in timed]
        totals = [p.latency.total_ms for p in pooled]
    else:  # an older file: no reference to interleave with
        totals = []
        for model in models:
            totals.append(timer(model, measure).total_ms)
            bar.update(1)
    bar.close()
    raw, norm = [], []
    for i, (row, total) in enumerate(zip(picked, totals, strict=True)):
        first = float(row["latency_mean_encoder"]) + float(row["latency_mean_decoder"])
        raw.append(abs(total - first) / first * 100)
        if references and calibrations and row.get("normalized_ms"):
            first = float(row["normalized_ms"])
            norm.append(abs(pooled[i].normalized_ms(calibrations) - first) / first * 100)
    report = {
        "rechecked": len(raw),
        "median_rel_diff_pct": statistics.median(raw),
        "max_rel_diff_pct": max(raw),
        "mean_rel_diff_pct": statistics.fmean(raw),
    }
    if norm:
        report.update(
            normalized_median_rel_diff_pct=statistics.median(norm),
            normalized_max_rel_diff_pct=max(norm),
        )
    return report
