"""Training jobs of the pipeline run side by side in worker processes.

The SuperTransformer, the baselines and the found models are independent training runs. Small
Transformers use two or more CPU threads poorly (the toy model: 3.9 updates/s on two threads,
2.8 on one), so on a CPU the pipeline trains several at once, each on its share of the cores
(two toy models on one core each: 5.4 updates/s together, 1.38x). Workers are spawned (not
forked: OpenMP is not fork-safe), log through the parent's handlers with the job's name, and
each runs the same stage bookkeeping as the parent, so a killed run resumes the same way.
"""

from __future__ import annotations

import ctypes
import logging
import logging.handlers
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import torch

from hat.latency.measure import current_cores

PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass(frozen=True)
class TrainingJob:
    """One training stage: the SuperTransformer (`arch` None) or one model."""

    stage: str
    settings: dict[str, Any]
    upstream: tuple[str, ...]
    arch: dict[str, Any] | None = None
    inherited: bool = False  # starts from the SuperTransformer's weights
    seed: int = 1  # a model's training seed


def side_by_side(jobs: int, device: torch.device) -> int:
    """How many training jobs run at once: `jobs`, or (0) one per CPU core, one on a GPU."""
    if jobs > 0:
        return jobs
    return len(current_cores()) if device.type == "cpu" else 1


class _Prefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = f"{self.prefix} | {record.getMessage()}", None
        return True


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the pipeline dies (no orphan keeps training)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: orphans finish their stage and stop
        pass


def _start_worker(queue: Any, level: int, threads: int) -> None:
    _die_with_parent()
    root = logging.getLogger()
    root.handlers = [logging.handlers.QueueHandler(queue)]
    root.setLevel(level)
    torch.set_num_threads(threads)


def _in_worker(run: Callable[[TrainingJob], Any], job: TrainingJob) -> None:
    handler = logging.getLogger().handlers[0]
    handler.filters = [_Prefix(job.stage)]
    run(job)


def run_side_by_side(
    run: Callable[[TrainingJob], Any], jobs: Sequence[TrainingJob], workers: int
) -> None:
    """`run(job)` for every job, `workers` at a time in spawned processes, longest first as
    given; the cores are shared out evenly. After the first failure no new job starts, the
    running ones finish (their stages are kept), and the failure is raised."""
    threads = max(1, len(current_cores()) // workers)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    root = logging.getLogger()
    listener = logging.handlers.QueueListener(queue, *root.handlers, respect_handler_level=True)
    listener.start()
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_start_worker,
        initargs=(queue, root.getEffectiveLevel(), threads),
    )
    try:
        futures = [pool.submit(_in_worker, run, job) for job in jobs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        listener.stop()
