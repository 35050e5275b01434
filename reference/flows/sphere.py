"""Equivariant coupling flows for sigma models: O(3) spins on S² and CP(N−1) fields.

Layout (as `suite.theories.on` and `suite.theories.cpn`): O(3) spins s_x, real (B, *lattice, 3) with
|s_x| = 1; CP(N−1) fields z_x, complex (B, *lattice, N) with |z_x| = 1, a point being the class
{e^{iα} z_x}. ``forward`` maps the prior to the target (`transforms`).

Density and prior. log q is a density with respect to the surface measure of the spheres, S² per
site for O(3) and S^{2N−1} per site for CP(N−1): the measure of the field spaces' ``prior_log_prob``
(`suite.fields.SphereSpace`, `suite.fields.ProjectiveSpace`), whose uniform prior the flows start
from, log p = −V log 4π and −V log |S^{2N−1}|. The CP(N−1) maps commute with the phase rotations, so
log q is phase invariant: it is the density on CP(N−1) with respect to the Fubini–Study volume times
the uniform density of the phases, the field space's convention.

Masks: checkerboard, the parity alternating from layer to layer (`suite.lattice.checkerboard`), so
that every neighbour x ± μ̂ of an active site is frozen (even extents needed). A layer moves every
active site by a bijection of its sphere fixed by its 2d frozen neighbours and by spline parameters
that a ConvNet (circular padding; `reference.flows.couplings.ConvNet`) computes from invariant
features of the frozen neighbourhoods, placed on the active sites (zero on the frozen ones). The
Jacobian is block triangular: ladj = Σ_active log-det of the site maps.

O(3) layer, `SphereMap` (after the S² flows of Rezende et al., "Normalizing flows on tori and
spheres", PMLR 119 (2020) 8083, arXiv:2002.02428: splines of cos θ and of the azimuth, here in a frame
set by the frozen neighbours and with the two maps conditioned only on those, not on each other):

* frame: n = Σ_k s_k / |Σ_k s_k| over the neighbours s_1 … s_2d (in the order x+0̂, x+1̂, …, x−0̂,
  x−1̂, …), or n = s_1 where |Σ_k s_k| < FRAME_TOL (neighbours that cancel); the reference
  direction e is the normalised part perpendicular to n of the first neighbour whose perpendicular
  part exceeds FRAME_TOL, and e' = n × e completes the frame.
* the site map: cos θ = s·n is moved by a monotone rational-quadratic spline of [−1, 1] onto itself
  with free end slopes (`IntervalSpline`, `reference.flows.splines`), the azimuth φ = atan2(s·e', s·e)
  by a circular spline and a rotation (`reference.flows.u1.CircularSpline`), and
  s' = cos θ' n + sin θ' (cos φ' e + sin φ' e'). The area element is d cos θ dφ, so the log-det is
  log |d cos θ'/d cos θ| + log |dφ'/dφ|.
* degenerate frames: where no neighbour has a perpendicular part above FRAME_TOL (every neighbour
  parallel or antiparallel to n) there is no reference direction, and the azimuth is left alone
  (the perpendicular part of s keeps its direction; only cos θ moves). The conditional target
  exp(β s·Σ_k s_k) is symmetric about n there anyway. The frame jumps where a length crosses
  FRAME_TOL, a set of frozen configurations of measure zero; every site map stays a bijection with
  its exact log-det on both sides.
* equivariance under global O(3), s → R s: the frame turns with the spins, except e' = n × e →
  det R · R e', so φ → det R · φ. The conditioner's features are the dot products s_k·s_l
  (scalars) and the triple products s_k·(s_l × s_m) (pseudo-scalars: odd when det R = −1) of the
  neighbours. The parameters are symmetrised as those of the Z₂ couplings (`reference.flows.couplings`):
  p(c) = [net(c) + R net(Pc)] / 2 with P negating the pseudo-scalars and R mirroring the azimuth map
  (`CircularSpline.reflect`: f_{Rp}(φ) = −f_p(−φ)) and keeping the polar one, so p(Pc) = R p(c).
  The layer then commutes with every rotation and reflection, and log q is O(3) invariant.

CP(N−1) layer, `ProjectiveMap`: two maps that commute with the phases, z → e^{iα} z, and with global
U(N), both built from the neighbours' projector sum M = Σ_k z_k z̄_k (invariant under their phases,
M → U M U† under U(N)):

* a projective linear map z ↦ A z / |A z| with A = exp(cM), c real from the conditioner (pushing
  the uniform distribution forward gives the angular central Gaussian with covariance A², a close
  relative of the complex Bingham conditional exp(βN z̄ M z) of the target). On S^{2N−1} ⊂ R^{2N}
  its log-det is log |det_R A| − 2N log |A z| = 2c tr M − 2N log |A z|; the inverse is exp(−cM).
* a polar map about the frame point n = M^m z_1 / |M^m z_1| (m = POWER_STEPS power iterations
  towards the top eigenvector of M; |M^m z_1| ≥ (z̄_1 M z_1)^m ≥ 1, so the frame is never
  degenerate; a phase of a neighbour changes n by at most a phase). With z = a n + z_⊥, a = n̄·z,
  t = |a|² ∈ [0, 1] (the cos² of the Fubini–Study distance to n) is moved by the monotone spline of
  2t − 1 on [−1, 1] and z' = a √(t'/t) n + z_⊥ √(w'/w), w = 1 − t = |z_⊥|²: the phase of a and the
  direction of z_⊥ stay. The uniform measure of S^{2N−1} is ∝ w^{N−2} dt d(arg a) dΩ in these
  coordinates (dΩ that of the directions of z_⊥, S^{2N−3}), so the log-det is
  log |dt'/dt| + (N − 2) log(w'/w). For N = 2 (CP(1) = O(3)) this is the O(3) layer's cos θ map.
* the conditioner's features, |z̄_k·z_l|² of neighbour pairs and Re, Im of the Bargmann invariants
  (z̄_k·z_l)(z̄_l·z_m)(z̄_m·z_k) of triples, are invariant under local phases and global U(N); so the
  layer is equivariant under both, and log q invariant.
* what it does not do: maps of the relative phase of a and z_⊥ and of the direction of z_⊥ (an
  analogue of the O(3) azimuth map, which would need a second frame point) are not implemented.

Round-off: the polar splines act on cos θ (resp. 2t − 1), which resolves a site's distance to the
pole n only down to √eps (in float32 about 2e-4 rad); closer sites are mapped onto the pole (the
log-det stays finite).
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
from torch import nn

from reference.flows.couplings import ConvNet
from reference.flows.models import Flow
from reference.flows.priors import field_prior
from reference.flows.splines import SplineParameters, rational_quadratic_spline
from reference.flows.transforms import Bijection, Sequential
from reference.flows.u1 import CircularSpline
from suite.fields import ProjectiveSpace, SphereSpace
from suite.lattice import checkerboard, shift

FRAME_TOL = 1e-3  # below this length a neighbour sum or a perpendicular part gives no direction
POWER_STEPS = 4  # power iterations towards the top eigenvector of the CP(N−1) neighbours' projector sum


def neighbours(x: torch.Tensor, lattice) -> torch.Tensor:
    """The 2d neighbours of every site of a field (B, *lattice, C), in the order x+0̂, …, x−0̂, …:
    (B, V, 2d, C), sites flattened."""
    d = len(lattice)
    return torch.stack([shift(x, mu, step) for step in (1, -1) for mu in range(d)], -2).flatten(1, d)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _sqrt(v: torch.Tensor) -> torch.Tensor:
    """√max(v, 0) with a zero gradient where v ≤ 0 (not √'s infinite one at 0, which a float32 site
    landing exactly on a pole would turn into NaN parameters)."""
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, 1.0).sqrt(), 0.0)


class IntervalSpline(SplineParameters):
    """A monotone rational-quadratic spline of [−1, 1] onto itself with free end slopes; parameters
    (..., 3K+1) = (width logits K, height logits K, interior derivative logits K−1, end derivative
    logits 2). Inputs are clamped into [−1, 1] (round-off of |s| = 1)."""

    def __call__(self, x, p, inverse=False):
        k = self.n_bins
        w, h, d, ends = p.split((k, k, k - 1, 2), dim=-1)
        return rational_quadratic_spline(x.clamp(-1, 1), w, h, d, bound=1.0, inverse=inverse,
                                         boundary_derivatives=ends)


# ---------------------------------------------------------------------------------------------
# O(3)
# ---------------------------------------------------------------------------------------------


def o3_features(nb: torch.Tensor) -> torch.Tensor:
    """Invariants of neighbour spins (..., K, 3): the dot products of the K(K−1)/2 pairs, then the
    triple products of the K(K−1)(K−2)/6 triples (pseudo-scalars): (..., F)."""
    k = nb.shape[-2]
    dots = [_inner(nb[..., i, :], nb[..., j, :]) for i, j in combinations(range(k), 2)]
    triples = [_inner(nb[..., i, :], torch.linalg.cross(nb[..., j, :], nb[..., m, :], dim=-1))
               for i, j, m in combinations(range(k), 3)]
    return torch.stack(dots + triples, -1)


def o3_feature_signs(k: int) -> torch.Tensor:
    """The parity of each `o3_features` channel for K neighbours: +1 scalars, −1 pseudo-scalars."""
    return torch.tensor([1.0] * math.comb(k, 2) + [-1.0] * math.comb(k, 3))


def o3_frame(nb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frame (module docstring) of neighbour spins (..., K, 3): the axis n and the reference
    direction e (..., 3), and whether e exists (...) (False: every neighbour ∥ n)."""
    total = nb.sum(-2)
    length = torch.linalg.vector_norm(total, dim=-1, keepdim=True)
    spread = length > FRAME_TOL
    n = torch.where(spread, total / torch.where(spread, length, 1.0), nb[..., 0, :])
    perp = nb - _inner(nb, n.unsqueeze(-2)).unsqueeze(-1) * n.unsqueeze(-2)
    size = torch.linalg.vector_norm(perp, dim=-1)
    usable = size > FRAME_TOL
    has_e = usable.any(-1)
    first = usable.to(torch.int8).argmax(-1, keepdim=True)  # the first usable neighbour (0 if none)
    chosen = perp.gather(-2, first.unsqueeze(-1).expand(*first.shape, 3)).squeeze(-2)
    e = chosen / torch.where(has_e, size.gather(-1, first).squeeze(-1), 1.0).unsqueeze(-1)
    return n, e, has_e


