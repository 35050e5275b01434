"""Real scalar φ⁴ theory on a periodic hypercubic lattice in d dimensions.

Canonical internal form (one form; every source convention is converted to it exactly,
with the field in the source's own normalisation so that published values compare directly):

    S(φ) = Σ_x [ −J Σ_mu φ_x φ_{x+mu} + A φ_x² + B φ_x⁴ + C ]

Source conventions, and their (J, A, B, C):

* ``lecture``  (flow lectures):      Σ_x [ ½Σ_mu (φ_{x+mu} − φ_x)² + ½ m² φ² + λ/4! φ⁴ ]
                                      J = 1,  A = d + m²/2, B = λ/24, C = 0
* ``albergo``  (Albergo et al. 2019, 2021 tutorial):
                                      Σ_x [ Σ_mu (φ_{x+mu} − φ_x)² + m² φ² + λ φ⁴ ]
                                      J = 2,  A = 2d + m²,  B = λ,    C = 0
* ``hopping``  (hopping-parameter form):
                                      Σ_x [ −2κ Σ_mu φ_x φ_{x+mu} + φ² + λ (φ² − 1)² ]
                                      J = 2κ, A = 1 − 2λ,   B = λ,    C = λ

Per-configuration observables (shape (B,) each), V = number of sites, M = Σ_x φ_x:
``mag`` M/V; ``abs_mag`` |M|/V; ``chi2`` M²/V (so <chi2> = χ₂ = Σ_x G_c(x), as <φ> = 0 at
finite volume); ``phi2`` Σφ²/V; ``e_ising`` (1/dV) Σ_x Σ_mu φ_x φ_{x+mu} (Ising energy);
``action_density`` S/V; ``g_pmin`` (1/dV) Σ_mu |φ̃(p_min e_mu)|² with p_min = 2π/L;
``corr_t`` for t = 0..L/2 the zero-momentum time-slice correlator
C(t) = (1/V) Σ_τ S_τ S_{τ+t} (time = lattice axis 0, S_τ = Σ of φ over the slice τ), Σ_t C(t) = χ₂.

Ensemble-level (derived, errors propagated): ``xi2nd`` second-moment correlation length
ξ² = (χ₂/G̃(p_min) − 1) / (4 sin²(π/L)); ``m_pole`` the pole mass, the mean over
t = 1..L/2−1 of the effective mass arccosh[(C(t−1) + C(t+1)) / (2 C(t))].

Registered (`suite.theories.registry`) as theory ``phi4``: exact solver ``free-scalar``
(`suite.exact.free_scalar`, λ = 0 only), headline observable ``chi2``, history figures of
``chi2``, ``abs_mag``, ``action_density``; ``lftbench calibrate`` stores ξ_2nd, χ₂, |M|, E_Ising,
S/V and m_pole as computed references.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from suite.fields import EuclideanSpace
from suite.lattice import add_shifted_, shift
from suite.theories.base import DerivedQuantity, Theory
from suite.theories.registry import ExactSolver, TheoryInfo, lazy, register_theory

CONVENTIONS = ("lecture", "albergo", "hopping")


class Phi4(Theory):
    """φ⁴ in the canonical form above; build it with `from_convention` or a ``from_*`` constructor."""

    def __init__(self, lattice, J: float, A: float, B: float, C: float = 0.0, params: dict | None = None):
        self.lattice = tuple(int(n) for n in lattice)
        if not self.lattice or min(self.lattice) < 2:
            raise ValueError(f"lattice extents must be >= 2, got {list(self.lattice)}")
        self.J, self.A, self.B, self.C = float(J), float(A), float(B), float(C)
        if self.B < 0:
            raise ValueError(f"quartic coupling must be >= 0 (action unbounded below), got B = {self.B}")
        self.params = params if params is not None else {"J": self.J, "A": self.A, "B": self.B, "C": self.C}
        self.field = EuclideanSpace(self.lattice)

    @property
    def dim(self) -> int:
        return len(self.lattice)

    @classmethod
    def from_lecture(cls, lattice, m2: float, lam: float) -> "Phi4":
        d = len(lattice)
        return cls(lattice, J=1.0, A=d + m2 / 2, B=lam / 24, params={"convention": "lecture", "m2": m2, "lam": lam})

    @classmethod
    def from_albergo(cls, lattice, m2: float, lam: float) -> "Phi4":
        d = len(lattice)
        return cls(lattice, J=2.0, A=2 * d + m2, B=lam, params={"convention": "albergo", "m2": m2, "lam": lam})

    @classmethod
    def from_hopping(cls, lattice, kappa: float, lam: float) -> "Phi4":
        return cls(lattice, J=2 * kappa, A=1 - 2 * lam, B=lam, C=lam,
                   params={"convention": "hopping", "kappa": kappa, "lam": lam})

    @classmethod
    def from_convention(cls, convention: str, lattice, **params) -> "Phi4":
        """Build from a source convention name and its parameters (m2, lam or kappa, lam)."""
        constructors = {"lecture": cls.from_lecture, "albergo": cls.from_albergo, "hopping": cls.from_hopping}
        if convention not in constructors:
            raise ValueError(f"unknown phi4 convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        return constructors[convention](lattice, **params)

    def _neighbour_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_mu φ_{x+mu}, shape of x; one new tensor."""
        total = shift(x, 0, 1)
        for mu in range(1, self.dim):
            add_shifted_(total, x, mu, 1)
        return total

    def _add_neighbours_(self, out: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
        """out += alpha Σ_mu (φ_{x+mu} + φ_{x−mu}), in place; returns out."""
        for mu in range(self.dim):
            for step in (1, -1):
                add_shifted_(out, x, mu, step, alpha)
        return out

    def _onsite_factor(self, x: torch.Tensor) -> torch.Tensor:
        """2A + 4B φ², the on-site part of the force over φ (a new tensor)."""
        return torch.addcmul(x.new_tensor(2 * self.A), x, x, value=4 * self.B)

    def action(self, x):
        dims = tuple(range(1, x.dim()))
        x2 = x * x
        density = x2.mul(self.B).add_(self.A).mul_(x2)           # A φ² + B φ⁴
        density.addcmul_(x, self._neighbour_sum(x), value=-self.J)
        return density.sum(dims) + self.C * self.volume

    def force(self, x):
        """dS/dφ_x = −J Σ_mu (φ_{x+mu} + φ_{x−mu}) + 2A φ_x + 4B φ_x³ (in place on fresh tensors)."""
        return self._add_neighbours_(self._onsite_factor(x).mul_(x), x, -self.J)

    def kick(self, x, p, eps):
        """p ← p − eps·F(x) without a force tensor: p −= eps φ (2A + 4B φ²), then p += eps J φ_{x±mu}
        slice by slice (`add_shifted_`), one pass over p per term."""
        p.addcmul_(self._onsite_factor(x), x, value=-eps)
        return self._add_neighbours_(p, x, eps * self.J)

    def time_slice_correlator(self, x: torch.Tensor) -> torch.Tensor:
        """C(t) = (1/V) Σ_τ S_τ S_{τ+t} for t = 0..L_0−1, shape (B, L_0)."""
        slices = x.flatten(2).sum(-1) if x.dim() > 2 else x
        ft = torch.fft.fft(slices, dim=1)
        return torch.fft.ifft(ft * ft.conj(), dim=1).real / self.volume

    def sectors(self):
        """The two signs of the magnetisation, each of probability ½ by the Z₂ symmetry φ → −φ."""
        from suite.modes import Sectors

        return Sectors("mag", np.array([-1, 1]), np.array([0.5, 0.5]), "exact: Z2 symmetry",
                       assign=_sign_sector)

    def observables(self, x):
        volume, d = self.volume, self.dim
        dims = tuple(range(1, x.dim()))
        magnetisation = x.sum(dims)
        g_pmin = torch.zeros_like(magnetisation)
        for mu in range(d):
            other = tuple(a for a in dims if a != mu + 1)
            profile = x.sum(other) if other else x
            g_pmin = g_pmin + torch.fft.fft(profile, dim=1)[:, 1].abs().pow(2)
        obs = {
            "mag": magnetisation / volume,
            "abs_mag": magnetisation.abs() / volume,
            "chi2": magnetisation**2 / volume,
            "phi2": (x * x).sum(dims) / volume,
            "e_ising": (x * self._neighbour_sum(x)).sum(dims) / (d * volume),
            "action_density": self.action(x) / volume,
            "g_pmin": g_pmin / (d * volume),
        }
        corr = self.time_slice_correlator(x)
        for t in range(self.lattice[0] // 2 + 1):
            obs[f"corr_{t}"] = corr[:, t]
        return obs

    def derived_quantities(self):
        length = self.lattice[0]
        derived = {
            "m_pole": DerivedQuantity(
                function=lambda *c: effective_mass_average(np.asarray(c)),
                inputs=tuple(f"corr_{t}" for t in range(length // 2 + 1)),
                description="pole mass: mean effective mass over t = 1..L/2-1",
            )
        }
        if len(set(self.lattice)) == 1:
            derived["xi2nd"] = DerivedQuantity(
                function=lambda chi2, g: second_moment_correlation_length(chi2, g, length),
                inputs=("chi2", "g_pmin"),
                description="second-moment correlation length",
            )
        return derived


def _sign_sector(magnetisation: np.ndarray) -> np.ndarray:
    """+1 for M > 0, −1 otherwise (M = 0 exactly has probability zero)."""
    return np.where(np.asarray(magnetisation) > 0, 1, -1)


def second_moment_correlation_length(chi2: float, g_pmin: float, length: int) -> float:
    """ξ_2nd = sqrt((χ₂/G̃(p_min) − 1) / (4 sin²(π/L))); NaN where the argument is negative."""
    arg = (chi2 / g_pmin - 1) / (4 * math.sin(math.pi / length) ** 2)
    return math.sqrt(arg) if arg >= 0 else float("nan")


def effective_mass_average(corr: np.ndarray) -> float:
    """Mean over t = 1..T−2 of arccosh[(C(t−1) + C(t+1)) / (2 C(t))] for C given at t = 0..T−1 (T = L/2+1)."""
    ratio = (corr[:-2] + corr[2:]) / (2 * corr[1:-1])
    with np.errstate(invalid="ignore"):
        return float(np.mean(np.arccosh(ratio)))


register_theory(TheoryInfo(
    name="phi4",
    build=Phi4.from_convention,
    conventions=CONVENTIONS,
    headline_observable="chi2",
    figure_observables=("chi2", "abs_mag", "action_density"),
    exact={"free-scalar": ExactSolver(lazy("suite.exact.free_scalar:free_scalar_exact"),
                                      "exact: free-field lattice propagator")},
    reference_observables=("xi2nd", "chi2", "abs_mag", "e_ising", "action_density", "m_pole"),
))
