"""Encoder and decoder layers (post-norm as HAT/fairseq, or pre-norm), built from plain or
elastic modules: the SuperTransformer and the compact Transformer run this same code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hat.nn.attention import KVCache, MultiheadAttention
from hat.nn.dropout import dropout


def _init_linear(layer: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class _Layer(nn.Module):
    """Self-attention and FFN sublayers with residuals; subclasses define forward."""

    def __init__(
        self,
        *,
        embed_dim: int,
        ffn_dim: int,
        heads: int,
        qkv_dim: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        normalize_before: bool,
        linear: type[nn.Linear] = nn.Linear,
        norm: type[nn.LayerNorm] = nn.LayerNorm,
    ):
        super().__init__()
        self.self_attn = MultiheadAttention(
            embed_dim, qkv_dim, heads, attention_dropout, linear=linear
        )
        self.self_attn_norm = norm(embed_dim)
        self.fc1 = _init_linear(linear(embed_dim, ffn_dim))
        self.fc2 = _init_linear(linear(ffn_dim, embed_dim))
        self.ffn_norm = norm(embed_dim)
        self.dropout, self.activation_dropout = dropout, activation_dropout
        self.normalize_before = normalize_before

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, fn) -> torch.Tensor:
        y = fn(norm(x) if self.normalize_before else x)
        x = x + dropout(y, self.dropout, self.training)
        return x if self.normalize_before else norm(x)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(dropout(F.relu(self.fc1(x)), self.activation_dropout, self.training))


class EncoderLayer(_Layer):
    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        x = self._sublayer(
            x, self.self_attn_norm, lambda h: self.self_attn(h, key_padding_mask=padding_mask)
        )
        return self._sublayer(x, self.ffn_norm, self._ffn)


class DecoderLayer(_Layer):
    """Causal self-attention, encoder-decoder attention over the last `ende_layers` encoder
    layers' outputs (concatenated in time, HAT's arbitrary attention), then the FFN."""

    def __init__(
        self,
        *,
        embed_dim: int,
        encoder_embed_dim: int,
        ffn_dim: int,
        self_heads: int,
        ende_heads: int,
        ende_layers: int,
        qkv_dim: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        normalize_before: bool,
        linear: type[nn.Linear] = nn.Linear,
        norm: type[nn.LayerNorm] = nn.LayerNorm,
    ):
        super().__init__(
            embed_dim=embed_dim,
            ffn_dim=ffn_dim,
            heads=self_heads,
            qkv_dim=qkv_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            activation_dropout=activation_dropout,
            normalize_before=normalize_before,
            linear=linear,
            norm=norm,
        )
        self.ende_attn = MultiheadAttention(
            embed_dim,
            qkv_dim,
            ende_heads,
            attention_dropout,
            kv_dim=encoder_embed_dim,
            linear=linear,
        )
        self.ende_attn_norm = norm(embed_dim)
        self.ende_layers = ende_layers

    def forward(
        self,
        x: torch.Tensor,
        ende_kv: tuple[torch.Tensor, torch.Tensor],
        ende_padding_mask: torch.Tensor | None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        x = self._sublayer(
            x, self.self_attn_norm, lambda h: self.self_attn(h, causal=True, cache=cache)
        )
        x = self._sublayer(
            x, self.ende_attn_norm, lambda h: self.ende_attn.cross(h, ende_kv, ende_padding_mask)
        )
        return self._sublayer(x, self.ffn_norm, self._ffn)
