"""ArchConfig and SearchSpace: HAT's YAML, validation, sampling, genes."""

import random
from pathlib import Path

import pytest

from hat.errors import HatError
from hat.space import ArchConfig, SearchSpace

SPACE = dict(
    encoder_embed_dim=640,
    decoder_embed_dim=640,
    encoder_ffn_embed_dim=2048,
    decoder_ffn_embed_dim=2048,
    encoder_layers=6,
    decoder_layers=6,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    qkv_dim=512,
    encoder_embed_choice=[640, 512],
    decoder_embed_choice=[640, 512],
    encoder_ffn_embed_dim_choice=[2048, 1024, 512],
    decoder_ffn_embed_dim_choice=[2048, 1024, 512],
    encoder_layer_num_choice=[6],
    decoder_layer_num_choice=[6, 5, 4, 3, 2, 1],
    encoder_self_attention_heads_choice=[4, 2],
    decoder_self_attention_heads_choice=[4, 2],
    decoder_ende_attention_heads_choice=[4, 2],
    decoder_arbitrary_ende_attn_choice=[-1, 1, 2],
)


def small_arch(**changes) -> ArchConfig:
    base = dict(
        encoder_embed_dim=512,
        decoder_embed_dim=512,
        encoder_layer_num=6,
        decoder_layer_num=2,
        encoder_ffn_embed_dim=[1024] * 6,
        decoder_ffn_embed_dim=[2048, 512],
        encoder_self_attention_heads=[4] * 6,
        decoder_self_attention_heads=[4, 2],
        decoder_ende_attention_heads=[4, 4],
        decoder_arbitrary_ende_attn=[-1, 2],
    )
    return ArchConfig(**{**base, **changes})


def test_every_hat_subtransformer_yaml_loads_and_round_trips(shared_data: Path, tmp_path: Path):
    files = sorted((shared_data / "hat-configs").glob("*/subtransformer/HAT_*.yml"))
    assert len(files) == 22
    for f in files:
        cfg = ArchConfig.from_yaml(f)
        assert ArchConfig.from_hat_dict(cfg.to_hat_dict()) == cfg
        cfg.to_yaml(tmp_path / "c.yml", header="round trip")
        assert ArchConfig.from_yaml(tmp_path / "c.yml") == cfg
    cfg = ArchConfig.from_yaml(
        shared_data / "hat-configs/iwslt14.de-en/subtransformer/"
        "HAT_iwslt14deen_titanxp@109.0ms_bleu@34.5.yml"
    )
    assert cfg.decoder_layer_num == 3 and cfg.decoder_ffn_embed_dim == (1024, 1024, 2048)
    assert [cfg.ende_layers(i) for i in range(3)] == [3, 1, 1]


def test_every_hat_space_loads(shared_data: Path):
    spaces = [
        f
        for f in (shared_data / "hat-configs").rglob("*.yml")
        if f.parent.name in ("supertransformer", "latency_dataset")
    ]
    assert len(spaces) == 6
    for f in spaces:
        space = SearchSpace.from_yaml(f)
        assert space.has_choices and space.qkv_dim == 512
        assert space.validate(space.largest()) and space.validate(space.smallest())
    common = SearchSpace.from_yaml(
        shared_data / "hat-configs/wmt14.en-de/subtransformer/common.yml"
    )
    assert not common.has_choices
    with pytest.raises(HatError, match="no choices"):
        common.sample(random.Random(0))


def test_space_validation_errors():
    with pytest.raises(
        HatError,
        match="encoder-embed-choice has 768, larger than the supernet's encoder-embed-dim 640",
    ):
        SearchSpace(**{**SPACE, "encoder_embed_choice": [768, 512]})
    with pytest.raises(HatError, match="3 heads, which does not divide qkv-dim 512"):
        SearchSpace(**{**SPACE, "decoder_self_attention_heads_choice": [4, 3]})
    with pytest.raises(HatError, match="encoder-attention-heads 3 does not divide qkv-dim"):
        SearchSpace(
            **{**SPACE, "encoder_attention_heads": 3, "encoder_self_attention_heads_choice": [1]}
        )
    with pytest.raises(HatError, match="attends to 3 encoder layers"):
        SearchSpace(**{**SPACE, "encoder_layer_num_choice": [6, 2]})


