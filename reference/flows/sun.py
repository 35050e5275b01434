"""Gauge-equivariant flows for SU(N) lattice gauge theory in d = 2, 3, 4 (Boyda et al., PRD 103, 074504
(2021), arXiv:2008.05456; the U(1) construction of Kanwar et al., PRL 125, 121601 (2020), `reference.flows.u1`).

Layout and conventions (as `suite.theories.sun`): links U_μ(x) ∈ SU(N), complex (B, d, *lattice, N, N);
plaquette U_μν(x) = U_μ(x) U_ν(x+μ̂) U_μ(x+ν̂)† U_ν(x)† (planes μ < ν, `reference.flows.loops`); a gauge
transformation acts as U_μ(x) → Ω(x) U_μ(x) Ω(x+μ̂)†. Prior: the Haar measure of the theory's field space
(`suite.fields.SUN`), log p = 0 (normalised Haar measure per link). ``forward`` maps the prior to the target.

Coupling layer for a direction μ, a plane (μ, ν) and an offset o: the stripes of
`reference.flows.masks.gauge_masks` (active links U_μ(x) with x_ν ≡ o mod p, active plaquettes of the
plane (μ, ν) at the same sites, frozen loops: those without an active link). The active loop of the link
U_μ(x) is the plaquette written to start with it: W = U_μν(x) for μ < ν and W = U_νμ(x)† =
U_μ(x) U_ν(x+μ̂) U_μ(x+ν̂)† U_ν(x)† for μ > ν (in 2D: U_01(x) for μ = 0, U_01(x)† for μ = 1); its other
three links are never active. A conjugation-equivariant map W ↦ W′
(`reference.flows.sun_spectral.SpectralMap`, parameters per active site from a periodic `ConvNet` in d
dimensions) replaces it, and the link moves as U′_μ(x) = W′ W† U_μ(x) (the U(1) flow's U′ = W′V†), so
that the active loop becomes W′. Since W′ = exp(iH(W)) W, the update is U′ = exp(iH(W)) U, H ∈ su(N) a
polynomial in W, W†, and it is computed so (`SpectralMap.rotation`; the inverse U = exp(−iH(W)) U′ at
the solved W): the links stay unitary to round-off at any depth, where W′W†U would pass the
non-unitarity of the loop's four links on to U′ and let it grow geometrically layer by layer.
The conditioner sees only gauge-invariant features of frozen loops: (1/N) Re and
Im of Tr W and Tr W² of the frozen plaquettes of all d(d−1)/2 planes (4 channels per plane, zero on
the other sites), with ``loops="plaquette+rectangle"`` also of the frozen 2×1 loops of both
orientations in every plane (8 more per plane). Per layer the Jacobian is block triangular: an active
link's update depends on no other active link, and each active link's block is that of W ↦ W′ (right
multiplication by the fixed rest of the loop preserves Haar measure), so ladj = Σ_active SpectralMap
ladj(W). Under Ω, W → Ω(x) W Ω(x)†, H → Ω(x) H Ω(x)† and the features are invariant, so the layer is
gauge equivariant and log q gauge invariant.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.flows.couplings import ConvNet
from reference.flows.loops import planes, plaquette_path, rectangle_paths, wilson_loop
from reference.flows.masks import LOOPS, gauge_layer_schedule, gauge_masks
from reference.flows.models import Flow
from reference.flows.priors import FieldPrior, field_prior
from reference.flows.sun_spectral import SpectralMap
from reference.flows.transforms import Bijection, Sequential
from suite.fields import SUN


def plaquettes(x: torch.Tensor) -> torch.Tensor:
    """U_01(x) of links (B, d, *lattice, N, N): (B, *lattice, N, N) (in 2D the plaquettes)."""
    return wilson_loop(x, plaquette_path(0, 1))


def trace_features(loops: torch.Tensor) -> torch.Tensor:
    """(1/N)(Re Tr W, Im Tr W, Re Tr W², Im Tr W²) of loops (B, C, *lattice, N, N): (B, 4C, *lattice),
    channels [Re Tr W of the C loops, Im Tr W, Re Tr W², Im Tr W²]."""
    n = loops.shape[-1]
    traces = [torch.diagonal(m, dim1=-2, dim2=-1).sum(-1) / n for m in (loops, loops @ loops)]
    return torch.cat([part for t in traces for part in (t.real, t.imag)], 1)


def haar_prior(theory, n: int) -> FieldPrior:
    """The Haar prior of the theory's `SUN` field space of links (d, *lattice, n, n)."""
    return field_prior(theory, SUN, (len(theory.lattice), *theory.lattice, n, n))


