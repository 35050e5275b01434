"""Field spaces: what HMC and flow priors need to know of the manifold a field lives on.

HMC is written once against `FieldSpace`; a new manifold (the torus for U(1) links, SU(N),
spheres for O(N) models) is a new subclass, not a new HMC.

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
