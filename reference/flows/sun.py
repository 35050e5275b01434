"""Gauge-equivariant flows for 2D SU(N) lattice gauge theory (Boyda et al., PRD 103, 074504 (2021),
arXiv:2008.05456; the U(1) construction of Kanwar et al., PRL 125, 121601 (2020), `reference.flows.u1`).

Layout and conventions (as `suite.theories.sun`): links U_μ(x) ∈ SU(N), complex (B, 2, L0, L1, N, N);
plaquette U_01(x) = U_0(x) U_1(x+0̂) U_0(x+1̂)† U_1(x)†; a gauge transformation acts as
U_μ(x) → Ω(x) U_μ(x) Ω(x+μ̂)†. Prior: the Haar measure of the theory's field space (`suite.fields.SUN`),
log p = 0 (normalised Haar measure per link). ``forward`` maps the prior to the target.

Coupling layer for a direction μ and an offset o: the stripes of `reference.flows.masks.gauge_masks`
(active links U_μ(x) with x_ν ≡ o mod p, active plaquettes at the same sites, passive at x_ν ≡ o − 1,
frozen elsewhere). The active loop of the link U_μ(x) is the plaquette written to start with it:
W = U_01(x) for μ = 0 and W = U_01(x)† = U_1(x) U_0(x+1̂) U_1(x+0̂)† U_0(x)† for μ = 1. A
conjugation-equivariant map W ↦ W′ (`reference.flows.sun_spectral.SpectralMap`, parameters per active
site from a ConvNet with circular padding) replaces it, and the link moves as U′_μ(x) = W′ W† U_μ(x)
(the U(1) flow's U′ = W′V†), so that the active loop becomes W′. Since W′ = exp(iH(W)) W, the update is
U′ = exp(iH(W)) U, H ∈ su(N) a polynomial in W, W†. The conditioner sees only gauge-invariant
features of frozen loops: (1/N) Re and Im of Tr W and Tr W² of the frozen plaquettes (4 channels,
zero on the other sites), with ``loops="plaquette+rectangle"`` also of the frozen 2×1 loops of both
orientations (8 more). Per layer the Jacobian is block triangular: each active link's block is
that of W ↦ W′ (right multiplication by the fixed rest of the loop preserves Haar measure), so
ladj = Σ_active SpectralMap ladj(W). Under Ω, W → Ω(x) W Ω(x)†, H → Ω(x) H Ω(x)† and the features are
invariant, so the layer is gauge equivariant and log q gauge invariant. Two dimensions only.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.flows.couplings import ConvNet
from reference.flows.masks import LOOPS, gauge_layer_schedule, gauge_masks
from reference.flows.models import Flow
from reference.flows.priors import FieldPrior, field_prior
from reference.flows.sun_spectral import SpectralMap
from reference.flows.transforms import Bijection, Sequential
from suite.fields import SUN
from suite.lattice import shift

def _at(u: torch.Tensor, axis: int, step: int = 1) -> torch.Tensor:
    """A field of matrices (B, L0, L1, N, N) at x + step·(axis)̂ (periodic)."""
    return shift(u, axis, step, first=1)


def plaquettes(x: torch.Tensor) -> torch.Tensor:
    """U_01(x) of links (B, 2, L0, L1, N, N): (B, L0, L1, N, N)."""
    u0, u1 = x[:, 0], x[:, 1]
    return u0 @ _at(u1, 0) @ _at(u0, 1).mH @ u1.mH


def rectangles(x: torch.Tensor) -> torch.Tensor:
    """The 2×1 loops at x, long side along axis a = 0, 1 (plaquettes x and x + â):
    (B, 2, L0, L1, N, N)."""
    u0, u1 = x[:, 0], x[:, 1]
    long0 = u0 @ _at(u0, 0) @ _at(u1, 0, 2) @ _at(_at(u0, 0), 1).mH @ _at(u0, 1).mH @ u1.mH
    long1 = u0 @ _at(u1, 0) @ _at(_at(u1, 0), 1) @ _at(u0, 1, 2).mH @ _at(u1, 1).mH @ u1.mH
    return torch.stack([long0, long1], 1)


def trace_features(loops: torch.Tensor) -> torch.Tensor:
    """(1/N)(Re Tr W, Im Tr W, Re Tr W², Im Tr W²) of loops (B, C, L0, L1, N, N): (B, 4C, L0, L1)."""
    n = loops.shape[-1]
    traces = [torch.diagonal(m, dim1=-2, dim2=-1).sum(-1) / n for m in (loops, loops @ loops)]
    return torch.cat([part for t in traces for part in (t.real, t.imag)], 1)


def haar_prior(theory, n: int) -> FieldPrior:
    """The Haar prior of the theory's `SUN` field space of links (2, L0, L1, n, n)."""
    return field_prior(theory, SUN, (2, *theory.lattice, n, n))


