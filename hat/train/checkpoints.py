"""Training checkpoints: checkpoint_last / checkpoint_best / checkpoint<epoch> /
checkpoint_<epoch>_<updates>, written atomically, pruned by keep-last-epochs and
keep-interval-updates; averaging; loading any hat checkpoint as a compact model."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from hat.checkpoint import load_checkpoint, load_weights, require_entries, save_checkpoint
from hat.errors import HatError
from hat.fsutil import fsync_dir
from hat.quantize import QUANTIZED_FORMAT, load_quantized
from hat.space import ArchConfig, SearchSpace
from hat.supernet import SuperTransformer
from hat.transformer import CHECKPOINT_FORMAT, ModelSettings, Transformer

TRAIN_FORMAT = "hat.train"
_EPOCH = re.compile(r"^checkpoint(\d+)\.pt$")
_UPDATE = re.compile(r"^checkpoint_(\d+)_(\d+)\.pt$")


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointManager:
    def __init__(
        self, save_dir: str | Path, keep_last_epochs: int = -1, keep_interval_updates: int = -1
    ):
        self.dir = Path(save_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_last_epochs, self.keep_interval_updates = keep_last_epochs, keep_interval_updates

    @property
    def last(self) -> Path:
        return self.dir / "checkpoint_last.pt"

    def save(
        self,
        payload: dict[str, Any],
        epoch: int,
        updates: int,
        end_of_epoch: bool,
        keep_epoch: bool,
        keep_update: bool,
        is_best: bool,
    ) -> None:
        """Write checkpoint_last, then copy it to the other names this moment calls for."""
        save_checkpoint(payload, self.last)
        if keep_epoch and end_of_epoch:
            _atomic_copy(self.last, self.dir / f"checkpoint{epoch}.pt")
        if keep_update and not end_of_epoch:
            _atomic_copy(self.last, self.dir / f"checkpoint_{epoch}_{updates}.pt")
        if is_best:
            _atomic_copy(self.last, self.dir / "checkpoint_best.pt")
        self._prune()

    def _prune(self) -> None:
        if self.keep_last_epochs >= 0:
            for p in epoch_checkpoints(self.dir)[self.keep_last_epochs :]:
                p.unlink(missing_ok=True)
        if self.keep_interval_updates >= 0:
            for p in update_checkpoints(self.dir)[self.keep_interval_updates :]:
                p.unlink(missing_ok=True)


def epoch_checkpoints(directory: Path) -> list[Path]:
    """checkpoint<N>.pt in `directory`, newest epoch first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _EPOCH.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def update_checkpoints(directory: Path) -> list[Path]:
    """checkpoint_<epoch>_<updates>.pt in `directory`, most updates first."""
    found = [(int(m.group(2)), p) for p in directory.iterdir() if (m := _UPDATE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """The first checkpoint's payload with `model` replaced by the mean of all `model`s
    (optimizer state dropped)."""
    if not paths:
        raise HatError("no checkpoints to average")
    first = load_checkpoint(paths[0])
    if "model" not in first:
        raise HatError(f"{paths[0]} holds no model weights")
    total = {
        k: v.double().clone() if v.is_floating_point() else v for k, v in first["model"].items()
    }
    for path in paths[1:]:
        state = load_checkpoint(path).get("model", {})
        if state.keys() != total.keys():
            raise HatError(f"{path} has different weights than {paths[0]}: cannot average them")
        for k, v in state.items():
            if v.shape != total[k].shape:
                raise HatError(
                    f"{path}: {k} has shape {tuple(v.shape)}, {tuple(total[k].shape)} "
                    f"in {paths[0]}: cannot average them"
                )
            if v.is_floating_point():
                total[k] += v.double()
    out = {k: v for k, v in first.items() if k not in ("optimizer", "scheduler", "scaler")}
    out["model"] = {
        k: (v / len(paths)).to(first["model"][k].dtype) if v.is_floating_point() else v
        for k, v in total.items()
    }
    out["averaged_from"] = [str(p) for p in paths]
    return out


def load_supernet(path: str | Path) -> tuple[SuperTransformer, dict[str, Any]]:
    """A trained SuperTransformer (eval mode) and its checkpoint payload."""
    payload = load_checkpoint(path)
    if payload.get("format") != TRAIN_FORMAT or payload.get("kind") != "supernet":
        raise HatError(f"{path} is not a SuperTransformer checkpoint written by `hat train`")
    require_entries(payload, path, ("space", "settings", "model"))
    net = SuperTransformer(
        SearchSpace.from_hat_dict(payload["space"], source=str(path)),
        ModelSettings.from_dict(payload["settings"]),
    )
    load_weights(net, payload["model"], path, hint=" of the space it describes")
    return net.eval(), payload


def load_model(
    path: str | Path, arch: ArchConfig | None = None
) -> tuple[Transformer, dict[str, Any]]:
    """A compact Transformer (eval mode) from any hat checkpoint: a compact model, a quantized
    one, a trained SubTransformer, or a SuperTransformer with `arch` choosing the SubTransformer."""
    payload = load_checkpoint(path)
    fmt = payload.get("format")
    if fmt == CHECKPOINT_FORMAT:
        return Transformer.load(path)
    if fmt == QUANTIZED_FORMAT:
        return load_quantized(payload, path), payload
    if fmt != TRAIN_FORMAT:
        raise HatError(f"{path} is not a hat checkpoint (format: {fmt or 'none'})")
    require_entries(payload, path, ("kind", "settings"))
    settings = ModelSettings.from_dict(payload["settings"])
    if payload["kind"] == "subtransformer":
        require_entries(payload, path, ("arch", "model"))
        model = Transformer(ArchConfig.from_dict(payload["arch"]), settings)
        load_weights(model, payload["model"], path, hint=" it describes")
        return model.eval(), payload
    if arch is None:
        raise HatError(
            f"{path} is a SuperTransformer: pass --configs SUB.yml to choose the SubTransformer"
        )
    net, _ = load_supernet(path)
    try:
        return net.export(arch).eval(), payload
    except HatError as e:
        raise HatError(f"{path}: the SubTransformer is outside its space: {e}") from None


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Optimizer tensors loaded on the CPU go to the training device."""
    for state in optimizer.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and k != "step":
                state[k] = v.to(device)
