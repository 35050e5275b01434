"""Target theories. `build_theory` makes one from a catalogue entry's fields."""

from __future__ import annotations

from suite.theories.base import DerivedQuantity, Theory

THEORIES = ("phi4", "u1")


def build_theory(theory: str, lattice, convention: str | None = None, params: dict | None = None) -> Theory:
    """A Theory from its name, lattice, source convention and parameters (as in the catalogue)."""
    params = dict(params or {})
    if theory == "phi4":
        from suite.theories.phi4 import Phi4

        return Phi4.from_convention(convention, lattice, **params)
    if theory == "u1":
        from suite.theories.u1 import U1

        return U1.from_convention(convention, lattice, **params)
    raise ValueError(f"unknown theory {theory!r}; expected one of {', '.join(THEORIES)}")


__all__ = ["DerivedQuantity", "Theory", "build_theory", "THEORIES"]
