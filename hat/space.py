"""Architecture descriptions: one SubTransformer (:class:`ArchConfig`) and the search space
(:class:`SearchSpace`), with HAT's YAML keys at the edges.

Arbitrary encoder-decoder attention follows HAT's encoding: a decoder layer with value -1
attends to the last encoder layer, 1 to the last two, 2 to the last three (v -> v + 1).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hat.config import load_yaml
from hat.errors import HatError
from hat.fsutil import atomic_write

# ArchConfig field -> HAT's SubTransformer YAML key
DEFAULT_QKV_DIM = 512  # HAT's qkv-dim default
ARCH_KEYS = {
    "encoder_embed_dim": "encoder-embed-dim-subtransformer",
    "decoder_embed_dim": "decoder-embed-dim-subtransformer",
    "encoder_ffn_embed_dim": "encoder-ffn-embed-dim-all-subtransformer",
    "decoder_ffn_embed_dim": "decoder-ffn-embed-dim-all-subtransformer",
    "encoder_layer_num": "encoder-layer-num-subtransformer",
    "decoder_layer_num": "decoder-layer-num-subtransformer",
    "encoder_self_attention_heads": "encoder-self-attention-heads-all-subtransformer",
    "decoder_self_attention_heads": "decoder-self-attention-heads-all-subtransformer",
    "decoder_ende_attention_heads": "decoder-ende-attention-heads-all-subtransformer",
    "decoder_arbitrary_ende_attn": "decoder-arbitrary-ende-attn-all-subtransformer",
}
_ENCODER_LISTS = ("encoder_ffn_embed_dim", "encoder_self_attention_heads")
_DECODER_LISTS = (
    "decoder_ffn_embed_dim",
    "decoder_self_attention_heads",
    "decoder_ende_attention_heads",
    "decoder_arbitrary_ende_attn",
)

# SearchSpace field -> HAT's SuperTransformer YAML key
SUPERNET_KEYS = {
    "encoder_embed_dim": "encoder-embed-dim",
    "decoder_embed_dim": "decoder-embed-dim",
    "encoder_ffn_embed_dim": "encoder-ffn-embed-dim",
    "decoder_ffn_embed_dim": "decoder-ffn-embed-dim",
    "encoder_layers": "encoder-layers",
    "decoder_layers": "decoder-layers",
    "encoder_attention_heads": "encoder-attention-heads",
    "decoder_attention_heads": "decoder-attention-heads",
    "qkv_dim": "qkv-dim",
}
CHOICE_KEYS = {
    "encoder_embed_choice": "encoder-embed-choice",
    "decoder_embed_choice": "decoder-embed-choice",
    "encoder_ffn_embed_dim_choice": "encoder-ffn-embed-dim-choice",
    "decoder_ffn_embed_dim_choice": "decoder-ffn-embed-dim-choice",
    "encoder_layer_num_choice": "encoder-layer-num-choice",
    "decoder_layer_num_choice": "decoder-layer-num-choice",
    "encoder_self_attention_heads_choice": "encoder-self-attention-heads-choice",
    "decoder_self_attention_heads_choice": "decoder-self-attention-heads-choice",
    "decoder_ende_attention_heads_choice": "decoder-ende-attention-heads-choice",
    "decoder_arbitrary_ende_attn_choice": "decoder-arbitrary-ende-attn-choice",
}

# choice field -> the supernet field it may not exceed
_CHOICE_LIMITS = {
    "encoder_embed_choice": "encoder_embed_dim",
    "decoder_embed_choice": "decoder_embed_dim",
    "encoder_ffn_embed_dim_choice": "encoder_ffn_embed_dim",
    "decoder_ffn_embed_dim_choice": "decoder_ffn_embed_dim",
    "encoder_layer_num_choice": "encoder_layers",
    "decoder_layer_num_choice": "decoder_layers",
    "encoder_self_attention_heads_choice": "encoder_attention_heads",
    "decoder_self_attention_heads_choice": "decoder_attention_heads",
    "decoder_ende_attention_heads_choice": "decoder_attention_heads",
}


def ende_layer_count(value: int) -> int:
    """Encoder layers a decoder layer attends to, from HAT's code (-1 -> 1, 1 -> 2, 2 -> 3)."""
    if value == -1:
        return 1
    if value >= 1:
        return value + 1
    raise HatError(
        f"arbitrary encoder-decoder attention value {value} is not -1, 1, 2, ... "
        f"(-1: last encoder layer, 1: last two, 2: last three)"
    )


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise HatError(f"{key} must be an integer, got {value!r}")


