"""Partitions of a periodic lattice into the active sites (updated by a coupling) and the frozen rest.

Every mask is a boolean tensor of shape ``lattice``, True on the active sites; the frozen sites
are its complement. ``layer_mask(kind, lattice, i)`` alternates the parity from layer to layer so
that consecutive couplings update complementary halves.
"""

from __future__ import annotations

import torch

from suite.lattice import checkerboard


def _alternating(lattice: tuple[int, ...], axis: int, parity: int) -> torch.Tensor:
    """Sites with n_axis ≡ parity (mod 2): alternating slices orthogonal to ``axis``."""
    if axis >= len(lattice):
        raise ValueError(f"mask needs a lattice of dimension > {axis}, got {list(lattice)}")
    n = torch.arange(lattice[axis]) % 2 == parity
    return n.view(-1, *[1] * (len(lattice) - axis - 1)).expand(lattice)


def rows(lattice, parity: int = 0) -> torch.Tensor:
    """Alternating rows: sites with n_0 ≡ parity (mod 2)."""
    return _alternating(tuple(lattice), 0, parity)


def columns(lattice, parity: int = 0) -> torch.Tensor:
    """Alternating columns: sites with n_1 ≡ parity (mod 2); needs d ≥ 2."""
    return _alternating(tuple(lattice), 1, parity)


MASKS = {"checkerboard": checkerboard, "rows": rows, "columns": columns}
KINDS = (*MASKS, "stripes")


def layer_mask(kind: str, lattice, i: int) -> torch.Tensor:
    """Active mask of coupling layer i, parity i mod 2; ``stripes`` cycles rows, rows, columns, columns."""
    if kind not in KINDS:
        raise ValueError(f"unknown mask {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "stripes":
        kind = "rows" if i % 4 < 2 else "columns"
    return MASKS[kind](tuple(lattice), i % 2).contiguous()
