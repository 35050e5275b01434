"""Wilson gradient flow of SU(N) gauge fields and the clover observables measured on flowed fields.

Conventions (links ``(B, d, *lattice, N, N)`` as in `suite.theories.sun`; lattice spacing a = 1):

* Flow (Lüscher, JHEP 08 (2010) 071, arXiv:1006.4518): V̇_t = Z(V_t) V_t, V_0 = U, with
  Z(V) = −g₀² ∂_{x,μ} S_w(V) and S_w = (1/g₀²) Σ_{oriented p} Re Tr(1 − V(p)), i.e. the Wilson action
  with the β-independent normalisation g₀² S_w = 2 Σ_{x, μ<ν} Re Tr(1 − V_μν(x)). Explicitly

      Z_μ(x) = −P[V_μ(x) A_μ(x)],

  A_μ the sum of staples of `SUNGauge.staples` and P(M) = ½(M − M†) − (1/2N) Tr(M − M†) the
  traceless anti-Hermitian part. Lüscher's ∂ (anti-Hermitian generators T^a with
  Tr T^a T^b = −½ δ^ab, ∂^a f = d/ds f(e^{sT^a} V)) is the theory's force operator (its iT_a), and
  the theory's S = −(β/N) Σ Re Tr U_P equals (β/2N) g₀² S_w + const, so Z = −(2N/β) F with F the
  theory's ``force``; Z does not depend on β (it is computed from the staples, so β = 0 works). The
  flow decreases S: dS/dt = −(β/2N) Σ_links |Z|²_g = −(β/N) Σ_links Σ_ij |Z_ij|² ≤ 0 (g the metric
  of the field space, |Z|²_g = −2 Tr Z²).
* Integrator: Lüscher's third-order Runge–Kutta (a Munthe-Kaas scheme), with Z_i = ε Z(W_i):
  W₀ = V_t; W₁ = exp(¼ Z₀) W₀; W₂ = exp(8/9 Z₁ − 17/36 Z₀) W₁;
  V_{t+ε} = exp(¾ Z₂ − 8/9 Z₁ + 17/36 Z₀) W₂. Each exponential is the field space's exact update
  (closed form for SU(2), ``matrix_exp`` followed by reunitarisation for N ≥ 3). Global error O(ε³).
* Clover field strength: Q_μν(x) the sum of the four plaquettes in the μν plane with a corner at x,
  each a closed path starting and ending at x and oriented μ → ν (the first is U_μν(x)),
  F_μν(x) = (1/8)(Q_μν − Q_μν†) made traceless: F_μν = ¼ P(Q_μν), anti-Hermitian, F_νμ = −F_μν.
* Topological charge density (Lüscher's sign, with anti-Hermitian F):
  q(x) = −(1/32π²) ε_μνρσ Tr F_μν(x) F_ρσ(x) = −(1/4π²) Re Tr[F₀₁F₂₃ − F₀₂F₁₃ + F₀₃F₁₂], ε₀₁₂₃ = +1;
  equivalently +(1/32π²) ε Tr F̂F̂ with the Hermitian F̂ = −iF (the continuum
  (1/32π²) ε Tr F F of Hermitian fields). Q = Σ_x q(x). Q is gauge invariant and odd under a
  reflection of one axis.
* Energy density (clover): E(x) = −½ Σ_{μ,ν} Tr F_μν F_μν = −Σ_{μ<ν} Tr F_μν F_μν ≥ 0, reported as
  the lattice average E = (1/V) Σ_x E(x), and t² E(t).
"""

from __future__ import annotations

import math

import torch

from suite.fields import traceless_antihermitian
from suite.lattice import shift

__all__ = ["flow_generator", "wilson_flow_step", "wilson_flow", "clover_field_strength", "topological_charge",
           "energy_density"]


def _shift(u: torch.Tensor, mu: int, step: int = 1) -> torch.Tensor:
    return shift(u, mu, step, first=1)


def flow_generator(theory, v: torch.Tensor) -> torch.Tensor:
    """Z(V) = −P[V_μ(x) A_μ(x)] (module docstring) for every link, shape of v; equals −(2N/β) times
    the theory's force."""
    return -traceless_antihermitian(v @ theory.staples(v))


def wilson_flow_step(theory, v: torch.Tensor, eps: float) -> torch.Tensor:
    """One step of Lüscher's third-order Runge–Kutta scheme for the Wilson flow (module docstring)."""
    update = theory.field.update  # U ← exp(ε p) U, exact on the group
    z0 = eps * flow_generator(theory, v)
    w1 = update(v, z0, 0.25)
    z1 = eps * flow_generator(theory, w1)
    w2 = update(w1, (8 / 9) * z1 - (17 / 36) * z0, 1.0)
    z2 = eps * flow_generator(theory, w2)
    return update(w2, 0.75 * z2 - (8 / 9) * z1 + (17 / 36) * z0, 1.0)


