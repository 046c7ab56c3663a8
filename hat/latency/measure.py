"""The latency protocols on the compact model (what ships is what is timed).

"beam-search" (hat's default, deployment latency): the encoder on one sentence of
`sentence_length` tokens, then the real beam search with `beam` beams forced to run exactly
`sentence_length` incremental steps with the KV cache (top-k, reordering, finished hypotheses).
"hat" (HAT's, to compare with its CSVs): the same encoder; the decoder is the encoder output
repeated `beam` times and `sentence_length` incremental decoder forward steps (output
projection included) with no search. Dry runs first, then `iters` timed runs of each; the
reported mean and std are over the runs between the 10th and 90th percentile. CUDA is timed
with events after synchronisation, the CPU with a monotonic clock. Eval mode under
`torch.inference_mode()`. Threads and CPU affinity are set for the measurement only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hat.errors import HatError
from hat.generate import beam_search
from hat.transformer import EncoderDecoder

log = logging.getLogger(__name__)
PROTOCOLS = ("beam-search", "hat")


@dataclass
class Latency:
    encoder_ms: float  # trimmed mean
    decoder_ms: float
    encoder_std_ms: float
    decoder_std_ms: float
    device: str
    threads: int
    sentence_length: int
    beam: int
    iters: int
    cores: str = ""  # the CPU affinity it ran under, e.g. "0-1"
    protocol: str = "beam-search"
    runs_ms: tuple[float, ...] = field(default=(), repr=False)  # each timed run, enc + dec

    @property
    def total_ms(self) -> float:
        return self.encoder_ms + self.decoder_ms

    @property
    def run_totals(self) -> tuple[float, ...]:
        """Each timed run's total (ms); without them, `iters` runs at the mean."""
        return self.runs_ms or (self.total_ms,) * self.iters

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["runs_ms"]
        return {**d, "total_ms": self.total_ms}

    def summary(self) -> str:
        return (
            f"{self.total_ms:.2f} ms = encoder {self.encoder_ms:.2f} ± {self.encoder_std_ms:.2f}"
            f" + decoder {self.decoder_ms:.2f} ± {self.decoder_std_ms:.2f} ms ({self.device}, "
            f"{self.threads} threads, beam {self.beam}, {self.sentence_length} tokens, "
            f"{self.protocol} protocol)"
        )


def trimmed_stats(times_ms: list[float]) -> tuple[float, float]:
    """Mean and std of the runs between the 10th and 90th percentile (HAT's protocol)."""
    lo, hi = np.percentile(times_ms, [10, 90])
    kept = [t for t in times_ms if lo <= t <= hi] or list(times_ms)
    return statistics.fmean(kept), (statistics.pstdev(kept) if len(kept) > 1 else 0.0)


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    if device.type == "cuda":

        def run(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end)
    else:

        def run(fn):
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1000.0

    return run


def format_cores(cores: set[int] | list[int]) -> str:
    """CPU ids as ranges: {0, 1, 2, 5} -> "0-2,5"."""
    out, ids = [], sorted(cores)
    for i, c in enumerate(ids):
        if i == 0 or c != ids[i - 1] + 1:
            out.append([c, c])
        else:
            out[-1][1] = c
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in out)


def parse_cores(text: str) -> set[int]:
    """ "0-2,5" -> {0, 1, 2, 5}."""
    cores: set[int] = set()
    try:
        for part in filter(None, text.split(",")):
            a, _, b = part.partition("-")
            cores.update(range(int(a), int(b or a) + 1))
    except ValueError:
        raise HatError(f"--cores {text!r}: expected CPU ids and ranges such as 0-1,3") from None
    return cores


def current_cores() -> set[int]:
    return (
        os.sched_getaffinity(0)
        if hasattr(os, "sched_getaffinity")
        else set(range(os.cpu_count() or 1))
    )


