"""Multi-head attention with a fixed qkv dim and elastic heads (head dim = qkv_dim / heads,
as HAT), on `F.scaled_dot_product_attention`, with a KV cache for decoding.

Decoding steps (a query of one token per row, or one per beam in the cross-attention) use plain
matmuls: on CPU torch's fused kernel is 1.3-2.6x slower at those shapes (docs/benchmarks.md).
So does training on CPU with attention dropout: torch's kernel then takes its own math path,
whose Bernoulli mask costs more than hat's (`hat.nn.dropout`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hat.nn.dropout import dropout


class KVCache:
    """Keys/values of one self-attention layer during incremental decoding.

    The buffers grow by doubling, up to `capacity` steps, so memory follows the length decoded;
    `append` writes in place, and `reorder` moves only the steps written so far into a spare
    buffer of the same shape, so a beam step costs the length decoded, not the capacity.
    """

    def __init__(self, capacity: int, initial: int = 32):
        self.capacity, self.initial = capacity, initial
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None  # reorder's destination
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add (N, H, t, hd) keys/values; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache of {self.capacity} steps is full")
        if self.k is None or end > self.k.shape[2]:
            room = self.initial if self.k is None else 2 * self.k.shape[2]
            self._resize(min(self.capacity, max(end, room)), k)
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def _resize(self, steps: int, like: torch.Tensor) -> None:
        """New buffers of `steps` steps, shaped as `like` otherwise, holding the steps so far."""
        shape = (like.shape[0], like.shape[1], steps, like.shape[3])
        k, v = like.new_empty(shape), like.new_empty(shape)
        if self.k is not None:
            k[:, :, : self.length] = self.k[:, :, : self.length]
            v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v, self._spare = k, v, None

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` (beam reordering and finished-sentence pruning)."""
        if self.k is None:
            return
        rows, n = index.shape[0], self.length
        spare = self._spare
        if spare is None or spare[0].shape[0] != rows or spare[0].shape[2] != self.k.shape[2]:
            shape = (rows, *self.k.shape[1:])
            spare = (self.k.new_empty(shape), self.v.new_empty(shape))
        torch.index_select(self.k[:, :, :n], 0, index, out=spare[0][:, :, :n])
        torch.index_select(self.v[:, :, :n], 0, index, out=spare[1][:, :, :n])
        old = (self.k, self.v)
        self.k, self.v = spare
        self._spare = old if old[0].shape[0] == rows else None


def attention_math(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v written with matmuls (for exporters); mask: True = attend;
    `dropout_p` > 0 drops attention weights (training)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        t, s = scores.shape[-2], scores.shape[-1]
        past = torch.ones(t, s, dtype=torch.bool, device=q.device).tril()
        mask = past if mask is None else mask & past
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p, training=True)
    return torch.matmul(weights, v)


class MultiheadAttention(nn.Module):
    """Self-attention (`in_proj` = fused q/k/v) or cross-attention (`q_proj` + fused `kv_proj`).

    The projections are nn.Linear or ElasticLinear; `num_heads` may change between calls
    (the supernet sets it per SubTransformer) since qkv_dim is fixed. `fused` selects
    `F.scaled_dot_product_attention` (default) or plain matmuls (the ONNX export uses those).
    """

    fused = True

    def __init__(
        self,
        embed_dim: int,
        qkv_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        kv_dim: int | None = None,
        linear: type[nn.Linear] = nn.Linear,
    ):
        super().__init__()
        self.qkv_dim, self.num_heads, self.dropout = qkv_dim, num_heads, dropout
        self.is_self_attention = kv_dim is None
        if self.is_self_attention:
            self.in_proj = linear(embed_dim, 3 * qkv_dim)
        else:
            self.q_proj = linear(embed_dim, qkv_dim)
            self.kv_proj = linear(kv_dim, 2 * qkv_dim)
        self.out_proj = linear(qkv_dim, embed_dim)
        for module in self.children():
            nn.init.xavier_uniform_(
                module.weight, gain=2**-0.5 if module is not self.out_proj else 1.0
            )
            nn.init.zeros_(module.bias)

    def _split(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """(N, T, parts * qkv) -> (parts, N, H, T, head_dim)."""
        n, t, _ = x.shape
        return x.view(n, t, parts, self.num_heads, self.qkv_dim // self.num_heads).permute(
            2, 0, 3, 1, 4
        )

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values of `memory` (N, S, kv_dim): computed once per sentence."""
        k, v = self._split(self.kv_proj(memory), 2)
        return k, v

    def _attend(
        self, q, k, v, mask: torch.Tensor | None, causal: bool, decoding: bool = False
    ) -> torch.Tensor:
        """Attention of q (N, H, t, hd) over k, v, through the output projection: (N, t, D).
        `decoding`: an inference step (plain matmuls, faster there on CPU)."""
        dropout_p = self.dropout if self.training else 0.0
        cpu_dropout = dropout_p > 0 and not q.is_cuda  # plain matmuls: 1.1x faster (benchmarks)
        if self.fused and (self.training or not decoding) and not cpu_dropout:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p
            )
        else:
            out = attention_math(q, k, v, mask, causal, dropout_p)
        n, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(n, t, self.qkv_dim))

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Self-attention over `x` (N, T, D); `key_padding_mask` (N, T) is True at padding.

        With a `cache`, `x` is the next single token of each row (incremental decoding).
        """
        q, k, v = self._split(self.in_proj(x), 3)
        if cache is not None:
            if q.shape[2] != 1:
                raise ValueError("incremental decoding takes one token per step")
            k, v = cache.append(k, v)
            causal = False  # the cache holds only the past: nothing to mask
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        return self._attend(q, k, v, mask, causal, decoding=cache is not None)

    def cross(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        key_padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attend from `x` (N, T, D) to precomputed keys/values (see `project_kv`) of B rows.

        B < N while decoding a beam: the keys/values are one row per sentence and `x` holds
        the sentence's N / B beams (one token each) in consecutive rows; they attend as the
        sentence's queries, so its keys/values are neither repeated nor reordered."""
        q = self._split(self.q_proj(x), 1)[0]  # (N, H, T, hd)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        rows, n = kv[0].shape[0], q.shape[0]
        if rows == n:
            return self._attend(q, kv[0], kv[1], mask, causal=False, decoding=q.shape[2] == 1)
        if q.shape[2] != 1 or n % rows:
            raise ValueError(f"{n} query rows of one token cannot share the keys of {rows} rows")
        beams = n // rows
        q = q.view(rows, beams, self.num_heads, -1).transpose(1, 2)  # (B, H, beams, hd)
        out = self._attend(q, kv[0], kv[1], mask, causal=False, decoding=True)  # (B, beams, D)
        return out.reshape(n, 1, out.shape[-1])
