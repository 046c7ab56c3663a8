"""Safe checkpoint files: atomic saves, `weights_only` loads, one-line errors."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from hat.errors import HatError
from hat.fsutil import atomic_write


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temp file, fsync, rename: a crash never leaves a torn checkpoint."""
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load with `weights_only=True` (no arbitrary code); a missing, truncated or foreign
    file raises HatError. With `kind`, the payload's "format" must match it."""
    p = Path(path)
    if not p.is_file():
        raise HatError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HatError(f"{path} is not a readable checkpoint (truncated, or not a torch file "
                       f"hat can load safely): {reason[:200]}") from None
    if not isinstance(payload, dict):
        raise HatError(f"{path}: expected a checkpoint dict, found {type(payload).__name__}")
    if kind is not None and payload.get("format") != kind:
        found = payload.get("format", "no 'format' entry")
        raise HatError(f"{path} is not a {kind} checkpoint ({found})")
    return payload
