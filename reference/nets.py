"""The Non-Equilibrium Transport Sampler (NETS; M. S. Albergo and E. Vanden-Eijnden, arXiv:2410.02711):
annealed Langevin dynamics from the field space's prior to the theory with a learned transport drift,
and importance weights that are exact at every finite time step.

Path. U_t(x) = (1 − b(t)) (−log q_0(x)) + b(t) S(x) for t ∈ [0, 1], b(t) = t^p (p ≥ 1, so that
∂_t U_t = b'(t) (S + log q_0) is finite), i.e. the annealed theory of `reference.ais` at b = b(t):
ρ_t = e^{−U_t} / Z_t runs from the prior q_0 (Z_0 = 1) to e^{−S} / Z.

Dynamics. dX = [−ε ∇U_t(X) + b_θ(t, X)] dt + √(2ε) dW with diffusivity ε > 0 and the learned drift
b_θ (`DriftNet`; b_θ = 0 is annealed Langevin dynamics). On K steps of size h = 1/K at the times t_k = k h,
the Euler–Maruyama step from x_{k−1} is

    Δ_k = h μ⁺_k(x_{k−1}) + √(2εh) ξ_k,   x_k = x_{k−1} ⊕ Δ_k,   ξ_k ~ N(0, 1),
    μ⁺_k = −ε ∇U_{t_k} + b_θ(t_k, ·),     μ⁻_k = −ε ∇U_{t_k} − b_θ(t_k, ·),

where ⊕ is the field space's update (x + Δ on R^n; wrap(x + Δ) for angles on the torus, whose prior
is the uniform Haar measure).

Weights: the discrete path-measure ratio (Crooks / discrete Jarzynski). With the forward kernels
F_k(x_k | x_{k−1}) = N(x_k; x_{k−1} + h μ⁺_k(x_{k−1}), 2εh) and the backward kernels
B_k(x_{k−1} | x_k) = N(x_{k−1}; x_k + h μ⁻_k(x_k), 2εh) (the Euler–Maruyama step of the reversed
process, transport run backwards),

    w = e^{−S(x_K)} Π_k B_k(x_{k−1} | x_k) / [q_0(x_0) Π_k F_k(x_k | x_{k−1})],
    log w = −S(x_K) − log q_0(x_0) + Σ_k [−√(h/2ε) ξ_k·s_k − (h/4ε) |s_k|²],   s_k = μ⁺_k(x_{k−1}) + μ⁻_k(x_k)

(the Gaussian normalisations cancel; the bracket is log B_k − log F_k written with ξ_k). This form is
used because it is unbiased at every h, ε and b_θ: E[w] = ∫ e^{−S(x_K)} Π_k B_k dx_{0..K} = Z, since
each B_k integrates to one over x_{k−1}; likewise E[w O(x_K)] = Z ⟨O⟩. On the torus the kernels are
Gaussians on the covering space R^n (Δ_k is the unwrapped step, μ^± are periodic); summing the
backward path's probability of ending in the fundamental domain over the images of x_K gives one, so
E[w] = ∫_{(−π, π]^n} e^{−S} = Z with no sum over windings. As h → 0 the increments tend to
(∇·b_θ − ∇U_t·b_θ − ∂_t U_t) dt, the continuous NETS weight dA_t (Jarzynski's equality with transport):
−(1/2ε) Δ·(−2ε∇U) gives the Stratonovich ∫∇U∘dX = U_1(x_K) − U_0(x_0) − ∫∂_t U dt, the b_θ parts of
s_k give ∇·b_θ dt, and the |s_k|² term −∇U·b_θ dt. Neither ∇·b_θ nor ∂_t U is needed for sampling.

Cost per sample: one action evaluation (S(x_K)), K + 1 force evaluations (∇S at x_0 .. x_K, each
shared by the backward kernel of step k and the forward kernel of step k + 1; ∇ log q_0 is analytic
and not counted) and 2K drift evaluations (none without a drift).

Training: the PINN objective of NETS (its eq. for the free-energy-corrected continuity equation,
not the action-matching variant): with a learned rate of the free energy Ḟ_t (F_t = −log Z_t),

    L(θ, Ḟ) = ∫_0^1 E_{X_t} |∇·b_θ(t, X_t) − ∇U_t(X_t)·b_θ(t, X_t) − ∂_t U_t(X_t) + Ḟ_t|² dt,

zero exactly when ∂_t ρ_t + ∇·(b_θ ρ_t) = 0, the drift that makes the weights constant. The X_t are
the NETS process's own walkers with the current drift (`PINN`), detached (off-policy: no
backpropagation through the SDE), on a training grid of K' steps with diffusivity ε', every walker at
every grid time; since their law lags behind ρ_t, each time slice is weighted to ρ_t with the
self-normalised weights of the walkers' running log-weights (the same Crooks sums up to t_k, with
−U_{t_k}(x_k) in place of −S). Without them the loss, evaluated where the walkers are, is lowered by
a drift that contracts them, and such a drift leaves the weights unbiased but heavy-tailed. Ḟ_t is
a table on the training grid, set at the first step to its optimum for the initial drift (the
weighted mean of ∂_t U_t at each grid time). ∇·b_θ is computed exactly (`divergence` with the basis
vectors as probes, one network pass per field component) or by Hutchinson's estimator with two
independent Rademacher probes, whose residuals r̂_1 r̂_2 multiply to an unbiased estimate of the
squared residual. Training changes b_θ only; the sampling weights stay exact whatever it learns.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reference.ais import anneal, power_schedule, prior_force, weighted_chain
from suite.chain import Chain
from suite.errors import UsageError
from suite.fields import EuclideanSpace, TorusSpace
from suite.training import Objective

DIVERGENCES = ("exact", "hutchinson")


def _features(field):
    """The network's input channels per field component: x itself on R^n, (cos x, sin x) for angles
    (so that the drift is periodic); None for field spaces NETS does not support."""
    if isinstance(field, EuclideanSpace):
        return 1, lambda x: x
    if isinstance(field, TorusSpace):
        return 2, lambda x: torch.cat([torch.cos(x), torch.sin(x)], 1)
    return None


def check_theory(theory) -> None:
    """A one-line UsageError unless NETS supports the theory's field space and lattice."""
    field, lattice = theory.field, tuple(theory.lattice)
    if _features(field) is None:
        raise UsageError(f"nets supports real fields and angles (EuclideanSpace, TorusSpace), not "
                         f"{type(field).__name__} of {type(theory).__name__}")
    if not 1 <= len(lattice) <= 3 or field.shape[len(field.shape) - len(lattice):] != lattice:
        raise UsageError(f"nets' convolutional drift needs a 1-3 dimensional lattice with the sites last, got "
                         f"field shape {field.shape} on lattice {lattice}")


