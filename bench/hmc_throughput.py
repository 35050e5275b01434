"""φ⁴ HMC throughput: implementations of the same HMC compared per chain-trajectory, in one run.

A thin command line over ``suite/throughput.py`` (its timing loop, workloads and rows): HMC
with leapfrog, 10 steps of 0.1 (11 force and 2 action evaluations per trajectory, one of each
fewer with the carry-over), Gaussian momenta, Metropolis accept, on the 2-d φ⁴ theory at the
2021 tutorial's point (Albergo convention, m² = −4, λ = 8), float64, fields started at
φ = 0.3·N(0, 1). Implementations (``--impls``), each a workload of ``suite.throughput``:

* ``batched`` (workload ``hmc``): the suite's ``reference.hmc.hmc_trajectory``, all chains as
  one batch, analytic force, action and force carried over from one trajectory to the next.
* ``uncarried`` (``hmc-uncarried``): the same without the carry-over.
* ``unblocked`` (``hmc-unblocked``): ``batched`` integrating the whole batch at once, not in blocks of
  chains that fit the cache (``reference.hmc.chains_per_block``).
* ``unfused`` (``hmc-unfused``): the integrator before blocks and fused kicks — the whole batch at
  once, every kick subtracting a force tensor (``Theory.kick``'s default, not φ⁴'s fused kick).
* ``compiled`` (``hmc`` with ``compile``): ``batched`` with ``torch.compile(reference.hmc.evolve)``.
* ``plain`` (``hmc-plain``): a teaching notebook's HMC, one chain after another, force by
  ``torch.func.grad``.

Per (L, chains, implementation): chain-trajectories/s, site updates/s, µs per
chain-trajectory, spread, acceptance and the CPUs other processes kept busy; then each
implementation's ratio to ``--baseline`` per chain-trajectory. Rows go to ``--out``/results.jsonl
(``lftbench report`` draws them). Run as a script it sets OMP_WAIT_POLICY=PASSIVE before torch
is imported unless the environment or ``--omp-wait-policy`` says otherwise (bench/README.md).

Run: ``python bench/hmc_throughput.py`` (or ``make bench-hmc``); ``--quick`` for a smoke run,
``--markdown`` for Markdown tables; ``--help`` for the rest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from suite.omp import apply_omp_wait_policy

if __name__ == "__main__":
    apply_omp_wait_policy(sys.argv[1:])  # before torch is imported

from suite import throughput  # noqa: E402  (imports torch)
from suite.throughput import add_script_arguments, configure_script, print_header  # noqa: E402

IMPLS = {"batched": ("hmc", False), "uncarried": ("hmc-uncarried", False), "unblocked": ("hmc-unblocked", False),
         "unfused": ("hmc-unfused", False),
         "compiled": ("hmc", True), "plain": ("hmc-plain", False)}
REQUIREMENT = {"L": 32, "chains": 64, "min_ratio": 10.0, "impl": "batched", "baseline": "plain"}


def impl_of(row: dict) -> str:
    named = {"hmc-uncarried": "uncarried", "hmc-unblocked": "unblocked", "hmc-unfused": "unfused", "hmc-plain": "plain"}
    return named.get(row["workload"], "compiled" if row["compile"] else "batched")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="lattice extents L; default 8 16 32 64")
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 64], help="numbers of chains; default 1 64")
    parser.add_argument("--impls", nargs="+", choices=list(IMPLS), default=["batched", "plain"],
                        help="implementations to time; default batched plain")
    parser.add_argument("--baseline", choices=list(IMPLS), default=None,
                        help="the implementation the ratios are taken against; default plain if timed, else the"
                             " first of --impls")
    parser.add_argument("--repeats", type=int, default=None, help="timed measurements per cell; default 7")
    parser.add_argument("--target-seconds", type=float, default=None, help="shortest measurement; default 0.5")
    parser.add_argument("--warmup", type=int, default=3, help="timed warm-up trajectories per cell; default 3")
    add_script_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: L = 8 16, 3 repeats of ~0.1 s")
    args = parser.parse_args(argv)
    for key, quick, full in (("sizes", [8, 16], [8, 16, 32, 64]), ("repeats", 3, 7), ("target_seconds", 0.1, 0.5)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.baseline is None:
        args.baseline = "plain" if "plain" in args.impls else args.impls[0]
    if min(args.chains) < 1:
        parser.error("need chains >= 1")
    return args


def measure(args, out) -> list[dict]:
    """Every (L, chains) cell, the implementations interleaved at each, through `run_throughput`."""
    rows = []
    for L in args.sizes:
        for chains in args.chains:
            for compiled in dict.fromkeys(IMPLS[i][1] for i in args.impls):
                workloads = tuple(IMPLS[i][0] for i in args.impls if IMPLS[i][1] == compiled)
                settings = throughput.Settings(
                    device=args.device, dtype="float64", compile=compiled, sizes=(L,), batch=chains,
                    workloads=tuple(dict.fromkeys(workloads)), warmup=args.warmup, repeats=args.repeats,
                    min_seconds=args.target_seconds, seed=args.seed)
                rows += throughput.run_throughput(settings, out, log=lambda line: None if args.markdown else print(
                    "  " + line, flush=True))
    order = {impl: i for i, impl in enumerate(args.impls)}
    return sorted(rows, key=lambda r: (args.sizes.index(r["L"]), args.chains.index(r["batch"]), order[impl_of(r)]))


def results_table(rows, markdown) -> str:
    headers = ["impl", "L", "chains", "traj/meas", "s/traj", "chain-traj/s", "site upd/s", "us/chain-traj",
               "spread", "acc", "bg CPUs"]
    body = [[impl_of(r), str(r["L"]), str(r["batch"]), str(r["calls_per_repeat"]), f"{r['seconds_per_call']:.3g}",
             f"{r['configs_per_second']:.4g}", f"{r['site_updates_per_second']:.4g}",
             f"{1e6 / r['configs_per_second']:.4g}", f"{r['spread']:.0%}", f"{r['acceptance']:.2f}",
             "-" if r["background_cpus"] is None else f"{r['background_cpus']:.1f}"]
            for r in rows if r["status"] == "ok"]
    return throughput.format_table(headers, body, markdown)


def ratios(rows, impls, baseline) -> list[tuple]:
    """(L, chains, {impl: chain-traj/s}, {impl: ratio to baseline}) per cell that has the baseline."""
    cells = {}
    for r in rows:
        if r["status"] == "ok":
            cells.setdefault((r["L"], r["batch"]), {})[impl_of(r)] = r["configs_per_second"]
    return [(L, chains, rates, {i: rates[i] / rates[baseline] for i in impls if i != baseline and i in rates})
            for (L, chains), rates in cells.items() if baseline in rates]


def ratio_table(found, impls, baseline, markdown) -> str:
    others = [i for i in impls if i != baseline]
    headers = ["L", "chains", *[f"{i} chain-traj/s" for i in [baseline, *others]], *[f"{i}/{baseline}" for i in others]]
    body = [[str(L), str(chains), *[f"{rates[i]:.4g}" for i in [baseline, *others]],
             *[f"{ratio[i]:.3g}x" for i in others]] for L, chains, rates, ratio in found]
    return throughput.format_table(headers, body, markdown)


def requirement_line(found, baseline) -> str | None:
    need = REQUIREMENT
    if baseline != need["baseline"]:
        return None
    for L, chains, _, ratio in found:
        if L == need["L"] and chains == need["chains"] and need["impl"] in ratio:
            verdict = "MET" if ratio[need["impl"]] >= need["min_ratio"] else "NOT MET"
            return (f"requirement (batched >= {need['min_ratio']:g}x plain per chain-trajectory at L = {L},"
                    f" {chains} chains): measured {ratio[need['impl']]:.1f}x -> {verdict}")
    return None


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    configure_script(args)
    start = time.perf_counter()
    print_header("phi4 HMC throughput", throughput.conditions(args.device) + [
        f"theory: phi4 2-d, Albergo convention, m2 = {throughput.M2}, lam = {throughput.LAM}; float64;"
        f" start phi = {throughput.INIT_SCALE} * N(0, 1)",
        f"HMC: leapfrog, {throughput.HMC_STEPS} steps of {throughput.HMC_EPS}",
        f"timing (suite.throughput.time_call): {args.warmup} timed warm-up trajectories calibrate the trajectories"
        f" per measurement (>= {args.target_seconds} s, at least 1); median of {args.repeats} measurements;"
        " spread = (max - min) / median; bg CPUs = CPUs kept busy by other processes while timing"], args.markdown)
    with tempfile.TemporaryDirectory() as scratch:
        rows = measure(args, args.out or scratch)
    print()
    print(results_table(rows, args.markdown))
    found = ratios(rows, args.impls, args.baseline)
    if found and len(args.impls) > 1:
        print()
        print(ratio_table(found, args.impls, args.baseline, args.markdown))
        line = requirement_line(found, args.baseline)
        if line:
            print()
            print(line)
    print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
