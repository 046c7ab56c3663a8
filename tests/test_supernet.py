"""SuperTransformer: weight sharing, export equivalence, incremental decoding, checkpoints."""

import random
from pathlib import Path

import pytest
import torch
from conftest import tiny_space

from hat.errors import HatError
from hat.space import SearchSpace
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings, Transformer

VOCAB = 97


def batch(seed: int = 0, b: int = 4, s: int = 9, t: int = 7):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (b, s), generator=g)
    prev = torch.randint(4, VOCAB, (b, t), generator=g)
    src[1, 6:] = 1  # padding
    src[b - 1, 2:] = 1
    prev[:, 0] = 2
    return src, prev


@pytest.mark.parametrize("normalize_before,share", [(False, True), (True, True), (False, False)])
def test_export_has_the_same_outputs(normalize_before: bool, share: bool):
    torch.manual_seed(0)
    space = tiny_space()
    settings = ModelSettings(
        vocab_size=VOCAB,
        qkv_dim=32,
        normalize_before=normalize_before,
        share_all_embeddings=share,
        dropout=0.3,
    )
    net = SuperTransformer(space, settings).eval()
    src, prev = batch()
    rng = random.Random(0)
    for cfg in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(8)]:
        net.set_config(cfg)
        compact = net.export().eval()
        with torch.no_grad():
            a = torch.log_softmax(net(src, prev), -1)
            b = torch.log_softmax(compact(src, prev), -1)
        assert (a - b).abs().max() <= 1e-5
        fresh = Transformer(cfg, net.settings)
        assert compact.num_params(True) == fresh.num_params(True)
        assert compact.state_dict().keys() == fresh.state_dict().keys()
        assert len(compact.encoder_layers) == cfg.encoder_layer_num
        # heterogeneous layers
        assert [layer.fc1.out_features for layer in compact.decoder_layers] == list(
            cfg.decoder_ffn_embed_dim
        )
        assert compact.encoder_dropout == pytest.approx(0.3 * cfg.encoder_embed_dim / 64)


def test_incremental_decoding_equals_full_recomputation():
    torch.manual_seed(1)
    space = tiny_space()
    net = SuperTransformer(space, ModelSettings(vocab_size=VOCAB, qkv_dim=32)).eval()
    src, prev = batch(2)
    rng = random.Random(3)
    for cfg in [space.sample(rng) for _ in range(4)]:
        net.set_config(cfg)
        for model in (net, net.export().eval()):
            with torch.no_grad():
                full = torch.log_softmax(model(src, prev), -1)
                state = model.start_decoding(model.encode(src), beam=1, max_steps=prev.shape[1])
                steps = [model.decode_step(prev[:, t], state) for t in range(prev.shape[1])]
            assert (torch.stack(steps, 1) - full).abs().max() <= 1e-5


def test_weight_sharing_trains_only_the_leading_slices():
    torch.manual_seed(0)
    space = tiny_space()
    net = SuperTransformer(space, ModelSettings(vocab_size=VOCAB, qkv_dim=32, dropout=0.0))
    cfg = space.smallest()
    net.set_config(cfg)
    src, prev = batch()
    net(src, prev).sum().backward()
    fc1 = net.encoder_layers[0].fc1
    ffn, emb = cfg.encoder_ffn_embed_dim[0], cfg.encoder_embed_dim
    assert fc1.weight.grad[:ffn, :emb].abs().sum() > 0
    assert fc1.weight.grad[ffn:].abs().sum() == 0 and fc1.weight.grad[:, emb:].abs().sum() == 0
    assert net.encoder_layers[cfg.encoder_layer_num].fc1.weight.grad is None  # inactive layer
    assert net.decoder_layers[1].fc1.weight.grad is None


def test_set_config_rejects_configs_outside_the_space():
    net = SuperTransformer(tiny_space(), ModelSettings(vocab_size=VOCAB, qkv_dim=32))
    cfg = tiny_space(decoder_ffn_embed_dim=160, decoder_ffn_embed_dim_choice=[160]).largest()
    with pytest.raises(HatError, match="larger than the supernet"):
        net.set_config(cfg)


def test_hat_space1_dims_export(shared_data: Path):
    space = SearchSpace.from_yaml(
        shared_data / "hat-configs/iwslt14.de-en/supertransformer/space1.yml"
    )
    torch.manual_seed(0)
    net = SuperTransformer(space, ModelSettings(vocab_size=VOCAB)).eval()
    src, prev = batch(5, b=2, s=12, t=10)
    for cfg in (space.sample(random.Random(7)), space.smallest()):
        net.set_config(cfg)
        with torch.no_grad():
            diff = torch.log_softmax(net(src, prev), -1) - torch.log_softmax(
                net.export()(src, prev), -1
            )
        assert diff.abs().max() <= 1e-5


def test_compact_checkpoint_round_trip_and_bad_files(tmp_path: Path):
    torch.manual_seed(0)
    space = tiny_space()
    net = SuperTransformer(space, ModelSettings(vocab_size=VOCAB, qkv_dim=32))
    compact = net.export(space.sample(random.Random(2))).eval()
    path = tmp_path / "model.pt"
    compact.save(path, spm_model=b"spm-bytes", extra={"note": "x"})
    loaded, payload = Transformer.load(path)
    assert payload["spm_model"] == b"spm-bytes" and payload["extra"] == {"note": "x"}
    assert loaded.arch == compact.arch and loaded.settings == compact.settings
    src, prev = batch()
    with torch.no_grad():
        assert torch.equal(loaded(src, prev), compact(src, prev))
    n_stored = sum(t.numel() for t in payload["model"].values())
    assert n_stored == compact.num_params(True)  # only its own parameters
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(HatError, match="not a readable checkpoint"):
        Transformer.load(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(HatError, match="not a hat.transformer checkpoint"):
        Transformer.load(foreign)
    with pytest.raises(HatError, match="checkpoint not found"):
        Transformer.load(tmp_path / "missing.pt")


def test_dropout_scales_as_hat_residual_and_activation_not_attention():
    """HAT scales the residual/embedding and activation dropouts by the SubTransformer's embed dim
    over the SuperTransformer's, per side, and leaves the attention-weight dropout unscaled."""
    space = tiny_space()
    settings = ModelSettings(
        vocab_size=VOCAB, qkv_dim=32, dropout=0.3, attention_dropout=0.2, activation_dropout=0.1
    )
    net = SuperTransformer(space, settings)
    for cfg in (space.largest(), space.smallest()):
        net.set_config(cfg)
        r_enc = cfg.encoder_embed_dim / space.encoder_embed_dim
        r_dec = cfg.decoder_embed_dim / space.decoder_embed_dim
        for model in (net, net.export(cfg)):
            assert model.encoder_dropout == pytest.approx(0.3 * r_enc)
            assert model.decoder_dropout == pytest.approx(0.3 * r_dec)
            for layer in model.encoder_layers[: cfg.encoder_layer_num]:
                assert layer.dropout == pytest.approx(0.3 * r_enc)
                assert layer.activation_dropout == pytest.approx(0.1 * r_enc)
                assert layer.self_attn.dropout == 0.2
            for layer in model.decoder_layers[: cfg.decoder_layer_num]:
                assert layer.dropout == pytest.approx(0.3 * r_dec)
                assert layer.activation_dropout == pytest.approx(0.1 * r_dec)
                assert layer.self_attn.dropout == 0.2 and layer.ende_attn.dropout == 0.2
    assert space.smallest().encoder_embed_dim < space.encoder_embed_dim  # the test scales something
