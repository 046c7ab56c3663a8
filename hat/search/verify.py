"""`--verify-top K`: time the best candidates on this device; never ship one over budget.

The top K (by validation loss) are timed with the latency dataset's protocol and settings (the
predictor's metadata), each interleaved with the dataset's reference SubTransformers. The
references' timings over their quiet-device calibrations are the device's drift factor; the
candidate's ratios to the references with the calibrations give its normalized latency
(`hat.latency.timing.normalize`), which the budget is decided on (the predictor learnt
normalized latency): a slow hour does not reject a candidate, only the predictor's own error
does. Without references (older predictors) the timed latency decides.

If none meets the budget, the walk goes on down the ranking, skipping candidates whose
prediction scaled by the worst measured/predicted ratio seen so far still breaks the budget,
and timing the others until one meets it.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from hat.latency.rows import REFERENCE_TIMED_KEYS, references_in
from hat.latency.timing import DriftFreeTimer, MeasureSettings, Timer, protocol_timer
from hat.search.evolution import Candidate, Evolution
from hat.space import ArchConfig
from hat.transformer import Transformer

log = logging.getLogger(__name__)


def reference_of(meta: dict[str, Any]) -> dict[str, Any]:
    """verify_top's `references`, `calibrations_ms` and `references_timed_ms` from a predictor's
    metadata (or none: a predictor of raw latency, or of an older dataset)."""
    archs, calibrations = references_in(meta, meta.get("dataset") or "the predictor")
    if not calibrations or meta.get("latency") != "normalized":
        return {}
    timed = [meta.get(k) for k in REFERENCE_TIMED_KEYS[: len(archs)]]
    return {
        "references": archs,
        "calibrations_ms": calibrations,
        "references_timed_ms": [float(t) for t in timed] if all(timed) else None,
    }


def verify_top(
    candidates: list[Candidate],
    budget: float,
    k: int,
    build: Callable[[ArchConfig], Transformer],
    measure: MeasureSettings,
    timer: Timer = protocol_timer,
    max_extra: int = 20,
    references: Sequence[ArchConfig] = (),
    calibrations_ms: Sequence[float] = (),
    seed: int = 1,
    references_timed_ms: Sequence[float] | None = None,
) -> tuple[Candidate, list[dict]]:
    """Time the first `k` candidates (best first) and, if none meets `budget`, up to `max_extra`
    more chosen by the calibrated walk; return the best one measured within budget (else the
    fastest measured) and the report (one row per timed candidate: predicted, measured,
    normalized latency and the device's drift factor). With `references` and their
    `calibrations_ms` the budget is decided on normalized latency, else on the timed latency."""
    report: list[dict] = []
    ref_models = [build(a) for a in references] if calibrations_ms else []
    timing = DriftFreeTimer(measure, timer, ref_models, calibrations_ms, seed, references_timed_ms)

    def time_one(c: Candidate) -> None:
        row = {"loss": c.loss, "predicted_ms": c.latency_ms, "predicted_std_ms": c.latency_std_ms}
        row.update(timing.time(build(c.arch)))
        report.append(
            {
                **row,
                "meets_budget": row["decided_ms"] <= budget,
                "arch": c.arch.to_dict(),
                "top_k": len(report) < k,
            }
        )

    timed = list(candidates[:k])
    for c in timed:
        time_one(c)
    ratio = max((r["decided_ms"] / r["predicted_ms"] for r in report), default=1.0)
    for c in candidates[k:]:
        if any(r["meets_budget"] for r in report) or len(timed) >= k + max_extra:
            break
        if c.latency_ms * ratio > budget:
            continue
        timed.append(c)
        time_one(c)
        ratio = max(ratio, report[-1]["decided_ms"] / report[-1]["predicted_ms"])
    if ref_models and report:
        log.info(
            "budget %g ms: device drift factor %.2f (the reference SubTransformers now over "
            "when the dataset was timed); the budget is decided on normalized latency",
            budget,
            statistics.median(r["drift"] for r in report),
        )
    for c, r in zip(timed, report, strict=False):
        if r["meets_budget"]:
            if not r["top_k"]:
                log.warning(
                    "budget %g ms: the top %d measured over budget (worst measured/predicted "
                    "%.2f after drift); shipping the best candidate that measured within it",
                    budget,
                    k,
                    ratio,
                )
            return c, report
    log.warning(
        "budget %g ms: no candidate timed within budget (measured/predicted up to %.2f); "
        "returning the fastest measured: re-collect the latency dataset on this device as it "
        "is now, or search with --latency-std-k",
        budget,
        ratio,
    )
    fastest = min(range(len(report)), key=lambda i: report[i]["decided_ms"])
    return timed[fastest], report


def search_budgets(
    evolution: Evolution,
    budgets: list[float],
    k: int,
    build: Callable[[ArchConfig], Transformer],
    measure: MeasureSettings | None,
    predictor_meta: dict[str, Any],
    timer: Timer = protocol_timer,
) -> list[tuple[float, Candidate, list[dict]]]:
    """Evolve for every budget (the budgets share their evaluations), then pick each budget's
    SubTransformer: the best by validation loss, or with k > 0 the best of `verify_top`.
    Returns (budget, chosen candidate, verify report) per budget, smallest budget first."""
    budgets = sorted(budgets)
    for budget in budgets:
        evolution.run(budget)
    chosen = []
    for budget in budgets:
        ranked = evolution.best_within(budget)
        best, verified = ranked[0], []
        if k:
            best, verified = verify_top(
                ranked, budget, k, build, measure, timer, **reference_of(predictor_meta)
            )
        chosen.append((budget, best, verified))
    return chosen
