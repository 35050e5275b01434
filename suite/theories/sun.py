"""SU(N) lattice gauge theory with the Wilson plaquette action on a periodic d-dimensional lattice.

N ≥ 2 (tested for N = 2, 3), d = 2, 3, 4. Links U_μ(x) ∈ SU(N) are stored as complex tensors of
shape ``(B, d, *lattice, N, N)``: axis 1 is the direction μ = 0 … d−1, lattice sites are on axes
2 … d+1, and the last two axes are the matrix (row, column). The field space is `suite.fields.SUN`
(Haar prior, generators T_a with Tr T_a T_b = ½ δ_ab, momenta p = i p^a T_a with
K = −Σ_links Tr p² = ½ Σ_links Σ_a (p^a)², update U ← exp(ε p) U).

* plaquette  U_μν(x) = U_μ(x) U_ν(x+μ̂) U_μ(x+ν̂)† U_ν(x)†, for the d(d−1)/2 planes μ < ν
* action (``wilson`` convention)  S = −(β/N) Σ_x Σ_{μ<ν} Re Tr U_μν(x)   (no additive constant:
  S = −β V d(d−1)/2 at unit links)
* staples  A_μ(x) = Σ_{ν≠μ} [U_ν(x+μ̂) U_μ(x+ν̂)† U_ν(x)† + U_ν(x+μ̂−ν̂)† U_μ(x−ν̂)† U_ν(x−ν̂)],
  so that the part of S containing U_μ(x) is −(β/N) Re Tr[U_μ(x) A_μ(x)]
* force  F_μ(x) = Σ_a (iT_a) ∂_a S = (β/2N) P[U_μ(x) A_μ(x)], where ∂_a S is the derivative of S
  along U_μ(x) → exp(t iT_a) U_μ(x) at t = 0 and P(M) = ½(M − M†) − (1/2N) Tr(M − M†) is the
  traceless anti-Hermitian part. With U̇ = p U this is the F of ṗ = −F, the convention of
  `reference.hmc` (p ← p − ε F); it is the field space's `project` of the autograd gradient.

Per-configuration observables (shape (B,) each, real), V sites:
``plaquette`` (1/N) Re Tr U_μν(x) averaged over x and the planes μ < ν; for d ≥ 3 also
``plaquette_MU_NU`` per plane (e.g. ``plaquette_0_3``); ``action_density`` S/V =
−β (d(d−1)/2) · plaquette; ``wilson_R_T`` for 1 ≤ R ≤ T ≤ ``loop_extent`` =
min(min(lattice)//2, 4): (1/N) Re Tr of the R×T rectangular loop, averaged over positions, planes
and both orientations in each plane (R along μ and T along ν, and the transpose; wilson_1_1 is the
plaquette). Extents are capped at 4 because the loops fall like (plaquette)^{RT} (in 2D exactly,
in infinite volume) and larger ones are noise at affordable statistics, while each costs a
measurement on every configuration. ``polyakov`` |P| = |(1/V_s) Σ_x (1/N) Tr Π_{t=0}^{L_0−1}
U_0(t, x)|, with axis 0 of the lattice (μ = 0) as time and V_s the spatial volume.

Ensemble-level (derived): ``creutz_R_T`` for 2 ≤ R ≤ T ≤ loop_extent, the Creutz ratio
χ(R,T) = −log[W(R,T) W(R−1,T−1) / (W(R,T−1) W(R−1,T))], NaN where the argument is not positive.

In 2D, for N = 2 the infinite-volume plaquette is I_2(β)/I_1(β) (Bessel functions of argument β in
this convention; the finite-volume corrections are exponentially small in V).

Registered as theory ``sun``: convention ``wilson`` with params ``N`` (an integer, given as a number
in the catalogue), ``beta`` and, for d = 4 only, ``flow_time`` (default 0); headline observable
``plaquette``; the exact solver is the 2D character expansion.

4D observables after gradient flow (only when ``flow_time`` t > 0, in lattice units; off by default
because every measurement then flows the configuration, 3 staple evaluations per step): the
Wilson flow of `suite.gradient_flow` (Lüscher's normalisation, Z = −(2N/β) F, independent of β) to
time t with Lüscher's third-order Runge–Kutta scheme and step ε = ``DEFAULT_FLOW_STEP`` = 0.02 (t must
be a multiple of ε), then from the clover field strength F_μν = ¼ P(Q_μν):
``topological_charge`` Q = Σ_x q(x), q = −(1/32π²) ε_μνρσ Tr F_μν F_ρσ (anti-Hermitian F, ε₀₁₂₃ = 1;
i.e. +(1/32π²) ε Tr F̂F̂ for the Hermitian F̂ = −iF), ``q2`` Q², ``chi_t`` Q²/V and ``t2E`` t² E(t)
with E = (1/V) Σ_x (−½) Σ_μν Tr F_μν F_μν. The flow time is recorded in ``params``.
"""

