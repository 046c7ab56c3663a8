"""Deployment: k-means / int8 quantization, ONNX export + onnxruntime beam search, runtimes."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, assert_one_line_error, run_cli, tiny_space
from test_train import write_space_yaml

from hat.generate import beam_search
from hat.latency.timing import MeasureSettings
from hat.onnx_export import OnnxTransformer, export_onnx
from hat.quantize import (
    dequantize_state,
    dynamic_int8,
    kmeans_1d,
    pack_bits,
    quantize_state,
    save_quantized,
    storage_bytes,
    unpack_bits,
)
from hat.supernet import SuperTransformer
from hat.train.checkpoints import load_model
from hat.transformer import ModelSettings


@pytest.fixture(scope="module")
def compact():
    torch.manual_seed(0)
    space = tiny_space()
    net = SuperTransformer(space, ModelSettings(vocab_size=60, qkv_dim=32)).eval()
    return net.export(space.sample(random.Random(3))).eval()


@pytest.fixture(scope="module")
def trained(toy_bin: Path, tmp_path_factory) -> Path:
    """A small compact model trained briefly on the toy task (a checkpoint path)."""
    tmp = tmp_path_factory.mktemp("deploy")
    sub = tmp / "sub.yml"
    tiny_space().largest().to_yaml(sub)
    common = write_space_yaml(tmp / "common.yml", **{"train-subtransformer": True})
    subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            f"--configs={sub}",
            f"--sub-configs={common}",
            "--data",
            str(toy_bin),
            "--save-dir",
            str(tmp / "ckpt"),
            "--max-update",
            "60",
            "--max-tokens",
            "2000",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return tmp / "ckpt" / "checkpoint_last.pt"


@pytest.mark.parametrize("bits", range(2, 9))
def test_bit_packing_round_trip(bits: int):
    values = np.random.default_rng(bits).integers(0, 2**bits, size=1001)
    packed = pack_bits(values, bits)
    assert len(packed) == -(-1001 * bits // 8)
    assert (unpack_bits(packed, bits, 1001) == values).all()


def test_kmeans_codebooks_and_compression(compact):
    w = torch.randn(300, 200)
    centroids, index = kmeans_1d(w, 16)
    assert len(centroids) == 16 and index.max() < 16
    err = (centroids[index].view_as(w) - w).pow(2).mean() / w.pow(2).mean()
    assert err < 0.02  # 4-bit Lloyd on a Gaussian: ~1% relative MSE
    tensors = quantize_state(compact, "kmeans", 4)
    matrix_names = [n for n, t in compact.state_dict().items() if t.dim() == 2]
    fp32 = sum(compact.state_dict()[n].numel() * 4 for n in matrix_names)
    assert (
        fp32 / storage_bytes({n: tensors[n] for n in matrix_names}) > 7
    )  # 4-bit indices + codebooks
    restored = dequantize_state(tensors)
    for name, t in compact.state_dict().items():
        if t.dim() == 2:
            assert len(torch.unique(restored[name])) <= 16
        else:
            assert torch.equal(restored[name], t)


def test_int8_model_is_close_and_quantizes_the_output_layer(compact):
    q = dynamic_int8(compact)
    kinds = {type(m).__name__ for m in q.modules()}
    assert "Linear" in kinds and any("quantized" in type(m).__module__ for m in q.modules())
    assert "quantized" in type(q.output_projection).__module__
    src = torch.randint(4, 60, (2, 9))
    prev = torch.randint(4, 60, (2, 6))
    with torch.no_grad():
        a, b = torch.log_softmax(compact(src, prev), -1), torch.log_softmax(q(src, prev), -1)
    assert (a - b).abs().max() < 0.1 and (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9


def test_int8_load_runs_the_stored_weights_bit_for_bit(compact, tmp_path: Path):
    """Every linear layer of a loaded int8 checkpoint computes with the stored int8 values and
    per-row scales, unchanged (no re-quantization); the embedding table is int8 * scale."""
    tensors = save_quantized(compact, tmp_path / "q.pt", "int8")["tensors"]
    loaded, _ = load_model(tmp_path / "q.pt")
    int8_linear = torch.ao.nn.quantized.dynamic.Linear
    linears = {n: m for n, m in loaded.named_modules() if isinstance(m, int8_linear)}
    expected = [n for n, m in compact.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(linears) == sorted(expected + ["output_projection"])
    table = tensors["embed_tokens.weight"]
    for name, layer in linears.items():
        w = layer.weight()
        stored = (
            tensors[f"{name}.weight"]
            if name != "output_projection"
            else {"int8": table["int8"][:, : w.shape[1]], "scale": table["scale"]}
        )
        assert w.qscheme() == torch.per_channel_affine
        assert torch.equal(w.int_repr(), stored["int8"])
        assert torch.equal(w.q_per_channel_scales().float(), stored["scale"])
        assert not w.q_per_channel_zero_points().any()
    assert torch.equal(loaded.embed_tokens.weight, table["int8"].float() * table["scale"][:, None])
    src, prev = torch.randint(4, 60, (2, 9)), torch.randint(4, 60, (2, 6))
    with torch.no_grad():  # the latency runtime `torch-int8` times the model that is shipped
        assert torch.equal(loaded(src, prev), dynamic_int8(compact)(src, prev))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_matches_pytorch_and_decodes_the_same(compact, tmp_path: Path, dynamo: bool):
    onnx = OnnxTransformer(export_onnx(compact, tmp_path, dynamo=dynamo))
    from hat.cli.export_onnx import max_logprob_difference

    assert max_logprob_difference(compact, onnx) <= 1e-4
    src = torch.randint(4, 60, (4, 8))
    src[2, 5:] = 1
    a = beam_search(compact, src, beam=4, max_len_b=10)
    b = beam_search(onnx, src, beam=4, max_len_b=10)
    assert [[h.tokens for h in x] for x in a] == [[h.tokens for h in x] for x in b]


@pytest.mark.parametrize("runtime", ["torch", "torch-int8", "onnxruntime"])
def test_latency_protocol_per_runtime(compact, runtime: str):
    lat = MeasureSettings(sentence_length=5, beam=2, iters=2, warmup=1, runtime=runtime).time(
        compact
    )
    assert lat.encoder_ms > 0 and lat.decoder_ms > 0


def test_quantize_and_export_clis(trained: Path, toy_bin: Path, tmp_path: Path):
    for method, extra in (("kmeans", ["--bits", "4"]), ("int8", [])):
        out = tmp_path / method
        result = run_cli(
            "quantize",
            "--path",
            str(trained),
            "--method",
            method,
            *extra,
            "--out",
            str(out),
            "--data",
            str(toy_bin),
            "--latiter",
            "2",
            "--sentence-length",
            "8",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        r = json.loads(result.stdout.strip().splitlines()[-1])
        assert {
            "bleu_before",
            "bleu_after",
            "latency_ms_before",
            "latency_ms_after",
            "compression",
        } <= r.keys()
        assert r["compression"] > (6.0 if method == "kmeans" else 3.0)
        gen = run_cli(
            "generate",
            "--data",
            str(toy_bin),
            "--path",
            str(out / "model.pt"),
            "--beam",
            "2",
            "--quiet",
        )
        assert gen.returncode == 0 and "SacreBLEU" in gen.stdout, gen.stderr
        prof = run_cli(
            "profile",
            "--path",
            str(out / "model.pt"),
            "--latency",
            "cpu",
            "--latiter",
            "2",
            "--sentence-length",
            "6",
            "--json",
        )
        assert prof.returncode == 0, prof.stderr
        assert json.loads(prof.stdout.strip().splitlines()[-1])["latency"]["decoder_ms"] > 0
    result = run_cli(
        "export-onnx",
        "--path",
        str(trained),
        "--out",
        str(tmp_path / "onnx"),
        "--data",
        str(toy_bin),
        "--beam",
        "3",
        "--exporter",
        "dynamo",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert r["max_abs_logprob_diff"] <= 1e-4 and r["identical"] == r["sentences"]
    assert r["exporter"] == "dynamo" and r["export_seconds"] > 0
    int8 = run_cli(
        "export-onnx", "--path", str(tmp_path / "int8" / "model.pt"), "--out", str(tmp_path / "x")
    )
    assert_one_line_error(int8, "int8-quantized: export the fp32 model")


@pytest.mark.parametrize("package", ["onnx", "onnxscript"])
def test_onnx_without_its_extra_is_a_one_line_error(
    compact, tmp_path: Path, monkeypatch, package: str
):
    import importlib.util

    from hat.errors import HatError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    with pytest.raises(HatError, match=rf"{package} is not installed: pip install"):
        export_onnx(compact, tmp_path / "onnx", dynamo=True)
    assert not (tmp_path / "onnx").exists()


def test_torch_lower_bound_is_the_one_the_readme_states():
    """pyproject's torch lower bound (tested in a venv of that torch) is the README's."""
    bound = re.search(r'"torch>=([\d.]+)', (REPO / "pyproject.toml").read_text()).group(1)
    assert f"PyTorch {bound} or newer" in (REPO / "README.md").read_text()
    assert tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= tuple(
        int(x) for x in bound.split(".")[:2]
    )