class SphereMap:
    """The O(3) site map (module docstring): s ↦ s' in the frame of its neighbours. Parameters
    (..., n_params) = (polar spline, azimuth circular spline), ``n_bins`` bins each."""

    def __init__(self, n_bins: int = 8):
        self.polar, self.azimuth = IntervalSpline(n_bins), CircularSpline(n_bins)
        self.n_params = self.polar.n_params + self.azimuth.n_params

    def _split(self, p):
        return p.split((self.polar.n_params, self.azimuth.n_params), dim=-1)

    def reflect(self, p):
        """The parameters of the map conjugated by a reflection: the polar part kept, the azimuth mirrored."""
        polar, azimuth = self._split(p)
        return torch.cat([polar, self.azimuth.reflect(azimuth)], dim=-1)

    def __call__(self, s, nb, p, inverse=False):
        """s (..., 3) and neighbours nb (..., K, 3) -> (s', ladj (...))."""
        polar_params, azimuth_params = self._split(p)
        n, e, has_e = o3_frame(nb)
        e2 = torch.linalg.cross(n, e, dim=-1)
        cos = _inner(s, n)
        perp = s - cos.unsqueeze(-1) * n
        x, y = _inner(perp, e), _inner(perp, e2)
        turn = has_e & ((x != 0) | (y != 0))  # an azimuth exists (not a degenerate frame, not a pole)
        phi = torch.atan2(torch.where(turn, y, 0.0), torch.where(turn, x, 1.0))
        cos_new, ladj = self.polar(cos, polar_params, inverse)
        phi_new, ladj_phi = self.azimuth(phi, azimuth_params, inverse)
        size = torch.linalg.vector_norm(perp, dim=-1, keepdim=True)
        kept = perp / torch.where(size > 0, size, 1.0)
        turned = torch.cos(phi_new).unsqueeze(-1) * e + torch.sin(phi_new).unsqueeze(-1) * e2
        direction = torch.where(turn.unsqueeze(-1), turned, kept)
        sin_new = _sqrt((1 - cos_new) * (1 + cos_new))
        s_new = cos_new.unsqueeze(-1) * n + sin_new.unsqueeze(-1) * direction
        return s_new, ladj + torch.where(turn, ladj_phi, torch.zeros_like(ladj_phi))