def flow_steps(t: float, eps: float) -> int:
    """The number of steps of size ε that reach flow time t (t must be a multiple of ε to 1e-9)."""
    n = round(t / eps)
    if t < 0 or eps <= 0 or abs(n * eps - t) > 1e-9 * max(1.0, t):
        raise ValueError(f"flow time {t} is not a non-negative multiple of the step {eps}")
    return n


def wilson_flow(theory, u: torch.Tensor, t: float, eps: float) -> torch.Tensor:
    """The links flowed to time t with steps ε (t a multiple of ε)."""
    v = u
    for _ in range(flow_steps(t, eps)):
        v = wilson_flow_step(theory, v, eps)
    return v


def clover_field_strength(x: torch.Tensor, mu: int, nu: int) -> torch.Tensor:
    """F_μν(x) = ¼ P(Q_μν(x)), the traceless clover field strength (module docstring), ``(B, *lattice, N, N)``."""
    u_mu, u_nu = x[:, mu], x[:, nu]
    u_nu_xmu = _shift(u_nu, mu)
    u_mu_xnu = _shift(u_mu, nu)
    # the plaquette with corner y, P(y) = U_μ(y) U_ν(y+μ̂) U_μ(y+ν̂)† U_ν(y)†, and the same loop read
    # from its other three corners y+μ̂, y+μ̂+ν̂, y+ν̂; each is then moved to x = that corner
    first = u_mu @ u_nu_xmu  # the path y → y+μ̂ → y+μ̂+ν̂
    second = u_mu_xnu.mH @ u_nu.mH  # the path y+μ̂+ν̂ → y+ν̂ → y
    plaquette = first @ second
    from_xmu = u_nu_xmu @ second @ u_mu  # starts at y+μ̂: the leaf at x with y = x−μ̂
    from_diag = second @ first  # starts at y+μ̂+ν̂: y = x−μ̂−ν̂
    from_xnu = u_nu.mH @ first @ u_mu_xnu.mH  # starts at y+ν̂: y = x−ν̂
    q = (plaquette + _shift(from_xmu, mu, -1) + _shift(_shift(from_diag, mu, -1), nu, -1)
         + _shift(from_xnu, nu, -1))
    return 0.25 * traceless_antihermitian(q)


def _re_trace_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Re Tr(a b) over the last two axes."""
    return (a * b.transpose(-2, -1)).sum((-2, -1)).real


def topological_charge_density(x: torch.Tensor) -> torch.Tensor:
    """q(x) = −(1/4π²) Re Tr[F₀₁F₂₃ − F₀₂F₁₃ + F₀₃F₁₂] (module docstring), ``(B, *lattice)``; d = 4 only."""
    if x.shape[1] != 4:
        raise ValueError(f"the topological charge density is defined in d = 4, got d = {x.shape[1]}")
    f = {(m, n): clover_field_strength(x, m, n) for m in range(4) for n in range(m + 1, 4)}
    total = (_re_trace_product(f[0, 1], f[2, 3]) - _re_trace_product(f[0, 2], f[1, 3])
             + _re_trace_product(f[0, 3], f[1, 2]))
    return -total / (4 * math.pi ** 2)


def topological_charge(x: torch.Tensor) -> torch.Tensor:
    """Q = Σ_x q(x), shape (B,)."""
    return topological_charge_density(x).flatten(1).sum(1)


def energy_density(x: torch.Tensor) -> torch.Tensor:
    """The clover E = (1/V) Σ_x [−Σ_{μ<ν} Tr F_μν F_μν], shape (B,); any d ≥ 2."""
    d = x.shape[1]
    total = sum(-_re_trace_product(f, f) for f in
                (clover_field_strength(x, m, n) for m in range(d) for n in range(m + 1, d)))
    return total.flatten(1).mean(1)


def clover_observables(theory, x: torch.Tensor, t: float, eps: float) -> dict[str, torch.Tensor]:
    """The flowed observables of a 4D theory at flow time t (step ε): ``topological_charge`` Q,
    ``q2`` Q², ``chi_t`` Q²/V and ``t2E`` t² E(t), shape (B,) each."""
    v = wilson_flow(theory, x, t, eps)
    charge = topological_charge(v)
    volume = math.prod(x.shape[2:-2])
    return {"topological_charge": charge, "q2": charge ** 2, "chi_t": charge ** 2 / volume,
            "t2E": t ** 2 * energy_density(v)}
