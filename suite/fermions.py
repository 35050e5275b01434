"""Wilson fermions on 2D U(1) gauge links: the Wilson–Dirac operator, its dense matrix, and CG.

Conventions (stated once here; tests/test_fermions.py checks each):

* **Links** as in `suite.theories.u1`: angles θ_μ(x), U_μ(x) = exp(i θ_μ(x)), shape ``(B, 2, L0, L1)``
  (μ on axis 1, sites on axes 2, 3). Lattice axis 0 is time, axis 1 is space.
* **Fermion fields** ψ of shape ``(B, L0, L1, 2)``, complex (spin index last); the complex dtype
  matches θ's real dtype (float64 → complex128, float32 → complex64).
* **γ-matrices** (Euclidean, Hermitian, {γ_μ, γ_ν} = 2δ_μν):
  γ_0 = σ_1, γ_1 = σ_2, γ_5 = σ_3 = −i γ_0 γ_1.
* **Operator** (hopping-parameter normalisation; `Stencil`, `apply`, `apply_dagger`, `apply_ddag`)

      D ψ(x) = ψ(x) − κ Σ_μ [(1 − γ_μ) U_μ(x) ψ(x+μ̂) + (1 + γ_μ) U_μ†(x−μ̂) ψ(x−μ̂)],

  i.e. D = 2κ D_W with D_W = (m + 2) − ½ Σ_μ [(1 − γ_μ) U_μ T_μ + (1 + γ_μ) T_μ† U_μ†], the bare mass
  m = 1/(2κ) − 2 (d = 2; free critical point κ_c = 1/4). Adjoint:
  D† ψ(x) = ψ(x) − κ Σ_μ [(1 + γ_μ) U_μ(x) ψ(x+μ̂) + (1 − γ_μ) U_μ†(x−μ̂) ψ(x−μ̂)] = γ_5 D γ_5 ψ(x).
* **Boundary conditions**: antiperiodic in time (axis 0), periodic in space (axis 1), applied as a
  phase −1 on the links that wrap around in time, U_0(x) at x_0 = L0 − 1 (so both the forward hop
  out of x_0 = L0 − 1 and the backward hop into it carry the −1). Nothing else sees the boundary.
* **Gauge covariance**: under θ_μ(x) → θ_μ(x) + α(x) − α(x+μ̂) (`suite.theories.u1.gauge_transform`),
  i.e. U_μ(x) → Ω(x) U_μ(x) Ω(x+μ̂)† with Ω(x) = e^{iα(x)}, D → Ω D Ω† and ψ → Ω ψ.
* **Dense matrix** ``dense(theta, kappa)`` of shape ``(B, 2V, 2V)``, V = L0·L1, row/column index
  (x_0·L1 + x_1)·2 + s for site x and spin s (the row-major flattening of ψ's ``(L0, L1, 2)``).
  Built from explicit site indices, not from the stencil, so each checks the other; for small
  lattices only (memory ∝ V²).
* **Free field** (θ = 0): with p_0 = 2π(n_0 + ½)/L0 (antiperiodic), p_1 = 2π n_1/L1, a plane wave
  e^{ip·x} u gives D(p) = 1 − 2κ Σ_μ cos p_μ + 2iκ Σ_μ γ_μ sin p_μ, so
  det D(p) = (1 − 2κ Σ cos p_μ)² + 4κ² Σ sin² p_μ, log det D = Σ_p log det D(p),
  Tr D⁻¹ = Σ_p 2 (1 − 2κ Σ cos p_μ) / det D(p) (`free_log_det`, `free_trace_inverse`).
* **Two flavours**: N_f = 2 enters as det(D†D) = |det D|² (real and ≥ 0; det D itself is real by
  γ_5-hermiticity), `log_det_ddag` = 2 log|det D|. The pseudofermion action φ†(D†D)⁻¹φ solves
  D†D x = φ with `cg`, whose tolerance and iteration count go into the row.
* **Chiral condensate** of a configuration, ``chiral_condensate(theta, kappa, n_flavours)`` =
  −(N_f / V) Tr D⁻¹ in the κ normalisation of D above (ψ̄ψ = −tr ψψ̄ and ⟨ψ(x) ψ̄(y)⟩ = D⁻¹(x, y)).
  For the field normalised with D_W (continuum-like, ψ_W = ψ/√(2κ)) multiply by 2κ.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from suite.lattice import shift

TIME_BOUNDARY_PHASE = -1.0  # antiperiodic in time (axis 0); space (axis 1) periodic


def gamma_matrices(dtype=torch.complex128, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(γ_0, γ_1, γ_5) = (σ_1, σ_2, σ_3), each 2×2."""
    g0 = torch.tensor([[0, 1], [1, 0]], dtype=dtype, device=device)
    g1 = torch.tensor([[0, -1j], [1j, 0]], dtype=dtype, device=device)
    g5 = torch.tensor([[1, 0], [0, -1]], dtype=dtype, device=device)
    return g0, g1, g5


