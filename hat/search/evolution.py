"""HAT's evolutionary search under a latency budget, resumable and seeded.

Each iteration keeps the `parent_size` best of the population by fitness (validation loss
with inherited weights), then adds `mutation_size` children (each gene resampled with
probability `mutation_prob`) and `crossover_size` children (each gene from one of two
parents); a child whose predicted latency is over the budget is never admitted. The
state (population, iteration, random state, fitness cache) is saved atomically after every
iteration, so a killed search resumes from its last completed iteration.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from hat.errors import HatError
from hat.fsutil import atomic_write
from hat.latency.predictor import Predictor
from hat.space import ArchConfig, SearchSpace


@dataclass(frozen=True)
class EvolutionConfig:
    evo_iter: int = 30
    population_size: int = 125
    parent_size: int = 25
    mutation_size: int = 50
    crossover_size: int = 50
    mutation_prob: float = 0.3
    seed: int = 1
    latency_std_k: float = 0.0  # budget check on mean + k * std of the predictor
    max_tries: int = 100_000  # samples before a budget is declared infeasible

    def check(self) -> None:
        if self.parent_size + self.mutation_size + self.crossover_size > self.population_size:
            raise HatError("parent-size + mutation-size + crossover-size must not exceed population-size")
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


@dataclass
class Candidate:
    arch: ArchConfig
    loss: float
    latency_ms: float
    latency_std_ms: float

    def to_dict(self) -> dict:
        return {"arch": self.arch.to_dict(), "loss": self.loss, "latency_ms": self.latency_ms,
                "latency_std_ms": self.latency_std_ms}


class Evolution:
    def __init__(self, space: SearchSpace, fitness: Callable[[ArchConfig], float], latency: LatencyCheck,
                 cfg: EvolutionConfig, state_path: Path | None = None, log_path: Path | None = None,
                 progress: bool = True):
        cfg.check()
        self.space, self.fitness, self.latency, self.cfg = space, fitness, latency, cfg
        self.state_path, self.log_path, self.progress = state_path, log_path, progress
        self.choices = space.gene_choices()
        self.seen: dict[ArchConfig, Candidate] = {}  # every SubTransformer evaluated, any budget

    # --- genetic operators ----------------------------------------------------------------
    def _admit(self, gene: list[int], budget: float) -> ArchConfig | None:
        try:
            arch = self.space.from_gene(gene)
        except HatError:  # e.g. attention to more encoder layers than the child has
            return None
        return arch if self.latency.meets(arch, budget) else None

    def _fill(self, n: int, make: Callable[[], list[int]], budget: float, what: str) -> list[ArchConfig]:
        out: list[ArchConfig] = []
        for _ in range(self.cfg.max_tries):
            if len(out) == n:
                return out
            arch = self._admit(make(), budget)
            if arch is not None:
                out.append(arch)
        if len(out) < n:
            smallest = self.latency.bound(self.space.smallest())
            raise HatError(f"budget {budget:g} ms is too tight: {self.cfg.max_tries} {what} gave only {len(out)} of {n} "
                           f"SubTransformers within it (the smallest SubTransformer is predicted at {smallest:.1f} ms)")
        return out

    def random_population(self, rng: random.Random, budget: float) -> list[ArchConfig]:
        return self._fill(self.cfg.population_size, lambda: self.space.to_gene(self.space.sample(rng)), budget,
                          "random samples")

    def mutate(self, rng: random.Random, parents: list[ArchConfig], budget: float) -> list[ArchConfig]:
        def make() -> list[int]:
            gene = self.space.to_gene(rng.choice(parents))
            return [rng.choice(opts) if rng.random() < self.cfg.mutation_prob else g
                    for g, opts in zip(gene, self.choices)]
        return self._fill(self.cfg.mutation_size, make, budget, "mutations")

    def crossover(self, rng: random.Random, parents: list[ArchConfig], budget: float) -> list[ArchConfig]:
        def make() -> list[int]:
            a, b = rng.sample(parents, 2)
            return [rng.choice(pair) for pair in zip(self.space.to_gene(a), self.space.to_gene(b))]
        return self._fill(self.cfg.crossover_size, make, budget, "crossovers")

    # --- the loop ---------------------------------------------------------------------------
    def _rank(self, population: list[ArchConfig]) -> list[Candidate]:
        scored = []
        for arch in population:
            mean, std = self.latency(arch)
            scored.append(Candidate(arch, self.fitness(arch), mean, std))
            self.seen[arch] = scored[-1]
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
        bar = tqdm(total=self.cfg.evo_iter, initial=start, desc=f"search {tag}{budget:g} ms", unit="iter",
                   disable=not self.progress or None)
        t0 = time.time()
        for it in range(start, self.cfg.evo_iter):
            ranked = self._rank(population)
            parents = [c.arch for c in ranked[:self.cfg.parent_size]]
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
        fitness = self.fitness
        record = {"budget_ms": budget, "iteration": iteration, "best_loss": best.loss,
                  "best_latency_ms": best.latency_ms, "best_arch": best.arch.to_dict(),
                  "population_loss_mean": float(np.mean([c.loss for c in ranked])),
                  "population_loss_min": best.loss,
                  "population_latency_mean_ms": float(np.mean([c.latency_ms for c in ranked])),
                  "population_latency_max_ms": float(max(c.latency_ms for c in ranked)),
                  "evaluations": getattr(fitness, "evaluations", None),
                  "evaluations_saved": getattr(fitness, "saved", None), "seconds": round(seconds, 2)}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    # --- resumable state ----------------------------------------------------------------------
    def _fingerprint(self, budget: float) -> dict:
        return {"budget": budget, "config": asdict(self.cfg), "space": self.space.to_hat_dict()}

    def _save_state(self, budget: float, iteration: int, population: list[ArchConfig], rng: random.Random) -> None:
        if self.state_path is None:
            return
        states = self._read_states()
        states[f"{budget:g}"] = {"fingerprint": self._fingerprint(budget), "iteration": iteration,
                                 "population": [a.to_dict() for a in population],
                                 "rng": _rng_to_json(rng.getstate())}
        payload = {"states": states, "evaluated": [[a.to_dict(), c.loss] for a, c in self.seen.items()]}
        with atomic_write(self.state_path) as f:
            json.dump(payload, f)

    def _read_states(self) -> dict:
        if self.state_path is None or not self.state_path.exists():
            return {}
        return json.loads(self.state_path.read_text())["states"]

    def restore(self) -> None:
        """Reload what an earlier (killed) run of this search evaluated (and the fitness cache)."""
        if self.state_path is None or not self.state_path.exists():
            return
        cache = getattr(self.fitness, "cache", None)
        for arch_dict, loss in json.loads(self.state_path.read_text())["evaluated"]:
            arch = ArchConfig.from_dict(arch_dict)
            self.seen[arch] = Candidate(arch, loss, *self.latency(arch))
            if cache is not None:
                cache[arch] = loss

    def _load_state(self, budget: float):
        state = self._read_states().get(f"{budget:g}")
        if state is None:
            return None
        if state["fingerprint"] != json.loads(json.dumps(self._fingerprint(budget))):
            raise HatError(f"{self.state_path} belongs to a search with other settings; delete it or use another "
                           f"--search-dir to start afresh")
        rng = random.Random()
        rng.setstate(_rng_from_json(state["rng"]))
        return [ArchConfig.from_dict(a) for a in state["population"]], state["iteration"], rng


def _rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(data: list) -> tuple:
    return data[0], tuple(data[1]), data[2]
