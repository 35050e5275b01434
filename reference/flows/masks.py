"""Partitions of a periodic lattice into the active sites (updated by a coupling) and the frozen rest.

Every mask is a boolean tensor of shape ``lattice``, True on the active sites; the frozen sites
are its complement. ``layer_mask(kind, lattice, i)`` alternates the parity from layer to layer so
that consecutive couplings update complementary halves.

`gauge_masks` are the stripes of the 2D gauge-equivariant plaquette couplings (U(1) and SU(N),
Kanwar et al. 2020): for links of direction μ, ν = 1 − μ, an offset o and the period p along axis ν
(`stripe_period`), active links U_μ(x) with x_ν ≡ o (mod p); active plaquettes at x_ν ≡ o (each holds
one active link, the one at x); passive plaquettes at x_ν ≡ o − 1 (they hold an active link but
change only as a consequence); frozen plaquettes elsewhere (no active link). A 2×1 loop
R_a(x) (plaquettes x and x + â) is frozen when no active link lies on its perimeter.
"""

from __future__ import annotations

from typing import NamedTuple

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



LOOPS = ("plaquette", "plaquette+rectangle")  # the frozen loops a 2D gauge coupling's conditioner sees


def stripe_period(extent: int) -> int:
    """The stripe period along an axis of ``extent`` sites: 4 (the tutorial's), else 3 or 2."""
    for period in (4, 3, 2):
        if extent % period == 0:
            return period
    raise ValueError(f"gauge-equivariant couplings need lattice extents divisible by 2, 3 or 4, got {extent}")


class GaugeMasks(NamedTuple):
    """Boolean masks of a 2D plaquette coupling: ``active`` (L0, L1) (active links of direction μ and
    active plaquettes at the same sites), ``frozen_plaquettes`` (L0, L1), ``frozen_rectangles`` (2, L0, L1)."""

    active: torch.Tensor
    frozen_plaquettes: torch.Tensor
    frozen_rectangles: torch.Tensor


def gauge_masks(lattice, mu: int, offset: int) -> GaugeMasks:
    """The stripes (module docstring) of direction ``mu`` and ``offset`` on a 2D ``lattice``."""
    lattice = tuple(int(n) for n in lattice)
    nu = 1 - mu
    period = stripe_period(lattice[nu])
    n = torch.arange(lattice[nu])
    shape = [1, 1]
    shape[nu] = -1

    def rows(step):  # (x_ν + step) ≡ offset (mod period), broadcast to the lattice
        return (((n + step - offset) % period) == 0).view(shape).expand(lattice)

    active = rows(0)
    frozen_rect = torch.stack([~(active | rows(2 if a == nu else 1)) for a in (0, 1)])
    return GaugeMasks(active, ~(active | rows(1)), frozen_rect)


def gauge_layer_schedule(lattice, n_layers: int) -> list[tuple[int, int]]:
    """(μ, offset) of each layer of a 2D plaquette-coupling stack: μ = i mod 2, offset (i // 2) mod p_μ
    (the tutorial's ``make_u1_equiv_layers``); p_μ is the stripe period along axis 1 − μ."""
    lattice = tuple(int(n) for n in lattice)
    if len(lattice) != 2:
        raise ValueError(f"the gauge-equivariant plaquette couplings are two-dimensional, got lattice {list(lattice)}")
    if n_layers < 1:
        raise ValueError(f"a stack needs at least one coupling layer, got {n_layers}")
    periods = [stripe_period(n) for n in lattice[::-1]]
    return [(i % 2, (i // 2) % periods[i % 2]) for i in range(n_layers)]