def complex_dtype(real_dtype: torch.dtype) -> torch.dtype:
    """complex128 for float64 links, complex64 for float32."""
    return torch.complex128 if real_dtype == torch.float64 else torch.complex64


def _check_links(theta: torch.Tensor) -> None:
    if theta.dim() != 4 or theta.shape[1] != 2:
        raise ValueError(f"links must have shape (B, 2, L0, L1), got {tuple(theta.shape)}")
    if theta.is_complex():
        raise ValueError("links are real angles θ_μ(x), got a complex tensor")


def links(theta: torch.Tensor) -> torch.Tensor:
    """U_μ(x) = exp(i θ_μ(x)) with the antiperiodic time boundary phase on U_0(x_0 = L0 − 1), (B, 2, L0, L1)."""
    _check_links(theta)
    u = torch.polar(torch.ones_like(theta), theta)
    phase = torch.ones(theta.shape[1:], dtype=theta.dtype, device=theta.device)
    phase[0, -1] = TIME_BOUNDARY_PHASE
    return u * phase


class Stencil:
    """D and D† at fixed links θ (B, 2, L0, L1), with the links and spin projectors computed once
    (what CG applies many times); ``dtype`` the complex type of the fermion fields."""

    def __init__(self, theta: torch.Tensor, kappa: float, dtype: torch.dtype):
        _check_links(theta)
        u = links(theta).to(dtype)
        eye = torch.eye(2, dtype=dtype, device=theta.device)
        gammas = gamma_matrices(dtype, theta.device)[:2]
        self.kappa = kappa
        self.shape = (theta.shape[0], *theta.shape[2:], 2)
        self.forward_links = [u[:, mu, ..., None] for mu in range(2)]
        self.backward_links = [u[:, mu, ..., None].conj() for mu in range(2)]
        # (1 ∓ sγ_μ)ᵀ for s = ±1, to multiply spinors stored as rows
        self.projectors = {s: [((eye - s * g).T, (eye + s * g).T) for g in gammas] for s in (1, -1)}

    def hop(self, psi: torch.Tensor, sign: int) -> torch.Tensor:
        """ψ − κ Σ_μ [(1 − sγ_μ) U_μ ψ(x+μ̂) + (1 + sγ_μ) U_μ†(x−μ̂) ψ(x−μ̂)]: D for s = +1, D† for s = −1."""
        if tuple(psi.shape) != self.shape:
            raise ValueError(f"fermion field must have shape (B, L0, L1, 2) = {self.shape}, got {tuple(psi.shape)}")
        out = psi
        for mu, (forward_projector, backward_projector) in enumerate(self.projectors[sign]):
            forward = (self.forward_links[mu] * shift(psi, mu)) @ forward_projector  # (1 − sγ) U ψ(x+μ̂)
            backward_field = self.backward_links[mu] * psi  # U_μ†(y) ψ(y), then moved to x = y + μ̂
            backward = shift(backward_field, mu, -1) @ backward_projector
            out = out - self.kappa * (forward + backward)
        return out

    def ddag(self, psi: torch.Tensor) -> torch.Tensor:
        """D†D ψ."""
        return self.hop(self.hop(psi, +1), -1)


def apply(theta: torch.Tensor, psi: torch.Tensor, kappa: float) -> torch.Tensor:
    """D ψ (stencil, batched): links (B, 2, L0, L1), ψ (B, L0, L1, 2) complex."""
    return Stencil(theta, kappa, psi.dtype).hop(psi, +1)


