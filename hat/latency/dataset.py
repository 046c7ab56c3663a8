"""Latency datasets: sample SubTransformers, time them on this device, append CSV rows.

Columns: HAT's 14 first (its 10 features, then latency_mean_encoder, latency_mean_decoder,
latency_std_encoder, latency_std_decoder, in ms), so HAT's files and hat's are
interchangeable; then hat's extras: the full config (JSON), its id in the sampling plan, the
timing of a fixed reference SubTransformer measured around the row, the environment, and the
measurement: protocol and settings, the reference's config and quiet-device calibration, the
row's latency / reference ratio and its normalized latency (ratio x calibration).

Each SubTransformer is timed in rounds alternating with the reference, in a random order inside
each round (google/benchmark's random interleaving), so a burst of load slows both and
cancels in the ratio.

The plan (which configs, in which random order) is a function of the space, size, sampling
and seed, so re-running the same command resumes: rows already in the file are skipped.
Each row is appended and flushed as soon as it is measured.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import random
import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hat.errors import HatError
from hat.latency.features import HAT_FEATURE_NAMES, hat_features
from hat.latency.measure import Latency, measure_latency, parse_cores, warn_if_loaded
from hat.space import ArchConfig, SearchSpace
from hat.transformer import ModelSettings, Transformer

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
]
# numbers that HAT's files (and hat's older ones) lack
OPTIONAL_NUMBERS = ("reference_ms", "calibration_ms", "latency_ratio", "normalized_ms")
SAMPLINGS = ("uniform", "stratified")


RUNTIMES = ("torch", "torch-int8", "onnxruntime")


@dataclass
class MeasureSettings:
    sentence_length: int = 30
    beam: int = 5
    iters: int = 20
    warmup: int = 5
    device: str = "cpu"
    threads: int | None = None
    runtime: str = "torch"  # what runs the model: torch fp32, torch int8 dynamic, onnxruntime fp32
    cores: str | None = None  # CPU affinity while timing, e.g. "0-1" (default: as started)
    protocol: str = "beam-search"  # or "hat" (HAT's decoder protocol, no search)
    rounds: int = 4  # rounds of SubTransformer / reference interleaving per row

    def time(self, model: Transformer) -> Latency:
        """Time `model`, deployed on this runtime, with the latency protocol and these settings."""
        return measure_latency(
            _deployed(model, self.runtime, self.threads),
            self.sentence_length,
            self.beam,
            self.device,
            self.iters,
            self.warmup,
            self.threads,
            cores=self.core_set,
            protocol=self.protocol,
        )

    @property
    def core_set(self) -> set[int] | None:
        return parse_cores(self.cores) if self.cores else None

    @property
    def dtype(self) -> str:
        return "int8" if self.runtime == "torch-int8" else "float32"


def deploy(model: Transformer, runtime: str, threads: int | None = None):
    """`model` as `runtime` runs it: itself, int8 dynamic quantized, or exported to onnxruntime."""
    if runtime == "torch":
        return model
    if runtime == "torch-int8":
        from hat.quantize import dynamic_int8

        return dynamic_int8(model)
    if runtime == "onnxruntime":
        import tempfile

        from hat.onnx_export import OnnxTransformer, export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            return OnnxTransformer(
                export_onnx(model, tmp), threads
            )  # sessions hold the graphs in memory
    raise HatError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime}")


_DEPLOYED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _deployed(model: Transformer, runtime: str, threads: int | None):
    """`deploy`, once per model, runtime and threads (the reference is timed with every row)."""
    if runtime == "torch":
        return model
    cache = _DEPLOYED.setdefault(model, {})
    if (runtime, threads) not in cache:
        cache[(runtime, threads)] = deploy(model, runtime, threads)
    return cache[(runtime, threads)]


Timer = Callable[[Transformer, MeasureSettings], Latency]


def protocol_timer(model: Transformer, measure: MeasureSettings) -> Latency:
    return measure.time(model)


@dataclass
class Interleaved:
    """A SubTransformer timed in alternation with the reference."""

    latency: Latency  # the SubTransformer's timings, pooled over the rounds
    reference_ms: float  # the reference's total latency over the same rounds
    ratio: float  # median over the rounds of SubTransformer / reference total latency
    order: list[str]  # what was timed, in order: "sub" or "ref"

    def normalized_ms(self, calibration_ms: float) -> float:
        """The latency on the quiet device: ratio x the reference's quiet latency."""
        return self.ratio * calibration_ms


