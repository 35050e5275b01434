"""The O(N) non-linear sigma model on a periodic hypercubic lattice (catalogue: N = 3, d = 2).

Spins s_x ∈ S^{N−1} ⊂ R^N (unit vectors), stored as ``(B, *lattice, N)``; the field space is the
sphere (`suite.fields.SphereSpace`, uniform prior). Convention ``standard`` (params ``beta``, ``n``):

* action  S = −β Σ_x Σ_μ s_x·s_{x+μ}   (each link once; no additive constant)
* force   the gradient ∂S/∂s_x = −β Σ_μ (s_{x+μ} + s_{x−μ}) projected onto the tangent space,
          F_x = g_x − (s_x·g_x) s_x
* the Wolff cluster algorithm (`reference.cluster`) samples this action directly.

Per-configuration observables (shape (B,) each), V sites, d dimensions, M = Σ_x s_x (a vector):
``energy`` (1/dV) Σ_{x,μ} s_x·s_{x+μ} (the mean link energy, in [−1, 1]); ``action_density`` S/V
= −dβ·energy; ``chi_m`` |M|²/V (so <chi_m> = χ_m = (1/V) Σ_{x,y} <s_x·s_y>); ``g_pmin``
(1/dV) Σ_μ |Σ_x s_x e^{i p_min x_μ}|² with p_min = 2π/L, the susceptibility at the lowest
non-zero momentum averaged over directions. For N = 3 and d = 2 also the geometric topological
charge of Berg & Lüscher (Nucl. Phys. B190 (1981) 412): every plaquette with corners
s1 = s(x), s2 = s(x+0̂), s3 = s(x+0̂+1̂), s4 = s(x+1̂) is cut along the diagonal s1–s3 into the
triangles (s1, s2, s3) and (s1, s3, s4), each with the signed solid angle of the spherical triangle,

    Ω(a, b, c) = 2 atan2(a·(b×c), 1 + a·b + b·c + c·a) ∈ (−2π, 2π],

and ``topological_charge`` Q = (1/4π) Σ Ω, an integer on every configuration (to round-off; the
exceptional configurations where a numerator and denominator vanish together have measure zero);
``chi_t`` Q²/V (so <chi_t> = χ_t = <Q²>/V). Q is invariant under rotations (SO(3)) and changes sign
under an improper O(3) transformation and under a reflection of the lattice that maps the
triangulation onto itself (the exchange of the axes); the orientation is fixed by the stereographic
instanton s = (2 Re w, 2 Im w, 1 − |w|²)/(1 + |w|²) of w = (x_0 + i x_1)/ρ having Q = +1
(`instanton_configuration`).

Ensemble-level (derived): ``xi2nd`` the second-moment correlation length
ξ² = (χ_m/G̃(p_min) − 1) / (4 sin²(π/L)) from ``chi_m`` and ``g_pmin`` (as for φ⁴).

Registered (`suite.theories.registry`) as theory ``on``: headline observable ``chi_m``; history
figures of χ_m, the energy and Q; no exact solver.
"""

from __future__ import annotations

import math

import torch

from suite.fields import SphereSpace
from suite.lattice import shift
from suite.theories.base import DerivedQuantity, Theory, check_coupling, integer_parameter
from suite.theories.phi4 import second_moment_correlation_length
from suite.theories.registry import TheoryInfo, lazy, register_theory

CONVENTIONS = ("standard",)


