"""Fitness of a SubTransformer: validation loss with weights inherited from the supernet.

The validation batches are collated (and moved to the device) once and reused for every
candidate; losses are cached by architecture, so a config is evaluated once per search (HAT
re-evaluates the parents every iteration). With `valid_cnt_max`, the batches kept are spread
evenly over the length-sorted list (HAT kept the first ones: only the shortest sentences).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from hat.data.batching import TokenBatcher
from hat.data.dataset import DataDir, ParallelDataset
from hat.fsutil import file_sha256
from hat.space import ArchConfig
from hat.supernet import SuperTransformer
from hat.train.criterion import projected_label_smoothed_nll


class CachedLoss:
    """A loss per SubTransformer, cached by architecture (unless `cache=False`), with counts
    of what was asked and what was computed. Subclasses define `loss`."""

    def __init__(self, cache: bool = True):
        self.use_cache = cache
        self.cache: dict[ArchConfig, float] = {}
        self.evaluations = 0  # losses computed
        self.requests = 0  # losses asked for

    def loss(self, arch: ArchConfig) -> float:
        raise NotImplementedError

    def __call__(self, arch: ArchConfig) -> float:
        self.requests += 1
        if not self.use_cache:
            return self.loss(arch)
        if arch not in self.cache:
            self.cache[arch] = self.loss(arch)
        return self.cache[arch]

    @property
    def saved(self) -> int:
        """Evaluations the cache spared."""
        return self.requests - self.evaluations


class FunctionLoss(CachedLoss):
    """Any function of a SubTransformer as a cached loss (toy objectives, tests)."""

    def __init__(self, fn: Callable[[ArchConfig], float], cache: bool = True):
        super().__init__(cache)
        self.fn = fn

    def loss(self, arch: ArchConfig) -> float:
        self.evaluations += 1
        return self.fn(arch)


VALID_MAX_TOKENS = 4096  # tokens a validation batch of the fitness holds, by default
LABEL_SMOOTHING = 0.1  # of the fitness's loss, by default (the training recipes')


class Fitness(CachedLoss):
    def __init__(
        self,
        supernet: SuperTransformer,
        valid: ParallelDataset,
        max_tokens: int = VALID_MAX_TOKENS,
        valid_cnt_max: int | None = None,
        label_smoothing: float = LABEL_SMOOTHING,
        device: str | torch.device = "cpu",
        cache: bool = True,
    ):
        super().__init__(cache)
        self.net, self.device = supernet.to(device).eval(), device
        self.smoothing = label_smoothing
        positions = (supernet.settings.max_source_positions, supernet.settings.max_target_positions)
        batches = TokenBatcher(
            valid.src_sizes, valid.tgt_sizes, max_tokens, max_positions=positions, shuffle=False
        ).batches(1)
        if valid_cnt_max and valid_cnt_max < len(batches):
            batches = [batches[i * len(batches) // valid_cnt_max] for i in range(valid_cnt_max)]
        self.batches = [valid.collate(b.tolist()).to(device) for b in batches]

    @torch.no_grad()
    def loss(self, arch: ArchConfig) -> float:
        """Validation loss (label-smoothed, base 2, per target token) of `arch` in the supernet."""
        self.net.set_config(arch)
        total, tokens = torch.zeros((), dtype=torch.float64, device=self.device), 0.0
        for batch in self.batches:  # one host sync per candidate, not one per batch
            features, weight = self.net.output_inputs(batch.src_tokens, batch.prev_output_tokens)
            summed, _ = projected_label_smoothed_nll(features, weight, batch.target, self.smoothing)
            total = total + summed.double()
            tokens += batch.ntokens
        self.evaluations += 1
        return total.item() / tokens / math.log(2)


def fitness_settings(
    data: DataDir,
    subset: str,
    max_tokens: int = VALID_MAX_TOKENS,
    valid_cnt_max: int | None = None,
    label_smoothing: float = LABEL_SMOOTHING,
) -> dict:
    """What decides a fitness value besides the supernet: the validation split's contents
    (sha256) and the validation settings."""
    return {
        "data": [file_sha256(f) for f in data.split_files(subset)],
        "valid_subset": subset,
        "max_tokens": max_tokens,
        "valid_cnt_max": valid_cnt_max,
        "label_smoothing": label_smoothing,
    }


def fitness_inputs(
    supernet_file: str | Path,
    data: DataDir,
    subset: str,
    max_tokens: int,
    valid_cnt_max: int | None,
    label_smoothing: float = LABEL_SMOOTHING,
) -> dict:
    """What decides a fitness value: the supernet's contents (sha256) and the fitness settings.
    A search resumes only when these are unchanged."""
    return {
        "supernet": file_sha256(supernet_file),
        **fitness_settings(data, subset, max_tokens, valid_cnt_max, label_smoothing),
    }
