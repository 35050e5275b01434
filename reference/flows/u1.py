"""Gauge-equivariant flows for 2D U(1) lattice gauge theory (Kanwar et al., PRL 125, 121601 (2020),
arXiv:2003.06413; the U(1) section of the tutorial arXiv:2101.08176).

Layout and conventions (as `suite.theories.u1`): links are angles θ_μ(x) of shape (B, 2, L0, L1),
μ = 0, 1 on axis 1, stored wrapped in (−π, π]; the plaquette angle is
θ_P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x); a gauge transformation acts as
θ_μ(x) → α(x) + θ_μ(x) − α(x+μ̂). ``forward`` maps the prior to the target (`transforms`).

Prior: Haar measure, i.e. uniform angles, log p = −2V log 2π (V = L0·L1): the theory's field space
(`suite.fields.TorusSpace`, `reference.flows.priors.FieldPrior`).

Coupling layer (the tutorial's ``GaugeEquivCouplingLayer`` + ``NCPPlaqCouplingLayer``) for a
direction μ and an offset o, with ν = 1 − μ and stripes repeating with period p along axis ν
(p = 4 as in the tutorial whenever 4 divides L_ν; otherwise 3 or 2, the largest dividing L_ν;
`reference.flows.masks.gauge_masks`, shared with the SU(N) flow):

* active links: θ_μ(x) with x_ν ≡ o (mod p), every x_μ;
* active plaquettes: θ_P(x) with x_ν ≡ o (each contains exactly one active link, the one at x);
  passive: x_ν ≡ o − 1 (they contain an active link, but only change as a consequence);
  frozen: all others (they contain no active link, so the layer leaves them unchanged);
* an elementwise circle map f, its parameters computed per site by a ConvNet (circular padding)
  from cos and sin of the frozen plaquettes (both channels zeroed on the other sites; the
  tutorial zeroes the angles before cos/sin, which gives (1, 0) there), maps each active
  plaquette θ_P → θ′_P = f(θ_P); the active link moves by the same amount, θ_μ(x) += ±(θ′_P − θ_P)
  (+ for μ = 0, − for μ = 1, the sign of θ_μ(x) in θ_P(x); the tutorial's U′ = W′ V†), so the
  active plaquette becomes θ′_P (mod 2π). The Jacobian on links is triangular and
  ladj = Σ_active log f′(θ_P). Plaquettes are gauge invariant, so the layer is gauge equivariant.
* ``loops="plaquette+rectangle"`` also feeds cos and sin of the frozen 2×1 loops (both
  orientations, R_a(x) = θ_P(x) + θ_P(x+â)), a loop counting as frozen when no active link lies
  on its perimeter (4 more input channels).

Circle maps on (−π, π], parameters (..., n_params) per active plaquette:

* ``NCPMixture``: Σ_i w_i · 2 atan(e^{s_i} tan(x/2)) followed by a rotation by t (the tutorial's
  ``mixture_tan_transform``; its equal weights are w = softmax of equal logits; here the weight
  logits are learned too, as in Rezende et al. 2020). Inverse: bisection to round-off, plus an
  implicit-function correction that carries gradients to the parameters.
* ``CircularSpline``: the rational-quadratic spline of `splines` on [−π, π] with a learned
  derivative shared by both ends (a C¹ diffeomorphism of the circle; Rezende et al. 2020,
  arXiv:2002.02428), then a rotation by t.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reference.flows.couplings import ConvNet
from reference.flows.masks import LOOPS, gauge_layer_schedule, gauge_masks
from reference.flows.models import Flow
from reference.flows.priors import FieldPrior, field_prior
from reference.flows.splines import SplineParameters, rational_quadratic_spline
from reference.flows.transforms import Bijection, Sequential
from suite.fields import TorusSpace, wrap_angle
from suite.lattice import shift
from suite.theories.u1 import U1

plaquette_angle = U1.plaquette_angle  # (B, 2, L0, L1) -> (B, L0, L1), unwrapped
TRANSFORMS = ("ncp", "spline")


def haar_prior(theory) -> FieldPrior:
    """The Haar prior (uniform angles) of the theory's `TorusSpace` of links (2, L0, L1)."""
    return field_prior(theory, TorusSpace, (2, *theory.lattice))


