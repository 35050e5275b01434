"""φ⁴ HMC throughput: the suite's batched analytic-force HMC against a plain per-chain HMC.

Two implementations of the same algorithm — HMC with a leapfrog integrator of trajectory
length 1.0 and 10 steps (11 force evaluations, two action evaluations per trajectory), Gaussian
momenta, Metropolis accept — on the 2-d φ⁴ theory in the Albergo et al. (2021 tutorial)
convention, m² = −4, λ = 8 (the tutorial's point; the same λ at every L, cost does not depend
on it), float64:

* ``batched``: the suite's ``reference.hmc.hmc_trajectory`` with ``leapfrog`` on
  ``Phi4.from_albergo((L, L), m2=-4.0, lam=8.0)``: all chains advance together as one batch,
  the force is ``Phi4.force`` (analytic).
* ``plain``: what a teaching notebook does, written out below: one chain at a time, the action
  the tutorial's roll-based ``ScalarPhi4Action``, the force by ``torch.func.grad`` of it, a
  Python loop over leapfrog steps, a Metropolis accept on a Python float. With C chains it runs
  the C chains one after another.

Both count the trajectory only (momenta, H before and after, integration, accept/reject); no
observables are measured. Reported per (L, chains, implementation): chain-trajectories per
second (trajectories × chains / s), site updates per second (trajectories × chains × L² / s),
and the ratio batched / plain per chain-trajectory.

Timing: per cell, a warm-up of single trajectories (which also calibrates how many
trajectories one measurement holds so that it lasts about ``--target-seconds``; at least one
trajectory, so the plain implementation with many chains at large L runs a single trajectory
of every chain per measurement), then ``--repeats`` measurements with time.perf_counter
(device synchronised on CUDA); the median is reported with the spread (max − min)/median and
the number of CPUs other processes kept busy meanwhile (``bg CPUs``, from /proc/stat), since
a shared machine is the usual case. Run as a script, it sets OMP_WAIT_POLICY=PASSIVE before
importing torch unless the environment or ``--omp-wait-policy`` says otherwise: with OpenMP's
default policy, torch's intra-op threads on a machine whose cores are busy with other work make
every parallel op wait a scheduler slice (about 150x slower batched HMC at L = 32, 64 chains on
a 2-core machine with one other busy process; bench/README.md).

Run: ``python bench/hmc_throughput.py`` (or ``make bench-hmc``); ``--quick`` for a smoke run,
``--markdown`` for Markdown tables; ``--help`` for the rest.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time

OMP_POLICIES = ("passive", "active", "unset")


def _requested_omp_policy(argv):
    """The --omp-wait-policy value in argv (it must act before torch loads OpenMP), or None."""
    for i, arg in enumerate(argv):
        if arg.startswith("--omp-wait-policy="):
            return arg.split("=", 1)[1]
        if arg == "--omp-wait-policy" and i + 1 < len(argv):
            return argv[i + 1]
    return None


if __name__ == "__main__":
    # Only when run as a script (importing this module changes nothing). OpenMP reads
    # OMP_WAIT_POLICY once, when torch is imported, so it is set here, before the import.
    # PASSIVE: idle OpenMP threads sleep instead of spinning. With the default policy, on a
    # machine whose cores are also busy with other processes, every parallel torch op waits for a
    # descheduled worker thread: the batched HMC at L >= 32 with 64 chains then takes ~1.8 s per
    # trajectory instead of ~10 ms (see bench/README.md).
    _policy = _requested_omp_policy(sys.argv[1:])
    if _policy in ("passive", "active"):
        os.environ["OMP_WAIT_POLICY"] = _policy.upper()
    elif _policy == "unset":
        os.environ.pop("OMP_WAIT_POLICY", None)
    elif _policy is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after OMP_WAIT_POLICY)

M2 = -4.0
LAM = 8.0
TRAJECTORY_LENGTH = 1.0
N_STEPS = 10
REQUIREMENT = {"L": 32, "chains": 64, "min_ratio": 10.0}
# Start scale of the fields: phi = 0.3 * N(0, 1) is close to equilibrium (<|phi|> ~ 0.32 at this
# point); a N(0, 1) start makes every eps = 0.1 trajectory diverge at L >= 16 (acceptance 0,
# the chains never move), which is not a state worth timing.
INIT_SCALE = 0.3


# --------------------------------------------------------------------------------------------
# (b) the plain, notebook-style implementation: one chain at a time, autodiff force.
# --------------------------------------------------------------------------------------------

class ScalarPhi4Action:
    """The 2021 tutorial's action: Σ_x [Σ_mu (2φ² − φ φ(x+mu) − φ φ(x−mu)) + m² φ² + λ φ⁴]."""

    def __init__(self, M2, lam):
        self.M2 = M2
        self.lam = lam

    def __call__(self, cfgs):
        action_density = self.M2 * cfgs**2 + self.lam * cfgs**4
        Nd = len(cfgs.shape) - 1
        dims = range(1, Nd + 1)
        for mu in dims:
            action_density += 2 * cfgs**2
            action_density -= cfgs * torch.roll(cfgs, -1, mu)
            action_density -= cfgs * torch.roll(cfgs, 1, mu)
        return torch.sum(action_density, dim=tuple(dims))


