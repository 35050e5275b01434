"""Prior (latent) distributions of flows."""

from __future__ import annotations

import math

import torch


class NormalPrior:
    """Independent N(0, 1) on every component of a field of per-configuration shape ``shape``."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(n) for n in shape)

    def sample(self, n: int, generator=None, dtype=torch.float32, device=None) -> torch.Tensor:
        """A batch of shape (n, *shape)."""
        return torch.randn((n, *self.shape), generator=generator, dtype=dtype, device=device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, 1) summed over a configuration, shape (B,)."""
        return -0.5 * x.pow(2).flatten(1).sum(1) - 0.5 * math.prod(self.shape) * math.log(2 * math.pi)
