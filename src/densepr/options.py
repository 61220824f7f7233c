"""Command options written once: dataclass fields carry help and defaults, and generate the argparse parser.

>>> from dataclasses import dataclass
>>> @dataclass(kw_only=True)
... class Example:
...     out: str = opt(help="output file", required=True)
...     top_k: int = opt(100, help="passages per question")
>>> parser = argparse.ArgumentParser()
>>> add_options(parser, Example)
>>> from_namespace(Example, parser.parse_args(["--out", "x.json"]))
Example(out='x.json', top_k=100)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def opt(default: Any = None, *, help: str, required: bool = False, positional: bool = False, flag: str | None = None,
        choices: Sequence[Any] | None = None, nargs: str | None = None, cli: bool = True) -> Any:
    """A dataclass field with its command-line form.

    ``required`` fields have no default; ``positional`` ones are arguments rather than ``--options``;
    ``flag`` overrides the option name (default: ``--field-name``); ``cli=False`` keeps a field off the parser.
    """
    meta = {"help": help, "positional": positional, "flag": flag, "choices": tuple(choices) if choices else None,
            "nargs": nargs, "cli": cli, "required": required}
    if required:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _plain(annotation: Any) -> tuple[Any, bool]:
    """``(type, optional)`` of an annotation such as ``int | None`` or ``list[str]``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return annotation, False


def _default(field: dataclasses.Field) -> Any:
    """A field's default value (``None`` for a required field)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _shown_default(default: Any, required: bool) -> str:
    """`` (default: X)`` for the help text, where there is a default worth showing."""
    if required or default is None or default is False or default == [] or default == "":
        return ""
    shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
    return f" (default: {shown})".replace("%", "%%")


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The command-line fields of a dataclass with their resolved types (nested dataclasses flattened)."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[dataclasses.Field, Any]] = []
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            out.extend(option_fields(kind))  # type: ignore[arg-type]
        elif field.metadata.get("cli", True) and "help" in field.metadata:
            out.append((field, kind))
    return out


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, suppress: Sequence[type] = (),
                exclude: Sequence[str] = ()) -> None:
    """Add one argument per field of ``cls`` (but ``exclude``); fields of the dataclasses in ``suppress`` get no default.

    A suppressed field is present in the namespace only when given, so values from elsewhere (a spec
    file) can be overridden by exactly the options a user typed.
    """
    quiet = {f.name for c in suppress for f, _ in option_fields(c)}
    for field, annotation in option_fields(cls):
        if field.name in exclude:
            continue
        meta, (kind, optional) = field.metadata, _plain(annotation)
        default = _default(field)
        kw: dict[str, Any] = {"help": meta["help"] + _shown_default(default, meta["required"])}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction if optional or default else "store_true"
        elif typing.get_origin(kind) is list:
            kw.update(nargs=meta["nargs"] or "+", type=typing.get_args(kind)[0])
        elif typing.get_origin(kind) is typing.Literal:
            kw["choices"] = typing.get_args(kind)
        else:
            kw["type"] = kind
            if meta["nargs"]:
                kw["nargs"] = meta["nargs"]
        if meta["choices"]:
            kw["choices"] = meta["choices"]
        if "choices" in kw:
            kw.pop("type", None)
        if field.name in quiet:
            kw["default"] = argparse.SUPPRESS
        elif not meta["required"]:
            kw["default"] = default
        if meta["positional"]:
            parser.add_argument(field.name, **kw)
        else:
            parser.add_argument(_flag(field), dest=field.name, required=meta["required"] and field.name not in quiet, **kw)


def from_namespace(cls: type[T], namespace: argparse.Namespace | dict[str, Any]) -> T:
    """Build ``cls`` (and its nested dataclasses) from parsed options; absent fields keep their defaults."""
    values = vars(namespace) if isinstance(namespace, argparse.Namespace) else namespace
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            kwargs[field.name] = from_namespace(kind, values)  # type: ignore[arg-type]
        elif field.name in values:
            kwargs[field.name] = values[field.name]
    return cls(**kwargs)


def to_argv(obj: Any) -> list[str]:
    """The options that rebuild the dataclass ``obj`` on a command line (fields at their defaults left out)."""
    argv: list[str] = []
    for field, annotation in option_fields(type(obj)):
        value = getattr(obj, field.name)
        default = _default(field)
        if value == default or field.metadata["positional"]:
            continue
        flag, (kind, _) = _flag(field), _plain(annotation)
        if kind is bool:
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def given(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` that are present in ``namespace`` (for suppressed fields: typed by the user)."""
    names = {f.name for f, _ in option_fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names}
