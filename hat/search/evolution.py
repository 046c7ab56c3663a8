"""HAT's evolutionary search under a latency budget, resumable and seeded.

Each iteration keeps the `parent_size` best of the population by fitness (validation loss
with inherited weights), then adds `mutation_size` children (each gene resampled with
probability `mutation_prob`) and `crossover_size` children (each gene from one of two
parents); a child whose predicted latency is over the budget is never admitted. The
state (population, iteration, random state, fitness cache) is saved atomically after every
iteration, so a killed search resumes from its last completed iteration; a state made from
other inputs (supernet, predictor, data, validation or evolution settings) is never resumed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hat.errors import HatError
from hat.fsutil import atomic_write, changed_keys
from hat.latency.predictor import Predictor
from hat.search.fitness import CachedLoss, FunctionLoss
from hat.settings import setting
from hat.space import ArchConfig, SearchSpace

log = logging.getLogger(__name__)
STATE_FORMAT = 2  # 2: populations are genes (1: SubTransformers)


@dataclass(frozen=True)
class EvolutionConfig:
    evo_iter: int = setting(30, "generations", hat=True)
    population_size: int = setting(125, "", hat=True)
    parent_size: int = setting(25, "parents kept per generation", hat=True)
    mutation_size: int = setting(50, "children by mutation per generation", hat=True)
    crossover_size: int = setting(50, "children by crossover per generation", hat=True)
    mutation_prob: float = setting(0.3, "per-gene mutation probability", hat=True)
    seed: int = 1  # the run's --seed
    latency_std_k: float = setting(
        0.0, "check the budget against predicted mean + k * std (ensemble predictors)"
    )
    max_tries: int = 100_000  # samples before a budget is declared infeasible

    def check(self) -> None:
        if self.parent_size + self.mutation_size + self.crossover_size > self.population_size:
            raise HatError(
                "parent-size + mutation-size + crossover-size must not exceed population-size"
            )
        if self.parent_size < 2 and self.crossover_size:
            raise HatError("crossover needs parent-size >= 2")
        if not 0 <= self.mutation_prob <= 1:
            raise HatError("mutation-prob must be between 0 and 1")


class LatencyCheck:
    """Predicted latency of SubTransformers (memoised) and the budget test."""

    def __init__(self, predictor: Predictor, std_k: float = 0.0):
        self.predictor, self.std_k = predictor, std_k
        self.memo: dict[ArchConfig, tuple[float, float]] = {}

    def __call__(self, arch: ArchConfig) -> tuple[float, float]:
        if arch not in self.memo:
            mean, std = self.predictor.predict_archs([arch])
            self.memo[arch] = (float(mean[0]), float(std[0]))
        return self.memo[arch]

    def bound(self, arch: ArchConfig) -> float:
        mean, std = self(arch)
        return mean + self.std_k * std

    def meets(self, arch: ArchConfig, budget: float) -> bool:
        return self.bound(arch) <= budget


Gene = tuple[int, ...]  # HAT's gene layout (SearchSpace.gene_choices): every layer of the supernet


@dataclass
class Candidate:
    arch: ArchConfig
    loss: float
    latency_ms: float
    latency_std_ms: float
    gene: Gene | None = None  # the gene it was decoded from (entries of absent layers included)

    def to_dict(self) -> dict:
        return {
            "arch": self.arch.to_dict(),
            "loss": self.loss,
            "latency_ms": self.latency_ms,
            "latency_std_ms": self.latency_std_ms,
        }


class Evolution:
    def __init__(
        self,
        space: SearchSpace,
        fitness: CachedLoss | Callable[[ArchConfig], float],
        latency: LatencyCheck,
        cfg: EvolutionConfig,
        state_path: Path | None = None,
        log_path: Path | None = None,
        progress: bool = True,
        inputs: dict | None = None,
    ):
        """`inputs` identifies everything that decides a fitness or a predicted latency (file
        digests of the supernet, the predictor and the data, the validation settings): a saved
        state made from other inputs is never resumed. A plain function as `fitness` is cached
        like the supernet's validation loss."""
        cfg.check()
        if not isinstance(fitness, CachedLoss):
            fitness = FunctionLoss(fitness)
        self.space, self.fitness, self.latency, self.cfg = space, fitness, latency, cfg
        self.state_path, self.log_path, self.progress = state_path, log_path, progress
        self.inputs = json.loads(json.dumps(inputs or {}))
        self.choices = space.gene_choices()
        self.seen: dict[ArchConfig, Candidate] = {}  # every SubTransformer evaluated, any budget

    # --- genetic operators ----------------------------------------------------------------
    # The population is a list of genes, not of SubTransformers: as in HAT, the entries of layers
    # a gene does not use are kept through mutation and crossover, so a later mutation that adds
    # a layer brings them back.
    def _admit(self, gene: Gene, budget: float) -> ArchConfig | None:
        try:
            arch = self.space.from_gene(gene)
        except HatError:  # e.g. attention to more encoder layers than the child has
            return None
        return arch if self.latency.meets(arch, budget) else None

    def _fill(self, n: int, make: Callable[[], Gene], budget: float, what: str) -> list[Gene]:
        out: list[Gene] = []
        for _ in range(self.cfg.max_tries):
            if len(out) == n:
                return out
            gene = tuple(make())
            if self._admit(gene, budget) is not None:
                out.append(gene)
        if len(out) < n:
            smallest = self.latency.bound(self.space.smallest())
            raise HatError(
                f"budget {budget:g} ms is too tight: {self.cfg.max_tries} {what} gave only "
                f"{len(out)} of {n} "
                "SubTransformers within it (the smallest SubTransformer is predicted at "
                f"{smallest:.1f} ms)"
            )
        return out

    def random_gene(self, rng: random.Random) -> Gene:
        """A random SubTransformer (the space's sampler), random entries for its absent layers."""
        return tuple(self.space.to_gene(self.space.sample(rng), absent=rng.choice))

    def random_population(self, rng: random.Random, budget: float) -> list[Gene]:
        return self._fill(
            self.cfg.population_size, lambda: self.random_gene(rng), budget, "random samples"
        )

    def mutate(self, rng: random.Random, parents: list[Gene], budget: float) -> list[Gene]:
        def make() -> list[int]:
            gene = rng.choice(parents)
            return [
                rng.choice(opts) if rng.random() < self.cfg.mutation_prob else g
                for g, opts in zip(gene, self.choices, strict=False)
            ]

        return self._fill(self.cfg.mutation_size, make, budget, "mutations")

    def crossover(self, rng: random.Random, parents: list[Gene], budget: float) -> list[Gene]:
        def make() -> list[int]:
            a, b = rng.sample(parents, 2)
            return [rng.choice(pair) for pair in zip(a, b, strict=False)]

        return self._fill(self.cfg.crossover_size, make, budget, "crossovers")

    # --- the loop ---------------------------------------------------------------------------
    def _rank(self, population: list[Gene]) -> list[Candidate]:
        scored = []
        for gene in population:
            arch = self.space.from_gene(gene)
            mean, std = self.latency(arch)
            scored.append(Candidate(arch, self.fitness(arch), mean, std, gene))
            self.seen.setdefault(arch, scored[-1])
        return sorted(scored, key=lambda c: c.loss)

    def best_within(self, budget: float) -> list[Candidate]:
        """Every SubTransformer evaluated so far (by any budget's search) that meets `budget`,
        best first: a larger budget can only do better, and never picks a faster model."""
        fits = [c for c in self.seen.values() if self.latency.meets(c.arch, budget)]
        return sorted(fits, key=lambda c: (c.loss, c.latency_ms))

    def run(self, budget: float, tag: str = "") -> list[Candidate]:
        """Search under `budget` ms; the final population, best first."""
        state = self._load_state(budget)
        if state is None:
            rng = random.Random(self.cfg.seed)
            population, start = self.random_population(rng, budget), 0
            self._save_state(budget, 0, population, rng)
        else:
            population, start, rng = state
        bar = tqdm(
            total=self.cfg.evo_iter,
            initial=start,
            desc=f"search {tag}{budget:g} ms",
            unit="iter",
            disable=not self.progress or None,
        )
        t0 = time.time()
        for it in range(start, self.cfg.evo_iter):
            ranked = self._rank(population)
            parents = [c.gene for c in ranked[: self.cfg.parent_size]]
            children = self.mutate(rng, parents, budget) + self.crossover(rng, parents, budget)
            self._log(budget, it + 1, ranked, time.time() - t0)
            population = parents + children
            self._save_state(budget, it + 1, population, rng)
            bar.update(1)
            bar.set_postfix(best_loss=f"{ranked[0].loss:.3f}", ms=f"{ranked[0].latency_ms:.1f}")
        bar.close()
        return self._rank(population)

    def _log(self, budget: float, iteration: int, ranked: list[Candidate], seconds: float) -> None:
        if self.log_path is None:
            return
        best = ranked[0]
        record = {
            "budget_ms": budget,
            "iteration": iteration,
            "best_loss": best.loss,
            "best_latency_ms": best.latency_ms,
            "best_arch": best.arch.to_dict(),
            "population_loss_mean": float(np.mean([c.loss for c in ranked])),
            "population_loss_min": best.loss,
            "population_latency_mean_ms": float(np.mean([c.latency_ms for c in ranked])),
            "population_latency_max_ms": float(max(c.latency_ms for c in ranked)),
            "evaluations": self.fitness.evaluations,
            "evaluations_saved": self.fitness.saved,
            "seconds": round(seconds, 2),
        }
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    # --- resumable state ----------------------------------------------------------------------
    def _fingerprint(self, budget: float) -> dict:
        return json.loads(
            json.dumps(
                {
                    "budget": budget,
                    "config": asdict(self.cfg),
                    "space": self.space.to_hat_dict(),
                    "format": STATE_FORMAT,
                }
            )
        )

    def _save_state(
        self, budget: float, iteration: int, population: list[Gene], rng: random.Random
    ) -> None:
        if self.state_path is None:
            return
        states = self._read_states()
        states[f"{budget:g}"] = {
            "fingerprint": self._fingerprint(budget),
            "iteration": iteration,
            "population": [list(g) for g in population],
            "rng": _rng_to_json(rng.getstate()),
        }
        payload = {
            "inputs": self.inputs,
            "states": states,
            "evaluated": [[a.to_dict(), c.loss] for a, c in self.seen.items()],
        }
        with atomic_write(self.state_path) as f:
            json.dump(payload, f)

    def _read_payload(self) -> dict:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            payload = json.loads(self.state_path.read_text())
        except ValueError as e:
            raise HatError(
                f"{self.state_path}: not a search state ({e}); delete it to start afresh"
            ) from None
        if not isinstance(payload, dict) or not {"states", "evaluated"} <= payload.keys():
            raise HatError(
                f"{self.state_path}: not a search state (no states / evaluated); delete it to "
                f"start afresh"
            )
        return payload

    def _read_states(self) -> dict:
        return self._read_payload().get("states", {})

    def restore(self) -> None:
        """Reload what an earlier (killed) run of this search evaluated into the fitness cache,
        if that run had the same inputs; otherwise set its state aside and start fresh."""
        payload = self._read_payload()
        if not payload:
            return
        changed = changed_keys(payload.get("inputs", {}), self.inputs)
        if changed:
            stale = self.state_path.with_name(self.state_path.name + ".stale")
            os.replace(self.state_path, stale)
            log.warning(
                "search state %s was made with other inputs (%s changed): starting fresh "
                "(old state "
                "kept as %s)",
                self.state_path,
                ", ".join(changed),
                stale.name,
            )
            return
        for arch_dict, loss in payload["evaluated"]:
            arch = ArchConfig.from_dict(arch_dict)
            self.seen[arch] = Candidate(arch, loss, *self.latency(arch))
            self.fitness.cache[arch] = loss

    def _load_state(self, budget: float):
        state = self._read_states().get(f"{budget:g}")
        if state is None:
            return None
        if state["fingerprint"] != self._fingerprint(budget):
            changed = changed_keys(state["fingerprint"], self._fingerprint(budget))
            log.warning(
                "budget %g ms: the saved search used other settings (%s changed): searching afresh",
                budget,
                ", ".join(changed),
            )
            return None
        rng = random.Random()
        rng.setstate(_rng_from_json(state["rng"]))
        return [tuple(g) for g in state["population"]], state["iteration"], rng


def _rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(data: list) -> tuple:
    return data[0], tuple(data[1]), data[2]
