"""Closed loops on a periodic d-dimensional lattice as paths of steps, for the gauge-equivariant couplings.

A path is a tuple of steps (axis a, sign ±1) from a base site x. A step +a from y crosses the link
U_a(y), a step −a from y the link U_a(y − â) backwards. ``wilson_loop`` multiplies the links along a
path, left to right (U_a(y) for +a, U_a(y − â)† for −a), at every base site; `path_links` lists the
links it crosses as (axis, offset from x), the geometry `reference.flows.masks` needs.

Planes are the pairs (a, b), a < b, in lexicographic order (`planes`; as `suite.theories.sun`). Loops
of a plane (a, b): the plaquette [+a, +b, −a, −b], i.e. U_ab(x) = U_a(x) U_b(x+â) U_a(x+b̂)† U_b(x)†, and
the 2×1 rectangles with the long side along a ([+a, +a, +b, −a, −a, −b]: plaquettes x and x + â) and
along b ([+a, +b, +b, −a, −b, −b]: plaquettes x and x + b̂).
"""

from __future__ import annotations

import torch

Path = tuple[tuple[int, int], ...]


def planes(d: int) -> list[tuple[int, int]]:
    """The d(d−1)/2 planes (a, b), a < b, in lexicographic order."""
    return [(a, b) for a in range(d) for b in range(a + 1, d)]


def plaquette_path(a: int, b: int) -> Path:
    """The plaquette U_ab(x) of the plane (a, b)."""
    return ((a, 1), (b, 1), (a, -1), (b, -1))


def rectangle_paths(a: int, b: int) -> tuple[Path, Path]:
    """The 2×1 loops of the plane (a, b): long side along a, then along b."""
    return ((a, 1), (a, 1), (b, 1), (a, -1), (a, -1), (b, -1)), ((a, 1), (b, 1), (b, 1), (a, -1), (b, -1), (b, -1))


def path_links(path: Path, d: int) -> list[tuple[int, tuple[int, ...]]]:
    """The links a path crosses, in order: (axis, offset of the link's site from the base site)."""
    position, out = [0] * d, []
    for axis, sign in path:
        if sign < 0:
            position[axis] -= 1
        out.append((axis, tuple(position)))
        if sign > 0:
            position[axis] += 1
    if any(position):
        raise ValueError(f"path {path} is not closed")
    return out


def at(u: torch.Tensor, offset) -> torch.Tensor:
    """A field (B, *lattice, ...) at x + offset (periodic; lattice axes from axis 1)."""
    dims = [1 + i for i, s in enumerate(offset) if s]
    return torch.roll(u, [-s for s in offset if s], dims) if dims else u


def links_on_lattice(path: Path, lattice) -> list[tuple[tuple[int, ...], int]]:
    """The links (site, axis) a loop from the origin crosses on the periodic ``lattice``, in order (a
    link that appears twice is crossed twice)."""
    return [(tuple(o % n for o, n in zip(offset, lattice)), axis) for axis, offset in path_links(path, len(lattice))]


def wilson_loop(x: torch.Tensor, path: Path, cache: dict | None = None) -> torch.Tensor:
    """The ordered product of the links along ``path`` from every site, for links x (B, d, *lattice, N, N):
    (B, *lattice, N, N). ``cache`` (a dict) keeps the shifted link fields for reuse by further paths of
    the same x."""
    cache = {} if cache is None else cache
    out = None
    for (axis, offset), (_, sign) in zip(path_links(path, x.shape[1]), path):
        if (axis, offset) not in cache:
            cache[axis, offset] = at(x[:, axis], offset)
        link = cache[axis, offset] if sign > 0 else cache[axis, offset].mH
        out = link if out is None else out @ link
    return out