class DriftNet(nn.Module):
    """b_θ(t, x): a periodic convolutional network on the lattice (translation equivariant), the time t
    as one more input channel. The field components on a site (1 for a scalar, d links for U(1)) are
    channels; ``n_layers`` convolutions of ``kernel_size`` with circular padding, ``hidden`` channels
    and SiLU between them; the last layer starts at zero (b_θ = 0: annealed Langevin dynamics)."""

    def __init__(self, theory, *, hidden: int = 16, n_layers: int = 3, kernel_size: int = 3):
        super().__init__()
        check_theory(theory)
        if n_layers < 1 or hidden < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise UsageError(f"nets' drift needs n_layers, hidden >= 1 and an odd kernel_size, got {n_layers}, "
                             f"{hidden}, {kernel_size}")
        self.shape, self.lattice = theory.field.shape, tuple(theory.lattice)
        self.components = math.prod(self.shape[:len(self.shape) - len(self.lattice)])
        per_component, self.features = _features(theory.field)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(self.lattice) - 1]
        widths = [per_component * self.components + 1] + [hidden] * (n_layers - 1) + [self.components]
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers.append(conv(a, b, kernel_size, padding=kernel_size // 2, padding_mode="circular"))
            if i < n_layers - 1:
                layers.append(nn.SiLU())
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, t, x: torch.Tensor) -> torch.Tensor:
        """b_θ(t, x) for x (B, *shape) and t a number or one time per configuration (B,)."""
        n = x.shape[0]
        h = self.features(x.reshape(n, self.components, *self.lattice))
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(n).reshape(n, 1, *([1] * len(self.lattice)))
        return self.net(torch.cat([h, t.expand(n, 1, *self.lattice)], 1)).reshape(x.shape)


class NETSModel(nn.Module):
    """What training optimises: the drift and the free-energy rate Ḟ_t at the ``n_times`` training grid times."""

    def __init__(self, drift: DriftNet, n_times: int):
        super().__init__()
        self.drift = drift
        self.free_energy_rate = nn.Parameter(torch.zeros(n_times))


def divergence(drift, t, x: torch.Tensor, probes: torch.Tensor):
    """(b(t, x), vᵀ (∂b/∂x) v for every probe v, shape (P, B)), differentiable in the drift's parameters.

    ``probes`` (P, B, *shape) or (P, *shape) (the same for every configuration). With the n basis vectors
    as probes the sum over probes is ∇·b exactly; with Rademacher probes each is an unbiased estimate
    (Hutchinson). One network pass over the batch repeated P times and one vector–Jacobian product."""
    n_probes, n = probes.shape[0], x.shape[0]
    probes = probes.unsqueeze(1).expand(n_probes, *x.shape) if probes.dim() == x.dim() else probes
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(n).repeat(n_probes)
    with torch.enable_grad():
        y = x.detach().repeat(n_probes, *([1] * (x.dim() - 1))).requires_grad_(True)
        b = drift(t, y)
        v = probes.reshape(b.shape)
        (vjp,) = torch.autograd.grad((b * v).sum(), y, create_graph=True)
    return b[:n], (vjp * v).flatten(1).sum(1).reshape(n_probes, n)


def basis_probes(x: torch.Tensor) -> torch.Tensor:
    """The unit vectors of one configuration's components, shape (n, *shape): probes of the exact divergence."""
    n = math.prod(x.shape[1:])
    return torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *x.shape[1:])