class SUNGaugeCoupling(Bijection):
    """One coupling layer (module docstring) on links (B, 2, L0, L1, N, N) for ``mu``, ``offset``."""

    def __init__(self, lattice, mu: int, offset: int, spectral_map: SpectralMap, net: nn.Module,
                 use_rectangles: bool = False):
        super().__init__()
        self.mu, self.map, self.net, self.use_rectangles = mu, spectral_map, net, bool(use_rectangles)
        active, frozen_plaq, frozen_rect = gauge_masks(lattice, mu, offset)
        self.register_buffer("plaq_sites", active.flatten().nonzero().squeeze(1), persistent=False)
        self.register_buffer("link_sites", mu * active.numel() + self.plaq_sites, persistent=False)
        self.register_buffer("frozen_plaq", frozen_plaq.float(), persistent=False)
        self.register_buffer("frozen_rect", frozen_rect.float(), persistent=False)

    def conditioner_input(self, x: torch.Tensor) -> torch.Tensor:
        """Trace features of the frozen loops, zero elsewhere: (B, 4 or 12, L0, L1)."""
        plaq = plaquettes(x)
        features = trace_features(plaq.unsqueeze(1)) * self.frozen_plaq.to(plaq.real.dtype)
        if not self.use_rectangles:
            return features
        rect = trace_features(rectangles(x)) * self.frozen_rect.repeat(4, 1, 1).to(plaq.real.dtype)
        return torch.cat([features, rect], 1)

    def _couple(self, x, inverse):
        params = self.net(self.conditioner_input(x)).flatten(2)[..., self.plaq_sites].movedim(1, -1)
        loops = plaquettes(x).flatten(1, 2)[:, self.plaq_sites]
        if self.mu == 1:
            loops = loops.mH
        new, ladj = self.map(loops, params, inverse)
        flat = x.flatten(1, 3)
        links = new @ loops.mH @ flat[:, self.link_sites]
        return flat.index_copy(1, self.link_sites, links).view_as(x), ladj.sum(-1)

    def forward(self, x):
        return self._couple(x, False)

    def inverse(self, y):
        return self._couple(y, True)


def build_sun_equivariant(theory, n_layers=16, n_harmonics=4, hidden=(8, 8), kernel_size=3,
                          loops="plaquette") -> Flow:
    """The gauge-equivariant plaquette-coupling flow for 2D SU(N) on ``theory.lattice`` (L0, L1).

    Layer i acts on direction μ = i mod 2 with offset (i // 2) mod p (`gauge_layer_schedule`); each
    applies a `SpectralMap` with ``n_harmonics`` harmonics of the class-function potential to its
    active loops. ``loops``: "plaquette" or "plaquette+rectangle" (conditioner features). N is read
    from the theory's field space (``theory.field.shape[-1]``) or ``theory.n``. Returns a float32
    `Flow` on links (B, 2, L0, L1, N, N), complex64 (complex128 after ``.double()``).
    """
    if loops not in LOOPS:
        raise ValueError(f"unknown loops {loops!r}; expected one of {', '.join(LOOPS)}")
    lattice = tuple(int(n) for n in theory.lattice)
    if len(lattice) != 2:
        raise ValueError(f"the SU(N) gauge-equivariant flow is two-dimensional, got lattice {list(lattice)}")
    field = getattr(theory, "field", None)
    n = field.shape[-1] if isinstance(field, SUN) else getattr(theory, "n", None)
    if n is None:
        raise ValueError("the SU(N) flow needs an SU(N) theory (a SUN field space or an attribute n)")
    rect = loops == "plaquette+rectangle"
    layers = []
    for mu, offset in gauge_layer_schedule(lattice, n_layers):
        spectral = SpectralMap(n, n_harmonics)
        net = ConvNet(12 if rect else 4, hidden, spectral.n_params, kernel_size, dim=2, final_tanh=False)
        layers.append(SUNGaugeCoupling(lattice, mu, offset, spectral, net, rect))
    return Flow(haar_prior(theory, n), Sequential(*layers)).to(torch.float32)
