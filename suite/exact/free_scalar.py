"""Exact finite-volume expectation values of the free (Gaussian, B = 0) lattice scalar field.

For S = Σ_x [−J Σ_mu φ_x φ_{x+mu} + A φ_x²] = ½ φᵀ K φ the kernel is diagonal in momentum
space with K(p) = 2A − 2J Σ_mu cos p_mu, p_mu = 2πk/L_mu, and <|φ̃(p)|²>/V = 1/K(p).
Every value below is a finite sum over the lattice momenta (float64, no approximation).

Partition function of the canonical form S = ½ φᵀKφ + C V (`suite.theories.phi4`), over Lebesgue
measure d^Vφ (the convention of importance samplers' log Z, `suite.metrics`):

    log Z = log ∫ d^Vφ e^{−S} = −C V + (V/2) log 2π − ½ Σ_p log K(p).
"""

from __future__ import annotations

import math

import torch

from suite.lattice import momentum_grid


def free_scalar_exact(theory) -> dict[str, float]:
    """Exact <phi2>, χ₂, <|M|>/V, Ising energy, action density, ξ_2nd, pole mass of a free Phi4, and
    ``log_z`` (module docstring).

    Names match `Phi4.observables` / `Phi4.derived_quantities` and, for ``log_z``, the estimate of
    importance samplers (`suite.metrics`). Raises ValueError unless the
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
        "log_z": -theory.C * volume + 0.5 * volume * math.log(2 * math.pi) - 0.5 * torch.log(kernel).sum().item(),
    }
    if len(set(lattice)) == 1:
        # K(p_min) − K(0) = 2J (1 − cos 2π/L) = 4J sin²(π/L), hence ξ² = J / K(0).
        values["xi2nd"] = math.sqrt(theory.J / k0)
    # The zero-spatial-momentum correlator is exactly A cosh(E (t − L/2)), cosh E = 1 + K(0)/(2J).
    values["m_pole"] = math.acosh(1 + k0 / (2 * theory.J))
    return values


def gaussian_proposal_ess(theory, proposal_precision: float = 1.0) -> float:
    """Exact ESS per sample (N → ∞) of importance sampling a free Phi4 with the proposal
    q = N(0, I/a), a = ``proposal_precision`` (a = 1: the N(0, 1) prior of `suite.fields.EuclideanSpace`).

    With p = N(0, K⁻¹) the normalised target and w ∝ p/q, ESS = E_q[w]² / E_q[w²] = 1 / ∫ p²/q, and for
    Gaussians (precisions K and Q = a·I, both diagonal in momentum space)

        ∫ p²/q dφ = det K · det Q^{−½} · det(2K − Q)^{−½},   so   ESS = Π_p sqrt(a (2K(p) − a)) / K(p),

    finite only where 2K(p) > a for every momentum (otherwise E_q[w²] = ∞ and the ESS is 0).
    """
    if theory.B != 0:
        raise ValueError("the exact proposal ESS exists only for the free field (quartic coupling 0)")
    if not proposal_precision > 0:
        raise ValueError(f"proposal_precision must be > 0, got {proposal_precision}")
    p = momentum_grid(theory.lattice)
    kernel = (2 * theory.A - 2 * theory.J * sum(torch.cos(pm) for pm in p)).double()
    a = float(proposal_precision)
    if not (2 * kernel > a).all():
        return 0.0
    return math.exp((0.5 * torch.log(a * (2 * kernel - a)) - torch.log(kernel)).sum().item())