def _as_int_list(value: Any, key: str) -> tuple[int, ...]:
    if isinstance(value, str):  # "[512, 512]" from a flag
        value = yaml.safe_load(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise HatError(f"{key} must be a list of integers, got {value!r}")
    return tuple(_as_int(v, key) for v in value)


@dataclass(frozen=True, kw_only=True)
class ArchConfig:
    """One SubTransformer: HAT's ten architecture fields (per-layer lists are tuples)."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_layer_num: int
    decoder_layer_num: int
    encoder_ffn_embed_dim: tuple[int, ...]
    decoder_ffn_embed_dim: tuple[int, ...]
    encoder_self_attention_heads: tuple[int, ...]
    decoder_self_attention_heads: tuple[int, ...]
    decoder_ende_attention_heads: tuple[int, ...]
    decoder_arbitrary_ende_attn: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, key in ARCH_KEYS.items():
            is_list = name in _ENCODER_LISTS + _DECODER_LISTS
            value = (
                _as_int_list(getattr(self, name), key)
                if is_list
                else _as_int(getattr(self, name), key)
            )
            object.__setattr__(self, name, value)
            if (
                name != "decoder_arbitrary_ende_attn"
                and min(value if is_list else (value,), default=1) <= 0
            ):
                raise HatError(f"{key} must be positive, got {value}")
        for names, num, num_name in (
            (_ENCODER_LISTS, self.encoder_layer_num, "encoder_layer_num"),
            (_DECODER_LISTS, self.decoder_layer_num, "decoder_layer_num"),
        ):
            for name in names:
                if len(getattr(self, name)) != num:
                    raise HatError(
                        f"{ARCH_KEYS[name]} has {len(getattr(self, name))} entries but "
                        f"{ARCH_KEYS[num_name]} is {num}; give one entry per layer"
                    )
        for i, v in enumerate(self.decoder_arbitrary_ende_attn):
            if ende_layer_count(v) > self.encoder_layer_num:
                raise HatError(
                    f"decoder layer {i} attends to the last {ende_layer_count(v)} encoder "
                    f"layers (arbitrary attention {v}) but there are {self.encoder_layer_num}"
                )

    def ende_layers(self, layer: int) -> int:
        """How many of the last encoder layers decoder layer `layer` attends to."""
        return ende_layer_count(self.decoder_arbitrary_ende_attn[layer])

    # --- conversions -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain field-name dict (lists), for checkpoints and JSON."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchConfig:
        missing = [k for k in ARCH_KEYS if k not in d]
        if missing:
            raise HatError(f"architecture is missing {', '.join(missing)}")
        return cls(**{k: d[k] for k in ARCH_KEYS})

    def to_hat_dict(self) -> dict[str, Any]:
        """HAT's SubTransformer YAML keys."""
        return {ARCH_KEYS[k]: v for k, v in self.to_dict().items()}

    @classmethod
    def from_hat_dict(cls, d: dict[str, Any], source: str = "config") -> ArchConfig:
        """Read HAT's `*-subtransformer` keys. Lists longer than the layer number are cut to it
        (HAT's gene layout keeps entries for absent layers, and HAT ignores them)."""
        missing = [key for key in ARCH_KEYS.values() if d.get(key) is None]
        if missing:
            raise HatError(f"{source}: missing SubTransformer key(s) {', '.join(missing)}")
        values = {name: d[key] for name, key in ARCH_KEYS.items()}
        try:
            for names, num_name in (
                (_ENCODER_LISTS, "encoder_layer_num"),
                (_DECODER_LISTS, "decoder_layer_num"),
            ):
                num = _as_int(values[num_name], ARCH_KEYS[num_name])
                for name in names:
                    values[name] = _as_int_list(values[name], ARCH_KEYS[name])[:num]
            return cls(**values)
        except HatError as e:
            raise HatError(f"{source}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> ArchConfig:
        return cls.from_hat_dict(load_yaml(path), source=str(path))

    def to_yaml(self, path: str | Path, header: str = "") -> None:
        """Write HAT's SubTransformer YAML (loadable by HAT and by `train.py --configs`)."""
        with atomic_write(path) as f:
            if header:
                f.write("".join(f"# {line}\n" for line in header.splitlines()))
            for key, value in self.to_hat_dict().items():
                f.write(f"{key}: {value}\n")

    def __str__(self) -> str:
        return (
            f"enc {self.encoder_embed_dim}x{self.encoder_layer_num} "
            f"ffn {list(self.encoder_ffn_embed_dim)} "
            f"heads {list(self.encoder_self_attention_heads)} | dec {self.decoder_embed_dim}x"
            f"{self.decoder_layer_num} ffn {list(self.decoder_ffn_embed_dim)} heads "
            f"{list(self.decoder_self_attention_heads)}/{list(self.decoder_ende_attention_heads)} "
            f"ende {list(self.decoder_arbitrary_ende_attn)}"
        )


@dataclass(frozen=True)
class SearchSpace:
    """The SuperTransformer's dimensions and the SubTransformer choices (HAT's YAML).

    Choice fields are None in a space read from a file without them (SubTransformer
    training): then any config that fits in the supernet is valid, and sampling is refused.
    """

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_ffn_embed_dim: int
    decoder_ffn_embed_dim: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    qkv_dim: int = DEFAULT_QKV_DIM
    encoder_embed_choice: tuple[int, ...] | None = None
    decoder_embed_choice: tuple[int, ...] | None = None
    encoder_ffn_embed_dim_choice: tuple[int, ...] | None = None
    decoder_ffn_embed_dim_choice: tuple[int, ...] | None = None
    encoder_layer_num_choice: tuple[int, ...] | None = None
    decoder_layer_num_choice: tuple[int, ...] | None = None
    encoder_self_attention_heads_choice: tuple[int, ...] | None = None
    decoder_self_attention_heads_choice: tuple[int, ...] | None = None
    decoder_ende_attention_heads_choice: tuple[int, ...] | None = None
    decoder_arbitrary_ende_attn_choice: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name, key in SUPERNET_KEYS.items():
            value = _as_int(getattr(self, name), key)
            if value <= 0:
                raise HatError(f"{key} must be positive, got {value}")
            object.__setattr__(self, name, value)
        for name, key in CHOICE_KEYS.items():
            value = getattr(self, name)
            if value is not None:
                value = _as_int_list(value, key)
                if not value:
                    raise HatError(f"{key} is empty")
                object.__setattr__(self, name, value)
        for heads_key in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.qkv_dim % getattr(self, heads_key):
                raise HatError(
                    f"{SUPERNET_KEYS[heads_key]} {getattr(self, heads_key)} does not divide "
                    f"qkv-dim {self.qkv_dim}"
                )
        for choice, limit in _CHOICE_LIMITS.items():
            for v in getattr(self, choice) or ():
                if v <= 0:
                    raise HatError(f"{CHOICE_KEYS[choice]} has a non-positive value {v}")
                if v > getattr(self, limit):
                    raise HatError(
                        f"{CHOICE_KEYS[choice]} has {v}, larger than the supernet's "
                        f"{SUPERNET_KEYS[limit]} {getattr(self, limit)}"
                    )
                if "heads" in choice and self.qkv_dim % v:
                    raise HatError(
                        f"{CHOICE_KEYS[choice]} has {v} heads, which does not divide "
                        f"qkv-dim {self.qkv_dim}"
                    )
        min_enc_layers = min(self.encoder_layer_num_choice or (1,))
        for v in self.decoder_arbitrary_ende_attn_choice or ():
            if ende_layer_count(v) > min_enc_layers:
                raise HatError(
                    f"decoder-arbitrary-ende-attn-choice {v} attends to "
                    f"{ende_layer_count(v)} encoder layers but a SubTransformer may have "
                    f"only {min_enc_layers}"
                )

    @property
    def has_choices(self) -> bool:
        return all(getattr(self, name) is not None for name in CHOICE_KEYS)

    # --- validation ------------------------------------------------------------------
    def validate(self, cfg: ArchConfig) -> ArchConfig:
        """Raise HatError naming the first field of `cfg` outside this space; return `cfg`."""
        per_layer = {  # ArchConfig field -> (choice field, supernet limit field)
            "encoder_embed_dim": ("encoder_embed_choice", "encoder_embed_dim"),
            "decoder_embed_dim": ("decoder_embed_choice", "decoder_embed_dim"),
            "encoder_layer_num": ("encoder_layer_num_choice", "encoder_layers"),
            "decoder_layer_num": ("decoder_layer_num_choice", "decoder_layers"),
            "encoder_ffn_embed_dim": ("encoder_ffn_embed_dim_choice", "encoder_ffn_embed_dim"),
            "decoder_ffn_embed_dim": ("decoder_ffn_embed_dim_choice", "decoder_ffn_embed_dim"),
            "encoder_self_attention_heads": (
                "encoder_self_attention_heads_choice",
                "encoder_attention_heads",
            ),
            "decoder_self_attention_heads": (
                "decoder_self_attention_heads_choice",
                "decoder_attention_heads",
            ),
            "decoder_ende_attention_heads": (
                "decoder_ende_attention_heads_choice",
                "decoder_attention_heads",
            ),
            "decoder_arbitrary_ende_attn": ("decoder_arbitrary_ende_attn_choice", None),
        }
        for name, (choice, limit) in per_layer.items():
            values = getattr(cfg, name)
            for i, v in enumerate(values if isinstance(values, tuple) else (values,)):
                where = f"{ARCH_KEYS[name]}" + (f"[{i}]" if isinstance(values, tuple) else "")
                if limit and v > getattr(self, limit):
                    raise HatError(
                        f"{where} = {v} is larger than the supernet's "
                        f"{SUPERNET_KEYS[limit]} {getattr(self, limit)}"
                    )
                if "heads" in name and self.qkv_dim % v:
                    raise HatError(f"{where} = {v} heads does not divide qkv-dim {self.qkv_dim}")
                options = getattr(self, choice)
                if options is not None and v not in options:
                    raise HatError(
                        f"{where} = {v} is outside the search space "
                        f"({CHOICE_KEYS[choice]}: {list(options)})"
                    )
        return cfg

    # --- sampling --------------------------------------------------------------------
    def _require_choices(self) -> None:
        if not self.has_choices:
            missing = [key for name, key in CHOICE_KEYS.items() if getattr(self, name) is None]
            raise HatError(
                f"the search space has no choices ({', '.join(missing)}): "
                f"use a SuperTransformer config such as configs/<task>/supertransformer/*.yml"
            )

    def sample(self, rng: random.Random) -> ArchConfig:
        """A uniformly random SubTransformer (HAT's sampler: every choice independent)."""
        self._require_choices()
        c = random.Random.choice
        enc_layers = c(rng, self.encoder_layer_num_choice)
        dec_layers = c(rng, self.decoder_layer_num_choice)
        arb = [
            v for v in self.decoder_arbitrary_ende_attn_choice if ende_layer_count(v) <= enc_layers
        ]
        return ArchConfig(
            encoder_embed_dim=c(rng, self.encoder_embed_choice),
            decoder_embed_dim=c(rng, self.decoder_embed_choice),
            encoder_layer_num=enc_layers,
            decoder_layer_num=dec_layers,
            encoder_ffn_embed_dim=[
                c(rng, self.encoder_ffn_embed_dim_choice) for _ in range(enc_layers)
            ],
            decoder_ffn_embed_dim=[
                c(rng, self.decoder_ffn_embed_dim_choice) for _ in range(dec_layers)
            ],
            encoder_self_attention_heads=[
                c(rng, self.encoder_self_attention_heads_choice) for _ in range(enc_layers)
            ],
            decoder_self_attention_heads=[
                c(rng, self.decoder_self_attention_heads_choice) for _ in range(dec_layers)
            ],
            decoder_ende_attention_heads=[
                c(rng, self.decoder_ende_attention_heads_choice) for _ in range(dec_layers)
            ],
            decoder_arbitrary_ende_attn=[c(rng, arb) for _ in range(dec_layers)],
        )

    def homogeneous(
        self,
        pick: Callable[[list[int]], int],
        encoder_layers: int | None = None,
        decoder_layers: int | None = None,
        ende: int | None = None,
    ) -> ArchConfig:
        """The SubTransformer with `pick(options)` for every choice, the same in every layer;
        the layer counts and the arbitrary attention may be given instead."""
        self._require_choices()
        enc = encoder_layers or pick(self.encoder_layer_num_choice)
        dec = decoder_layers or pick(self.decoder_layer_num_choice)
        if ende is None:
            ende = pick(
                [v for v in self.decoder_arbitrary_ende_attn_choice if ende_layer_count(v) <= enc]
            )
        return ArchConfig(
            encoder_embed_dim=pick(self.encoder_embed_choice),
            decoder_embed_dim=pick(self.decoder_embed_choice),
            encoder_layer_num=enc,
            decoder_layer_num=dec,
            encoder_ffn_embed_dim=[pick(self.encoder_ffn_embed_dim_choice)] * enc,
            decoder_ffn_embed_dim=[pick(self.decoder_ffn_embed_dim_choice)] * dec,
            encoder_self_attention_heads=[pick(self.encoder_self_attention_heads_choice)] * enc,
            decoder_self_attention_heads=[pick(self.decoder_self_attention_heads_choice)] * dec,
            decoder_ende_attention_heads=[pick(self.decoder_ende_attention_heads_choice)] * dec,
            decoder_arbitrary_ende_attn=[ende] * dec,
        )

    def largest(self) -> ArchConfig:
        """Every choice at its maximum (arbitrary attention over the most encoder layers)."""
        return self.homogeneous(max)

    def smallest(self) -> ArchConfig:
        """Every choice at its minimum (attention to the last encoder layer only)."""
        return self.homogeneous(min)

    def middle(self) -> ArchConfig:
        """Every choice at its median (a fixed mid-sized reference SubTransformer)."""
        return self.homogeneous(lambda options: sorted(options)[len(options) // 2])

    # --- genes (HAT's layout) ----------------------------------------------------------
    def gene_choices(self) -> list[tuple[int, ...]]:
        """The options of each gene position, in HAT's gene layout:
        [enc embed, enc layer num, enc ffn x L_enc, enc heads x L_enc,
         dec embed, dec layer num, dec ffn x L_dec, dec self heads x L_dec,
         dec ende heads x L_dec, dec arbitrary attn x L_dec]   (L = the supernet's layers)."""
        self._require_choices()
        le, ld = self.encoder_layers, self.decoder_layers
        return (
            [self.encoder_embed_choice, self.encoder_layer_num_choice]
            + [self.encoder_ffn_embed_dim_choice] * le
            + [self.encoder_self_attention_heads_choice] * le
            + [self.decoder_embed_choice, self.decoder_layer_num_choice]
            + [self.decoder_ffn_embed_dim_choice] * ld
            + [self.decoder_self_attention_heads_choice] * ld
            + [self.decoder_ende_attention_heads_choice] * ld
            + [self.decoder_arbitrary_ende_attn_choice] * ld
        )

    def to_gene(
        self, cfg: ArchConfig, absent: Callable[[Sequence[int]], int] | None = None
    ) -> list[int]:
        """Encode `cfg`. Entries of absent layers repeat the last present layer's values, or are
        `absent(options)` (e.g. `rng.choice`: HAT's random genes)."""
        self.validate(cfg)
        le, ld = self.encoder_layers, self.decoder_layers

        def pad(values: Sequence[int], n: int, options: Sequence[int]) -> list[int]:
            return list(values) + [
                values[-1] if absent is None else absent(options) for _ in range(n - len(values))
            ]

        return (
            [cfg.encoder_embed_dim, cfg.encoder_layer_num]
            + pad(cfg.encoder_ffn_embed_dim, le, self.encoder_ffn_embed_dim_choice)
            + pad(cfg.encoder_self_attention_heads, le, self.encoder_self_attention_heads_choice)
            + [cfg.decoder_embed_dim, cfg.decoder_layer_num]
            + pad(cfg.decoder_ffn_embed_dim, ld, self.decoder_ffn_embed_dim_choice)
            + pad(cfg.decoder_self_attention_heads, ld, self.decoder_self_attention_heads_choice)
            + pad(cfg.decoder_ende_attention_heads, ld, self.decoder_ende_attention_heads_choice)
            + pad(cfg.decoder_arbitrary_ende_attn, ld, self.decoder_arbitrary_ende_attn_choice)
        )

    def from_gene(self, gene: Sequence[int]) -> ArchConfig:
        """Decode a gene (entries of absent layers are ignored)."""
        le, ld = self.encoder_layers, self.decoder_layers
        if len(gene) != 4 + 2 * le + 4 * ld:
            raise HatError(f"gene has {len(gene)} entries, the space needs {4 + 2 * le + 4 * ld}")
        g = list(gene)
        ne, pos = g[1], 2
        enc_ffn, enc_heads = g[pos : pos + ne], g[pos + le : pos + le + ne]
        pos += 2 * le
        nd = g[pos + 1]
        pos += 2
        dec = [g[pos + k * ld : pos + k * ld + nd] for k in range(4)]
        return self.validate(
            ArchConfig(
                encoder_embed_dim=g[0],
                decoder_embed_dim=g[2 + 2 * le],
                encoder_layer_num=ne,
                decoder_layer_num=nd,
                encoder_ffn_embed_dim=enc_ffn,
                decoder_ffn_embed_dim=dec[0],
                encoder_self_attention_heads=enc_heads,
                decoder_self_attention_heads=dec[1],
                decoder_ende_attention_heads=dec[2],
                decoder_arbitrary_ende_attn=dec[3],
            )
        )

    # --- HAT YAML ------------------------------------------------------------------------
    @classmethod
    def from_hat_dict(cls, d: dict[str, Any], source: str = "config") -> SearchSpace:
        missing = [key for key in SUPERNET_KEYS.values() if key != "qkv-dim" and d.get(key) is None]
        if missing:
            raise HatError(f"{source}: missing SuperTransformer key(s) {', '.join(missing)}")
        values = {
            name: d[key]
            for name, key in {**SUPERNET_KEYS, **CHOICE_KEYS}.items()
            if d.get(key) is not None
        }
        try:
            return cls(**values)
        except HatError as e:
            raise HatError(f"{source}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return cls.from_hat_dict(load_yaml(path), source=str(path))

    def to_hat_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, name) for name, key in SUPERNET_KEYS.items()}
        for name, key in CHOICE_KEYS.items():
            if getattr(self, name) is not None:
                out[key] = list(getattr(self, name))
        return out
