"""Partitions of a periodic lattice into the active sites (updated by a coupling) and the frozen rest.

Every mask is a boolean tensor of shape ``lattice``, True on the active sites; the frozen sites
are its complement. ``layer_mask(kind, lattice, i)`` alternates the parity from layer to layer so
that consecutive couplings update complementary halves.

`gauge_masks` are the stripes of the gauge-equivariant plaquette couplings (U(1) and SU(N),
Kanwar et al. 2020; in d dimensions the same stripes in one plane): for links of direction μ, a second
direction ν of the plane (μ, ν) (in 2D ν = 1 − μ), an offset o and the period p along axis ν
(`stripe_period`), active links U_μ(x) with x_ν ≡ o (mod p), every other coordinate free; active
plaquettes U_μν(x) at the same sites (each holds one active link, the one at x; its other three links
are never active); passive plaquettes: the other loops holding an active link (in the plane (μ, ν) at
x_ν ≡ o − 1, in the planes (μ, ρ), ρ ≠ ν, at x_ν ≡ o); they change only as a consequence. Frozen
plaquettes and 2×1 loops R (`reference.flows.loops`): no active link lies on them, so the layer
leaves them unchanged (the loops of planes without μ are always frozen).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from reference.flows.loops import at, path_links, planes, plaquette_path, rectangle_paths
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



LOOPS = ("plaquette", "plaquette+rectangle")  # the frozen loops a gauge coupling's conditioner sees


def stripe_period(extent: int) -> int:
    """The stripe period along an axis of ``extent`` sites: 4 (the tutorial's), else 3 or 2."""
    for period in (4, 3, 2):
        if extent % period == 0:
            return period
    raise ValueError(f"gauge-equivariant couplings need lattice extents divisible by 2, 3 or 4, got {extent}")


class GaugeMasks(NamedTuple):
    """Boolean masks of a plaquette coupling on a d-dimensional lattice: ``active`` (*lattice) (active
    links of direction μ and active plaquettes of the plane (μ, ν) at the same sites),
    ``frozen_plaquettes`` (P, *lattice) and ``frozen_rectangles`` (2P, *lattice), P = d(d−1)/2, in the
    order of `reference.flows.loops` (planes a < b; per plane the long side along a, then b)."""

    active: torch.Tensor
    frozen_plaquettes: torch.Tensor
    frozen_rectangles: torch.Tensor


def gauge_masks(lattice, mu: int, offset: int, nu: int | None = None) -> GaugeMasks:
    """The stripes (module docstring) of direction ``mu`` in the plane (``mu``, ``nu``) and ``offset``
    on a d-dimensional ``lattice``; ``nu`` may be omitted in 2D (ν = 1 − μ). A loop is frozen when
    no active link lies on it (`reference.flows.loops.path_links`)."""
    lattice = tuple(int(n) for n in lattice)
    d = len(lattice)
    if nu is None:
        if d != 2:
            raise ValueError(f"the plane (mu, nu) of a coupling must be given for d = {d}")
        nu = 1 - mu
    if not (0 <= mu < d and 0 <= nu < d and mu != nu):
        raise ValueError(f"need two different directions mu, nu < {d}, got {mu}, {nu}")
    period = stripe_period(lattice[nu])
    shape = [1] * d
    shape[nu] = -1
    active = ((torch.arange(lattice[nu]) - offset) % period == 0).view(shape).expand(lattice)

    def frozen(path):
        hit = torch.zeros(lattice, dtype=torch.bool)
        for axis, step in path_links(path, d):
            if axis == mu:
                hit = hit | at(active.unsqueeze(0), step)[0]
        return ~hit

    plaq = torch.stack([frozen(plaquette_path(a, b)) for a, b in planes(d)])
    rect = torch.stack([frozen(path) for a, b in planes(d) for path in rectangle_paths(a, b)])
    return GaugeMasks(active, plaq, rect)


def gauge_layer_schedule(lattice, n_layers: int) -> list[tuple[int, int, int]]:
    """(μ, ν, offset) of each layer of a plaquette-coupling stack on a d-dimensional lattice, d ≥ 2.

    Layer i acts on direction μ = i mod d and takes, cyclically, the (i // d)-th of the pairs
    (ν, o) for ν = μ+1, μ+2, … (mod d), each with the offsets o = 0 … p_ν − 1 (p_ν the stripe period
    along ν): every link of direction μ is updated once in its first p_ν layers, every link of the
    lattice in the first d·max_ν p_ν layers. In 2D ν = 1 − μ and o = (i // 2) mod p_ν (the
    tutorial's ``make_u1_equiv_layers``)."""
    lattice = tuple(int(n) for n in lattice)
    d = len(lattice)
    if d < 2:
        raise ValueError(f"the gauge-equivariant plaquette couplings need d >= 2, got lattice {list(lattice)}")
    if n_layers < 1:
        raise ValueError(f"a stack needs at least one coupling layer, got {n_layers}")
    cycles = [[(nu, o) for nu in ((mu + k) % d for k in range(1, d)) for o in range(stripe_period(lattice[nu]))]
              for mu in range(d)]
    return [(i % d, *cycles[i % d][(i // d) % len(cycles[i % d])]) for i in range(n_layers)]
