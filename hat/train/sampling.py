"""Which SubTransformers a SuperTransformer update trains.

uniform  (HAT): one SubTransformer per update, every choice uniform.
sandwich: the largest, the smallest and `n_random` uniform ones per update; the largest
          learns from the data, the others from the largest (in-place distillation).
The choice depends only on (seed, update), so every rank trains the same SubTransformers
and a resumed run samples what the uninterrupted one would have.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hat.errors import HatError
from hat.settings import setting
from hat.space import ArchConfig, SearchSpace

MODES = ("uniform", "sandwich")


@dataclass(frozen=True)
class SamplingConfig:
    sampling: str = setting(
        "uniform",
        "uniform: one SubTransformer per update (HAT); sandwich: largest + smallest + "
        "--sandwich-random random ones, with in-place distillation from the largest",
        choices=MODES,
    )
    sandwich_random: int = setting(2, "sandwich: random SubTransformers per update")


class ConfigSampler:
    def __init__(self, space: SearchSpace, mode: str = "uniform", seed: int = 1, n_random: int = 2):
        if mode not in MODES:
            raise HatError(f"--sampling {mode} is not one of {', '.join(MODES)}")
        space.sample(
            random.Random(0)
        )  # fails early, with a clear error, on a space without choices
        self.space, self.mode, self.seed, self.n_random = space, mode, seed, n_random

    def configs(self, update: int) -> list[ArchConfig]:
        """The SubTransformers of update `update` (the first is the one whose loss is logged)."""
        rng = random.Random(self.seed * 1_000_003 + update)
        if self.mode == "uniform":
            return [self.space.sample(rng)]
        return [self.space.largest(), self.space.smallest()] + [
            self.space.sample(rng) for _ in range(self.n_random)
        ]
