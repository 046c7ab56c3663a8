"""HAT's latency protocol on the compact model (what ships is what is timed).

Encoder: one sentence of `sentence_length` tokens. Decoder: beam search with `beam` beams
forced to run exactly `sentence_length` incremental steps with the KV cache. Dry runs
first, then `iters` timed runs of each; the reported mean and std are over the runs
between the 10th and 90th percentile. CUDA is timed with events after synchronisation,
the CPU with a monotonic clock. Eval mode under `torch.inference_mode()`.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from hat.generate import beam_search
from hat.transformer import EncoderDecoder


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

    @property
    def total_ms(self) -> float:
        return self.encoder_ms + self.decoder_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "total_ms": self.total_ms}

    def summary(self) -> str:
        return (f"{self.total_ms:.2f} ms = encoder {self.encoder_ms:.2f} ± {self.encoder_std_ms:.2f} + decoder "
                f"{self.decoder_ms:.2f} ± {self.decoder_std_ms:.2f} ms ({self.device}, {self.threads} threads, "
                f"beam {self.beam}, {self.sentence_length} tokens)")


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


def measure_latency(model: EncoderDecoder, sentence_length: int = 30, beam: int = 5, device: str = "cpu",
                    iters: int = 20, warmup: int = 5, threads: int | None = None, vocab_low: int = 4) -> Latency:
    """Time the encoder and the beam-search decoder of `model` on one dummy sentence."""
    dev = torch.device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval().to(dev)
    gen = torch.Generator().manual_seed(0)
    vocab = model.settings.vocab_size
    src = torch.randint(vocab_low, vocab, (1, sentence_length), generator=gen).to(dev)
    steps = sentence_length - 1  # + the forced </s> = sentence_length decoder steps
    timer = _timer(dev)
    enc_times, dec_times = [], []
    try:
        with torch.inference_mode():
            enc = model.encode(src)

            def decode():
                beam_search(model, src, beam=beam, max_len_a=0, max_len_b=steps, min_len=steps, enc=enc)

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
    return Latency(enc_mean, dec_mean, enc_std, dec_std, str(dev), torch.get_num_threads(),
                   sentence_length, beam, iters)