# ---------------------------------------------------------------------------------------------
# CP(N−1)
# ---------------------------------------------------------------------------------------------


def _overlaps(nb: torch.Tensor) -> torch.Tensor:
    """g_kl = z̄_k·z_l of neighbour fields (..., K, N): (..., K, K)."""
    return torch.einsum("...ka,...la->...kl", nb.conj(), nb)


def cpn_features(nb: torch.Tensor) -> torch.Tensor:
    """Invariants of neighbour fields (..., K, N) under local phases and global U(N): |g_kl|² of the
    pairs, then Re and Im of the Bargmann invariants g_kl g_lm g_mk of the triples: (..., F), real."""
    g = _overlaps(nb)
    k = nb.shape[-2]
    pairs = [g[..., i, j].abs() ** 2 for i, j in combinations(range(k), 2)]
    loops = [g[..., i, j] * g[..., j, m] * g[..., m, i] for i, j, m in combinations(range(k), 3)]
    return torch.stack(pairs + [part for b in loops for part in (b.real, b.imag)], -1)


def cpn_frame(nb: torch.Tensor) -> torch.Tensor:
    """The frame point n = M^m z_1 / |M^m z_1|, m = POWER_STEPS, of neighbour fields (..., K, N) (module
    docstring): (..., N)."""
    v = nb[..., 0, :]
    for _ in range(POWER_STEPS):
        v = (nb * _inner(nb.conj(), v.unsqueeze(-2)).unsqueeze(-1)).sum(-2)  # M v = Σ_k z_k (z̄_k·v)
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


