"""Hybrid Monte Carlo, generic over field spaces, many independent chains as one batch.

Hamiltonian H(x, p) = K(p) + S(x), with K and the momenta those of the theory's field space
(`suite.fields`: ½ Σ p² on flat spaces and the torus, −Σ Tr p² on SU(N)), the position update its
exact x ← exp(ε p) x and the force F in its tangent space (p ← p − ε F). One trajectory: draw
momenta, integrate Hamilton's equations for ``n_steps`` steps of size ``eps`` (trajectory length
n_steps·eps), accept with probability min(1, exp(−ΔH)), independently per chain.

The drift is the field space's `update_with_momentum` (x moves along the geodesic and p is carried
along: unchanged on flat spaces and groups, parallel-transported on spheres); kicks subtract the
force, which theories give in the tangent space, so p stays tangent. Kicks whose force is not kept
are the theory's `Theory.kick` (in place on p; φ⁴ fuses it, making no force tensor).

Theories with auxiliary fields in the action (pseudofermions) redraw them at the start of every
trajectory (`Theory.refresh`), and the solver work they report (`Theory.solver_work`, e.g. CG
iterations) goes per trajectory into the chain's info as ``NAME_per_trajectory`` (mean over the
measured trajectories) and ``NAME_per_trajectory_max``.

Integrators (both symmetric and reversible, error O(eps²) in ΔH):
* ``leapfrog``: one force evaluation per step.
* ``omelyan``: the second-order minimum-norm (2MN) integrator of Omelyan, Mryglod & Folk,
  Comput. Phys. Commun. 151 (2003) 272, with λ = 0.1931833275037836; two force evaluations per
  step and a smaller error constant.

The step size is adapted during the first three quarters of thermalisation by dual averaging
(Hoffman & Gelman 2014, Alg. 5) of the batch-mean acceptance probability toward a target, at
fixed trajectory length, and then frozen; in the last quarter any diverging trajectory (non-
finite energy) shortens the step by a quarter. Only frozen-step trajectories are measured, so
the chain is exact.

On CPU the integration runs over blocks of chains in turn (`chains_per_block`): a batch whose
fields outgrow the core's cache (φ⁴ with 64 chains at L ≥ 64) streams every temporary of every
step through main memory, while a block of about `BLOCK_BYTES` per field stays in cache. Every
operation of a chainwise theory (`Theory.chainwise`) acts on each chain alone, so the result is bit
for bit that of the whole batch (tested); theories with auxiliary fields are integrated whole.

Chains split over ranks (``group``, a `suite.distributed.Group` of a torchrun launch): ``chains`` is
the whole batch, which the world size N must divide, and rank r runs chains r·b … (r+1)·b − 1
(b = chains/N). Every rank seeds the generator alike and draws each random number of the *whole*
batch — prior, momenta, Metropolis uniforms — keeping its own rows, so no two ranks use the same
numbers and each rank's generator stays in the state of a one-process run's. The step-size
adaptation and the stability guard read the ΔH of all chains (gathered, in rank order). The
result — every chain's observables, accept flags and ΔH, the step size — is bit for bit that of
one process with the same chains and seed, as long as the theory computes each configuration
independently of the others in the batch (checked on CPU, one thread per process). The price: each
rank draws N times the momenta it integrates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from suite.chain import Chain

OMELYAN_LAMBDA = 0.1931833275037836
ADAPT_FRACTION = 0.75  # of the thermalisation adapts the step; the rest runs frozen under a stability guard
INTEGRATORS = ("leapfrog", "omelyan")
FORCES_PER_STEP = {"leapfrog": 1, "omelyan": 2}  # force evaluations per integrator step
BLOCK_BYTES = 2**20  # bytes of one field of a block of chains: 512 KiB to 1 MiB measured best here (bench/README.md)


@dataclass
class HMCSettings:
    trajectory_length: float = 1.0
    n_steps: int = 10                 # leapfrog steps per trajectory (initial value when adapting)
    integrator: str = "leapfrog"
    adapt: bool = True                 # adapt the step size during thermalisation
    target_acceptance: float = 0.8

    def __post_init__(self):
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {self.integrator!r}; expected one of {', '.join(INTEGRATORS)}")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        if not self.trajectory_length > 0:
            raise ValueError(f"trajectory_length must be > 0, got {self.trajectory_length}")
        if not 0 < self.target_acceptance < 1:
            raise ValueError(f"target_acceptance must be in (0, 1), got {self.target_acceptance}")


def leapfrog(theory, x, p, eps: float, n_steps: int, force=None):
    """Leapfrog (kick-drift-kick) for n_steps steps from (x, p); ``force`` is F(x) if already known.

    Returns (x_new, p_new, F(x_new)); p is not modified (the first kick makes a new tensor). The
    inner kicks are the theory's `kick` (fused where the theory has one); only the last force is kept.
    """
    space = theory.field
    force = theory.force(x) if force is None else force
    p = p - 0.5 * eps * force
    for _ in range(n_steps - 1):
        x, p = space.update_with_momentum(x, p, eps)
        theory.kick(x, p, eps)
    x, p = space.update_with_momentum(x, p, eps)
    force = theory.force(x)
    return x, p.sub_(force, alpha=0.5 * eps), force


def omelyan(theory, x, p, eps: float, n_steps: int, force=None, lam: float = OMELYAN_LAMBDA):
    """Second-order minimum-norm integrator (kick λε, drift ε/2, kick (1−2λ)ε, drift ε/2, kick λε);
    arguments and result as for `leapfrog`."""
    space = theory.field
    force = theory.force(x) if force is None else force
    p = p - lam * eps * force
    for step in range(n_steps):
        x, p = space.update_with_momentum(x, p, 0.5 * eps)
        theory.kick(x, p, (1 - 2 * lam) * eps)
        x, p = space.update_with_momentum(x, p, 0.5 * eps)
        if step < n_steps - 1:
            theory.kick(x, p, 2 * lam * eps)
    force = theory.force(x)
    return x, p.sub_(force, alpha=lam * eps), force


INTEGRATOR_FUNCTIONS = {"leapfrog": leapfrog, "omelyan": omelyan}


def integrate(theory, x, p, eps, n_steps, integrator="leapfrog"):
    """Run the named integrator; returns the new (x, p)."""
    x, p, _ = INTEGRATOR_FUNCTIONS[integrator](theory, x, p, eps, n_steps)
    return x, p


def evolve(theory, x, p, action, force, eps: float, n_steps: int, integrator: str = "leapfrog"):
    """The deterministic part of a trajectory from (x, p), with S(x) and F(x) given: returns
    (x_new, S(x_new), F(x_new), ΔH). ``torch.compile(evolve)`` fuses it into one graph (compiled
    once per shape, dtype, step size, step count and integrator: for loops at a fixed step)."""
    space = theory.field
    h_old = space.kinetic_energy(p) + action
    x_new, p_new, force_new = INTEGRATOR_FUNCTIONS[integrator](theory, x, p, eps, n_steps, force)
    action_new = theory.action(x_new)
    return x_new, action_new, force_new, space.kinetic_energy(p_new) + action_new - h_old


def chains_per_block(theory, x, block_bytes: int | None = BLOCK_BYTES) -> int:
    """How many of the batch's chains (x: (B, ...)) `hmc_trajectory` integrates together. On CPU: the
    fewest blocks of equal size with at most ``block_bytes`` per field. The whole batch on other
    devices, for theories that are not chainwise (`Theory.chainwise`; an object that does not say is
    taken as not), with ``block_bytes`` None, and where a block would hold a single chain (the
    per-operation overhead of one-chain blocks outweighs the cache)."""
    batch = x.shape[0]
    if block_bytes is None or x.device.type != "cpu" or not getattr(theory, "chainwise", False):
        return batch
    n_blocks = math.ceil(batch * x[0].numel() * x.element_size() / block_bytes)
    block = math.ceil(batch / n_blocks)  # blocks of equal size, at most block_bytes each where a chain fits
    return block if block >= 2 else batch


def evolve_in_blocks(evolve_fn, theory, x, p, action, force, eps: float, n_steps: int, integrator: str,
                     block: int):
    """``evolve_fn`` (`evolve` or a compiled one) on blocks of ``block`` chains in turn, its results
    concatenated: the same as one call on the whole batch for a chainwise theory."""
    if block >= x.shape[0]:
        return evolve_fn(theory, x, p, action, force, eps, n_steps, integrator)
    parts = [evolve_fn(theory, x[i:i + block], p[i:i + block], action[i:i + block], force[i:i + block], eps,
                       n_steps, integrator) for i in range(0, x.shape[0], block)]
    return tuple(torch.cat(results) for results in zip(*parts))


def _whole(x, group):
    """``x`` tiled to the whole batch of all ranks' chains (``x`` itself in one process): the shape of a draw
    for every chain (rows r·b … (r+1)·b − 1 are x; the momenta of a sphere depend on them)."""
    return x if group is None else x.repeat(group.world_size, *([1] * (x.dim() - 1)))


def _mine(whole, group):
    """This rank's rows of a draw for the whole batch (all of it in one process)."""
    if group is None:
        return whole
    b = whole.shape[0] // group.world_size
    return whole[group.rank * b:(group.rank + 1) * b]


