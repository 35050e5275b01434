"""Compact U(1) gauge theory with the Wilson plaquette action on a periodic 2D lattice.

Two dimensions only (the plaquette, the charge and the Wilson loops below are written for d = 2).
Links are angles θ_μ(x) ∈ (−π, π], U_μ(x) = exp(i θ_μ(x)), stored as ``(B, 2, L0, L1)``
(μ = 0, 1 is axis 1; sites on axes 2, 3). The field space is the torus (`TorusSpace`).

* plaquette angle  θ_P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x)   (a real number, not wrapped)
* action (``wilson`` convention)  S = −β Σ_x cos θ_P(x)   (no additive constant)
* force  ∂S/∂θ_0(x) = β [sin θ_P(x) − sin θ_P(x−1̂)],
         ∂S/∂θ_1(x) = β [sin θ_P(x−0̂) − sin θ_P(x)]
* geometric topological charge  Q = (1/2π) Σ_x wrap(θ_P(x)), wrap into (−π, π]. As Σ_x θ_P = 0
  exactly on the torus, Q is an integer on every configuration (to round-off).

Per-configuration observables (shape (B,) each), V = L0·L1 sites (= plaquettes):
``plaquette`` (1/V) Σ_x cos θ_P; ``action_density`` S/V = −β·plaquette; ``topological_charge`` Q;
``q2`` Q²; ``chi_t`` Q²/V (so that <chi_t> = χ_t = <Q²>/V); ``wilson_R_T`` for
1 ≤ R ≤ T ≤ ``loop_extent`` = min(min(L0, L1)//2, 6): the mean over positions of cos of the
angle around an R×T rectangle, averaged over both orientations (R along axis 0 and T along
axis 1, and the transpose). The loop angle is the sum of
the link angles around the rectangle, which equals the sum of the (unwrapped) plaquette angles
inside it; extents are capped at 6 because larger loops are noise for any affordable statistics
(in infinite volume W(R,T) = (I_1(β)/I_0(β))^{RT} exactly) and each extra loop costs a
measurement on every configuration.

Ensemble-level (derived): ``creutz_R_T`` for 2 ≤ R ≤ T ≤ loop_extent, the Creutz ratio
χ(R,T) = −log[W(R,T) W(R−1,T−1) / (W(R,T−1) W(R−1,T))] (W symmetric in R, T); NaN (undefined)
where the argument is not positive. In infinite volume every Creutz ratio equals the string
tension −log(I_1(β)/I_0(β)).

Exact finite-volume values of all of these: `suite.exact.u1`.

Registered (`suite.theories.registry`) as theory ``u1``: exact solver ``u1-character-expansion``,
headline observable ``topological_charge``, history figures of Q, the plaquette and S/V, and the
report's topological-freezing section (`suite.report.topology`).
"""

from __future__ import annotations

import math

import torch

from suite.fields import TorusSpace, wrap_angle
from suite.lattice import shift
from suite.theories.base import Theory, creutz_ratios
from suite.theories.registry import ExactSolver, TheoryInfo, lazy, register_theory

CONVENTIONS = ("wilson",)
MAX_LOOP_EXTENT = 6