class ProjectiveMap:
    """The CP(N−1) site map (module docstring): the projective linear map z ↦ e^{cM} z / |e^{cM} z|, then
    the distance of z to the frame point moved by a spline. Parameters (..., n_params) = (c, polar
    spline with ``n_bins`` bins)."""

    def __init__(self, n: int, n_bins: int = 8):
        self.n, self.polar = int(n), IntervalSpline(n_bins)
        self.n_params = 1 + self.polar.n_params

    def _projective(self, z, nb, c, inverse):
        """z ↦ A z / |A z| with A = exp(±cM): log-det 2 log det A − 2N log |A z| = ±2c tr M − 2N log |A z|."""
        m = nb.transpose(-1, -2) @ nb.conj()  # M = Σ_k z_k z̄_k
        c = -c if inverse else c
        moved = (torch.linalg.matrix_exp(c[..., None, None] * m) @ z.unsqueeze(-1)).squeeze(-1)
        size = torch.linalg.vector_norm(moved, dim=-1)
        trace = torch.diagonal(m, dim1=-2, dim2=-1).sum(-1).real
        return moved / size.unsqueeze(-1), 2 * c * trace - 2 * self.n * torch.log(size)

    def _polar(self, z, n, p, inverse):
        """The spline of 2|n̄·z|² − 1 (module docstring)."""
        a = _inner(n.conj(), z).unsqueeze(-1)
        along = a * n
        across = z - along
        t = (a.real**2 + a.imag**2).squeeze(-1)
        w = torch.linalg.vector_norm(across, dim=-1) ** 2
        x_new, ladj = self.polar(t - w, p, inverse)  # t − w = 2t − 1
        t_new, w_new = (1 + x_new) / 2, (1 - x_new) / 2
        grow_along = _sqrt(t_new / torch.where(t > 0, t, 1.0))
        grow_across = _sqrt(w_new / torch.where(w > 0, w, 1.0))
        z_new = along * grow_along.unsqueeze(-1) + across * grow_across.unsqueeze(-1)
        # (N − 2) log(w'/w); where w or w' vanishes (the pole, or round-off) its limit, the polar log-slope
        both = (w > 0) & (w_new > 0)
        ratio = torch.where(both, torch.log(torch.where(both, w_new, 1.0)) - torch.log(torch.where(both, w, 1.0)),
                            ladj)
        return z_new, ladj + (self.n - 2) * ratio

    def __call__(self, z, nb, p, inverse=False):
        """z (..., N) and neighbours nb (..., K, N) -> (z', ladj (...))."""
        c, polar_params = p.split((1, self.polar.n_params), dim=-1)
        c, n = c.squeeze(-1), cpn_frame(nb)
        if inverse:
            z, ladj = self._polar(z, n, polar_params, True)
            z, term = self._projective(z, nb, c, True)
        else:
            z, ladj = self._projective(z, nb, c, False)
            z, term = self._polar(z, n, polar_params, False)
        return z, ladj + term


# ---------------------------------------------------------------------------------------------
# The coupling layer and the factories
# ---------------------------------------------------------------------------------------------


