"""The rows of a latency CSV: columns, writing a row, reading and checking rows.

Columns: HAT's 14 first (its 10 features, then latency_mean_encoder, latency_mean_decoder,
latency_std_encoder, latency_std_decoder, in ms), so HAT's files and hat's are
interchangeable; then hat's extras: the full config (JSON), its id in the sampling plan, the
timing of a fixed reference SubTransformer measured around the row, the environment, and the
measurement: protocol and settings, the reference's config and quiet-device calibration, the
row's latency / reference ratio and its normalized latency (`hat.latency.timing.normalize`);
then the same for a second reference where the dataset has two (small first, then large);
last, the number of sweeps the row was timed in and each sweep's normalized latency
(space-separated; `hat.latency.sweeps`).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hat.errors import HatError
from hat.latency.features import HAT_FEATURE_NAMES, hat_features
from hat.latency.measure import Latency
from hat.latency.timing import normalize
from hat.space import ArchConfig

LATENCY_COLUMNS = [
    "latency_mean_encoder",
    "latency_mean_decoder",
    "latency_std_encoder",
    "latency_std_decoder",
]
HAT_COLUMNS = HAT_FEATURE_NAMES + LATENCY_COLUMNS
EXTRA_COLUMNS = [
    "config",
    "config_id",
    "reference_ms",
    "device",
    "cpu_model",
    "threads",
    "torch_version",
    "runtime",
    "dtype",
    "sentence_length",
    "beam",
    "timestamp",
    "cores",
    "protocol",
    "iters",
    "warmup",
    "rounds",
    "reference",
    "calibration_ms",
    "latency_ratio",
    "normalized_ms",
    "reference2",
    "calibration2_ms",
    "reference2_ms",
    "latency_ratio2",
    "sweeps",
    "sweep_normalized_ms",
]
# per-row values; the other extra columns describe the device and protocol (same on every row)
PER_ROW = (
    "config",
    "config_id",
    "reference_ms",
    "timestamp",
    "latency_ratio",
    "normalized_ms",
    "reference2_ms",
    "latency_ratio2",
    "sweep_normalized_ms",
)
ENVIRONMENT_COLUMNS = tuple(c for c in EXTRA_COLUMNS if c not in PER_ROW)
# the columns of each reference, first and second: config, calibration, timing, ratio
REFERENCE_COLUMNS = (
    ("reference", "calibration_ms", "reference_ms", "latency_ratio"),
    ("reference2", "calibration2_ms", "reference2_ms", "latency_ratio2"),
)
# a predictor's metadata: each reference's median timing in the rows (drift's baseline)
REFERENCE_TIMED_KEYS = tuple(f"{arch}_timed_ms" for arch, _, _, _ in REFERENCE_COLUMNS)
# numbers that HAT's files (and hat's older ones) lack
OPTIONAL_NUMBERS = (
    "reference_ms",
    "calibration_ms",
    "latency_ratio",
    "normalized_ms",
    "reference2_ms",
    "calibration2_ms",
    "latency_ratio2",
)


def config_json(arch: ArchConfig) -> str:
    """A SubTransformer as a compact JSON cell."""
    return json.dumps(arch.to_dict(), separators=(",", ":"))


def row_for(
    arch: ArchConfig,
    config_id: int,
    lat: Latency,
    reference_ms: Sequence[float],
    env: dict[str, str],
    ratios: Sequence[float] | None = None,
    calibrations_ms: Sequence[float] | None = None,
    sweeps_ms: Sequence[float] = (),
) -> dict:
    """A CSV row; with the ratios to the references and their calibrations, the normalized
    latency; with several sweeps, each sweep's normalized latency (`sweeps_ms`)."""
    values = dict(zip(HAT_FEATURE_NAMES, hat_features(arch), strict=True))
    values.update(
        latency_mean_encoder=lat.encoder_ms,
        latency_mean_decoder=lat.decoder_ms,
        latency_std_encoder=lat.encoder_std_ms,
        latency_std_decoder=lat.decoder_std_ms,
        config=config_json(arch),
        config_id=config_id,
        threads=lat.threads,
        sentence_length=lat.sentence_length,
        beam=lat.beam,
        timestamp=round(time.time(), 1),
        cores=lat.cores,
        protocol=lat.protocol,
        iters=lat.iters,
        **env,
    )
    for (_, _, timed, _), ms in zip(REFERENCE_COLUMNS, reference_ms, strict=False):
        values[timed] = round(ms, 4)
    if ratios is not None and calibrations_ms is not None:
        for (_, cal, _, ratio), r, c in zip(
            REFERENCE_COLUMNS, ratios, calibrations_ms, strict=False
        ):
            values.update({cal: round(c, 4), ratio: round(r, 6)})
        values["normalized_ms"] = round(normalize(ratios, calibrations_ms), 4)
    if len(sweeps_ms) > 1:
        values["sweep_normalized_ms"] = " ".join(f"{ms:.4f}" for ms in sweeps_ms)
    return values