def test_config_validation_errors():
    space = SearchSpace(**SPACE)
    assert space.validate(small_arch())
    with pytest.raises(
        HatError, match=r"decoder-ffn-embed-dim-all-subtransformer\[0\] = 4096 is larger"
    ):
        space.validate(small_arch(decoder_ffn_embed_dim=[4096, 512]))
    with pytest.raises(
        HatError, match=r"encoder-embed-dim-subtransformer = 384 is outside the search space"
    ):
        space.validate(small_arch(encoder_embed_dim=384))
    with pytest.raises(HatError, match=r"\[1\] = 1 is outside"):
        space.validate(small_arch(decoder_self_attention_heads=[4, 1]))
    with pytest.raises(HatError, match="has 3 entries but decoder-layer-num-subtransformer is 2"):
        small_arch(decoder_ffn_embed_dim=[1, 2, 3])
    with pytest.raises(HatError, match="attends to the last 3 encoder layers"):
        small_arch(
            encoder_layer_num=2,
            encoder_ffn_embed_dim=[1024] * 2,
            encoder_self_attention_heads=[4] * 2,
        )
    with pytest.raises(HatError, match="must be positive"):
        small_arch(decoder_embed_dim=0)


def test_yaml_lists_padded_like_hat_genes_are_cut_but_short_lists_fail():
    d = small_arch().to_hat_dict()
    d["decoder-ffn-embed-dim-all-subtransformer"] = [2048, 512, 3072, 3072, 3072, 3072]
    assert ArchConfig.from_hat_dict(d) == small_arch()
    d["decoder-ffn-embed-dim-all-subtransformer"] = [2048]
    with pytest.raises(
        HatError, match="x.yml: decoder-ffn-embed-dim-all-subtransformer has 1 entries"
    ):
        ArchConfig.from_hat_dict(d, source="x.yml")
    del d["decoder-ffn-embed-dim-all-subtransformer"]
    with pytest.raises(HatError, match="missing SubTransformer key"):
        ArchConfig.from_hat_dict(d)


def test_sampling_is_seeded_uniform_and_inside_the_space():
    space = SearchSpace(**SPACE)
    a = [space.sample(random.Random(4)) for _ in range(3)]
    assert a == [space.sample(random.Random(4)) for _ in range(3)]
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(600)]
    for cfg in samples:
        space.validate(cfg)
    assert {c.decoder_layer_num for c in samples} == {1, 2, 3, 4, 5, 6}
    assert {v for c in samples for v in c.decoder_arbitrary_ende_attn} == {-1, 1, 2}
    share_512 = sum(c.encoder_embed_dim == 512 for c in samples) / len(samples)
    assert 0.4 < share_512 < 0.6
    largest, smallest = space.largest(), space.smallest()
    assert largest.decoder_layer_num == 6 and set(largest.decoder_ffn_embed_dim) == {2048}
    assert smallest.decoder_layer_num == 1 and smallest.encoder_embed_dim == 512
    assert (
        smallest.decoder_arbitrary_ende_attn == (-1,)
        and largest.decoder_arbitrary_ende_attn == (2,) * 6
    )


def test_gene_layout_and_round_trip():
    space = SearchSpace(**SPACE)
    cfg = small_arch()
    gene = space.to_gene(cfg)
    assert len(gene) == len(space.gene_choices()) == 4 + 2 * 6 + 4 * 6
    assert gene[:2] == [512, 6] and gene[14:16] == [512, 2]
    assert gene[16:22] == [2048, 512, 512, 512, 512, 512]  # absent layers repeat the last one
    assert space.from_gene(gene) == cfg
    rng = random.Random(1)
    for _ in range(200):
        c = space.sample(rng)
        assert space.from_gene(space.to_gene(c)) == c
        g = [rng.choice(options) for options in space.gene_choices()]
        assert space.to_gene(space.from_gene(g))[:2] == g[:2]
    with pytest.raises(HatError, match="gene has 3 entries"):
        space.from_gene([1, 2, 3])