def _gathered(tensor, group):
    """Every rank's rows of ``tensor`` in rank order: the whole batch's (``tensor`` itself in one process)."""
    if group is None:
        return tensor
    from suite import distributed

    return distributed.all_gather_tensor(tensor)


def hmc_trajectory(theory, x, eps, n_steps, integrator="leapfrog", generator=None, cache=None, evolve=evolve,
                   group=None, block_bytes: int | None = BLOCK_BYTES):
    """One HMC update of every chain in the batch (this rank's chains, with ``group``; module docstring):
    the theory's auxiliary fields refreshed (`Theory.refresh`, e.g. pseudofermions; nothing for most
    theories), momenta drawn, the trajectory integrated and accepted or rejected per chain.

    Returns (x_new, accepted (B,) bool, delta_h (B,)). A trajectory that diverged (non-finite
    energy) gets ΔH = +inf and is rejected. ``cache``: a dict passed unchanged to every call on
    the same chains (and the x each call returns); it carries the action and force of the current
    state from one trajectory to the next, which saves one of each per trajectory. The result is
    the same with or without it (x must not be modified in place between calls). ``evolve``:
    `evolve` or a compiled version of it. ``block_bytes``: the integration runs over blocks of chains
    of this size per field (`chains_per_block`; None: the whole batch at once). No host-device
    synchronisation.
    """
    cache = {} if cache is None else cache
    counts = cache.setdefault("evaluations", {"action": 0, "force": 0})
    if theory.refresh(x, generator) or cache.get("x") is not x:  # new pseudofermions change S and F of x
        cache.update(x=x, action=theory.action(x), force=theory.force(x))
        counts["action"] += 1
        counts["force"] += 1
    counts["action"] += 1
    counts["force"] += FORCES_PER_STEP[integrator] * n_steps
    p = _mine(theory.field.momenta(_whole(x, group), generator=generator), group)
    x_new, action_new, force_new, delta_h = evolve_in_blocks(evolve, theory, x, p, cache["action"], cache["force"],
                                                             eps, n_steps, integrator,
                                                             chains_per_block(theory, x, block_bytes))
    delta_h = torch.nan_to_num(delta_h, nan=math.inf, posinf=math.inf)  # a diverged trajectory: ΔH = +inf
    u = _mine(torch.rand(_whole(delta_h, group).shape, generator=generator, dtype=delta_h.dtype,
                         device=delta_h.device), group)
    accepted = torch.log(u) < -delta_h
    mask = accepted.view(-1, *([1] * (x.dim() - 1)))
    x_out = torch.where(mask, x_new, x)
    cache.update(x=x_out, action=torch.where(accepted, action_new, cache["action"]),
                 force=torch.where(mask, force_new, cache["force"]))
    return x_out, accepted, delta_h


