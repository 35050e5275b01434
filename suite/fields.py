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
        """Projection of v, the plain gradient at x (what autograd gives), onto the tangent space at x, in
        the coordinates and metric of the momenta: the force HMC needs (identity for flat spaces and
        the torus; on a group, `SUN.project`, the su(N) element ½ P(v x†))."""
        return v


class EuclideanSpace(FieldSpace):
    """Real fields, R^shape: prior N(0, 1) on every component, update x + eps p."""

    def prior_sample(self, batch, *, generator=None, dtype=torch.float64, device=None):
        return torch.randn((batch, *self.shape), generator=generator, dtype=dtype, device=device)

    def prior_log_prob(self, x):
        """log N(x; 0, 1) summed over a configuration: −½ Σ x² − (n/2) log 2π, n = prod(shape)."""
        return -0.5 * x.pow(2).flatten(1).sum(1) - 0.5 * math.prod(self.shape) * math.log(2 * math.pi)

    def update(self, x, p, eps):
        return x.add(p, alpha=eps)


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


def traceless_antihermitian(m: torch.Tensor) -> torch.Tensor:
    """The su(N) part of square matrices (last two axes): ½(M − M†) − (1/2N) Tr(M − M†) 𝟙."""
    a = 0.5 * (m - m.mH)
    n = m.shape[-1]
    trace = torch.diagonal(a, dim1=-2, dim2=-1).sum(-1)
    return a - (trace / n)[..., None, None] * torch.eye(n, dtype=m.dtype, device=m.device)


def su2_exp(p: torch.Tensor) -> torch.Tensor:
    """exp(p) for p in su(2) (last two axes 2 × 2), in closed form: with p = i a·σ, |a|² = ½ Σ_ij |p_ij|²,
    exp(p) = cos|a| 𝟙 + (sin|a| / |a|) p."""
    a2 = 0.5 * (p.real.pow(2) + p.imag.pow(2)).sum((-2, -1))
    a = a2.sqrt()
    small = a2 < 1e-8
    # sin(a)/a by its series where a is small (error < a⁶/5040 < 1e-27); exact elsewhere
    sinc = torch.where(small, 1 - a2 / 6 + a2 * a2 / 120, torch.sin(a) / torch.where(small, 1.0, a))
    eye = torch.eye(2, dtype=p.dtype, device=p.device)
    return torch.cos(a)[..., None, None] * eye + sinc[..., None, None] * p


