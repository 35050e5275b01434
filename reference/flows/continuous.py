"""Continuous normalizing flows on scalar fields (B, *lattice) (Chen et al. 2018; Grathwohl et al.
2019; for φ⁴ Gerdes, de Haan, Rainone, Bondesan & Cheng, arXiv:2207.00283).

A velocity field v(t, φ) transports the prior sample z = φ(0) to x = φ(1); along the way
d log q/dt = −∇·v, so log q(x) = log p(z) − ∫₀¹ ∇·v dt. `ContinuousTransform` is a `Bijection`
(``forward``: prior → target, ``ladj`` = ∫₀¹ ∇·v dt; ``inverse`` integrates from t = 1 back to 0),
so the flows reuse `Flow` (``sample``, ``log_prob``) and train with `suite.training` unchanged.

Velocities, each ``dynamics(x) -> f(t, x) -> (v (B, *lattice), ∇·v (B,))`` (``dynamics`` draws any
randomness once per integration, so the adjoint pass sees the same field):

* `EquivariantVelocity` (Gerdes et al.): v_x = Σ_y Σ_{f,a} W[o(x−y), f, a] T_a(t) F_f(φ_y) with time
  features T (a Fourier basis on [0, 1]), odd field features F = (sin ω_1φ, …, sin ω_nφ, φ)
  (learned ω) and a lattice-wide kernel W that depends on x − y only through its orbit o under the
  lattice's point group (reflections x_μ → −x_μ on every axis, and permutations of equal axes),
  stored divided by the orbit's size (so that Σ_r W(r), hence the velocity's scale, is the sum
  of the parameters over orbits, not over sites: a step of the optimizer moves every mode alike).
  The kernel is defined on the infinite lattice, on the box |r_μ| ≤ R, and wrapped onto the
  torus (W_L(r) = Σ_n W(r + nL), so the images of r beyond L/2 add up): ``radius`` R = 0 takes
  R_μ = L_μ // 2, the full periodic kernel of Gerdes et al. (its parameters depend on L); an integer
  R gives parameters that do not depend on L, so a flow trained on a small lattice transfers to a
  larger one (exactly the same kernel once L_μ > 2R). Hence v commutes with translations,
  rotations, reflections and φ → −φ, and the divergence is exact and cheap:
  ∇·v = Σ_x Σ_{f,a} W_L[0, f, a] T_a(t) F′_f(φ_x). W starts at zero (identity flow); the
  convolution runs as a product in momentum space.
* `ConvVelocity`: a ConvNet (circular padding, tanh) on φ and the time features as constant
  channels. Exact divergence by probing the Jacobian with colouring vectors: sites of one colour
  are further apart than the receptive field, so Σ_{x∈c} (J e_c)_x = Σ_{x∈c} J_xx and the trace
  takes (number of colours) vector-Jacobian products, independent of the volume once the lattice
  is larger than the receptive field. ``divergence="hutchinson"`` uses one Rademacher probe per
  configuration instead while training (unbiased ladj, so log q is not exact); in ``eval()`` mode
  the divergence is always exact.

Integration (`reference.flows.ode`): ``method`` "rk4" with ``n_steps`` steps or adaptive "dopri5";
``adjoint=True`` computes gradients by the adjoint method (memory flat in the number of steps),
otherwise by backpropagation through the solver. log q carries the integration error of the
solver; `log_q_integration_error` measures it against a much finer integration.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from reference.flows.couplings import CONVOLUTIONS
from reference.flows.models import Flow, scalar_prior
from reference.flows.ode import Solver, odeint, odeint_adjoint
from reference.flows.transforms import Bijection

DIVERGENCES = ("exact", "hutchinson")


def fourier_time_features(t: float, n: int, like: torch.Tensor) -> torch.Tensor:
    """(1, sin 2πkt, cos 2πkt for k = 1..(n−1)//2) on t ∈ [0, 1], shape (n,) (n odd; an even n
    drops the last cosine), dtype and device of ``like``."""
    k = torch.arange(1, (n - 1) // 2 + 2, dtype=like.dtype, device=like.device)
    angle = 2 * math.pi * k * t
    return torch.cat([like.new_ones(1), torch.stack([torch.sin(angle), torch.cos(angle)], 1).flatten()])[:n]


def _orbit_key(folded, lattice) -> tuple:
    """The point-group orbit of a displacement with folded components |r_μ|: sorted within axes of equal extent."""
    return tuple(sorted((n, f) for n, f in zip(lattice, folded)))


def wrapped_kernel_matrix(lattice, radius: int) -> torch.Tensor:
    """The matrix (V, n_orbits) that takes a kernel on the orbits of the box |r_μ| ≤ R of the
    infinite lattice, per orbit, to the kernel per displacement on the torus ``lattice``: entry
    (r, o) is the number of box displacements of orbit o that wrap onto r, divided by the orbit's
    size in the box. ``radius`` 0: R_μ = L_μ // 2. Orbits are numbered in an order that depends
    on R and on which axes have equal extents only, r = 0 is orbit 0."""
    lattice = tuple(int(n) for n in lattice)
    radii = tuple(n // 2 for n in lattice) if radius == 0 else (int(radius),) * len(lattice)
    keys, members = {}, []
    for folded in itertools.product(*(range(r + 1) for r in radii)):
        keys.setdefault(_orbit_key(folded, lattice), len(keys))
    for d in itertools.product(*(range(-r, r + 1) for r in radii)):
        site = sum(((di % n) * math.prod(lattice[mu + 1:])) for mu, (di, n) in enumerate(zip(d, lattice)))
        members.append((site, keys[_orbit_key([abs(di) for di in d], lattice)]))
    sites, orbits = torch.tensor(members).T
    sizes = torch.bincount(orbits, minlength=len(keys)).double()
    matrix = torch.zeros(math.prod(lattice), len(keys), dtype=torch.float64)
    matrix.index_put_((sites, orbits), 1.0 / sizes[orbits], accumulate=True)
    return matrix


class EquivariantVelocity(nn.Module):
    """The velocity of Gerdes et al. (module docstring) on ``lattice``; ``n_freq`` sine features
    plus the linear one, ``n_time`` time features, kernel range ``radius`` (0: the whole torus)."""

    def __init__(self, lattice, n_freq: int = 16, n_time: int = 5, freq_max: float = 5.0,
                 radius: int = 0):
        super().__init__()
        if n_freq < 0 or n_time < 1 or radius < 0:
            raise ValueError(f"need n_freq >= 0, n_time >= 1 and radius >= 0, got {n_freq}, {n_time}, {radius}")
        self.lattice, self.n_time = tuple(int(n) for n in lattice), int(n_time)
        wrap = wrapped_kernel_matrix(self.lattice, radius)
        self.register_buffer("wrap", wrap.float(), persistent=False)
        self.freq = nn.Parameter(freq_max * torch.rand(n_freq))
        self.weight = nn.Parameter(torch.zeros(wrap.shape[1], n_freq + 1, self.n_time))
        self.dims = tuple(range(-len(self.lattice), 0))

    def kernel(self, t: float) -> torch.Tensor:
        """W_L(t) per displacement on the torus, shape (n_features, *lattice)."""
        per_orbit = self.weight @ fourier_time_features(t, self.n_time, self.weight)  # (n_orbits, n_features)
        return (self.wrap.to(per_orbit.dtype) @ per_orbit).T.reshape(-1, *self.lattice)

    def dynamics(self, x: torch.Tensor):
        def f(t, phi):
            spatial = self.kernel(t)  # (n_features, *lattice)
            wf = phi.unsqueeze(1) * self.freq.view(-1, *([1] * len(self.lattice)))  # (B, n_freq, *lattice)
            features = torch.cat([torch.sin(wf), phi.unsqueeze(1)], 1)
            slopes = torch.cat([self.freq.view(-1, *([1] * len(self.lattice))) * torch.cos(wf),
                                torch.ones_like(phi).unsqueeze(1)], 1)
            v_hat = (torch.fft.rfftn(spatial, dim=self.dims) * torch.fft.rfftn(features, dim=self.dims)).sum(1)
            v = torch.fft.irfftn(v_hat, s=self.lattice, dim=self.dims)
            divergence = (slopes.flatten(2).sum(2) * spatial.flatten(1)[:, 0]).sum(1)
            return v, divergence
        return f


def _colour_period(extent: int, radius: int) -> int:
    """The smallest divisor P of ``extent`` with P ≥ 2·radius + 1 (``extent`` if none)."""
    return next((p for p in range(2 * radius + 1, extent + 1) if extent % p == 0), extent)


class ConvVelocity(nn.Module):
    """v = ConvNet(φ, T(t)) with tanh activations, ``hidden`` channels, odd ``kernel_size``; exact
    or Hutchinson divergence (module docstring)."""

    def __init__(self, lattice, hidden=(16, 16), kernel_size: int = 3, n_time: int = 5,
                 divergence: str = "exact"):
        super().__init__()
        self.lattice, self.n_time = tuple(int(n) for n in lattice), int(n_time)
        if len(self.lattice) not in CONVOLUTIONS or kernel_size % 2 == 0:
            raise ValueError(f"need lattice dimension 1-3 and odd kernel_size, got {self.lattice}, {kernel_size}")
        if divergence not in DIVERGENCES:
            raise ValueError(f"unknown divergence {divergence!r}; expected one of {', '.join(DIVERGENCES)}")
        self.divergence = divergence
        sizes = [1 + self.n_time, *hidden, 1]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(CONVOLUTIONS[len(self.lattice)](a, b, kernel_size, padding=kernel_size // 2,
                                                          padding_mode="circular"))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        radius = (len(sizes) - 1) * (kernel_size // 2)
        periods = [_colour_period(n, radius) for n in self.lattice]
        grids = torch.meshgrid(*[torch.arange(n) % p for n, p in zip(self.lattice, periods)], indexing="ij")
        colour = sum(g * math.prod(periods[i + 1:]) for i, g in enumerate(grids))
        probes = torch.stack([(colour == c) for c in range(math.prod(periods))]).float()
        self.register_buffer("probes", probes.unsqueeze(1), persistent=False)  # (n_colours, 1, *lattice)

    def velocity(self, t: float, phi: torch.Tensor) -> torch.Tensor:
        time = fourier_time_features(t, self.n_time, phi).view(1, -1, *([1] * len(self.lattice)))
        inputs = torch.cat([phi.unsqueeze(1), time.expand(phi.shape[0], -1, *self.lattice)], 1)
        return self.net(inputs).squeeze(1)

    def dynamics(self, x: torch.Tensor):
        hutchinson = self.training and self.divergence == "hutchinson"
        if hutchinson:  # one Rademacher probe per configuration, fixed along the trajectory
            probes = (torch.randint(0, 2, x.shape, device=x.device) * 2 - 1).to(x.dtype).unsqueeze(0)
        else:
            probes = self.probes.to(x.dtype).expand(-1, x.shape[0], *self.lattice)

        def f(t, phi):
            create_graph = torch.is_grad_enabled()
            with torch.enable_grad():
                phi = phi if phi.requires_grad else phi.detach().requires_grad_()
                v = self.velocity(t, phi)
                vjp, = torch.autograd.grad(v, phi, probes, is_grads_batched=True, create_graph=create_graph)
            divergence = (vjp * probes).flatten(2).sum((0, 2))
            return (v, divergence) if create_graph else (v.detach(), divergence.detach())
        return f


class ContinuousTransform(Bijection):
    """The time-1 map of ``velocity`` (module docstring), integrated by ``solver``; gradients by the
    adjoint method if ``adjoint``. forward/inverse return (out, ladj) as every `Bijection`. Subclasses
    on other manifolds replace the integrators ``odeint`` and ``odeint_adjoint`` (same signatures as
    `reference.flows.ode`'s) and the solver type."""

    odeint = staticmethod(odeint)
    odeint_adjoint = staticmethod(odeint_adjoint)

    def __init__(self, velocity: nn.Module, solver: Solver, adjoint: bool = False):
        super().__init__()
        self.velocity, self.solver, self.adjoint = velocity, solver, bool(adjoint)

    def flow(self, x, t0: float, t1: float, solver: Solver | None = None):
        """x transported from t0 to t1 (either order) and ∫_{t0}^{t1} ∇·v dt, the log-determinant of
        that map (up to the integration error); ``solver`` overrides the transform's."""
        dynamics = self.velocity.dynamics(x)
        if self.adjoint and torch.is_grad_enabled():
            return self.odeint_adjoint(dynamics, x, list(self.velocity.parameters()), t0, t1,
                                       solver or self.solver)
        return self.odeint(dynamics, x, t0, t1, solver or self.solver)

    def forward(self, x):
        return self.flow(x, 0.0, 1.0)

    def inverse(self, y):
        return self.flow(y, 1.0, 0.0)


class ContinuousFlow(Flow):
    """A `Flow` whose transform is a `ContinuousTransform`."""

    @torch.no_grad()
    def log_q_integration_error(self, n: int, factor: int = 8, generator=None) -> dict:
        """The solver's error of log q, estimated on ``n`` prior samples z as |ladj − ladj_fine|, where
        ladj_fine integrates the same z with ``factor``× the RK4 steps (dopri5: tolerances / 10⁴),
        whose own error is negligible beside it (a 4th-order method: 8⁻⁴). Returns the "mean" and "max"
        of |ladj − ladj_fine| and the "std" of ladj − ladj_fine: a common offset cancels in
        self-normalised reweighting, the spread biases it."""
        transform, solver = self.transform, self.transform.solver
        p = next(self.parameters())
        z = self.prior.sample(n, generator=generator, dtype=p.dtype, device=p.device)
        fine = Solver(solver.method, solver.n_steps * factor, solver.rtol * 1e-4, solver.atol * 1e-4)
        error = transform.flow(z, 0.0, 1.0)[1] - transform.flow(z, 0.0, 1.0, fine)[1]
        return {"mean": float(error.abs().mean()), "max": float(error.abs().max()), "std": float(error.std())}


def _continuous_flow(theory, velocity, method, n_steps, rtol, atol, adjoint) -> ContinuousFlow:
    solver = Solver(method, n_steps, rtol, atol)
    transform = ContinuousTransform(velocity, solver, adjoint)
    return ContinuousFlow(scalar_prior(theory), transform).to(torch.float32)


def build_cnf_equivariant(theory, n_freq=16, n_time=5, freq_max=5.0, radius=0, method="rk4", n_steps=20,
                          rtol=1e-5, atol=1e-5, adjoint=False) -> ContinuousFlow:
    """The equivariant continuous flow of Gerdes et al. (arXiv:2207.00283) on ``theory.lattice``; an
    integer ``radius`` ≥ 1 makes its parameters independent of L (pretrainable on a smaller lattice)."""
    velocity = EquivariantVelocity(theory.lattice, n_freq, n_time, freq_max, radius)
    return _continuous_flow(theory, velocity, method, n_steps, rtol, atol, adjoint)


def build_cnf(theory, hidden=(16, 16), kernel_size=3, n_time=5, divergence="exact", method="rk4", n_steps=20,
              rtol=1e-5, atol=1e-5, adjoint=False) -> ContinuousFlow:
    """A continuous flow with a time-conditioned ConvNet velocity (no symmetry imposed)."""
    velocity = ConvVelocity(theory.lattice, hidden, kernel_size, n_time, divergence)
    return _continuous_flow(theory, velocity, method, n_steps, rtol, atol, adjoint)
