"""Flows as models with exact density, and the factories of the reference flows.

Factories read ``theory.lattice`` and ``theory.field`` (any scalar theory, a `EuclideanSpace` of
shape ``lattice``, any lattice dimension 1-3; an object with only a ``lattice`` is taken as a scalar
field on it), take the prior from the field space and return a float32 `Flow`; ``.double()`` / ``.to(device)`` move it.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.flows.couplings import AffineCoupling, SplineCoupling
from reference.flows.masks import layer_mask
from reference.flows.priors import FieldPrior, field_prior
from reference.flows.transforms import Rescale, Sequential
from suite.fields import EuclideanSpace


class Flow(nn.Module):
    """x = transform(z), z ~ prior: log q(x) = log p(z) − log|det ∂x/∂z|. Shapes (B, *field shape), (B,).

    ``prior`` is the field space's (`reference.flows.priors.FieldPrior`); it holds no parameters.
    """

    def __init__(self, prior: FieldPrior, transform: Sequential):
        super().__init__()
        self.prior, self.transform = prior, transform

    def sample(self, n: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """n configurations and their log q; randomness from ``generator`` or torch's global RNG."""
        p = next(self.parameters())
        z = self.prior.sample(n, generator=generator, dtype=p.dtype, device=p.device)
        x, ladj = self.transform(z)
        return x, self.prior.log_prob(z) - ladj

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log q(x), shape (B,), through the inverse transform."""
        z, ladj = self.transform.inverse(x)
        return self.prior.log_prob(z) + ladj


def scalar_prior(theory) -> FieldPrior:
    """The N(0, 1) prior of a scalar theory's field space, shape ``theory.lattice``."""
    return field_prior(theory, EuclideanSpace, tuple(theory.lattice))


def _flow(theory, layers) -> Flow:
    return Flow(scalar_prior(theory), Sequential(*layers)).to(torch.float32)


def _couplings(coupling, n_layers, lattice, mask, **options):
    if n_layers < 1:
        raise ValueError(f"a stack needs at least one coupling layer, got {n_layers}")
    return [coupling(layer_mask(mask, lattice, i), **options) for i in range(n_layers)]


def build_affine(theory, n_layers=16, hidden=(8, 8), kernel_size=3, z2=False, mask="checkerboard") -> Flow:
    """The RealNVP flow of the 2021 tutorial (arXiv:2101.08176): affine couplings, alternating parity."""
    lattice = tuple(theory.lattice)
    return _flow(theory, _couplings(AffineCoupling, n_layers, lattice, mask,
                                     hidden=hidden, kernel_size=kernel_size, z2=z2))


def build_spline(theory, n_layers=8, n_bins=8, bound=5.0, hidden=(8, 8), kernel_size=3, z2=False,
                 mask="checkerboard") -> Flow:
    """Rational-quadratic spline couplings on [−bound, bound] with identity tails, alternating parity."""
    lattice = tuple(theory.lattice)
    return _flow(theory, _couplings(SplineCoupling, n_layers, lattice, mask, n_bins=n_bins, bound=bound,
                                     hidden=hidden, kernel_size=kernel_size, z2=z2))


def build_hybrid(theory, n_affine=8, n_spline=2, n_bins=8, bound=5.0, hidden=(8, 8), kernel_size=3, z2=False,
                 mask="checkerboard") -> Flow:
    """Del Debbio, Marsh Rossney & Wilson (arXiv:2105.12481, the anvil ``train.yml`` model):
    affine couplings, a global rescaling, spline couplings, a global rescaling.

    anvil uses dense conditioners, Z₂-equivariant affine blocks and a non-equivariant spline pair;
    here conditioners are ConvNets and ``z2`` applies to every coupling.
    """
    lattice = tuple(theory.lattice)
    options = dict(hidden=hidden, kernel_size=kernel_size, z2=z2)
    return _flow(theory, [*_couplings(AffineCoupling, n_affine, lattice, mask, **options), Rescale(),
                           *_couplings(SplineCoupling, n_spline, lattice, mask, n_bins=n_bins, bound=bound,
                                       **options), Rescale()])