def _ncp(x, s):
    """2 atan(e^s tan(x/2)) and its log-derivative; a monotone bijection of (−π, π] fixing 0 and ±π."""
    half = x / 2
    y = 2 * torch.atan(torch.exp(s) * torch.tan(half))
    ladj = -torch.log(torch.exp(-s) * torch.cos(half) ** 2 + torch.exp(s) * torch.sin(half) ** 2)
    return y, ladj


class NCPMixture:
    """x ↦ wrap(Σ_i w_i ncp_{s_i}(x) + t); parameters (..., 2n+1) = (s (n), weight logits (n), t)."""

    def __init__(self, n_mixture: int = 6):
        if n_mixture < 1:
            raise ValueError(f"n_mixture must be >= 1, got {n_mixture}")
        self.n = int(n_mixture)
        self.n_params = 2 * self.n + 1

    def _mix(self, x, s, log_w):
        y, ladj = _ncp(x.unsqueeze(-1), s)
        return (log_w.exp() * y).sum(-1), torch.logsumexp(log_w + ladj, -1)

    def __call__(self, x, p, inverse=False):
        s, logits, t = p.split((self.n, self.n, 1), dim=-1)
        log_w, t = torch.log_softmax(logits, -1), t.squeeze(-1)
        if not inverse:
            y, ladj = self._mix(x, s, log_w)
            return wrap_angle(y + t), ladj
        target = wrap_angle(x - t)
        with torch.no_grad():  # bisection: the mixture is increasing from −π to π
            lo, hi = torch.full_like(target, -math.pi), torch.full_like(target, math.pi)
            for _ in range(-math.frexp(torch.finfo(x.dtype).eps)[1] + 4):  # to the last bit
                mid = (lo + hi) / 2
                below = self._mix(mid, s, log_w)[0] < target
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            root = (lo + hi) / 2
        # the value stays the root; gradients follow the implicit function, dx = (dy − ∂_p g·dp) / g'(x)
        value, ladj = self._mix(root, s, log_w)
        step = (target - value) / ladj.detach().exp()
        root = root + step - step.detach()
        return root, -self._mix(root, s, log_w)[1]


class CircularSpline(SplineParameters):
    """x ↦ wrap(spline(x) + t), spline on [−π, π] with d_0 = d_K; parameters (..., 3K+1) =
    (width logits K, height logits K, interior derivative logits K−1, end derivative logit, t)."""

    def __call__(self, x, p, inverse=False):
        k = self.n_bins
        w, h, d, edge, t = p.split((k, k, k - 1, 1, 1), dim=-1)
        t = t.squeeze(-1)
        v = wrap_angle(x - t) if inverse else x
        y, ladj = rational_quadratic_spline(v, w, h, d, bound=math.pi, inverse=inverse,
                                            boundary_derivatives=edge.squeeze(-1))
        return (y if inverse else wrap_angle(y + t)), ladj

    def reflect(self, p):
        """The parameters of the mirrored map x ↦ −f(−x): bins, heights and interior derivatives
        reversed, the end derivative kept, the rotation negated (the point reflection of a
        rational-quadratic spline is the spline with mirrored knots; `reference.flows.couplings`)."""
        k = self.n_bins
        w, h, d, edge, t = p.split((k, k, k - 1, 1, 1), dim=-1)
        return torch.cat([w.flip(-1), h.flip(-1), d.flip(-1), edge, -t], dim=-1)


def rectangle_angles(plaq: torch.Tensor) -> torch.Tensor:
    """The 2×1 loop angles R_a(x) = θ_P(x) + θ_P(x+â), a = 0, 1: (B, L0, L1) -> (B, 2, L0, L1)."""
    return torch.stack([plaq + shift(plaq, a) for a in (0, 1)], 1)


