"""`--verify-top K`: time the best candidates on this device; never ship one over budget.

The top K (by validation loss) are timed. If none meets the budget, the predictor
under-estimates this device as it is now (drift, load, another runtime): the walk goes on
down the ranking, skipping candidates whose prediction scaled by the worst measured/predicted
ratio seen so far still breaks the budget, and timing the others until one meets it.
"""
from __future__ import annotations

import logging
from typing import Callable

from hat.latency.dataset import MeasureSettings, Timer, protocol_timer
from hat.search.evolution import Candidate
from hat.space import ArchConfig
from hat.transformer import Transformer

log = logging.getLogger(__name__)


def verify_top(candidates: list[Candidate], budget: float, k: int, build: Callable[[ArchConfig], Transformer],
               measure: MeasureSettings, timer: Timer = protocol_timer,
               max_extra: int = 20) -> tuple[Candidate, list[dict]]:
    """Time the first `k` candidates (best first) and, if none meets `budget`, up to `max_extra`
    more chosen by the calibrated walk; return the best one measured within budget (else the
    fastest measured) and the predicted-vs-measured report (one row per timed candidate)."""
    report: list[dict] = []

    def time_one(c: Candidate) -> None:
        measured = timer(build(c.arch), measure).total_ms
        report.append({"loss": c.loss, "predicted_ms": c.latency_ms, "measured_ms": measured,
                       "meets_budget": measured <= budget, "arch": c.arch.to_dict(), "top_k": len(report) < k})

    timed = list(candidates[:k])
    for c in timed:
        time_one(c)
    ratio = max((r["measured_ms"] / r["predicted_ms"] for r in report), default=1.0)
    for c in candidates[k:]:
        if any(r["meets_budget"] for r in report) or len(timed) >= k + max_extra:
            break
        if c.latency_ms * ratio > budget:
            continue
        timed.append(c)
        time_one(c)
        ratio = max(ratio, report[-1]["measured_ms"] / report[-1]["predicted_ms"])
    for c, r in zip(timed, report):
        if r["meets_budget"]:
            if not r["top_k"]:
                log.warning("budget %g ms: the top %d measured over budget (worst measured/predicted %.2f); "
                            "shipping the best candidate that measured within it", budget, k, ratio)
            return c, report
    log.warning("budget %g ms: no candidate timed within budget (measured/predicted up to %.2f); returning the "
                "fastest measured: re-collect the latency dataset on this device as it is now, or search with "
                "--latency-std-k", budget, ratio)
    fastest = min(range(len(report)), key=lambda i: report[i]["measured_ms"])
    return timed[fastest], report
