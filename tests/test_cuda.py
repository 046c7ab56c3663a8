"""The CUDA paths: mixed-precision training, CUDA-event latency timing, CPU/GPU agreement.

Skipped without a GPU (CI has none); run on a GPU machine with `pytest tests/test_cuda.py`.
"""

import json
import math
import random
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli, tiny_space
from test_train import TRAIN_KEYS, read_log

from hat.data.dataset import DataDir
from hat.generate import beam_search
from hat.latency.measure import measure_latency
from hat.search.fitness import Fitness
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 comparisons against the CPU need full-precision matmuls (no TF32)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def gpu_space_yaml(path: Path) -> Path:
    keys = {k: v for k, v in TRAIN_KEYS.items() if k != "cpu"}
    path.write_text(yaml.safe_dump({**tiny_space().to_hat_dict(), **keys}, sort_keys=False))
    return path


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_supernet_training_learns_and_resumes(
    tmp_path: Path, toy_bin: Path, precision: str
):
    cfg = gpu_space_yaml(tmp_path / "space.yml")
    save = tmp_path / "ckpt"
    common = (
        f"--configs={cfg}",
        "--data",
        str(toy_bin),
        "--save-dir",
        str(save),
        f"--{precision}",
        "--sampling",
        "sandwich",
        "--save-interval-updates",
        "20",
    )
    first = run_cli(*common, "--max-update", "60", script="train.py")
    assert first.returncode == 0, first.stderr
    payload = torch.load(save / "checkpoint_last.pt", weights_only=True)
    assert payload["train_state"]["updates"] == 60
    assert (payload["scaler"] is not None) == (
        precision == "fp16"
    )  # fp16 needs loss scaling, bf16 does not
    second = run_cli(*common, "--max-update", "80", script="train.py")
    assert second.returncode == 0, second.stderr
    records = read_log(save)
    train = [r for r in records if r["type"] == "train"]
    assert all(math.isfinite(r["loss"]) for r in train)
    assert train[-1]["loss"] < train[0]["loss"] - 1.0
    assert any(r["type"] == "resume" and r["update"] == 60 for r in records)
    assert train[-1]["update"] == 80


def test_cuda_event_latency_of_encoder_and_beam_decoder():
    torch.manual_seed(0)
    net = SuperTransformer(tiny_space(), ModelSettings(vocab_size=50, qkv_dim=32))
    lat = measure_latency(
        net.export(tiny_space().largest()),
        sentence_length=12,
        beam=5,
        device="cuda",
        iters=5,
        warmup=2,
    )
    assert lat.device == "cuda" and lat.iters == 5
    assert (
        0 < lat.encoder_ms < lat.decoder_ms
    )  # 12 incremental beam steps cost more than one encoder pass
    assert math.isfinite(lat.total_ms)


def test_supernet_logits_and_beam_search_agree_on_cpu_and_cuda():
    torch.manual_seed(0)
    space = tiny_space()
    net = SuperTransformer(space, ModelSettings(vocab_size=40, qkv_dim=32, dropout=0.0)).eval()
    arch = space.sample(random.Random(3))
    src = torch.randint(4, 40, (3, 9), generator=torch.Generator().manual_seed(1))
    prev = torch.randint(4, 40, (3, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        net.set_config(arch)
        cpu_logits = net(src, prev)
        cpu_hyps = beam_search(net.export(arch).eval(), src, beam=4, max_len_b=10)
        gpu = net.cuda()
        gpu.set_config(arch)
        gpu_logits = gpu(src.cuda(), prev.cuda()).cpu()
        gpu_hyps = beam_search(gpu.export(arch).cuda().eval(), src.cuda(), beam=4, max_len_b=10)
    torch.testing.assert_close(gpu_logits, cpu_logits, atol=1e-4, rtol=1e-4)
    assert [[h.tokens for h in row] for row in gpu_hyps] == [
        [h.tokens for h in row] for row in cpu_hyps
    ]


def test_fitness_on_cuda_equals_cpu(toy_bin: Path):
    torch.manual_seed(0)
    space = tiny_space()
    data = DataDir(toy_bin)
    net = SuperTransformer(space, ModelSettings(vocab_size=data.vocab_size, qkv_dim=32))
    archs = [space.smallest(), space.largest(), space.sample(random.Random(4))]
    cpu = [Fitness(net, data.split("valid"), max_tokens=2000).loss(a) for a in archs]
    gpu = [Fitness(net, data.split("valid"), max_tokens=2000, device="cuda").loss(a) for a in archs]
    assert gpu == pytest.approx(cpu, rel=1e-5)
    assert json.dumps(gpu)  # plain floats, ready for the search log
