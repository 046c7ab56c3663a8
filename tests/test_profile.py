"""Profiling: HAT's published #Params and FLOPs, and the `hat profile` command."""

import json
import re
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

from hat.profile import analytic_flops, count_flops, profile
from hat.space import ArchConfig
from hat.transformer import ModelSettings, Transformer


def published(shared_data: Path) -> dict[str, tuple[float, float]]:
    """name -> (#Params in M, FLOPs in G) from the tables in ../shared/data/README.md."""
    rows = re.findall(
        r"^\| (HAT_\S+) \| [^|]+ \| ([\d.]+)M \| ([\d.]+)G \|",
        (shared_data / "README.md").read_text(),
        flags=re.M,
    )
    return {name: (float(p), float(f)) for name, p, f in rows}


def test_reproduces_hat_published_params_and_flops(shared_data: Path):
    table = published(shared_data)
    assert len(table) == 22
    for name, (params_m, flops_g) in table.items():
        task = "iwslt14.de-en" if "iwslt" in name else "wmt14.en-de"
        arch = ArchConfig.from_yaml(
            shared_data / "hat-configs" / task / "subtransformer" / f"{name}.yml"
        )
        length = 23 if "iwslt" in name else 30
        model = Transformer(arch, ModelSettings(vocab_size=64))
        assert round(model.num_params() / 1e6, 2) == params_m, name
        flops = count_flops(model, length)
        assert abs(flops / 1e9 - flops_g) / flops_g <= 0.01, (name, flops)
        assert abs(flops - analytic_flops(arch, 512, length)) / flops <= 0.002, name


def test_attention_flops_are_counted():
    arch = ArchConfig(
        encoder_embed_dim=64,
        decoder_embed_dim=64,
        encoder_layer_num=1,
        decoder_layer_num=1,
        encoder_ffn_embed_dim=[64],
        decoder_ffn_embed_dim=[64],
        encoder_self_attention_heads=[4],
        decoder_self_attention_heads=[4],
        decoder_ende_attention_heads=[4],
        decoder_arbitrary_ende_attn=[-1],
    )
    model = Transformer(arch, ModelSettings(vocab_size=50, qkv_dim=64))
    short, long_ = count_flops(model, 4), count_flops(model, 64)
    # without attention scores FLOPs would grow linearly in L; they grow faster
    assert long_ / short > 16 * 1.05
    assert abs(long_ - analytic_flops(arch, 64, 64)) / long_ < 0.01


def test_profile_totals_include_embeddings_and_output_layer():
    arch = ArchConfig(
        encoder_embed_dim=64,
        decoder_embed_dim=48,
        encoder_layer_num=2,
        decoder_layer_num=1,
        encoder_ffn_embed_dim=[96, 64],
        decoder_ffn_embed_dim=[80],
        encoder_self_attention_heads=[4, 2],
        decoder_self_attention_heads=[2],
        decoder_ende_attention_heads=[4],
        decoder_arbitrary_ende_attn=[1],
    )
    model = Transformer(arch, ModelSettings(vocab_size=1000, qkv_dim=32))
    p = profile(model, 10)
    assert p.params_total - p.params == 1000 * 64  # one shared table, 64 wide
    assert p.flops_total - p.flops == pytest.approx(2 * 10 * 48 * 1000, rel=0.01)


def test_cli_json_and_latency(tmp_path: Path, shared_data: Path):
    cfg = (
        shared_data
        / "hat-configs/iwslt14.de-en/subtransformer/HAT_iwslt14deen_titanxp@45.6ms_bleu@33.4.yml"
    )
    common = shared_data / "hat-configs/iwslt14.de-en/subtransformer/common.yml"
    result = run_cli(
        "profile",
        f"--configs={cfg}",
        f"--sub-configs={common}",
        "--sentence-length",
        "23",
        "--json",
        "--latency",
        "cpu",
        "--latiter",
        "2",
        "--vocab-size",
        "1000",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["params"] == 16_820_736
    assert {"params", "params_total", "flops", "flops_total"} <= data.keys()
    assert abs(data["flops"] / 0.78e9 - 1) < 0.01
    assert data["latency"]["encoder_ms"] > 0 and data["latency"]["decoder_ms"] > 0
    assert "16.82M" in result.stdout


def test_cli_bad_config(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text("encoder-embed-dim-subtransformer: 512\n")
    assert_one_line_error(run_cli("profile", f"--configs={bad}"), "missing SubTransformer key")
    bad.write_text(
        "encoder-embed-dim-subtransformer: 512\nencoder-layer-num-subtransformer: 7\nfoo: 1\n"
    )
    assert_one_line_error(run_cli("profile", f"--configs={bad}"), "unknown key 'foo'")
