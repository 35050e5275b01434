"""Bijections on batched fields and their composition.

Convention: ``forward`` maps the prior (latent) side to the target side, ``inverse`` the other
way. Both return ``(out, ladj)`` where ``ladj`` (shape (B,)) is log|det ∂out/∂in| of the
direction applied (real, also for complex fields), so ``inverse(forward(x)[0])[1] == -forward(x)[1]``. Fields have the batch
axis first, ``(B, *lattice)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Bijection(nn.Module):
    """An invertible map with ``forward(x) -> (y, ladj)`` and ``inverse(y) -> (x, ladj)``."""

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Sequential(Bijection):
    """The composition of ``bijections``, applied in order by ``forward``, in reverse by ``inverse``."""

    def __init__(self, *bijections: Bijection):
        super().__init__()
        self.bijections = nn.ModuleList(bijections)

    def forward(self, x):
        ladj = x.real.new_zeros(x.shape[0])
        for bijection in self.bijections:
            x, term = bijection(x)
            ladj = ladj + term
        return x, ladj

    def inverse(self, y):
        ladj = y.real.new_zeros(y.shape[0])
        for bijection in reversed(self.bijections):
            y, term = bijection.inverse(y)
            ladj = ladj + term
        return y, ladj


class Rescale(Bijection):
    """Global learnable rescaling y = x·exp(a), a initialised to 0 (anvil's ``GlobalRescaling``).

    ladj = a · (sites per configuration). Odd in x, hence Z₂-equivariant.
    """

    def __init__(self):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))

    def _scale(self, x, sign):
        ladj = sign * self.log_scale * math.prod(x.shape[1:])
        return x * torch.exp(sign * self.log_scale), ladj.expand(x.shape[0])

    def forward(self, x):
        return self._scale(x, 1)

    def inverse(self, y):
        return self._scale(y, -1)
