"""YAML config files with HAT's dashed key names (read by every command's parser)."""

from __future__ import annotations

from pathlib import Path

import yaml

from hat.errors import HatError


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, turning a missing file or bad syntax into a one-line HatError."""
    p = Path(path)
    if not p.is_file():
        raise HatError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise HatError(f"{path}:{line}: invalid YAML: {e.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise HatError(f"{path}: cannot read YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HatError(
            f"{path}: expected a mapping of 'key: value' lines, got {type(data).__name__}"
        )
    return data
