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


def add_shifted_(out: torch.Tensor, x: torch.Tensor, mu: int, step: int = 1, alpha: float = 1.0,
                 first: int = 1) -> torch.Tensor:
    """``out += alpha * shift(x, mu, step)`` in place, for step ±1, without making the shifted copy
    (two slice updates: the bulk and the wrapped face). Returns ``out``. Under ``torch.compile`` it
    adds the rolled tensor instead: the compiler fuses a roll into its loop but copies around slice
    updates (3–4× slower compiled HMC, bench/README.md)."""
    axis, n = first + mu, x.shape[first + mu]
    if step not in (1, -1):
        raise ValueError(f"add_shifted_ shifts by one site, got step {step}")
    if torch.compiler.is_compiling():
        return out.add_(shift(x, mu, step, first), alpha=alpha)
    if step == 1:
        out.narrow(axis, 0, n - 1).add_(x.narrow(axis, 1, n - 1), alpha=alpha)
        out.narrow(axis, n - 1, 1).add_(x.narrow(axis, 0, 1), alpha=alpha)
    else:
        out.narrow(axis, 1, n - 1).add_(x.narrow(axis, 0, n - 1), alpha=alpha)
        out.narrow(axis, 0, 1).add_(x.narrow(axis, n - 1, 1), alpha=alpha)
    return out


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
