"""A gauge-equivariant continuous flow for 2D U(1) (links as angles (B, 2, L0, L1), as `suite.theories.u1`).

The velocity is the gradient of a gauge-invariant potential built from Wilson loops,

    v = ∇_θ Φ_t(θ),   Φ_t(θ) = Σ_x Σ_l Σ_{n=1}^{N} c_{l,n}(t) cos(n W_l(x)),   c_{l,n}(t) = Σ_a C[l, n, a] T_a(t),

with loops l: the plaquette θ_P and (``loops="plaquette+rectangle"``) the 2×1 rectangles along
either axis (`reference.flows.u1.rectangle_angles`), T the Fourier time features of
`reference.flows.continuous`. A gauge transformation adds to θ a vector that no loop sees, so Φ
and v are gauge invariant and the flow commutes with gauge transformations: flowing g·θ gives
g·(flow θ), and ∇·v = ΔΦ, hence log q, is gauge invariant. Φ is even in θ, so the flow also commutes
with charge conjugation θ → −θ. The divergence is exact and cheap: a loop contains each of its P_l
links once (with sign ±1), so ∂²cos(nW)/∂θ² = −n² cos(nW) on each, and
∇·v = −Σ_x Σ_l P_l Σ_n n² c_{l,n}(t) cos(n W_l(x)), P = 4 (plaquette) and 6 (rectangle).

The ODE runs on unwrapped angles from the Haar prior; outputs are wrapped into (−π, π] (Φ is 2π-periodic
in every link, so wrapping commutes with the flow). C starts at zero (the identity flow).
"""

from __future__ import annotations

import torch
from torch import nn

from reference.flows.continuous import ContinuousFlow, ContinuousTransform, fourier_time_features
from reference.flows.ode import Solver
from reference.flows.u1 import LOOPS, haar_prior, plaquette_angle, rectangle_angles
from suite.fields import wrap_angle


class WilsonLoopPotentialVelocity(nn.Module):
    """v = ∇Φ_t (module docstring) with ``n_harmonics`` harmonics N and ``n_time`` time features."""

    def __init__(self, loops: str = "plaquette+rectangle", n_harmonics: int = 3, n_time: int = 5):
        super().__init__()
        if loops not in LOOPS:
            raise ValueError(f"unknown loops {loops!r}; expected one of {', '.join(LOOPS)}")
        if n_harmonics < 1 or n_time < 1:
            raise ValueError(f"need n_harmonics >= 1 and n_time >= 1, got {n_harmonics}, {n_time}")
        self.rectangles, self.n_time = loops == "plaquette+rectangle", int(n_time)
        perimeters = [4.0, 6.0, 6.0] if self.rectangles else [4.0]
        self.register_buffer("perimeters", torch.tensor(perimeters), persistent=False)
        self.register_buffer("harmonics", torch.arange(1, n_harmonics + 1, dtype=torch.float32), persistent=False)
        self.weight = nn.Parameter(torch.zeros(len(perimeters), n_harmonics, self.n_time))

    def loop_angles(self, theta: torch.Tensor) -> torch.Tensor:
        """W_l(x), shape (B, n_loops, L0, L1)."""
        plaq = plaquette_angle(theta)
        return torch.cat([plaq.unsqueeze(1), rectangle_angles(plaq)], 1) if self.rectangles else plaq.unsqueeze(1)

    def dynamics(self, x: torch.Tensor):
        def f(t, theta):
            create_graph = torch.is_grad_enabled()
            c = self.weight @ fourier_time_features(t, self.n_time, self.weight)  # (n_loops, N)
            with torch.enable_grad():
                theta = theta if theta.requires_grad else theta.detach().requires_grad_()
                cosines = torch.cos(self.loop_angles(theta).unsqueeze(2) * self.harmonics.view(-1, 1, 1))
                terms = cosines * c.view(1, *c.shape, 1, 1)  # (B, n_loops, N, L0, L1)
                v, = torch.autograd.grad(terms.sum(), theta, create_graph=create_graph)
            laplacian = self.perimeters.view(-1, 1) * self.harmonics**2  # (n_loops, N)
            divergence = -(terms.flatten(3).sum(3) * laplacian).flatten(1).sum(1)
            return (v, divergence) if create_graph else (v.detach(), divergence.detach())
        return f


class WrappedContinuousTransform(ContinuousTransform):
    """A `ContinuousTransform` on angles whose outputs are wrapped into (−π, π]."""

    def forward(self, x):
        y, ladj = super().forward(x)
        return wrap_angle(y), ladj

    def inverse(self, y):
        x, ladj = super().inverse(y)
        return wrap_angle(x), ladj


def build_u1_cnf(theory, loops="plaquette+rectangle", n_harmonics=3, n_time=5, method="rk4", n_steps=20,
                 rtol=1e-5, atol=1e-5, adjoint=False) -> ContinuousFlow:
    """The gauge-equivariant continuous flow (module docstring) on ``theory.lattice`` (L0, L1), float32."""
    lattice = tuple(int(n) for n in theory.lattice)
    if len(lattice) != 2:
        raise ValueError(f"the U(1) continuous flow is two-dimensional, got lattice {list(lattice)}")
    velocity = WilsonLoopPotentialVelocity(loops, n_harmonics, n_time)
    transform = WrappedContinuousTransform(velocity, Solver(method, n_steps, rtol, atol), adjoint)
    return ContinuousFlow(haar_prior(theory), transform).to(torch.float32)
