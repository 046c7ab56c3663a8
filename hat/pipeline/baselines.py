"""The paper's baselines, HAT's two families of plain Transformers scaled down by hand:

dimension scaling  every layer kept (the largest encoder and decoder depth), the embedding,
                   FFN and head counts scaled down together, from all-largest to all-smallest;
layer scaling      the largest width, the decoder made shallower, one decoder depth a model.

Each family is `n` models spread evenly over its steps (both ends kept); the full-size model
both families start from is listed once, in the dimension-scaling family.
"""

from __future__ import annotations

from dataclasses import dataclass

from hat.space import ArchConfig, SearchSpace

DIMENSION, LAYERS = "dimension scaling", "layer scaling"


@dataclass(frozen=True)
class Baseline:
    name: str
    family: str
    arch: ArchConfig


def _spread(items: list, n: int) -> list:
    """`n` of `items` evenly spaced, the first and the last kept."""
    if n >= len(items):
        return items
    step = (len(items) - 1) / max(n - 1, 1)
    return [items[round(i * step)] for i in range(n)]


def _width_pick(level: int, levels: int):
    """The option at `level` of `levels` steps from the largest (0) to the smallest."""

    def pick(options: list[int]) -> int:
        ordered = sorted(options, reverse=True)
        return ordered[round(level * (len(ordered) - 1) / max(levels - 1, 1))]

    return pick


def _name(prefix: str, arch: ArchConfig) -> str:
    """The family, the encoder's and the decoder's widths (embed, FFN, heads) and depth."""
    enc = (
        arch.encoder_embed_dim,
        arch.encoder_ffn_embed_dim[0],
        arch.encoder_self_attention_heads[0],
    )
    dec = (
        arch.decoder_embed_dim,
        arch.decoder_ffn_embed_dim[0],
        arch.decoder_self_attention_heads[0],
    )
    return (
        f"{prefix}_e{'-'.join(map(str, enc))}_d{'-'.join(map(str, dec))}x{arch.decoder_layer_num}"
    )


def dimension_scaling(space: SearchSpace, n: int) -> list[Baseline]:
    widths = (
        space.encoder_embed_choice,
        space.decoder_embed_choice,
        space.encoder_ffn_embed_dim_choice,
        space.decoder_ffn_embed_dim_choice,
        space.encoder_self_attention_heads_choice,
        space.decoder_self_attention_heads_choice,
        space.decoder_ende_attention_heads_choice,
    )
    levels = max(len(set(c)) for c in widths)
    enc, dec = max(space.encoder_layer_num_choice), max(space.decoder_layer_num_choice)
    archs = list(
        dict.fromkeys(
            space.validate(space.homogeneous(_width_pick(i, levels), enc, dec, ende=-1))
            for i in range(levels)
        )
    )
    return [Baseline(_name("dim", a), DIMENSION, a) for a in _spread(archs, n)]


def layer_scaling(space: SearchSpace, n: int) -> list[Baseline]:
    enc = max(space.encoder_layer_num_choice)
    depths = sorted(set(space.decoder_layer_num_choice), reverse=True)
    archs = [space.validate(space.homogeneous(max, enc, d, ende=-1)) for d in depths]
    return [Baseline(_name("layers", a), LAYERS, a) for a in _spread(archs, n)]


def baselines(space: SearchSpace, n: int) -> list[Baseline]:
    """Both families, `n` models each, largest first; the shared full-size model once."""
    seen: set[ArchConfig] = set()
    out: list[Baseline] = []
    for b in dimension_scaling(space, n) + layer_scaling(space, n):
        if b.arch not in seen:
            seen.add(b.arch)
            same_name = sum(o.name.split("~")[0] == b.name for o in out)  # other attention
            out.append(Baseline(f"{b.name}~{same_name}", b.family, b.arch) if same_name else b)
    return out