def pool(lats: list[Latency]) -> Latency:
    """One Latency from several timings of one model (means weighted by their runs)."""
    n = sum(x.iters for x in lats)

    def mean_std(mean: str, std: str) -> tuple[float, float]:
        m = sum(getattr(x, mean) * x.iters for x in lats) / n
        var = sum((getattr(x, std) ** 2 + (getattr(x, mean) - m) ** 2) * x.iters for x in lats) / n
        return m, math.sqrt(var)

    (em, es), (dm, ds) = (
        mean_std("encoder_ms", "encoder_std_ms"),
        mean_std("decoder_ms", "decoder_std_ms"),
    )
    return dataclasses.replace(
        lats[0], encoder_ms=em, decoder_ms=dm, encoder_std_ms=es, decoder_std_ms=ds, iters=n
    )


def interleaved(
    model: Transformer,
    reference: Transformer,
    measure: MeasureSettings,
    timer: Timer,
    rng: random.Random,
) -> Interleaved:
    """Time `model` and `reference` in `measure.rounds` rounds, each timing both in a random order
    (A/B or B/A) with a share of `measure.iters` runs: full dry runs in the first round, one
    after each switch later. The ratio pairs timings taken seconds apart, so load cancels."""
    rounds = max(1, min(measure.rounds, measure.iters))
    sub, ref, order = [], [], []
    for r in range(rounds):
        runs = measure.iters // rounds + (r < measure.iters % rounds)
        m = dataclasses.replace(
            measure, iters=runs, warmup=measure.warmup if r == 0 else min(1, measure.warmup)
        )
        pair = [("sub", model, sub), ("ref", reference, ref)]
        rng.shuffle(pair)
        for name, net, out in pair:
            order.append(name)
            out.append(timer(net, m))
    ratio = statistics.median(a.total_ms / b.total_ms for a, b in zip(sub, ref))
    return Interleaved(pool(sub), pool(ref).total_ms, ratio, order)


def calibrate(reference: Transformer, measure: MeasureSettings, timer: Timer, n: int = 3) -> float:
    """The reference's latency under quiet conditions: the fastest of `n` timings (ms)."""
    return min(timer(reference, measure).total_ms for _ in range(n))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({cpu_model()})"


def proxy_cost(arch: ArchConfig, sentence_length: int, beam: int, qkv_dim: int) -> float:
    """A measurement-free latency proxy: encoder MACs + steps x beam x decoder MACs per step."""
    q, e, d = qkv_dim, arch.encoder_embed_dim, arch.decoder_embed_dim
    enc = sum(4 * e * q + 2 * e * f for f in arch.encoder_ffn_embed_dim) * sentence_length
    dec = sum(6 * d * q + 2 * d * f for f in arch.decoder_ffn_embed_dim) + 4 * d * 1000
    ende = (
        sum(2 * e * q * arch.ende_layers(i) for i in range(arch.decoder_layer_num))
        * sentence_length
    )
    return enc + ende + dec * sentence_length * beam


def plan_configs(
    space: SearchSpace,
    size: int,
    seed: int,
    sampling: str = "uniform",
    sentence_length: int = 30,
    beam: int = 5,
) -> list[ArchConfig]:
    """The configs to measure, in measurement order (random, so drift does not line up with size).

    uniform: HAT's sampler. stratified: equal numbers per bin of a latency proxy, so very small
    and very large SubTransformers, rare under uniform sampling, are covered as well.
    """
    if sampling not in SAMPLINGS:
        raise HatError(f"--sampling {sampling} is not one of {', '.join(SAMPLINGS)}")
    rng = random.Random(seed)
    if sampling == "uniform":
        return [space.sample(rng) for _ in range(size)]
    candidates = [space.sample(rng) for _ in range(size * 20)]
    cost = np.array([proxy_cost(c, sentence_length, beam, space.qkv_dim) for c in candidates])
    bins = min(10, size)
    edges = np.linspace(cost.min(), cost.max(), bins + 1)
    members = [
        list(np.flatnonzero((cost >= lo) & ((cost < hi) | (k == bins - 1))))
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))
    ]
    chosen: list[int] = []
    while len(chosen) < size:  # round-robin over the bins; sparse bins run out first
        for m in members:
            if m and len(chosen) < size:
                chosen.append(m.pop(rng.randrange(len(m))))
    rng.shuffle(chosen)
    return [candidates[i] for i in chosen]


def row_config(row: dict[str, str], path: str | Path, line: int | None = None) -> ArchConfig:
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


def _parse_rows(text: str, path: str | Path, allow_empty: bool = False) -> list[dict[str, str]]:
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