def solid_angle(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Signed solid angle of the spherical triangle (a, b, c) of unit 3-vectors (last axis), in (−2π, 2π]."""
    triple = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
    denominator = 1 + (a * b).sum(-1) + (b * c).sum(-1) + (c * a).sum(-1)
    return 2 * torch.atan2(triple, denominator)


def fourier_mode_power(x: torch.Tensor, lattice: tuple[int, ...]) -> torch.Tensor:
    """(1/d) Σ_μ Σ_components |Σ_x x_x e^{i 2π x_μ/L_μ}|² for a field ``(B, *lattice, *internal)``, shape (B,)."""
    d = len(lattice)
    total = None
    for mu in range(d):
        other = tuple(a for a in range(1, 1 + d) if a != 1 + mu)
        profile = x.sum(other) if other else x           # (B, L_mu, *internal)
        mode = torch.fft.fft(profile, dim=1)[:, 1]       # (B, *internal)
        power = (mode.real.pow(2) + mode.imag.pow(2))
        power = power.sum(tuple(range(1, power.dim()))) if power.dim() > 1 else power
        total = power if total is None else total + power
    return total / d


class ONModel(Theory):
    """O(N) sigma model with S = −β Σ_{x,μ} s_x·s_{x+μ}; ``ONModel(lattice, beta, n)`` or `from_convention`."""

    def __init__(self, lattice, beta: float, n: int = 3, params: dict | None = None):
        self.lattice = tuple(int(k) for k in lattice)
        if not self.lattice or min(self.lattice) < 2:
            raise ValueError(f"lattice extents must be >= 2, got {list(self.lattice)}")
        self.n = integer_parameter(n, "N", 2)
        self.beta = check_coupling(beta)
        self.params = params if params is not None else {"beta": self.beta, "n": self.n}
        self.field = SphereSpace((*self.lattice, self.n))

    @property
    def dim(self) -> int:
        return len(self.lattice)

    @property
    def has_topological_charge(self) -> bool:
        return self.n == 3 and self.dim == 2

    @classmethod
    def from_convention(cls, convention: str, lattice, **params) -> "ONModel":
        """Build from ``standard`` (S = −β Σ_{x,μ} s_x·s_{x+μ}) with params ``beta`` and ``n`` (default 3)."""
        if convention != "standard":
            raise ValueError(f"unknown on convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        unknown = sorted(set(params) - {"beta", "n"})
        if unknown:
            raise ValueError(f"unknown on parameter {unknown[0]!r}; expected beta and n")
        beta, n = params.get("beta"), params.get("n", 3)
        if beta is None:
            raise ValueError("the on convention 'standard' needs beta")
        return cls(lattice, beta, n, params={"convention": "standard", "beta": beta, "n": n})

    # -- action and force -------------------------------------------------------------------

    def link_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_{x,μ} s_x·s_{x+μ} per configuration, shape (B,)."""
        total = None
        for mu in range(self.dim):
            term = (x * shift(x, mu)).sum(-1)
            total = term if total is None else total + term
        return total.flatten(1).sum(1)

    def action(self, x):
        return -self.beta * self.link_sum(x)

    def force(self, x):
        """The tangent-space gradient −β[Σ_μ (s_{x+μ} + s_{x−μ}) − (s_x·Σ) s_x]."""
        neighbours = None
        for mu in range(self.dim):
            pair = shift(x, mu) + shift(x, mu, -1)
            neighbours = pair if neighbours is None else neighbours + pair
        return self.field.project(x, -self.beta * neighbours)

    # -- observables ------------------------------------------------------------------------

    def topological_charge(self, x: torch.Tensor) -> torch.Tensor:
        """Berg–Lüscher geometric charge Q (N = 3, d = 2 only), shape (B,)."""
        if not self.has_topological_charge:
            raise ValueError(f"the geometric charge is defined for N = 3 in two dimensions, not N = {self.n}, "
                             f"d = {self.dim}")
        s1, s2, s4 = x, shift(x, 0), shift(x, 1)
        s3 = shift(s2, 1)
        omega = solid_angle(s1, s2, s3) + solid_angle(s1, s3, s4)
        return omega.sum((1, 2)) / (4 * math.pi)

    def observables(self, x):
        volume, d = self.volume, self.dim
        magnetisation = x.sum(tuple(range(1, 1 + d)))  # (B, N)
        energy = self.link_sum(x) / (d * volume)
        obs = {
            "energy": energy,
            "action_density": -self.beta * d * energy,
            "chi_m": magnetisation.pow(2).sum(-1) / volume,
            "g_pmin": fourier_mode_power(x, self.lattice) / volume,
        }
        if self.has_topological_charge:
            charge = self.topological_charge(x)
            obs["topological_charge"] = charge
            obs["chi_t"] = charge**2 / volume
        return obs

    def derived_quantities(self):
        return xi2nd_quantity(self.lattice, "chi_m and G(p_min)")


def xi2nd_quantity(lattice, of: str) -> dict[str, DerivedQuantity]:
    """``xi2nd`` from the observables ``chi_m`` and ``g_pmin`` on a hypercubic lattice (none otherwise)."""
    if len(set(lattice)) != 1:
        return {}
    length = lattice[0]
    return {"xi2nd": DerivedQuantity(
        function=lambda chi, g: second_moment_correlation_length(chi, g, length),
        inputs=("chi_m", "g_pmin"),
        description=f"second-moment correlation length from {of}",
    )}


def random_rotation(n: int, *, generator=None, dtype=torch.float64, proper: bool = True) -> torch.Tensor:
    """A Haar-random orthogonal N×N matrix (QR of a Gaussian matrix with the sign fix); ``proper``: det = +1,
    otherwise det = −1."""
    q, r = torch.linalg.qr(torch.randn((n, n), generator=generator, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.linalg.det(q) > 0) != proper:
        q = q.clone()
        q[:, 0] = -q[:, 0]
    return q


def stereographic_field(lattice, centre, rho: float, anti: bool = False, dtype=torch.float64) -> torch.Tensor:
    """w(x) = ((x_0 − c_0) + i (x_1 − c_1))/ρ on every site (its conjugate if ``anti``), shape ``lattice``, complex."""
    grids = torch.meshgrid(*[torch.arange(k, dtype=dtype) for k in lattice], indexing="ij")
    w = torch.complex(grids[0] - centre[0], grids[1] - centre[1]) / rho
    return w.conj() if anti else w


def instanton_configuration(lattice, rho: float = 2.0, centre=None, anti: bool = False,
                            dtype=torch.float64) -> torch.Tensor:
    """An O(3) configuration (batch 1) of charge +1 (−1 if ``anti``): the inverse stereographic image
    s = (2 Re w, 2 Im w, 1 − |w|²)/(1 + |w|²) of w = (x − c)/ρ (x as x_0 + i x_1). For ρ well below L the
    spins near the boundary all point close to the south pole, so the periodic lattice sees one
    smooth instanton of size ρ."""
    centre = centre if centre is not None else [(k - 1) / 2 + 0.25 for k in lattice]
    w = stereographic_field(lattice, centre, rho, anti, dtype)
    a2 = w.real**2 + w.imag**2
    s = torch.stack((2 * w.real, 2 * w.imag, 1 - a2), -1) / (1 + a2)[..., None]
    return s[None]


register_theory(TheoryInfo(
    name="on",
    build=ONModel.from_convention,
    conventions=CONVENTIONS,
    headline_observable="chi_m",
    figure_observables=("chi_m", "energy", "topological_charge"),
    reference_observables=("xi2nd", "chi_m", "energy", "chi_t"),
    report_sections=(lazy("suite.report.freezing:freezing_section"),),
))
