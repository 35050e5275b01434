"""Normalizing-flow throughput: sampling and training-step cost of the reference flows.

For each reference flow for scalar fields (``reference.flows.REGISTRY``: affine, spline, hybrid,
each with its default hyperparameters, float32) on the 2-d φ⁴ theory in the Albergo et al. convention at
m² = −4, λ = 6.975 (the cost does not depend on the couplings), at L = 8, 16, 32, 64:

* **sampling**: ``Flow.sample(batch)`` (configurations *and* their log q) under
  ``torch.no_grad()``; reported as configurations per second and site updates per second
  (configurations × L² / s). The batch is ``min(--max-batch, --sample-sites / L²)`` (default
  min(1024, 2¹⁸ / L²): 1024, 1024, 256, 64 at L = 8, 16, 32, 64), so that every batch holds
  enough sites to amortise per-op dispatch; ``--batch`` fixes it instead.
* **training step**: one step of the reverse-KL and one of the path-gradient objective
  (``suite.training.ReverseKL`` / ``PathGradient``) at batch ``--train-batch`` (default 64):
  ``zero_grad``, the objective's ``loss`` (sample + action; the path gradient also runs the
  inverse flow for log q with detached parameters), ``backward``, ``AdamW.step`` — what
  ``suite.training.train`` does per step, without its logging, clipping, scheduler or NaN guard.
  Reported in ms per step.
* **memory per training step**: ``saved MiB``, the bytes of the distinct tensor storages that
  autograd saves for the backward pass (counted with ``torch.autograd.graph.saved_tensors_hooks``
  in an untimed step; on any device). This is the activation memory, which grows with batch × L²;
  on CPU it matched the growth of the glibc heap over the forward pass (mallinfo2) within 2%
  (affine and spline, L = 32, both objectives). A step's peak is somewhat higher: it also holds
  the temporaries of the op being run and, during backward, the gradients. On CUDA also
  ``peak MiB``: ``torch.cuda.max_memory_allocated`` during a step minus the memory allocated
  before it. On CPU torch keeps no peak counter (``ru_maxrss`` is the process's high-water mark,
  not a step's), so there is no ``peak MiB`` there.
* the parameter count (independent of L: the conditioners are convolutions).

Timing follows ``bench/hmc_throughput.py``: per cell a warm-up of at least two calls and ~0.3 s
(for training, the untimed memory step counts as the first), which also calibrates how many calls
one measurement holds so that it lasts about ``--target-seconds`` (at least one), then
``--repeats`` measurements with time.perf_counter (device synchronised on CUDA); the median is
reported with the spread (max − min)/median and the number of CPUs other processes kept busy
meanwhile (``bg CPUs``, from /proc/stat). Run as a script, it sets OMP_WAIT_POLICY=PASSIVE
before importing torch unless the environment or ``--omp-wait-policy`` says otherwise (see
bench/README.md for why); on a shared machine also run it with ``OMP_NUM_THREADS=1`` or
``--threads 1``. The helpers (load, sync, CPU model, tables) are imported from
``hmc_throughput``.

Run: ``OMP_NUM_THREADS=1 python bench/flow_throughput.py``; ``--quick`` for a smoke run (~20 s),
``--markdown`` for a Markdown table, ``--profile spline:32`` for a torch.profiler table of one
sampling batch; ``--help`` for the rest.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

_BENCH = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    # Only when run as a script. OpenMP reads OMP_WAIT_POLICY once, when torch is imported, so the
    # policy is set here, before any import of torch (hmc_throughput, imported below, imports it).
    # Same rule as hmc_throughput's own block: --omp-wait-policy, else $OMP_WAIT_POLICY, else PASSIVE.
    _policy = None
    for _i, _arg in enumerate(sys.argv[1:]):
        if _arg.startswith("--omp-wait-policy="):
            _policy = _arg.split("=", 1)[1]
        elif _arg == "--omp-wait-policy" and _i + 2 < len(sys.argv):
            _policy = sys.argv[_i + 2]
    if _policy in ("passive", "active"):
        os.environ["OMP_WAIT_POLICY"] = _policy.upper()
    elif _policy == "unset":
        os.environ.pop("OMP_WAIT_POLICY", None)
    elif _policy is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after OMP_WAIT_POLICY)

if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from hmc_throughput import (BackgroundLoad, _sync, _table, add_common_arguments, apply_defaults,  # noqa: E402
                            configure_torch, cpu_model, print_header)
from suite.throughput import peak_memory, saved_tensor_bytes  # noqa: E402

FLOWS = ("affine", "spline", "hybrid")   # the reference flows for scalar fields (REGISTRY also has gauge flows)
M2 = -4.0
LAM = 6.975
TRAIN_BATCH = 64
LR = 1e-3
MIB = 2.0**20


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------

def make_flow(name, L, device, lam=LAM):
    """(flow, theory) for the reference flow ``name`` with default hyperparameters on an L × L lattice."""
    from reference.flows import build
    from suite.theories.phi4 import Phi4

    theory = Phi4.from_albergo((L, L), m2=M2, lam=lam)
    return build(name, theory).to(device), theory


def parameter_count(flow) -> int:
    return sum(p.numel() for p in flow.parameters() if p.requires_grad)


def sample_batch(L, max_batch, sample_sites):
    return max(1, min(max_batch, sample_sites // (L * L)))


class Sampler:
    """One call: ``flow.sample(batch)`` under no_grad (configurations and log q)."""

    def __init__(self, flow, batch):
        self.flow, self.batch = flow, batch

    def __call__(self):
        with torch.no_grad():
            return self.flow.sample(self.batch)


class TrainStep:
    """One call: zero_grad, objective loss (sample + action [+ frozen inverse]), backward, AdamW step."""

    def __init__(self, flow, objective, batch):
        self.flow, self.objective, self.batch = flow, objective, batch
        self.optimizer = torch.optim.AdamW([p for p in flow.parameters() if p.requires_grad], lr=LR)
        self.step = 0
        flow.train()

    def __call__(self):
        self.step += 1
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.objective.loss(self.flow, self.batch, self.step)
        loss.backward()
        self.optimizer.step()
        return loss


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

def _timed(call, n, device):
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        call()
    _sync(device)
    return time.perf_counter() - start


def time_calls(call, *, repeats, target_seconds, warmup_seconds, device, min_warmup=2):
    """Warm up (>= ``min_warmup`` calls, calibrating calls per measurement), time ``repeats``
    measurements; seconds per call."""
    warm = []
    while len(warm) < min_warmup or (sum(warm) < warmup_seconds and len(warm) < 200):
        warm.append(_timed(call, 1, device))

    def n_for(seconds_per_call):
        return max(1, min(100_000, round(target_seconds / seconds_per_call)))

    n = n_for(min(warm))
    load = BackgroundLoad().start()
    per_call, counts = [], []
    for _ in range(repeats):
        seconds = _timed(call, n, device)
        per_call.append(seconds / n)
        counts.append(n)
        if seconds > 4 * target_seconds:   # a disturbed warm-up made n too large: recalibrate
            n = n_for(seconds / n)
    median = statistics.median(per_call)
    return {"median_s": median, "spread": (max(per_call) - min(per_call)) / median,
            "n": statistics.median(counts), "background": load.stop()}


def measure(name, L, args):
    """All numbers of one (flow, L) cell."""
    from suite.training import PathGradient, ReverseKL

    kw = dict(target_seconds=args.target_seconds, warmup_seconds=args.warmup_seconds, device=args.device)
    torch.manual_seed(args.seed)
    flow, theory = make_flow(name, L, args.device, args.lam)
    r = {"flow": name, "L": L, "params": parameter_count(flow)}
    loads = []
    if "sample" in args.parts:
        batch = args.batch or sample_batch(L, args.max_batch, args.sample_sites)
        t = time_calls(Sampler(flow, batch), repeats=args.repeats, **kw)
        loads.append(t["background"])
        cfg_per_s = batch / t["median_s"]
        r.update({"batch": batch, "ms_per_batch": 1e3 * t["median_s"], "cfg_per_s": cfg_per_s,
                  "site_updates_per_s": cfg_per_s * L * L, "spread": t["spread"]})
    if "train" in args.parts:
        spreads = []
        for key, objective in (("rkl", ReverseKL(theory)), ("pg", PathGradient(theory))):
            torch.manual_seed(args.seed)
            fresh, _ = make_flow(name, L, args.device, args.lam)   # every objective starts from the same flow
            step = TrainStep(fresh, objective, args.train_batch)
            # the untimed memory step is the first warm-up step, so one more is enough
            r[f"{key}_saved_mib"] = saved_tensor_bytes(step) / MIB
            peak = peak_memory(step, torch.device(args.device))
            r[f"{key}_peak_mib"] = float("nan") if peak is None else peak / MIB
            t = time_calls(step, repeats=args.train_repeats, min_warmup=1, **kw)
            loads.append(t["background"])
            spreads.append(t["spread"])
            r[f"{key}_ms"] = 1e3 * t["median_s"]
        r["train_spread"] = max(spreads)
    r["background"] = statistics.fmean(loads) if loads else float("nan")
    return r


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def header_lines(args) -> list[str]:
    device = torch.device(args.device)
    batches = ", ".join(f"{args.batch or sample_batch(L, args.max_batch, args.sample_sites)} at L = {L}"
                        for L in args.sizes)
    return [
        f"date: {datetime.date.today().isoformat()}",
        f"cpu: {cpu_model()} ({os.cpu_count()} logical CPUs)",
        f"torch: {torch.__version__}, threads: {torch.get_num_threads()}"
        + ("" if args.threads is None else " (--threads)")
        + f", OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', 'unset')}, python: {platform.python_version()}",
        f"OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'unset (OpenMP default)')};"
        f" load average at start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
        f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        f"theory: phi4 2-d, Albergo convention, m2 = {M2}, lam = {args.lam}; flows: reference defaults, float32",
        f"sampling: Flow.sample(batch) (x and log q) under torch.no_grad; batch {batches}",
        f"training step: zero_grad + objective loss (sample + action; path-gradient also the frozen"
        f" inverse) + backward + AdamW(lr={LR}) step, batch {args.train_batch}",
        f"timing: median of {args.repeats} (sampling) / {args.train_repeats} (training) measurements of"
        f" >= 1 call and ~{args.target_seconds} s after warm-up; spread = (max - min) / median"
        f" (train spread: the larger of the two objectives); bg CPUs = CPUs kept busy by other processes",
        "memory: saved MiB = distinct storages autograd saves for backward in one step"
        + ("; peak MiB = cuda max_memory_allocated in one step minus allocated before" if device.type == "cuda"
           else " (no per-step peak on CPU)"),
    ]


def result_columns(args):
    cols = [("flow", "flow", "{}"), ("L", "L", "{}"), ("params", "params", "{}")]
    if "sample" in args.parts:
        cols += [("batch", "batch", "{}"), ("ms/batch", "ms_per_batch", "{:.4g}"), ("cfg/s", "cfg_per_s", "{:.4g}"),
                 ("site upd/s", "site_updates_per_s", "{:.3g}"), ("spread", "spread", "{:.0%}")]
    if "train" in args.parts:
        cols += [("rKL ms/step", "rkl_ms", "{:.4g}"), ("PG ms/step", "pg_ms", "{:.4g}"),
                 ("train spread", "train_spread", "{:.0%}"),
                 ("rKL saved MiB", "rkl_saved_mib", "{:.1f}"), ("PG saved MiB", "pg_saved_mib", "{:.1f}")]
        if torch.device(args.device).type == "cuda":
            cols += [("rKL peak MiB", "rkl_peak_mib", "{:.1f}"), ("PG peak MiB", "pg_peak_mib", "{:.1f}")]
    return cols + [("bg CPUs", "background", "{:.1f}")]


def results_table(results, args):
    cols = result_columns(args)
    rows = [[f.format(r[key]) for _, key, f in cols] for r in results]
    return _table([h for h, _, _ in cols], rows, args.markdown)


def profile_sampling(name, L, args, row_limit=25):
    """torch.profiler table (self CPU time) of one sampling batch of flow ``name`` at L, after warm-up."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(args.seed)
    flow, _ = make_flow(name, L, args.device, args.lam)
    batch = args.batch or sample_batch(L, args.max_batch, args.sample_sites)
    call = Sampler(flow, batch)
    call()
    call()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(args.device).type == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
        _sync(args.device)
    sort = "self_cuda_time_total" if torch.device(args.device).type == "cuda" else "self_cpu_time_total"
    print(f"profile: flow {name}, L = {L}, one Flow.sample({batch}) under no_grad")
    print(prof.key_averages().table(sort_by=sort, row_limit=row_limit))


# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", nargs="+", choices=FLOWS, default=list(FLOWS),
                        help="reference flows; default all three")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="lattice extents L (L x L); default 8 16 32 64")
    parser.add_argument("--parts", nargs="+", choices=["sample", "train"], default=["sample", "train"],
                        help="what to time; default both")
    parser.add_argument("--batch", type=int, default=None, help="fixed sampling batch at every L (overrides the rule)")
    parser.add_argument("--max-batch", type=int, default=1024, help="largest sampling batch; default 1024")
    parser.add_argument("--sample-sites", type=int, default=None,
                        help="sampling batch = min(max-batch, sample-sites / L^2); default 2^18 (quick: 2^16)")
    parser.add_argument("--train-batch", type=int, default=TRAIN_BATCH, help=f"training batch; default {TRAIN_BATCH}")
    parser.add_argument("--repeats", type=int, default=None, help="timed sampling measurements per cell; default 5")
    parser.add_argument("--train-repeats", type=int, default=None, help="timed training measurements; default 3")
    parser.add_argument("--target-seconds", type=float, default=None, help="length of one measurement; default 0.5")
    parser.add_argument("--lam", type=float, default=LAM, help=f"quartic coupling (Albergo, m2 = -4); default {LAM}")
    add_common_arguments(parser)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--quick", action="store_true", help="smoke run: L = 8 16, smaller batches, fewer repeats")
    parser.add_argument("--profile", metavar="FLOW:L", default=None,
                        help="instead of the benchmark, print a torch.profiler table of one sampling batch")
    args = parser.parse_args(argv)
    quick = {"sizes": [8, 16], "repeats": 3, "train_repeats": 2, "target_seconds": 0.1, "sample_sites": 2**16}
    full = {"sizes": [8, 16, 32, 64], "repeats": 5, "train_repeats": 3, "target_seconds": 0.5, "sample_sites": 2**18}
    apply_defaults(args, quick if args.quick else full)
    if (args.repeats < 1 or args.train_repeats < 1 or args.target_seconds <= 0 or min(args.sizes) < 2
            or args.train_batch < 2 or args.max_batch < 1 or args.sample_sites < 1
            or (args.batch is not None and args.batch < 1)):
        parser.error("need repeats >= 1, --target-seconds > 0, sizes >= 2, --train-batch >= 2, batches >= 1")
    if args.profile is not None:
        flow, _, size = args.profile.partition(":")
        if flow not in FLOWS or not size.isdigit() or int(size) < 2:
            parser.error(f"--profile wants FLOW:L with FLOW one of {', '.join(FLOWS)}, e.g. spline:32")
        args.profile = (flow, int(size))
    return args


def main(argv=None):
    args = parse_args(argv)
    configure_torch(args)
    if args.profile is not None:
        profile_sampling(*args.profile, args)
        return []

    start = time.perf_counter()
    print_header("Flow throughput", header_lines(args), args.markdown)

    results = []
    for L in args.sizes:
        for name in args.flows:
            r = measure(name, L, args)
            results.append(r)
            if not args.markdown:
                parts = [f"  {name:>6}  L={L:<3}"]
                if "cfg_per_s" in r:
                    parts.append(f"{r['cfg_per_s']:9.4g} cfg/s  {r['site_updates_per_s']:9.3g} site upd/s")
                if "rkl_ms" in r:
                    parts.append(f"rKL {r['rkl_ms']:7.4g} ms  PG {r['pg_ms']:7.4g} ms")
                print("  ".join(parts), flush=True)

    print()
    print(results_table(results, args))
    print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    return results


if __name__ == "__main__":
    main()
