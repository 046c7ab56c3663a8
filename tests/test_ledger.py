"""The results ledger: results by inputs in an append-only JSON-lines file."""

import json
from pathlib import Path

import pytest

from hat.errors import HatError
from hat.ledger import Ledger


def test_a_result_is_found_only_under_its_own_inputs(tmp_path: Path):
    ledger = Ledger(tmp_path / "sub/ledger.jsonl")
    assert ledger.find({"a": 1}) is None  # no file yet
    ledger.add({"arch": [1, 2], "betas": (0.9, 0.98)}, {"bleu": 30.1})
    ledger.add({"arch": [1, 3], "betas": (0.9, 0.98)}, {"bleu": 31.0})
    assert ledger.find({"betas": (0.9, 0.98), "arch": [1, 2]}) == {"bleu": 30.1}  # tuples, order
    assert ledger.find({"arch": [1, 2], "betas": (0.9, 0.99)}) is None
    ledger.add({"arch": [1, 2], "betas": (0.9, 0.98)}, {"bleu": 30.5})
    assert ledger.find({"arch": [1, 2], "betas": [0.9, 0.98]}) == {"bleu": 30.5}  # the last one
    record = json.loads(ledger.path.read_text().splitlines()[0])
    assert {"at", "host", "hat"} <= record["recorded"].keys()


def test_a_torn_line_is_cut_and_an_unterminated_record_kept(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.add({"k": 1}, {"v": 1})
    with path.open("a") as f:
        f.write('\n{"inputs": {"k": 2}, "res')  # a blank line, then torn by a kill
    assert ledger.find({"k": 1}) == {"v": 1} and ledger.find({"k": 2}) is None
    ledger.add({"k": 3}, {"v": 3})
    assert [json.loads(x)["inputs"]["k"] for x in path.read_text().split("\n") if x] == [1, 3]
    with path.open("a") as f:  # a hand edit that dropped the final newline
        f.write('{"inputs": {"k": 4}, "result": {"v": 4}}')
    assert ledger.find({"k": 4}) == {"v": 4}
    ledger.add({"k": 5}, {"v": 5})
    assert ledger.find({"k": 4}) == {"v": 4} and ledger.find({"k": 5}) == {"v": 5}
    assert path.read_text().endswith("\n")


@pytest.mark.parametrize(
    "line", ["not json", '{"inputs": {}, "result": 3}', '["inputs"]', '{"result": {}}']
)
def test_a_line_that_is_no_record_fails_in_one_line_naming_the_file(tmp_path: Path, line: str):
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"inputs": {}, "result": {}}\n' + line + "\n")
    with pytest.raises(HatError, match=rf"{path}: line 2 is not a record"):
        Ledger(path).check()
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(HatError, match="line 1 is not a record"):
        Ledger(path).find({})
    with pytest.raises(HatError, match="results ledger"):
        Ledger(tmp_path).find({})  # a directory