class DualAveraging:
    """Hoffman & Gelman's dual averaging of log(eps) toward a target acceptance probability."""

    def __init__(self, eps0: float, target: float, gamma=0.05, t0=10.0, kappa=0.75):
        self.mu = math.log(10 * eps0)
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.h_bar, self.log_eps_bar, self.t = 0.0, math.log(eps0), 0

    def update(self, acceptance_probability: float) -> float:
        """Feed one observed mean acceptance probability; returns the next step size to try."""
        self.t += 1
        w = 1 / (self.t + self.t0)
        self.h_bar = (1 - w) * self.h_bar + w * (self.target - acceptance_probability)
        log_eps = self.mu - math.sqrt(self.t) / self.gamma * self.h_bar
        eta = self.t ** (-self.kappa)
        self.log_eps_bar = eta * log_eps + (1 - eta) * self.log_eps_bar
        return math.exp(log_eps)

    @property
    def final(self) -> float:
        return math.exp(self.log_eps_bar)


def _quiet(progress: bool | None):
    """tqdm's ``disable``: None shows bars only on a terminal."""
    return None if progress is None else not progress


def steps_for(trajectory_length: float, eps: float) -> int:
    """Number of steps of size about eps that make up the trajectory (at least 1)."""
    return max(1, math.ceil(trajectory_length / eps - 1e-9))


