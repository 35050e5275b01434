"""Conjugation-equivariant bijections of SU(N) matrices through their eigenphases (Boyda et al.,
PRD 103, 074504 (2021), arXiv:2008.05456, sec. IV).

Conventions. W = P diag(e^{iθ_1}, …, e^{iθ_N}) P† with Σ_i θ_i ≡ 0 (mod 2π); θ_1 … θ_{N−1} are the
independent phases (θ_N = −Σ_{i<N} θ_i). Densities are w.r.t. the Haar measure normalised to 1
(as `suite.fields.SUN`), which in these coordinates is dW ∝ Π_{i<j} |e^{iθ_i} − e^{iθ_j}|² dθ_1…dθ_{N−1} dP
(Weyl). A map W ↦ W′ = P diag(e^{iθ′}) P† that keeps P changes the log density by

    ladj = log|det ∂θ′_a/∂θ_b|_{a,b<N} + Σ_{i<j} log(|e^{iθ′_i} − e^{iθ′_j}|² / |e^{iθ_i} − e^{iθ_j}|²),

log q(W′) = log q(W) − ladj; it commutes with W ↦ Ω W Ω† because it acts on the spectrum only.

The map (`SpectralMap`): a residual gradient map on the phases, θ′ = θ + ∇ψ(θ) projected onto
Σθ′ = Σθ, with the permutation-invariant potential ψ(θ) = Σ_i Σ_{k=1}^{K} (a_k cos kθ_i + b_k sin kθ_i)
= Σ_k (a_k Re Tr W^k + b_k Im Tr W^k), a class function. With g = ψ′ (one phase),

    θ′_i = θ_i + g(θ_i) − (1/N) Σ_j g(θ_j),    i.e.    W′ = exp(iH) W,
    H = Σ_k k [−a_k (W^k − W^{−k})/2i + b_k (W^k + W^{−k})/2] − (trace)/N,

so the forward map is an entire function of W (powers of W and W†, one `matrix_exp`), needs no
eigendecomposition and has no cell boundaries; it is equivariant under conjugation and under
permutations of the eigenvalues (the Weyl group) by construction, keeps det = 1, and works for every
N alike. This is why it was chosen over splines on the canonical cell of the sorted phases (a
simplex for N ≥ 3, whose faces the map must fix). With d_i = 1 + g′(θ_i), the Jacobian on the N−1
independent phases is det = (1/N) Π_i d_i Σ_i 1/d_i. Coefficients obey Σ_k k²(|a_k| + |b_k|) ≤ 1 − ε
(ε = `MIN_SLOPE`), so every d_i ≥ ε: the map is the gradient of the strongly convex
Σ_i θ_i²/2 + ψ(θ) on the plane Σθ = const, hence a diffeomorphism of the torus of phases. Raw
parameters (x_k, y_k) (..., 2K) give a_k = s x_k/k², b_k = s y_k/k², s = (1 − ε)/(1 + Σ_k (|x_k| + |y_k|));
zero parameters are the identity. The Vandermonde ratio is evaluated pairwise in a form without
0/0 at coinciding phases (`_vandermonde_ratio`).

Degeneracy guard. The log density needs the phases of W, and their gradients (W depends on earlier
layers). `eigenphases` takes them from `torch.linalg.eig` but differentiates them with its own
backward, ∂L/∂W = Q diag(i g_i e^{iθ_i}) Q† (g = ∂L/∂θ, Q the eigenvectors orthonormalised by QR),
the derivative dθ_i = Im(e^{−iθ_i} q_i† dW q_i) of the eigenvalues of a normal matrix: it never divides
by eigenvalue gaps, and at (near-)coinciding eigenvalues a symmetric L has g_i = g_j, so the result
does not depend on the basis chosen inside the degenerate eigenspace. (torch's own backward of
`eigvals` inverts the eigenvector matrix V, which nothing keeps orthogonal inside a degenerate
eigenspace; for unitary inputs LAPACK's V happened to be well conditioned in our checks, so this
is a guarantee rather than a measured fix. The gaps that do diverge, in eigenvector gradients,
are never met: the forward map needs no eigenvectors and the inverse does not differentiate them.)

Inverse: the phases θ are solved from those of W′ by Newton's method (step halving far from the
root) on the strongly convex potential, W* = Q diag(e^{iθ}) Q† with the eigenvectors Q of W′ (no
gradients), then one Newton step W = exp(Y) W* on the eig-free residual P(W′ F(W*)†) whose
linearisation is diagonal in Q (`SpectralMap._inverse`): it refines W* and carries the gradients to
W′ and the parameters (``log_prob``, path gradients) without differentiating any eigenvector.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reference.flows.models import Flow
from reference.flows.priors import FieldPrior
from reference.flows.transforms import Bijection, Sequential
from suite.fields import SUN, traceless_antihermitian

MIN_SLOPE = 1e-2  # ε: the smallest phase-map slope d_i


class _Eigenphases(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        lam, v = torch.linalg.eig(w)
        q = torch.linalg.qr(v)[0]  # an orthonormal eigenbasis, also inside near-degenerate clusters
        ctx.save_for_backward(q, lam / lam.abs())
        return torch.angle(lam)

    @staticmethod
    def backward(ctx, grad):
        q, z = ctx.saved_tensors
        return (q * (1j * grad * z).unsqueeze(-2)) @ q.mH


def eigenphases(w: torch.Tensor) -> torch.Tensor:
    """The eigenphases θ in (−π, π] of unitary matrices (..., N, N) -> (..., N), unsorted, with the
    gap-free backward of the module docstring (for functions symmetric in the phases)."""
    return _Eigenphases.apply(w)


def _powers(w: torch.Tensor, k: int) -> list[torch.Tensor]:
    out = [w]
    for _ in range(k - 1):
        out.append(out[-1] @ w)
    return out


def _chebyshev_u(c: torch.Tensor, k: int) -> torch.Tensor:
    """U_0 … U_{k−1} of the second kind at c, stacked last: U_{n−1}(cos x) = sin(nx)/sin(x)."""
    out = [torch.ones_like(c), 2 * c]
    while len(out) < k:
        out.append(2 * c * out[-1] - out[-2])
    return torch.stack(out[:k], -1)


class SpectralMap:
    """θ ↦ θ + g(θ) − mean g(θ) on the eigenphases of SU(N) matrices (module docstring).

    ``__call__(w, params, inverse=False) -> (w′, ladj)``: w (..., N, N) complex, params (..., 2K) real
    (x_1..x_K, y_1..y_K), broadcast against w's leading axes; ladj (...) is the log-density change
    w.r.t. Haar of the direction applied (the inverse's is −ladj of the forward map at its output).
    """

    def __init__(self, n: int, n_harmonics: int = 4):
        if n < 2 or n_harmonics < 1:
            raise ValueError(f"a spectral map needs N >= 2 and n_harmonics >= 1, got N = {n}, {n_harmonics}")
        self.n, self.k = int(n), int(n_harmonics)
        self.n_params = 2 * self.k

    def coefficients(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_k, b_k), each (..., K), with Σ_k k²(|a_k| + |b_k|) < 1 − ε."""
        x, y = params.split(self.k, dim=-1)
        scale = (1 - MIN_SLOPE) / (1 + x.abs().sum(-1, keepdim=True) + y.abs().sum(-1, keepdim=True))
        k2 = torch.arange(1, self.k + 1, dtype=params.dtype, device=params.device) ** 2
        return scale * x / k2, scale * y / k2

    def _g(self, theta, a, b, order=1):
        """d^order ψ/dθ^order of one phase, θ (..., N), a, b (..., K) -> (..., N)."""
        k = torch.arange(1, self.k + 1, dtype=theta.dtype, device=theta.device)
        kt = k * theta.unsqueeze(-1)
        a, b = a.unsqueeze(-2), b.unsqueeze(-2)
        terms = {0: a * torch.cos(kt) + b * torch.sin(kt),
                 1: k * (b * torch.cos(kt) - a * torch.sin(kt)),
                 2: -k**2 * (a * torch.cos(kt) + b * torch.sin(kt))}[order]
        return terms.sum(-1)

    def generator(self, w, a, b) -> torch.Tensor:
        """H (..., N, N) Hermitian traceless with exp(iH) W = W′ (module docstring)."""
        h = 0
        for k, wk in enumerate(_powers(w, self.k), start=1):
            inv = wk.mH
            ak, bk = a[..., k - 1, None, None], b[..., k - 1, None, None]
            h = h + k * (ak * (wk - inv) * 0.5j + bk * (wk + inv) * 0.5)
        trace = torch.diagonal(h, dim1=-2, dim2=-1).sum(-1)
        return h - (trace / self.n)[..., None, None] * torch.eye(self.n, dtype=w.dtype, device=w.device)

    def _pair_ratios(self, theta, a, b):
        """r_ij = sin(δ′/2)/sin(δ/2) for the pairs i < j (``torch.triu_indices`` order), stably: with
        δ = θ_i − θ_j, σ = (θ_i + θ_j)/2, Δg = g(θ_i) − g(θ_j) = −2 Σ_k k sin(kδ/2)(a_k cos kσ + b_k sin kσ),
        q = Δg/(2 sin(δ/2)) = −Σ_k k U_{k−1}(cos δ/2)(a_k cos kσ + b_k sin kσ) and
        r = cos(Δg/2) + cos(δ/2) sinc(Δg/2) q, finite and positive for every δ (no 0/0 at δ = 0)."""
        i, j = torch.triu_indices(self.n, self.n, 1, device=theta.device)
        delta, sigma = theta[..., i] - theta[..., j], (theta[..., i] + theta[..., j]) / 2
        k = torch.arange(1, self.k + 1, dtype=theta.dtype, device=theta.device)
        ks = k * sigma.unsqueeze(-1)
        half = torch.cos(delta / 2)
        q = -(k * _chebyshev_u(half, self.k) * (a.unsqueeze(-2) * torch.cos(ks) + b.unsqueeze(-2) * torch.sin(ks))).sum(-1)
        dg = 2 * q * torch.sin(delta / 2)
        return torch.cos(dg / 2) + half * torch.sinc(dg / (2 * math.pi)) * q

    def log_det(self, theta, a, b) -> torch.Tensor:
        """ladj of the forward map at phases θ (..., N): Σ log d_i + log mean(1/d_i) + Σ_{i<j} 2 log r_ij."""
        d = 1 + self._g(theta, a, b, 2)
        return torch.log(d).sum(-1) + torch.log((1 / d).mean(-1)) + 2 * torch.log(self._pair_ratios(theta, a, b)).sum(-1)

    def forward_phases(self, theta, a, b) -> torch.Tensor:
        """θ′ = θ + g(θ) − mean g(θ), phases (..., N)."""
        g = self._g(theta, a, b)
        return theta + g - g.mean(-1, keepdim=True)

    def _map(self, w, a, b):
        return torch.linalg.matrix_exp(1j * self.generator(w, a, b)) @ w

    def __call__(self, w, params, inverse=False):
        a, b = self.coefficients(params)
        if not inverse:
            return self._map(w, a, b), self.log_det(eigenphases(w), a, b)
        return self._inverse(w, a, b)

    def rotation(self, w, params, inverse=False):
        """(R, ladj): the left factor R ∈ SU(N) of the map applied, W_out = R W, and its ladj (as
        ``__call__``): R = exp(iH(W)) forward, R = exp(−iH(W_out)) inverse at the solved W_out. An update
        U′ = R U of a link U with W = U S keeps U′ unitary to round-off; U′ = W_out W† U would carry the
        non-unitarity of every link of W into U′, an error that grows geometrically with depth."""
        a, b = self.coefficients(params)
        if not inverse:
            return torch.linalg.matrix_exp(1j * self.generator(w, a, b)), self.log_det(eigenphases(w), a, b)
        w_in, ladj = self._inverse(w, a, b)
        return torch.linalg.matrix_exp(-1j * self.generator(w_in, a, b)), ladj

    def _phase_step(self, residual, d):
        """The δθ with (D δθ − mean(D δθ)) = −residual and Σ δθ = 0: Newton's step on the phases."""
        return (-residual + (residual / d).sum(-1, keepdim=True) / (1 / d).sum(-1, keepdim=True)) / d

    def _solve(self, target, a, b, max_iter=100):
        """θ with forward_phases(θ) = target (no gradients): Newton's method on the plane Σθ = Σ target.
        Far from the root (residual > 1e-3) the step is the longest of 1, ½, ¼, … that passes Armijo's
        test on the strongly convex L(θ) = Σ_i [(θ_i − target_i)²/2 + ψ(θ_i)], so that it converges from
        anywhere; near it, full steps (quadratic convergence) until the residual stops falling."""
        t, a_, b_ = target.unsqueeze(-2), a.unsqueeze(-2), b.unsqueeze(-2)
        lengths = 0.5 ** torch.arange(30, dtype=target.dtype, device=target.device)
        theta, previous = target.clone(), math.inf
        for _ in range(max_iter):
            residual = self.forward_phases(theta, a, b) - target
            size = residual.abs().amax(-1, keepdim=True)
            if size.max() == 0 or (previous < 1e-8 and size.max() >= previous):  # at round-off
                break
            previous = size.max().item()
            step = self._phase_step(residual, 1 + self._g(theta, a, b, 2))
            far = size > 1e-3
            if far.any():
                trial = theta.unsqueeze(-2) + lengths[:, None] * step.unsqueeze(-2)  # (..., 30, N)
                potential = (0.5 * (trial - t) ** 2 + self._g(trial, a_, b_, 0)).sum(-1)
                now = (0.5 * (theta - target) ** 2 + self._g(theta, a, b, 0)).sum(-1, keepdim=True)
                armijo = potential <= now + 1e-4 * lengths * (residual * step).sum(-1, keepdim=True)
                first = torch.where(armijo, torch.arange(30, device=theta.device), 29).min(-1).values
                step = torch.where(far, lengths[first].unsqueeze(-1), 1.0) * step
            theta = theta + step
        return theta

    def _inverse(self, w_out, a, b):
        """W from W′ = exp(iH(W)) W (module docstring): W* from the eigenphases of W′ solved for θ,
        then one Newton step W = exp(Y) W* in su(N) whose linearisation J is diagonal in the
        eigenbasis Q of W′ (phases: `_phase_step`; pair (i, j): the factor r_ij e^{i(Δ_i − Δ_j)/2},
        Δ = θ′ − θ), applied to the eig-free residual E = P(W′ F(W*)†). It refines W* and carries the
        gradients (to W′ and the parameters) without differentiating any eigenvector."""
        with torch.no_grad():
            lam, v = torch.linalg.eig(w_out)
            q = torch.linalg.qr(v)[0]
            theta_out = torch.angle(lam)
            theta = self._solve(theta_out, a.detach(), b.detach())
            w = (q * torch.polar(torch.ones_like(theta), theta).to(q.dtype).unsqueeze(-2)) @ q.mH
            d = 1 + self._g(theta, a, b, 2)
            delta = theta_out - theta
            i, j = torch.triu_indices(self.n, self.n, 1, device=w.device)
            gain = torch.ones(*theta.shape, self.n, dtype=q.dtype, device=w.device)
            pair = self._pair_ratios(theta, a, b) * torch.polar(torch.ones_like(delta[..., i]), (delta[..., i] - delta[..., j]) / 2)
            gain[..., i, j], gain[..., j, i] = pair.to(q.dtype), pair.conj().to(q.dtype)
        e = q.mH @ traceless_antihermitian(w_out @ self._map(w, a, b).mH) @ q
        rho = torch.diagonal(e, dim1=-2, dim2=-1).imag
        shift = self._phase_step(-rho, d)
        y = torch.diagonal_scatter(e / gain, 1j * shift.to(q.dtype), dim1=-2, dim2=-1)
        return torch.linalg.matrix_exp(q @ y @ q.mH) @ w, -self.log_det(theta + shift, a, b)


class SpectralLayer(Bijection):
    """A `SpectralMap` with its own learned parameters (no context), on fields (B, *shape, N, N)."""

    def __init__(self, n: int, n_harmonics: int = 4):
        super().__init__()
        self.map = SpectralMap(n, n_harmonics)
        self.params = nn.Parameter(torch.zeros(self.map.n_params))

    def _map(self, x, inverse):
        y, ladj = self.map(x, self.params, inverse)
        return y, ladj.flatten(1).sum(1) if ladj.dim() > 1 else ladj

    def forward(self, x):
        return self._map(x, False)

    def inverse(self, y):
        return self._map(y, True)


def build_spectral_flow(n: int, n_layers: int = 4, n_harmonics: int = 4, field: SUN | None = None) -> Flow:
    """A flow on SU(N) matrices, samples (B, *field.shape) (default one matrix, (B, N, N)): the field's
    Haar prior and ``n_layers`` `SpectralLayer`s whose parameters every matrix shares; float32."""
    if n_layers < 1:
        raise ValueError(f"a stack needs at least one layer, got {n_layers}")
    field = SUN((n, n)) if field is None else field
    layers = [SpectralLayer(n, n_harmonics) for _ in range(n_layers)]
    return Flow(FieldPrior(field), Sequential(*layers)).to(torch.float32)


def build_sun_spectral(theory, n_layers: int = 4, n_harmonics: int = 4) -> Flow:
    """The registered ``sun-spectral`` model: `build_spectral_flow` on the theory's independent SU(N)
    matrices (a `suite.theories.sun_matrix.SUNMatrices` field (K, N, N)); every matrix gets the same map."""
    field = getattr(theory, "field", None)
    if not isinstance(field, SUN) or len(field.shape) != 3:
        raise ValueError("sun-spectral is a flow of independent SU(N) matrices (theory sun-matrix, fields (K, N, N))")
    return build_spectral_flow(field.n, n_layers, n_harmonics, field=field)
