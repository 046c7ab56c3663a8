"""Which SubTransformers a latency dataset measures, in which order.

The plan is a function of the space, size, sampling and seed, so re-running the same command
measures the same configs (and resumes).
"""

from __future__ import annotations

import random
from itertools import pairwise

import numpy as np

from hat.errors import HatError
from hat.space import ArchConfig, SearchSpace

SAMPLINGS = ("uniform", "stratified")


def proxy_cost(arch: ArchConfig, sentence_length: int, beam: int, qkv_dim: int) -> float:
    """A measurement-free latency proxy: encoder MACs + steps x beam x decoder MACs per step."""
    q, e, d = qkv_dim, arch.encoder_embed_dim, arch.decoder_embed_dim
    enc = sum(4 * e * q + 2 * e * f for f in arch.encoder_ffn_embed_dim) * sentence_length
    dec = sum(6 * d * q + 2 * d * f for f in arch.decoder_ffn_embed_dim) + 4 * d * 1000
    ende = (
        sum(2 * e * q * arch.ende_layers(i) for i in range(arch.decoder_layer_num))
        * sentence_length
    )
    return enc + ende + dec * sentence_length * beam


def plan_configs(
    space: SearchSpace,
    size: int,
    seed: int,
    sampling: str = "uniform",
    sentence_length: int = 30,
    beam: int = 5,
) -> list[ArchConfig]:
    """The configs to measure, in measurement order (random, so drift does not line up with size).

    uniform: HAT's sampler. stratified: equal numbers per bin of a latency proxy, so very small
    and very large SubTransformers, rare under uniform sampling, are covered as well.
    """
    if sampling not in SAMPLINGS:
        raise HatError(f"--sampling {sampling} is not one of {', '.join(SAMPLINGS)}")
    rng = random.Random(seed)
    if sampling == "uniform":
        return [space.sample(rng) for _ in range(size)]
    candidates = [space.sample(rng) for _ in range(size * 20)]
    cost = np.array([proxy_cost(c, sentence_length, beam, space.qkv_dim) for c in candidates])
    bins = min(10, size)
    edges = np.linspace(cost.min(), cost.max(), bins + 1)
    members = [
        list(np.flatnonzero((cost >= lo) & ((cost < hi) | (k == bins - 1))))
        for k, (lo, hi) in enumerate(pairwise(edges))
    ]
    chosen: list[int] = []
    while len(chosen) < size:  # round-robin over the bins; sparse bins run out first
        for m in members:
            if m and len(chosen) < size:
                chosen.append(m.pop(rng.randrange(len(m))))
    rng.shuffle(chosen)
    return [candidates[i] for i in chosen]


def reference_archs(
    space: SearchSpace, kind: str, sentence_length: int = 30, beam: int = 5
) -> list[ArchConfig]:
    """The reference SubTransformers of a latency dataset: "middle", the space's middle one;
    "bracket", a small and a large one: the 5th and 95th percentile by the latency proxy of 200
    fixed samples (inside the space's bulk, so timing them costs less than its extremes)."""
    if kind == "middle":
        return [space.middle()]
    if kind != "bracket":
        raise HatError(f"--reference must be bracket or middle, got {kind}")
    samples = plan_configs(space, 200, seed=3)
    by_cost = sorted(samples, key=lambda c: proxy_cost(c, sentence_length, beam, space.qkv_dim))
    return [by_cost[10], by_cost[190]]