@dataclass
class Thermalised:
    """Chains after thermalisation, with the frozen integrator settings and their generator."""

    x: torch.Tensor
    eps: float
    n_steps: int
    generator: torch.Generator
    seconds: float
    cache: dict = field(default_factory=dict)  # action and force of x (see `hmc_trajectory`)
    group: object = None  # a `suite.distributed.Group`: x holds this rank's chains

    def trajectory(self, theory, integrator: str):
        """Advance every chain by one trajectory at the frozen step; returns (accepted, delta_h)."""
        self.x, accepted, delta_h = hmc_trajectory(theory, self.x, self.eps, self.n_steps, integrator,
                                                   self.generator, self.cache, group=self.group)
        return accepted, delta_h


def thermalise(theory, *, chains: int, n_therm: int, seed: int, settings: HMCSettings | None = None,
               dtype=torch.float64, device="cpu", progress: bool | None = None, group=None) -> Thermalised:
    """Start ``chains`` chains from the prior and run ``n_therm`` trajectories, adapting the step size.

    ``group``: split the chains over its ranks (module docstring); x then holds this rank's."""
    settings = settings or HMCSettings()
    if chains < 1 or n_therm < 0:
        raise ValueError(f"need chains >= 1 and n_therm >= 0; got {chains}, {n_therm}")
    if group is not None:
        from suite import distributed

        distributed.split(chains, group, "chains")
    generator = torch.Generator(device=device).manual_seed(seed)
    x = _mine(theory.field.prior_sample(chains, generator=generator, dtype=dtype, device=device), group)
    n_steps = settings.n_steps
    eps = settings.trajectory_length / n_steps
    n_adapt = int(ADAPT_FRACTION * n_therm) if settings.adapt else 0
    adapter = DualAveraging(eps, settings.target_acceptance) if n_adapt > 0 else None
    cache = {}

    start = time.perf_counter()
    for i in tqdm(range(n_therm), desc="thermalise", disable=_quiet(progress), leave=False):
        x, _, delta_h = hmc_trajectory(theory, x, eps, n_steps, settings.integrator, generator, cache, group=group)
        if settings.adapt:  # the adaptation and the guard read every chain's ΔH
            delta_h = _gathered(delta_h, group)
        if i < n_adapt:
            prob = torch.exp(-delta_h.clamp(min=0)).mean().item()
            next_eps = adapter.update(prob) if i < n_adapt - 1 else adapter.final
            n_steps = steps_for(settings.trajectory_length, next_eps)
        elif settings.adapt and not torch.isfinite(delta_h).all():
            # Stability guard: a diverging trajectory at the frozen step size (the leapfrog is
            # unstable where the quartic force is stiff) shortens the step by a quarter.
            n_steps = math.ceil(1.25 * n_steps)
        eps = settings.trajectory_length / n_steps
    return Thermalised(x, eps, n_steps, generator, time.perf_counter() - start, cache, group)