def rademacher_probes(count: int, x: torch.Tensor) -> torch.Tensor:
    """``count`` independent ±1 probes per configuration, shape (count, *x.shape), from the global torch RNG."""
    return torch.randint(0, 2, (count, *x.shape), device=x.device).to(x.dtype).mul_(2).sub_(1)


def schedule_rate(t: torch.Tensor, power: float) -> torch.Tensor:
    """b'(t) of the path b(t) = t^power (power ≥ 1)."""
    return power * t.pow(power - 1) if power != 1 else torch.ones_like(t)


@torch.no_grad()
def nets_batch(theory, drift, n: int, *, n_steps: int, diffusivity: float, power: float, generator=None,
               dtype=torch.float64, device="cpu", visit=None):
    """``n`` NETS walkers through ``n_steps`` steps (module docstring): (final x, log w (n,)).

    ``drift`` None is b_θ = 0. ``visit(k, x, log_w)``, if given, is called at every grid time k = 0..K with
    the states and their log-weights so far, −log q_0(x_0) + Σ_{j ≤ k} (log B_j − log F_j): with
    −U_{t_k}(x_k) added they weight the walkers to ρ_{t_k}. Randomness from ``generator`` (None: the
    global torch RNG)."""
    space, h, eps = theory.field, 1.0 / n_steps, float(diffusivity)
    schedule = power_schedule(n_steps, power)
    x = space.prior_sample(n, generator=generator, dtype=dtype, device=device)
    log_w = -space.prior_log_prob(x)
    at_prior, at_target = prior_force(space, x), theory.force(x)
    if visit is not None:
        visit(0, x, log_w)
    for k in range(1, n_steps + 1):
        t, langevin = k * h, -eps * anneal(schedule[k], at_prior, at_target)
        forward = langevin if drift is None else langevin + drift(t, x)
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = space.update(x, h * forward + math.sqrt(2 * eps * h) * xi, 1.0)
        at_prior, at_target = prior_force(space, x), theory.force(x)
        backward = -eps * anneal(schedule[k], at_prior, at_target)
        if drift is not None:
            backward = backward - drift(t, x)
        s = (forward + backward).flatten(1)
        log_w -= math.sqrt(h / (2 * eps)) * (xi.flatten(1) * s).sum(1) + h / (4 * eps) * s.pow(2).sum(1)
        if visit is not None:
            visit(k, x, log_w)
    return x, log_w - theory.action(x)


