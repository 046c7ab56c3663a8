"""Pareto search (NSGA-II, pymoo) over (validation loss, predicted latency[, #params]).

Genes are choice indices (integers); a gene that decodes to no valid SubTransformer gets
dominated objectives. Fitness and latency are the same cached functions as the evolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hat.errors import HatError
from hat.profile import analytic_params
from hat.search.evolution import Candidate, LatencyCheck
from hat.space import ArchConfig, SearchSpace

BAD = 1e12


def pareto_search(
    space: SearchSpace,
    fitness,
    latency: LatencyCheck,
    pop_size: int = 125,
    n_gen: int = 30,
    seed: int = 1,
    with_params: bool = False,
) -> tuple[list[Candidate], list[Candidate]]:
    """(the non-dominated SubTransformers sorted by latency, every SubTransformer evaluated)."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import ElementwiseProblem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    choices = space.gene_choices()
    seen: dict[ArchConfig, Candidate] = {}

    def decode(x) -> ArchConfig | None:
        try:
            return space.from_gene(
                [opts[int(round(v))] for opts, v in zip(choices, x, strict=False)]
            )
        except HatError:
            return None

    class Problem(ElementwiseProblem):
        def __init__(self):
            super().__init__(
                n_var=len(choices),
                n_obj=3 if with_params else 2,
                xl=0,
                xu=np.array([len(c) - 1 for c in choices]),
                vtype=int,
            )

        def _evaluate(self, x, out, *args, **kwargs):
            arch = decode(x)
            if arch is None:
                out["F"] = [BAD] * self.n_obj
                return
            if arch not in seen:
                mean, std = latency(arch)
                seen[arch] = Candidate(arch, fitness(arch), mean, std)
            c = seen[arch]
            out["F"] = [c.loss, latency.bound(arch)] + (
                [analytic_params(arch, space.qkv_dim)] if with_params else []
            )

    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    result = minimize(Problem(), algorithm, ("n_gen", n_gen), seed=seed, verbose=False)
    front = {decode(x) for x in np.atleast_2d(result.X)} - {None}
    return sorted((seen[a] for a in front), key=lambda c: c.latency_ms), list(seen.values())


def plot_front(
    front: list[Candidate], evaluated: list[Candidate], path: str | Path, title: str
) -> None:
    """Loss vs predicted latency: every SubTransformer evaluated, and the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(
        [c.latency_ms for c in evaluated],
        [c.loss for c in evaluated],
        s=8,
        c="0.7",
        label=f"evaluated ({len(evaluated)})",
    )
    ax.plot(
        [c.latency_ms for c in front],
        [c.loss for c in front],
        "o-",
        c="C3",
        ms=5,
        label=f"Pareto front ({len(front)})",
    )
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("validation loss (bits/token, inherited weights)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
