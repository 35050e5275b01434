"""The CP(N−1) model in two dimensions, quartic (projector) lattice action, periodic lattice.

Fields z_x ∈ C^N with |z_x| = 1, modulo a phase on every site, stored as complex ``(B, L0, L1, N)``;
the field space is `suite.fields.ProjectiveSpace` (representatives on S^{2N−1}, uniform prior; HMC
momenta horizontal, i.e. with the phase direction i z projected out, so HMC runs on CP(N−1)
itself and never moves the pure-gauge phases). A flow on this space must give a density on
CP(N−1): either a U(1)-equivariant map with a phase-invariant density, or a density on S^{2N−1}
that is the CP(N−1) one times the uniform density of the phase (not implemented here).

Convention ``quartic`` (params ``beta``, ``n`` = N):

    S = −βN Σ_x Σ_μ |z̄_x·z_{x+μ}|²                    (z̄·w = Σ_a conj(z^a) w^a; no constant)

Other conventions in the literature, converted to this β:

* S = −(N/g) Σ |z̄_x·z_{x+μ}|²: β = 1/g (the same action).
* The projector form −βN Σ Tr(P_x P_{x+μ}) with P_x = z_x z̄_x is the same action; with the traceless
  P_x = z_x z̄_x − 1/N it differs by the constant βN·dV/N; the "gradient" form
  (βN/2) Σ ‖P_x − P_{x+μ}‖² = βN Σ (1 − |z̄_x·z_{x+μ}|²) by the constant −βN·dV. Constants change no
  expectation value.
* S = −β' Σ |z̄_x·z_{x+μ}|² (no N): β = β'/N.
* CP(1) is the O(3) model exactly: with s^a = z̄ σ^a z, |z̄_x·z_y|² = (1 + s_x·s_y)/2, so
  S_CP(1)(β) = −β Σ s_x·s_{x+μ} − β·dV, the O(3) action at the same β (tested against the cluster
  algorithm for O(3)).
* The auxiliary-U(1) form S = −Nβ_g Σ_{x,μ} (λ_{x,μ} z̄_{x+μ}·z_x + c.c.) with U(1) links λ (the form
  of Campostrini, Rossi & Vicari, PRD 46 (1992) 2647 and 4643, and, with Symanzik improvement, of
  the Pisa group's later CP(N−1) topology studies) is a different lattice action: integrating λ
  out gives −Σ log I_0(2Nβ_g |z̄_x·z_{x+μ}|), not the quartic form. Both have the continuum action
  (N/g)∫|D_μ z|² at tree level with β = β_g = 1/g, so the two agree only to leading order in 1/β
  (their Λ parameters differ); there is no exact conversion. The same papers also simulate the
  quartic action in this normalisation (−Nβ Σ |z̄_{x+μ}·z_x|²). These literature normalisations are
  quoted from memory: the papers' texts could not be read here (only abstracts were reachable), so
  check them before taking published numbers at a given β; the flow papers' CP(N−1) conventions
  could not be checked either.

Force: with w_{x,μ} = z̄_x·z_{x+μ}, the gradient ∂S/∂Re z_x + i ∂S/∂Im z_x
= −2βN Σ_μ [z_{x+μ} conj(w_{x,μ}) + z_{x−μ} w_{x−μ,μ}], projected horizontally, F − z (z̄·F).

Per-configuration observables (shape (B,) each), V sites, d = 2, P_x = z_x z̄_x − 1/N:

* ``energy`` (1/dV) Σ_{x,μ} |z̄_x·z_{x+μ}|² ∈ [0, 1]; ``action_density`` S/V = −dβN·energy;
* ``chi_m`` (1/V) Σ_{x,y} Tr P_x P_y = ‖Σ_x P_x‖²_F / V (so <chi_m> = χ_m, the susceptibility of
  the gauge-invariant order parameter P);
* ``g_pmin`` (1/dV) Σ_μ ‖Σ_x P_x e^{i p_min x_μ}‖²_F, p_min = 2π/L; derived ``xi2nd`` from chi_m and
  g_pmin as for φ⁴ and O(N);
* ``topological_charge`` Q = (1/2π) Σ_plaquettes arg(w_{x,0} w_{x+0̂,1} conj(w_{x+1̂,0}) conj(w_{x,1})),
  arg in (−π, π]: the phase of the product of z̄·z around the plaquette x → x+0̂ → x+0̂+1̂ → x+1̂ → x.
  It is gauge invariant, an integer on every configuration (the link phases arg w cancel in the sum
  of the unwrapped plaquette angles; undefined only where some w vanishes) and odd under any
  reflection of the lattice; its orientation makes z = (1, w)/√(1 + |w|²) with w = (x_0 + i x_1)/ρ
  a charge +1 instanton, the same sign as the O(3) charge of its image s = z̄ σ z. ``chi_t`` Q²/V.

Registered as theory ``cpn``: headline observable ``chi_m`` (Q is frozen at large β, so its
estimates are the ones samplers disagree on most, but chi_m is defined and well measured for every
sampler; the topology section is a report figure), history figures of χ_m, Q and the energy; no
exact solver.
"""