@contextlib.contextmanager
def pinned(threads: int | None = None, cores: set[int] | None = None) -> Iterator[None]:
    """Run with `threads` torch threads on CPU `cores`; restore both afterwards."""
    old_threads, old_cores = torch.get_num_threads(), current_cores()
    try:
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(old_threads)
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, old_cores)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """CPU id -> (busy, total) jiffies from /proc/stat (empty where there is none)."""
    times = {}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *values = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    v = [int(x) for x in values]
                    idle = v[3] + (v[4] if len(v) > 4 else 0)
                    times[int(name[3:])] = (sum(v[:8]) - idle, sum(v[:8]))
    except (OSError, ValueError):
        return {}
    return times


def core_load(cores: set[int] | None = None, interval: float = 0.25) -> dict[int, float]:
    """Busy fraction of each CPU in `cores` (default: ours) over `interval` seconds."""
    cores = cores or current_cores()
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    return {
        c: (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1])
        for c in sorted(cores)
        if c in a and c in b
    }


def warn_if_loaded(cores: set[int] | None = None, threshold: float = 0.3) -> dict[int, float]:
    """Log a warning when another process keeps a measured core busy; return the loads."""
    load = core_load(cores)
    busy = {c: f for c, f in load.items() if f > threshold}
    if busy:
        log.warning(
            "cores %s are already busy (%s) before timing: another process is using "
            "them, so raw latencies will be inflated (normalized ones are corrected by "
            "the references)",
            format_cores(set(busy)),
            ", ".join(f"cpu{c} {f:.0%}" for c, f in busy.items()),
        )
    return load


def measure_latency(
    model: EncoderDecoder,
    sentence_length: int = 30,
    beam: int = 5,
    device: str = "cpu",
    iters: int = 20,
    warmup: int = 5,
    threads: int | None = None,
    vocab_low: int = 4,
    cores: set[int] | None = None,
    protocol: str = "beam-search",
) -> Latency:
    """Time the encoder and the decoder of `model` on one dummy sentence with `protocol`,
    with `threads` torch threads on CPU `cores` (both restored afterwards)."""
    if protocol not in PROTOCOLS:
        raise HatError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol}")
    dev = torch.device(device)
    was_training = model.training
    model.eval().to(dev)
    gen = torch.Generator().manual_seed(0)
    vocab = model.settings.vocab_size
    src = torch.randint(vocab_low, vocab, (1, sentence_length), generator=gen).to(dev)
    prev = torch.randint(vocab_low, vocab, (beam, sentence_length), generator=gen).to(dev)
    steps = sentence_length - 1  # + the forced </s> = sentence_length decoder steps
    timer = _timer(dev)
    enc_times, dec_times = [], []
    with pinned(threads, cores):
        used_threads, used_cores = torch.get_num_threads(), format_cores(current_cores())
        try:
            with torch.inference_mode():
                enc = model.encode(src)

                def decode():
                    if protocol == "hat":  # HAT's: incremental decoder forward steps, no search
                        state = model.start_decoding(enc, beam=beam, max_steps=sentence_length)
                        for step in range(sentence_length):
                            model.decode_step(prev[:, step], state)
                    else:
                        beam_search(
                            model,
                            src,
                            beam=beam,
                            max_len_a=0,
                            max_len_b=steps,
                            min_len=steps,
                            enc=enc,
                        )

                for i in range(warmup + iters):
                    e = timer(lambda: model.encode(src))
                    d = timer(decode)
                    if i >= warmup:
                        enc_times.append(e)
                        dec_times.append(d)
        finally:
            model.train(was_training)
    enc_mean, enc_std = trimmed_stats(enc_times)
    dec_mean, dec_std = trimmed_stats(dec_times)
    return Latency(
        enc_mean,
        dec_mean,
        enc_std,
        dec_std,
        str(dev),
        used_threads,
        sentence_length,
        beam,
        iters,
        used_cores,
        protocol,
        tuple(e + d for e, d in zip(enc_times, dec_times, strict=True)),
    )
