"""The SuperTransformer: one weight-shared network holding every SubTransformer of a space.

net = SuperTransformer(space, settings)
net.set_config(cfg)          # activate one SubTransformer (leading weight slices)
logits = net(src, prev)      # train / evaluate it with inherited weights
compact = net.export(cfg)    # a standalone Transformer with the same outputs
"""

from __future__ import annotations

import torch
from torch import nn

from hat.nn.elastic import ElasticLayerNorm, ElasticLinear
from hat.nn.layers import DecoderLayer, EncoderLayer
from hat.space import ArchConfig, SearchSpace
from hat.transformer import EncoderDecoder, ModelSettings, Transformer, scaled_dropouts


class SuperTransformer(EncoderDecoder):
    def __init__(self, space: SearchSpace, settings: ModelSettings):
        super().__init__()
        if settings.qkv_dim != space.qkv_dim:
            raise ValueError(
                f"settings.qkv_dim {settings.qkv_dim} != space.qkv_dim {space.qkv_dim}"
            )
        self.space = space
        self.settings = ModelSettings.from_dict(
            {
                **settings.to_dict(),
                "supernet_encoder_embed_dim": space.encoder_embed_dim,
                "supernet_decoder_embed_dim": space.decoder_embed_dim,
            }
        )
        s = self.settings
        self._build_embeddings(
            space.encoder_embed_dim,
            space.decoder_embed_dim,
            space.encoder_embed_dim,
            space.decoder_embed_dim,
        )
        elastic = dict(linear=ElasticLinear, norm=ElasticLayerNorm)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(
                embed_dim=space.encoder_embed_dim,
                ffn_dim=space.encoder_ffn_embed_dim,
                heads=space.encoder_attention_heads,
                qkv_dim=space.qkv_dim,
                dropout=s.dropout,
                attention_dropout=s.attention_dropout,
                activation_dropout=s.activation_dropout,
                normalize_before=s.normalize_before,
                **elastic,
            )
            for _ in range(space.encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(
                embed_dim=space.decoder_embed_dim,
                encoder_embed_dim=space.encoder_embed_dim,
                ffn_dim=space.decoder_ffn_embed_dim,
                self_heads=space.decoder_attention_heads,
                ende_heads=space.decoder_attention_heads,
                ende_layers=1,
                qkv_dim=space.qkv_dim,
                dropout=s.dropout,
                attention_dropout=s.attention_dropout,
                activation_dropout=s.activation_dropout,
                normalize_before=s.normalize_before,
                **elastic,
            )
            for _ in range(space.decoder_layers)
        )
        if s.normalize_before:
            self.encoder_norm = ElasticLayerNorm(space.encoder_embed_dim)
            self.decoder_norm = ElasticLayerNorm(space.decoder_embed_dim)
        largest = ArchConfig(
            encoder_embed_dim=space.encoder_embed_dim,
            decoder_embed_dim=space.decoder_embed_dim,
            encoder_layer_num=space.encoder_layers,
            decoder_layer_num=space.decoder_layers,
            encoder_ffn_embed_dim=[space.encoder_ffn_embed_dim] * space.encoder_layers,
            decoder_ffn_embed_dim=[space.decoder_ffn_embed_dim] * space.decoder_layers,
            encoder_self_attention_heads=[space.encoder_attention_heads] * space.encoder_layers,
            decoder_self_attention_heads=[space.decoder_attention_heads] * space.decoder_layers,
            decoder_ende_attention_heads=[space.decoder_attention_heads] * space.decoder_layers,
            decoder_arbitrary_ende_attn=[-1] * space.decoder_layers,
        )
        # every weight in use; not validated: a part of a space (one decoder depth of a few-shot
        # supernet) keeps the whole supernet's weights without holding this config
        self._activate(largest)

    def set_config(self, cfg: ArchConfig) -> None:
        """Activate SubTransformer `cfg` (validated against the space)."""
        self.space.validate(cfg)
        self._activate(cfg)

    def _activate(self, cfg: ArchConfig) -> None:
        self.arch = cfg
        s, e, d = self.settings, cfg.encoder_embed_dim, cfg.decoder_embed_dim
        enc_p = scaled_dropouts(s, e, self.space.encoder_embed_dim)
        dec_p = scaled_dropouts(s, d, self.space.decoder_embed_dim)
        self.encoder_dropout, self.decoder_dropout = enc_p["dropout"], dec_p["dropout"]
        for i in range(cfg.encoder_layer_num):
            layer = self.encoder_layers[i]
            _configure_sublayers(
                layer, e, cfg.encoder_ffn_embed_dim[i], cfg.encoder_self_attention_heads[i], enc_p
            )
        for i in range(cfg.decoder_layer_num):
            layer = self.decoder_layers[i]
            _configure_sublayers(
                layer, d, cfg.decoder_ffn_embed_dim[i], cfg.decoder_self_attention_heads[i], dec_p
            )
            layer.ende_attn.q_proj.set_active(d, self.space.qkv_dim)
            layer.ende_attn.kv_proj.set_active(e, 2 * self.space.qkv_dim)
            layer.ende_attn.out_proj.set_active(self.space.qkv_dim, d)
            layer.ende_attn.num_heads = cfg.decoder_ende_attention_heads[i]
            layer.ende_attn.dropout = dec_p["attention_dropout"]
            layer.ende_attn_norm.set_active(d)
            layer.ende_layers = cfg.ende_layers(i)
        if s.normalize_before:
            self.encoder_norm.set_active(e)
            self.decoder_norm.set_active(d)

    @torch.no_grad()
    def export(self, cfg: ArchConfig | None = None) -> Transformer:
        """A compact Transformer for `cfg` (default: the active one) holding copies of the
        weight slices; it computes the same outputs."""
        if cfg is not None:
            self.set_config(cfg)
        compact = Transformer(self.arch, self.settings)
        source = self.state_dict()
        for name, tensor in compact.state_dict().items():
            tensor.copy_(source[name][tuple(slice(0, n) for n in tensor.shape)])
        return compact.train(self.training)


def _configure_sublayers(
    layer: EncoderLayer | DecoderLayer,
    embed: int,
    ffn: int,
    heads: int,
    dropouts: dict[str, float],
) -> None:
    """Set the active dims, heads and scaled dropouts of a layer's self-attention and FFN."""
    qkv = layer.self_attn.qkv_dim
    layer.self_attn.in_proj.set_active(embed, 3 * qkv)
    layer.self_attn.out_proj.set_active(qkv, embed)
    layer.self_attn.num_heads = heads
    layer.self_attn.dropout = dropouts["attention_dropout"]
    layer.self_attn_norm.set_active(embed)
    layer.fc1.set_active(embed, ffn)
    layer.fc2.set_active(ffn, embed)
    layer.ffn_norm.set_active(embed)
    layer.dropout = dropouts["dropout"]
    layer.activation_dropout = dropouts["activation_dropout"]