class SUN(FieldSpace):
    """SU(N) matrices on the last two axes: ``shape = (*links, N, N)``, points complex
    (complex128 at float64, complex64 at float32).

    * Prior: the Haar measure. A Ginibre matrix Z (i.i.d. standard complex normal entries) is
      factored Z = QR; Q·diag(R_ii/|R_ii|) is Haar on U(N) (Mezzadri, Notices AMS 54 (2007) 592), and
      dividing it by e^{iφ/N}, φ = arg det Q, gives det = 1 exactly (to round-off): multiplying a Haar
      U(N) matrix by a phase that makes its determinant 1 gives a Haar SU(N) matrix (the remaining
      choice of branch is a centre element, under which the Haar measure is invariant).
      `prior_log_prob` is 0 for every configuration: the density w.r.t. the normalised Haar measure
      (total volume 1 per link).
    * Generators: T_a Hermitian, traceless, Tr T_a T_b = ½ δ_ab (Pauli/2 for SU(2), Gell-Mann/2 for
      SU(3)). Momenta are traceless anti-Hermitian, p = i Σ_a p^a T_a per link, with
      K(p) = −Σ_links Tr p² = ½ Σ_links Σ_a (p^a)² = Σ_links Σ_ij |p_ij|², and are drawn with
      density ∝ exp(−K): p^a ~ N(0, 1) independently.
    * Update: U ← exp(ε p) U. For N = 2 exp is the closed form `su2_exp` (6.4× faster than
      `torch.linalg.matrix_exp` on 16 configurations of 2 × 16² links, complex128, one CPU thread;
      bench/README.md);
      in complex128 the drift after 10⁴ updates is |U†U − 𝟙|, |det U − 1| ≈ 4e-14, so nothing more is
      done. For N ≥ 3 exp is `torch.linalg.matrix_exp`, whose round-off drifts systematically
      (6e-13 after 10⁴ updates for SU(3), growing linearly), so every update of N ≥ 3 is followed by
      `reunitarise` (about a quarter of the update's cost), which keeps the drift at round-off.
    * Tangent space: su(N) at every U, right-trivialised (a tangent vector at U is X U with X ∈ su(N)),
      with the metric of K, g(X, Y) = −2 Re Tr XY (so that g(iT_a, iT_b) = δ_ab). `project(x, v)` turns
      a matrix derivative v = ∂f/∂Re U + i ∂f/∂Im U (what autograd gives for a real f) into the
      gradient of f in this metric, ½ P(v U†) with P the traceless anti-Hermitian part: its pairing
      g(·, X) with any X ∈ su(N) is the derivative of f along U → exp(tX) U. This is the force HMC
      needs for ṗ = −F with U̇ = p U.
    """

    is_complex = True

    def __init__(self, shape: tuple[int, ...]):
        super().__init__(shape)
        if len(self.shape) < 2 or self.shape[-1] != self.shape[-2] or self.shape[-1] < 2:
            raise ValueError(f"SU(N) points are N × N matrices with N >= 2 on the last two axes, got {self.shape}")
        self.n = self.shape[-1]

    def prior_sample(self, batch, *, generator=None, dtype=torch.float64, device=None):
        shape = (batch, *self.shape)
        real = torch.randn((2, *shape), generator=generator, dtype=dtype, device=device)
        q, r = torch.linalg.qr(torch.complex(real[0], real[1]))
        diag = torch.diagonal(r, dim1=-2, dim2=-1)
        q = q * (diag / diag.abs()).unsqueeze(-2)  # column j times the phase of R_jj
        phase = torch.angle(torch.linalg.det(q))
        return q * torch.polar(torch.ones_like(phase), -phase / self.n)[..., None, None]

    def prior_log_prob(self, x):
        """0 per configuration: the density w.r.t. the normalised Haar measure."""
        return x.real.new_zeros((x.shape[0],))

    def momenta(self, x, *, generator=None):
        """p = i Σ_a p^a T_a with p^a ~ N(0, 1), i.e. density ∝ exp(−K)."""
        real = torch.randn((2, *x.shape), generator=generator, dtype=x.real.dtype, device=x.device)
        # H = (A + A†)/2 with Re, Im A_ij ~ N(0, ½) has density ∝ exp(−Tr H²); its traceless part is
        # Σ_a p^a T_a with p^a ~ N(0, 1). p = iH's traceless anti-Hermitian part is i times that.
        a = torch.complex(real[0], real[1]) * math.sqrt(0.5)
        return traceless_antihermitian(1j * a)

    def kinetic_energy(self, p):
        """K = −Σ Tr p² = Σ |p_ij|² over every link of a configuration, shape (B,)."""
        return (p.real.pow(2) + p.imag.pow(2)).flatten(1).sum(1)

    def exp(self, p: torch.Tensor) -> torch.Tensor:
        """exp(p) for p in su(N): the closed form for N = 2, `torch.linalg.matrix_exp` otherwise."""
        return su2_exp(p) if self.n == 2 else torch.linalg.matrix_exp(p)

    def update(self, x, p, eps):
        """U ← exp(ε p) U, reunitarised for N ≥ 3 (see the class docstring)."""
        y = self.exp(eps * p) @ x
        return y if self.n == 2 else self.reunitarise(y)

    def project(self, x, v):
        """The gradient in su(N) (metric of K) of a real function whose matrix derivative at x is v:
        ½ P(v x†), P the traceless anti-Hermitian part (see the class docstring)."""
        return 0.5 * traceless_antihermitian(v @ x.mH)

    def reunitarise(self, x: torch.Tensor) -> torch.Tensor:
        """x moved back onto SU(N) if round-off drifted it: one Newton step towards the unitary polar
        factor, x (3 − x†x)/2 (error δ → O(δ²)), then the determinant's phase divided out."""
        eye = torch.eye(self.n, dtype=x.dtype, device=x.device)
        x = 0.5 * x @ (3 * eye - x.mH @ x)
        phase = torch.angle(torch.linalg.det(x))
        return x * torch.polar(torch.ones_like(phase), -phase / self.n)[..., None, None]


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