def apply_dagger(theta: torch.Tensor, psi: torch.Tensor, kappa: float) -> torch.Tensor:
    """D† ψ (stencil, batched)."""
    return Stencil(theta, kappa, psi.dtype).hop(psi, -1)


def apply_ddag(theta: torch.Tensor, psi: torch.Tensor, kappa: float) -> torch.Tensor:
    """D†D ψ, the Hermitian positive operator of the two-flavour theory (for many applications at the
    same links, build one `Stencil` and call its ``ddag``)."""
    return Stencil(theta, kappa, psi.dtype).ddag(psi)


def dense(theta: torch.Tensor, kappa: float) -> torch.Tensor:
    """The matrix of D, shape (B, 2V, 2V), index (x_0·L1 + x_1)·2 + s; differentiable in θ."""
    _check_links(theta)
    batch, _, l0, l1 = theta.shape
    n = 2 * l0 * l1
    dtype = complex_dtype(theta.dtype)
    device = theta.device
    u = links(theta).to(dtype)
    eye = torch.eye(2, dtype=dtype, device=device)
    x0, x1 = torch.meshgrid(torch.arange(l0, device=device), torch.arange(l1, device=device), indexing="ij")
    spin_row = torch.arange(2, device=device).view(2, 1)
    spin_col = torch.arange(2, device=device).view(1, 2)

    def index(a0, a1, spin):  # (L0, L1) sites and a spin grid -> (L0, L1, 2, 2) flat indices
        return (((a0 % l0) * l1 + (a1 % l1)) * 2)[..., None, None] + spin

    batch_offset = (torch.arange(batch, device=device) * n * n).view(batch, 1, 1, 1, 1)
    flat_index, values = [], []
    for mu, gamma in enumerate(gamma_matrices(dtype, device)[:2]):
        step = (1, 0) if mu == 0 else (0, 1)
        rows = index(x0, x1, spin_row)
        # forward hop: D[x, x+μ̂] = −κ (1 − γ_μ) U_μ(x)
        cols = index(x0 + step[0], x1 + step[1], spin_col)
        flat_index.append(batch_offset + rows * n + cols)
        values.append(-kappa * u[:, mu, :, :, None, None] * (eye - gamma))
        # backward hop: D[x, x−μ̂] = −κ (1 + γ_μ) U_μ(x−μ̂)*
        back0, back1 = (x0 - step[0]) % l0, (x1 - step[1]) % l1
        cols = index(back0, back1, spin_col)
        flat_index.append(batch_offset + rows * n + cols)
        values.append(-kappa * u[:, mu, back0, back1, None, None].conj() * (eye + gamma))
    flat_index = torch.cat([i.expand(batch, l0, l1, 2, 2).reshape(-1) for i in flat_index])
    values = torch.cat([v.reshape(-1) for v in values])
    matrix = torch.zeros(batch * n * n, dtype=dtype, device=device).index_add(0, flat_index, values)
    return matrix.view(batch, n, n) + torch.eye(n, dtype=dtype, device=device)


def log_det_ddag(theta: torch.Tensor, kappa: float) -> torch.Tensor:
    """log det(D†D) = 2 log|det D| per configuration, shape (B,), by slogdet of the dense matrix
    (small lattices; differentiable in θ)."""
    return 2 * torch.linalg.slogdet(dense(theta, kappa)).logabsdet


def chiral_condensate(theta: torch.Tensor, kappa: float, n_flavours: int = 2) -> torch.Tensor:
    """−(N_f / V) Tr D⁻¹ per configuration, shape (B,), real part (κ normalisation of D; ×2κ for D_W's)."""
    return condensate_of_inverse(torch.linalg.inv(dense(theta, kappa)), n_flavours)


def condensate_of_inverse(inverse: torch.Tensor, n_flavours: int = 2) -> torch.Tensor:
    """−(N_f / V) Re Tr D⁻¹ from the dense inverse (B, 2V, 2V), shape (B,)."""
    volume = inverse.shape[-1] // 2
    return -n_flavours * inverse.diagonal(dim1=-2, dim2=-1).sum(-1).real / volume


# -- free field (θ = 0): closed forms in momentum space --------------------------------------