class GaugeEquivariantCoupling(Bijection):
    """One coupling layer (module docstring) on links (B, 2, L0, L1) for direction ``mu``, ``offset``."""

    def __init__(self, lattice, mu: int, offset: int, circle_map, net: nn.Module, use_rectangles: bool = False):
        super().__init__()
        self.mu, self.map, self.net, self.use_rectangles = mu, circle_map, net, bool(use_rectangles)
        self.sign = 1.0 if mu == 0 else -1.0
        active, frozen_plaq, frozen_rect = gauge_masks(lattice, mu, offset)
        self.register_buffer("plaq_sites", active.flatten().nonzero().squeeze(1), persistent=False)
        self.register_buffer("link_sites", mu * active.numel() + self.plaq_sites, persistent=False)
        self.register_buffer("frozen_plaq", frozen_plaq[0].float(), persistent=False)  # the one plane
        self.register_buffer("frozen_rect", frozen_rect.float(), persistent=False)

    def conditioner_input(self, plaq: torch.Tensor) -> torch.Tensor:
        """cos, sin of the frozen loops (zero elsewhere): (B, L0, L1) -> (B, 2 or 6, L0, L1)."""
        loops, masks = [plaq.unsqueeze(1)], [self.frozen_plaq.expand(1, -1, -1)]
        if self.use_rectangles:
            loops.append(rectangle_angles(plaq))
            masks.append(self.frozen_rect)
        loops, masks = torch.cat(loops, 1), torch.cat(masks).to(plaq.dtype)
        return torch.cat([torch.cos(loops) * masks, torch.sin(loops) * masks], 1)

    def _couple(self, x, inverse):
        plaq = plaquette_angle(x)
        params = self.net(self.conditioner_input(plaq)).flatten(2)[..., self.plaq_sites].movedim(1, -1)
        old = wrap_angle(plaq.flatten(1)[:, self.plaq_sites])
        new, ladj = self.map(old, params, inverse)
        flat = x.flatten(1)
        links = wrap_angle(flat[:, self.link_sites] + self.sign * (new - old))
        return flat.index_copy(1, self.link_sites, links).view_as(x), ladj.sum(-1)

    def forward(self, x):
        return self._couple(x, False)

    def inverse(self, y):
        return self._couple(y, True)


def build_u1_equivariant(theory, n_layers=16, transform="ncp", n_mixture=6, n_bins=8, hidden=(8, 8),
                         kernel_size=3, loops="plaquette") -> Flow:
    """The gauge-equivariant flow of Kanwar et al. 2020 for 2D U(1) on ``theory.lattice`` (L0, L1).

    Layer i acts on direction μ = i mod 2 with offset (i // 2) mod p (the tutorial's
    ``make_u1_equiv_layers``). ``transform``: "ncp" (mixture of ``n_mixture`` NCP maps) or
    "spline" (circular spline with ``n_bins`` bins); ``loops``: "plaquette" or
    "plaquette+rectangle". Returns a float32 `Flow` on links (B, 2, L0, L1) in (−π, π].
    """
    lattice = tuple(int(n) for n in theory.lattice)
    if len(lattice) != 2:
        raise ValueError(f"the U(1) gauge-equivariant flow is two-dimensional, got lattice {list(lattice)}")
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
    if loops not in LOOPS:
        raise ValueError(f"unknown loops {loops!r}; expected one of {', '.join(LOOPS)}")
    layers = []
    for mu, _, offset in gauge_layer_schedule(lattice, n_layers):
        circle_map = NCPMixture(n_mixture) if transform == "ncp" else CircularSpline(n_bins)
        rect = loops == "plaquette+rectangle"
        net = ConvNet(6 if rect else 2, hidden, circle_map.n_params, kernel_size, dim=2, final_tanh=False)
        layers.append(GaugeEquivariantCoupling(lattice, mu, offset, circle_map, net, rect))
    return Flow(haar_prior(theory), Sequential(*layers)).to(torch.float32)
