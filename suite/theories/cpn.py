"""The CP(N−1) model in two dimensions, quartic or auxiliary-U(1) lattice action, periodic lattice.

Fields z_x ∈ C^N with |z_x| = 1, modulo a phase on every site, stored as complex ``(B, L0, L1, N)``;
the field space is `suite.fields.ProjectiveSpace` (representatives on S^{2N−1}, uniform prior; HMC
momenta horizontal, i.e. with the phase direction i z projected out, so HMC runs on CP(N−1)
itself and never moves the pure-gauge phases). A flow on this space must give a density on
CP(N−1): either a U(1)-equivariant map with a phase-invariant density, or a density on S^{2N−1}
that is the CP(N−1) one times the uniform density of the phase (not implemented here).

Both conventions take params ``beta`` and ``n`` = N and are a sum over links of a function of
|w_{x,μ}|, w_{x,μ} = z̄_x·z_{x+μ} (z̄·w = Σ_a conj(z^a) w^a), with no constant:

Convention ``quartic``:

    S = −βN Σ_x Σ_μ |w_{x,μ}|²

Convention ``auxiliary`` (the auxiliary-U(1) action with its link field integrated out):

    S_joint(z, λ) = −Nβ Σ_{x,μ} (λ_{x,μ} z̄_{x+μ}·z_x + c.c.) = −2Nβ Σ_{x,μ} Re(λ_{x,μ} conj(w_{x,μ})),
    λ_{x,μ} ∈ U(1) on the links, and the sampled field is z alone, with the exact marginal
    S(z) = −Σ_{x,μ} log I_0(2Nβ |w_{x,μ}|).

  Exact because for every link ∫_0^{2π} dθ/2π exp(2Nβ Re(e^{iθ} c)) = I_0(2Nβ|c|) (shift θ by arg c;
  I_0(a) = (1/2π)∫ e^{a cos θ} dθ), and the links' integrals factorise. So e^{−S(z)} is the joint
  weight integrated over the λ with the Haar measure dλ/2π of total mass one, and the expectation of
  any observable of z alone is the same in the joint (z, λ) model and in this one; the λ-normalisation
  only adds the constant 2V log 2π to log Z if λ is measured with dθ instead. Given z, the λ are
  independent, λ_{x,μ} = e^{iθ} with θ von Mises with mean direction arg w_{x,μ} and concentration
  2Nβ|w_{x,μ}| (the heat bath of `reference.cpn_auxiliary`, which samples the joint model and is the
  independent check of this marginal). This is the form of Campostrini, Rossi & Vicari (PRD 46
  (1992) 2647 and 4643); at N = 10 its energy is smooth in β (the scan in `suite/catalogue/cpn.toml`),
  where the quartic action has a first-order transition near β ≈ 1.0–1.1. log I_0(y) = log i0e(y) + y
  (torch.special.i0e, e^{−y} I_0(y)) is stable for every y ≥ 0. Observables and their definitions
  are the same for both conventions (below); the geometric Q is that of z: a λ-based charge
  (1/2π) Σ_P arg Π_P λ is not available since λ is not sampled.

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
* The auxiliary-U(1) form (convention ``auxiliary``, with Symanzik improvement also the form of the
  Pisa group's later CP(N−1) topology studies, which this suite does not implement) is a different
  lattice action from the quartic one: both have the continuum action (N/g)∫|D_μ z|² at tree level
  with β = 1/g (near |w| = 1, −log I_0(2Nβ|w|) = −2Nβ|w| + ½ log(4πNβ|w|) + O(1/β) and
  −2Nβ|w| = −Nβ|w|² − Nβ + O(β(1 − |w|²)²)), so the two agree only to leading order in 1/β (their
  Λ parameters differ); there is no exact conversion. At small β, −log I_0(2Nβ|w|) = −(Nβ)²|w|² +
  O(β⁴): the auxiliary action at β is close to the quartic one at β_quartic = Nβ², much weaker. The
  same papers also simulate the quartic action in this normalisation (−Nβ Σ |z̄_{x+μ}·z_x|²). These
  literature normalisations are quoted from memory: the papers' texts could not be read here (only
  abstracts were reachable), so check them before taking published numbers at a given β; the flow
  papers' CP(N−1) conventions could not be checked either.

Force: both actions are S = Σ_{x,μ} g(|w_{x,μ}|²). With ∂/∂Re z + i ∂/∂Im z = 2 ∂/∂z̄ and
∂w_{x,μ}/∂z̄_x = z_{x+μ}, ∂conj(w_{x−μ,μ})/∂z̄_x = z_{x−μ}, the gradient is

    F_x = 2 Σ_μ [g'(|w_{x,μ}|²) z_{x+μ} conj(w_{x,μ}) + g'(|w_{x−μ,μ}|²) z_{x−μ} w_{x−μ,μ}],

projected horizontally, F − z (z̄·F). Written g'(|w|²) = −βN a(|w|): quartic a = 1, i.e.
F_x = −2βN Σ_μ [z_{x+μ} conj(w_{x,μ}) + z_{x−μ} w_{x−μ,μ}]; auxiliary, with y = 2Nβ|w|,
g(u) = −log I_0(2Nβ√u), g'(u) = −Nβ (I_1/I_0)(y)/|w|, so

    a(|w|) = (I_1/I_0)(2Nβ|w|) / |w| = 2Nβ h(y),   h(y) = I_1(y)/(y I_0(y)) = i1e(y)/(y i0e(y)),

the derivative of log I_0(2Nβ|w|) with respect to z̄_x being Nβ (I_1/I_0)(y) z_{x+μ} conj(w)/|w|.
The factor w/|w| is not defined at w = 0, but h is even and analytic, h(y) = ½ − y²/16 + y⁴/96 −
O(y⁶) (I_1(y)/y and I_0(y) are power series in y² with I_0 ≥ 1), so a is smooth and finite, a(0) = Nβ:
g(u) is analytic in u = |w|², and a link with w = 0 adds 0 to the force (its term is ∝ w).
`bessel_ratio_over_argument` evaluates h by the series below y = 1e−3 (truncation error < 1e−19)
and by i1e/(y i0e) above, so the force has no 0/0 and is NaN-free at w = 0 (tested against
autograd there). In the action the modulus is w.abs(), whose autograd derivative is 0 at w = 0
(the true one of log I_0(2Nβ|w|) ~ (Nβ|w|)²), so the autograd force is NaN-free there too.

Per-configuration observables (shape (B,) each), V sites, d = 2, P_x = z_x z̄_x − 1/N:

* ``energy`` (1/dV) Σ_{x,μ} |z̄_x·z_{x+μ}|² ∈ [0, 1] in both conventions (the same observable of z,
  so energies at different β and conventions are comparable; for ``auxiliary`` it is not the
  auxiliary model's link energy ⟨Re λ conj(w)⟩ = ⟨|w| (I_1/I_0)(2Nβ|w|)⟩); ``action_density`` S/V of
  the convention's action: −dβN·energy for ``quartic``, −(1/V) Σ log I_0(2Nβ|w|) for ``auxiliary``;
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
from suite.theories.registry import TheoryInfo, lazy, register_theory

CONVENTIONS = ("quartic", "auxiliary")

SERIES_BELOW = 1e-3  # h(y) by its series below this argument (module docstring)


def link_overlaps(z: torch.Tensor, mu: int) -> torch.Tensor:
    """w_{x,μ} = z̄_x·z_{x+μ}, shape (B, *lattice), complex."""
    return (z.conj() * shift(z, mu)).sum(-1)


def log_bessel_i0(y: torch.Tensor) -> torch.Tensor:
    """log I_0(y) for real y >= 0, as log i0e(y) + y: no overflow for large y; its absolute error is a few
    ulp of max(1, y) (at small y, where log I_0(y) ≈ y²/4, the relative error is larger, which no sum
    over links of O(1) terms sees)."""
    return torch.log(torch.special.i0e(y)) + y


def bessel_ratio_over_argument(y: torch.Tensor) -> torch.Tensor:
    """h(y) = I_1(y)/(y I_0(y)) for real y >= 0: smooth and even, ½ at y = 0 (module docstring)."""
    small = y < SERIES_BELOW
    safe = torch.where(small, torch.ones_like(y), y)
    direct = torch.special.i1e(safe) / (safe * torch.special.i0e(safe))
    y2 = y * y
    series = 0.5 - y2 / 16 + y2 * y2 / 96
    return torch.where(small, series, direct)


class CPNModel(Theory):
    """CP(N−1), quartic S = −βN Σ |z̄_x·z_{x+μ}|² or auxiliary S = −Σ log I_0(2Nβ|z̄_x·z_{x+μ}|);
    ``CPNModel(lattice, beta, n, convention=...)`` or `from_convention`."""

    def __init__(self, lattice, beta: float, n: int, params: dict | None = None, *, convention: str = "quartic"):
        self.lattice = tuple(int(k) for k in lattice)
        if len(self.lattice) != 2:
            raise ValueError(f"CP(N-1) is implemented in two dimensions only, got lattice {list(self.lattice)}")
        if min(self.lattice) < 2:
            raise ValueError(f"lattice extents must be >= 2, got {list(self.lattice)}")
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown cpn convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        self.convention = convention
        self.n = integer_parameter(n, "N", 2)
        self.beta = check_coupling(beta)
        self.params = params if params is not None else {"beta": self.beta, "n": self.n}
        self.field = ProjectiveSpace((*self.lattice, self.n))

    @classmethod
    def from_convention(cls, convention: str, lattice, **params) -> "CPNModel":
        """Build from ``quartic`` (S = −βN Σ |w|²) or ``auxiliary`` (S = −Σ log I_0(2Nβ|w|)), both with
        params ``beta`` and ``n`` (= N)."""
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown cpn convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        unknown = sorted(set(params) - {"beta", "n"})
        if unknown or "beta" not in params or "n" not in params:
            raise ValueError(f"the cpn convention {convention!r} takes beta and n, got {sorted(params)}")
        return cls(lattice, params["beta"], params["n"], params={"convention": convention, **params},
                   convention=convention)

    # -- action and force -------------------------------------------------------------------

    def link_sum(self, z: torch.Tensor) -> torch.Tensor:
        """Σ_{x,μ} |z̄_x·z_{x+μ}|² per configuration, shape (B,), real."""
        total = None
        for mu in range(2):
            w = link_overlaps(z, mu)
            term = (w.real.pow(2) + w.imag.pow(2)).sum((1, 2))
            total = term if total is None else total + term
        return total

    def link_action(self, w: torch.Tensor) -> torch.Tensor:
        """The action g(|w|²) of each link from its overlap w, shape of w, real."""
        if self.convention == "quartic":
            return -self.beta * self.n * (w.real.pow(2) + w.imag.pow(2))
        return -log_bessel_i0((2 * self.beta * self.n) * w.abs())

    def link_weight(self, w: torch.Tensor):
        """a(|w|) = g'(|w|²)/(−βN) of each link (module docstring): 1 for quartic (returned as None),
        (I_1/I_0)(2Nβ|w|)/|w| for auxiliary, finite at w = 0."""
        if self.convention == "quartic":
            return None
        kappa = 2 * self.beta * self.n
        return kappa * bessel_ratio_over_argument(kappa * w.abs())

    def action(self, z):
        if self.convention == "quartic":
            return -self.beta * self.n * self.link_sum(z)
        return sum(self.link_action(link_overlaps(z, mu)).sum((1, 2)) for mu in range(2))

    def force(self, z):
        """The horizontal gradient (module docstring)."""
        grad = None
        for mu in range(2):
            w = link_overlaps(z, mu)
            a = self.link_weight(w)
            w = (w if a is None else a * w)[..., None]
            term = shift(z, mu) * w.conj() + shift(z * w, mu, -1)  # a (z_{x+μ} conj(w_x)) + a_{x−μ} z_{x−μ} w_{x−μ}
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
            "action_density": (-2 * self.beta * self.n * energy if self.convention == "quartic"
                               else self.action(z) / volume),
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
    reference_observables=("xi2nd", "chi_m", "energy", "chi_t"),
    report_sections=(lazy("suite.report.freezing:freezing_section"),),
))