class PlainHMC:
    """Notebook-style HMC of one configuration of shape (1, L, L) at a time."""

    def __init__(self, M2, lam, trajectory_length, n_steps):
        self.action = ScalarPhi4Action(M2, lam)
        self.grad_action = torch.func.grad(lambda phi: self.action(phi).sum())
        self.eps = trajectory_length / n_steps
        self.n_steps = n_steps

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


# --------------------------------------------------------------------------------------------
# Runners: each advances all of its chains by n trajectories and counts acceptances.
# --------------------------------------------------------------------------------------------

class BatchedRunner:
    name = "batched"

    def __init__(self, L, chains, device, dtype, seed, lam):
        from reference.hmc import hmc_trajectory
        from suite.theories.phi4 import Phi4

        self._trajectory = hmc_trajectory
        self.theory = Phi4.from_albergo((L, L), m2=M2, lam=lam)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.x = INIT_SCALE * self.theory.field.prior_sample(chains, generator=self.generator, dtype=dtype,
                                                             device=device)
        self.eps = TRAJECTORY_LENGTH / N_STEPS
        self.accepted, self.proposed = 0, 0

    def run(self, n):
        flags = []
        x = self.x
        for _ in range(n):
            x, accepted, _ = self._trajectory(self.theory, x, self.eps, N_STEPS, "leapfrog", self.generator)
            flags.append(accepted)
        self.x = x
        return flags

    def count(self, flags):
        stacked = torch.stack(flags)
        self.accepted += int(stacked.sum())
        self.proposed += stacked.numel()


class PlainRunner:
    name = "plain"

    def __init__(self, L, chains, device, dtype, seed, lam):
        torch.manual_seed(seed)
        self.hmc = PlainHMC(M2, lam, TRAJECTORY_LENGTH, N_STEPS)
        self.phis = [INIT_SCALE * torch.randn((1, L, L), dtype=dtype, device=device) for _ in range(chains)]
        self.accepted, self.proposed = 0, 0

    def run(self, n):
        flags = []
        for c, phi in enumerate(self.phis):        # the chains one after another
            for _ in range(n):
                phi, accepted = self.hmc.trajectory(phi)
                flags.append(accepted)
            self.phis[c] = phi
        return flags

    def count(self, flags):
        self.accepted += sum(flags)
        self.proposed += len(flags)


RUNNERS = {"batched": BatchedRunner, "plain": PlainRunner}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

