"""The journal of a latency dataset timed in sweeps (`--lat-sweeps`).

With several sweeps, the dataset times every SubTransformer once per sweep (a share of
`latiter` each) and pools a row's sweeps when its last one is timed, so a slow spell of the
host that lasts minutes touches one share of each row instead of all of it. Every sweep appends
each row's timings, every run kept, to a journal beside the CSV (`<csv>.sweeps.jsonl`, one JSON
line per row and sweep, appended and flushed): a killed run resumes where it stopped, and the
raw runs stay for a later look (bench/latency_repeatability.py reads them). Each line
records the inputs it was timed with (settings and references, as a digest, and the row's
config); a journal of other inputs is refused, never reused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hat.errors import HatError
from hat.fsutil import complete_lines
from hat.latency.timing import Interleaved
from hat.space import ArchConfig

SUFFIX = ".sweeps.jsonl"


def journal_path(dataset: str | Path) -> Path:
    """The journal beside a latency CSV."""
    dataset = Path(dataset)
    return dataset.with_name(dataset.name + SUFFIX)


class SweepJournal:
    """Timings of (row, sweep) pairs for one set of inputs (`inputs`: their digest)."""

    def __init__(self, path: str | Path, inputs: str):
        self.path, self.inputs = Path(path), inputs

    def load(self, plan: list[ArchConfig]) -> dict[tuple[int, int], Interleaved]:
        """The timings already journaled, keyed by (config id, sweep); a torn last line (a kill
        during a write) is cut off once the rest has been checked."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete = complete_lines(data)
        parts: dict[tuple[int, int], Interleaved] = {}
        for number, line in enumerate(complete.decode("utf-8", "replace").splitlines(), 1):
            where = f"{self.path}:{number}"
            try:
                entry = json.loads(line)
                cid, sweep = int(entry["config_id"]), int(entry["sweep"])
                inputs, config = entry["inputs"], ArchConfig.from_dict(entry["config"])
                timed = Interleaved.from_dict(entry["timings"])
            except (ValueError, KeyError, TypeError, HatError) as e:
                raise HatError(f"{where}: not a sweep journal line ({e})") from None
            if inputs != self.inputs or not 0 <= cid < len(plan) or plan[cid] != config:
                raise HatError(
                    f"{where}: timed with other settings, references or plan than this run: "
                    f"resume with the settings it was collected with, or delete {self.path}"
                )
            parts[(cid, sweep)] = timed
        if len(complete) < len(data):
            os.truncate(self.path, len(complete))
        return parts

    def append(self, cid: int, sweep: int, config: ArchConfig, timed: Interleaved) -> None:
        entry = {
            "inputs": self.inputs,
            "config_id": cid,
            "sweep": sweep,
            "config": config.to_dict(),
            "timings": timed.to_dict(),
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
