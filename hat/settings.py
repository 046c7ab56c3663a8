"""Settings as typed dataclass fields: the one place a setting's name, type, default, help
text and key live.

A field made with :func:`setting` is a setting. :func:`add_settings` turns a dataclass into
command-line flags (configargparse reads the same names as YAML keys, HAT's where HAT has
one), :func:`from_flags` builds the dataclass back from the parsed values, and :func:`to_keys`
writes it out as keys again. A dataclass field without a setting of its own whose type is a
dataclass (``TrainConfig.schedule``) contributes its settings in place, so nested settings
read as one flat list of keys, as HAT's YAML files have them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Spec:
    help: str
    key: str | None = None  # dashed flag / YAML key; default: the field name, dashed
    aliases: tuple[str, ...] = ()  # other accepted keys (older or HAT spellings), "-x": short
    choices: tuple[Any, ...] | None = None
    parse: Callable[[str], Any] | None = None  # text -> value (for types argparse cannot read)
    show: Callable[[Any], Any] | None = None  # value -> YAML value (inverse of parse)
    switches: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # --flag -> value
    hat: bool = False  # the key (or its switches) is one of HAT's


def setting(default: Any = dataclasses.MISSING, help: str = "", **spec: Any) -> Any:
    """A dataclass field that is a setting (keyword arguments: the rest of :class:`Spec`)."""
    meta = {"setting": Spec(help=help, **spec)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=functools.partial(list, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def key_of(f: dataclasses.Field) -> str:
    return f.metadata["setting"].key or f.name.replace("_", "-")


def dest_of(f: dataclasses.Field) -> str:
    """The argparse destination of a setting: its key with underscores."""
    return key_of(f).replace("-", "_")


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _nested(cls: type, f: dataclasses.Field) -> type | None:
    """The dataclass type of a field that holds nested settings, else None."""
    t = typing.get_type_hints(cls)[f.name]
    if "setting" in f.metadata or not dataclasses.is_dataclass(t):
        return None
    return t if any(True for _ in fields_of(t)) else None


def fields_of(cls: type, nested: bool = True) -> Iterator[tuple[type, dataclasses.Field]]:
    """(owner class, field) of every setting of `cls`, nested dataclasses flattened (or not)."""
    for f in dataclasses.fields(cls):
        inner = _nested(cls, f) if nested else None
        if inner is not None:
            yield from fields_of(inner)
        elif "setting" in f.metadata:
            yield cls, f


def _base_type(t: Any) -> tuple[Any, bool]:
    """(element type, is a list) of an annotation like `int`, `int | None`, `list[float]`."""
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    if typing.get_origin(t) is list:
        return typing.get_args(t)[0], True
    return t, False


def add_settings(
    group: argparse._ActionsContainer,
    cls: type,
    *,
    defaults: Mapping[str, Any] | None = None,
    skip: Collection[str] = (),
    only: Collection[str] | None = None,
    nested: bool = True,
) -> None:
    """Add a flag for every setting of `cls` (except field names in `skip`; with `only`, just
    those; with nested=False, not those of nested dataclasses); `defaults` overrides a field's
    default by field name."""
    defaults = defaults or {}
    for owner, f in fields_of(cls, nested):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        spec: Spec = f.metadata["setting"]
        t, many = _base_type(typing.get_type_hints(owner)[f.name])
        default = defaults.get(f.name, default_of(f))
        names = [f"--{key_of(f)}", *(a if a[0] == "-" else f"--{a}" for a in spec.aliases)]
        kw: dict[str, Any] = {"dest": dest_of(f), "default": default, "help": spec.help}
        if spec.switches:  # --precision bf16, or HAT's --bf16; one of them
            either = group.add_mutually_exclusive_group()
            either.add_argument(*names, choices=spec.choices, **kw)
            for flag, value in spec.switches.items():
                either.add_argument(
                    f"--{flag}",
                    action="store_const",
                    const=value,
                    dest=kw["dest"],
                    help=f"same as --{key_of(f)} {value}",
                )
        elif t is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            group.add_argument(*names, action=action, **kw)
        else:
            kind = spec.parse or t
            group.add_argument(
                *names, type=kind, nargs="+" if many else None, choices=spec.choices, **kw
            )


def from_flags(cls: type, values: Mapping[str, Any], **given: Any) -> Any:
    """`cls` built from parsed flag values (by argparse destination); `given` fixes fields by
    name. Settings absent from `values` keep their defaults."""
    unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            kwargs[f.name] = given[f.name]
        elif (inner := _nested(cls, f)) is not None:
            kwargs[f.name] = from_flags(inner, values)
        elif "setting" in f.metadata and dest_of(f) in values:
            kwargs[f.name] = values[dest_of(f)]
    return cls(**kwargs)


def to_keys(obj: Any, hat_only: bool = False) -> dict[str, Any]:
    """The settings of a dataclass instance as {key: YAML value} (nested ones flattened), which
    read back into the same instance; with `hat_only`, only HAT's keys, in HAT's spelling."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _nested(type(obj), f) is not None:
            out.update(to_keys(value, hat_only))
        elif "setting" in f.metadata:
            spec: Spec = f.metadata["setting"]
            if hat_only and not spec.hat:
                continue
            if hat_only and spec.switches:  # HAT's spelling: its switches (`fp16: True`)
                out.update({flag: value == const for flag, const in spec.switches.items()})
            else:
                out[key_of(f)] = spec.show(value) if spec.show and value is not None else value
    return out