def run_hmc(theory, *, chains: int, n_therm: int, n_traj: int, seed: int, settings: HMCSettings | None = None,
            dtype=torch.float64, device="cpu", progress: bool | None = None, measure_every: int = 1,
            costly_every: int = 1, group=None, on_measurement=None) -> Chain:
    """Thermalise (adapting the step size) and then take ``n_traj`` measurements on ``chains`` chains.

    Observables are measured after every ``measure_every``-th trajectory; the Metropolis decisions
    and ΔH of all ``n_traj × measure_every`` trajectories are kept. The theory's costly observables
    (those `Theory.cheap_observables` leaves out, e.g. the gradient-flowed topological charge) are
    measured only at every ``costly_every``-th measurement: their records have ⌊n_traj/costly_every⌋
    columns, the others n_traj. Reproducible for a given seed on CPU.
    ``on_measurement(x)``, where given, is called with the configurations (chains, *field shape) of
    every measurement, in Monte Carlo order (x is never modified in place afterwards, so it may be kept).
    ``group``: the chains split over its ranks (module docstring); every rank returns the whole
    chain, its records gathered in rank order, its seconds the slowest rank's.
    """
    settings = settings or HMCSettings()
    if n_traj < 1 or measure_every < 1 or not 1 <= costly_every <= n_traj:
        raise ValueError(f"need n_traj >= 1, measure_every >= 1 and 1 <= costly_every <= n_traj, got {n_traj}, "
                         f"{measure_every}, {costly_every}")
    state = thermalise(theory, chains=chains, n_therm=n_therm, seed=seed, settings=settings, dtype=dtype,
                       device=device, progress=progress, group=group)
    # Measurements go into preallocated (chains, n_traj) buffers on the device (the Metropolis
    # record into (chains, n_traj × measure_every)): no host sync in the loop, and no
    # per-trajectory tensors (or views of larger ones) kept alive.
    records, steps, work, cheap = {}, {}, {}, None
    n_total = n_traj * measure_every
    evaluations_before = dict(state.cache.get("evaluations", {"action": 0, "force": 0}))
    start = time.perf_counter()
    for i in tqdm(range(n_total), desc="measure", disable=_quiet(progress), leave=False):
        before = theory.solver_work()
        accepted, delta_h = state.trajectory(theory, settings.integrator)
        for name, count in theory.solver_work().items():
            work.setdefault(name, []).append(count - before.get(name, 0))
        for name, value in (("accepted", accepted), ("delta_h", delta_h)):
            steps[name] = _record(steps.get(name), value, i, n_total)
        if (i + 1) % measure_every == 0:
            m = i // measure_every  # the measurement's index
            costly = (m + 1) % costly_every == 0
            values = theory.observables(state.x) if costly else theory.cheap_observables(state.x)
            if cheap is None and not costly:
                cheap = set(values)
            for name, value in values.items():
                if costly_every == 1 or name in cheap:
                    records[name] = _record(records.get(name), value, m, n_traj)
                else:
                    records[name] = _record(records.get(name), value, m // costly_every, n_traj // costly_every)
            if on_measurement is not None:
                on_measurement(state.x)
    if state.x.is_cuda:
        torch.cuda.synchronize(state.x.device)
    seconds = {"thermalisation": state.seconds, "sampling": time.perf_counter() - start}
    if group is not None:
        from suite import distributed

        ranks = distributed.all_gather_object(seconds)
        seconds = {k: max(part[k] for part in ranks) for k in seconds}

    records = {k: _gathered(v, group).cpu().numpy() for k, v in records.items()}
    accepted, delta_h = (_gathered(steps[k], group).cpu().numpy() for k in ("accepted", "delta_h"))
    return Chain(
        observables=records,
        accepted=accepted,
        delta_h=delta_h,
        timings=seconds,
        info={**asdict(settings), "step_size": state.eps, "n_steps": state.n_steps, "chains": chains,
              "n_therm": n_therm, "n_traj": n_traj, "measure_every": measure_every, "costly_every": costly_every,
              "seed": seed,
              "dtype": str(dtype).removeprefix("torch."), **_per_trajectory(work),
              **_evaluations(state.cache["evaluations"], evaluations_before, n_total, measure_every)},
    )


def _evaluations(after: dict, before: dict, n_total: int, measure_every: int) -> dict[str, float]:
    """Action and force evaluations per measured trajectory (the cache's counts of `hmc_trajectory`:
    one action per proposal, the integrator's forces, one more of each where a refresh changed the
    action), their sum per measured configuration, ``evaluations_per_sample``, and the sum per chain
    over the whole run, thermalisation included, ``evaluations_per_chain``."""
    per = {kind: (after[kind] - before.get(kind, 0)) / n_total for kind in ("action", "force")}
    return {"action_evaluations_per_trajectory": per["action"], "force_evaluations_per_trajectory": per["force"],
            "evaluations_per_sample": (per["action"] + per["force"]) * measure_every,
            "evaluations_per_chain": after["action"] + after["force"]}


def _per_trajectory(work: dict[str, list[int]]) -> dict[str, float]:
    """``NAME_per_trajectory`` (mean) and ``NAME_per_trajectory_max`` of each solver counter (`Theory.solver_work`)."""
    summary = {}
    for name, counts in work.items():
        summary[f"{name}_per_trajectory"] = sum(counts) / len(counts)
        summary[f"{name}_per_trajectory_max"] = max(counts)
    return summary


def _record(buffer: torch.Tensor | None, value: torch.Tensor, i: int, length: int) -> torch.Tensor:
    """Write ``value`` (chains,) into column i of a (chains, length) buffer allocated on first use."""
    if buffer is None:
        buffer = torch.empty((value.shape[0], length), dtype=value.dtype, device=value.device)
    buffer[:, i] = value
    return buffer


def hmc_ensemble(theory, *, n_configs: int, chains: int, n_therm: int, separation: int, seed: int,
                 settings: HMCSettings | None = None, dtype=torch.float64, device="cpu",
                 progress: bool | None = None) -> torch.Tensor:
    """``n_configs`` configurations from ``chains`` thermalised chains, taken every ``separation``
    trajectories (e.g. a training set for forward KL); shape (n_configs, *field shape)."""
    settings = settings or HMCSettings()
    if n_configs < 1 or separation < 1:
        raise ValueError(f"need n_configs >= 1 and separation >= 1; got {n_configs}, {separation}")
    state = thermalise(theory, chains=chains, n_therm=n_therm, seed=seed, settings=settings, dtype=dtype,
                       device=device, progress=progress)
    kept = []
    for _ in tqdm(range(math.ceil(n_configs / chains)), desc="ensemble", disable=_quiet(progress), leave=False):
        for _ in range(separation):
            state.trajectory(theory, settings.integrator)
        kept.append(state.x)
    return torch.cat(kept)[:n_configs]
