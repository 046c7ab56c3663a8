"""Elastic layers: they hold the largest weights and compute with the leading slices of
the active setting (HAT's weight sharing); `export()` copies the slices into a plain module.

The plain and elastic versions are the same classes as far as the model code is concerned
(an ElasticLinear *is* an nn.Linear), so one forward pass serves both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ElasticLinear(nn.Linear):
    """`y = x W[:out, :in]^T + b[:out]` for the active (in, out) dims."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.active_in, self.active_out = in_features, out_features

    def set_active(self, in_dim: int, out_dim: int) -> None:
        self.active_in, self.active_out = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active_in == self.in_features and self.active_out == self.out_features:
            return F.linear(x, self.weight, self.bias)
        bias = None if self.bias is None else self.bias[: self.active_out]
        return F.linear(x, self.weight[: self.active_out, : self.active_in], bias)


class ElasticLayerNorm(nn.LayerNorm):
    """Layer norm over the first `active_dim` features, with the leading affine slices."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.active_dim = dim

    def set_active(self, dim: int) -> None:
        self.active_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.active_dim
        return F.layer_norm(x, (d,), self.weight[:d], self.bias[:d], self.eps)


class ElasticEmbedding(nn.Embedding):
    """A token table read at any width: `forward(tokens, dim)` uses its first `dim` columns.

    One table serves an encoder and a decoder of different widths (HAT's shared embedding),
    and its transpose is the output projection.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        nn.init.normal_(self.weight, mean=0.0, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.weight[padding_idx].zero_()

    def columns(self, dim: int) -> torch.Tensor:
        return self.weight if dim == self.embedding_dim else self.weight[:, :dim]

    def forward(self, tokens: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        return F.embedding(tokens, self.columns(dim or self.embedding_dim), self.padding_idx)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Output logits with the tied table: x (..., dim) -> (..., vocab)."""
        return F.linear(x, self.columns(x.shape[-1]))


class SinusoidalPositions(nn.Module):
    """fairseq's sinusoidal table (sin half, cos half) for `table_dim`, read at any width
    (HAT slices the supernet's table to the active dim). Positions start at 2 (pad + 1)."""

    OFFSET = 2

    def __init__(self, max_positions: int, table_dim: int):
        super().__init__()
        half = table_dim // 2
        freq = torch.exp(
            torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / max(half - 1, 1))
        )
        angles = (
            torch.arange(max_positions + self.OFFSET, dtype=torch.float)[:, None] * freq[None, :]
        )
        table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
        if table_dim % 2:
            table = torch.cat([table, torch.zeros(table.shape[0], 1)], dim=1)
        table[: self.OFFSET] = 0
        self.register_buffer("table", table, persistent=False)
        self.max_positions = max_positions

    def forward(self, start: int, length: int, dim: int) -> torch.Tensor:
        """Rows for token positions start .. start+length-1 (0-based), shape (length, dim)."""
        if start + length > self.max_positions:
            raise ValueError(
                f"sequence of {start + length} tokens exceeds max positions {self.max_positions}"
            )
        return self.table[start + self.OFFSET : start + self.OFFSET + length, :dim]
