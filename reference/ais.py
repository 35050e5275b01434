"""Annealed importance sampling (AIS; R. M. Neal, Statistics and Computing 11 (2001) 125,
arXiv:physics/9803008) from the field space's prior to the theory, with HMC transitions.

Targets. With the prior density q_0 (``theory.field.prior_log_prob``, normalised w.r.t. the space's
volume measure) and a schedule 0 = b_0 < b_1 < ... < b_K = 1, the intermediate targets are

    π_k(x) ∝ f_k(x) = q_0(x)^{1−b_k} e^{−b_k S(x)},   f_0 = q_0 (normalised), f_K = e^{−S},

i.e. the "annealed theory" of coupling b with action S_b = (1−b)(−log q_0) + b S and force
F_b = (1−b)(−∇ log q_0) + b ∇S (`AnnealedTheory`; for the N(0, 1) prior −log q_0 = ½ Σ x² + (n/2) log 2π,
for the Haar prior of the torus a constant).

One AIS sample. x_0 ~ q_0; for k = 1..K−1, x_k = T_k(x_{k−1}) with T_k a transition that leaves
π_k invariant (here one HMC trajectory of ``n_leapfrog`` leapfrog steps of size ``step_size`` at
b = b_k, accepted with min(1, e^{−ΔH}); ``n_leapfrog = 1`` is MALA, the Metropolis-adjusted
Langevin algorithm). The sample is x_{K−1} with the weight

    w = Π_{k=1}^{K} f_k(x_{k−1}) / f_{k−1}(x_{k−1}),
    log w = Σ_{k=1}^{K} (b_k − b_{k−1}) [−S(x_{k−1}) − log q_0(x_{k−1})],

since log f_k − log f_{k−1} = (b_k − b_{k−1}) (−S − log q_0). Neal's argument (the weight is the
ratio of the densities of the reversed and forward paths on the extended space, the T_k being
π_k-reversible) gives E[w] = ∫ f_K / ∫ f_0 = Z = ∫ e^{−S} dx over the field space's volume measure,
and E[w O(x_{K−1})] / E[w] = ⟨O⟩ for every observable: (x_{K−1}, w) are independent, properly
weighted samples, like a flow's with w = e^{−S}/q. With K = 1 there is no transition and AIS is
plain importance sampling from the prior, log w = −S(x_0) − log q_0(x_0).

Schedules: b_k = (k/K)^p (``power`` p; p = 1 linear, p > 1 places more steps near the prior,
where −S − log q_0 varies most for a prior much wider than the target).

Cost per sample: K action evaluations (S(x_0) and each HMC proposal's) and (K − 1)(n_leapfrog + 1)
force evaluations (each trajectory's first kick and one per leapfrog step), returned in the
chain's ``info``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from reference.hmc import leapfrog
from suite.chain import Chain


def prior_force(space, x: torch.Tensor) -> torch.Tensor:
    """−∇ log q_0(x) of the space's prior (autograd of ``prior_log_prob``; zero for a constant prior
    such as Haar measure), differentiable in x where x requires gradients (the stochastic normalizing
    flow of `reference.snf` differentiates through HMC trajectories). Complex spaces: only a constant
    prior (their force lives in the Lie algebra)."""
    differentiable = x.requires_grad and torch.is_grad_enabled()
    with torch.enable_grad():
        y = x if differentiable else x.detach().requires_grad_(True)
        log_q = space.prior_log_prob(y)
        grad = None
        if log_q.requires_grad:
            (grad,) = torch.autograd.grad(log_q.sum(), y, allow_unused=True, create_graph=differentiable)
    if grad is None:
        return torch.zeros_like(x)
    if space.is_complex:
        raise NotImplementedError("annealing from a non-constant prior on a complex field space")
    return -grad


def anneal(b, at_prior, at_target):
    """(1−b)·at_prior + b·at_target: U_b = anneal(b, −log q_0, S) and ∇U_b = anneal(b, −∇log q_0, ∇S).
    ``b`` is a number or one value per configuration (a tensor of shape (B,), broadcast over the rest)."""
    if torch.is_tensor(b):
        b = b.reshape(-1, *([1] * (at_target.dim() - 1)))
    return (1 - b) * at_prior + b * at_target


class AnnealedTheory:
    """The theory of π_b ∝ q_0^{1−b} e^{−bS} for 0 ≤ b ≤ 1, against the Theory interface that HMC uses:
    ``action(x) = (1−b)(−log q_0(x)) + b S(x)``, ``force`` its gradient, the same ``field``."""

    def __init__(self, theory, b: float):
        if not 0 <= b <= 1:
            raise ValueError(f"annealing parameter b must be in [0, 1], got {b}")
        self.theory, self.b = theory, float(b)
        self.field = theory.field
        self.lattice = theory.lattice

    def action(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.theory.action(x), self.field.prior_log_prob(x))

    def combine(self, action: torch.Tensor, prior_log_prob: torch.Tensor) -> torch.Tensor:
        """S_b from the theory's action and the prior's log density at the same x."""
        return anneal(self.b, -prior_log_prob, action)

    def force(self, x: torch.Tensor) -> torch.Tensor:
        force = prior_force(self.field, x)
        return anneal(self.b, force, self.theory.force(x)) if self.b else force

    def kick(self, x: torch.Tensor, p: torch.Tensor, eps: float) -> torch.Tensor:
        """p ← p − eps·∇U_b(x) in place (as `Theory.kick`): the prior's part, then the theory's own
        (fused) kick with step b·eps."""
        if self.b < 1:
            p.sub_(prior_force(self.field, x), alpha=eps * (1 - self.b))
        return self.theory.kick(x, p, eps * self.b) if self.b else p


def power_schedule(n_temperatures: int, power: float = 1.0) -> np.ndarray:
    """b_k = (k/K)^power for k = 0..K (K = ``n_temperatures`` ≥ 1, power > 0): b_0 = 0, b_K = 1."""
    if n_temperatures < 1 or not power > 0:
        raise ValueError(f"need n_temperatures >= 1 and power > 0, got {n_temperatures}, {power}")
    b = (np.arange(n_temperatures + 1) / n_temperatures) ** power
    b[-1] = 1.0
    return b


def hmc_transition(theory, annealed, x, action, log_q0, eps, n_leapfrog, generator):
    """One HMC trajectory of ``n_leapfrog`` leapfrog steps of size ``eps`` at ``annealed.b`` (an
    `AnnealedTheory` of ``theory``) from x with S(x) and log q_0(x) known; returns (x, S, log q_0,
    accepted) after the Metropolis decision (per configuration). It leaves π_b invariant and is
    π_b-reversible. Differentiable in x where x requires gradients (the accept decisions are not)."""
    space = theory.field
    p = space.momenta(x, generator=generator)
    h_old = space.kinetic_energy(p) + annealed.combine(action, log_q0)
    x_new, p_new, _ = leapfrog(annealed, x, p, eps, n_leapfrog)
    action_new, log_q0_new = theory.action(x_new), space.prior_log_prob(x_new)
    delta_h = space.kinetic_energy(p_new) + annealed.combine(action_new, log_q0_new) - h_old
    delta_h = torch.nan_to_num(delta_h, nan=math.inf, posinf=math.inf)
    u = torch.rand(delta_h.shape, generator=generator, dtype=delta_h.dtype, device=delta_h.device)
    accepted = torch.log(u) < -delta_h
    mask = accepted.view(-1, *([1] * (x.dim() - 1)))
    return (torch.where(mask, x_new, x), torch.where(accepted, action_new, action),
            torch.where(accepted, log_q0_new, log_q0), accepted)


@torch.no_grad()
def ais_batch(theory, schedule, n: int, *, step_size: float, n_leapfrog: int, generator, dtype=torch.float64,
              device="cpu"):
    """``n`` AIS runs along ``schedule`` (b_0 = 0 .. b_K = 1): (final x, log w (n,), acceptance per transition (K−1,))."""
    space = theory.field
    x = space.prior_sample(n, generator=generator, dtype=dtype, device=device)
    action, log_q0 = theory.action(x), space.prior_log_prob(x)
    log_w = torch.zeros_like(action)
    acceptance = []
    for k in range(1, len(schedule)):
        log_w += (schedule[k] - schedule[k - 1]) * (-action - log_q0)
        if k == len(schedule) - 1:
            break
        annealed = AnnealedTheory(theory, schedule[k])
        x, action, log_q0, accepted = hmc_transition(theory, annealed, x, action, log_q0, step_size, n_leapfrog,
                                                     generator)
        acceptance.append(accepted.to(action.dtype).mean())
    acceptance = torch.stack(acceptance) if acceptance else torch.zeros(0, dtype=action.dtype, device=action.device)
    return x, log_w, acceptance


@torch.no_grad()
def reverse_ais_log_weights(theory, schedule, x: torch.Tensor, *, step_size: float, n_leapfrog: int,
                            generator) -> torch.Tensor:
    """log w of AIS paths run backwards from configurations x (n, *field shape) of the target: x_{K−1} = x,
    then x_{k−1} = T_k(x_k) for k = K−1 … 1 with the forward transitions (π_k-reversible, so they are
    their own reversals), and the forward weight Σ_k (b_k − b_{k−1}) [−S − log q_0](x_{k−1}) of the path.
    For x ~ p these paths follow the extended target P = p(x_{K−1}) Π_k T_k(x_k → x_{k−1}), and the
    forward proposal's density ratio is P/Q = w/Z: the log w are AIS's log-weights at target samples,
    for the forward ESS and the EUBO = E_P[log w] = log Z + KL(P‖Q) (Blessing et al., arXiv:2406.07423)."""
    space = theory.field
    action, log_q0 = theory.action(x), space.prior_log_prob(x)
    log_w = (schedule[-1] - schedule[-2]) * (-action - log_q0)
    for k in range(len(schedule) - 2, 0, -1):
        annealed = AnnealedTheory(theory, schedule[k])
        x, action, log_q0, _ = hmc_transition(theory, annealed, x, action, log_q0, step_size, n_leapfrog, generator)
        log_w += (schedule[k] - schedule[k - 1]) * (-action - log_q0)
    return log_w


def weighted_chain(draw, theory, *, n_samples: int, batch: int, name: str, info: dict, action_evaluations: int,
                   force_evaluations: int, progress: bool | None = None) -> Chain:
    """``n_samples`` independent weighted samples from ``draw(n) -> (x, log w (n,), acceptance per
    transition)``, ``batch`` at a time: a `Chain` of one replicum with the configurations' observables
    (1, N) and log-weights (1, N), the sampling seconds, and ``info`` with the acceptance (mean and lowest
    over transitions; None without any) and the action and force evaluations per sample. ``name`` names
    the sampler in the progress bar and in the error for non-finite log-weights."""
    observables, log_ws, acceptances = [], [], []
    start = time.perf_counter()
    for first in tqdm(range(0, n_samples, batch), desc=name.lower(),
                      disable=None if progress is None else not progress, leave=False):
        n = min(batch, n_samples - first)
        x, log_w, acceptance = draw(n)
        log_ws.append(log_w)
        acceptances.append(acceptance * n)
        observables.append(theory.observables(x))
    log_w = torch.cat(log_ws)
    if log_w.is_cuda:
        torch.cuda.synchronize(log_w.device)
    seconds = time.perf_counter() - start
    if not torch.isfinite(log_w).all():
        raise ValueError(f"{name} produced non-finite log-weights (an action that is not finite)")
    per_transition = (sum(acceptances) / n_samples).cpu().numpy()
    transitions = len(per_transition)
    return Chain(
        observables={k: torch.cat([o[k] for o in observables]).cpu().numpy()[None] for k in observables[0]},
        log_weights=log_w.cpu().numpy()[None],
        timings={"sampling": seconds},
        info={**info, "acceptance": float(per_transition.mean()) if transitions else None,
              "acceptance_min": float(per_transition.min()) if transitions else None,
              "action_evaluations_per_sample": action_evaluations,
              "force_evaluations_per_sample": force_evaluations,
              "evaluations_per_sample": action_evaluations + force_evaluations},
    )


def run_ais(theory, *, n_samples: int, n_temperatures: int, power: float = 1.0, n_leapfrog: int = 5,
            step_size: float = 0.2, batch: int = 1024, seed: int = 0, dtype=torch.float64, device="cpu",
            progress: bool | None = None, target: torch.Tensor | None = None) -> Chain:
    """``n_samples`` independent AIS samples in batches of ``batch``: a `Chain` of one replicum with the
    final configurations' observables (1, N) and log-weights (1, N) (see the module docstring). With
    ``target`` configurations (M, *field shape) of the theory, also the log-weights of the reverse paths
    from them (`reverse_ais_log_weights`, their own random stream) as ``target_log_weights`` (M,)."""
    if n_samples < 1 or batch < 1 or n_leapfrog < 1 or not step_size > 0:
        raise ValueError(f"need n_samples, batch, n_leapfrog >= 1 and step_size > 0; got {n_samples}, {batch}, "
                         f"{n_leapfrog}, {step_size}")
    schedule = power_schedule(n_temperatures, power)
    generator = torch.Generator(device=device).manual_seed(seed)

    def draw(n):
        return ais_batch(theory, schedule, n, step_size=step_size, n_leapfrog=n_leapfrog, generator=generator,
                         dtype=dtype, device=device)

    transitions = n_temperatures - 1
    chain = weighted_chain(
        draw, theory, n_samples=n_samples, batch=batch, name="AIS", progress=progress,
        info={"n_samples": n_samples, "n_temperatures": n_temperatures, "schedule_power": power,
              "n_leapfrog": n_leapfrog, "step_size": step_size, "batch": batch, "seed": seed,
              "dtype": str(dtype).removeprefix("torch.")},
        action_evaluations=n_temperatures, force_evaluations=transitions * (n_leapfrog + 1))
    if target is not None:
        reverse = torch.Generator(device=device).manual_seed(seed + 1)
        target = target.to(device=device, dtype=theory.field.field_dtype(dtype))
        chain.target_log_weights = torch.cat([
            reverse_ais_log_weights(theory, schedule, part, step_size=step_size, n_leapfrog=n_leapfrog,
                                    generator=reverse) for part in target.split(batch)]).cpu().numpy()
    return chain