from __future__ import annotations

import math

import torch

from suite.fields import ProjectiveSpace, wrap_angle
from suite.lattice import shift
from suite.theories.base import Theory, check_coupling, integer_parameter
from suite.theories.on import fourier_mode_power, stereographic_field, xi2nd_quantity
from suite.theories.registry import TheoryInfo, register_theory

CONVENTIONS = ("quartic",)


def link_overlaps(z: torch.Tensor, mu: int) -> torch.Tensor:
    """w_{x,μ} = z̄_x·z_{x+μ}, shape (B, *lattice), complex."""
    return (z.conj() * shift(z, mu)).sum(-1)


class CPNModel(Theory):
    """CP(N−1) with S = −βN Σ |z̄_x·z_{x+μ}|²; ``CPNModel(lattice, beta, n)`` or `from_convention`."""

    def __init__(self, lattice, beta: float, n: int, params: dict | None = None):
        self.lattice = tuple(int(k) for k in lattice)
        if len(self.lattice) != 2:
            raise ValueError(f"CP(N-1) is implemented in two dimensions only, got lattice {list(self.lattice)}")
        if min(self.lattice) < 2:
            raise ValueError(f"lattice extents must be >= 2, got {list(self.lattice)}")
        self.n = integer_parameter(n, "N", 2)
        self.beta = check_coupling(beta)
        self.params = params if params is not None else {"beta": self.beta, "n": self.n}
        self.field = ProjectiveSpace((*self.lattice, self.n))

    @classmethod
    def from_convention(cls, convention: str, lattice, **params) -> "CPNModel":
        """Build from ``quartic`` (S = −βN Σ |z̄_x·z_{x+μ}|²) with params ``beta`` and ``n`` (= N)."""
        if convention != "quartic":
            raise ValueError(f"unknown cpn convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        unknown = sorted(set(params) - {"beta", "n"})
        if unknown or "beta" not in params or "n" not in params:
            raise ValueError(f"the cpn convention 'quartic' takes beta and n, got {sorted(params)}")
        return cls(lattice, params["beta"], params["n"], params={"convention": "quartic", **params})

    # -- action and force -------------------------------------------------------------------

    def link_sum(self, z: torch.Tensor) -> torch.Tensor:
        """Σ_{x,μ} |z̄_x·z_{x+μ}|² per configuration, shape (B,), real."""
        total = None
        for mu in range(2):
            w = link_overlaps(z, mu)
            term = (w.real.pow(2) + w.imag.pow(2)).sum((1, 2))
            total = term if total is None else total + term
        return total

    def action(self, z):
        return -self.beta * self.n * self.link_sum(z)

    def force(self, z):
        """The horizontal gradient (module docstring)."""
        grad = None
        for mu in range(2):
            w = link_overlaps(z, mu)[..., None]
            term = shift(z, mu) * w.conj() + shift(z * w, mu, -1)  # z_{x+μ} conj(w_x) + z_{x−μ} w_{x−μ}
            grad = term if grad is None else grad + term
        return self.field.project(z, (-2 * self.beta * self.n) * grad)

    # -- observables ------------------------------------------------------------------------

    def projectors(self, z: torch.Tensor) -> torch.Tensor:
        """P_x = z_x z̄_x − 1/N, shape (B, *lattice, N, N)."""
        eye = torch.eye(self.n, dtype=z.dtype, device=z.device)
        return z[..., :, None] * z.conj()[..., None, :] - eye / self.n

    def topological_charge(self, z: torch.Tensor) -> torch.Tensor:
        """Q = (1/2π) Σ_P arg Π_P (module docstring), shape (B,)."""
        w0, w1 = link_overlaps(z, 0), link_overlaps(z, 1)
        loop = w0 * shift(w1, 0) * shift(w0, 1).conj() * w1.conj()
        return wrap_angle(torch.angle(loop)).sum((1, 2)) / (2 * math.pi)

    def observables(self, z):
        volume = self.volume
        energy = self.link_sum(z) / (2 * volume)
        p = self.projectors(z)
        total = p.sum((1, 2))
        charge = self.topological_charge(z)
        return {
            "energy": energy,
            "action_density": -2 * self.beta * self.n * energy,
            "chi_m": (total.real.pow(2) + total.imag.pow(2)).sum((1, 2)) / volume,
            "g_pmin": fourier_mode_power(p, self.lattice) / volume,
            "topological_charge": charge,
            "chi_t": charge**2 / volume,
        }

    def derived_quantities(self):
        return xi2nd_quantity(self.lattice, "chi_m and G(p_min) of the projector P")


def random_unitary(n: int, *, generator=None, dtype=torch.complex128) -> torch.Tensor:
    """A Haar-random N×N unitary (QR of a complex Gaussian matrix with the phase fix)."""
    real = torch.randn((2, n, n), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(torch.complex(real[0], real[1]).to(dtype))
    d = torch.diagonal(r)
    return q * (d / d.abs())


def instanton_configuration(lattice, n: int, rho: float = 2.0, centre=None, anti: bool = False,
                            dtype=torch.complex128) -> torch.Tensor:
    """A CP(N−1) configuration (batch 1) of charge +1 (−1 if ``anti``): z = (1, w, 0, ...)/√(1 + |w|²) with
    w = (x − c)/ρ (x as x_0 + i x_1; its conjugate if ``anti``), the CP(1) instanton embedded in CP(N−1)."""
    centre = centre if centre is not None else [(k - 1) / 2 + 0.25 for k in lattice]
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    w = stereographic_field(lattice, centre, rho, anti, real).to(dtype)
    z = torch.zeros((*w.shape, n), dtype=dtype)
    z[..., 0] = 1
    z[..., 1] = w
    return (z / (1 + w.abs() ** 2).sqrt()[..., None])[None]


def to_o3(z: torch.Tensor) -> torch.Tensor:
    """The O(3) spins s^a = z̄ σ^a z of CP(1) fields (B, *lattice, 2), shape (B, *lattice, 3), real."""
    if z.shape[-1] != 2:
        raise ValueError(f"the map to O(3) is for CP(1), N = 2; got N = {z.shape[-1]}")
    a, b = z[..., 0], z[..., 1]
    cross = a.conj() * b
    return torch.stack((2 * cross.real, 2 * cross.imag, a.abs() ** 2 - b.abs() ** 2), -1)


register_theory(TheoryInfo(
    name="cpn",
    build=CPNModel.from_convention,
    conventions=CONVENTIONS,
    headline_observable="chi_m",
    figure_observables=("chi_m", "topological_charge", "energy"),
))