class SUNGaugeCoupling(Bijection):
    """One coupling layer (module docstring) on links (B, d, *lattice, N, N) for direction ``mu``, ``offset``
    and the plane (``mu``, ``nu``) (``nu`` may be omitted in 2D)."""

    def __init__(self, lattice, mu: int, offset: int, spectral_map: SpectralMap, net: nn.Module,
                 use_rectangles: bool = False, nu: int | None = None):
        super().__init__()
        lattice = tuple(int(n) for n in lattice)
        self.dim, self.mu, self.nu = len(lattice), mu, (1 - mu if nu is None else nu)
        self.map, self.net, self.use_rectangles = spectral_map, net, bool(use_rectangles)
        self.planes = planes(self.dim)
        self.plane = self.planes.index((min(mu, self.nu), max(mu, self.nu)))
        self.rectangle_paths = [path for a, b in self.planes for path in rectangle_paths(a, b)]
        active, frozen_plaq, frozen_rect = gauge_masks(lattice, mu, offset, self.nu)
        self.register_buffer("plaq_sites", active.flatten().nonzero().squeeze(1), persistent=False)
        self.register_buffer("link_sites", mu * active.numel() + self.plaq_sites, persistent=False)
        # the masks of the feature channels: each loop's mask once per trace feature (`trace_features`)
        self.register_buffer("frozen_plaq", frozen_plaq.repeat(4, *[1] * self.dim).float(), persistent=False)
        self.register_buffer("frozen_rect", frozen_rect.repeat(4, *[1] * self.dim).float(), persistent=False)

    def plaquettes(self, x: torch.Tensor) -> torch.Tensor:
        """U_ab(x) of every plane a < b: (B, P, *lattice, N, N)."""
        return torch.stack([wilson_loop(x, plaquette_path(a, b)) for a, b in self.planes], 1)

    def conditioner_input(self, x: torch.Tensor, plaq: torch.Tensor | None = None) -> torch.Tensor:
        """Trace features of the frozen loops, zero elsewhere: (B, 4P or 12P, *lattice); ``plaq`` the
        `plaquettes` of x if already computed."""
        plaq = self.plaquettes(x) if plaq is None else plaq
        features = trace_features(plaq) * self.frozen_plaq.to(plaq.real.dtype)
        if not self.use_rectangles:
            return features
        rect = torch.stack([wilson_loop(x, path) for path in self.rectangle_paths], 1)
        return torch.cat([features, trace_features(rect) * self.frozen_rect.to(plaq.real.dtype)], 1)

    def _couple(self, x, inverse):
        plaq = self.plaquettes(x)
        params = self.net(self.conditioner_input(x, plaq)).flatten(2)[..., self.plaq_sites].movedim(1, -1)
        loops = plaq[:, self.plane].flatten(1, self.dim)[:, self.plaq_sites]
        if self.mu > self.nu:
            loops = loops.mH
        rotation, ladj = self.map.rotation(loops, params, inverse)
        flat = x.flatten(1, self.dim + 1)
        links = rotation @ flat[:, self.link_sites]
        return flat.index_copy(1, self.link_sites, links).view_as(x), ladj.sum(-1)

    def forward(self, x):
        return self._couple(x, False)

    def inverse(self, y):
        return self._couple(y, True)


def build_sun_equivariant(theory, n_layers=16, n_harmonics=4, hidden=(8, 8), kernel_size=3,
                          loops="plaquette") -> Flow:
    """The gauge-equivariant plaquette-coupling flow for SU(N) on ``theory.lattice`` (d = 2, 3 or 4).

    Layer i acts on direction μ = i mod d in the plane (μ, ν) with the offset o of
    `gauge_layer_schedule` (2D: ν = 1 − μ, o = (i // 2) mod p); every link is updated within the
    first d·p layers for the stripe period p (16 on 4^4, 8 on 2^4); each applies a `SpectralMap`
    with ``n_harmonics`` harmonics of the class-function potential to its active loops. The
    conditioners are `ConvNet`s with ``hidden`` channels and kernel ``kernel_size``^d (in 4D
    `reference.flows.couplings.PeriodicConv4d`). ``loops``: "plaquette" or "plaquette+rectangle"
    (conditioner features). N is read from the theory's field space (``theory.field.shape[-1]``) or
    ``theory.n``. Returns a float32 `Flow` on links (B, d, *lattice, N, N), complex64 (complex128 after
    ``.double()``).
    """
    if loops not in LOOPS:
        raise ValueError(f"unknown loops {loops!r}; expected one of {', '.join(LOOPS)}")
    lattice = tuple(int(n) for n in theory.lattice)
    if len(lattice) not in (2, 3, 4):
        raise ValueError(f"the SU(N) gauge-equivariant flow is for d = 2, 3, 4, got lattice {list(lattice)}")
    field = getattr(theory, "field", None)
    n = field.shape[-1] if isinstance(field, SUN) else getattr(theory, "n", None)
    if n is None:
        raise ValueError("the SU(N) flow needs an SU(N) theory (a SUN field space or an attribute n)")
    rect = loops == "plaquette+rectangle"
    n_features = 4 * len(planes(len(lattice))) * (3 if rect else 1)
    layers = []
    for mu, nu, offset in gauge_layer_schedule(lattice, n_layers):
        spectral = SpectralMap(n, n_harmonics)
        net = ConvNet(n_features, hidden, spectral.n_params, kernel_size, dim=len(lattice), final_tanh=False)
        layers.append(SUNGaugeCoupling(lattice, mu, offset, spectral, net, rect, nu))
    return Flow(haar_prior(theory, n), Sequential(*layers)).to(torch.float32)
