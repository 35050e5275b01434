"""The ``lftbench`` command line: list, run, report, validate.

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
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="default: float64 for hmc, float32 for flows")


SPEC_OPTIONS = ("chains", "n_therm", "n_traj", "integrator", "n_steps", "trajectory_length", "target_acceptance",
                "model", "hparams", "objective", "budget_steps", "budget_seconds", "target_ess", "batch_size", "lr",
                "schedule", "n_samples")


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
    _add_run_options(p)

    p = sub.add_parser("report", help="write a report from results folders")
    p.add_argument("results", nargs="+", help="results folders (pooled)")
    p.add_argument("--out", required=True, help="report folder (report.md, CSV, figures)")

    p = sub.add_parser("references", help="print catalogue reference blocks (TOML) computed from result rows")
    p.add_argument("results", help="results folder of a reference study")
    p.add_argument("--study", required=True, help="the study that produced it (named in each block's command)")
    p.add_argument("--observables", default="chi2,abs_mag,e_ising,m_pole,xi2nd",
                   help="comma-separated observables (default %(default)s)")

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
        tasks = list(load_study(args.study).tasks)
    else:
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

    path = build_report(args.results, args.out)
    print(path)
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


COMMANDS = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "references": cmd_references,
            "validate": cmd_validate}


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