class U1(Theory):
    """2D compact U(1) with S = −β Σ_P cos θ_P; build it with ``U1(lattice, beta)`` or `from_convention`."""

    def __init__(self, lattice, beta: float, params: dict | None = None):
        self.lattice = tuple(int(n) for n in lattice)
        if len(self.lattice) != 2:
            raise ValueError(f"U(1) is implemented in two dimensions only, got lattice {list(self.lattice)}")
        if min(self.lattice) < 2:
            raise ValueError(f"lattice extents must be >= 2, got {list(self.lattice)}")
        self.beta = float(beta)
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be finite and >= 0, got {beta}")
        self.params = params if params is not None else {"beta": self.beta}
        self.field = TorusSpace((2, *self.lattice))
        self.loop_extent = max(1, min(min(self.lattice) // 2, MAX_LOOP_EXTENT))

    @classmethod
    def from_wilson(cls, lattice, beta: float) -> "U1":
        return cls(lattice, beta, params={"convention": "wilson", "beta": float(beta)})

    @classmethod
    def from_convention(cls, convention: str, lattice, **params) -> "U1":
        """Build from a source convention name (only ``wilson``: S = −β Σ_P cos θ_P) and its parameters."""
        if convention != "wilson":
            raise ValueError(f"unknown u1 convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        return cls.from_wilson(lattice, **params)

    # -- geometry ---------------------------------------------------------------------------

    @staticmethod
    def plaquette_angle(x: torch.Tensor) -> torch.Tensor:
        """θ_P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x), unwrapped, shape (B, L0, L1)."""
        t0, t1 = x[:, 0], x[:, 1]
        return t0 + shift(t1, 0) - shift(t0, 1) - t1

    def loop_angles(self, x: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """Angle around every a×b rectangle (a along axis 0, b along axis 1, corner at x), for
        1 ≤ a, b ≤ loop_extent: the sum of the plaquette angles inside, shape (B, L0, L1) each."""
        plaq = self.plaquette_angle(x)
        n = self.loop_extent
        strips, strip = [], torch.zeros_like(plaq)
        for a in range(n):
            strip = strip + shift(plaq, 0, a)
            strips.append(strip)  # Σ_{a' ≤ a} θ_P(x + a' 0̂)
        angles = {}
        for a, strip in enumerate(strips, start=1):
            rect = torch.zeros_like(plaq)
            for b in range(1, n + 1):
                rect = rect + shift(strip, 1, b - 1)
                angles[(a, b)] = rect
        return angles

    # -- action and force -------------------------------------------------------------------

    def action(self, x):
        return -self.beta * torch.cos(self.plaquette_angle(x)).sum((1, 2))

    def force(self, x):
        """∂S/∂θ_μ(x), analytically (see the module docstring)."""
        s = torch.sin(self.plaquette_angle(x))
        f0 = s - shift(s, 1, -1)
        f1 = shift(s, 0, -1) - s
        return self.beta * torch.stack((f0, f1), 1)

    # -- observables ------------------------------------------------------------------------

    def topological_charge(self, x: torch.Tensor) -> torch.Tensor:
        """Q = (1/2π) Σ_x wrap(θ_P(x)), shape (B,)."""
        return wrap_angle(self.plaquette_angle(x)).sum((1, 2)) / (2 * math.pi)

    def wilson_loops(self, x: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """W(R, T) for 1 ≤ R ≤ T ≤ loop_extent, averaged over positions and both orientations, (B,) each."""
        angles = self.loop_angles(x)
        n = self.loop_extent
        loops = {}
        for r in range(1, n + 1):
            for t in range(r, n + 1):
                w = torch.cos(angles[(r, t)]).mean((1, 2))
                if t != r:
                    w = 0.5 * (w + torch.cos(angles[(t, r)]).mean((1, 2)))
                loops[(r, t)] = w
        return loops

    def observables(self, x):
        plaq = self.plaquette_angle(x)
        charge = wrap_angle(plaq).sum((1, 2)) / (2 * math.pi)
        plaquette = torch.cos(plaq).mean((1, 2))
        obs = {
            "plaquette": plaquette,
            "action_density": -self.beta * plaquette,
            "topological_charge": charge,
            "q2": charge**2,
            "chi_t": charge**2 / self.volume,
        }
        for (r, t), w in self.wilson_loops(x).items():
            obs[f"wilson_{r}_{t}"] = w
        return obs

    def derived_quantities(self):
        return creutz_ratios(self.loop_extent)

    def sectors(self):
        """The topological sectors Q with the exact P(Q) of the character expansion (none at β = 0)."""
        from suite.exact.u1 import charge_distribution
        from suite.modes import Sectors

        if self.beta == 0:
            return None
        charges, probabilities = charge_distribution(self.beta, self.volume)
        return Sectors("topological_charge", charges, probabilities, "exact: U(1) character expansion")


def gauge_transform(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """θ_μ(x) → wrap(α(x) + θ_μ(x) − α(x+μ̂)) for α of shape (B, L0, L1)."""
    return torch.stack([wrap_angle(alpha + x[:, mu] - shift(alpha, mu)) for mu in range(x.shape[1])], 1)


def random_gauge_transformation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The links gauge-transformed by a Haar-random α(x) per site and configuration."""
    alpha = 2 * math.pi * torch.rand((x.shape[0], *x.shape[2:]), generator=generator, dtype=x.dtype,
                                     device=x.device)
    return gauge_transform(x, alpha)


def constant_flux_configuration(lattice, charge: int, dtype=torch.float64) -> torch.Tensor:
    """A configuration (batch 1) whose every plaquette angle is 2πk/V (mod 2π): total flux 2πk, Q = k.

    θ_1(x0, x1) = φ x0 and θ_0(L0−1, x1) = −φ L0 x1 with φ = 2πk/V, all other links 0; valid for
    |k| < V/2 (so that |φ| < π and wrap(θ_P) = φ)."""
    l0, l1 = (int(n) for n in lattice)
    volume = l0 * l1
    if not abs(charge) < volume / 2:
        raise ValueError(f"|charge| must be < V/2 = {volume / 2}, got {charge}")
    phi = 2 * math.pi * charge / volume
    x = torch.zeros(1, 2, l0, l1, dtype=dtype)
    x[0, 1] = phi * torch.arange(l0, dtype=dtype)[:, None]
    x[0, 0, l0 - 1] = -phi * l0 * torch.arange(l1, dtype=dtype)
    return wrap_angle(x)


register_theory(TheoryInfo(
    name="u1",
    build=U1.from_convention,
    conventions=CONVENTIONS,
    headline_observable="topological_charge",
    figure_observables=("topological_charge", "plaquette", "action_density"),
    exact={"u1-character-expansion": ExactSolver(lazy("suite.exact.u1:u1_exact"),
                                                 "exact: U(1) character expansion (arXiv:1901.09830)")},
    report_sections=(lazy("suite.report.topology:topology_section"),),
))
