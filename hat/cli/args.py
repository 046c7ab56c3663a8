"""Flags shared by commands, with HAT's key names; namespaces become ArchConfig,
SearchSpace and ModelSettings here, at the CLI boundary, and go no deeper."""

from __future__ import annotations

import argparse

from hat.config import HatArgumentParser
from hat.search.evolution import EvolutionConfig
from hat.space import ARCH_KEYS, CHOICE_KEYS, SUPERNET_KEYS, ArchConfig, SearchSpace
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
        g.add_argument(f"--{key}", type=int, metavar="N", default=512 if key == "qkv-dim" else None)
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
    g = p.add_argument_group("model")
    g.add_argument(
        "--dropout", type=float, default=0.1, help="dropout (scaled by active/supernet dim, as HAT)"
    )
    g.add_argument("--attention-dropout", type=float, default=0.0)
    g.add_argument("--activation-dropout", "--relu-dropout", type=float, default=0.0)
    g.add_argument(
        "--share-all-embeddings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one token table for source and target (joint vocabulary)",
    )
    g.add_argument(
        "--normalize-before",
        action="store_true",
        help="pre-norm layers (default: post-norm, as HAT)",
    )
    g.add_argument("--max-source-positions", type=int, default=1024)
    g.add_argument("--max-target-positions", type=int, default=1024)


def settings_from_args(args: argparse.Namespace, vocab_size: int) -> ModelSettings:
    return ModelSettings(
        vocab_size=vocab_size,
        qkv_dim=args.qkv_dim,
        dropout=args.dropout,
        attention_dropout=args.attention_dropout,
        activation_dropout=args.activation_dropout,
        max_source_positions=args.max_source_positions,
        max_target_positions=args.max_target_positions,
        share_all_embeddings=args.share_all_embeddings,
        normalize_before=args.normalize_before,
        supernet_encoder_embed_dim=getattr(args, "encoder_embed_dim", None),
        supernet_decoder_embed_dim=getattr(args, "decoder_embed_dim", None),
    )


def add_evolution_args(g: argparse._ArgumentGroup, defaults: EvolutionConfig) -> None:
    """HAT's evolutionary-search keys (evo-iter, population-size, ...) with the given defaults."""
    for name in ("evo_iter", "population_size", "parent_size", "mutation_size", "crossover_size"):
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    g.add_argument("--mutation-prob", type=float, default=defaults.mutation_prob)


def evolution_from_args(args: argparse.Namespace, latency_std_k: float = 0.0) -> EvolutionConfig:
    """The checked EvolutionConfig of `add_evolution_args`' keys (and --seed)."""
    cfg = EvolutionConfig(
        args.evo_iter,
        args.population_size,
        args.parent_size,
        args.mutation_size,
        args.crossover_size,
        args.mutation_prob,
        args.seed,
        latency_std_k,
    )
    cfg.check()
    return cfg


def name_of(key: str) -> str:
    """argparse dest of a dashed key."""
    return key.replace("-", "_")