class NeighbourCoupling(Bijection):
    """One coupling layer on a field (B, *lattice, C): the active sites of the checkerboard of
    ``parity`` are moved by ``site_map(x, neighbours, params)``, the parameters computed by ``net``
    ((B, F, *lattice) -> (B, site_map.n_params, *lattice)) from ``features(neighbours)`` (F channels)
    placed on the active sites. With ``signs`` (the parity ±1 of every feature channel) the
    parameters are symmetrised, p(c) = [net(c) + site_map.reflect(net(P c))] / 2 (module docstring)."""

    def __init__(self, site_map, features, lattice, parity: int, net: nn.Module, signs: torch.Tensor | None = None):
        super().__init__()
        self.map, self.features, self.net = site_map, features, net
        self.lattice = tuple(int(n) for n in lattice)
        self.register_buffer("sites", checkerboard(self.lattice, parity).flatten().nonzero().squeeze(1),
                             persistent=False)
        self.register_buffer("signs", signs, persistent=False)

    def params(self, nb: torch.Tensor) -> torch.Tensor:
        """Parameters (B, |A|, n_params) of the active sites from their neighbours (B, |A|, 2d, C)."""
        c = self.features(nb)
        if self.signs is not None:
            c = torch.cat([c, c * self.signs.to(c.dtype)])
        b, _, f = c.shape
        grid = c.new_zeros((b, math.prod(self.lattice), f)).index_copy(1, self.sites, c)
        p = self.net(grid.movedim(-1, 1).reshape(b, f, *self.lattice)).flatten(2)[..., self.sites].movedim(1, -1)
        if self.signs is not None:
            p, mirrored = p.chunk(2)
            p = (p + self.map.reflect(mirrored)) / 2
        return p

    def _couple(self, x, inverse):
        d = len(self.lattice)
        flat = x.flatten(1, d)
        nb = neighbours(x, self.lattice)[:, self.sites]
        new, ladj = self.map(flat[:, self.sites], nb, self.params(nb), inverse)
        return flat.index_copy(1, self.sites, new).view_as(x), ladj.sum(-1)

    def forward(self, x):
        return self._couple(x, False)

    def inverse(self, y):
        return self._couple(y, True)


def _even_lattice(theory, what: str) -> tuple[int, ...]:
    lattice = tuple(int(n) for n in theory.lattice)
    if not lattice or any(n < 2 or n % 2 for n in lattice):
        raise ValueError(f"the {what} flow's checkerboard couplings need even lattice extents, got {list(lattice)}")
    return lattice


def _stack(layer, n_layers: int) -> list:
    if n_layers < 1:
        raise ValueError(f"a stack needs at least one coupling layer, got {n_layers}")
    return [layer(i % 2) for i in range(n_layers)]


def build_sphere_equivariant(theory, n_layers=8, n_bins=8, hidden=(16, 16), kernel_size=3) -> Flow:
    """The O(3)-equivariant coupling flow (module docstring) for O(3) spins (B, *lattice, 3), lattice
    dimension 1-3 with even extents: ``n_layers`` checkerboard couplings of alternating parity, each
    a `SphereMap` with ``n_bins`` bins in its polar and azimuth splines, conditioned by a ConvNet
    (``hidden`` channels, ``kernel_size``). Returns a float32 `Flow`."""
    lattice = _even_lattice(theory, "O(3)")
    prior = field_prior(theory, SphereSpace, (*lattice, 3))
    if prior.field.is_complex:
        raise ValueError("the O(3) flow needs real spins (an O(3) theory), the theory's field is complex")
    k = 2 * len(lattice)
    signs = o3_feature_signs(k)

    def layer(parity):
        site_map = SphereMap(n_bins)
        net = ConvNet(len(signs), hidden, site_map.n_params, kernel_size, dim=len(lattice), final_tanh=False)
        return NeighbourCoupling(site_map, o3_features, lattice, parity, net, signs)

    return Flow(prior, Sequential(*_stack(layer, n_layers))).to(torch.float32)


def build_cpn_equivariant(theory, n_layers=8, n_bins=8, hidden=(16, 16), kernel_size=3) -> Flow:
    """The CP(N−1) coupling flow (module docstring), equivariant under local phases and global U(N),
    for fields (B, *lattice, N), lattice dimension 1-3 with even extents: ``n_layers`` checkerboard
    couplings of alternating parity, each a `ProjectiveMap` with ``n_bins`` bins, conditioned by a
    ConvNet (``hidden`` channels, ``kernel_size``). N is read from the theory's field space
    (``theory.field.shape[-1]``) or ``theory.n``. Returns a float32 `Flow`, complex64 samples."""
    lattice = _even_lattice(theory, "CP(N-1)")
    field = getattr(theory, "field", None)
    n = field.shape[-1] if isinstance(field, ProjectiveSpace) else getattr(theory, "n", None)
    if n is None:
        raise ValueError("the CP(N-1) flow needs a CP(N-1) theory (a ProjectiveSpace field or an attribute n)")
    prior = field_prior(theory, ProjectiveSpace, (*lattice, n))
    k = 2 * len(lattice)
    n_features = math.comb(k, 2) + 2 * math.comb(k, 3)

    def layer(parity):
        site_map = ProjectiveMap(n, n_bins)
        net = ConvNet(n_features, hidden, site_map.n_params, kernel_size, dim=len(lattice), final_tanh=False)
        return NeighbourCoupling(site_map, cpn_features, lattice, parity, net)

    return Flow(prior, Sequential(*_stack(layer, n_layers))).to(torch.float32)
