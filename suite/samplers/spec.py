"""Typed sampler specs: frozen dataclasses whose fields declare their type, default, bounds and help.

A spec class is a ``@dataclass(frozen=True)`` whose fields are made with `option`; the annotation
is the type (``int``, ``float``, ``bool``, ``str``, ``dict`` for a free JSON object such as a
model's ``hparams``, or another spec class for a nested table; ``Nested | None`` for an optional
one, written ``{}`` when absent). `parse` checks a plain dict against the class — unknown keys,
types (a bool is not an int, a string is not a bool), finiteness, bounds and choices — and calls
the class's ``check(self)`` for rules across fields; every failure is a one-line `UsageError`.
`as_dict` is the inverse: the plain dict written into result rows and hashed into task keys.
Values keep the type they were given in (an integer given for a float option stays an integer),
so the dict of an old spec, and hence its task key, is unchanged.

This module imports no torch: the CLI builds its options from the specs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from functools import lru_cache

from suite.errors import UsageError

MISSING = dataclasses.MISSING


def option(default, *, help: str, min=None, max=None, above=None, below=None, choices=None, flag=None,
           cli: bool = True):
    """A spec field: ``default`` (dicts are copied per instance), a ``help`` line for the CLI,
    inclusive bounds ``min``/``max``, exclusive bounds ``above``/``below``, allowed ``choices``
    (a tuple, or a callable returning one, evaluated when a spec is parsed), the CLI ``flag``
    (default ``--name-with-dashes``) and whether the CLI offers it at all."""
    metadata = {"help": help, "min": min, "max": max, "above": above, "below": below, "choices": choices,
                "flag": flag, "cli": cli}
    if default is MISSING:  # a required field
        return dataclasses.field(metadata=metadata)
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def field_kind(cls, name: str) -> tuple[type, bool]:
    """(type, optional) of a spec field: ``int``, ``float``, ``bool``, ``str``, ``dict`` or a spec class."""
    hint = _hints(cls)[name]
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return hint, False


def is_spec(kind) -> bool:
    return dataclasses.is_dataclass(kind) and isinstance(kind, type)


def spec_fields(cls):
    return dataclasses.fields(cls)


def _type_name(kind) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            dict: "a table (JSON object)"}.get(kind, "a table (JSON object)")


def _check_value(name: str, value, kind, meta: dict, where: str):
    def fail(what: str):
        raise UsageError(f"{where}option {name!r} must be {what}, got {value!r}")

    if kind is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        if not math.isfinite(value):
            fail("a finite number")
    elif kind is str:
        if not isinstance(value, str):
            fail("a string")
    elif kind is dict:
        if not isinstance(value, dict):
            fail("a table (JSON object)")
        return dict(value)
    if meta["min"] is not None and value < meta["min"]:
        fail(f">= {meta['min']}")
    if meta["max"] is not None and value > meta["max"]:
        fail(f"<= {meta['max']}")
    if meta["above"] is not None and not value > meta["above"]:
        fail(f"> {meta['above']}")
    if meta["below"] is not None and not value < meta["below"]:
        fail(f"< {meta['below']}")
    choices = meta["choices"]
    if choices is not None:
        choices = choices() if callable(choices) else choices
        if value not in choices:
            fail(f"one of {', '.join(map(str, choices))}")
    return value


def parse(cls, raw: dict, where: str = ""):
    """An instance of spec class ``cls`` from a plain dict, defaults filled in; a one-line
    `UsageError` (prefixed by ``where``) for anything wrong."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}must be a table (JSON object), got {raw!r}")
    names = [f.name for f in spec_fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise UsageError(f"{where}no option {unknown[0]!r}; options: {', '.join(names)}")
    values = {}
    for f in spec_fields(cls):
        kind, optional = field_kind(cls, f.name)
        if f.name not in raw:
            if f.default is MISSING and f.default_factory is MISSING:
                raise UsageError(f"{where}needs {f.name} ({_type_name(kind)}); required: "
                                 f"{', '.join(g.name for g in spec_fields(cls) if g.default is MISSING)}")
            continue
        value = raw[f.name]
        if is_spec(kind):
            if optional and value in ({}, None):
                values[f.name] = None
            else:
                values[f.name] = parse(kind, value, f"{where}option {f.name!r}: ")
        else:
            values[f.name] = _check_value(f.name, value, kind, f.metadata, where)
    spec = cls(**values)
    check = getattr(spec, "check", None)
    if callable(check):
        try:
            check()
        except UsageError as err:
            raise UsageError(f"{where}{err}") from None
    return spec


def as_dict(spec) -> dict:
    """The plain dict of a spec (nested specs as dicts, an absent optional one as ``{}``)."""
    out = {}
    for f in spec_fields(type(spec)):
        value = getattr(spec, f.name)
        kind, optional = field_kind(type(spec), f.name)
        if is_spec(kind):
            out[f.name] = {} if value is None else as_dict(value)
        else:
            out[f.name] = dict(value) if isinstance(value, dict) else value
    return out


def bounds(meta: dict) -> str:
    """The allowed values of an option in words: ``>= 1``, ``> 0, < 1``, ``one of a, b``."""
    parts = [f"{sign} {meta[key]}" for key, sign in (("min", ">="), ("above", ">"), ("max", "<="), ("below", "<"))
             if meta.get(key) is not None]
    choices = meta.get("choices")
    if choices is not None:
        parts.append("one of " + ", ".join(choices() if callable(choices) else choices))
    return ", ".join(parts)


def describe(cls, prefix: str = "") -> list[tuple[str, str, object, str, str]]:
    """(name, type, default, allowed values, help) of every option, nested ones as ``outer.inner``:
    the docs' option list. A required option's default is ``REQUIRED``."""
    rows = []
    for f in spec_fields(cls):
        kind, optional = field_kind(cls, f.name)
        default = (f.default if f.default is not MISSING else
                   f.default_factory() if f.default_factory is not MISSING else REQUIRED)
        if is_spec(kind):
            rows.append((prefix + f.name, "table" + (" (optional)" if optional else ""),
                         {} if default is None else as_dict(default), "", f.metadata["help"]))
            rows += describe(kind, prefix=f"{prefix}{f.name}.")
        else:
            rows.append((prefix + f.name, _type_name(kind).removeprefix("an ").removeprefix("a "), default,
                         bounds(f.metadata), f.metadata["help"]))
    return rows


REQUIRED = "(required)"
