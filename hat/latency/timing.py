"""How a latency dataset times a SubTransformer: the settings, the runtime it is deployed on,
and rounds interleaved with a fixed reference SubTransformer.

Each SubTransformer is timed in rounds alternating with the reference, in a random order inside
each round (google/benchmark's random interleaving), by default one run of each per round: a
pair of runs a fraction of a second apart shares the device's state, so a burst or a slow
spell of the host slows both and cancels in their ratio. The ratio is the median over the
rounds of each round's ratio (docs/benchmarks.md: pairs repeat about twice as well as blocks of
runs on this shared CPU).
"""

from __future__ import annotations

import dataclasses
import math
import platform
import random
import statistics
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
        "rounds alternating each SubTransformer with the reference (A/B); "
        "default: one per timed run (pairs of runs)",
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
    ratio: float  # median over the rounds of (SubTransformer / reference), each a median run
    order: list[str]  # what was timed, in order: "sub" or "ref"

    def normalized_ms(self, calibration_ms: float) -> float:
        """The latency on the quiet device: ratio x the reference's quiet latency."""
        return self.ratio * calibration_ms


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
    reference: Transformer,
    measure: MeasureSettings,
    timer: Timer,
    rng: random.Random,
) -> Interleaved:
    """Time `model` and `reference` in `measure.round_count` rounds, each timing both in a
    random order (A/B or B/A) with a share of `measure.iters` runs: full dry runs in the first
    round; later, one after each switch when a round has several runs, none in pairs of single
    runs (every run then follows one of the other model, for both alike). The ratio is the
    median of the rounds' ratios of median runs: load that hits a round hits both and cancels,
    and a burst that hits one run is outvoted."""
    rounds = measure.round_count
    sub, ref, order = [], [], []
    for r in range(rounds):
        runs = measure.iters // rounds + (r < measure.iters % rounds)
        dry = measure.warmup if r == 0 else min(1, measure.warmup) if runs > 1 else 0
        m = dataclasses.replace(measure, iters=runs, warmup=dry)
        pair = [("sub", model, sub), ("ref", reference, ref)]
        rng.shuffle(pair)
        for name, net, out in pair:
            order.append(name)
            out.append(timer(net, m))
    ratio = statistics.median(
        statistics.median(s.run_totals) / statistics.median(f.run_totals)
        for s, f in zip(sub, ref, strict=True)
    )
    return Interleaved(pool(sub), pool(ref).total_ms, ratio, order)


class DriftFreeTimer:
    """Times models the way budgets are stated: each interleaved with the latency dataset's
    reference and normalized by its quiet calibration; without a reference, as timed.

    The drift factor compares the reference now with the reference as the dataset's rows timed
    it (`reference_timed_ms`, their median): both interleaved, so switching models costs both
    the same. The calibration times the reference alone and warm (faster than interleaved in
    blocks, about as fast as in pairs: docs/latency.md); it is the fallback for predictors that
    do not record the former."""

    def __init__(
        self,
        measure: MeasureSettings,
        timer: Timer,
        reference: Transformer | None,
        calibration_ms: float | None,
        seed: int = 1,
        reference_timed_ms: float | None = None,
    ):
        self.measure, self.timer = measure, timer
        self.reference = reference if reference is not None and calibration_ms else None
        self.calibration_ms = calibration_ms
        self.drift_baseline_ms = reference_timed_ms or calibration_ms
        self.rng = random.Random(seed)
        if timer is protocol_timer and measure.device == "cpu":
            warn_if_loaded(measure.core_set)  # the drift factor will show it too

    def time(self, model: Transformer) -> dict[str, float | None]:
        """measured_ms (as timed), normalized_ms, reference_ms, drift (the reference now over
        `drift_baseline_ms`) and decided_ms: the normalized latency, or the timed one."""
        if self.reference is None:
            ms = self.timer(model, self.measure).total_ms
            return {
                "measured_ms": ms,
                "normalized_ms": None,
                "reference_ms": None,
                "drift": None,
                "decided_ms": ms,
            }
        res = interleaved(model, self.reference, self.measure, self.timer, self.rng)
        normalized = res.normalized_ms(self.calibration_ms)
        return {
            "measured_ms": res.latency.total_ms,
            "normalized_ms": normalized,
            "reference_ms": res.reference_ms,
            "drift": res.reference_ms / self.drift_baseline_ms,
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
