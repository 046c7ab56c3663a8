"""Latency datasets timed in sweeps (`--lat-sweeps`): runs split and pooled, the journal's
resume after a kill, journals of other inputs refused, the sweeps' spread reported."""

import dataclasses
from pathlib import Path

import pytest
from conftest import recording_timer, tiny_space

from hat.errors import HatError
from hat.latency.dataset import collect, recheck
from hat.latency.plan import reference_archs
from hat.latency.rows import read_rows
from hat.latency.sweeps import journal_path
from hat.latency.table import drift_report
from hat.latency.timing import MeasureSettings
from hat.transformer import ModelSettings

TWO = MeasureSettings(sentence_length=4, beam=2, iters=4, warmup=1, sweeps=2)
SPACE, SETTINGS = tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32)
CALIBRATIONS = [1.0, 2.0]


class Killed(Exception):
    pass


def timer(calls: list, sub_slow_after: int | None = None, kill_at: int | None = None):
    """`recording_timer`; SubTransformers (not the references) 1.1x slower after call
    `sub_slow_after`; `Killed` raised at call `kill_at`."""
    base, references = recording_timer(calls), reference_archs(SPACE, "bracket", 4, 2)

    def time(model, measure):
        if kill_at is not None and len(calls) + 1 == kill_at:
            raise Killed
        lat = base(model, measure)
        if sub_slow_after is not None and len(calls) > sub_slow_after:
            if model.arch not in references:
                return dataclasses.replace(
                    lat, encoder_ms=lat.encoder_ms * 1.1, decoder_ms=lat.decoder_ms * 1.1
                )
        return lat

    return time


def run(path: Path, measure=TWO, size=3, **kw) -> list[dict[str, str]]:
    collect(
        SPACE, SETTINGS, measure, path, size, progress=False, calibrations_ms=CALIBRATIONS, **kw
    )
    return read_rows(path)


def test_sweeps_split_the_runs_time_every_row_per_sweep_and_pool_them(tmp_path: Path):
    calls: list = []
    rows = run(tmp_path / "lat.csv", timer=timer(calls, sub_slow_after=3 * 3 * 2))
    # sweep after sweep: 3 rows x (the row and 2 references) x 2 single-run rounds each
    assert len(calls) == 2 * 3 * 3 * 2 and {c[1] for c in calls} == {1}
    references = reference_archs(SPACE, "bracket", 4, 2)
    subs = [[c[0] for c in half if c[0] not in references] for half in (calls[:18], calls[18:])]
    assert subs[0] == subs[1] and len(subs[0]) == 6  # each sweep: the same rows, in order
    quiet = run(tmp_path / "quiet.csv", dataclasses.replace(TWO, sweeps=1), timer=timer([]))
    slow = run(
        tmp_path / "slow.csv", dataclasses.replace(TWO, sweeps=1), timer=timer([], sub_slow_after=0)
    )
    spreads = []
    for row, q, s in zip(rows, quiet, slow, strict=True):
        first, second = map(float, row["sweep_normalized_ms"].split())
        spreads.append((second - first) / first * 100)
        assert first == pytest.approx(float(q["normalized_ms"]), rel=1e-4)
        assert second == pytest.approx(float(s["normalized_ms"]), rel=1e-4)
        assert first < float(row["normalized_ms"]) < second  # the rounds of both, pooled
        assert row["iters"] == "4" and row["sweeps"] == "2"
        assert not q["sweep_normalized_ms"] and q["sweeps"] == "1"
    report = drift_report(rows)
    assert report["sweep_spread_median_pct"] == pytest.approx(sorted(spreads)[1], rel=1e-6)
    assert report["sweep_spread_max_pct"] == pytest.approx(max(spreads), rel=1e-6)
    assert min(spreads) > 5
    assert "sweep_spread_median_pct" not in drift_report(quiet)


def test_a_kill_in_any_sweep_resumes_without_retiming_a_journaled_sweep(tmp_path: Path):
    whole = run(tmp_path / "whole.csv", timer=timer([]))
    path = tmp_path / "lat.csv"
    with pytest.raises(Killed):  # in sweep 0, row 1: row 0's first sweep is journaled
        run(path, timer=timer([], kill_at=3 * 2 + 2))
    with open(journal_path(path), "ab") as f:
        f.write(b'{"inputs": "cut by a ki')  # a torn last line
    with pytest.raises(Killed):  # in sweep 1, row 1: row 0 is in the CSV
        run(path, timer=timer([], kill_at=2 * 3 * 2 + 3 * 2 + 2))
    assert len(read_rows(path)) == 1
    calls: list = []
    rows = run(path, timer=timer(calls))
    assert len(calls) == 2 * 3 * 2  # rows 1 and 2 of sweep 1 alone
    keep = ("config", "normalized_ms", "sweep_normalized_ms", "latency_mean_decoder")
    assert [{k: r[k] for k in keep} for r in rows] == [{k: r[k] for k in keep} for r in whole]
    assert journal_path(path).read_bytes().endswith(b"\n")
    text = path.read_text()  # a kill after the last sweep's journal line, before its CSV row
    path.write_text(text[: text.rstrip().rfind("\n") + 1])
    calls.clear()
    rows = run(path, timer=timer(calls))
    assert not calls and [r["normalized_ms"] for r in rows] == [r["normalized_ms"] for r in whole]


def test_a_journal_of_other_settings_is_refused_not_reused(tmp_path: Path):
    path = tmp_path / "lat.csv"
    with pytest.raises(Killed):  # sweep 0 journaled for row 0; no CSV row yet
        run(path, timer=timer([], kill_at=3 * 2 + 1))
    journal = journal_path(path).read_bytes()
    for changed in (
        dataclasses.replace(TWO, warmup=2),
        dataclasses.replace(TWO, sweeps=4),
        dataclasses.replace(TWO, reference="middle"),
    ):
        with pytest.raises(HatError, match=r"sweeps.jsonl:1: timed with other settings"):
            collect(SPACE, SETTINGS, changed, path, 3, progress=False, timer=timer([]))
    assert journal_path(path).read_bytes() == journal  # nothing cut, nothing added
    journal_path(path).write_text("not json\n")
    with pytest.raises(HatError, match=r"sweeps.jsonl:1: not a sweep journal line"):
        run(path, timer=timer([]))


def test_sweeps_are_at_most_one_per_run_and_at_least_one(tmp_path: Path):
    calls: list = []
    rows = run(tmp_path / "lat.csv", dataclasses.replace(TWO, sweeps=9), timer=timer(calls))
    assert rows[0]["sweeps"] == "4" and len(rows[0]["sweep_normalized_ms"].split()) == 4
    assert len(calls) == 4 * 3 * 3 and {c[1] for c in calls} == {1}
    with pytest.raises(HatError, match="--lat-sweeps must be at least 1, got 0"):
        run(tmp_path / "other.csv", dataclasses.replace(TWO, sweeps=0), timer=timer([]))
    assert not (tmp_path / "other.csv").exists()


def test_recheck_times_in_the_datasets_sweeps(tmp_path: Path):
    path = tmp_path / "lat.csv"
    run(path, timer=timer([]))
    calls: list = []
    report = recheck(
        path, SETTINGS, dataclasses.replace(TWO, sweeps=1), n=2, progress=False, timer=timer(calls)
    )
    assert len(calls) == 2 * 2 * 3 * 2 and {c[1] for c in calls} == {1}
    assert report["normalized_median_rel_diff_pct"] < 0.01  # the CSV rounds to 4 decimals
