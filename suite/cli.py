"""The ``lftbench`` command line: list, run, report, compare, calibrate, validate, throughput.

A user's mistake (unknown id, bad number, unwritable folder, malformed file) prints one line
``lftbench: error: ...`` and exits with status 2; set LFTBENCH_DEBUG=1 for the traceback.
Heavy imports (torch) happen inside the commands, so ``lftbench list`` and ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from suite import __version__
from suite.errors import UsageError

EXIT_USAGE = 2
EXIT_VALIDATION_FAILED = 1
VALIDATION_MAX_PULL = 4.0


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"n_layers\": 8}'")
    return value


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    hmc = parser.add_argument_group("hmc options")
    hmc.add_argument("--chains", type=int, help="independent HMC chains (one batch)")
    hmc.add_argument("--therm", type=int, dest="n_therm", help="thermalisation trajectories (step size adapted)")
    hmc.add_argument("--n-traj", type=int, dest="n_traj", help="measured trajectories per chain")
    hmc.add_argument("--integrator", choices=["leapfrog", "omelyan"])
    hmc.add_argument("--n-steps", type=int, dest="n_steps", help="initial integrator steps per trajectory")
    hmc.add_argument("--traj-length", type=float, dest="trajectory_length", help="trajectory length (default 1)")
    hmc.add_argument("--target-acceptance", type=float, dest="target_acceptance")
    flow = parser.add_argument_group("flow and flow-mh options")
    flow.add_argument("--model", help="affine, spline, hybrid, module:function or file.py:function")
    flow.add_argument("--hparams", type=_json_object, help="the model factory's keyword arguments as JSON")
    flow.add_argument("--objective", help="reverse-kl (default), forward-kl or path-gradient")
    flow.add_argument("--budget-steps", type=int, dest="budget_steps", help="training steps (0: no limit)")
    flow.add_argument("--budget-seconds", type=float, dest="budget_seconds", help="training seconds (0: no limit)")
    flow.add_argument("--target-ess", type=float, dest="target_ess", help="stop training at this batch ESS")
    flow.add_argument("--batch-size", type=int, dest="batch_size")
    flow.add_argument("--lr", type=float)
    flow.add_argument("--schedule", choices=["cosine", "constant"])
    flow.add_argument("--n-samples", type=int, dest="n_samples", help="samples drawn after training")
    flow.add_argument("--pretrain", type=_json_object,
                      help='train first on a smaller lattice, e.g. \'{"L": 8, "budget_steps": 4000}\'')
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: float64 for hmc, float32 for flows")


SPEC_OPTIONS = ("chains", "n_therm", "n_traj", "integrator", "n_steps", "trajectory_length", "target_acceptance",
                "model", "hparams", "objective", "budget_steps", "budget_seconds", "target_ess", "batch_size", "lr",
                "schedule", "n_samples", "pretrain")


def _spec_from_args(args, sampler: str) -> dict:
    spec = {"name": sampler}
    spec.update({k: getattr(args, k) for k in SPEC_OPTIONS if getattr(args, k, None) is not None})
    return spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lftbench", description="Benchmark samplers of lattice field theories.")
    parser.add_argument("--version", action="version", version=f"lftbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list catalogue entries")
    p.add_argument("--tier", help="only entries of this tier (quick, standard, large)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="run a study, or one task with --entry/--sampler")
    p.add_argument("study", nargs="?", help="a shipped study name (e.g. quick) or a study .toml file")
    p.add_argument("--entry", help="catalogue entry id (one task)")
    p.add_argument("--sampler", default="hmc", help="sampler for --entry (default hmc)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="results folder (results.jsonl + runs/)")
    p.add_argument("--force", action="store_true", help="run tasks again even if their rows exist")
    p.add_argument("--resume", action="store_true", help="continue a flow's training from its last checkpoint")
    p.add_argument("--only", action="append", metavar="PATTERN",
                   help="run only a study's entries matching this shell pattern (repeatable), e.g. 'phi4/xi4*/*'")
    p.add_argument("--tier", action="append", choices=["quick", "standard", "large"],
                   help="run only a study's entries of this tier (repeatable)")
    _add_run_options(p)

    p = sub.add_parser("report", help="write a report from results folders")
    p.add_argument("results", nargs="+", help="results folders (pooled)")
    p.add_argument("--out", required=True, help="report folder (report.md, CSV, figures)")
    p.add_argument("--target-ess", type=float, default=0.1,
                   help="scaling section: batch ESS whose training cost is fitted (default 0.1)")
    p.add_argument("--n-independent", type=float, default=1e4,
                   help="scaling section: independent samples the training is amortised over (default 1e4)")
    p.add_argument("--html", action="store_true", help="also write report.html")

    p = sub.add_parser("compare", help="leaderboard per entry: ESS, time to a target ESS, cost per independent "
                                       "sample, against HMC and the reference flows")
    p.add_argument("results", nargs="+", help="results folders (pooled)")
    p.add_argument("--by", default="model", choices=["model", "objective", "sampler"],
                   help="group flow runs by this (default model); seeds are pooled")
    p.add_argument("--target-ess", type=float, default=0.5, help="batch ESS per sample to reach (default 0.5)")
    p.add_argument("--n-independent", type=float, default=1e4,
                   help="independent samples the training cost is amortised over (default 1e4)")
    p.add_argument("--observable", help="observable of τ_int and cost (default chi2; topological_charge for U(1))")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "json"])

    p = sub.add_parser("calibrate", help="tune a line-of-constant-physics point with HMC and write its entry")
    p.add_argument("entries", nargs="*", help="point ids (see --list); several are calibrated in turn")
    p.add_argument("--list", action="store_true", help="list the points and whether they are calibrated")
    p.add_argument("--tier", choices=["quick", "standard", "large"], help="calibrate every point of this tier")
    p.add_argument("--state", default="results/calibration",
                   help="folder of the resumable calibration state (default %(default)s)")

    p = sub.add_parser("references", help="print catalogue reference blocks (TOML) computed from result rows")
    p.add_argument("results", help="results folder of a reference study")
    p.add_argument("--study", required=True, help="the study that produced it (named in each block's command)")
    p.add_argument("--observables", default="chi2,abs_mag,e_ising,m_pole,xi2nd",
                   help="comma-separated observables (default %(default)s)")

    p = sub.add_parser("throughput", help="configurations/s and site-updates/s of HMC and the reference flows "
                                          "against volume (rows for lftbench report)")
    p.add_argument("--out", required=True, help="results folder (rows are appended to results.jsonl)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="default: float64 for hmc, float32 for flows")
    p.add_argument("--compile", action="store_true", help="torch.compile the HMC integration, Flow.sample and the loss")
    p.add_argument("--sizes", type=int, nargs="+", help="lattice extents L (default 8 16 32 64; on cuda up to 256)")
    p.add_argument("--batch", type=int, help="chains / configurations per call (default 64)")
    p.add_argument("--max-sites", type=int, dest="max_sites",
                   help="cap the batch at L to max-sites / L^2 (at least 1; default: no cap)")
    p.add_argument("--workloads", nargs="+", help="any of hmc, sampling, training (the default: all three) and "
                                                  "hmc-uncarried, hmc-plain, forward")
    p.add_argument("--flows", nargs="+", help="any of affine, spline, hybrid (default all)")
    p.add_argument("--objectives", nargs="+", help="any of reverse-kl, path-gradient (default both)")
    p.add_argument("--repeats", type=int, help="timed measurements per cell, the median is kept (default 5)")
    p.add_argument("--warmup", type=int, help="untimed calls before timing (default 2)")
    p.add_argument("--min-seconds", type=float, dest="min_seconds", help="shortest measurement (default 0.2 s)")
    p.add_argument("--seed", type=int)

    p = sub.add_parser("validate", help="check HMC against the catalogue's reference values")
    p.add_argument("--tier", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also keep the runs in this results folder")
    p.add_argument("--json", action="store_true")
    _add_run_options(p)
    return parser


def cmd_list(args) -> int:
    from suite.catalogue import entries

    selected = entries(args.tier)
    if args.json:
        print(json.dumps([{"id": e.id, "theory": e.theory, "lattice": list(e.lattice), "tier": e.tier,
                           "convention": e.convention, "params": e.params, "description": e.description,
                           "reference": sorted(set(e.reference) | ({"exact"} if e.exact else set()))}
                          for e in selected], indent=1))
        return 0
    width = max((len(e.id) for e in selected), default=10)
    for e in selected:
        refs = "exact" if e.exact else ", ".join(e.reference) or "-"
        print(f"{e.id:<{width}}  {e.tier:<8}  {'x'.join(map(str, e.lattice)):<7}  {refs:<28}  {e.description}")
    return 0


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' requested but no CUDA device is available")


def cmd_run(args) -> int:
    from suite.harness.runner import run_tasks
    from suite.harness.samplers import normalise_spec
    from suite.harness.study import Task, load_study
    from suite.catalogue import get_entry

    if (args.study is None) == (args.entry is None):
        raise UsageError("give either a study or --entry ID")
    if args.study is not None:
        if any(getattr(args, k) is not None for k in SPEC_OPTIONS):
            raise UsageError("sampler options go in the study file; use them only with --entry")
        tasks = list(load_study(args.study, only=args.only, tiers=args.tier).tasks)
    else:
        if args.only or args.tier:
            raise UsageError("--only and --tier select part of a study; use them with a study, not --entry")
        get_entry(args.entry)
        if args.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {args.seed}")
        tasks = [Task(args.entry, normalise_spec(_spec_from_args(args, args.sampler)), args.seed)]
    _check_device(args.device)
    rows = run_tasks(tasks, args.out, device=args.device, dtype=args.dtype, force=args.force, resume=args.resume,
                     log=lambda msg: print(msg, file=sys.stderr))
    for row in rows:
        print(_row_summary(row))
    return 0


def _row_summary(row: dict) -> str:
    parts = [f"{row['entry']} {row['sampler']['name']} seed {row['seed']}:"]
    if "acceptance" in row["metrics"]:
        parts.append(f"acc {row['metrics']['acceptance']:.3f}")
    if "ess" in row["metrics"]:
        parts.append(f"ESS {row['metrics']['ess']['value']:.3f}±{row['metrics']['ess']['error']:.3f}")
    for name, ref in row["reference"].items():
        est = row["observables"][name]
        parts.append(f"{name} {est['value']:.5g}±{est['error']:.2g} (pull {ref['pull']:+.1f})")
    return " ".join(parts)


def cmd_report(args) -> int:
    from suite.report import build_report

    if not 0 < args.target_ess <= 1 or not args.n_independent > 0:
        raise UsageError("--target-ess must be in (0, 1] and --n-independent > 0")
    path = build_report(args.results, args.out, target_ess=args.target_ess, n_independent=args.n_independent)
    print(path)
    if args.html:
        from suite.report.html import write_html

        print(write_html(path))
    return 0


def cmd_compare(args) -> int:
    from suite.compare import leaderboard, leaderboard_markdown
    from suite.report.build import load_rows

    board = leaderboard(load_rows(args.results), by=args.by, target_ess=args.target_ess,
                        n_independent=args.n_independent, observable=args.observable)
    if args.format == "markdown":
        print(leaderboard_markdown(board, args.target_ess, args.n_independent))
    elif args.format == "csv":
        print(board.to_csv(index=False), end="")
    else:
        print(board.to_json(orient="records", indent=1))
    return 0


def cmd_calibrate(args) -> int:
    from suite.catalogue.lines import points

    if args.list:
        from suite.calibrate import status

        for s in status():
            target = ", ".join(f"{k} = {v:g}" for k, v in s["target"].items()) or f"{s['parameter']} of {s['from']}"
            state = f"{s['parameter']} = {s['value']:.6g}" if s["calibrated"] else "not calibrated"
            print(f"{s['id']:<22} {s['tier']:<8} {'x'.join(map(str, s['lattice'])):<7} {target:<28} {state}")
        return 0
    selected = list(args.entries) + [p.id for p in points().values() if args.tier and p.tier == args.tier]
    if not selected:
        raise UsageError("give point ids, --tier or --list")
    from suite.calibrate import calibrate

    for entry_id in selected:
        calibrate(entry_id, args.state, log=lambda msg: print(msg, file=sys.stderr))
    return 0


def cmd_validate(args) -> int:
    import tempfile

    from suite.catalogue import entries
    from suite.harness.runner import run_tasks
    from suite.harness.samplers import normalise_spec
    from suite.harness.study import Task

    spec = normalise_spec(_spec_from_args(args, "hmc"))
    _check_device(args.device)
    targets = [e for e in entries(args.tier) if e.reference or e.exact]
    if not targets:
        raise UsageError(f"no {args.tier} entries with reference values")
    tasks = [Task(e.id, spec, args.seed) for e in targets]
    with tempfile.TemporaryDirectory() as scratch:
        rows = run_tasks(tasks, args.out or scratch, device=args.device, dtype=args.dtype, force=args.out is None,
                         log=lambda msg: print(msg, file=sys.stderr))
    if args.out:  # rows of tasks skipped as already done come from the folder
        from suite.harness.results import read_rows
        from suite.harness.runner import task_key
        from suite.harness.samplers import DEFAULT_DTYPE

        keys = {task_key(t, args.dtype or DEFAULT_DTYPE["hmc"], args.device) for t in tasks}
        rows = [r for r in read_rows(args.out) if r["run_id"] in keys]
    table = [{"entry": r["entry"], "observable": name, "measured": r["observables"][name]["value"],
              "error": r["observables"][name]["error"], "reference": ref["value"], "reference_error": ref["error"],
              "pull": ref["pull"]} for r in rows for name, ref in r["reference"].items()]
    failed = [t for t in table if not abs(t["pull"]) <= VALIDATION_MAX_PULL]
    if args.json:
        print(json.dumps({"max_pull": VALIDATION_MAX_PULL, "passed": not failed, "rows": table}, indent=1))
    else:
        width = max(len(t["entry"]) for t in table)
        print(f"{'entry':<{width}}  {'observable':<15} {'measured':>22} {'reference':>22} {'pull':>6}")
        for t in table:
            flag = "" if abs(t["pull"]) <= VALIDATION_MAX_PULL else "  FAIL"
            print(f"{t['entry']:<{width}}  {t['observable']:<15} {t['measured']:>12.6g} ± {t['error']:<7.2g} "
                  f"{t['reference']:>12.6g} ± {t['reference_error']:<7.2g} {t['pull']:>+6.2f}{flag}")
        print(f"{len(table) - len(failed)} passed, {len(failed)} failed (|pull| <= {VALIDATION_MAX_PULL:g})")
    return EXIT_VALIDATION_FAILED if failed else 0


def cmd_references(args) -> int:
    from suite.harness.results import read_rows
    from suite.report.tables import format_value

    rows = read_rows(args.results)
    if not rows:
        raise UsageError(f"results folder {args.results!r} has no rows")
    names = [n.strip() for n in args.observables.split(",") if n.strip()]
    for row in rows:
        info = row["sampler_info"]
        print(f"# {row['entry']}: paste into its [[entry]]")
        for name in names:
            est = row["observables"].get(name)
            if est is None or not est["error"] == est["error"]:
                print(f"# {name}: not measured or undefined, skipped")
                continue
            print(f"[entry.reference.{name}]  # {format_value(est['value'], est['error'])}, "
                  f"tau_int {est['tau_int']:.3g}")
            print(f"value = {est['value']!r}\nerror = {est['error']:.3g}")
            print(f'provenance = "computed: {row["sampler"]["name"]}, {info["chains"]} chains x {info["n_traj"]} '
                  f'trajectories after {info["n_therm"]}, seed {row["seed"]}, lftbench {row["suite_version"]}"')
            print(f'command = "lftbench run {args.study} --out {args.results}"')
        print()
    return 0


def cmd_throughput(args) -> int:
    from suite.throughput import Settings, run_throughput

    _check_device(args.device)
    given = {k: getattr(args, k) for k in ("dtype", "sizes", "batch", "max_sites", "workloads", "flows", "objectives",
                                           "warmup", "repeats", "min_seconds", "seed") if getattr(args, k) is not None}
    try:
        settings = Settings(device=args.device, compile=args.compile,
                            **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    except ValueError as err:
        raise UsageError(str(err)) from None
    run_throughput(settings, args.out)
    return 0


COMMANDS = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "compare": cmd_compare,
            "calibrate": cmd_calibrate, "references": cmd_references,
            "validate": cmd_validate, "throughput": cmd_throughput}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as err:
        if os.environ.get("LFTBENCH_DEBUG"):
            raise
        print(f"lftbench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lftbench: interrupted; finished runs are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
