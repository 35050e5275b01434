"""Throughput against volume on one device: HMC trajectories, sampling from the reference flows,
and flow training steps, on the 2-d φ⁴ theory at the 2021 tutorial's point (Albergo convention,
m² = −4, λ = 8; the cost does not depend on the couplings) on L × L lattices.

Workloads, one call each, on a batch of ``batch`` configurations:

* ``hmc``: one HMC trajectory of ``batch`` chains (leapfrog, 10 steps of 0.1), carrying the
  action and force over from the previous trajectory as the harness does; chains start at
  φ = 0.3·N(0, 1), near equilibrium.
* ``sampling``: ``Flow.sample(batch)`` (configurations and log q) of each reference flow, under
  ``torch.no_grad`` as the harness samples (continuous U(1) flows need autograd inside).
* ``training``: one step per objective (zero_grad, loss, backward, AdamW step) of each flow.

Opt-in workloads (``workloads=``; the benchmark scripts in ``bench/`` use them):

* ``hmc-uncarried``: the ``hmc`` trajectory without carrying the action and force over (one
  force and one action more per trajectory), to measure what the carry-over saves.
* ``hmc-unblocked``: the ``hmc`` trajectory integrating the whole batch at once instead of blocks
  of chains that fit the cache (`reference.hmc.chains_per_block`), to measure what blocking buys.
* ``hmc-unfused``: the ``hmc`` trajectory as it was before blocks and fused kicks: the whole batch
  at once, neighbour sums from ``torch.roll`` copies and every kick subtracting a force tensor
  (`RollStencilPhi4`), to measure what both buy together.
* ``hmc-plain``: what a teaching notebook does (`PlainHMC`): one chain at a time, the 2021
  tutorial's roll-based action, the force by ``torch.func.grad`` of it, a Python loop over the
  leapfrog steps, a Metropolis accept on a Python float; ``batch`` chains one after another per
  call. The same algorithm as ``hmc``, to measure what batching and the analytic force buy.
* ``hmc-sun``: the ``hmc`` trajectory (carried over) of 4D SU(3) Wilson gauge theory at β = 6
  (`suite.theories.sun`) on L⁴ lattices (L in ``SUN_SIZES`` unless ``sizes`` is given), 25 leapfrog
  steps of 0.02 from unit links; its rows say ``theory: "sun"``, volume L⁴, and a site update is
  one site's d = 4 links.
* ``forward``: the forward map with its log-determinant, ``flow.transform(z)`` under
  ``torch.no_grad``, of each flow on a fixed prior draw (``sampling`` without the prior draw
  and log p).

``max_sites``: the batch at L is ``min(batch, max(1, max_sites // volume))``, so that large lattices
get smaller batches (the flow benchmark samples 2¹⁸ sites per batch).

``compile``: ``torch.compile`` of `reference.hmc.evolve` (the whole integration), of
``Flow.sample``, of ``flow.transform`` and of the objective's loss; the first warm-up call
compiles. ``hmc-plain`` is never compiled (its rows say ``compile: false``).

Timing (`time_call`): ``warmup`` calls, each timed; the fastest of them calibrates how many
calls make a measurement of at least ``min_seconds``; then ``repeats`` measurements (one that
ran over 4 × ``min_seconds``, after a disturbed warm-up, recalibrates the next); the median
seconds per call, spread = (max − min)/median. CUDA is timed with CUDA events and synchronised
only at the ends of a measurement; CPU with ``time.perf_counter``. ``background_cpus``: the
CPUs other processes kept busy during the measurements (Linux ``/proc/stat``; None elsewhere),
since a shared machine is the usual case. HMC rows also give the ``acceptance`` over all calls
of the cell; flow rows the ``parameters`` (trainable; independent of L).

Memory: ``peak_memory_bytes`` is CUDA's ``max_memory_allocated`` during one call minus what was
allocated before (None on CPU, where torch keeps no peak); ``saved_tensor_bytes`` (training) the
storages autograd saves for backward in one step, on any device; ``max_rss_bytes`` the process's
high-water mark (CPU). A training size is skipped when its projection from the smallest size's
saved bytes (× 2 for gradients and temporaries) exceeds the free memory, and a CUDA out-of-memory
error skips the larger sizes of that workload; both leave a row with ``status`` saying why.

Data-parallel training (``group``, a `suite.distributed.Group`: ``torchrun --nproc-per-node N -m
suite.cli throughput --distributed``): the ``training`` workload alone, each step the one
`suite.training.train` takes over the ranks — every rank draws the whole batch's noise and keeps its
slice of ``batch / N`` (the world size must divide the batch at every L), the gradients summed with
one all_reduce and divided by N; not included are train's per-step bookkeeping (the gathered loss and
ESS, the exchange of clocks and signals), as the one-process cell leaves out its logging. The ranks
agree on rank 0's call counts and memory skips; the seconds are rank 0's (the ranks keep step at
every all_reduce), and ``background_cpus`` counts the other ranks of the node too. Rank 0 alone
writes rows and prints. Every row records ``world_size`` (1 outside torchrun) and ``backend``
(None outside torchrun); the scaling of a row of N ranks is taken against the latest one-rank row of
the same cell in the folder (`suite.report.throughput.scaling`): speedup = steps/s at N ranks ÷
steps/s at one, efficiency = speedup / N, both at the same total batch (strong scaling).

Rows (``kind = "throughput"``) go to ``OUT/results.jsonl`` through the harness's atomic writer;
``lftbench report`` draws them against the volume.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from suite import __version__, distributed
from suite.errors import UsageError
from suite.harness.results import device_name, now, prepare_output_folder, provenance
from suite.harness.rows import append_record, read_records
from suite.lattice import shift
from suite.report.throughput import KIND, label, scaling
from suite.theories.base import Theory
from suite.theories.phi4 import Phi4

WORKLOADS = ("hmc", "sampling", "training")  # the default run
EXTRA_WORKLOADS = ("hmc-uncarried", "hmc-unblocked", "hmc-unfused", "hmc-plain", "hmc-sun", "forward")  # opt-in
ALL_WORKLOADS = WORKLOADS + EXTRA_WORKLOADS
HMC_WORKLOADS = ("hmc", "hmc-uncarried", "hmc-unblocked", "hmc-unfused", "hmc-plain", "hmc-sun")
FLOW_WORKLOADS = ("sampling", "forward", "training")
FLOWS = ("affine", "spline", "hybrid")  # timed by default: the coupling flows of the quality studies


def scalar_flows() -> tuple[str, ...]:
    """Every registered reference model for scalar fields (`reference.flows.REGISTRY`): what ``flows`` may name."""
    from reference.flows import REGISTRY

    return tuple(name for name, entry in REGISTRY.items() if entry.field == "scalar")
OBJECTIVES = ("reverse-kl", "path-gradient")
SIZES = {"cpu": (8, 16, 32, 64), "cuda": (8, 16, 32, 64, 128, 256)}
SUN_SIZES = {"cpu": (4, 6, 8), "cuda": (4, 8, 12, 16)}  # hmc-sun: L⁴ lattices
SUN_N, SUN_BETA, SUN_DIM = 3, 6.0, 4
SUN_EPS, SUN_STEPS = 0.02, 25  # |ΔH| ≈ 0.1–2 near the cold start on 4⁴ (ε = 0.05: ΔH ≈ 13, nothing accepted)
M2, LAM = -4.0, 8.0
HMC_EPS, HMC_STEPS = 0.1, 10
INIT_SCALE = 0.3  # HMC starts at φ = 0.3·N(0, 1), near equilibrium; N(0, 1) diverges at L >= 16 with eps = 0.1
LR = 1e-3
TRAINING_MEMORY_FACTOR = 2.0  # peak / autograd-saved bytes (gradients, one op's temporaries)


@dataclass
class Settings:
    """What to measure and how; see the module docstring."""

    device: str = "cpu"
    dtype: str | None = None          # None: float64 for HMC, float32 for flows
    compile: bool = False
    sizes: tuple[int, ...] | None = None  # None: SIZES[device type]
    batch: int = 64
    workloads: tuple[str, ...] = WORKLOADS
    flows: tuple[str, ...] = FLOWS
    objectives: tuple[str, ...] = OBJECTIVES
    warmup: int = 2
    repeats: int = 5
    min_seconds: float = 0.2
    seed: int = 0
    max_sites: int | None = None      # None: the same batch at every L

    def __post_init__(self):
        for what, given, allowed in (("workloads", self.workloads, ALL_WORKLOADS), ("flows", self.flows, scalar_flows()),
                                     ("objectives", self.objectives, OBJECTIVES)):
            if not given or set(given) - set(allowed):
                raise ValueError(f"{what} must be some of {', '.join(allowed)}, got {list(given)}")
        if self.sizes is not None and (not self.sizes or min(self.sizes) < 4 or any(n % 2 for n in self.sizes)):
            raise ValueError(f"sizes must be even and >= 4 (checkerboard flows), got {list(self.sizes)}")
        least = 1 if set(self.workloads) <= set(HMC_WORKLOADS) else 2  # one chain is a fine HMC run
        if self.batch < least or self.warmup < 1 or self.repeats < 1 or not self.min_seconds >= 0:
            raise ValueError("need batch >= 2 (1 for HMC alone), warmup >= 1, repeats >= 1 and min_seconds >= 0")
        if self.max_sites is not None and self.max_sites < 1:
            raise ValueError(f"max_sites must be >= 1, got {self.max_sites}")
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def lattice_sizes(self, workload: str | None = None) -> tuple[int, ...]:
        default = SUN_SIZES if workload == "hmc-sun" else SIZES
        return tuple(sorted(self.sizes or default[torch.device(self.device).type]))

    def dtype_name(self, workload: str) -> str:
        return self.dtype or ("float64" if workload in HMC_WORKLOADS else "float32")

    def torch_dtype(self, workload: str) -> torch.dtype:
        return getattr(torch, self.dtype_name(workload))

    def batch_at(self, L: int, workload: str | None = None) -> int:
        volume = math.prod(lattice_of(workload, L))
        return self.batch if self.max_sites is None else min(self.batch, max(1, self.max_sites // volume))

    def compiles(self, workload: str) -> bool:
        return self.compile and workload != "hmc-plain"


# --------------------------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(call: Callable[[], object], n: int, device: torch.device) -> float:
    """Seconds for ``n`` calls; on CUDA by events, with one synchronisation at the end."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    for _ in range(n):
        call()
    return time.perf_counter() - start