@torch.no_grad()
def reverse_nets_log_weights(theory, drift, x: torch.Tensor, *, n_steps: int, diffusivity: float, power: float,
                             generator=None) -> torch.Tensor:
    """log w of NETS paths run backwards from configurations x (n, *field shape) of the target: x_K = x,
    then x_{k−1} = x_k ⊕ (h μ⁻_k(x_k) + √(2εh) η_k) drawn from the backward kernels B_k, and the forward
    weight of the path. With Δ_k = −(h μ⁻_k(x_k) + √(2εh) η_k) the forward step, log B_k − log F_k =
    √(h/2ε) η_k·s_k + (h/4ε)|s_k|² (module docstring's s_k). For x ~ p these paths follow the extended
    target P = p(x_K) Π_k B_k, with P/Q = w/Z: NETS's log-weights at target samples (forward ESS, EUBO)."""
    space, h, eps = theory.field, 1.0 / n_steps, float(diffusivity)
    schedule = power_schedule(n_steps, power)
    log_w = -theory.action(x)
    at_prior, at_target = prior_force(space, x), theory.force(x)
    for k in range(n_steps, 0, -1):
        t = k * h
        backward = -eps * anneal(schedule[k], at_prior, at_target)
        if drift is not None:
            backward = backward - drift(t, x)
        eta = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = space.update(x, h * backward + math.sqrt(2 * eps * h) * eta, 1.0)
        at_prior, at_target = prior_force(space, x), theory.force(x)
        forward = -eps * anneal(schedule[k], at_prior, at_target)
        if drift is not None:
            forward = forward + drift(t, x)
        s = (forward + backward).flatten(1)
        log_w += math.sqrt(h / (2 * eps)) * (eta.flatten(1) * s).sum(1) + h / (4 * eps) * s.pow(2).sum(1)
    return log_w - space.prior_log_prob(x)


def evaluations_per_sample(n_steps: int, trained: bool) -> dict:
    """Action, force and drift evaluations per NETS sample (module docstring)."""
    return {"action_evaluations_per_sample": 1, "force_evaluations_per_sample": n_steps + 1,
            "drift_evaluations_per_sample": 2 * n_steps if trained else 0,
            "evaluations_per_sample": n_steps + 2}


