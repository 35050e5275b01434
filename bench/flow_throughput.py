"""Normalizing-flow throughput: sampling, forward map and training-step cost of the reference flows.

A thin command line over ``suite/throughput.py`` (its timing loop, workloads, memory helpers and
rows), for the reference flows for scalar fields (``suite.throughput.FLOWS``: affine, spline,
hybrid, default hyperparameters, float32) on the 2-d φ⁴ theory (Albergo convention, m² = −4,
λ = 8; the cost does not depend on the couplings). ``--parts``:

* ``sample``: ``Flow.sample(batch)`` (configurations and log q) under ``torch.no_grad`` (workload
  ``sampling``), at batch ``min(--max-batch, --sample-sites / L²)`` (default min(1024, 2¹⁸ / L²):
  1024, 1024, 256, 64 at L = 8, 16, 32, 64), so that every batch holds enough sites to amortise
  per-op dispatch; ``--batch`` fixes it instead.
* ``forward``: ``flow.transform(z)`` (the forward map with its log-determinant, per layer type:
  affine, spline, hybrid couplings) of a fixed prior draw, same batch (workload ``forward``).
* ``train``: one reverse-KL and one path-gradient step (zero_grad, loss, backward, AdamW step) at
  batch ``--train-batch`` (default 64), with the bytes autograd saves for backward in one step
  (``saved MiB``) and, on CUDA, the step's peak (``peak MiB``) (workload ``training``).

Rows go to ``--out``/results.jsonl. Run as a script it sets OMP_WAIT_POLICY=PASSIVE before torch
is imported unless the environment or ``--omp-wait-policy`` says otherwise; on a shared machine
also run it with ``OMP_NUM_THREADS=1`` or ``--threads 1``.

Run: ``OMP_NUM_THREADS=1 python bench/flow_throughput.py``; ``--quick`` for a smoke run,
``--markdown`` for a Markdown table, ``--profile spline:32`` for a torch.profiler table of one
sampling batch; ``--help`` for the rest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from suite.omp import apply_omp_wait_policy

if __name__ == "__main__":
    apply_omp_wait_policy(sys.argv[1:])  # before torch is imported

import torch  # noqa: E402

from suite import throughput  # noqa: E402
from suite.throughput import add_script_arguments, configure_script, print_header  # noqa: E402

MIB = 2.0**20
PARTS = {"sample": "sampling", "forward": "forward", "train": "training"}


def settings_for(part: str, args, sizes=None) -> throughput.Settings:
    common = dict(device=args.device, dtype="float32", compile=args.compile, sizes=tuple(sizes or args.sizes),
                  flows=tuple(args.flows), warmup=2, min_seconds=args.target_seconds, seed=args.seed)
    if part == "train":
        return throughput.Settings(workloads=("training",), batch=args.train_batch, repeats=args.train_repeats,
                                   **common)
    batch, sites = (args.batch, None) if args.batch else (args.max_batch, args.sample_sites)
    return throughput.Settings(workloads=(PARTS[part],), batch=batch, max_sites=sites, repeats=args.repeats, **common)


def measure(args, out) -> list[dict]:
    rows = []
    for part in args.parts:
        rows += throughput.run_throughput(settings_for(part, args), out,
                                          log=lambda line: None if args.markdown else print("  " + line, flush=True))
    return rows


def results_table(rows, args) -> str:
    """One line per (flow, L): the parts side by side."""
    cells = {}
    for r in rows:
        cells.setdefault((r["L"], r["flow"]), {})[(r["workload"], r["objective"])] = r
    headers = ["flow", "L", "params"]
    if "sample" in args.parts:
        headers += ["batch", "ms/batch", "cfg/s", "site upd/s", "spread"]
    if "forward" in args.parts:
        headers += ["fwd ms/batch", "fwd site upd/s", "fwd spread"]
    if "train" in args.parts:
        headers += ["rKL ms/step", "PG ms/step", "train spread", "rKL saved MiB", "PG saved MiB"]
        if torch.device(args.device).type == "cuda":
            headers += ["rKL peak MiB", "PG peak MiB"]
    headers += ["bg CPUs"]
    body = []
    for (L, flow) in sorted(cells, key=lambda c: (c[0], args.flows.index(c[1]))):
        cell = cells[(L, flow)]
        any_row = next(iter(cell.values()))
        line = [flow, str(L), str(any_row.get("parameters", "-"))]

        def ok(key):
            r = cell.get(key)
            return r if r is not None and r["status"] == "ok" else None

        if "sample" in args.parts:
            r = ok(("sampling", None))
            line += ([str(r["batch"]), f"{1e3 * r['seconds_per_call']:.4g}", f"{r['configs_per_second']:.4g}",
                      f"{r['site_updates_per_second']:.3g}", f"{r['spread']:.0%}"] if r else ["-"] * 5)
        if "forward" in args.parts:
            r = ok(("forward", None))
            line += ([f"{1e3 * r['seconds_per_call']:.4g}", f"{r['site_updates_per_second']:.3g}",
                      f"{r['spread']:.0%}"] if r else ["-"] * 3)
        if "train" in args.parts:
            rkl, pg = ok(("training", "reverse-kl")), ok(("training", "path-gradient"))
            line += [f"{1e3 * r['seconds_per_call']:.4g}" if r else "-" for r in (rkl, pg)]
            line += [f"{max(r['spread'] for r in (rkl, pg) if r):.0%}" if (rkl or pg) else "-"]
            line += [f"{r['saved_tensor_bytes'] / MIB:.1f}" if r else "-" for r in (rkl, pg)]
            if torch.device(args.device).type == "cuda":
                line += [f"{r['peak_memory_bytes'] / MIB:.1f}" if r else "-" for r in (rkl, pg)]
        loads = [r["background_cpus"] for r in cell.values() if r.get("background_cpus") is not None]
        line += [f"{sum(loads) / len(loads):.1f}" if loads else "-"]
        body.append(line)
    return throughput.format_table(headers, body, args.markdown)


def profile_sampling(name, L, args, row_limit=25):
    """torch.profiler table (self time) of one sampling batch of flow ``name`` at L, after two warm-up calls."""
    from torch.profiler import ProfilerActivity, profile

    settings = settings_for("sample", args, sizes=(L,))
    call = throughput.sampling_call(L, settings, name)
    call()
    call()
    device = torch.device(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
        throughput.synchronize(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"profile: flow {name}, L = {L}, one Flow.sample({settings.batch_at(L)}) under no_grad")
    print(prof.key_averages().table(sort_by=sort, row_limit=row_limit))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", nargs="+", choices=throughput.FLOWS, default=list(throughput.FLOWS),
                        help="reference flows; default all")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="lattice extents L; default 8 16 32 64")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=["sample", "train"],
                        help="what to time; default sample train")
    parser.add_argument("--batch", type=int, default=None, help="fixed sampling batch at every L (overrides the rule)")
    parser.add_argument("--max-batch", type=int, default=1024, help="largest sampling batch; default 1024")
    parser.add_argument("--sample-sites", type=int, default=None,
                        help="sampling batch = min(max-batch, sample-sites / L^2); default 2^18 (quick: 2^16)")
    parser.add_argument("--train-batch", type=int, default=64, help="training batch; default 64")
    parser.add_argument("--repeats", type=int, default=None, help="timed sampling measurements per cell; default 5")
    parser.add_argument("--train-repeats", type=int, default=None, help="timed training measurements; default 3")
    parser.add_argument("--target-seconds", type=float, default=None, help="shortest measurement; default 0.5")
    parser.add_argument("--compile", action="store_true", help="torch.compile Flow.sample, flow.transform, the loss")
    add_script_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: L = 8 16, smaller batches, fewer repeats")
    parser.add_argument("--profile", metavar="FLOW:L", default=None,
                        help="instead of the benchmark, print a torch.profiler table of one sampling batch")
    args = parser.parse_args(argv)
    quick = {"sizes": [8, 16], "repeats": 3, "train_repeats": 2, "target_seconds": 0.1, "sample_sites": 2**16}
    full = {"sizes": [8, 16, 32, 64], "repeats": 5, "train_repeats": 3, "target_seconds": 0.5, "sample_sites": 2**18}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.profile is not None:
        flow, _, size = args.profile.partition(":")
        if flow not in throughput.FLOWS or not size.isdigit():
            parser.error(f"--profile wants FLOW:L with FLOW one of {', '.join(throughput.FLOWS)}, e.g. spline:32")
        args.profile = (flow, int(size))
    try:
        for part in args.parts:
            settings_for(part, args)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    configure_script(args)
    if args.profile is not None:
        profile_sampling(*args.profile, args)
        return []
    start = time.perf_counter()
    sample = settings_for("sample", args)
    print_header("Flow throughput", throughput.conditions(args.device) + [
        f"theory: phi4 2-d, Albergo convention, m2 = {throughput.M2}, lam = {throughput.LAM}; flows: reference"
        " defaults, float32" + (", torch.compile" if args.compile else ""),
        "sampling: Flow.sample(batch) (x and log q) under torch.no_grad; forward: flow.transform(z) under no_grad;"
        " batch " + ", ".join(f"{sample.batch_at(L)} at L = {L}" for L in args.sizes),
        f"training step: zero_grad + objective loss + backward + AdamW(lr={throughput.LR}) step,"
        f" batch {args.train_batch}",
        f"timing (suite.throughput.time_call): 2 timed warm-up calls calibrate the calls per measurement"
        f" (>= {args.target_seconds} s, at least 1); median of {args.repeats} (sampling, forward) /"
        f" {args.train_repeats} (training) measurements; spread = (max - min) / median (train spread: the larger"
        " of the two objectives); bg CPUs = CPUs kept busy by other processes, mean over the cell's parts",
        "memory: saved MiB = distinct storages autograd saves for backward in one step"
        + ("; peak MiB = cuda max_memory_allocated in one step minus allocated before"
           if torch.device(args.device).type == "cuda" else " (no per-step peak on CPU)")], args.markdown)
    with tempfile.TemporaryDirectory() as scratch:
        rows = measure(args, args.out or scratch)
    print()
    print(results_table(rows, args))
    print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
