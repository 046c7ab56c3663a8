"""A results ledger: an append-only JSON-lines file of finished results, each stored with the
inputs it was computed from, so that a long study survives the loss of its work directory
(commit the ledger; never the checkpoints) and a result is reused only for the same inputs."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
from pathlib import Path

from hat import __version__
from hat.errors import HatError


def _record(line: bytes) -> dict | None:
    """A ledger line as a record, None if it is not one."""
    try:
        record = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        return None
    shaped = isinstance(record, dict) and isinstance(record.get("result"), dict)
    return record if shaped and isinstance(record.get("inputs"), dict) else None


class Ledger:
    """Results by inputs in the JSON-lines file `path`: one `{"inputs", "result", "recorded"}`
    per line (`recorded`: when, on which host, by which hat; not part of the match)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _read(self) -> tuple[list[dict], bytes]:
        """The records, and the bytes after the last complete one that are not a record (a
        line torn by a kill mid-append; a last record without its newline counts)."""
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as e:
            raise HatError(f"results ledger {self.path}: {e.strerror}") from None
        *lines, tail = data.split(b"\n")
        records = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                record = _record(line)
                if record is None:
                    raise HatError(f"results ledger {self.path}: line {n} is not a record")
                records.append(record)
        last = _record(tail) if tail.strip() else None
        return records + ([last] if last else []), b"" if last else tail

    def check(self) -> None:
        """Fail in one line now if the file is not a ledger (not hours later, at its first use)."""
        self._read()

    def entries(self) -> list[dict]:
        """Every record, oldest first."""
        return self._read()[0]

    def records(self, inputs: dict) -> list[dict]:
        """Every record of exactly these inputs, oldest first."""
        inputs = json.loads(json.dumps(inputs))  # as read back (tuples become lists)
        return [r for r in self.entries() if r["inputs"] == inputs]

    def find(self, inputs: dict) -> dict | None:
        """The result recorded for exactly these inputs (the last one), or None."""
        found = self.records(inputs)
        return found[-1]["result"] if found else None

    def add(self, inputs: dict, result: dict) -> None:
        """Append one result (a JSON line, flushed to disk), after cutting a line torn by a
        kill mid-append; locked, as side-by-side training jobs append to one ledger."""
        recorded = {
            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "hat": __version__,
        }
        line = json.dumps({"inputs": inputs, "result": result, "recorded": recorded})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                size = f.seek(0, os.SEEK_END) - len(self._read()[1])
                f.truncate(size)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        f.write(b"\n")  # a last record without its newline
                f.write((line + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise HatError(f"results ledger {self.path}: {e.strerror}") from None