def _busy_cpu_seconds():
    """CPU-seconds the whole machine has spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")        # user .. steal


class BackgroundLoad:
    """Average number of CPUs kept busy by *other* processes between start() and stop()."""

    def start(self):
        self.busy, self.own, self.wall = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def stop(self):
        busy = _busy_cpu_seconds()
        if busy is None or self.busy is None:
            return float("nan")
        own, wall = time.process_time() - self.own, time.perf_counter() - self.wall
        return max(0.0, (busy - self.busy - own) / wall)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(runner, n, device):
    _sync(device)
    start = time.perf_counter()
    flags = runner.run(n)
    _sync(device)
    seconds = time.perf_counter() - start
    runner.count(flags)
    return seconds


def measure(impl, L, chains, *, repeats, target_seconds, warmup_seconds, device, dtype, seed, lam):
    """Warm up (calibrating trajectories per measurement), then time ``repeats`` measurements."""
    runner = RUNNERS[impl](L, chains, device, dtype, seed, lam)
    warm = []
    while len(warm) < 3 or (sum(warm) < warmup_seconds and len(warm) < 200):
        warm.append(_timed(runner, 1, device))

    def n_for(seconds_per_traj):
        return max(1, min(100_000, round(target_seconds / seconds_per_traj)))

    n = n_for(min(warm))
    runner.accepted = runner.proposed = 0
    load = BackgroundLoad().start()
    per_traj, counts = [], []
    for _ in range(repeats):
        seconds = _timed(runner, n, device)
        per_traj.append(seconds / n)
        counts.append(n)
        if seconds > 4 * target_seconds:   # a disturbed warm-up made n too large: recalibrate
            n = n_for(seconds / n)
    background = load.stop()
    median = statistics.median(per_traj)          # seconds per trajectory (of all chains)
    chain_traj_per_s = chains / median
    return {
        "impl": impl, "L": L, "chains": chains, "n_traj": statistics.median(counts), "median_s": median,
        "spread": (max(per_traj) - min(per_traj)) / median,
        "chain_traj_per_s": chain_traj_per_s,
        "site_updates_per_s": chain_traj_per_s * L * L,
        "us_per_chain_traj": 1e6 / chain_traj_per_s,
        "acceptance": runner.accepted / max(1, runner.proposed),
        "background": background,
    }


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def header_lines(args) -> list[str]:
    device = torch.device(args.device)
    lines = [
        f"date: {datetime.date.today().isoformat()}",
        f"cpu: {cpu_model()} ({os.cpu_count()} logical CPUs)",
        f"torch: {torch.__version__}, threads: {torch.get_num_threads()}"
        + ("" if args.threads is None else " (--threads)") + f", python: {platform.python_version()}",
        f"OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'unset (OpenMP default)')};"
        f" load average at start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}",
        f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        f"theory: phi4 2-d, Albergo convention, m2 = {M2}, lam = {args.lam}; dtype float64;"
        f" start phi = {INIT_SCALE} * N(0, 1)",
        f"HMC: leapfrog, trajectory length {TRAJECTORY_LENGTH}, {N_STEPS} steps (eps = {TRAJECTORY_LENGTH / N_STEPS}),"
        f" {N_STEPS + 1} force and 2 action evaluations per trajectory",
        f"timing: median of {args.repeats} measurements of ~{args.target_seconds} s after warm-up;"
        f" s/traj = median seconds per trajectory of all chains;"
        f" spread = (max - min) / median; bg CPUs = CPUs kept busy by other processes while timing",
    ]
    return lines


RESULT_COLUMNS = [
    ("impl", "impl", "{}"), ("L", "L", "{}"), ("chains", "chains", "{}"), ("traj/meas", "n_traj", "{:g}"),
    ("s/traj", "median_s", "{:.3g}"), ("chain-traj/s", "chain_traj_per_s", "{:.4g}"),
    ("site upd/s", "site_updates_per_s", "{:.4g}"), ("us/chain-traj", "us_per_chain_traj", "{:.4g}"),
    ("spread", "spread", "{:.0%}"), ("acc", "acceptance", "{:.2f}"), ("bg CPUs", "background", "{:.1f}"),
]


def _table(headers, rows, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    return "\n".join([fmt.format(*headers)] + [fmt.format(*r) for r in rows])


def results_table(results, markdown):
    rows = [[f.format(r[key]) for _, key, f in RESULT_COLUMNS] for r in results]
    return _table([h for h, _, _ in RESULT_COLUMNS], rows, markdown)


def ratios(results):
    by = {(r["impl"], r["L"], r["chains"]): r for r in results}
    out = []
    for (impl, L, chains), b in by.items():
        p = by.get(("plain", L, chains))
        if impl == "batched" and p is not None:
            out.append((L, chains, b["chain_traj_per_s"], p["chain_traj_per_s"],
                        b["chain_traj_per_s"] / p["chain_traj_per_s"]))
    return out


def ratio_table(rows, markdown):
    headers = ["L", "chains", "batched chain-traj/s", "plain chain-traj/s", "ratio batched/plain"]
    body = [[str(L), str(c), f"{b:.4g}", f"{p:.4g}", f"{ratio:.1f}x"] for L, c, b, p, ratio in rows]
    return _table(headers, body, markdown)


def requirement_line(rows):
    need = REQUIREMENT
    for L, chains, _, _, ratio in rows:
        if L == need["L"] and chains == need["chains"]:
            verdict = "MET" if ratio >= need["min_ratio"] else "NOT MET"
            return (f"requirement (batched >= {need['min_ratio']:g}x plain per chain-trajectory at L = {L},"
                    f" {chains} chains): measured {ratio:.1f}x -> {verdict}")
    return None


# --------------------------------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark script shares: device, threads, OpenMP wait policy, seed."""
    parser.add_argument("--device", default="cpu", help="torch device; default cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads; default: torch's own")
    parser.add_argument("--omp-wait-policy", choices=OMP_POLICIES, default=None,
                        help="OpenMP wait policy of torch's threads (set before torch loads; only when run as a"
                             " script); default: $OMP_WAIT_POLICY if set, else passive; 'unset' leaves OpenMP's default")
    parser.add_argument("--seed", type=int, default=1234, help="default 1234")