from __future__ import annotations

import math

import torch

from suite.fields import SUN, traceless_antihermitian
from suite import gradient_flow
from suite.lattice import shift
from suite.theories.base import Theory, creutz_ratios
from suite.theories.registry import ExactSolver, TheoryInfo, lazy, register_theory

CONVENTIONS = ("wilson",)
MAX_LOOP_EXTENT = 4
DEFAULT_FLOW_STEP = 0.02  # the Wilson-flow step ε of the 4D topological observables
DIMENSIONS = (2, 3, 4)


def _shift(u: torch.Tensor, mu: int, step: int = 1) -> torch.Tensor:
    """A field of matrices ``(B, *lattice, N, N)`` at x + step·μ̂ (periodic)."""
    return shift(u, mu, step, first=1)


def _re_trace(m: torch.Tensor) -> torch.Tensor:
    """Re Tr over the last two axes."""
    return torch.diagonal(m, dim1=-2, dim2=-1).real.sum(-1)


class SUNGauge(Theory):
    """SU(N) Wilson gauge theory, S = −(β/N) Σ_P Re Tr U_P; ``SUNGauge(lattice, n, beta)`` or `from_convention`."""

    def __init__(self, lattice, n: int, beta: float, params: dict | None = None, flow_time: float = 0.0,
                 flow_step: float = DEFAULT_FLOW_STEP):
        self.lattice = tuple(int(s) for s in lattice)
        self.dim = len(self.lattice)
        if self.dim not in DIMENSIONS:
            raise ValueError(f"SU(N) is implemented in d = 2, 3, 4, got lattice {list(self.lattice)}")
        if min(self.lattice) < 2:
            raise ValueError(f"lattice extents must be >= 2, got {list(self.lattice)}")
        if isinstance(n, bool) or float(n) != int(n) or int(n) < 2:
            raise ValueError(f"N must be an integer >= 2, got {n}")
        self.n = int(n)
        self.beta = float(beta)
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be finite and >= 0, got {beta}")
        self.flow_time, self.flow_step = float(flow_time), float(flow_step)
        if not math.isfinite(self.flow_time) or self.flow_time < 0:
            raise ValueError(f"flow_time must be finite and >= 0, got {flow_time}")
        if self.flow_time > 0:
            if self.dim != 4:
                raise ValueError(f"flow_time is for the 4D topological observables, got d = {self.dim}")
            gradient_flow.flow_steps(self.flow_time, self.flow_step)  # a multiple of the step, or an error
        self.params = params if params is not None else {"N": self.n, "beta": self.beta}
        if self.flow_time > 0 and "flow_time" not in self.params:
            self.params = {**self.params, "flow_time": self.flow_time}
        self.field = SUN((self.dim, *self.lattice, self.n, self.n))
        self.planes = [(mu, nu) for mu in range(self.dim) for nu in range(mu + 1, self.dim)]
        self.loop_extent = max(1, min(min(self.lattice) // 2, MAX_LOOP_EXTENT))

    @classmethod
    def from_wilson(cls, lattice, N, beta: float, flow_time: float = 0.0) -> "SUNGauge":
        params = {"convention": "wilson", "N": int(N), "beta": float(beta)}
        if flow_time:
            params["flow_time"] = float(flow_time)
        return cls(lattice, N, beta, params=params, flow_time=flow_time)

    @classmethod
    def from_convention(cls, convention: str, lattice, **params) -> "SUNGauge":
        """Build from a source convention (only ``wilson``: S = −(β/N) Σ_P Re Tr U_P) with params N, beta
        and, in 4D, optionally flow_time (module docstring)."""
        if convention != "wilson":
            raise ValueError(f"unknown sun convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        return cls.from_wilson(lattice, **params)

    # -- geometry ---------------------------------------------------------------------------

    def plaquettes(self, x: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """U_μν(x) for every plane μ < ν, each ``(B, *lattice, N, N)``."""
        out = {}
        for mu, nu in self.planes:
            u_mu, u_nu = x[:, mu], x[:, nu]
            out[(mu, nu)] = u_mu @ _shift(u_nu, mu) @ _shift(u_mu, nu).mH @ u_nu.mH
        return out

    def staples(self, x: torch.Tensor) -> torch.Tensor:
        """A_μ(x) (module docstring), shape of x."""
        out = []
        for mu in range(self.dim):
            u_mu = x[:, mu]
            total = torch.zeros_like(u_mu)
            for nu in range(self.dim):
                if nu == mu:
                    continue
                u_nu = x[:, nu]
                u_nu_xmu = _shift(u_nu, mu)
                total = total + u_nu_xmu @ _shift(u_mu, nu).mH @ u_nu.mH
                # the lower staple, built at x + ν̂ ... and shifted back by −ν̂ at the end
                lower = u_nu_xmu.mH @ u_mu.mH @ u_nu
                total = total + _shift(lower, nu, -1)
            out.append(total)
        return torch.stack(out, 1)

    def lines(self, x: torch.Tensor, mu: int) -> list[torch.Tensor]:
        """Straight Wilson lines U_μ(x) U_μ(x+μ̂) … U_μ(x+(k−1)μ̂) for k = 1 … loop_extent."""
        u = x[:, mu]
        out = [u]
        for k in range(1, self.loop_extent):
            out.append(out[-1] @ _shift(u, mu, k))
        return out

    def wilson_loops(self, x: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """W(R, T) for 1 ≤ R ≤ T ≤ loop_extent: (1/N) Re Tr of the R×T loop, averaged over positions,
        planes and both orientations, (B,) each."""
        lines = [self.lines(x, mu) for mu in range(self.dim)]
        sites = tuple(range(1, self.dim + 1))
        n = self.loop_extent
        sums = {}
        for mu, nu in self.planes:
            for a in range(1, n + 1):
                for b in range(1, n + 1):
                    # a along μ, b along ν, corner at x
                    la, lb = lines[mu][a - 1], lines[nu][b - 1]
                    loop = la @ _shift(lb, mu, a) @ _shift(la, nu, b).mH @ lb.mH
                    w = _re_trace(loop).mean(sites) / self.n
                    key = (min(a, b), max(a, b))
                    sums[key] = sums.get(key, 0) + w
        count = {(r, t): len(self.planes) * (1 if r == t else 2) for (r, t) in sums}
        return {key: value / count[key] for key, value in sorted(sums.items())}

    # -- action and force -------------------------------------------------------------------

    def action(self, x):
        sites = tuple(range(1, self.dim + 1))
        total = sum(_re_trace(p).sum(sites) for p in self.plaquettes(x).values())
        return -(self.beta / self.n) * total

    def force(self, x):
        """F_μ(x) = (β/2N) P[U_μ(x) A_μ(x)] in su(N) (module docstring)."""
        return (self.beta / (2 * self.n)) * traceless_antihermitian(x @ self.staples(x))

    # -- observables ------------------------------------------------------------------------

    def polyakov_loop(self, x: torch.Tensor) -> torch.Tensor:
        """(1/V_s) Σ_x (1/N) Tr Π_t U_0(t, x), complex, shape (B,); time is lattice axis 0."""
        u = x[:, 0]
        line = u[:, 0]
        for t in range(1, self.lattice[0]):
            line = line @ u[:, t]
        return torch.diagonal(line, dim1=-2, dim2=-1).sum(-1).flatten(1).mean(1) / self.n

    def observables(self, x):
        obs = self.cheap_observables(x)
        if self.flow_time > 0:
            obs.update(gradient_flow.clover_observables(self, x, self.flow_time, self.flow_step))
        return obs

    def cheap_observables(self, x):
        """Every observable but those after gradient flow (the costly ones)."""
        sites = tuple(range(1, self.dim + 1))
        per_plane = {plane: _re_trace(p).mean(sites) / self.n for plane, p in self.plaquettes(x).items()}
        plaquette = sum(per_plane.values()) / len(per_plane)
        obs = {
            "plaquette": plaquette,
            "action_density": -self.beta * len(self.planes) * plaquette,
        }
        if self.dim >= 3:
            for (mu, nu), value in per_plane.items():
                obs[f"plaquette_{mu}_{nu}"] = value
        for (r, t), w in self.wilson_loops(x).items():
            obs[f"wilson_{r}_{t}"] = w
        obs["polyakov"] = self.polyakov_loop(x).abs()
        return obs

    def derived_quantities(self):
        return creutz_ratios(self.loop_extent)


def gauge_transform(x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """U_μ(x) → Ω(x) U_μ(x) Ω(x+μ̂)† for Ω of shape ``(B, *lattice, N, N)``."""
    return torch.stack([omega @ x[:, mu] @ _shift(omega, mu).mH for mu in range(x.shape[1])], 1)


def random_gauge_transformation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The links gauge-transformed by a Haar-random Ω(x) per site and configuration."""
    omega = SUN(tuple(x.shape[2:])).prior_sample(x.shape[0], generator=generator, dtype=x.real.dtype,
                                                 device=x.device)
    return gauge_transform(x, omega)


register_theory(TheoryInfo(
    name="sun",
    build=SUNGauge.from_convention,
    conventions=CONVENTIONS,
    headline_observable="plaquette",
    figure_observables=("plaquette", "wilson_2_2", "polyakov"),
    exact={"sun-character-expansion": ExactSolver(lazy("suite.exact.sun:sun_exact"),
                                                  "exact: 2D SU(N) character expansion on the torus")},
    report_sections=(lazy("suite.report.sun_flows:sun_flow_section"),),
))
