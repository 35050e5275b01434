"""Exact finite-volume expectation values of the free (Gaussian, B = 0) lattice scalar field.

For S = Σ_x [−J Σ_mu φ_x φ_{x+mu} + A φ_x²] = ½ φᵀ K φ the kernel is diagonal in momentum
space with K(p) = 2A − 2J Σ_mu cos p_mu, p_mu = 2πk/L_mu, and <|φ̃(p)|²>/V = 1/K(p).
Every value below is a finite sum over the lattice momenta (float64, no approximation).
"""

from __future__ import annotations

import math

import torch

from suite.lattice import momentum_grid


def free_scalar_exact(theory) -> dict[str, float]:
    """Exact <phi2>, χ₂, <|M|>/V, Ising energy, action density, ξ_2nd, pole mass of a free Phi4.

    Names match `Phi4.observables` / `Phi4.derived_quantities`. Raises ValueError unless the
    quartic coupling is zero and the kernel is positive (K(0) = 2A − 2Jd > 0).
    """
    if theory.B != 0:
        raise ValueError("exact values exist only for the free field (quartic coupling 0)")
    lattice, volume, d = theory.lattice, theory.volume, theory.dim
    p = momentum_grid(lattice)
    kernel = 2 * theory.A - 2 * theory.J * sum(torch.cos(pm) for pm in p)
    k0 = 2 * theory.A - 2 * theory.J * d
    if k0 <= 0:
        raise ValueError(f"free field has no stable vacuum: K(0) = {k0} <= 0")
    propagator = 1 / kernel
    chi2 = 1 / k0
    values = {
        "phi2": propagator.mean().item(),
        "chi2": chi2,
        # M is Gaussian with variance V χ₂, so <|M|> = sqrt(2 V χ₂ / π).
        "abs_mag": math.sqrt(2 * volume * chi2 / math.pi) / volume,
        "e_ising": (sum(torch.cos(pm) for pm in p) * propagator).mean().item() / d,
        # Equipartition: <½ φᵀKφ> = V/2.
        "action_density": 0.5 + theory.C,
    }
    if len(set(lattice)) == 1:
        # K(p_min) − K(0) = 2J (1 − cos 2π/L) = 4J sin²(π/L), hence ξ² = J / K(0).
        values["xi2nd"] = math.sqrt(theory.J / k0)
    # The zero-spatial-momentum correlator is exactly A cosh(E (t − L/2)), cosh E = 1 + K(0)/(2J).
    values["m_pole"] = math.acosh(1 + k0 / (2 * theory.J))
    return values
