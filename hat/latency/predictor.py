"""Latency predictors behind one interface, and their saved format.

HatMlpPredictor ("hat-mlp"): HAT's 3-hidden-layer MLP (`HatNet`: first_layer, layers.N,
predict; hidden 400, ReLU) on the 10 features / feature-norm, predicting latency / lat-norm;
loads the authors' files.

EnsemblePredictor ("ensemble", hat's default): a physics model, linear in FLOP-like cost terms
of the protocol, times a learned correction: an ensemble of small MLPs predicting
log(latency / physics) from the normalised features. The ensemble's spread gives an
uncertainty, so a search can check `mean + k * std` against its budget.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hat.checkpoint import load_checkpoint, load_weights, require_entries, save_checkpoint
from hat.errors import HatError
from hat.latency.features import cost_terms_from_hat, hat_features, per_layer_features
from hat.space import ArchConfig

PREDICTOR_FORMAT = "hat.latency_predictor"
PAYLOAD_KEYS = (
    "kind",
    "feature_set",
    "feature_norm",
    "lat_norm",
    "hidden_dim",
    "hidden_layer_num",
    "layer_counts",
    "physics",
    "nets",
)


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


@dataclass(kw_only=True)
class Predictor(ABC):
    """A trained predictor and everything needed to use it correctly (self-describing): MLPs
    (`nets`) on features / feature_norm; each kind turns their outputs into latency."""

    kind: ClassVar[str]  # the saved "kind"
    feature_set: str  # "hat10" | "per-layer"
    feature_norm: list[float]
    nets: list[nn.Module]
    lat_norm: float = 1.0  # divisor of the latency the nets learned (HAT's MLP)
    hidden_dim: int = 400
    hidden_layer_num: int = 3
    layer_counts: tuple[int, int] | None = None  # per-layer: the space's max encoder/decoder layers
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @abstractmethod
    def predict(
        self, features: np.ndarray, cost_terms: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) latency in ms for rows of raw features (and cost terms, where used)."""

    @abstractmethod
    def scaled(self, factor: float) -> Predictor:
        """This predictor with every prediction multiplied by `factor`."""

    @torch.no_grad()
    def _outputs(self, features: np.ndarray) -> np.ndarray:
        """(nets, rows) outputs of the nets on raw features."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_norm):
            raise HatError(
                f"the predictor takes {len(self.feature_norm)} features per SubTransformer, "
                f"got {features.shape[-1]}: it was trained on another feature definition"
            )
        x = torch.as_tensor(features / np.asarray(self.feature_norm), dtype=torch.float32)
        return np.stack([net.eval()(x).double().numpy() for net in self.nets])

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
            "physics": None,
            "nets": [net.state_dict() for net in self.nets],
            "metrics": self.metrics,
            "meta": self.meta,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: str) -> Predictor:
        """The predictor a saved payload describes (`path` names the file in errors)."""
        return cls(**cls._payload_fields(payload, path))

    @classmethod
    def _payload_fields(cls, payload: dict[str, Any], path: str) -> dict[str, Any]:
        nets = []
        for state in payload["nets"]:
            net = HatNet(
                len(payload["feature_norm"]), payload["hidden_dim"], payload["hidden_layer_num"]
            )
            load_weights(net, state, path, hint=" it describes")
            nets.append(net)
        return {
            "feature_set": payload["feature_set"],
            "feature_norm": payload["feature_norm"],
            "nets": nets,
            "lat_norm": payload["lat_norm"],
            "hidden_dim": payload["hidden_dim"],
            "hidden_layer_num": payload["hidden_layer_num"],
            "layer_counts": tuple(payload["layer_counts"]) if payload["layer_counts"] else None,
            "metrics": payload.get("metrics", {}),
            "meta": payload.get("meta", {}),
        }

    def save(self, path: str) -> None:
        save_checkpoint(self.to_payload(), path)


@dataclass(kw_only=True)
class HatMlpPredictor(Predictor):
    """HAT's MLP: `nets` holds one HatNet; latency = its output x lat_norm."""

    kind: ClassVar[str] = "hat-mlp"
    lat_norm: float

    def predict(
        self, features: np.ndarray, cost_terms: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        outs = self._outputs(features)
        return outs[0] * self.lat_norm, np.zeros(outs.shape[1])

    def scaled(self, factor: float) -> HatMlpPredictor:
        return dataclasses.replace(self, lat_norm=self.lat_norm * factor)

    @classmethod
    def from_hat_state_dict(
        cls,
        state: dict[str, Any],
        path: str,
        feature_norm: list[float] | None,
        lat_norm: float | None,
    ) -> HatMlpPredictor:
        """One of HAT's bare predictor files, with the norms it was trained with."""
        if not {"first_layer.weight", "predict.weight"} <= state.keys():
            raise HatError(
                f"{path} is neither a hat latency predictor nor HAT's predictor state dict"
            )
        if feature_norm is None or lat_norm is None:
            raise HatError(
                f"{path} is one of HAT's bare predictors: give --feature-norm and --lat-norm "
                f"(the values it was trained with, from its YAML)"
            )
        hidden = state["first_layer.weight"].shape[0]
        n_layers = len({k.split(".")[1] for k in state if k.startswith("layers.")})
        net = HatNet(state["first_layer.weight"].shape[1], hidden, n_layers)
        load_weights(net, state, path, hint=" of HAT's latency predictor")
        if len(feature_norm) != net.first_layer.in_features:
            raise HatError(
                f"--feature-norm has {len(feature_norm)} values but {path} takes "
                f"{net.first_layer.in_features} features"
            )
        return cls(
            feature_set="hat10",
            feature_norm=list(map(float, feature_norm)),
            nets=[net],
            lat_norm=float(lat_norm),
            hidden_dim=hidden,
            hidden_layer_num=n_layers,
        )


@dataclass(kw_only=True)
class EnsemblePredictor(Predictor):
    """hat's default: `physics` weights (on cost terms) x exp(each net's output); the mean and
    std over the nets."""

    kind: ClassVar[str] = "ensemble"
    physics: np.ndarray  # weights of the cost terms

    def predict(
        self, features: np.ndarray, cost_terms: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        outs = self._outputs(features)
        base = np.asarray(cost_terms, np.float64) @ self.physics
        members = base[None, :] * np.exp(outs)
        return members.mean(axis=0), members.std(axis=0)

    def correction(self, features: np.ndarray) -> np.ndarray:
        """The learned factor on the physics model: exp(mean of the nets' outputs)."""
        return np.exp(self._outputs(features).mean(axis=0))

    def scaled(self, factor: float) -> EnsemblePredictor:
        return dataclasses.replace(self, physics=self.physics * factor)

    def to_payload(self) -> dict[str, Any]:
        return {**super().to_payload(), "physics": torch.as_tensor(self.physics)}

    @classmethod
    def _payload_fields(cls, payload: dict[str, Any], path: str) -> dict[str, Any]:
        if payload["physics"] is None:
            raise HatError(f"{path} is an ensemble predictor without its physics weights")
        return {
            **super()._payload_fields(payload, path),
            "physics": payload["physics"].double().numpy(),
        }


PREDICTORS: dict[str, type[Predictor]] = {p.kind: p for p in (HatMlpPredictor, EnsemblePredictor)}


def load_predictor(
    path: str, feature_norm: list[float] | None = None, lat_norm: float | None = None
) -> Predictor:
    """A saved hat predictor, or one of HAT's bare state dicts (then feature_norm and lat_norm
    are required). Given norms must agree with a self-describing file's."""
    payload = load_checkpoint(path)
    if payload.get("format") != PREDICTOR_FORMAT:
        return HatMlpPredictor.from_hat_state_dict(payload, path, feature_norm, lat_norm)
    require_entries(payload, path, PAYLOAD_KEYS)
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
        payload["kind"] == HatMlpPredictor.kind
        and lat_norm is not None
        and float(lat_norm) != payload["lat_norm"]
    ):
        raise HatError(f"{path} was trained with lat-norm {payload['lat_norm']}, not {lat_norm}")
    if payload["kind"] not in PREDICTORS:
        raise HatError(
            f"{path}: unknown predictor kind {payload['kind']!r} (known: {', '.join(PREDICTORS)})"
        )
    return PREDICTORS[payload["kind"]].from_payload(payload, path)