def free_momenta(lattice) -> tuple[torch.Tensor, torch.Tensor]:
    """p_0 = 2π(n_0 + ½)/L0 (antiperiodic time), p_1 = 2π n_1/L1, each of shape (L0, L1), float64."""
    l0, l1 = (int(n) for n in lattice)
    p0 = 2 * math.pi * (torch.arange(l0, dtype=torch.float64) + 0.5) / l0
    p1 = 2 * math.pi * torch.arange(l1, dtype=torch.float64) / l1
    return torch.meshgrid(p0, p1, indexing="ij")


def free_det_momentum(lattice, kappa: float) -> torch.Tensor:
    """det D(p) = (1 − 2κ Σ cos p_μ)² + 4κ² Σ sin² p_μ on the momentum grid, (L0, L1)."""
    p0, p1 = free_momenta(lattice)
    a = 1 - 2 * kappa * (torch.cos(p0) + torch.cos(p1))
    return a**2 + 4 * kappa**2 * (torch.sin(p0) ** 2 + torch.sin(p1) ** 2)


def free_log_det(lattice, kappa: float) -> float:
    """log det D at unit links = Σ_p log det D(p) (det D > 0 for the free field unless a mode is zero)."""
    return float(torch.log(free_det_momentum(lattice, kappa)).sum())


def free_trace_inverse(lattice, kappa: float) -> float:
    """Tr D⁻¹ at unit links = Σ_p 2 (1 − 2κ Σ cos p_μ) / det D(p)."""
    p0, p1 = free_momenta(lattice)
    a = 1 - 2 * kappa * (torch.cos(p0) + torch.cos(p1))
    return float((2 * a / free_det_momentum(lattice, kappa)).sum())


# -- conjugate gradient --------------------------------------------------------------------


class NotConverged(RuntimeError):
    """CG did not reach its tolerance in max_iter iterations (one-line message)."""


class CGResult(NamedTuple):
    x: torch.Tensor  # the solution, shape of b
    iterations: int  # iterations done (the batch iterates together until every element converged)
    residual: torch.Tensor  # (B,) final true relative residual |b − A x| / |b|, real


def _norm2(v: torch.Tensor) -> torch.Tensor:
    return (v.abs() ** 2).flatten(1).sum(1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.conj() * b).flatten(1).sum(1)


def cg(apply_a: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, tol: float = 1e-10,
       max_iter: int = 1000, *, raise_on_failure: bool = True) -> CGResult:
    """Solve A x = b for a Hermitian positive-definite A (e.g. D†D: ``lambda v: apply_ddag(theta, v, kappa)``),
    batched over the first axis, from x = 0, until |r| ≤ tol·|b| for every batch element.

    Returns ``CGResult(x, iterations, residual)`` with the true relative residual recomputed at the
    end. Convergence is judged on the iterated residual; the true one can differ from it by
    round-off. If some element has not converged after ``max_iter`` iterations: raises
    `NotConverged` (one line), or with ``raise_on_failure=False`` returns, and ``residual > tol``
    flags it.
    """
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"cg needs tol > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
    shape = (-1,) + (1,) * (b.dim() - 1)
    b_norm2 = _norm2(b)
    target = (tol**2) * b_norm2
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = _norm2(r)
    iterations = 0
    while iterations < max_iter and bool((rr > target).any()):
        active = rr > target
        ap = apply_a(p)
        pap = _dot(p, ap).real
        alpha = torch.where(active, rr / torch.where(active, pap, torch.ones_like(pap)), torch.zeros_like(rr))
        x = x + alpha.view(shape).to(b.dtype) * p
        r = r - alpha.view(shape).to(b.dtype) * ap
        rr_new = _norm2(r)
        beta = torch.where(active, rr_new / torch.where(active, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + beta.view(shape).to(b.dtype) * p
        rr = torch.where(active, rr_new, rr)
        iterations += 1
    safe = torch.where(b_norm2 > 0, b_norm2, torch.ones_like(b_norm2))
    residual = torch.sqrt(_norm2(b - apply_a(x)) / safe)
    if raise_on_failure and bool((rr > target).any()):
        raise NotConverged(f"cg did not converge in {max_iter} iterations: relative residual "
                           f"{float(residual.max()):.3g} > tol {tol:.3g}")
    return CGResult(x, iterations, residual)
