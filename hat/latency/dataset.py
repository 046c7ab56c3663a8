"""Latency datasets: sample SubTransformers, time them on this device, append CSV rows.

Columns: HAT's 14 first (its 10 features, then latency_mean_encoder, latency_mean_decoder,
latency_std_encoder, latency_std_decoder, in ms), so HAT's files and hat's are
interchangeable; then hat's extras: the full config (JSON), its id in the sampling plan, the
latest timing of a fixed reference SubTransformer (drift control), and the environment.

The plan (which configs, in which random order) is a function of the space, size, sampling
and seed, so re-running the same command resumes: rows already in the file are skipped.
Each row is appended and flushed as soon as it is measured.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from hat.errors import HatError
from hat.latency.features import HAT_FEATURE_NAMES, hat_features
from hat.latency.measure import Latency, measure_latency
from hat.space import ArchConfig, SearchSpace
from hat.transformer import ModelSettings, Transformer

LATENCY_COLUMNS = ["latency_mean_encoder", "latency_mean_decoder", "latency_std_encoder", "latency_std_decoder"]
HAT_COLUMNS = HAT_FEATURE_NAMES + LATENCY_COLUMNS
EXTRA_COLUMNS = ["config", "config_id", "reference_ms", "device", "cpu_model", "threads", "torch_version",
                 "runtime", "dtype", "sentence_length", "beam", "timestamp"]
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

    def time(self, model: Transformer) -> Latency:
        """Time `model`, deployed on this runtime, with the latency protocol and these settings."""
        return measure_latency(deploy(model, self.runtime, self.threads), self.sentence_length, self.beam,
                               self.device, self.iters, self.warmup, self.threads)

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
            return OnnxTransformer(export_onnx(model, tmp), threads)  # sessions hold the graphs in memory
    raise HatError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime}")


Timer = Callable[[Transformer, MeasureSettings], Latency]


def protocol_timer(model: Transformer, measure: MeasureSettings) -> Latency:
    return measure.time(model)


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
    ende = sum(2 * e * q * arch.ende_layers(i) for i in range(arch.decoder_layer_num)) * sentence_length
    return enc + ende + dec * sentence_length * beam


def plan_configs(space: SearchSpace, size: int, seed: int, sampling: str = "uniform",
                 sentence_length: int = 30, beam: int = 5) -> list[ArchConfig]:
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
    members = [list(np.flatnonzero((cost >= lo) & ((cost < hi) | (k == bins - 1))))
               for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    chosen: list[int] = []
    while len(chosen) < size:  # round-robin over the bins; sparse bins run out first
        for m in members:
            if m and len(chosen) < size:
                chosen.append(m.pop(rng.randrange(len(m))))
    rng.shuffle(chosen)
    return [candidates[i] for i in chosen]


def _repair_tail(path: Path) -> None:
    """Drop a half-written last line (a kill during a write)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[:data.rfind(b"\n") + 1])


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """All rows of a latency CSV (HAT's or hat's) as dicts; checks HAT's columns are there."""
    p = Path(path)
    if not p.is_file():
        raise HatError(f"latency dataset not found: {path}")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in HAT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise HatError(f"{path} lacks the column(s) {', '.join(missing)}: a latency dataset needs "
                           f"HAT's 14 columns ({', '.join(HAT_COLUMNS[:3])}, ...)")
        rows = [r for r in reader if r.get(LATENCY_COLUMNS[-1])]
    if not rows:
        raise HatError(f"{path} has no rows")
    return rows


def row_for(arch: ArchConfig, config_id: int, lat: Latency, reference_ms: float, env: dict[str, str]) -> dict:
    values = dict(zip(HAT_FEATURE_NAMES, hat_features(arch)))
    values.update(latency_mean_encoder=lat.encoder_ms, latency_mean_decoder=lat.decoder_ms,
                  latency_std_encoder=lat.encoder_std_ms, latency_std_decoder=lat.decoder_std_ms,
                  config=json.dumps(arch.to_dict(), separators=(",", ":")), config_id=config_id,
                  reference_ms=round(reference_ms, 4), threads=lat.threads, sentence_length=lat.sentence_length,
                  beam=lat.beam, timestamp=round(time.time(), 1), **env)
    return values


