"""Latency predictors: HAT's MLP (loads the authors' files) and hat's default ensemble.

HAT's recipe: a 3-hidden-layer MLP (`Net`: first_layer, layers.N, predict; hidden 400, ReLU)
on the 10 features / feature-norm, predicting latency / lat-norm, MSE, Adam, batch 128.

hat's default: a physics model, linear in FLOP-like cost terms of the protocol and fitted with
an L1 loss, times a learned correction: an ensemble of small MLPs predicting
log(latency / physics) from the normalised features. The ensemble's spread gives an
uncertainty, so a search can check `mean + k * std` against its budget.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hat.checkpoint import load_checkpoint, load_weights, require_entries, save_checkpoint
from hat.errors import HatError
from hat.latency.features import cost_terms_from_hat, hat_features, per_layer_features
from hat.latency.measure import pinned
from hat.space import ArchConfig

PREDICTOR_FORMAT = "hat.latency_predictor"


class HatNet(nn.Module):
    """HAT's latency MLP, with HAT's state-dict keys."""

    def __init__(self, feature_dim: int = 10, hidden_dim: int = 400, hidden_layer_num: int = 3):
        super().__init__()
        self.first_layer = nn.Linear(feature_dim, hidden_dim)
        self.layers = nn.ModuleList(
            nn.Linear(hidden_dim, hidden_dim) for _ in range(hidden_layer_num)
        )
        self.predict = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.first_layer(x))
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.predict(x).squeeze(-1)


# --- metrics -------------------------------------------------------------------------------
def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-a (no ties expected in continuous latencies)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    i, j = np.triu_indices(len(a), k=1)
    s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s.sum() / len(s))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """RMSE (ms), MAPE (%), max absolute % error, Kendall tau, Spearman rho."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    ape = np.abs(pred - true) / np.abs(true) * 100
    return {
        "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
        "mape": float(ape.mean()),
        "max_ape": float(ape.max()),
        "kendall_tau": kendall_tau(pred, true),
        "spearman": spearman(pred, true),
    }


MIN_SPLIT_ROWS = 16  # the fewest rows whose 8:1:1 split leaves 2 in valid and test (rank metrics)


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HAT's 8:1:1 train / valid / test split of a shuffled dataset."""
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(n * 0.8), int(n * 0.9)
    return perm[:a], perm[a:b], perm[b:]


