"""Target theories. `build_theory` makes one from a catalogue entry's fields.

Every module of this package other than ``base`` and ``registry`` is a theory: it registers its
`TheoryInfo` at import (`suite.theories.registry`), and importing this package imports them all.
Adding a theory is adding its module here, its field space and its catalogue file.
"""

from __future__ import annotations

import importlib
import pkgutil

from suite.theories.base import DerivedQuantity, Theory
from suite.theories.registry import (ExactSolver, TheoryInfo, lazy, register_theory, registered_theories,
                                     theory_info, unregister_theory)

_NOT_THEORIES = {"base", "registry"}

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _NOT_THEORIES and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")


def build_theory(theory: str, lattice, convention: str | None = None, params: dict | None = None) -> Theory:
    """A Theory from its name, lattice, source convention and parameters (as in the catalogue)."""
    return theory_info(theory).build_theory(convention, lattice, **dict(params or {}))


__all__ = ["DerivedQuantity", "ExactSolver", "Theory", "TheoryInfo", "build_theory", "lazy", "register_theory",
           "registered_theories", "theory_info", "unregister_theory"]
