"""Two CPU processes (gloo, launched by torchrun) train like one with the same global batch."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli
from test_train import read_log, write_space_yaml


def test_two_ranks_stay_identical_and_match_one_process(tmp_path: Path, toy_bin: Path):
    cfg = write_space_yaml(tmp_path / "space.yml", dropout=0.0, **{"attention-dropout": 0.0})
    common = ["--data", str(toy_bin), "--max-update", "6", "--max-tokens", "400"]
    two = tmp_path / "two"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            str(REPO / "tests/dist_worker.py"),
            f"--configs={cfg}",
            "--save-dir",
            str(two),
            *common,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    one = tmp_path / "one"
    result = run_cli(
        "train", f"--configs={cfg}", "--save-dir", str(one), "--update-freq", "2", *common
    )
    assert result.returncode == 0, result.stderr
    a = [r for r in read_log(two) if r["type"] == "train"]
    b = [r for r in read_log(one) if r["type"] == "train"]
    assert [r["update"] for r in a] == [r["update"] for r in b] == list(range(1, 7))
    for x, y in zip(
        a, b, strict=False
    ):  # same global batches; float summation order differs a little
        assert x["ntokens"] == y["ntokens"]
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-3)
    # gradients summed over ranks and normalised by the global token count, as one process does
    assert a[0]["loss"] == pytest.approx(b[0]["loss"], rel=1e-6)
    assert a[0]["gnorm"] == pytest.approx(b[0]["gnorm"], rel=1e-5)
