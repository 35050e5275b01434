"""The theory registry: everything the rest of the suite needs to know about a theory, in one record.

Each theory module (``suite/theories/<name>.py``) builds a `TheoryInfo` and calls `register_theory`
at import; `suite.theories` imports every module of its package, so adding a theory means adding
its module (with its field space in `suite.fields` and its catalogue file) and nothing else:

* ``name``: the ``theory = "..."`` of catalogue entries and the ``theory`` of result rows;
* ``build(convention, lattice, **params) -> Theory`` and ``conventions``, the source conventions
  it converts from (`build_theory` checks the convention before building);
* ``exact``: exact solvers by the name catalogue entries give as ``exact = "..."``, each an
  `ExactSolver` (a function ``theory -> {observable: value}`` and the provenance of its values);
* ``headline_observable``: the observable that headlines the theory in tables and leaderboards
  (``lftbench compare``'s default);
* ``figure_observables``: those drawn in per-run history figures, in order of preference (the
  report draws the first three the chain has);
* ``reference_observables``: those ``lftbench calibrate`` stores as computed references;
* ``report_sections``: callables ``(rows, out_folder) -> list[str]`` of Markdown lines the report
  adds for this theory, given only this theory's rows (write them with `lazy` so that importing
  a theory does not import the report's plotting libraries).

No code outside this registry compares a theory name to a string.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from suite.errors import UsageError

ReportSection = Callable[[list, Path], list]


def lazy(target: str) -> Callable:
    """A callable that imports ``"module:attribute"`` on its first call and forwards to it."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"lazy target must be 'module:attribute', got {target!r}")
    resolved = []

    def call(*args, **kwargs):
        if not resolved:
            resolved.append(getattr(importlib.import_module(module_name), attribute))
        return resolved[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = attribute
    call.__doc__ = f"{target}, imported on first call."
    return call


@dataclass(frozen=True)
class ExactSolver:
    """Exact expectation values of a theory: ``function(theory) -> {observable: value}``."""

    function: Callable[..., dict]
    provenance: str  # starts with "exact", as the catalogue's reference provenances

    def __post_init__(self):
        if not self.provenance.startswith("exact"):
            raise ValueError(f"an exact solver's provenance must start with 'exact', got {self.provenance!r}")


@dataclass(frozen=True)
class TheoryInfo:
    """What the suite knows about one theory; see the module docstring."""

    name: str
    build: Callable[..., object]
    conventions: tuple[str, ...]
    headline_observable: str
    figure_observables: tuple[str, ...]
    exact: Mapping[str, ExactSolver] = field(default_factory=dict)
    reference_observables: tuple[str, ...] = ()
    report_sections: tuple[ReportSection, ...] = ()

    def exact_solver(self, name: str) -> ExactSolver:
        """The exact solver ``name`` of this theory, or a one-line UsageError naming it and the known ones."""
        if name not in self.exact:
            known = ", ".join(sorted(self.exact)) or "none"
            raise UsageError(f"exact solver {name!r} is not registered for theory {self.name!r} (known: {known})")
        return self.exact[name]

    def build_theory(self, convention: str, lattice, **params):
        """The Theory in ``convention`` with ``params`` on ``lattice``; a UsageError for an unknown convention."""
        if convention not in self.conventions:
            raise UsageError(f"unknown {self.name} convention {convention!r}; "
                             f"expected one of {', '.join(self.conventions)}")
        return self.build(convention, tuple(lattice), **params)


_REGISTRY: dict[str, TheoryInfo] = {}


def register_theory(info: TheoryInfo, *, replace: bool = False) -> TheoryInfo:
    """Add ``info`` to the registry (``replace``: overwrite one of the same name); returns it."""
    if not isinstance(info, TheoryInfo):
        raise TypeError(f"register_theory takes a TheoryInfo, got {type(info).__name__}")
    if info.name in _REGISTRY and not replace and _REGISTRY[info.name] is not info:
        raise ValueError(f"theory {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def unregister_theory(name: str) -> None:
    """Remove a theory from the registry (for tests that register a toy theory)."""
    _REGISTRY.pop(name, None)


def registered_theories() -> dict[str, TheoryInfo]:
    """The registered theories by name, in registration order."""
    return dict(_REGISTRY)


def theory_info(name: str) -> TheoryInfo:
    """The registered theory ``name``, or a one-line UsageError listing the known ones."""
    if name not in _REGISTRY:
        raise UsageError(f"unknown theory {name!r}; known theories: {', '.join(_REGISTRY) or 'none'}")
    return _REGISTRY[name]
