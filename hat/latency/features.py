"""Architecture features for latency prediction.

hat10:     HAT's 10 features (embed dim, layer number, per-layer averages of FFN dim and heads,
           the average number of encoder layers each decoder layer attends to), divided by
           HAT's feature-norm. HAT's datasets carry only these.
per-layer: every layer's FFN dim, heads and attended encoder layers, with absent layers
           masked to zero, plus the embed dims and layer counts (needs full configs, which
           hat's own datasets store).
cost:      FLOP-like terms of the protocol (encoder once; decoder per step x steps x beam), from
           which latency is mostly linear: the "physics" half of hat's default predictor.
"""

from __future__ import annotations

import numpy as np

from hat.space import ArchConfig, ende_layer_count

HAT_FEATURE_NAMES = [
    "encoder_embed_dim",
    "encoder_layer_num",
    "encoder_ffn_embed_dim_avg",
    "encoder_self_attention_heads_avg",
    "decoder_embed_dim",
    "decoder_layer_num",
    "decoder_ffn_embed_dim_avg",
    "decoder_self_attention_heads_avg",
    "decoder_ende_attention_heads_avg",
    "decoder_arbitrary_ende_attn_avg",
]
HAT_FEATURE_NORM = (640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2)


def hat_features(arch: ArchConfig) -> list[float]:
    """HAT's 10 raw features of a SubTransformer (before feature-norm)."""
    mean = lambda xs: float(sum(xs)) / len(xs)  # noqa: E731
    return [
        float(arch.encoder_embed_dim),
        float(arch.encoder_layer_num),
        mean(arch.encoder_ffn_embed_dim),
        mean(arch.encoder_self_attention_heads),
        float(arch.decoder_embed_dim),
        float(arch.decoder_layer_num),
        mean(arch.decoder_ffn_embed_dim),
        mean(arch.decoder_self_attention_heads),
        mean(arch.decoder_ende_attention_heads),
        mean([ende_layer_count(v) for v in arch.decoder_arbitrary_ende_attn]),
    ]


def per_layer_features(
    arch: ArchConfig, max_encoder_layers: int, max_decoder_layers: int
) -> list[float]:
    """Embed dims and layer counts, then [present, ffn, heads] per encoder layer and
    [present, ffn, self heads, ende heads, attended layers] per decoder layer (absent: zeros)."""
    out = [
        float(arch.encoder_embed_dim),
        float(arch.encoder_layer_num),
        float(arch.decoder_embed_dim),
        float(arch.decoder_layer_num),
    ]
    for i in range(max_encoder_layers):
        if i < arch.encoder_layer_num:
            out += [
                1.0,
                float(arch.encoder_ffn_embed_dim[i]),
                float(arch.encoder_self_attention_heads[i]),
            ]
        else:
            out += [0.0, 0.0, 0.0]
    for i in range(max_decoder_layers):
        if i < arch.decoder_layer_num:
            out += [
                1.0,
                float(arch.decoder_ffn_embed_dim[i]),
                float(arch.decoder_self_attention_heads[i]),
                float(arch.decoder_ende_attention_heads[i]),
                float(arch.ende_layers(i)),
            ]
        else:
            out += [0.0] * 5
    return out


def per_layer_norm(max_encoder_layers: int, max_decoder_layers: int) -> list[float]:
    """HAT-style normalisers for `per_layer_features` (so inputs are about 0-1)."""
    return (
        [640.0, 6.0, 640.0, 6.0]
        + [1.0, 2048.0, 6.0] * max_encoder_layers
        + [1.0, 2048.0, 6.0, 6.0, 2.0] * max_decoder_layers
    )


COST_TERM_NAMES = [
    "1",
    "enc_layers",
    "enc_proj",
    "enc_ffn",
    "enc_heads",
    "dec_layers",
    "dec_proj",
    "dec_ffn",
    "dec_heads",
    "ende_kv",
    "out_proj",
]


def cost_terms_from_hat(features: np.ndarray) -> np.ndarray:
    """FLOP-like terms from HAT's 10 raw features, rows = configs (units of 1e6 MACs or counts).

    Exact for homogeneous layers; with averages it is exact for the FFN and projection terms
    (linear in the per-layer values) and an approximation for nothing else.
    """
    f = np.asarray(features, dtype=np.float64)
    e, ne, effn, eh, d, nd, dffn, dsh, deh, arb = (f[:, i] for i in range(10))
    q = 512.0
    return np.stack(
        [
            np.ones_like(e),  # fixed overhead
            ne,  # per encoder layer overhead
            ne * e * 4 * q / 1e6,  # encoder q/k/v/out projections
            ne * e * effn * 2 / 1e6,  # encoder FFN
            ne * eh,  # encoder attention heads
            nd,  # per decoder layer overhead (per step)
            nd * d * 6 * q / 1e6,  # decoder self-attn q/k/v/out + ende q/out projections
            nd * d * dffn * 2 / 1e6,  # decoder FFN
            nd * (dsh + deh),  # decoder attention heads
            nd * arb * e * 2 * q / 1e6,  # encoder-decoder keys/values (once per sentence)
            d,  # output projection (vocab fixed per dataset)
        ],
        axis=1,
    )
