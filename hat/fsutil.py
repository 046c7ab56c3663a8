"""Atomic file and directory writes (a crash never leaves a half-written artefact behind) and
content digests for resume checks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after a rename) to disk where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would survive the rename
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside `path`; on success move it to `path` in one rename.

    With `overwrite`, an existing `path` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists() and overwrite:
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _digest_cache_path() -> Path:
    root = os.environ.get("HAT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hat")
    return Path(root) / "sha256.json"


def sha256_of(path: str | Path) -> str:
    """sha256 of a file's contents (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's contents, cached on disk by (absolute path, size, mtime_ns).

    A file is hashed again only when its size or modification time changed, so resume checks
    on multi-GB checkpoints cost a `stat` after the first time.
    """
    path = Path(path).resolve()
    st = path.stat()
    key, stamp = str(path), [st.st_size, st.st_mtime_ns]
    cache_path = _digest_cache_path()
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("stamp") == stamp:
        return hit["sha256"]
    cache[key] = {"stamp": stamp, "sha256": sha256_of(path)}
    with contextlib.suppress(OSError):  # a read-only home only costs the re-hash next time
        with atomic_write(cache_path) as f:
            json.dump(cache, f)
    return cache[key]["sha256"]


def json_sha256(obj: object) -> str:
    """sha256 of a JSON-serialisable object (keys sorted): the identity of a set of settings."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def complete_lines(data: bytes) -> bytes:
    """An append-only file's complete lines: `data` up to its last newline (a kill during an
    append can leave the last line torn)."""
    return data[: data.rfind(b"\n") + 1]


def changed_keys(old: dict, new: dict) -> list[str]:
    """The top-level keys whose values differ between two fingerprints (sorted)."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