def _read_text(path: str | Path, data: bytes | None = None) -> str:
    try:
        return (Path(path).read_bytes() if data is None else data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise HatError(f"{path} is not a latency dataset: not UTF-8 text ({e.reason})") from None


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """All rows of a latency CSV (HAT's or hat's) as dicts; checks HAT's columns are there and
    every row's numbers (and config cell) parse."""
    if not Path(path).is_file():
        raise HatError(f"latency dataset not found: {path}")
    return _parse_rows(_read_text(path), path)


def _resume(path: Path, plan: list[ArchConfig]) -> tuple[set[int], float | None]:
    """The plan positions `path` holds and its calibration, checked to be this plan's before
    anything is written; only then is a half-written last line (a kill during a write) cut off."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    done: set[int] = set()
    calibration = None
    if complete:
        rows = _parse_rows(_read_text(path, complete), path, allow_empty=True)
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
        if next(csv.reader(io.StringIO(_read_text(path, complete)))) != HAT_COLUMNS + EXTRA_COLUMNS:
            raise HatError(
                f"{path} was written by an older hat (other columns): measure into "
                f"a new --lat-dataset-path"
            )
        calibration = (
            float(rows[0]["calibration_ms"]) if rows and rows[0].get("calibration_ms") else None
        )
    elif not (",".join(HAT_COLUMNS + EXTRA_COLUMNS) + "\r\n").encode().startswith(data):
        raise HatError(
            f"{path} is not a latency dataset (no complete line, not a torn header): "
            f"use a new --lat-dataset-path"
        )
    if len(complete) < len(data):
        os.truncate(path, len(complete))
    return done, calibration


def _json(arch: ArchConfig) -> str:
    return json.dumps(arch.to_dict(), separators=(",", ":"))


def row_for(
    arch: ArchConfig,
    config_id: int,
    lat: Latency,
    reference_ms: float,
    env: dict[str, str],
    ratio: float | None = None,
    calibration_ms: float | None = None,
) -> dict:
    """A CSV row; with the ratio to the reference and its calibration, the normalized latency."""
    values = dict(zip(HAT_FEATURE_NAMES, hat_features(arch)))
    values.update(
        latency_mean_encoder=lat.encoder_ms,
        latency_mean_decoder=lat.decoder_ms,
        latency_std_encoder=lat.encoder_std_ms,
        latency_std_decoder=lat.decoder_std_ms,
        config=_json(arch),
        config_id=config_id,
        reference_ms=round(reference_ms, 4),
        threads=lat.threads,
        sentence_length=lat.sentence_length,
        beam=lat.beam,
        timestamp=round(time.time(), 1),
        cores=lat.cores,
        protocol=lat.protocol,
        iters=lat.iters,
        **env,
    )
    if ratio is not None and calibration_ms is not None:
        values.update(
            calibration_ms=round(calibration_ms, 4),
            latency_ratio=round(ratio, 6),
            normalized_ms=round(ratio * calibration_ms, 4),
        )
    return values


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
    calibration_ms: float | None = None,
) -> dict:
    """Measure the plan's configs not yet in `path` (appending rows), each interleaved with the
    reference (the space's middle SubTransformer); return a drift report. The calibration (the
    reference's quiet latency) is `calibration_ms`, else the file's, else measured now."""
    path = Path(path)
    plan = plan_configs(space, size, seed, sampling, measure.sentence_length, measure.beam)
    done, stored = _resume(path, plan) if path.exists() and path.stat().st_size else (set(), None)
    todo = [i for i in range(len(plan)) if i not in done]
    reference = Transformer(space.middle(), settings)  # the fixed drift reference
    if measure.device == "cpu" and todo:
        warn_if_loaded(measure.core_set)
    if calibration_ms and stored and abs(calibration_ms - stored) > 1e-3:
        raise HatError(
            f"{path} was calibrated at {stored} ms, not {calibration_ms}: one file has one "
            f"calibration (use a new --lat-dataset-path)"
        )
    calibration = (
        calibration_ms or stored or (calibrate(reference, measure, timer) if todo else None)
    )
    env = {
        "device": device_name(measure.device),
        "cpu_model": cpu_model(),
        "torch_version": torch.__version__,
        "runtime": measure.runtime,
        "dtype": measure.dtype,
        "warmup": measure.warmup,
        "rounds": measure.rounds,
        "reference": _json(space.middle()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HAT_COLUMNS + EXTRA_COLUMNS)
        if new_file:
            writer.writeheader()
        bar = tqdm(
            total=len(plan),
            initial=len(done),
            desc="latency dataset",
            unit="config",
            disable=not progress or None,
        )
        for cid in todo:
            res = interleaved(
                Transformer(plan[cid], settings),
                reference,
                measure,
                timer,
                random.Random(seed * 1_000_003 + cid),
            )
            row = row_for(
                plan[cid], cid, res.latency, res.reference_ms, env, res.ratio, calibration
            )
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())
            bar.update(1)
            bar.set_postfix(
                ms=f"{res.latency.total_ms:.1f}",
                norm=f"{row['normalized_ms']:.1f}",
                drift=f"{res.reference_ms / calibration:.2f}",
            )
            if on_row:
                on_row(row)
        bar.close()
    return drift_report(read_rows(path))


def drift_report(rows: list[dict[str, str]]) -> dict:
    """How the reference SubTransformer's latency moved while the dataset was measured; with a
    calibration, the drift factors (reference now / reference quiet)."""
    refs = [float(r["reference_ms"]) for r in rows if r.get("reference_ms")]
    if not refs:
        return {"reference_measurements": 0}
    distinct = [refs[0]] + [b for a, b in zip(refs, refs[1:]) if b != a]
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
    return report


def normalise_by_reference(latency: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale each row by median(reference) / its reference timing: removes slow drift."""
    reference = np.asarray(reference, float)
    return np.asarray(latency, float) * (np.median(reference) / reference)


@dataclass
class LatencyTable:
    """A latency dataset as arrays: HAT's raw features, total latency (ms), optional configs."""

    features: np.ndarray  # (n, 10), before feature-norm
    latency: (
        np.ndarray
    )  # (n,) what predictors learn: normalized latency if the file has it, else raw
    configs: list[ArchConfig] | None  # hat's own datasets store them
    reference_ms: np.ndarray | None
    environment: dict[str, str]
    raw_latency: np.ndarray | None = None  # (n,) encoder + decoder mean as timed, ms
    normalized: bool = False  # `latency` is ratio x calibration


ENVIRONMENT = (
    "device",
    "cpu_model",
    "threads",
    "torch_version",
    "runtime",
    "dtype",
    "sentence_length",
    "beam",
    "cores",
    "protocol",
    "iters",
    "warmup",
    "rounds",
    "reference",
    "calibration_ms",
)


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
    reference = None
    if all(r.get("reference_ms") for r in rows):
        reference = np.array([float(r["reference_ms"]) for r in rows])
    normalized = not raw and not drift_normalize and all(r.get("normalized_ms") for r in rows)
    if normalized:
        latency = np.array([float(r["normalized_ms"]) for r in rows])
    if drift_normalize:
        if reference is None:
            raise HatError(f"{path} has no reference_ms column: it cannot be drift-normalised")
        latency = normalise_by_reference(latency, reference)
    env = {k: rows[-1][k] for k in ENVIRONMENT if rows[-1].get(k)}
    return LatencyTable(features, latency, configs, reference, env, raw_latency, normalized)


def recheck(
    path: str | Path,
    settings: ModelSettings,
    measure: MeasureSettings,
    n: int = 20,
    seed: int = 1,
    progress: bool = True,
    timer: Timer = protocol_timer,
) -> dict:
    """Re-time `n` random rows of a dataset (interleaved with its reference): the measurement's
    repeatability, of the raw latency and, where the file has it, of the normalized latency."""
    rows = [r for r in read_rows(path) if r.get("config")]
    if not rows:
        raise HatError(f"{path} stores no configs (a HAT dataset?): cannot re-measure its rows")
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    reference = None
    if rows[0].get("reference"):
        reference = Transformer(row_config({"config": rows[0]["reference"]}, path), settings)
    raw, norm = [], []
    for row in tqdm(picked, desc="re-measure", unit="config", disable=not progress or None):
        model = Transformer(row_config(row, path), settings)
        if reference is None:  # an older file: no reference to interleave with
            total = timer(model, measure).total_ms
        else:
            res = interleaved(
                model, reference, measure, timer, random.Random(seed + int(row["config_id"]))
            )
            total = res.latency.total_ms
        first = float(row["latency_mean_encoder"]) + float(row["latency_mean_decoder"])
        raw.append(abs(total - first) / first * 100)
        if reference is not None and row.get("normalized_ms"):
            first = float(row["normalized_ms"])
            norm.append(abs(res.normalized_ms(float(row["calibration_ms"])) - first) / first * 100)
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
