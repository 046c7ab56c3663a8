"""The paper's baselines: plain Transformers scaled down from the supernet's largest model."""

from __future__ import annotations

from collections.abc import Callable

from hat.profile import analytic_params
from hat.space import ArchConfig, SearchSpace


def plain(space: SearchSpace, pick: Callable, decoder_layers: int) -> ArchConfig:
    """A homogeneous Transformer: every choice at `pick` (max or min) of its options, the same
    in every layer, attention to the last encoder layer only."""
    enc = max(space.encoder_layer_num_choice)
    return ArchConfig(
        pick(space.encoder_embed_choice),
        pick(space.decoder_embed_choice),
        enc,
        decoder_layers,
        [pick(space.encoder_ffn_embed_dim_choice)] * enc,
        [pick(space.decoder_ffn_embed_dim_choice)] * decoder_layers,
        [pick(space.encoder_self_attention_heads_choice)] * enc,
        [pick(space.decoder_self_attention_heads_choice)] * decoder_layers,
        [pick(space.decoder_ende_attention_heads_choice)] * decoder_layers,
        [-1] * decoder_layers,
    )


def baseline_family(space: SearchSpace, n: int) -> dict[str, ArchConfig]:
    """`n` plain Transformers spread by size from the largest to the smallest: the largest
    dims with fewer decoder layers, then the smallest dims; named by their shape."""
    grid = {}
    for pick in (max, min):
        for layers in sorted(set(space.decoder_layer_num_choice), reverse=True):
            arch = space.validate(plain(space, pick, layers))
            name = (
                f"transformer_e{arch.encoder_embed_dim}_f{arch.encoder_ffn_embed_dim[0]}"
                f"_h{arch.encoder_self_attention_heads[0]}_d{layers}"
            )
            grid[name] = arch
    ordered = sorted(grid.items(), key=lambda kv: -analytic_params(kv[1], space.qkv_dim))
    if n >= len(ordered):
        return dict(ordered)
    step = (len(ordered) - 1) / max(n - 1, 1)
    return dict(ordered[round(i * step)] for i in range(n))
