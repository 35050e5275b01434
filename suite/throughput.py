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

``compile``: ``torch.compile`` of `reference.hmc.evolve` (the whole integration), of
``Flow.sample`` and of the objective's loss; the first warm-up call compiles.

Timing: ``warmup`` untimed calls, one call to calibrate
how many calls make a measurement of at least ``min_seconds``, then ``repeats`` measurements;
the median seconds per call, spread = (max − min)/median. CUDA is timed with CUDA events and
synchronised only at the ends of a measurement; CPU with ``time.perf_counter``.

Memory: ``peak_memory_bytes`` is CUDA's ``max_memory_allocated`` during one call minus what was
allocated before (None on CPU, where torch keeps no peak); ``saved_tensor_bytes`` (training) the
storages autograd saves for backward in one step, on any device; ``max_rss_bytes`` the process's
high-water mark (CPU). A training size is skipped when its projection from the smallest size's
saved bytes (× 2 for gradients and temporaries) exceeds the free memory, and a CUDA out-of-memory
error skips the larger sizes of that workload; both leave a row with ``status`` saying why.

Rows (``kind = "throughput"``) go to ``OUT/results.jsonl`` through the harness's atomic writer;
``lftbench report`` draws them against the volume.
"""

from __future__ import annotations

import hashlib
import math
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from suite import __version__
from suite.harness.results import device_name, now, prepare_output_folder, provenance
from suite.harness.rows import append_record
from suite.report.throughput import KIND, label

WORKLOADS = ("hmc", "sampling", "training")
FLOWS = ("affine", "spline", "hybrid")
OBJECTIVES = ("reverse-kl", "path-gradient")
SIZES = {"cpu": (8, 16, 32, 64), "cuda": (8, 16, 32, 64, 128, 256)}
DEFAULT_DTYPE = {"hmc": "float64", "sampling": "float32", "training": "float32"}
M2, LAM = -4.0, 8.0
HMC_EPS, HMC_STEPS = 0.1, 10
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

    def __post_init__(self):
        for what, given, allowed in (("workloads", self.workloads, WORKLOADS), ("flows", self.flows, FLOWS),
                                     ("objectives", self.objectives, OBJECTIVES)):
            if not given or set(given) - set(allowed):
                raise ValueError(f"{what} must be some of {', '.join(allowed)}, got {list(given)}")
        if self.sizes is not None and (not self.sizes or min(self.sizes) < 4 or any(n % 2 for n in self.sizes)):
            raise ValueError(f"sizes must be even and >= 4 (checkerboard flows), got {list(self.sizes)}")
        if self.batch < 2 or self.warmup < 1 or self.repeats < 1 or not self.min_seconds >= 0:
            raise ValueError("need batch >= 2, warmup >= 1, repeats >= 1 and min_seconds >= 0")
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def lattice_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.sizes or SIZES[torch.device(self.device).type]))

    def torch_dtype(self, workload: str) -> torch.dtype:
        return getattr(torch, self.dtype or DEFAULT_DTYPE[workload])


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


def time_call(call, device: torch.device, *, warmup: int, repeats: int, min_seconds: float) -> dict:
    """Warm up, calibrate, then time ``repeats`` measurements; seconds per call (median) and spread."""
    for _ in range(warmup):
        call()
    synchronize(device)
    n = max(1, math.ceil(min_seconds / max(_measure(call, 1, device), 1e-9)))
    per_call = [_measure(call, n, device) / n for _ in range(repeats)]
    median = statistics.median(per_call)
    return {"seconds_per_call": median, "spread": (max(per_call) - min(per_call)) / median,
            "calls_per_repeat": n, "repeats": repeats}


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

def phi4(L: int):
    from suite.theories.phi4 import Phi4

    return Phi4.from_albergo((L, L), m2=M2, lam=LAM)


def hmc_call(L: int, settings: Settings):
    """One trajectory of ``batch`` chains per call (``compile``: `reference.hmc.evolve` compiled)."""
    from reference import hmc

    device, dtype = torch.device(settings.device), settings.torch_dtype("hmc")
    theory = phi4(L)
    evolve = torch.compile(hmc.evolve) if settings.compile else hmc.evolve
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    state = {"x": 0.3 * torch.randn((settings.batch, L, L), generator=generator, dtype=dtype, device=device),
             "cache": {}}

    def call():
        state["x"], _, _ = hmc.hmc_trajectory(theory, state["x"], HMC_EPS, HMC_STEPS, "leapfrog", generator,
                                              state["cache"], evolve)
    return call


def flow_model(name: str, L: int, settings: Settings, workload: str):
    from reference.flows import build

    torch.manual_seed(settings.seed)
    return build(name, phi4(L)).to(device=settings.device, dtype=settings.torch_dtype(workload))


def sampling_call(L: int, settings: Settings, name: str):
    """``Flow.sample(batch)`` per call."""
    flow = flow_model(name, L, settings, "sampling")
    sample = torch.compile(flow.sample) if settings.compile else flow.sample

    def call():
        with torch.no_grad():
            sample(settings.batch)
    return call


def training_call(L: int, settings: Settings, name: str, objective: str):
    """One optimiser step of ``objective`` on a batch per call."""
    from suite.training import PathGradient, ReverseKL

    flow = flow_model(name, L, settings, "training")
    target = {"reverse-kl": ReverseKL, "path-gradient": PathGradient}[objective](phi4(L))
    loss = torch.compile(target.loss) if settings.compile else target.loss
    optimizer = torch.optim.AdamW(flow.parameters(), lr=LR)

    def call():
        optimizer.zero_grad(set_to_none=True)
        value, _ = loss(flow, settings.batch, 1)
        value.backward()
        optimizer.step()
    return call


def cells(settings: Settings):
    """(workload, flow or None, objective or None, factory(L) -> call) in the order measured."""
    if "hmc" in settings.workloads:
        yield "hmc", None, None, lambda L: hmc_call(L, settings)
    for name in settings.flows:
        if "sampling" in settings.workloads:
            yield "sampling", name, None, lambda L, name=name: sampling_call(L, settings, name)
        if "training" in settings.workloads:
            for objective in settings.objectives:
                yield ("training", name, objective,
                       lambda L, name=name, objective=objective: training_call(L, settings, name, objective))


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------

def _row(workload, flow, objective, L, settings: Settings, **values) -> dict:
    dtype = settings.dtype or DEFAULT_DTYPE[workload]
    created = now()
    key = f"{workload}-{flow}-{objective}-{L}-{settings.device}-{dtype}-{settings.compile}-{created}"
    return {
        "kind": KIND,
        "run_id": f"throughput-{hashlib.sha1(key.encode()).hexdigest()[:10]}",
        "suite_version": __version__,
        "created": created,
        "workload": workload, "flow": flow, "objective": objective,
        "theory": "phi4", "params": {"convention": "albergo", "m2": M2, "lam": LAM},
        "L": L, "lattice": [L, L], "volume": L * L, "batch": settings.batch,
        "device": settings.device, "device_name": device_name(settings.device), "dtype": dtype,
        "compile": settings.compile,
        **values,
    }


def measure_cell(workload, flow, objective, factory, L, settings: Settings) -> dict:
    """Time one (workload, L) cell; the row's ``status`` is "ok"."""
    device = torch.device(settings.device)
    call = factory(L)
    saved = saved_tensor_bytes(call) if workload == "training" else None  # also a warm-up call
    timing = time_call(call, device, warmup=settings.warmup, repeats=settings.repeats,
                       min_seconds=settings.min_seconds)
    per_second = 1.0 / timing["seconds_per_call"]
    return _row(workload, flow, objective, L, settings, status="ok", **timing,
                configs_per_second=settings.batch * per_second,
                site_updates_per_second=settings.batch * L * L * per_second,
                steps_per_second=per_second if workload == "training" else None,
                peak_memory_bytes=peak_memory(call, device), saved_tensor_bytes=saved,
                max_rss_bytes=max_rss_bytes() if device.type == "cpu" else None)


def run_throughput(settings: Settings, out, log: Callable[[str], None] = print) -> list[dict]:
    """Measure every cell, append each row to ``out/results.jsonl`` as it is done; returns the rows."""
    out = prepare_output_folder(out)
    device = torch.device(settings.device)
    common = {"provenance": provenance()}
    rows = []
    for workload, flow, objective, factory in cells(settings):
        skip, saved_per_site = None, None
        for L in settings.lattice_sizes():
            free = free_memory_bytes(device)
            if skip is None and saved_per_site is not None and free is not None:
                needed = TRAINING_MEMORY_FACTOR * saved_per_site * L * L
                if needed > free:
                    skip = f"skipped: needs about {needed / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
            if skip is None:
                try:
                    row = measure_cell(workload, flow, objective, factory, L, settings)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    skip = f"out of memory at L = {L}"
            if skip is not None:
                row = _row(workload, flow, objective, L, settings, status=skip)
            elif row["saved_tensor_bytes"] and saved_per_site is None:
                saved_per_site = row["saved_tensor_bytes"] / (L * L)
            row.update(common)
            append_record(out, row)
            rows.append(row)
            log(summary(row))
    return rows


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