def _busy_cpu_seconds() -> float | None:
    """CPU-seconds the whole machine has spent busy since boot (Linux ``/proc/stat``), or None."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal


class BackgroundLoad:
    """The average number of CPUs kept busy by other processes between ``start()`` and ``stop()``."""

    def start(self) -> "BackgroundLoad":
        self.busy, self.own, self.wall = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def stop(self) -> float | None:
        busy = _busy_cpu_seconds()
        if busy is None or self.busy is None:
            return None
        own, wall = time.process_time() - self.own, time.perf_counter() - self.wall
        return max(0.0, (busy - self.busy - own) / wall) if wall > 0 else None


def time_call(call, device: torch.device, *, warmup: int, repeats: int, min_seconds: float,
              agree: Callable[[int], int] = lambda n: n) -> dict:
    """Warm up, calibrate, then time ``repeats`` measurements; seconds per call (median) and spread.
    ``agree``: the call count every process uses, from its own (distributed: rank 0's)."""
    warm = [_measure(call, 1, device) for _ in range(warmup)]  # synchronised at the end of each

    def calls_for(seconds_per_call: float) -> int:
        return max(1, min(100_000, math.ceil(min_seconds / max(seconds_per_call, 1e-9))))

    n = agree(calls_for(min(warm)))
    load = BackgroundLoad().start()
    per_call, counts = [], []
    for _ in range(repeats):
        seconds = _measure(call, n, device)
        per_call.append(seconds / n)
        counts.append(n)
        disturbed = min_seconds > 0 and seconds > 4 * min_seconds  # a disturbed warm-up made n too large
        n = agree(calls_for(seconds / n) if disturbed else n)
    median = statistics.median(per_call)
    return {"seconds_per_call": median, "spread": (max(per_call) - min(per_call)) / median,
            "calls_per_repeat": statistics.median_low(counts), "repeats": repeats,
            "background_cpus": load.stop()}


def peak_memory(call, device: torch.device) -> int | None:
    """CUDA: bytes allocated at the peak of one call beyond those allocated before; None on CPU."""
    if device.type != "cuda":
        return None
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def saved_tensor_bytes(call) -> int:
    """Bytes of the distinct storages autograd saves for backward during one call."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[(s.device, s.data_ptr())] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        call()
    return sum(storages.values())


def free_memory_bytes(device: torch.device) -> int | None:
    """Free device memory (CUDA) or MemAvailable (Linux); None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# --------------------------------------------------------------------------------------------
# Workloads: a factory of the call timed, for one lattice size
# --------------------------------------------------------------------------------------------

def compiled(fn):
    """``torch.compile(fn)`` for one cell: the compile caches are reset first, so that each cell compiles
    for its own static shapes (not dynamic ones after the sizes before it, nor eager past the cache limit)."""
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


def lattice_of(workload: str | None, L: int) -> tuple[int, ...]:
    """The lattice a workload times at size L: L⁴ for ``hmc-sun``, L × L otherwise."""
    return (L,) * SUN_DIM if workload == "hmc-sun" else (L, L)


def phi4(L: int, fused: bool = True):
    """The benchmark's φ⁴ theory at L × L; ``fused`` False: `RollStencilPhi4`, the stencil as it was
    before fused kicks."""
    return (Phi4 if fused else RollStencilPhi4).from_albergo((L, L), m2=M2, lam=LAM)


class RollStencilPhi4(Phi4):
    """`Phi4` with its stencil as it was before fused kicks (the ``hmc-unfused`` baseline): neighbour
    sums from 2d ``torch.roll`` copies, the force built in place on fresh tensors, and every kick
    subtracting that force tensor (`Theory.kick`'s default). The same numbers as `Phi4`'s to rounding."""

    kick = Theory.kick

    def _neighbour_sum(self, x, both: bool = False):
        steps = (1, -1) if both else (1,)
        total = None
        for mu in range(self.dim):
            for step in steps:
                total = shift(x, mu, step) if total is None else total.add_(shift(x, mu, step))
        return total

    def force(self, x):
        force = (x * x).mul_(4 * self.B).add_(2 * self.A).mul_(x)
        return force.add_(self._neighbour_sum(x, both=True), alpha=-self.J)


class ScalarPhi4Action:
    """The 2021 tutorial's action: Σ_x [Σ_mu (2φ² − φ φ(x+mu) − φ φ(x−mu)) + m² φ² + λ φ⁴]."""

    def __init__(self, m2: float, lam: float):
        self.m2, self.lam = m2, lam

    def __call__(self, cfgs):
        action_density = self.m2 * cfgs**2 + self.lam * cfgs**4
        dims = range(1, cfgs.dim())
        for mu in dims:
            action_density += 2 * cfgs**2
            action_density -= cfgs * torch.roll(cfgs, -1, mu)
            action_density -= cfgs * torch.roll(cfgs, 1, mu)
        return torch.sum(action_density, dim=tuple(dims))


class PlainHMC:
    """Notebook-style HMC of one configuration of shape (1, L, L) at a time (the ``hmc-plain`` workload)."""

    def __init__(self, m2: float, lam: float, eps: float, n_steps: int):
        self.action = ScalarPhi4Action(m2, lam)
        self.grad_action = torch.func.grad(lambda phi: self.action(phi).sum())
        self.eps, self.n_steps = eps, n_steps

    def hamiltonian(self, phi, pi):
        return 0.5 * torch.sum(pi**2) + self.action(phi).sum()

    def leapfrog(self, phi, pi):
        eps = self.eps
        pi = pi - 0.5 * eps * self.grad_action(phi)
        for step in range(self.n_steps):
            phi = phi + eps * pi
            if step < self.n_steps - 1:
                pi = pi - eps * self.grad_action(phi)
        pi = pi - 0.5 * eps * self.grad_action(phi)
        return phi, pi

    def trajectory(self, phi):
        """One HMC update of one chain; returns (phi, accepted)."""
        pi = torch.randn_like(phi)
        h_old = self.hamiltonian(phi, pi)
        phi_new, pi_new = self.leapfrog(phi, pi)
        delta_h = (self.hamiltonian(phi_new, pi_new) - h_old).item()
        # nan (a diverged trajectory) fails both comparisons: rejected
        if delta_h <= 0 or torch.rand(()).item() < math.exp(-delta_h):
            return phi_new, True
        return phi, False


def hmc_call(L: int, settings: Settings, carry: bool = True, blocks: bool = True, fused: bool = True):
    """One trajectory of the batch's chains per call (``compile``: `reference.hmc.evolve` compiled);
    ``carry``: the action and force carried over from one trajectory to the next (the default);
    ``blocks``: integrated over blocks of chains (`reference.hmc.chains_per_block`; the default);
    ``fused``: φ⁴'s fused kick (the default; `phi4`)."""
    from reference import hmc

    device, dtype = torch.device(settings.device), settings.torch_dtype("hmc")
    theory = phi4(L, fused)
    evolve = compiled(hmc.evolve) if settings.compile else hmc.evolve
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    shape = (settings.batch_at(L), L, L)
    state = {"x": INIT_SCALE * torch.randn(shape, generator=generator, dtype=dtype, device=device),
             "cache": {}, "accepted": torch.zeros((), dtype=torch.int64, device=device), "proposed": 0}

    def call():
        state["x"], accepted, _ = hmc.hmc_trajectory(theory, state["x"], HMC_EPS, HMC_STEPS, "leapfrog", generator,
                                                     state["cache"] if carry else None, evolve,
                                                     block_bytes=hmc.BLOCK_BYTES if blocks else None)
        state["accepted"] += accepted.sum()  # on the device: no synchronisation
        state["proposed"] += accepted.numel()

    call.extras = lambda: {"acceptance": int(state["accepted"]) / max(1, state["proposed"])}
    return call


def sun_hmc_call(L: int, settings: Settings):
    """One carried-over trajectory of the batch's 4D SU(3) chains per call (``hmc-sun``), from unit links."""
    from reference import hmc
    from suite.theories.sun import SUNGauge

    device, dtype = torch.device(settings.device), settings.torch_dtype("hmc-sun")
    theory = SUNGauge.from_wilson(lattice_of("hmc-sun", L), SUN_N, SUN_BETA)
    evolve = compiled(hmc.evolve) if settings.compile else hmc.evolve
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    shape = (settings.batch_at(L, "hmc-sun"), *theory.field.shape)
    eye = torch.eye(SUN_N, dtype=complex_dtype, device=device)
    state = {"x": eye.expand(shape).clone(), "cache": {},
             "accepted": torch.zeros((), dtype=torch.int64, device=device), "proposed": 0}

    def call():
        state["x"], accepted, _ = hmc.hmc_trajectory(theory, state["x"], SUN_EPS, SUN_STEPS, "leapfrog", generator,
                                                     state["cache"], evolve)
        state["accepted"] += accepted.sum()
        state["proposed"] += accepted.numel()

    call.extras = lambda: {"acceptance": int(state["accepted"]) / max(1, state["proposed"])}
    return call


def plain_hmc_call(L: int, settings: Settings):
    """One trajectory of each of the batch's chains, one chain after another, per call."""
    device, dtype = torch.device(settings.device), settings.torch_dtype("hmc-plain")
    torch.manual_seed(settings.seed)
    plain = PlainHMC(M2, LAM, HMC_EPS, HMC_STEPS)
    phis = [INIT_SCALE * torch.randn((1, L, L), dtype=dtype, device=device) for _ in range(settings.batch_at(L))]
    counts = {"accepted": 0, "proposed": 0}

    def call():
        for c, phi in enumerate(phis):
            phis[c], accepted = plain.trajectory(phi)
            counts["accepted"] += accepted
            counts["proposed"] += 1

    call.extras = lambda: {"acceptance": counts["accepted"] / max(1, counts["proposed"])}
    return call


def flow_model(name: str, L: int, settings: Settings, workload: str):
    from reference.flows import build

    torch.manual_seed(settings.seed)
    return build(name, phi4(L)).to(device=settings.device, dtype=settings.torch_dtype(workload))


def _with_parameters(call, flow):
    count = sum(p.numel() for p in flow.parameters() if p.requires_grad)
    call.extras = lambda: {"parameters": count}
    return call


def sampling_call(L: int, settings: Settings, name: str):
    """``Flow.sample(batch)`` per call."""
    flow = flow_model(name, L, settings, "sampling")
    sample = compiled(flow.sample) if settings.compile else flow.sample
    batch = settings.batch_at(L)

    def call():
        with torch.no_grad():
            sample(batch)
    return _with_parameters(call, flow)


def forward_call(L: int, settings: Settings, name: str):
    """``flow.transform(z)`` (the forward map and its log-determinant) of a fixed prior draw per call."""
    flow = flow_model(name, L, settings, "forward")
    transform = compiled(flow.transform) if settings.compile else flow.transform
    generator = torch.Generator(device=settings.device).manual_seed(settings.seed)
    z = flow.prior.sample(settings.batch_at(L), generator=generator, dtype=settings.torch_dtype("forward"),
                          device=settings.device)

    def call():
        with torch.no_grad():
            transform(z)
    return _with_parameters(call, flow)


def training_call(L: int, settings: Settings, name: str, objective: str, group=None):
    """One optimiser step of ``objective`` on a batch per call; with ``group``, the data-parallel step
    (rank r: slice r of the whole batch's noise, gradients all-reduced; module docstring)."""
    from suite.training import PathGradient, ReverseKL

    flow = flow_model(name, L, settings, "training")
    target = {"reverse-kl": ReverseKL, "path-gradient": PathGradient}[objective](phi4(L))
    loss = compiled(target.loss) if settings.compile else target.loss
    params = [p for p in flow.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR)
    batch = settings.batch_at(L)
    if group is not None:
        batch = distributed.split(batch, group, "batch")
        target.shard = (group.rank, group.world_size)
        flow.prior = distributed.SlicedPrior(flow.prior, group.rank, group.world_size)

    def call():
        optimizer.zero_grad(set_to_none=True)
        value, _ = loss(flow, batch, 1)
        value.backward()
        if group is not None:
            distributed.average_gradients(params)
        optimizer.step()
    return _with_parameters(call, flow)


def check_distributed(settings: Settings, world_size: int) -> None:
    """A UsageError unless data-parallel timing can measure ``settings`` over ``world_size`` ranks."""
    if set(settings.workloads) != {"training"}:
        raise UsageError(f"--distributed times data-parallel flow training: --workloads training, got "
                         f"{' '.join(settings.workloads)}")
    for L in settings.lattice_sizes("training"):
        if settings.batch_at(L) % world_size:
            raise UsageError(f"--distributed: the world size {world_size} must divide the batch, got "
                             f"{settings.batch_at(L)} at L = {L}")


def cells(settings: Settings, group=None):
    """(workload, flow or None, objective or None, factory(L) -> call) in the order measured."""
    chosen = settings.workloads
    if "hmc" in chosen:
        yield "hmc", None, None, lambda L: hmc_call(L, settings)
    if "hmc-uncarried" in chosen:
        yield "hmc-uncarried", None, None, lambda L: hmc_call(L, settings, carry=False)
    if "hmc-unblocked" in chosen:
        yield "hmc-unblocked", None, None, lambda L: hmc_call(L, settings, blocks=False)
    if "hmc-unfused" in chosen:
        yield "hmc-unfused", None, None, lambda L: hmc_call(L, settings, blocks=False, fused=False)
    if "hmc-plain" in chosen:
        yield "hmc-plain", None, None, lambda L: plain_hmc_call(L, settings)
    if "hmc-sun" in chosen:
        yield "hmc-sun", None, None, lambda L: sun_hmc_call(L, settings)
    for name in settings.flows:
        if "sampling" in chosen:
            yield "sampling", name, None, lambda L, name=name: sampling_call(L, settings, name)
        if "forward" in chosen:
            yield "forward", name, None, lambda L, name=name: forward_call(L, settings, name)
        if "training" in chosen:
            for objective in settings.objectives:
                yield ("training", name, objective,
                       lambda L, name=name, objective=objective: training_call(L, settings, name, objective, group))


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------

def _row(workload, flow, objective, L, settings: Settings, **values) -> dict:
    dtype, batch, compiled = settings.dtype_name(workload), settings.batch_at(L, workload), settings.compiles(workload)
    lattice = lattice_of(workload, L)
    if workload == "hmc-sun":
        theory, params = "sun", {"convention": "wilson", "N": SUN_N, "beta": SUN_BETA}
    else:
        theory, params = "phi4", {"convention": "albergo", "m2": M2, "lam": LAM}
    created = now()
    key = f"{workload}-{flow}-{objective}-{L}-{batch}-{settings.device}-{dtype}-{compiled}-{created}"
    return {
        "kind": KIND,
        "run_id": f"throughput-{hashlib.sha1(key.encode()).hexdigest()[:10]}",
        "suite_version": __version__,
        "created": created,
        "workload": workload, "flow": flow, "objective": objective,
        "theory": theory, "params": params,
        "L": L, "lattice": list(lattice), "volume": math.prod(lattice), "batch": batch,
        "device": settings.device, "device_name": device_name(settings.device), "dtype": dtype,
        "compile": compiled,
        **values,
    }


def measure_cell(workload, flow, objective, factory, L, settings: Settings, group=None) -> dict:
    """Time one (workload, L) cell (with ``group``: on every rank, at rank 0's call counts); status "ok"."""
    device = torch.device(distributed.rank_device(settings.device, group))
    call = factory(L)
    saved = saved_tensor_bytes(call) if workload == "training" else None  # also a warm-up call
    timing = time_call(call, device, warmup=settings.warmup, repeats=settings.repeats,
                       min_seconds=settings.min_seconds,
                       agree=lambda n: n if group is None else distributed.broadcast_object(n))
    per_second, batch = 1.0 / timing["seconds_per_call"], settings.batch_at(L, workload)
    return _row(workload, flow, objective, L, settings, status="ok", **timing,
                configs_per_second=batch * per_second,
                site_updates_per_second=batch * math.prod(lattice_of(workload, L)) * per_second,
                steps_per_second=per_second if workload == "training" else None,
                peak_memory_bytes=peak_memory(call, device), saved_tensor_bytes=saved,
                max_rss_bytes=max_rss_bytes() if device.type == "cpu" else None,
                **(call.extras() if hasattr(call, "extras") else {}))


def run_throughput(settings: Settings, out, log: Callable[[str], None] = print, group=None) -> list[dict]:
    """Measure every cell, append each row to ``out/results.jsonl`` as it is done; returns the rows.

    ``group``: data-parallel training over its ranks (module docstring); rank 0 writes, logs (with the
    scaling against the folder's one-rank rows) and returns the rows, the other ranks return []."""
    writer = group is None or group.writer
    if group is not None:
        check_distributed(settings, group.world_size)
    problem = None
    if writer:
        try:
            out = prepare_output_folder(out)
        except UsageError as err:
            problem = str(err)
    if group is not None:  # every rank stops, not rank 0 alone
        problem = distributed.broadcast_object(problem)
    if problem:
        raise UsageError(problem)
    device = torch.device(distributed.rank_device(settings.device, group))
    common = {"world_size": 1 if group is None else group.world_size,
              "backend": None if group is None else group.backend, "provenance": provenance()}
    rows = []
    for workload, flow, objective, factory in cells(settings, group):
        skip, saved_per_site = None, None
        for L in settings.lattice_sizes(workload):
            free = free_memory_bytes(device)
            if skip is None and saved_per_site is not None and free is not None:
                needed = TRAINING_MEMORY_FACTOR * saved_per_site * L * L
                if needed > free:
                    skip = f"skipped: needs about {needed / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
            if group is not None:
                skip = distributed.broadcast_object(skip)
            if skip is None:
                try:
                    row = measure_cell(workload, flow, objective, factory, L, settings, group)
                except torch.cuda.OutOfMemoryError:  # distributed: unless every rank runs out, the launch fails
                    torch.cuda.empty_cache()
                    skip = f"out of memory at L = {L}"
            if skip is not None:
                row = _row(workload, flow, objective, L, settings, status=skip)
            elif row["saved_tensor_bytes"] and saved_per_site is None:
                saved_per_site = row["saved_tensor_bytes"] / (L * L)
            row.update(common)
            if writer:
                append_record(out, row)
                rows.append(row)
                log(summary(row))
    if group is not None and group.world_size > 1 and writer:
        known = read_records(out, KIND)
        for row in rows:
            if row["status"] == "ok":
                log(scaling_summary(row, known))
    return rows


def scaling_summary(row: dict, rows: list[dict]) -> str:
    """One line: a row of several ranks against the one-rank row of its cell among ``rows``."""
    head = f"{label(row):<32} L={row['L']:<4}"
    found = scaling(row, rows)
    if found is None:
        return (f"{head} no one-rank row of this cell (batch {row['batch']}) in the folder: run the same command "
                "with --nproc-per-node 1 for the scaling")
    return (f"{head} {found['steps_per_second']:.4g} steps/s on {row['world_size']} ranks, "
            f"{found['baseline_steps_per_second']:.4g} on one: speedup {found['speedup']:.2f}, "
            f"efficiency {found['efficiency']:.0%}")


def summary(row: dict) -> str:
    """One line per row for the terminal."""
    head = f"{label(row):<32} L={row['L']:<4}"
    if row["status"] != "ok":
        return f"{head} {row['status']}"
    line = (f"{head} {row['configs_per_second']:10.4g} cfg/s {row['site_updates_per_second']:10.4g} site-upd/s"
            f"  (spread {row['spread']:.0%})")
    if row["steps_per_second"] is not None:
        line += f"  {row['steps_per_second']:.4g} steps/s"
    if row["peak_memory_bytes"] is not None:
        line += f"  peak {row['peak_memory_bytes'] / 2**20:.1f} MiB"
    return line


# --------------------------------------------------------------------------------------------
# Tables and conditions, for the benchmark scripts' terminal and Markdown output
# --------------------------------------------------------------------------------------------

def format_table(headers: list[str], body: list[list[str]], markdown: bool = False) -> str:
    """A Markdown table, or columns aligned for the terminal."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    return "\n".join([fmt.format(*headers)] + [fmt.format(*r) for r in body])


def conditions(device: str) -> list[str]:
    """What a timing depends on besides the code: machine, threads, OpenMP policy, load."""
    import platform

    return [
        f"date: {now()[:10]}; device: {device} ({device_name(device)}, {os.cpu_count()} logical CPUs)",
        f"torch: {torch.__version__}, threads: {torch.get_num_threads()}"
        f" (OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', 'unset')}), python: {platform.python_version()}",
        f"OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'unset (OpenMP default)')};"
        f" load average at start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
    ]


def add_script_arguments(parser) -> None:
    """The options the benchmark scripts (``bench/*_throughput.py``) share."""
    from suite.omp import OMP_POLICIES

    parser.add_argument("--device", default="cpu", help="torch device; default cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; default: torch's own")
    parser.add_argument("--omp-wait-policy", choices=OMP_POLICIES, default=None,
                        help="OpenMP wait policy of torch's threads (set before torch loads; only when run as a"
                             " script); default: $OMP_WAIT_POLICY if set, else passive; 'unset' leaves OpenMP's"
                             " default")
    parser.add_argument("--seed", type=int, default=1234, help="default 1234")
    parser.add_argument("--out", default=None, help="results folder for the rows (default: a temporary folder)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")


def configure_script(args) -> None:
    """Apply --threads; exit with one line if CUDA is asked for and absent."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")


def print_header(title: str, lines: list[str], markdown: bool) -> None:
    """The title and the conditions of a measurement, as a Markdown list or indented text."""
    print(f"# {title}" if markdown else title)
    for line in lines:
        print(f"- {line}" if markdown else f"  {line}")
    print(flush=True)
