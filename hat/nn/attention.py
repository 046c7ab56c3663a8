"""Multi-head attention with a fixed qkv dim and elastic heads (head dim = qkv_dim / heads,
as HAT), on `F.scaled_dot_product_attention`, with a preallocated KV cache for decoding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys/values of one self-attention layer during incremental decoding.

    Buffers are allocated once for `capacity` steps; `append` writes in place.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add (N, H, t, hd) keys/values; return all keys/values so far."""
        t = k.shape[2]
        if self.k is None:
            shape = (k.shape[0], k.shape[1], max(self.capacity, t), k.shape[3])
            self.k, self.v = k.new_empty(shape), v.new_empty(shape)
        if self.length + t > self.k.shape[2]:
            raise ValueError(f"KV cache of {self.k.shape[2]} steps is full")
        self.k[:, :, self.length : self.length + t] = k
        self.v[:, :, self.length : self.length + t] = v
        self.length += t
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` (beam reordering and finished-sentence pruning)."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


def attention_math(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool = False,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v written with matmuls (for exporters); mask: True = attend."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        t, s = scores.shape[-2], scores.shape[-1]
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril() if mask is None else mask
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


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

    def _attend(self, q, k, v, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        if self.fused:
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=causal,
                dropout_p=self.dropout if self.training else 0.0,
            )
        else:
            out = attention_math(q, k, v, mask, causal)
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
        return self._attend(q, k, v, mask, causal)

    def cross(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        key_padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attend from `x` (N, T, D) to precomputed keys/values (see `project_kv`)."""
        q = self._split(self.q_proj(x), 1)[0]
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        return self._attend(q, kv[0], kv[1], mask, causal=False)