def collect(space: SearchSpace, settings: ModelSettings, measure: MeasureSettings, path: str | Path, size: int,
            seed: int = 1, sampling: str = "uniform", reference_every: int = 25, progress: bool = True,
            on_row: Callable[[dict], None] | None = None, timer: Timer = protocol_timer) -> dict:
    """Measure the plan's configs not yet in `path` (appending rows); return a drift report."""
    path = Path(path)
    plan = plan_configs(space, size, seed, sampling, measure.sentence_length, measure.beam)
    done: set[int] = set()
    if path.exists() and path.stat().st_size:
        _repair_tail(path)
        for row in read_rows(path):
            cid = int(row.get("config_id") or -1)
            if not 0 <= cid < len(plan) or ArchConfig.from_dict(json.loads(row["config"])) != plan[cid]:
                raise HatError(f"{path} holds rows of another plan (space, size, sampling or seed differ): "
                               f"use a new --lat-dataset-path, or the settings it was collected with")
            done.add(cid)
    todo = [i for i in range(len(plan)) if i not in done]
    env = {"device": device_name(measure.device), "cpu_model": cpu_model(), "torch_version": torch.__version__,
           "runtime": measure.runtime, "dtype": measure.dtype}
    reference = Transformer(space.middle(), settings)  # the fixed drift reference
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists() or path.stat().st_size == 0
    references: list[float] = []
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HAT_COLUMNS + EXTRA_COLUMNS)
        if new_file:
            writer.writeheader()
        bar = tqdm(total=len(plan), initial=len(done), desc="latency dataset", unit="config",
                   disable=not progress or None)
        for k, cid in enumerate(todo):
            if k % reference_every == 0:
                references.append(timer(reference, measure).total_ms)
            lat = timer(Transformer(plan[cid], settings), measure)
            row = row_for(plan[cid], cid, lat, references[-1], env)
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())
            bar.update(1)
            bar.set_postfix(ms=f"{lat.total_ms:.1f}", ref=f"{references[-1]:.1f}")
            if on_row:
                on_row(row)
        bar.close()
    return drift_report(read_rows(path))


def drift_report(rows: list[dict[str, str]]) -> dict:
    """How the reference SubTransformer's latency moved while the dataset was measured."""
    refs = [float(r["reference_ms"]) for r in rows if r.get("reference_ms")]
    if not refs:
        return {"reference_measurements": 0}
    distinct = [refs[0]] + [b for a, b in zip(refs, refs[1:]) if b != a]
    med = statistics.median(distinct)
    return {"reference_measurements": len(distinct), "reference_median_ms": med,
            "reference_min_ms": min(distinct), "reference_max_ms": max(distinct),
            "drift_range_pct": (max(distinct) - min(distinct)) / med * 100,
            "drift_first_to_last_pct": (distinct[-1] - distinct[0]) / distinct[0] * 100}


def normalise_by_reference(latency: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale each row by median(reference) / its reference timing: removes slow drift."""
    reference = np.asarray(reference, float)
    return np.asarray(latency, float) * (np.median(reference) / reference)


@dataclass
class LatencyTable:
    """A latency dataset as arrays: HAT's raw features, total latency (ms), optional configs."""
    features: np.ndarray  # (n, 10), before feature-norm
    latency: np.ndarray  # (n,) encoder + decoder mean, ms
    configs: list[ArchConfig] | None  # hat's own datasets store them
    reference_ms: np.ndarray | None
    environment: dict[str, str]


def load_table(path: str | Path, drift_normalize: bool = False) -> LatencyTable:
    """Read a latency CSV; with `drift_normalize`, scale rows by the reference timings."""
    rows = read_rows(path)
    try:
        features = np.array([[float(r[c]) for c in HAT_FEATURE_NAMES] for r in rows])
        latency = np.array([float(r["latency_mean_encoder"]) + float(r["latency_mean_decoder"]) for r in rows])
    except ValueError as e:
        raise HatError(f"{path}: a feature or latency value is not a number ({e})") from None
    configs = None
    if all(r.get("config") for r in rows):
        configs = [ArchConfig.from_dict(json.loads(r["config"])) for r in rows]
    reference = None
    if all(r.get("reference_ms") for r in rows):
        reference = np.array([float(r["reference_ms"]) for r in rows])
    if drift_normalize:
        if reference is None:
            raise HatError(f"{path} has no reference_ms column: it cannot be drift-normalised")
        latency = normalise_by_reference(latency, reference)
    env = {k: rows[-1][k] for k in ("device", "cpu_model", "threads", "torch_version", "runtime", "dtype",
                                    "sentence_length", "beam") if rows[-1].get(k)}
    return LatencyTable(features, latency, configs, reference, env)


def recheck(path: str | Path, settings: ModelSettings, measure: MeasureSettings, n: int = 20, seed: int = 1,
            progress: bool = True, timer: Timer = protocol_timer) -> dict:
    """Re-time `n` random rows of a dataset: the measurement's own repeatability."""
    rows = [r for r in read_rows(path) if r.get("config")]
    if not rows:
        raise HatError(f"{path} stores no configs (a HAT dataset?): cannot re-measure its rows")
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    diffs = []
    for row in tqdm(picked, desc="re-measure", unit="config", disable=not progress or None):
        arch = ArchConfig.from_dict(json.loads(row["config"]))
        lat = timer(Transformer(arch, settings), measure)
        first = float(row["latency_mean_encoder"]) + float(row["latency_mean_decoder"])
        diffs.append(abs(lat.total_ms - first) / first * 100)
    return {"rechecked": len(diffs), "median_rel_diff_pct": statistics.median(diffs),
            "max_rel_diff_pct": max(diffs), "mean_rel_diff_pct": statistics.fmean(diffs)}
