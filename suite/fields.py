"""Field spaces: what HMC and flow priors need to know of the manifold a field lives on.

HMC is written once against `FieldSpace`; a new manifold (the torus for U(1) links, SU(N),
spheres for O(N) models) is a new subclass, not a new HMC. The integrators drift with
`FieldSpace.update_with_momentum`, which returns the new position and the momentum carried along
with it (unchanged on flat spaces and groups; parallel-transported on spheres).

Every method takes and returns batched tensors with the batch axis first; dtype and device
come from the arguments, never from globals. A ``dtype`` argument names the real precision; a
complex space (``is_complex``) returns points of the matching complex type (`FieldSpace.field_dtype`). Randomness only through an explicit
``torch.Generator`` so that runs are reproducible.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class FieldSpace(ABC):
    """A manifold of field configurations of per-configuration shape ``shape``.

    Momenta live in the tangent space and are drawn from exp(−K(p)).
    """

    is_complex = False  # points are complex tensors (SU(N) links, CP(N-1) fields, pseudofermions)

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(n) for n in shape)

    def field_dtype(self, real_dtype: torch.dtype) -> torch.dtype:
        """The dtype of the space's points at a real precision: ``real_dtype`` itself, or for complex
        spaces the complex type of that precision (float32 -> complex64, float64 -> complex128).
        ``dtype`` arguments of the methods below always name the real precision."""
        if not self.is_complex:
            return real_dtype
        return torch.complex128 if real_dtype == torch.float64 else torch.complex64

    @abstractmethod
    def prior_sample(self, batch: int, *, generator=None, dtype=torch.float64, device=None) -> torch.Tensor:
        """A batch drawn from the space's simple prior (normal, Haar, ...)."""

    @abstractmethod
    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density of the prior at x (B, *shape), shape (B,), w.r.t. the space's volume measure."""

    def momenta(self, x: torch.Tensor, *, generator=None) -> torch.Tensor:
        """Gaussian momenta in the tangent space at x, with K(p) = ½ Σ p²."""
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    def kinetic_energy(self, p: torch.Tensor) -> torch.Tensor:
        """K(p) = ½ Σ p² per configuration, shape (B,)."""
        return 0.5 * p.pow(2).flatten(1).sum(1)

    @abstractmethod
    def update(self, x: torch.Tensor, p: torch.Tensor, eps: float) -> torch.Tensor:
        """The exact position update x <- exp(eps p) x along the geodesic."""

    def update_with_momentum(self, x: torch.Tensor, p: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The drift of the integrators: (x, p) moved for time eps along the geodesic with initial
        velocity p, p carried along (parallel-transported). Where the tangent space does not depend on
        x (flat spaces, the torus, Lie groups with momenta in the algebra) p is unchanged and this is
        ``(update(x, p, eps), p)``, the same tensor p; curved embedded spaces (spheres) override it."""
        return self.update(x, p, eps), p

    def project(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Projection of v onto the tangent space at x (identity for flat spaces)."""
        return v


class EuclideanSpace(FieldSpace):
    """Real fields, R^shape: prior N(0, 1) on every component, update x + eps p."""

    def prior_sample(self, batch, *, generator=None, dtype=torch.float64, device=None):
        return torch.randn((batch, *self.shape), generator=generator, dtype=dtype, device=device)

    def prior_log_prob(self, x):
        """log N(x; 0, 1) summed over a configuration: −½ Σ x² − (n/2) log 2π, n = prod(shape)."""
        return -0.5 * x.pow(2).flatten(1).sum(1) - 0.5 * math.prod(self.shape) * math.log(2 * math.pi)

    def update(self, x, p, eps):
        return x + eps * p


def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """Angles mapped into (−π, π] (π stays π; −π maps to π)."""
    return torch.pi - torch.remainder(torch.pi - x, 2 * torch.pi)


class TorusSpace(FieldSpace):
    """Angles on the torus (U(1)^shape), stored in (−π, π].

    Prior: Haar measure of U(1), i.e. uniform angles. The Lie algebra of U(1) is R, so momenta are
    N(0, 1) with K = ½ Σ p², and the exact geodesic update is x <- wrap(x + eps p); the tangent space
    is all of R^shape, so the projection is the identity.
    """

    def prior_sample(self, batch, *, generator=None, dtype=torch.float64, device=None):
        u = torch.rand((batch, *self.shape), generator=generator, dtype=dtype, device=device)
        return torch.pi - 2 * torch.pi * u  # u in [0, 1): angles in (−π, π]

    def prior_log_prob(self, x):
        """The normalised Haar measure on (−π, π]^n: −n log 2π for every configuration, n = prod(shape)."""
        return x.new_full((x.shape[0],), -math.prod(self.shape) * math.log(2 * math.pi))

    def update(self, x, p, eps):
        return wrap_angle(x + eps * p)


# ---------------------------------------------------------------------------------------------
# Spheres: O(N) spins on S^{N−1}, CP(N−1) fields as unit vectors of C^N (sigma models)
# ---------------------------------------------------------------------------------------------


def sphere_area(dim: int) -> float:
    """The surface area of the unit sphere S^dim ⊂ R^{dim+1}: 2 π^{(dim+1)/2} / Γ((dim+1)/2)."""
    return 2 * math.pi ** ((dim + 1) / 2) / math.gamma((dim + 1) / 2)


def _real_inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Re Σ_a conj(a_a) b_a over the last axis (the Euclidean inner product of R^N or of C^N = R^{2N}),
    keeping the axis (shape (..., 1)) for broadcasting."""
    if a.is_complex():
        return (a.real * b.real + a.imag * b.imag).sum(-1, keepdim=True)
    return (a * b).sum(-1, keepdim=True)


def _norm(v: torch.Tensor) -> torch.Tensor:
    """|v| over the last axis, shape (..., 1)."""
    return _real_inner(v, v).sqrt()


class SphereSpace(FieldSpace):
    """A unit vector of R^N on every site: (S^{N−1})^V, per-configuration shape ``(*lattice, N)``.

    ``shape`` is the per-configuration shape with the vector axis last (N = shape[-1] ≥ 2). The
    sphere is embedded in R^N; tangent vectors at s are the v with s·v = 0 on every site.

    * Prior: the uniform (rotation-invariant) distribution on every site, drawn as normalised
      Gaussian vectors. ``prior_log_prob`` is its density with respect to the surface (Riemannian
      volume) measure of the spheres, −V log |S^{N−1}| with |S^{N−1}| = 2π^{N/2}/Γ(N/2), the same for
      every configuration (as the torus' −n log 2π w.r.t. arc length). HMC's target exp(−S) is a
      density with respect to the same surface measure.
    * Momenta: Gaussian vectors of R^N projected onto the tangent space, p ← g − (s·g) s, which is
      the standard Gaussian of the tangent space; K = ½ Σ p².
    * Drift (`update_with_momentum`): the exact geodesic (great circle) on every site,
      s ← s cos(ε|p|) + (p/|p|) sin(ε|p|), with p parallel-transported along it,
      p ← p cos(ε|p|) − s |p| sin(ε|p|), so that p stays tangent and |p| is conserved; the
      geodesic flow and tangent kicks are volume-preserving and reversible (the geodesic
      integrator of constrained HMC). `update` returns only the position.
    * ``project(s, v) = v − (s·v) s``: forces are the gradient of S projected this way.
    """

    def __init__(self, shape: tuple[int, ...]):
        super().__init__(shape)
        if len(self.shape) < 2 or self.shape[-1] < 2:
            raise ValueError(f"a sphere space's shape is (*lattice, N) with N >= 2, got {list(self.shape)}")
        self.n = self.shape[-1]

    @property
    def sites(self) -> int:
        return math.prod(self.shape[:-1])

    def _sphere_dim(self) -> int:
        return self.n - 1

    def prior_sample(self, batch, *, generator=None, dtype=torch.float64, device=None):
        g = self._gaussian((batch, *self.shape), generator, dtype, device)
        return g / _norm(g)

    def _gaussian(self, shape, generator, dtype, device):
        """Unit variance in every real component (torch's complex randn has variance ½ in each)."""
        if not self.is_complex:
            return torch.randn(shape, generator=generator, dtype=dtype, device=device)
        real = torch.randn((2, *shape), generator=generator, dtype=dtype, device=device)
        return torch.complex(real[0], real[1])

    def prior_log_prob(self, x):
        """−V log |S^{dim}| for every configuration: uniform w.r.t. the surface measure."""
        return x.real.new_full((x.shape[0],), -self.sites * math.log(sphere_area(self._sphere_dim())))

    def project(self, x, v):
        return v - _real_inner(x, v) * x

    def momenta(self, x, *, generator=None):
        real = x.real.dtype
        return self.project(x, self._gaussian(x.shape, generator, real, x.device))

    def kinetic_energy(self, p):
        if p.is_complex():
            return 0.5 * (p.real.pow(2) + p.imag.pow(2)).flatten(1).sum(1)
        return 0.5 * p.pow(2).flatten(1).sum(1)

    def update_with_momentum(self, x, p, eps):
        speed = _norm(p)
        angle = eps * speed
        cos, sin = torch.cos(angle), torch.sin(angle)
        # sin(ε|p|)/|p| without dividing by zero where p vanishes (its limit ε there)
        safe = torch.where(speed > 0, speed, torch.ones_like(speed))
        sinc = torch.where(speed > 0, sin / safe, torch.full_like(speed, eps))
        x_new = x * cos + p * sinc
        p_new = p * cos - x * (speed * sin)
        # the geodesic keeps |x| = 1 exactly; renormalise only the round-off
        return x_new / _norm(x_new), p_new

    def update(self, x, p, eps):
        return self.update_with_momentum(x, p, eps)[0]


class ComplexSphereSpace(SphereSpace):
    """A unit vector of C^N on every site: (S^{2N−1})^V as a complex tensor ``(*lattice, N)``.

    Everything as in `SphereSpace` with C^N read as R^{2N} (inner product Re z̄·w): uniform prior
    (density −V log |S^{2N−1}|, |S^{2N−1}| = 2π^N/(N−1)!, w.r.t. the surface measure), complex
    Gaussian momenta with unit variance in each real component projected onto the tangent space
    p ← g − Re(z̄·g) z, K = ½ Σ |p|², the same geodesic drift. A force is the gradient
    ∂S/∂Re z + i ∂S/∂Im z (what autograd returns for a real S), projected.
    """

    is_complex = True

    def _sphere_dim(self) -> int:
        return 2 * self.n - 1


class ProjectiveSpace(ComplexSphereSpace):
    """CP(N−1) = S^{2N−1}/U(1): unit vectors z of C^N, a point being the class {e^{iα} z}.

    Points are stored as representatives z on S^{2N−1} (as `ComplexSphereSpace`; the uniform prior on
    S^{2N−1} projects to the uniform, Fubini–Study, measure of CP(N−1)). Theories on this space must
    be invariant under z_x → e^{iα_x} z_x on every site. The U(1) redundancy is handled by horizontal
    momenta: the projection removes both the radial direction and the phase direction i z,
    ``project(z, v) = v − z (z̄·v)`` (complex inner product), so momenta have 2N − 2 real components
    per site, the dimension of CP(N−1). A great circle leaving z horizontally stays horizontal (its
    transported velocity keeps z̄·p = 0), and the force of an invariant action is horizontal, so HMC on
    this space is exactly HMC on CP(N−1) with the Fubini–Study metric; the phases of the
    representatives are never moved (up to round-off), which no observable sees.
    """

    def project(self, x, v):
        return v - x * (x.conj() * v).sum(-1, keepdim=True)