def sweep_normalized_ms(row: Mapping[str, str], path: str | Path) -> list[float]:
    """Each sweep's normalized latency of a row (empty for a row timed in one sweep)."""
    try:
        return [float(x) for x in (row.get("sweep_normalized_ms") or "").split()]
    except ValueError:
        raise HatError(
            f"{path}: sweep_normalized_ms {row['sweep_normalized_ms']!r} is not numbers"
        ) from None


def references_in(
    values: Mapping[str, Any], path: str | Path
) -> tuple[list[ArchConfig], list[float]]:
    """The reference SubTransformers a row (or a predictor's metadata, which keeps the same
    keys) records, first then second, and their calibrations (empty unless all have one)."""
    archs: list[ArchConfig] = []
    cals: list[float] = []
    for arch, cal, _, _ in REFERENCE_COLUMNS:
        if values.get(arch):
            archs.append(row_config({"config": values[arch]}, path))
            if values.get(cal):
                cals.append(float(values[cal]))
    return archs, (cals if len(cals) == len(archs) else [])


def row_config(row: Mapping[str, Any], path: str | Path, line: int | None = None) -> ArchConfig:
    """The SubTransformer in a row's `config` cell; a bad cell raises HatError naming the file."""
    where = f"{path}:{line}" if line else str(path)
    try:
        d = json.loads(row.get("config") or "")
    except ValueError as e:
        raise HatError(f"{where}: the config cell is not JSON ({e})") from None
    if not isinstance(d, dict):
        raise HatError(f"{where}: the config cell is not a JSON object")
    try:
        return ArchConfig.from_dict(d)
    except (HatError, TypeError, ValueError) as e:
        raise HatError(f"{where}: the config cell is not a SubTransformer ({e})") from None


def _check_row(row: dict[str, str], path: str | Path, line: int) -> None:
    """HatError naming the file and line unless the row's numbers and config cell parse."""
    for col in HAT_COLUMNS + list(OPTIONAL_NUMBERS):
        value = row.get(col)
        if col in OPTIONAL_NUMBERS and not value:
            continue  # HAT's datasets (and hat's older ones) have no reference timings
        try:
            float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise HatError(f"{path}:{line}: {col} {value!r} is not a number") from None
    if row.get("config_id") and not row["config_id"].lstrip("-").isdigit():
        raise HatError(f"{path}:{line}: config_id {row['config_id']!r} is not an integer")
    if row.get("config"):
        row_config(row, path, line)
    sweep_normalized_ms(row, f"{path}:{line}")


def parse_rows(text: str, path: str | Path, allow_empty: bool = False) -> list[dict[str, str]]:
    """The complete, checked rows of a latency CSV's text (`path` names it in errors)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in HAT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise HatError(
            f"{path} lacks the column(s) {', '.join(missing)}: a latency dataset needs "
            f"HAT's 14 columns ({', '.join(HAT_COLUMNS[:3])}, ...)"
        )
    rows = []
    for row in reader:
        if row.get(LATENCY_COLUMNS[-1]):  # a row cut short by a kill has no last column
            _check_row(row, path, reader.line_num)
            rows.append(row)
    if not rows and not allow_empty:
        raise HatError(f"{path} has no rows")
    return rows


def read_text(path: str | Path, data: bytes | None = None) -> str:
    """`data` (default: the file's bytes) as UTF-8 text; HatError naming `path` otherwise."""
    try:
        return (Path(path).read_bytes() if data is None else data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise HatError(f"{path} is not a latency dataset: not UTF-8 text ({e.reason})") from None


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """All rows of a latency CSV (HAT's or hat's) as dicts; checks HAT's columns are there and
    every row's numbers (and config cell) parse."""
    if not Path(path).is_file():
        raise HatError(f"latency dataset not found: {path}")
    return parse_rows(read_text(path), path)
