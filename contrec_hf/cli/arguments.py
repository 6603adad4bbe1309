"""Command-line flags generated from the fields of a dataclass (a config or a training-arguments class).

A field becomes ``--field-name``: its type gives argparse's ``type`` (``Literal`` fields give ``choices``,
booleans a ``--x`` / ``--no-x`` pair, lists and tuples ``nargs="+"``), and its entry in the class docstring's
``Args:`` / ``Attributes:`` section is the help text, so a field's documentation has one home, the docstring that
the API reference renders too. An option left out on the command line is absent from the parsed namespace
(``argparse.SUPPRESS``), so the class's own default applies: [`dataclass_options`] returns only what was given.
Each flag's dest is ``"<ClassName>.<field>"``, so two classes with a field of the same name (``seed``,
``batch_size``) never collide, and each command reads back exactly the fields of each of its classes.

Adding a CLI option is adding a documented field to the dataclass behind the command (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from typing import Any, Literal

__all__ = ["add_dataclass_arguments", "dataclass_options", "field_help"]

# An entry of a Google-style docstring section: "name (`type`, defaults to x): text" (several names may share one
# entry, "a / b (`int`): …"); its continuation lines are indented deeper than the name.
_ENTRY = re.compile(r"^(?P<indent> *)(?P<names>[a-z_][\w ]*(?:/ *[a-z_]\w* *)*)\(.*?\): ?(?P<text>.*)$")
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!\bvs)\.(?:\s|$)")


def _docstring_entries(cls: type) -> dict[str, str]:
    entries: dict[str, str] = {}
    current: list[str] | None = None
    indent = 0
    for line in (cls.__doc__ or "").splitlines():
        match = _ENTRY.match(line)
        if match:
            current, indent = [match["text"]], len(match["indent"])
            for name in match["names"].split("/"):
                entries[name.strip()] = current  # shared entries share the list (filled in below)
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            current.append(line.strip())
        else:
            current = None
    return {name: " ".join(parts) for name, parts in entries.items()}


def _plain(text: str) -> str:
    """Docstring markup as terminal text: [`X`] → X, ``x`` / `x` → x, and % escaped for argparse."""
    text = re.sub(r"\[`([^`]+)`\]", r"\1", text)
    return text.replace("``", "").replace("`", "").replace("%", "%%")


def field_help(cls: type) -> dict[str, str]:
    """The first sentence of each field's docstring entry, as plain text, for every class in ``cls``'s MRO.

    Returns:
        `dict[str, str]`: field name → help text (fields without an entry are absent).
    """
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        helps.update(_docstring_entries(klass))
    return {name: _plain(_SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".") + ".") for name, text in helps.items()}


def _resolve(cls: type, field: dataclasses.Field) -> Any:
    """A field's annotation as a type (modules with ``from __future__ import annotations`` store strings)."""
    if not isinstance(field.type, str):
        return field.type
    for klass in cls.__mro__:
        if field.name in getattr(klass, "__annotations__", {}):
            return eval(field.type, vars(sys.modules[klass.__module__]))  # the class's own annotation, in its module
    raise TypeError(f"cannot resolve the annotation of {cls.__name__}.{field.name}")


def _argparse_kwargs(annotation: Any) -> dict[str, Any]:
    """argparse's ``type`` / ``choices`` / ``nargs`` / ``action`` for one annotation (``X | None`` is ``X``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _argparse_kwargs(next(a for a in args if a is not type(None)))
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        return {"type": type(args[0]), "choices": args}
    if origin in (list, tuple):
        return {"type": args[0], "nargs": "+"}
    if annotation in (int, float, str):
        return {"type": annotation}
    raise TypeError(f"no command-line form for a field of type {annotation!r}")


def _shown(default: Any) -> str:
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return "none" if default is None else str(default)


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
    prefix: str = "",
    aliases: dict[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """Add one flag per field of dataclass ``cls`` to ``parser``.

    Args:
        parser (`argparse.ArgumentParser` or an argument group): where the flags go.
        cls (`type`): a dataclass; every field added must have an entry in its (or a base's) docstring.
        only (`tuple[str, ...]`, *optional*): the fields to add, in this order (default: the fields ``cls`` itself
            declares, in their order; a `PreTrainedConfig`'s base fields are left out).
        exclude (`tuple[str, ...]`): fields left out (set by the command itself).
        prefix (`str`): put before each flag, e.g. ``"cf-"`` gives ``--cf-dim``.
        aliases (`dict[str, tuple[str, ...]]`, *optional*): extra flags of a field, e.g. an older, shorter name.

    Returns:
        `list[str]`: the names of the fields added.

    Example:
        ```python
        >>> import argparse
        >>> from contrec_hf.cli.arguments import add_dataclass_arguments, dataclass_options
        >>> from contrec_hf.features import CollaborativeConfig
        >>> parser = argparse.ArgumentParser()
        >>> add_dataclass_arguments(parser, CollaborativeConfig, only=("method", "dim"), prefix="cf-")
        ['method', 'dim']
        >>> dataclass_options(parser.parse_args(["--cf-dim", "32"]), CollaborativeConfig)
        {'dim': 32}
        ```
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    own = [n for n in vars(cls).get("__annotations__", {}) if n in fields]  # not a base config's (transformers')
    names = [n for n in (only if only is not None else own) if n not in exclude]
    helps = field_help(cls)
    for name in names:
        field = fields[name]
        if name not in helps:
            raise TypeError(f"{cls.__name__}.{name} has no docstring entry to be its --help text")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        flags = [f"--{prefix}{name}".replace("_", "-"), *(aliases or {}).get(name, ())]
        kwargs = _argparse_kwargs(_resolve(cls, field))
        if "type" in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = name.upper()
        help_text = f"{helps[name]} (default: {_plain(_shown(default))})"
        parser.add_argument(*flags, dest=_dest(cls, name), default=argparse.SUPPRESS, help=help_text, **kwargs)
    return names


def _dest(cls: type, name: str) -> str:
    return f"{cls.__name__}.{name}"


def dataclass_options(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (flags added by [`add_dataclass_arguments`]).

    Returns:
        `dict[str, Any]`: field name → parsed value; a list for a tuple-typed field becomes a tuple.
    """
    given = {}
    for field in dataclasses.fields(cls):
        if hasattr(args, _dest(cls, field.name)):
            value = getattr(args, _dest(cls, field.name))
            given[field.name] = tuple(value) if isinstance(value, list) else value
    return given
