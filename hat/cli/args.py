"""Flags shared by commands, with HAT's key names; namespaces become ArchConfig,
SearchSpace and ModelSettings here, at the CLI boundary, and go no deeper."""

from __future__ import annotations

import argparse

from hat.cli.parser import HatArgumentParser
from hat.search.evolution import EvolutionConfig
from hat.settings import add_settings, from_flags
from hat.space import (
    ARCH_KEYS,
    CHOICE_KEYS,
    DEFAULT_QKV_DIM,
    SUPERNET_KEYS,
    ArchConfig,
    SearchSpace,
)
from hat.transformer import ModelSettings

_LIST_FIELDS = {name for name in ARCH_KEYS if "all" in ARCH_KEYS[name]}


def add_arch_args(p: HatArgumentParser) -> None:
    """HAT's `*-subtransformer` keys (one SubTransformer)."""
    g = p.add_argument_group("SubTransformer (HAT's *-subtransformer keys)")
    for name, key in ARCH_KEYS.items():
        if name in _LIST_FIELDS:
            g.add_argument(f"--{key}", type=int, nargs="+", metavar="N")
        else:
            g.add_argument(f"--{key}", type=int, metavar="N")


def arch_given(args: argparse.Namespace) -> bool:
    """Whether any SubTransformer key was given (file or flag)."""
    return any(getattr(args, name_of(key), None) is not None for key in ARCH_KEYS.values())


def config_source(args: argparse.Namespace) -> str:
    """Where the keys came from, for errors: the YAML file(s) given, else --configs (flags)."""
    files = [f for f in (getattr(args, "configs", None), getattr(args, "sub_configs", None)) if f]
    return " + ".join(dict.fromkeys(files)) or "--configs"


def arch_from_args(args: argparse.Namespace, source: str | None = None) -> ArchConfig:
    return ArchConfig.from_hat_dict(
        {key: getattr(args, name_of(key)) for key in ARCH_KEYS.values()},
        source=source or config_source(args),
    )


def add_space_args(p: HatArgumentParser, choices: bool = True) -> None:
    """HAT's SuperTransformer dims (and the search-space `*-choice` keys)."""
    g = p.add_argument_group("SuperTransformer (HAT's keys)")
    for key in SUPERNET_KEYS.values():
        default = DEFAULT_QKV_DIM if key == "qkv-dim" else None
        g.add_argument(f"--{key}", type=int, metavar="N", default=default)
    if choices:
        for key in CHOICE_KEYS.values():
            g.add_argument(f"--{key}", type=int, nargs="+", metavar="N")


def space_from_args(args: argparse.Namespace, source: str | None = None) -> SearchSpace:
    keys = {**SUPERNET_KEYS, **CHOICE_KEYS}.values()
    return SearchSpace.from_hat_dict(
        {k: getattr(args, name_of(k), None) for k in keys}, source=source or config_source(args)
    )


def add_model_args(p: HatArgumentParser) -> None:
    """Model settings that are not searched (fairseq/HAT names)."""
    add_settings(p.add_argument_group("model"), ModelSettings)


def settings_from_args(args: argparse.Namespace, vocab_size: int) -> ModelSettings:
    """The model settings of the flags, for a vocabulary, recording the SuperTransformer dims."""
    return from_flags(
        ModelSettings,
        vars(args),
        vocab_size=vocab_size,
        qkv_dim=args.qkv_dim,
        supernet_encoder_embed_dim=getattr(args, "encoder_embed_dim", None),
        supernet_decoder_embed_dim=getattr(args, "decoder_embed_dim", None),
    )


def evolution_from_args(args: argparse.Namespace) -> EvolutionConfig:
    """The checked EvolutionConfig of the evolution keys (and --seed)."""
    cfg = from_flags(EvolutionConfig, vars(args), seed=args.seed)
    cfg.check()
    return cfg


def name_of(key: str) -> str:
    """argparse dest of a dashed key."""
    return key.replace("-", "_")