class PINN(Objective):
    """The NETS PINN loss (module docstring) on walkers of the current drift, for `suite.training.train`
    with a `NETSModel`; returns the walkers' log-weights for the training log's ESS."""

    name = "nets-pinn"

    def __init__(self, theory, *, n_steps: int, diffusivity: float, power: float, divergence: str):
        if divergence not in DIVERGENCES:
            raise UsageError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {divergence!r}")
        self.theory, self.n_steps, self.diffusivity, self.power = theory, n_steps, diffusivity, power
        self.exact = divergence == "exact"

    def check(self, model):
        if not isinstance(model, NETSModel) or model.free_energy_rate.numel() != self.n_steps + 1:
            raise TypeError(f"the NETS PINN loss needs a NETSModel with {self.n_steps + 1} free-energy rates")

    def residual(self, model, t, x, probes) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇·b − ∇U_t·b − ∂_t U_t (without Ḟ_t) per probe, shape (P, N) (exact: P = 1); U_t (N,)) at times t (N,)."""
        theory, space = self.theory, self.theory.field
        b_t, action, log_q0 = t.pow(self.power), theory.action(x), space.prior_log_prob(x)
        grad_u = anneal(b_t, prior_force(space, x), theory.force(x))
        rate_u = schedule_rate(t, self.power) * (action + log_q0)
        b, quad = divergence(model.drift, t, x, probes)
        div = quad.sum(0, keepdim=True) if self.exact else quad
        return div - (grad_u * b).flatten(1).sum(1) - rate_u, anneal(b_t, -log_q0, action)

    def loss(self, model, batch_size, step):
        ref, states, partial = model.free_energy_rate, [], []
        _, log_w = nets_batch(self.theory, model.drift, batch_size, n_steps=self.n_steps,
                              diffusivity=self.diffusivity, power=self.power, dtype=ref.dtype, device=ref.device,
                              visit=lambda k, x, log_w: (states.append(x), partial.append(log_w.clone())))
        x = torch.cat(states)  # every walker at every grid time, time-major
        times = torch.arange(self.n_steps + 1, device=ref.device).repeat_interleave(batch_size)
        probes = basis_probes(x) if self.exact else rademacher_probes(2, x)
        r, potential = self.residual(model, times.to(ref.dtype) / self.n_steps, x, probes)
        # self-normalised weights of the walkers to ρ_t in every time slice: the loss is the expectation over ρ_t
        weights = torch.softmax((torch.cat(partial) - potential.detach()).reshape(self.n_steps + 1, batch_size), 1)
        if step == 1:  # Ḟ_t starts at its optimum for the initial drift: minus the mean residual at each t
            with torch.no_grad():
                mean = (r.detach().mean(0).reshape(self.n_steps + 1, batch_size) * weights).sum(1)
                model.free_energy_rate.copy_(-mean)
        r = r + model.free_energy_rate[times]
        squared = r[0].pow(2) if self.exact else r[0] * r[1]  # two independent probes: unbiased for r²
        return (squared.reshape(self.n_steps + 1, batch_size) * weights).sum(1).mean(), log_w


def run_nets(theory, drift, *, n_samples: int, n_steps: int, diffusivity: float, power: float, batch: int = 1024,
             seed: int = 0, dtype=torch.float64, device="cpu", progress: bool | None = None,
             target: torch.Tensor | None = None) -> Chain:
    """``n_samples`` independent NETS samples in batches of ``batch``: a `Chain` of one replicum with the
    final configurations' observables (1, N) and log-weights (1, N) (module docstring). With ``target``
    configurations (M, *field shape), also the log-weights of the reverse paths from them
    (`reverse_nets_log_weights`, their own random stream) as ``target_log_weights`` (M,)."""
    if n_samples < 1 or batch < 1 or n_steps < 1 or not diffusivity > 0 or not power >= 1:
        raise UsageError(f"need n_samples, batch, n_steps >= 1, diffusivity > 0 and power >= 1; got {n_samples}, "
                         f"{batch}, {n_steps}, {diffusivity}, {power}")
    check_theory(theory)
    generator = torch.Generator(device=device).manual_seed(seed)
    no_transitions = torch.zeros(0, dtype=dtype, device=device)

    def draw(n):
        x, log_w = nets_batch(theory, drift, n, n_steps=n_steps, diffusivity=diffusivity, power=power,
                              generator=generator, dtype=dtype, device=device)
        return x, log_w, no_transitions

    counts = evaluations_per_sample(n_steps, drift is not None)
    chain = weighted_chain(draw, theory, n_samples=n_samples, batch=batch, name="NETS",
                           info={"n_samples": n_samples, "n_steps": n_steps, "diffusivity": diffusivity,
                                 "schedule_power": power, "batch": batch, "seed": seed,
                                 "dtype": str(dtype).removeprefix("torch."),
                                 "drift_evaluations_per_sample": counts["drift_evaluations_per_sample"]},
                           action_evaluations=counts["action_evaluations_per_sample"],
                           force_evaluations=counts["force_evaluations_per_sample"], progress=progress)
    if target is not None:
        reverse = torch.Generator(device=device).manual_seed(seed + 1)
        target = target.to(device=device, dtype=theory.field.field_dtype(dtype))
        chain.target_log_weights = torch.cat([
            reverse_nets_log_weights(theory, drift, part, n_steps=n_steps, diffusivity=diffusivity, power=power,
                                     generator=reverse) for part in target.split(batch)]).cpu().numpy()
    return chain


__all__ = ["DIVERGENCES", "DriftNet", "NETSModel", "PINN", "basis_probes", "check_theory", "divergence",
           "evaluations_per_sample", "nets_batch", "rademacher_probes", "reverse_nets_log_weights", "run_nets",
           "schedule_rate"]
