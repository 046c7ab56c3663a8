"""Safe checkpoint files: atomic saves, `weights_only` loads, one-line errors."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hat.errors import HatError
from hat.fsutil import atomic_write


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temp file, fsync, rename: a crash never leaves a torn checkpoint."""
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(
    path: str | Path, kind: str | None = None, require: Sequence[str] = ()
) -> dict[str, Any]:
    """Load with `weights_only=True` (no arbitrary code); a missing, truncated or foreign
    file raises HatError. With `kind`, the payload's "format" must match it; every entry
    named in `require` must be there."""
    p = Path(path)
    if not p.is_file():
        raise HatError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        ValueError,
        OSError,
    ) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HatError(
            f"{path} is not a readable checkpoint (truncated, or not a torch file "
            f"hat can load safely): {reason[:200]}"
        ) from None
    if not isinstance(payload, dict):
        raise HatError(f"{path}: expected a checkpoint dict, found {type(payload).__name__}")
    if kind is not None and payload.get("format") != kind:
        found = payload.get("format", "no 'format' entry")
        raise HatError(f"{path} is not a {kind} checkpoint ({found})")
    require_entries(payload, path, require)
    return payload


def require_entries(payload: dict[str, Any], path: str | Path, keys: Sequence[str]) -> None:
    """HatError naming `path` and the entries of `keys` that `payload` lacks."""
    missing = [k for k in keys if k not in payload]
    if missing:
        raise HatError(
            f"{path} lacks the checkpoint entr{'y' if len(missing) == 1 else 'ies'} "
            f"{', '.join(map(repr, missing))}: a damaged or hand-edited file "
            f"(re-save it)"
        )


def _first_detail(e: Exception) -> str:
    """The informative line of a load_state_dict error ("size mismatch for ...")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading"):
        lines = lines[1:]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_weights(
    module: nn.Module, state: Any, path: str | Path, what: str = "weights", hint: str = ""
) -> None:
    """`module.load_state_dict(state)`; a state of other keys or shapes raises HatError naming
    `path` and the first mismatch (`hint` says what to check)."""
    if not isinstance(state, dict):
        raise HatError(f"{path}: its {what} are a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise HatError(
            f"{path}: its {what} do not match the model{hint} ({_first_detail(e)})"
        ) from None


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Any, path: str | Path) -> None:
    """`optimizer.load_state_dict(state)`, checking each saved tensor has its parameter's shape
    (torch checks only the parameter counts; a wrong shape would crash the first step)."""
    if not isinstance(state, dict):
        raise HatError(f"{path}: its optimizer state is a {type(state).__name__}, not a dict")
    try:
        optimizer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        raise HatError(
            f"{path}: its optimizer state does not match the model being trained "
            f"({_first_detail(e)})"
        ) from None
    for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for name, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value) and name != "step" and value.shape != p.shape:
                raise HatError(
                    f"{path}: its optimizer state '{name}' of parameter {i} has shape "
                    f"{tuple(value.shape)}, the parameter {tuple(p.shape)}"
                )
