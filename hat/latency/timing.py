"""How a latency dataset times a SubTransformer: the settings, the runtime it is deployed on,
and rounds interleaved with fixed reference SubTransformers.

Each SubTransformer is timed in rounds alternating with the references, in a random order
inside each round (google/benchmark's random interleaving), by default one run of each per
round: runs a fraction of a second apart share the device's state, so a burst or a slow spell
of the host slows them all and cancels in their ratio. A ratio is the median over the rounds
of each round's ratio (docs/benchmarks.md: single runs repeat about twice as well as blocks of
runs on this shared CPU). With two references, a small and a large one ("bracket", the
default), the normalized latency interpolates between them in log latency, so a slowdown that
hits small and large models differently (a busy core) is followed; "middle" times one.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import random
import statistics
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hat.errors import HatError
from hat.latency.measure import (
    PROTOCOLS,
    Latency,
    measure_latency,
    parse_cores,
    warn_if_loaded,
)
from hat.settings import setting
from hat.transformer import Transformer

RUNTIMES = ("torch", "torch-int8", "onnxruntime")
REFERENCE_KINDS = ("bracket", "middle")


@dataclass
class MeasureSettings:
    sentence_length: int = setting(30, "dummy sentence (HAT: 23 IWSLT, 30 WMT)")
    beam: int = setting(5, "beam of the timed search")
    iters: int = setting(20, "timed runs per SubTransformer", key="latiter", hat=True)
    warmup: int = setting(5, "dry runs before timing", key="lat-warmup", aliases=("warmup",))
    device: str = setting(
        "cpu",
        "where to time (HAT: --latgpu / --latcpu)",
        key="lat-device",
        choices=("cpu", "cuda"),
        switches={"latgpu": "cuda", "latcpu": "cpu"},
        hat=True,
    )
    threads: int | None = setting(None, "CPU threads (default: torch's); recorded in the CSV")
    runtime: str = setting(
        "torch",
        "what runs the model: torch (fp32), torch-int8 (dynamic int8), onnxruntime (fp32)",
        choices=RUNTIMES,
    )
    cores: str | None = setting(None, "CPU affinity while timing, e.g. 0-1 (default: as started)")
    protocol: str = setting(
        "beam-search",
        "beam-search: the real beam search (deployment); hat: HAT's protocol (no search)",
        choices=PROTOCOLS,
    )
    rounds: int | None = setting(
        None,
        "rounds alternating each SubTransformer with the references (A/B); "
        "default: one per timed run (single runs)",
    )
    reference: str = setting(
        "bracket",
        "bracket: a small and a large reference SubTransformer, interpolated in log latency "
        "(follows size-dependent slowdowns); middle: the space's middle one (fewer runs)",
        choices=REFERENCE_KINDS,
    )
    sweeps: int = setting(
        2,
        "passes of a latency dataset over its SubTransformers, latiter split among them (at "
        "most one run each) and pooled per row, so each row samples the host at several moments "
        "(verify times its few candidates in one)",
        key="lat-sweeps",
    )

    @property
    def sweep_count(self) -> int:
        """Sweeps of a dataset: `sweeps`, at most one per timed run."""
        if self.sweeps < 1:
            raise HatError(f"--lat-sweeps must be at least 1, got {self.sweeps}")
        return min(self.sweeps, self.iters)

    def sweep(self, index: int) -> MeasureSettings:
        """The settings of sweep `index` of `sweep_count`: its share of the timed runs (and of
        the rounds, when set)."""
        n = self.sweep_count
        rounds = max(1, _share(self.rounds, n, index)) if self.rounds else None
        return dataclasses.replace(
            self, iters=_share(self.iters, n, index), rounds=rounds, sweeps=1
        )

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
    def round_count(self) -> int:
        """Rounds of the interleaving: `rounds`, at most one per timed run (the default)."""
        return max(1, min(self.rounds or self.iters, self.iters))

    @property
    def dtype(self) -> str:
        return "int8" if self.runtime == "torch-int8" else "float32"


def _share(total: int, parts: int, index: int) -> int:
    """Part `index` of `total` split into `parts` near-equal integers."""
    return total // parts + (index < total % parts)


RECORDED_INTS = ("sentence_length", "beam", "iters", "warmup", "threads", "rounds", "sweeps")
RECORDED_STRS = ("runtime", "cores", "protocol")


def dataset_measure(recorded: Mapping[str, Any], device: str, **override: Any) -> MeasureSettings:
    """The protocol and settings a latency dataset was timed with (a row of it, or a predictor's
    metadata, which keeps the same keys), on `device`; `override` values that are not None win."""
    values: dict[str, Any] = {"iters": 10, "warmup": 2}  # for predictors that record none
    values.update(
        {k: int(float(recorded[k])) for k in RECORDED_INTS if recorded.get(k) not in (None, "")}
    )
    values.update({k: str(recorded[k]) for k in RECORDED_STRS if recorded.get(k)})
    values.update({k: v for k, v in override.items() if v is not None})
    return MeasureSettings(device=device, **values)


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
    """A SubTransformer timed in alternation with the references."""

    latency: Latency  # the SubTransformer's timings, pooled over the rounds
    reference_latencies: tuple[Latency, ...]  # each reference's timings over the same rounds
    round_ratios: tuple[tuple[float, ...], ...]  # per reference: each round's sub / reference
    order: list[str]  # what was timed, in order: "sub", or "ref" + the reference's index

    @property
    def reference_ms(self) -> tuple[float, ...]:
        """Each reference's total latency over the rounds."""
        return tuple(r.total_ms for r in self.reference_latencies)

    @property
    def ratios(self) -> tuple[float, ...]:
        """Per reference: the median over the rounds of the sub / reference ratio."""
        return tuple(statistics.median(r) for r in self.round_ratios)

    def normalized_ms(self, calibrations_ms: Sequence[float]) -> float:
        """The latency on the quiet device (`normalize` of the ratios)."""
        return normalize(self.ratios, calibrations_ms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, every run kept (`from_dict` reads it back)."""
        return {
            "latency": dataclasses.asdict(self.latency),
            "reference_latencies": [dataclasses.asdict(r) for r in self.reference_latencies],
            "round_ratios": [list(r) for r in self.round_ratios],
            "order": self.order,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Interleaved:
        def lat(x: Mapping[str, Any]) -> Latency:
            return Latency(**{**x, "runs_ms": tuple(x["runs_ms"])})

        return cls(
            lat(d["latency"]),
            tuple(lat(r) for r in d["reference_latencies"]),
            tuple(tuple(r) for r in d["round_ratios"]),
            list(d["order"]),
        )


def merge(parts: Sequence[Interleaved]) -> Interleaved:
    """One Interleaved from sweeps of the same SubTransformer: timings pooled, the rounds'
    ratios together (so each ratio is the median over every sweep's rounds)."""
    if len(parts) == 1:
        return parts[0]
    return Interleaved(
        pool([p.latency for p in parts]),
        tuple(pool(list(r)) for r in zip(*(p.reference_latencies for p in parts), strict=True)),
        tuple(
            tuple(x for r in rs for x in r)
            for rs in zip(*(p.round_ratios for p in parts), strict=True)
        ),
        [o for p in parts for o in p.order],
    )


def normalize(ratios: Sequence[float], calibrations_ms: Sequence[float]) -> float:
    """The quiet-device latency from the ratios to the references and their quiet latencies.

    One reference: ratio x calibration. Two: each gives an estimate e_i = ratio_i x c_i; the
    slowdown is taken as linear in log latency between the two references, so the estimate is
    log e = (1 - w) log e_small + w log e_large with w = (log e - log c_small) / (log c_large -
    log c_small) clipped to [0, 1] (solved in closed form: the nearer reference counts more, and
    outside their range the nearest alone)."""
    if len(ratios) != len(calibrations_ms) or len(ratios) not in (1, 2):
        raise HatError(f"{len(ratios)} ratios for {len(calibrations_ms)} calibrations")
    if len(ratios) == 1:
        return ratios[0] * calibrations_ms[0]
    (rs, cs), (rl, cl) = sorted(zip(ratios, calibrations_ms, strict=True), key=lambda x: x[1])
    a, b = math.log(rs * cs), math.log(rl * cl)
    span = math.log(cl / cs)
    w = (a - math.log(cs)) / (span - (b - a)) if span > b - a else 0.5
    w = min(1.0, max(0.0, w))
    return math.exp(a + w * (b - a))


def pool(lats: list[Latency]) -> Latency:
    """One Latency from several timings of one model (means weighted by their runs; the runs
    pooled)."""
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
        lats[0],
        encoder_ms=em,
        decoder_ms=dm,
        encoder_std_ms=es,
        decoder_std_ms=ds,
        iters=n,
        runs_ms=tuple(t for x in lats for t in x.runs_ms),
    )


def interleaved(
    model: Transformer,
    references: Sequence[Transformer],
    measure: MeasureSettings,
    timer: Timer,
    rng: random.Random,
) -> Interleaved:
    """Time `model` and the `references` in `measure.round_count` rounds, each timing all of
    them in a random order with a share of `measure.iters` runs: full dry runs in the first
    round; later, one after each switch when a round has several runs, none with single runs
    (every run then follows one of another model, for all alike). Each ratio is the median of
    the rounds' ratios of median runs: load that hits a round hits all and cancels, and a burst
    that hits one run is outvoted."""
    rounds = measure.round_count
    sub: list[Latency] = []
    refs: list[list[Latency]] = [[] for _ in references]
    order = []
    for r in range(rounds):
        runs = measure.iters // rounds + (r < measure.iters % rounds)
        dry = measure.warmup if r == 0 else min(1, measure.warmup) if runs > 1 else 0
        m = dataclasses.replace(measure, iters=runs, warmup=dry)
        items = [("sub", model, sub)] + [
            (f"ref{i}", net, out) for i, (net, out) in enumerate(zip(references, refs, strict=True))
        ]
        rng.shuffle(items)
        for name, net, out in items:
            order.append(name)
            out.append(timer(net, m))
    round_ratios = tuple(
        tuple(
            statistics.median(s.run_totals) / statistics.median(f.run_totals)
            for s, f in zip(sub, ref, strict=True)
        )
        for ref in refs
    )
    return Interleaved(pool(sub), tuple(pool(ref) for ref in refs), round_ratios, order)


class DriftFreeTimer:
    """Times models the way budgets are stated: each interleaved with the latency dataset's
    references and normalized by their quiet calibrations; without references, as timed.

    The drift factor compares the references now with the references as the dataset's rows
    timed them (`references_timed_ms`, their medians; the geometric mean over references): all
    interleaved, so switching models costs both sides the same. A calibration times a reference
    alone and warm (faster than interleaved in blocks, about as fast as single runs:
    docs/latency.md); it is the fallback for predictors that do not record the former."""

    def __init__(
        self,
        measure: MeasureSettings,
        timer: Timer,
        references: Sequence[Transformer],
        calibrations_ms: Sequence[float],
        seed: int = 1,
        references_timed_ms: Sequence[float] | None = None,
    ):
        self.measure, self.timer = measure, timer
        self.references = list(references) if calibrations_ms else []
        self.calibrations_ms = list(calibrations_ms)
        self.drift_baseline_ms = list(references_timed_ms or calibrations_ms)
        self.rng = random.Random(seed)
        if timer is protocol_timer and measure.device == "cpu":
            warn_if_loaded(measure.core_set)  # the drift factor will show it too

    def time(self, model: Transformer) -> dict[str, Any]:
        """measured_ms (as timed), normalized_ms, reference_ms (each reference's timing), drift
        (the references now over `drift_baseline_ms`) and decided_ms: the normalized latency,
        or the timed one."""
        if not self.references:
            ms = self.timer(model, self.measure).total_ms
            return {
                "measured_ms": ms,
                "normalized_ms": None,
                "reference_ms": None,
                "drift": None,
                "decided_ms": ms,
            }
        res = interleaved(model, self.references, self.measure, self.timer, self.rng)
        normalized = res.normalized_ms(self.calibrations_ms)
        factors = [
            now / then for now, then in zip(res.reference_ms, self.drift_baseline_ms, strict=True)
        ]
        return {
            "measured_ms": res.latency.total_ms,
            "normalized_ms": normalized,
            "reference_ms": list(res.reference_ms),
            "drift": math.exp(statistics.fmean(math.log(f) for f in factors)),
            "decided_ms": normalized,
        }


def calibrate(reference: Transformer, measure: MeasureSettings, timer: Timer, n: int = 3) -> float:
    """The reference's latency under quiet conditions: the fastest of `n` timings' median runs
    (ms), the statistic the ratio compares."""
    return min(statistics.median(timer(reference, measure).run_totals) for _ in range(n))


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
