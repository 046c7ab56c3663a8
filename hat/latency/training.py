"""Training latency predictors: HAT's recipe, hat's default ensemble, few-shot adaptation.

HAT's recipe: `HatNet` on the 10 features / feature-norm, predicting latency / lat-norm, MSE,
Adam, batch 128. hat's default: the physics model fitted with an L1 loss on relative error,
times an ensemble of MLPs correcting it in log space, shrunk by their out-of-bag error.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from hat.errors import HatError
from hat.latency.measure import pinned
from hat.latency.predictor import EnsemblePredictor, HatMlpPredictor, HatNet, Predictor

ENSEMBLE_MEMBERS = 5  # hat's default predictor: MLPs in the ensemble


def _batches(n: int, bsz: int, gen: torch.Generator):
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - bsz + 1 if n >= bsz else 1, bsz):
            yield perm[i : i + bsz]


def train_hat_recipe(
    features: np.ndarray,
    latency: np.ndarray,
    feature_norm: list[float],
    lat_norm: float,
    steps: int = 5000,
    bsz: int = 128,
    lr: float = 1e-5,
    hidden_dim: int = 400,
    hidden_layer_num: int = 3,
    seed: int = 1,
) -> HatMlpPredictor:
    """HAT's recipe: MLP on features / feature-norm -> latency / lat-norm, MSE, Adam."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(features) / np.asarray(feature_norm), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(latency) / lat_norm, dtype=torch.float32)
    net = HatNet(x.shape[1], hidden_dim, hidden_layer_num)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    batches = _batches(len(x), bsz, gen)
    for _ in range(steps):
        idx = next(batches)
        loss = torch.mean((net(x[idx]) - y[idx]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return HatMlpPredictor(
        feature_set="hat10",
        feature_norm=list(map(float, feature_norm)),
        nets=[net.eval()],
        lat_norm=float(lat_norm),
        hidden_dim=hidden_dim,
        hidden_layer_num=hidden_layer_num,
    )


def fit_physics(
    cost_terms: np.ndarray, latency: np.ndarray, steps: int = 3000, ridge: float = 1e-4
) -> np.ndarray:
    """Non-negative weights w minimising the mean absolute *relative* error of cost_terms @ w,
    plus a small ridge penalty: a strictly convex problem with one answer, so the fit does not
    wander on collinear terms (and repeats to rounding error)."""
    c = torch.as_tensor(cost_terms, dtype=torch.float64)
    y = torch.as_tensor(latency, dtype=torch.float64)
    scale = c.abs().mean(0).clamp_min(1e-12)
    a = c / scale
    gram = a.T @ a
    lam = ridge * torch.trace(gram) / len(gram)
    w = torch.linalg.solve(
        gram + lam * torch.eye(len(gram), dtype=torch.float64), a.T @ y
    ).clamp_min(0)
    w = torch.nn.Parameter(w)
    opt = torch.optim.Adam([w], lr=0.02 * float(w.detach().abs().max().clamp_min(1e-6)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        loss = torch.mean(torch.abs(a @ w - y) / y) + ridge * torch.sum(w**2) / float(y.mean() ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            w.clamp_(min=0)
    return (w.detach() / scale).numpy()


def train_ensemble(
    features: np.ndarray,
    cost_terms: np.ndarray,
    latency: np.ndarray,
    feature_norm: list[float],
    feature_set: str,
    members: int = ENSEMBLE_MEMBERS,
    steps: int = 2000,
    hidden_dim: int = 128,
    hidden_layer_num: int = 2,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    seed: int = 1,
    layer_counts: tuple[int, int] | None = None,
) -> Predictor:
    """hat's default: physics (L1 on relative error) x exp(MLP ensemble correction), the
    correction shrunk by its out-of-bag error (`oob_shrinkage`)."""
    physics = fit_physics(cost_terms, latency)
    base = np.asarray(cost_terms) @ physics
    x = torch.as_tensor(np.asarray(features) / np.asarray(feature_norm), dtype=torch.float32)
    target = torch.as_tensor(np.log(np.asarray(latency) / base), dtype=torch.float32)
    nets, boots = [], []
    # One thread: a tiny MLP gains nothing from intra-op threads, and on a busy 2-core host two
    # threads made this 6-19x slower (186 s vs 10-28 s for 2,500 steps, side by side).
    with pinned(threads=1):
        for m in range(members):
            torch.manual_seed(seed * 100 + m)
            gen = torch.Generator().manual_seed(seed * 100 + m)
            boot = torch.randint(0, len(x), (len(x),), generator=gen)  # bootstrap sample per member
            boots.append(boot)
            net = HatNet(x.shape[1], hidden_dim, hidden_layer_num)
            nn.init.zeros_(net.predict.weight)
            nn.init.zeros_(net.predict.bias)
            opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            batches = _batches(len(boot), min(256, len(boot)), gen)
            for _ in range(steps):
                idx = boot[next(batches)]
                loss = torch.mean(
                    torch.abs(net(x[idx]) - target[idx])
                )  # L1 in log space ~ relative error
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            nets.append(net.eval())
    alpha = oob_shrinkage(nets, boots, x, target)
    with torch.no_grad():  # the correction is linear in the last layer: scale it there
        for net in nets:
            net.predict.weight.mul_(alpha)
            net.predict.bias.mul_(alpha)
    return EnsemblePredictor(
        feature_set=feature_set,
        feature_norm=list(map(float, feature_norm)),
        nets=nets,
        lat_norm=1.0,
        physics=physics,
        hidden_dim=hidden_dim,
        hidden_layer_num=hidden_layer_num,
        layer_counts=layer_counts,
    )


SHRINKAGE = (0.25, 0.5, 0.75, 1.0)  # never 0: the members' spread is the uncertainty


def oob_shrinkage(
    nets: list[nn.Module], boots: list[torch.Tensor], x: torch.Tensor, target: torch.Tensor
) -> float:
    """How much of the learned correction to keep (physics x exp(alpha * MLP)): the alpha of
    SHRINKAGE with the lowest out-of-bag relative error, each member predicting the rows its
    bootstrap sample left out. Guards against a correction that fits noise (few or noisy rows)."""
    with torch.no_grad():
        outs = torch.stack([net(x) for net in nets])
    out_of_bag = torch.ones_like(outs, dtype=torch.bool)
    for m, boot in enumerate(boots):
        out_of_bag[m, boot] = False
    counts = out_of_bag.sum(0)
    rows = counts > 0
    if int(rows.sum()) < 10:
        return 1.0
    correction = (outs * out_of_bag).sum(0)[rows] / counts[rows]
    truth = torch.exp(target[rows])
    errors = {
        a: float(torch.mean(torch.abs(truth - torch.exp(a * correction)) / truth))
        for a in SHRINKAGE
    }
    return min(SHRINKAGE, key=lambda a: (errors[a], -a))


def adapt(
    predictor: Predictor,
    features: np.ndarray,
    cost_terms: np.ndarray,
    latency: np.ndarray,
    mode: str = "scale",
) -> Predictor:
    """Few-shot transfer of a predictor to a new device from a few measured SubTransformers.

    scale:   one factor for all predictions (robust with ~20 samples);
    physics: refit the physics weights on the samples, keeping the learned correction (ensemble).
    """
    mean, _ = predictor.predict(features, cost_terms)
    factor = float(np.exp(np.median(np.log(np.asarray(latency) / mean))))
    if mode == "scale" or not isinstance(predictor, EnsemblePredictor):  # HAT's MLP: scale only
        return predictor.scaled(factor)
    if mode != "physics":
        raise HatError(f"unknown adaptation mode {mode}: use scale or physics")
    correction = predictor.correction(features)
    return dataclasses.replace(
        predictor, physics=fit_physics(cost_terms, np.asarray(latency) / correction)
    )
