"""A latency dataset as arrays for predictors, and the drift of its reference timings."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from hat.errors import HatError
from hat.latency.features import HAT_FEATURE_NAMES
from hat.latency.rows import (
    ENVIRONMENT_COLUMNS,
    REFERENCE_COLUMNS,
    read_rows,
    row_config,
    sweep_normalized_ms,
)
from hat.space import ArchConfig


@dataclass
class LatencyTable:
    """A latency dataset as arrays: HAT's raw features, total latency (ms), optional configs."""

    features: np.ndarray  # (n, 10), before feature-norm
    latency: np.ndarray  # (n,) what predictors learn: normalized if the file has it, else raw
    configs: list[ArchConfig] | None  # hat's own datasets store them
    reference_ms: np.ndarray | None  # the (first) reference's timing around each row
    environment: dict[str, str]
    raw_latency: np.ndarray | None = None  # (n,) encoder + decoder mean as timed, ms
    normalized: bool = False  # `latency` is ratio x calibration
    drift_normalized: bool = False  # `latency` is scaled by median(reference) / reference
    path: str = ""  # the CSV it was read from
    reference2_ms: np.ndarray | None = None  # the second reference's, where there is one

    @property
    def latency_kind(self) -> str:
        """What `latency` is: "normalized", "drift-normalized" or "raw"."""
        if self.normalized:
            return "normalized"
        return "drift-normalized" if self.drift_normalized else "raw"


def normalise_by_reference(latency: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale each row by median(reference) / its reference timing: removes slow drift."""
    reference = np.asarray(reference, float)
    return np.asarray(latency, float) * (np.median(reference) / reference)


def load_table(path: str | Path, drift_normalize: bool = False, raw: bool = False) -> LatencyTable:
    """Read a latency CSV: normalized latency when every row has it (unless `raw`), else the
    timed latency, scaled by the reference timings with `drift_normalize` (older files)."""
    rows = read_rows(path)  # checks that the numbers and configs parse
    features = np.array([[float(r[c]) for c in HAT_FEATURE_NAMES] for r in rows])
    latency = np.array(
        [float(r["latency_mean_encoder"]) + float(r["latency_mean_decoder"]) for r in rows]
    )
    raw_latency = latency
    configs = None
    if all(r.get("config") for r in rows):
        configs = [row_config(r, path) for r in rows]
    reference, reference2 = (
        np.array([float(r[col]) for r in rows]) if all(r.get(col) for r in rows) else None
        for _, _, col, _ in REFERENCE_COLUMNS
    )
    normalized = not raw and not drift_normalize and all(r.get("normalized_ms") for r in rows)
    if normalized:
        latency = np.array([float(r["normalized_ms"]) for r in rows])
    if drift_normalize:
        if reference is None:
            raise HatError(f"{path} has no reference_ms column: it cannot be drift-normalised")
        latency = normalise_by_reference(latency, reference)
    return LatencyTable(
        features=features,
        latency=latency,
        configs=configs,
        reference_ms=reference,
        environment={k: rows[-1][k] for k in ENVIRONMENT_COLUMNS if rows[-1].get(k)},
        raw_latency=raw_latency,
        normalized=normalized,
        drift_normalized=drift_normalize,
        path=str(path),
        reference2_ms=reference2,
    )


def drift_report(rows: list[dict[str, str]]) -> dict:
    """How the reference SubTransformer's latency moved while the dataset was measured; with a
    calibration, the drift factors (reference now / reference quiet)."""
    refs = [float(r["reference_ms"]) for r in rows if r.get("reference_ms")]
    if not refs:
        return {"reference_measurements": 0}
    distinct = [refs[0]] + [b for a, b in pairwise(refs) if b != a]
    med = statistics.median(distinct)
    report = {
        "reference_measurements": len(distinct),
        "reference_median_ms": med,
        "reference_min_ms": min(distinct),
        "reference_max_ms": max(distinct),
        "drift_range_pct": (max(distinct) - min(distinct)) / med * 100,
        "drift_first_to_last_pct": (distinct[-1] - distinct[0]) / distinct[0] * 100,
    }
    if rows[0].get("calibration_ms"):
        cal = float(rows[0]["calibration_ms"])
        report.update(
            calibration_ms=cal, drift_factor_median=med / cal, drift_factor_max=max(distinct) / cal
        )
    spreads = [
        (max(ms) - min(ms)) / min(ms) * 100
        for ms in (sweep_normalized_ms(r, "") for r in rows)
        if len(ms) > 1
    ]
    if spreads:  # the sweeps of a row as repeated measurements: the dataset's own repeatability
        report.update(
            sweep_spread_median_pct=statistics.median(spreads), sweep_spread_max_pct=max(spreads)
        )
    return report
