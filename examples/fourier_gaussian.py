"""A user model for lftbench: a translation-invariant Gaussian with a learnable propagator.

    φ = F⁻¹[ σ(p) F[z] ],  z ~ N(0, 1) on every site,

with σ(p) > 0 and σ(p) = σ(−p), so φ is real and Gaussian with <|φ̃(p)|²>/V = σ(p)².
log q(φ) = log N(z) − Σ_p log σ(p). With σ(p)² = 1/K(p), the free-field propagator, it
samples a free scalar field exactly. Use it as

    lftbench run --entry phi4/free/L8 --sampler flow --model examples/fourier_gaussian.py:build ...
"""

import math

import torch
from torch import nn


class FourierGaussian(nn.Module):
    def __init__(self, lattice):
        super().__init__()
        self.lattice = tuple(lattice)
        self.log_sigma = nn.Parameter(torch.zeros(self.lattice))

    def _log_sigma(self) -> torch.Tensor:
        """Symmetrised under p -> −p, so that the map is real."""
        flipped = torch.roll(torch.flip(self.log_sigma, dims=tuple(range(len(self.lattice)))),
                             shifts=(1,) * len(self.lattice), dims=tuple(range(len(self.lattice))))
        return 0.5 * (self.log_sigma + flipped)

    def _multiply(self, x, log_sigma):
        dims = tuple(range(1, x.dim()))
        return torch.fft.ifftn(torch.fft.fftn(x, dim=dims) * torch.exp(log_sigma), dim=dims).real

    def _log_normal(self, z):
        return -0.5 * z.pow(2).flatten(1).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)

    def sample(self, n):
        log_sigma = self._log_sigma()
        z = torch.randn((n, *self.lattice), dtype=self.log_sigma.dtype, device=self.log_sigma.device)
        return self._multiply(z, log_sigma), self._log_normal(z) - log_sigma.sum()

    def log_prob(self, x):
        log_sigma = self._log_sigma()
        return self._log_normal(self._multiply(x, -log_sigma)) - log_sigma.sum()


def build(theory, **hparams):
    """The factory lftbench calls: build(theory, **hparams) -> model."""
    return FourierGaussian(theory.lattice)
