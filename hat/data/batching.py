"""Token-bounded, length-bucketed batches with deterministic per-epoch shuffling and sharding.

A batch's cost counts padding, as fairseq does: ``len(batch) * max(src_len, tgt_len)``
over its pairs must not exceed ``max_tokens``. Pairs are sorted by length (random tie
order per epoch) so each batch holds similar lengths, then the batch order is shuffled.
Rank ``shard_id`` of ``num_shards`` takes every ``num_shards``-th batch, so the shards
partition the epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from hat.errors import HatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterReport:
    """How many pairs were dropped before batching, and why."""

    total: int
    too_long: int  # longer than max positions
    over_max_tokens: int  # a single pair costs more than max_tokens
    max_positions: tuple[int, int]
    max_tokens: int

    @property
    def kept(self) -> int:
        return self.total - self.too_long - self.over_max_tokens

    def __str__(self) -> str:
        parts = []
        if self.too_long:
            parts.append(
                f"{self.too_long} longer than max positions "
                f"(source {self.max_positions[0]}, target {self.max_positions[1]})"
            )
        if self.over_max_tokens:
            parts.append(f"{self.over_max_tokens} longer than --max-tokens {self.max_tokens}")
        dropped = "; ".join(parts) if parts else "none"
        return f"kept {self.kept:,} of {self.total:,} pairs; dropped: {dropped}"


class TokenBatcher:
    """Plans the batches of each epoch for one shard."""

    def __init__(
        self,
        src_sizes: np.ndarray,
        tgt_sizes: np.ndarray,
        max_tokens: int,
        max_sentences: int | None = None,
        max_positions: tuple[int, int] = (1024, 1024),
        seed: int = 1,
        shuffle: bool = True,
        num_shards: int = 1,
        shard_id: int = 0,
    ):
        if max_tokens is None or max_tokens <= 0:
            raise HatError(f"--max-tokens must be a positive number, got {max_tokens}")
        if max_sentences is not None and max_sentences <= 0:
            raise HatError(f"--max-sentences must be positive, got {max_sentences}")
        if not 0 <= shard_id < num_shards:
            raise HatError(f"shard {shard_id} does not exist among {num_shards} shards")
        src_sizes, tgt_sizes = np.asarray(src_sizes, np.int64), np.asarray(tgt_sizes, np.int64)
        self.max_tokens, self.max_sentences = max_tokens, max_sentences
        self.seed, self.shuffle = seed, shuffle
        self.num_shards, self.shard_id = num_shards, shard_id
        self.cost = np.maximum(src_sizes, tgt_sizes)
        too_long = (src_sizes > max_positions[0]) | (tgt_sizes > max_positions[1])
        over = ~too_long & (self.cost > max_tokens)
        self.indices = np.flatnonzero(~(too_long | over))
        self.report = FilterReport(
            len(src_sizes), int(too_long.sum()), int(over.sum()), tuple(max_positions), max_tokens
        )
        if self.report.kept == 0:
            raise HatError(f"no pair fits in a batch: {self.report}")
        if self.report.kept < self.report.total:
            log.warning("batching: %s", self.report)

    def _all_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.indices) if self.shuffle else self.indices
        # ties stay in random order: sorting them by target and source length pads 2.9% fewer
        # positions on Multi30k but trained worse (docs/benchmarks.md, 2026-12-01)
        order = order[np.argsort(self.cost[order], kind="stable")]
        batches, start, longest = [], 0, 0
        cap = self.max_sentences or len(order)
        for pos, cost in enumerate(self.cost[order].tolist()):
            new_longest = max(longest, cost)
            size = pos - start + 1
            if size > cap or new_longest * size > self.max_tokens:
                batches.append(order[start:pos])
                start, new_longest = pos, cost
            longest = new_longest
        batches.append(order[start:])
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This shard's batches of `epoch` (1-based), as arrays of pair indices."""
        return self._all_batches(epoch)[self.shard_id :: self.num_shards]

    def steps_per_shard(self, epoch: int) -> int:
        """Batches of the largest shard: every rank runs this many steps (short shards pad)."""
        return -(-len(self._all_batches(epoch)) // self.num_shards)