# --- predictors --------------------------------------------------------------------------------
@dataclass
class Predictor:
    """A trained predictor and everything needed to use it correctly (self-describing).

    kind "hat-mlp": `nets` holds one HatNet; inputs = features / feature_norm; output x lat_norm.
    kind "ensemble": `physics` weights (on cost terms) x exp(mean of `nets` outputs).
    """

    kind: str
    feature_set: str  # "hat10" | "per-layer"
    feature_norm: list[float]
    lat_norm: float
    nets: list[nn.Module]
    physics: np.ndarray | None = None  # ensemble: weights of the cost terms
    hidden_dim: int = 400
    hidden_layer_num: int = 3
    layer_counts: tuple[int, int] | None = None  # per-layer: the space's max encoder/decoder layers
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(
        self, features: np.ndarray, cost_terms: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) latency in ms for rows of raw features (and cost terms for the ensemble)."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_norm):
            raise HatError(
                f"the predictor takes {len(self.feature_norm)} features per SubTransformer, "
                f"got {features.shape[-1]}: it was trained on another feature definition"
            )
        x = torch.as_tensor(features / np.asarray(self.feature_norm), dtype=torch.float32)
        outs = np.stack([net.eval()(x).double().numpy() for net in self.nets])
        if self.kind == "hat-mlp":
            return outs[0] * self.lat_norm, np.zeros(len(x))
        base = np.asarray(cost_terms, np.float64) @ self.physics
        members = base[None, :] * np.exp(outs)
        return members.mean(axis=0), members.std(axis=0)

    def features_of(self, archs: list[ArchConfig]) -> tuple[np.ndarray, np.ndarray]:
        """(raw features in this predictor's feature set, cost terms) of SubTransformers."""
        hat10 = np.array([hat_features(a) for a in archs])
        if self.feature_set == "per-layer":
            feats = np.array([per_layer_features(a, *self.layer_counts) for a in archs])
        else:
            feats = hat10
        return feats, cost_terms_from_hat(hat10)

    def predict_archs(self, archs: list[ArchConfig]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) predicted latency in ms of SubTransformers."""
        return self.predict(*self.features_of(archs))

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": PREDICTOR_FORMAT,
            "version": 1,
            "kind": self.kind,
            "feature_set": self.feature_set,
            "feature_norm": list(map(float, self.feature_norm)),
            "lat_norm": float(self.lat_norm),
            "hidden_dim": self.hidden_dim,
            "hidden_layer_num": self.hidden_layer_num,
            "layer_counts": list(self.layer_counts) if self.layer_counts else None,
            "physics": None if self.physics is None else torch.as_tensor(self.physics),
            "nets": [net.state_dict() for net in self.nets],
            "metrics": self.metrics,
            "meta": self.meta,
        }

    def save(self, path: str) -> None:
        save_checkpoint(self.to_payload(), path)


def load_predictor(
    path: str, feature_norm: list[float] | None = None, lat_norm: float | None = None
) -> Predictor:
    """A saved hat predictor, or one of HAT's bare state dicts (then feature_norm and lat_norm
    are required). Given norms must agree with a self-describing file's."""
    payload = load_checkpoint(path)
    if payload.get("format") == PREDICTOR_FORMAT:
        require_entries(
            payload,
            path,
            (
                "kind",
                "feature_set",
                "feature_norm",
                "lat_norm",
                "hidden_dim",
                "hidden_layer_num",
                "layer_counts",
                "physics",
                "nets",
            ),
        )
        # HAT's feature-norm / lat-norm keys describe HAT-feature MLPs; a mismatch would silently
        # shift every prediction, so it is an error (other predictors carry their own norms)
        if (
            payload["feature_set"] == "hat10"
            and feature_norm is not None
            and list(map(float, feature_norm)) != payload["feature_norm"]
        ):
            raise HatError(
                f"{path} was trained with feature-norm {payload['feature_norm']}, "
                f"not {list(feature_norm)}: fix --feature-norm or use a matching predictor"
            )
        if (
            payload["kind"] == "hat-mlp"
            and lat_norm is not None
            and float(lat_norm) != payload["lat_norm"]
        ):
            raise HatError(
                f"{path} was trained with lat-norm {payload['lat_norm']}, not {lat_norm}"
            )
        nets = []
        for state in payload["nets"]:
            net = HatNet(
                len(payload["feature_norm"]), payload["hidden_dim"], payload["hidden_layer_num"]
            )
            load_weights(net, state, path, hint=" it describes")
            nets.append(net)
        physics = payload["physics"]
        return Predictor(
            payload["kind"],
            payload["feature_set"],
            payload["feature_norm"],
            payload["lat_norm"],
            nets,
            None if physics is None else physics.double().numpy(),
            payload["hidden_dim"],
            payload["hidden_layer_num"],
            tuple(payload["layer_counts"]) if payload["layer_counts"] else None,
            payload.get("metrics", {}),
            payload.get("meta", {}),
        )
    if not {"first_layer.weight", "predict.weight"} <= payload.keys():
        raise HatError(f"{path} is neither a hat latency predictor nor HAT's predictor state dict")
    if feature_norm is None or lat_norm is None:
        raise HatError(
            f"{path} is one of HAT's bare predictors: give --feature-norm and --lat-norm "
            f"(the values it was trained with, from its YAML)"
        )
    hidden = payload["first_layer.weight"].shape[0]
    n_layers = len({k.split(".")[1] for k in payload if k.startswith("layers.")})
    net = HatNet(payload["first_layer.weight"].shape[1], hidden, n_layers)
    load_weights(net, payload, path, hint=" of HAT's latency predictor")
    if len(feature_norm) != net.first_layer.in_features:
        raise HatError(
            f"--feature-norm has {len(feature_norm)} values but {path} takes "
            f"{net.first_layer.in_features} features"
        )
    return Predictor(
        "hat-mlp",
        "hat10",
        list(map(float, feature_norm)),
        float(lat_norm),
        [net],
        hidden_dim=hidden,
        hidden_layer_num=n_layers,
    )


# --- training ----------------------------------------------------------------------------------
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
) -> Predictor:
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
    return Predictor(
        "hat-mlp",
        "hat10",
        list(map(float, feature_norm)),
        float(lat_norm),
        [net.eval()],
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
    members: int = 5,
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
    return Predictor(
        "ensemble",
        feature_set,
        list(map(float, feature_norm)),
        1.0,
        nets,
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
    if predictor.kind == "hat-mlp" or mode == "scale":
        if predictor.kind == "hat-mlp":
            return dataclasses.replace(predictor, lat_norm=predictor.lat_norm * factor)
        return dataclasses.replace(predictor, physics=predictor.physics * factor)
    if mode != "physics":
        raise HatError(f"unknown adaptation mode {mode}: use scale or physics")
    with torch.no_grad():
        x = torch.as_tensor(
            np.asarray(features) / np.asarray(predictor.feature_norm), dtype=torch.float32
        )
        correction = np.exp(np.mean([net(x).double().numpy() for net in predictor.nets], axis=0))
    return dataclasses.replace(
        predictor, physics=fit_physics(cost_terms, np.asarray(latency) / correction)
    )


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def log_mean(x: np.ndarray) -> float:
    return float(math.exp(np.mean(np.log(x))))
