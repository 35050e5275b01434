"""The marginal + conditional model of the two-flavour Schwinger model with pseudofermions,
q(U, φ) = q(U) q(φ | U) (Albergo et al., arXiv:2106.05934; Abbott et al., arXiv:2207.08945).

Conventions as `suite.fermions` (links θ (B, 2, L0, L1), fermion fields (B, L0, L1, 2) complex, D in
the hopping-parameter normalisation, antiperiodic in time) and `suite.theories.schwinger` (the
pseudofermion form's weight e^{−S_g − φ†(D†D)⁻¹φ}, a density in φ w.r.t. d²φ = Π dRe φ dIm φ).

* q(U): the gauge-equivariant U(1) flow of `reference.flows.u1` (its hyperparameters), exact
  marginal density: ``sample`` and ``log_prob`` are the `Flow`'s, on links alone.
* q(φ | U): φ = M[U] χ, χ complex Gaussian with density π^{−2V} e^{−χ†χ} (Re and Im of each of the
  2V components N(0, ½)), and the linear map

      M[U] = 1 + Σ_{k=1}^{n} a_k[U] K[U]^k,
      K ψ(x) = κ Σ_μ [(1 + γ_μ) U_μ(x) ψ(x+μ̂) + (1 − γ_μ) U_μ†(x−μ̂) ψ(x−μ̂)],

  K = 1 − D† the hopping term of D†, n = ``pf_order``. The a_k[U] are real fields on the sites
  (diagonal matrices acting after K^k) from a ConvNet on cos and sin of the plaquettes, so gauge
  invariant; the bias of its last layer is their global part. K^k parallel-transports χ along
  every path of k hops, K[U^Ω] = Ω K[U] Ω†, hence M[U^Ω] = Ω M[U] Ω†: (U, χ) → (U^Ω, Ωχ) gives
  φ → Ωφ, and log q(U, φ) is invariant under (U, φ) → (U^Ω, Ωφ).
  A fresh model has M = D† exactly (a_1 = −1, the other a_k = 0: last layer weights zero, bias
  (−1, 0, ...)), the exact conditional: q(φ | U) = π^{−2V} e^{−φ†(D†D)⁻¹φ} / det(D†D), with which
  log p(U, φ) − log q(U, φ) = −S_g + log det(D†D) + 2V log π − log q(U) does not depend on φ.
  The joint reverse KL is KL(q(U)‖p(U)) + E_q(U) KL(q(φ|U)‖p(φ|U)); its second term vanishes at
  MM† = D†D, where training starts (the learned terms are where cheaper maps with a structured
  determinant would enter).
* log q(φ | U) = −χ†χ − 2V log π − 2 log|det M[U]| (a complex-linear map has real Jacobian
  |det M|²), with log|det M| by slogdet of the dense 2V × 2V matrix (index order of
  `suite.fermions.dense`): exact, O(V³) per configuration, for the small lattices this model is
  for (as the theory's exact form). φ itself is drawn with the stencil (k applications of K),
  which the tests check against the dense matrix; ``log_prob_pseudofermions`` solves M χ = φ densely.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reference.flows.couplings import ConvNet
from reference.flows.models import Flow
from reference.flows.u1 import build_u1_equivariant, plaquette_angle
from suite import fermions


class PseudofermionMap(nn.Module):
    """M[U] = 1 + Σ_k a_k[U] K[U]^k (module docstring), starting at D†; ``order`` ≥ 1 terms."""

    def __init__(self, kappa: float, order: int = 2, hidden=(8,), kernel_size: int = 3):
        super().__init__()
        if order < 1:
            raise ValueError(f"pf_order must be >= 1, got {order}")
        self.kappa = float(kappa)
        self.net = ConvNet(2, hidden, order, kernel_size, dim=2, final_tanh=False)
        last = self.net[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
            last.bias[0] = -1.0  # M = 1 − K = D†

    def coefficients(self, theta: torch.Tensor) -> torch.Tensor:
        """a_k(x), shape (B, order, L0, L1), from cos and sin of the plaquettes (gauge invariant)."""
        plaq = plaquette_angle(theta).unsqueeze(1)
        return self.net(torch.cat([torch.cos(plaq), torch.sin(plaq)], 1))

    def apply(self, theta: torch.Tensor, chi: torch.Tensor) -> torch.Tensor:
        """M[U] χ by the stencil: links (B, 2, L0, L1), χ (B, L0, L1, 2) complex."""
        stencil = fermions.Stencil(theta, self.kappa, chi.dtype)
        out, power = chi, chi
        for a in self.coefficients(theta).unbind(1):
            power = power - stencil.hop(power, -1)  # K ψ = ψ − D†ψ
            out = out + a[..., None].to(chi.dtype) * power
        return out

    def dense(self, theta: torch.Tensor) -> torch.Tensor:
        """The matrix of M[U], (B, 2V, 2V), index (x_0·L1 + x_1)·2 + s as `suite.fermions.dense`."""
        eye = torch.eye(2 * theta[0, 0].numel(), dtype=fermions.complex_dtype(theta.dtype), device=theta.device)
        hopping = eye - fermions.dense(theta, self.kappa).mH  # K = 1 − D†
        out, power = eye, eye
        for a in self.coefficients(theta).unbind(1):
            power = hopping @ power
            out = out + a.flatten(1).repeat_interleave(2, 1)[..., None].to(hopping.dtype) * power
        return out

    def log_abs_det(self, theta: torch.Tensor) -> torch.Tensor:
        """log|det M[U]| per configuration, (B,), by dense slogdet."""
        return torch.linalg.slogdet(self.dense(theta)).logabsdet


def gaussian_log_density(chi: torch.Tensor) -> torch.Tensor:
    """log of π^{−n} e^{−χ†χ} over the trailing (L0, L1, 2) components, n their number."""
    n = math.prod(chi.shape[-3:])
    return -(chi.abs() ** 2).sum((-3, -2, -1)) - n * math.log(math.pi)


class PseudofermionFlow(Flow):
    """q(U, φ) = q(U) q(φ | U): the gauge flow's ``sample`` and ``log_prob`` (the marginal q(U)),
    and φ = M[U] χ (``pseudofermions``, a `PseudofermionMap`)."""

    def __init__(self, gauge: Flow, pseudofermions: PseudofermionMap):
        super().__init__(gauge.prior, gauge.transform)
        self.pseudofermions = pseudofermions

    def sample_pseudofermions(self, theta: torch.Tensor, n: int = 1, generator=None):
        """n draws φ ~ q(φ | U) for each configuration of links θ (B, 2, L0, L1): φ (B, n, L0, L1, 2)
        and log q(φ | U) (B, n)."""
        batch, lattice = theta.shape[0], theta.shape[2:]
        chi = torch.randn((batch * n, *lattice, 2), generator=generator, dtype=fermions.complex_dtype(theta.dtype),
                          device=theta.device)
        phi = self.pseudofermions.apply(theta.repeat_interleave(n, 0), chi)
        log_q = gaussian_log_density(chi).view(batch, n) - 2 * self.pseudofermions.log_abs_det(theta)[:, None]
        return phi.view(batch, n, *lattice, 2), log_q

    def log_prob_pseudofermions(self, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """log q(φ | U), (B,), for φ (B, L0, L1, 2): χ = M⁻¹φ by a dense solve."""
        matrix = self.pseudofermions.dense(theta)
        chi = torch.linalg.solve(matrix, phi.reshape(phi.shape[0], -1, 1).to(matrix.dtype)).view(phi.shape)
        return gaussian_log_density(chi) - 2 * torch.linalg.slogdet(matrix).logabsdet

    def sample_joint(self, n: int, generator=None):
        """n draws (U, φ) ~ q: links (n, 2, L0, L1), φ (n, L0, L1, 2), log q(U, φ) (n,)."""
        theta, log_q = self.sample(n, generator=generator)
        phi, log_q_phi = self.sample_pseudofermions(theta, 1, generator=generator)
        return theta, phi[:, 0], log_q + log_q_phi[:, 0]


def build_schwinger_pf_flow(theory, n_layers=16, transform="ncp", n_mixture=6, n_bins=8, hidden=(8, 8),
                            kernel_size=3, loops="plaquette", pf_order=2, pf_hidden=(8,)) -> PseudofermionFlow:
    """q(U) q(φ | U) for a theory with Wilson fermions (``theory.kappa``; the Schwinger model): the
    ``u1-equivariant`` flow with the first seven hyperparameters, and M[U] with ``pf_order`` hopping
    terms whose coefficient fields come from a ConvNet with ``pf_hidden`` channels (module docstring).
    Float32, as every reference flow."""
    kappa = getattr(theory, "kappa", None)
    if kappa is None:
        raise ValueError("the pseudofermion flow needs a theory with Wilson fermions (a hopping parameter "
                         "kappa: the schwinger theory)")
    gauge = build_u1_equivariant(theory, n_layers=n_layers, transform=transform, n_mixture=n_mixture,
                                 n_bins=n_bins, hidden=hidden, kernel_size=kernel_size, loops=loops)
    return PseudofermionFlow(gauge, PseudofermionMap(kappa, pf_order, pf_hidden, kernel_size)).to(torch.float32)
