"""`--verify-top K`: time the best candidates on this device; never ship one over budget."""
from __future__ import annotations

from typing import Callable

from hat.latency.dataset import MeasureSettings, Timer, protocol_timer
from hat.search.evolution import Candidate
from hat.space import ArchConfig
from hat.transformer import Transformer


def verify_top(candidates: list[Candidate], budget: float, k: int, build: Callable[[ArchConfig], Transformer],
               measure: MeasureSettings, timer: Timer = protocol_timer) -> tuple[Candidate, list[dict]]:
    """Measure the first `k` candidates (best first); return the best whose measured latency
    meets `budget` (else the fastest measured) and the predicted-vs-measured report."""
    report = []
    for c in candidates[:k]:
        measured = timer(build(c.arch), measure).total_ms
        report.append({"loss": c.loss, "predicted_ms": c.latency_ms, "measured_ms": measured,
                       "meets_budget": measured <= budget, "arch": c.arch.to_dict()})
    for c, r in zip(candidates, report):
        if r["meets_budget"]:
            return c, report
    fastest = min(range(len(report)), key=lambda i: report[i]["measured_ms"])
    return candidates[fastest], report
