"""Typed hyperparameters of the reference models: kinds with bounds, and a model's schema.

A kind checks one value and returns it normalised (``Real`` turns an integer into a float,
``Ints`` a list into a tuple); a value of the wrong type or out of bounds raises a `UsageError`
(a `ValueError`) whose one-line message names the model, the hyperparameter and what it allows.
Types are strict, as a study file or ``--hparams`` JSON gives them: a bool is not an integer,
the string ``"false"`` is not a bool, ``2.5`` (or ``2.0``) is not an integer.

`schema_of(factory, **kinds)` takes the defaults from the factory's signature and checks that every
keyword of the factory has a kind and every kind a keyword, so a schema cannot drift from its factory.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from suite.errors import UsageError

_UNSET = object()


def _bounds(low, high, low_open=False, high_open=False) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high}")
    return " and ".join(parts)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Kind:
    """One hyperparameter: its default (filled in from the factory by `schema_of`) and a check."""

    default: Any = field(default=_UNSET, kw_only=True)

    def describe(self) -> str:
        raise NotImplementedError

    def accepts(self, value) -> bool:
        raise NotImplementedError

    def normalise(self, value):
        return value

    def check(self, value, model: str, name: str):
        """``value`` normalised, or a one-line UsageError naming ``model``, ``name`` and the allowed values."""
        if not self.accepts(value):
            raise UsageError(f"model {model!r}: hyperparameter {name} must be {self.describe()}, "
                             f"got {value!r} ({type(value).__name__})")
        return self.normalise(value)


@dataclass(frozen=True)
class Int(Kind):
    """An integer in [min, max] (either end optional), odd if ``odd``."""

    min: int | None = None
    max: int | None = None
    odd: bool = False

    def describe(self):
        bounds = _bounds(self.min, self.max)
        return f"{'an odd integer' if self.odd else 'an integer'}{' ' + bounds if bounds else ''}"

    def accepts(self, value):
        return (_is_int(value) and (self.min is None or value >= self.min)
                and (self.max is None or value <= self.max) and (not self.odd or value % 2 == 1))

    def normalise(self, value):
        return int(value)


@dataclass(frozen=True)
class Real(Kind):
    """A finite real number (an integer is accepted and made a float) within the bounds; ``min_open``
    / ``max_open`` exclude the end."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def describe(self):
        bounds = _bounds(self.min, self.max, self.min_open, self.max_open)
        return f"a finite number{' ' + bounds if bounds else ''}"

    def accepts(self, value):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            return False
        low = self.min is None or (value > self.min if self.min_open else value >= self.min)
        high = self.max is None or (value < self.max if self.max_open else value <= self.max)
        return low and high

    def normalise(self, value):
        return float(value)


@dataclass(frozen=True)
class Bool(Kind):
    """Strictly a bool: ``true`` / ``false`` (the strings "true", "false" and the integers 0, 1 are not)."""

    def describe(self):
        return "true or false"

    def accepts(self, value):
        return isinstance(value, bool)


@dataclass(frozen=True)
class Choice(Kind):
    """One of the strings ``choices``."""

    choices: tuple[str, ...] = ()

    def describe(self):
        return f"one of {', '.join(self.choices)}"

    def accepts(self, value):
        return isinstance(value, str) and value in self.choices


@dataclass(frozen=True)
class Ints(Kind):
    """A list (or tuple) of integers, each >= ``min``; non-empty unless ``allow_empty``. Normalised to a tuple."""

    min: int | None = None
    allow_empty: bool = False

    def describe(self):
        each = f", each {_bounds(self.min, None)}" if self.min is not None else ""
        return f"a {'' if self.allow_empty else 'non-empty '}list of integers{each}"

    def accepts(self, value):
        return (isinstance(value, (list, tuple)) and (self.allow_empty or len(value) > 0)
                and all(_is_int(v) and (self.min is None or v >= self.min) for v in value))

    def normalise(self, value):
        return tuple(int(v) for v in value)


@dataclass(frozen=True)
class Schema:
    """The hyperparameters of one model, in the factory's order: name -> `Kind` (with its default)."""

    model: str
    kinds: dict[str, Kind]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.kinds)

    def defaults(self) -> dict[str, Any]:
        return {name: kind.default for name, kind in self.kinds.items()}

    def validate(self, hparams: dict) -> dict:
        """The given hyperparameters, checked and normalised (defaults are not filled in)."""
        if not isinstance(hparams, dict):
            raise UsageError(f"model {self.model!r}: hyperparameters must be a table/object, got "
                             f"{type(hparams).__name__}")
        unknown = sorted(set(hparams) - set(self.kinds), key=str)
        if unknown:
            raise UsageError(f"model {self.model!r}: unknown hyperparameter(s) {', '.join(map(str, unknown))}; "
                             f"valid: {', '.join(self.kinds)}")
        return {name: self.kinds[name].check(value, self.model, name) for name, value in hparams.items()}


def schema_of(model: str, factory, **kinds: Kind) -> Schema:
    """The schema of ``factory(theory, **hparams)``: ``kinds`` for every keyword after ``theory``, in
    the signature's order, defaults from the signature. TypeError (a programming error, raised at
    registration) if names differ, a keyword has no default, or a default is outside its kind."""
    params = [p for p in inspect.signature(factory).parameters.values() if p.name != "theory"]
    names = [p.name for p in params]
    if set(names) != set(kinds):
        raise TypeError(f"schema of {model!r}: factory keywords {names} but kinds for {list(kinds)}")
    out = {}
    for p in params:
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"schema of {model!r}: keyword {p.name} of the factory has no default")
        kind = kinds[p.name]
        if kind.default is not _UNSET and kind.default != p.default:
            raise TypeError(f"schema of {model!r}: default of {p.name} is {kind.default!r}, factory's {p.default!r}")
        kind = dataclasses.replace(kind, default=p.default)
        try:
            kind.check(p.default, model, p.name)
        except UsageError as err:
            raise TypeError(f"schema of {model!r}: the factory's default is invalid: {err}") from None
        out[p.name] = kind
    return Schema(model, out)


__all__ = ["Bool", "Choice", "Int", "Ints", "Kind", "Real", "Schema", "schema_of"]
