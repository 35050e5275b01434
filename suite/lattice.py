"""Periodic hypercubic lattices: shifts, checkerboard masks and lattice momenta.

A field stores its lattice axes contiguously, starting at axis ``first`` of the tensor
(scalar fields ``(B, *lattice)``: ``first = 1``; U(1) links ``(B, d, *lattice)``: ``first = 2``).
Sites are integer vectors n; ``shift(x, mu, +1)`` returns the field at n + mu-hat, i.e.
``shift(x, mu)[..., n, ...] == x[..., n + mu, ...]`` with periodic wrap-around.
"""

from __future__ import annotations

import math

import torch


def shift(x: torch.Tensor, mu: int, step: int = 1, first: int = 1) -> torch.Tensor:
    """The field at n + step * mu-hat (periodic), for lattice axes starting at ``first``."""
    return torch.roll(x, shifts=-step, dims=first + mu)


def site_parity(lattice: tuple[int, ...], device=None) -> torch.Tensor:
    """(Σ_mu n_mu) mod 2 on every site, shape ``lattice``, dtype int64."""
    grids = torch.meshgrid(*[torch.arange(n, device=device) for n in lattice], indexing="ij")
    return sum(grids) % 2


def checkerboard(lattice: tuple[int, ...], parity: int = 0, device=None) -> torch.Tensor:
    """Boolean mask of the sites with (Σ_mu n_mu) mod 2 == parity, shape ``lattice``."""
    return site_parity(lattice, device) == parity


def lattice_momenta(length: int) -> torch.Tensor:
    """The momenta 2πk/L, k = 0..L-1, in FFT order (float64)."""
    return 2 * math.pi * torch.arange(length, dtype=torch.float64) / length


def momentum_grid(lattice: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Per-axis momentum components on the full momentum grid, each of shape ``lattice``."""
    return torch.meshgrid(*[lattice_momenta(n) for n in lattice], indexing="ij")


def hat_momentum_squared(lattice: tuple[int, ...]) -> torch.Tensor:
    """p-hat² = Σ_mu 4 sin²(p_mu / 2), the eigenvalues of −Δ (nearest-neighbour Laplacian)."""
    return sum(4 * torch.sin(p / 2) ** 2 for p in momentum_grid(lattice))
