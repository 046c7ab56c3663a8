"""#Params, FLOPs and latency of a SubTransformer (HAT's conventions).

#Params excludes the embedding table and the output projection. FLOPs are 2 x the
multiply-accumulates counted by torchprofile (attention scores and weighted sums
included: it handles `scaled_dot_product_attention`) for one sentence of L tokens:
encoder on the source, decoder on a target of the same length.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torchprofile import profile_macs

from hat.space import ArchConfig
from hat.transformer import Transformer


@dataclass
class Profile:
    params: int  # without embeddings / output layer (HAT)
    params_total: int
    flops: int  # without the output layer (HAT)
    flops_total: int
    sentence_length: int


class _Forward(nn.Module):
    """Encoder + teacher-forced decoder, with or without the output layer (for tracing)."""

    def __init__(self, model: Transformer, output_layer: bool):
        super().__init__()
        self.model, self.with_output = model, output_layer

    def forward(self, src_tokens: torch.Tensor, prev_output_tokens: torch.Tensor) -> torch.Tensor:
        features = self.model.decode_features(prev_output_tokens, self.model.encode(src_tokens))
        return self.model.output_layer(features) if self.with_output else features


def count_flops(model: Transformer, sentence_length: int, output_layer: bool = False) -> int:
    """FLOPs (2 x MACs, torchprofile) of one forward pass on an L-token sentence pair."""
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, model.settings.vocab_size, (1, sentence_length), generator=gen)
    prev = torch.randint(4, model.settings.vocab_size, (1, sentence_length), generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings about python control flow
        return 2 * int(profile_macs(_Forward(model.eval(), output_layer), (src, prev)))


def analytic_flops(arch: ArchConfig, qkv_dim: int, sentence_length: int) -> int:
    """2 x the multiply-adds of every matmul (no output layer), written out by hand: the
    cross-check that the attention scores and weighted sums are counted."""
    L, q = sentence_length, qkv_dim
    macs = 0
    e = arch.encoder_embed_dim
    for ffn in arch.encoder_ffn_embed_dim:
        macs += L * e * 3 * q + L * L * q * 2 + L * q * e + 2 * L * e * ffn
    d = arch.decoder_embed_dim
    for i, ffn in enumerate(arch.decoder_ffn_embed_dim):
        mem = L * arch.ende_layers(i)
        macs += L * d * 3 * q + L * L * q * 2 + L * q * d  # self-attention
        macs += (
            L * d * q + mem * e * 2 * q + L * mem * q * 2 + L * q * d
        )  # encoder-decoder attention
        macs += 2 * L * d * ffn
    return 2 * macs


def profile(model: Transformer, sentence_length: int = 30) -> Profile:
    """#params and FLOPs of a compact model (its weights do not matter)."""
    return Profile(
        params=model.num_params(),
        params_total=model.num_params(embeddings=True),
        flops=count_flops(model, sentence_length),
        flops_total=count_flops(model, sentence_length, output_layer=True),
        sentence_length=sentence_length,
    )


def analytic_params(arch: ArchConfig, qkv_dim: int) -> int:
    """#params without embeddings (HAT's convention), from the config alone (post-norm)."""
    q, e, d = qkv_dim, arch.encoder_embed_dim, arch.decoder_embed_dim
    attention = lambda dim, kv: dim * q + q + 2 * (kv * q + q) + q * dim + dim  # noqa: E731  q, k, v, out
    ffn = lambda dim, f: 2 * dim * f + f + dim  # noqa: E731
    enc = sum(attention(e, e) + ffn(e, f) + 4 * e for f in arch.encoder_ffn_embed_dim)
    dec = sum(
        attention(d, d) + attention(d, e) + ffn(d, f) + 6 * d for f in arch.decoder_ffn_embed_dim
    )
    return enc + dec