def apply_defaults(args, defaults: dict) -> None:
    """Fill the options left None from ``defaults`` (quick or full mode) and set the warm-up time."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.warmup_seconds = 0.05 if args.quick else 0.3


def print_header(title: str, lines: list[str], markdown: bool) -> None:
    """The title and the conditions of the measurement, as a Markdown list or indented text."""
    print(f"# {title}" if markdown else title)
    for line in lines:
        print(f"- {line}" if markdown else f"  {line}")
    print(flush=True)


def configure_torch(args) -> None:
    """Apply --threads; exit with one line if CUDA is asked for and absent."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="lattice extents L (L x L); default 8 16 32 64")
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 64], help="numbers of chains; default 1 64")
    parser.add_argument("--impls", nargs="+", choices=sorted(RUNNERS), default=["batched", "plain"],
                        help="implementations to time; default both")
    parser.add_argument("--repeats", type=int, default=None, help="timed measurements per cell; default 7")
    parser.add_argument("--target-seconds", type=float, default=None, help="length of one measurement; default 0.5")
    parser.add_argument("--lam", type=float, default=LAM, help="quartic coupling (Albergo convention, m2 = -4); default 8")
    add_common_arguments(parser)
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--quick", action="store_true", help="smoke run: L = 8 16, 3 repeats of ~0.1 s")
    args = parser.parse_args(argv)
    quick = {"sizes": [8, 16], "repeats": 3, "target_seconds": 0.1}
    full = {"sizes": [8, 16, 32, 64], "repeats": 7, "target_seconds": 0.5}
    apply_defaults(args, quick if args.quick else full)
    if args.repeats < 1 or args.target_seconds <= 0 or min(args.sizes) < 2 or min(args.chains) < 1:
        parser.error("need --repeats >= 1, --target-seconds > 0, sizes >= 2, chains >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    configure_torch(args)

    start = time.perf_counter()
    print_header("phi4 HMC throughput", header_lines(args), args.markdown)

    results = []
    for L in args.sizes:
        for chains in args.chains:
            for impl in args.impls:
                r = measure(impl, L, chains, repeats=args.repeats, target_seconds=args.target_seconds,
                            warmup_seconds=args.warmup_seconds, device=args.device, dtype=torch.float64,
                            seed=args.seed, lam=args.lam)
                results.append(r)
                if not args.markdown:
                    print(f"  {impl:>7}  L={L:<3} chains={chains:<3} {r['chain_traj_per_s']:10.4g} chain-traj/s"
                          f"  {r['site_updates_per_s']:10.4g} site upd/s  (spread {r['spread']:.0%})", flush=True)

    print()
    print(results_table(results, args.markdown))
    rows = ratios(results)
    if rows:
        print()
        print(ratio_table(rows, args.markdown))
        line = requirement_line(rows)
        if line:
            print()
            print(line)
    print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    return results


if __name__ == "__main__":
    main()
