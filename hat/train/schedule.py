"""Learning-rate schedules with HAT's keys, as `torch.optim.lr_scheduler.LambdaLR` factors
of an optimizer whose base lr is 1.0 (the lambda returns the absolute lr).

inverse_sqrt: linear warmup from `warmup_init_lr` to `lr` over `warmup_updates`, then
    `lr * sqrt(warmup_updates / update)`.
cosine:       linear warmup from `warmup_init_lr` to `max_lr`, then a cosine from `max_lr`
    down to `lr` (HAT's configs: the minimum) over `max_update - warmup_updates` updates;
    each later period restarts scaled by `lr_shrink`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hat.errors import HatError
from hat.settings import setting

SCHEDULERS = ("inverse_sqrt", "cosine", "fixed")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = setting("inverse_sqrt", "", key="lr-scheduler", choices=SCHEDULERS, hat=True)
    lr: float = setting(5e-4, "peak lr (inverse_sqrt) or final lr (cosine)", hat=True)
    warmup_updates: int = setting(4000, "", hat=True)
    warmup_init_lr: float = setting(1e-7, "", hat=True)
    max_lr: float | None = setting(None, "peak lr of the cosine schedule", hat=True)
    max_update: int = 0  # the run's (TrainConfig.max_update): where the cosine ends
    lr_shrink: float = setting(1.0, "cosine: factor per restart", hat=True)


def lr_function(cfg: ScheduleConfig) -> Callable[[int], float]:
    """update number (0-based, before the step) -> learning rate."""
    warm = cfg.warmup_updates
    if cfg.name not in SCHEDULERS:
        raise HatError(
            f"--lr-scheduler {cfg.name} is not supported; use one of {', '.join(SCHEDULERS)}"
        )
    if cfg.name == "fixed":
        return lambda update: cfg.lr
    peak = (
        cfg.lr if cfg.name == "inverse_sqrt" else (cfg.max_lr if cfg.max_lr is not None else None)
    )
    if peak is None:
        raise HatError("--lr-scheduler cosine needs --max-lr (the peak; --lr is the final minimum)")

    def warmup(update: int) -> float:
        return cfg.warmup_init_lr + (peak - cfg.warmup_init_lr) * update / warm

    if cfg.name == "inverse_sqrt":

        def f(update: int) -> float:
            if update < warm:
                return warmup(update)
            return peak * math.sqrt(max(warm, 1) / max(update, 1))

        return f

    if cfg.max_update <= warm:
        raise HatError("--lr-scheduler cosine needs --max-update larger than --warmup-updates")
    period = cfg.max_update - warm

    def f(update: int) -> float:
        if update < warm:
            return warmup(update)
        t = update - warm
        i, t_cur = divmod(t, period)
        shrink = cfg.lr_shrink**i
        lo, hi = cfg.lr * shrink, peak * shrink
        return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * t_cur / period))

    return f


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR driving `optimizer` (whose param groups must have lr 1.0)."""
    for group in optimizer.param_groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_function(cfg))
