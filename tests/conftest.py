"""Shared fixtures: the reference data folder, small raw corpora, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TOY_TASK = {"train": 3000, "valid": 200, "test": 100}  # sentences of the session's toy corpus


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the README runs `-n auto`) the workers share the cores: each, and
    the processes its tests start, computes on one thread."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests using it skip on a user's machine."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def write_parallel(
    prefix: Path, pairs: list[tuple[str, str]], src: str = "en", tgt: str = "de"
) -> Path:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.{src}").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    Path(f"{prefix}.{tgt}").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return prefix


@pytest.fixture(scope="session")
def toy_raw(tmp_path_factory) -> Path:
    """A small toy corpus: raw/{train,valid,test}.{en,de}."""
    from hat.data.toy import write_toy_task

    out = tmp_path_factory.mktemp("toy") / "raw"
    write_toy_task(out, **TOY_TASK, seed=7)
    return out


@pytest.fixture(scope="session")
def toy_bin(toy_raw: Path, tmp_path_factory) -> Path:
    """The small toy corpus, binarized with a 600-piece vocabulary."""
    from hat.data.preprocess import preprocess

    dest = tmp_path_factory.mktemp("toybin") / "bin"
    preprocess(
        "en",
        "de",
        str(toy_raw / "train"),
        dest,
        validpref=str(toy_raw / "valid"),
        testpref=str(toy_raw / "test"),
        vocab_size=600,
    )
    return dest


def run_cli(
    *args: str, cwd: Path | None = None, script: str | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m hat ARGS` (or a top-level HAT-style script) in a subprocess."""
    cmd = [sys.executable, str(REPO / script)] if script else [sys.executable, "-m", "hat"]
    return subprocess.run(
        cmd + list(args), cwd=cwd or REPO, capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess, *needles: str, after_log: bool = False
) -> None:
    """Exit code 2 and one 'error: ...' line naming `needles`, no traceback.

    The error is all of stderr, unless `after_log` allows progress log lines before it.
    """
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or after_log, result.stderr
    assert lines[-1].startswith("error:"), lines[-1]
    assert sum(line.startswith("error:") for line in lines) == 1
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


def tiny_space(**changes):
    """A small search space with every HAT dimension elastic (fast on a CPU)."""
    from hat.space import SearchSpace

    base = dict(
        encoder_embed_dim=64,
        decoder_embed_dim=48,
        encoder_ffn_embed_dim=96,
        decoder_ffn_embed_dim=80,
        encoder_layers=4,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        qkv_dim=32,
        encoder_embed_choice=[64, 48, 32],
        decoder_embed_choice=[48, 32],
        encoder_ffn_embed_dim_choice=[96, 64],
        decoder_ffn_embed_dim_choice=[80, 40],
        encoder_layer_num_choice=[4, 3],
        decoder_layer_num_choice=[3, 2, 1],
        encoder_self_attention_heads_choice=[4, 2],
        decoder_self_attention_heads_choice=[4, 2],
        decoder_ende_attention_heads_choice=[4, 2, 1],
        decoder_arbitrary_ende_attn_choice=[-1, 1, 2],
    )
    return SearchSpace(**{**base, **changes})


def outside_tiny_space():
    """A SubTransformer that is not in `tiny_space()` (encoder embed 128 > 64)."""
    from hat.space import ArchConfig

    return ArchConfig(
        encoder_embed_dim=128,
        decoder_embed_dim=48,
        encoder_layer_num=4,
        decoder_layer_num=1,
        encoder_ffn_embed_dim=[96] * 4,
        decoder_ffn_embed_dim=[40],
        encoder_self_attention_heads=[4] * 4,
        decoder_self_attention_heads=[4],
        decoder_ende_attention_heads=[4],
        decoder_arbitrary_ende_attn=[-1],
    )


def recording_timer(calls: list, slow=lambda n: 1.0):
    """A fake timer: latency = the proxy cost, x slow(call number); records what it timed."""

    from hat.latency.measure import Latency
    from hat.latency.plan import proxy_cost

    def timer(model, measure):
        calls.append((model.arch, measure.iters, measure.warmup))
        ms = (
            proxy_cost(model.arch, measure.sentence_length, measure.beam, 32)
            / 1e4
            * slow(len(calls))
        )
        return Latency(
            ms * 0.3,
            ms * 0.7,
            0.0,
            0.0,
            "cpu",
            1,
            measure.sentence_length,
            measure.beam,
            measure.iters,
        )

    return timer
