"""The ``lftbench`` command line: list, run, status, report, compare, calibrate, validate, throughput.

A user's mistake (unknown id, bad number, unwritable folder, malformed file) prints one line
``lftbench: error: ...`` and exits with status 2; a task that fails while running (a fault, a
user's model raising) prints one line naming the task and the phase and exits with status 1
after the other tasks ran; ``--debug`` (or LFTBENCH_DEBUG=1) shows the traceback instead.
SIGINT and SIGTERM stop a run after the training in progress wrote its checkpoint (exit 130, 143).
The sampler options of ``run`` and ``validate`` are derived from the sampler plugins' specs.
Heavy imports (torch) happen inside the commands, so ``lftbench list`` and ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys

from pathlib import Path

from suite import __version__
from suite.errors import Interrupted, TaskFailure, UsageError

EXIT_USAGE = 2
EXIT_FAILED = 1  # a task failed while running (a fault), or a row could not be written
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


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (``lftbench: error: ...``, exit 2), no usage block."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"lftbench: error: {message}\n")


def _cli_type(kind):
    return {int: int, float: float, str: str}.get(kind, _json_object)


def _run_options():
    """(dest, flag, kind, help, samplers) of every sampler option the CLI offers, derived from the specs."""
    from suite.samplers import samplers
    from suite.samplers.spec import field_kind, spec_fields

    options: dict[str, list] = {}
    for plugin in samplers().values():
        for f in spec_fields(plugin.spec):
            if not f.metadata.get("cli", True):
                continue
            kind, _ = field_kind(plugin.spec, f.name)
            if f.name in options:
                options[f.name][4].append(plugin.name)
                continue
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            help_text, choices = f.metadata["help"], f.metadata.get("choices")
            if isinstance(choices, tuple):
                help_text += f" ({', '.join(choices)})"
            options[f.name] = [f.name, flag, kind, help_text, [plugin.name]]
    return list(options.values())


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    groups = {}
    for dest, flag, kind, help_text, names in _run_options():
        title = f"{' and '.join(names)} options"
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=dest, type=_cli_type(kind), help=help_text)
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:N] (default cpu)")
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help="the real precision (complex fields use the matching complex type); "
                             "default: the sampler's (float64 for hmc, float32 for flows)")


def _given_options(args) -> dict:
    return {dest: getattr(args, dest) for dest, *_ in _run_options() if getattr(args, dest, None) is not None}


def _spec_from_args(args, sampler: str) -> dict:
    """The spec dict of the sampler options given on the command line; an option of another
    sampler is a UsageError."""
    from suite.samplers import get_sampler
    from suite.samplers.spec import spec_fields

    plugin = get_sampler(sampler)
    own = {f.name for f in spec_fields(plugin.spec)}
    given = _given_options(args)
    foreign = sorted(set(given) - own)
    if foreign:
        flag = next(flag for dest, flag, *_ in _run_options() if dest == foreign[0])
        raise UsageError(f"{flag} is not an option of sampler {sampler!r}")
    return {"name": sampler, **given}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lftbench", description="Benchmark samplers of lattice field theories.")
    parser.add_argument("--version", action="version", version=f"lftbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list catalogue entries")
    p.add_argument("--tier", help="only entries of this tier (quick, standard, large)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="run a study, or one task with --entry/--sampler")
    p.add_argument("study", nargs="?", help="a shipped study name (e.g. quick) or a study .toml file")
    p.add_argument("--entry", help="catalogue entry id (one task)")
    p.add_argument("--sampler", default="hmc", help="sampler for --entry (default hmc): " + _sampler_names())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", type=int, metavar="I",
                   help="run only task I of the study (1-based, as the progress lines number them)")
    p.add_argument("--out", required=True, help="results folder (results.jsonl + runs/)")
    p.add_argument("--force", action="store_true", help="run tasks again even if their rows exist")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from its last checkpoint")
    p.add_argument("--only", action="append", metavar="PATTERN",
                   help="run only a study's entries matching this shell pattern (repeatable), e.g. 'phi4/xi4*/*'")
    p.add_argument("--tier", action="append", choices=["quick", "standard", "large"],
                   help="run only a study's entries of this tier (repeatable)")
    _add_run_options(p)
    group = p.add_argument_group("where the tasks run (default: the study's [executor] table, else local)")
    group.add_argument("--executor", choices=_executor_names(),
                       help="local: in this process; slurm: one Slurm job array through submitit, an element per "
                            "pending task (returns once submitted; lftbench status OUT follows it); "
                            "submitit-local: the same array as processes on this machine")
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument("--time", help="time limit of each element, HH:MM:SS or D-HH:MM:SS (needed for slurm)")
    group.add_argument("--gpus-per-task", type=int, dest="gpus_per_task", metavar="G", help="GPUs per element")
    group.add_argument("--cpus-per-task", type=int, dest="cpus_per_task", metavar="C",
                       help="CPUs per element (and its OMP_NUM_THREADS)")
    group.add_argument("--array-parallelism", type=int, dest="array_parallelism", metavar="K",
                       help="elements running at once")
    group.add_argument("--wait", action="store_true",
                       help="with a cluster executor: wait for the submitted jobs to end, then show their status")
    group.add_argument("--distributed", action="store_true",
                       help="run each task over the processes torchrun started (torchrun --nproc-per-node N "
                            "-m suite.cli run ... --distributed): flows train data-parallel (each rank batch/N, "
                            "gradients averaged), hmc splits its chains; rank 0 writes")

    p = sub.add_parser("status", help="per task of the studies submitted into a results folder: done, running, "
                                      "pending, failed (with its line) or diverged, and its Slurm job id")
    p.add_argument("results", help="results folder given to lftbench run --executor slurm")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("samplers", help="the registered samplers and their options (types, defaults), from their specs")
    p.add_argument("--markdown", action="store_true", help="as the Markdown table of the README")

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
    p.add_argument("--observable", help="observable of τ_int and cost (default: the theory's headline observable, "
                                        "chi2 for phi4, topological_charge for u1)")
    p.add_argument("--rank-by", dest="rank_by", default="cost",
                   help="order of each entry's contenders: cost (amortised, the default), ess, forward-ess, "
                        "log-z-error, eubo, modes (the mode-coverage p-value), evaluations (action + force "
                        "evaluations per independent sample) or evaluations-amortised (training included)")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "json"])

    p = sub.add_parser("calibrate", help="tune a line-of-constant-physics point with HMC and write its entry")
    p.add_argument("entries", nargs="*", help="point ids (see --list); several are calibrated in turn")
    p.add_argument("--list", action="store_true", help="list the points and whether they are calibrated")
    p.add_argument("--tier", choices=["quick", "standard", "large"], help="calibrate every point of this tier")
    p.add_argument("--state", default="results/calibration",
                   help="folder of the resumable calibration state (default %(default)s)")

    p = sub.add_parser("references", help="print catalogue reference blocks (TOML) computed from result rows")
    p.add_argument("results", help="results folder of a reference study (runs of an entry that differ only in "
                                   "the seed are pooled: their chains are replicas of one Γ-method analysis)")
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
                   help="cap the batch at L to max-sites / volume (at least 1; default: no cap)")
    p.add_argument("--workloads", nargs="+", help="any of hmc, sampling, training (the default: all three) and "
                                                  "hmc-uncarried, hmc-unblocked, hmc-unfused, hmc-plain, hmc-sun, forward")
    p.add_argument("--flows", nargs="+", help="any of affine, spline, hybrid (default all)")
    p.add_argument("--objectives", nargs="+", help="any of reverse-kl, path-gradient (default both)")
    p.add_argument("--repeats", type=int, help="timed measurements per cell, the median is kept (default 5)")
    p.add_argument("--warmup", type=int, help="untimed calls before timing (default 2)")
    p.add_argument("--min-seconds", type=float, dest="min_seconds", help="shortest measurement (default 0.2 s)")
    p.add_argument("--seed", type=int)
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training steps/s over the processes torchrun started (torchrun "
                        "--nproc-per-node N -m suite.cli throughput --distributed ...; workload training, each "
                        "rank batch/N); rank 0 writes, and prints the speedup over the folder's one-rank rows")

    p = sub.add_parser("validate", help="check HMC against the catalogue's reference values")
    p.add_argument("--tier", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", action="append", metavar="PATTERN",
                   help="only entries matching this shell pattern (repeatable), e.g. 'on/*'")
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


def _executor_names() -> tuple[str, ...]:
    from suite.harness.executors import EXECUTOR_NAMES

    return EXECUTOR_NAMES


def _sampler_names() -> str:
    from suite.samplers import samplers

    return ", ".join(samplers())


def _check_device(device: str, here: bool = True) -> None:
    """A device torch knows, of a supported type, and (``here``) present on this machine."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {device!r}; expected cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {device!r} is not supported; expected cpu or cuda[:N]")
    if dev.type == "cuda" and here:
        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices")


def _tasks_of(args):
    """(study or None, tasks, their 1-based indices in the study or its selection, the number of
    tasks numbered) a ``run`` asks for (indices None: all the tasks given, numbered in order)."""
    from suite.harness.study import load_study, make_task

    if (args.study is None) == (args.entry is None):
        raise UsageError("give either a study or --entry ID")
    if args.study is None:
        if args.only or args.tier or args.task is not None:
            raise UsageError("--only, --tier and --task select part of a study; use them with a study, not --entry")
        return None, [make_task(args.entry, _spec_from_args(args, args.sampler), args.seed)], None, None
    if _given_options(args):
        raise UsageError("sampler options go in the study file; use them only with --entry")
    study = load_study(args.study, only=args.only, tiers=args.tier)
    tasks = study.tasks
    if args.task is not None:
        part = " after --only/--tier" if args.only or args.tier else ""
        if not 1 <= args.task <= len(tasks):
            raise UsageError(f"--task must be in 1..{len(tasks)} (the study has {len(tasks)} tasks{part}), "
                             f"got {args.task}")
        return study, [tasks[args.task - 1]], [args.task], len(tasks)
    return study, list(tasks), None, None


def _executor_of(args, study, tasks, indices, total):
    """The executor a ``run`` asks for (None: the local one), from --executor and its options over
    the study's [executor] table."""
    from suite.harness.executors import OPTION_FLAGS, LocalExecutor, executor_settings

    given = {key: getattr(args, key) for key in OPTION_FLAGS}
    settings = executor_settings(study.executor if study else None, args.executor, **given)
    if settings.name == LocalExecutor.name:
        if args.wait:
            raise UsageError("--wait is for a cluster executor (slurm, submitit-local); a local run waits anyway")
        return None
    if study is None:
        raise UsageError(f"the {settings.name} executor submits the tasks of a study; give a study, not --entry")
    from suite.harness.executors import IndexedTask
    from suite.harness.runner import task_dtype, task_key
    from suite.harness.slurm import SubmititExecutor

    indices = indices or range(1, len(tasks) + 1)
    total = total or len(tasks)
    selection = [IndexedTask(i, total, t, task_key(t, task_dtype(t, args.dtype), args.device))
                 for i, t in zip(indices, tasks)]
    shipped = Path(args.study).suffix != ".toml"
    run_args = ["--device", args.device, *(["--dtype", args.dtype] if args.dtype else []),
                *[a for pattern in args.only or () for a in ("--only", pattern)],
                *[a for tier in args.tier or () for a in ("--tier", tier)],
                *(["--force"] if args.force else []), *(["--resume"] if args.resume else [])]
    return SubmititExecutor(settings, study=args.study if shipped else str(study.path), study_name=study.name,
                            out=Path(args.out), selection=selection, run_args=run_args,
                            log=lambda msg: print(msg, file=sys.stderr))


def _report_failures(outcome) -> int:
    for _, message in outcome.failed:
        print(f"lftbench: error: {message}", file=sys.stderr)
    return EXIT_FAILED if outcome.failed else 0


def _check_torchrun(args, work: str) -> int:
    """The world size of the torchrun launch ``--distributed`` joins (1 without it); a UsageError for
    --distributed outside torchrun, or for a launch of several processes without it (each would do ``work``)."""
    from suite import distributed

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if not args.distributed:
        if distributed.launched() and world > 1:
            raise UsageError(f"started by torchrun with WORLD_SIZE={world}: add --distributed (else every "
                             f"process would {work})")
        return 1
    if not distributed.launched():
        distributed.initialize(args.device, args.command)  # raises the one-line UsageError naming what is missing
    return world


def _check_distributed(args, tasks, executor) -> None:
    """--distributed only under torchrun, locally, for tasks of samplers that split over ranks
    (`suite.samplers.base.Sampler.split_over_ranks`), with counts the world size divides."""
    world = _check_torchrun(args, "run the whole study")
    if not args.distributed:
        return
    if executor is not None:
        raise UsageError("--distributed runs the tasks here, in the processes torchrun started; "
                         "not with a cluster executor")
    from suite.samplers import parse_spec, samplers

    for task in tasks:
        plugin, spec = parse_spec(task.sampler)
        if plugin.split_over_ranks is None:
            able = ", ".join(name for name, p in samplers().items() if p.split_over_ranks is not None)
            raise UsageError(f"--distributed runs the samplers {able}; sampler {plugin.name!r} ({task.entry_id}) "
                             "does not run distributed")
        for what in plugin.split_over_ranks:
            value = getattr(spec, what)
            if value % world:
                raise UsageError(f"--distributed: the world size {world} must divide {what}, got {value} "
                                 f"({task.entry_id})")


def cmd_run(args) -> int:
    study, tasks, indices, total = _tasks_of(args)
    executor = _executor_of(args, study, tasks, indices, total)
    _check_device(args.device, here=executor is None)  # an array element checks on its node
    _check_distributed(args, tasks, executor)
    if not args.distributed:
        return _run_here(args, tasks, indices, total, executor)
    from suite import distributed

    group = distributed.initialize(args.device)
    try:
        code = _run_here(args, tasks, indices, total, executor)
        return code if group.writer else 0
    finally:
        distributed.shutdown()


def _run_here(args, tasks, indices, total, executor) -> int:
    from suite.harness.runner import run_tasks
    from suite.interrupts import handle_signals

    with handle_signals():
        outcome = run_tasks(tasks, args.out, device=args.device, dtype=args.dtype, force=args.force,
                            resume=args.resume, indices=indices, total=total, executor=executor,
                            log=lambda msg: print(msg, file=sys.stderr))
    if executor is not None:
        return _submitted(executor, args)
    from suite import distributed

    if not distributed.is_writer():
        return 0
    for row in outcome.rows:
        print(_row_summary(row))
    return _report_failures(outcome)


def _submitted(executor, args) -> int:
    record = executor.record
    if record is None:
        return 0
    print(f"submitted job {record['job_id']} ({executor.name}): {len(record['tasks'])} tasks "
          f"({', '.join(str(t['index']) for t in record['tasks'])}); lftbench status {args.out} follows them")
    if not args.wait:
        return 0
    executor.wait()
    from suite.harness.slurm import task_states

    states = task_states(args.out)
    _print_states(states)
    return EXIT_FAILED if any(s["state"] == "failed" for s in states) else 0


def _print_states(states) -> None:
    width = max(len(f"[{s['index']}/{s['total']}] {s['task']}") for s in states)
    for s in states:
        where = f"[{s['index']}/{s['total']}] {s['task']}"
        job = f"job {s['job_id']}" if s["job_id"] else "not submitted"
        print(f"{where:<{width}}  {s['state']:<8}  {job}" + (f": {s['line']}" if s["line"] else ""))
    counts = {state: sum(s["state"] == state for s in states) for state in ("done", "running", "pending",
                                                                             "failed", "diverged")}
    print(f"{len(states)} tasks: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n))


def cmd_status(args) -> int:
    from suite.harness.slurm import task_states

    states = task_states(args.results)
    if args.json:
        print(json.dumps(states, indent=1))
    else:
        _print_states(states)
    return 0


def _row_summary(row) -> str:
    parts = [f"{row.entry} {row.sampler['name']} seed {row.seed}:"]
    if not row.ok:
        return " ".join([*parts, f"{row.status} ({row.message})"])
    if "acceptance" in row.metrics:
        parts.append(f"acc {row.metrics['acceptance']:.3f}")
    if "ess" in row.metrics:
        parts.append(f"ESS {row.metrics['ess']['value']:.3f}±{row.metrics['ess']['error']:.3f}")
    for name, ref in row.reference.items():
        est = row.observables[name]
        parts.append(f"{name} {est['value']:.5g}±{est['error']:.2g} (pull {ref['pull']:+.1f})")
    return " ".join(parts)


def samplers_markdown() -> str:
    """The option tables of every registered sampler, derived from the specs (the README shows them)."""
    from suite.samplers import samplers
    from suite.samplers.spec import REQUIRED, describe

    lines, shown = [], {}
    for plugin in samplers().values():
        shown.setdefault(plugin.spec, []).append(plugin)
    for spec, plugins in shown.items():
        names = " and ".join(f"`{p.name}`" for p in plugins)
        lines += [f"{names} ({'; '.join(p.description for p in plugins)}; default dtype {plugins[0].default_dtype}):",
                  "", "| option | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| `{name}` | {kind} | {'required' if default == REQUIRED else f'`{json.dumps(default)}`'} | "
                  f"{allowed} | {text} |" for name, kind, default, allowed, text in describe(spec)]
        lines.append("")
    return "\n".join(lines)


def cmd_samplers(args) -> int:
    from suite.samplers import samplers
    from suite.samplers.spec import REQUIRED, describe

    if args.markdown:
        print(samplers_markdown(), end="")
        return 0
    for plugin in samplers().values():
        print(f"{plugin.name}: {plugin.description} (default dtype {plugin.default_dtype})")
        for name, kind, default, allowed, text in describe(plugin.spec):
            shown = "required" if default == REQUIRED else json.dumps(default)
            print(f"  {name:<22} {kind:<14} {shown:<12} {allowed:<24} {text}")
    return 0


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
                        n_independent=args.n_independent, observable=args.observable, rank_by=args.rank_by)
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
    if Path(args.state).exists() and not Path(args.state).is_dir():
        raise UsageError(f"--state {args.state!r} is a file; it must name a folder")
    from suite.calibrate import calibrate

    for entry_id in selected:
        calibrate(entry_id, args.state, log=lambda msg: print(msg, file=sys.stderr))
    return 0


def cmd_validate(args) -> int:
    import fnmatch
    import tempfile

    from suite.catalogue import entries
    from suite.harness.rows import read_rows
    from suite.harness.runner import run_tasks, task_dtype, task_key
    from suite.harness.study import check_seed, make_task
    from suite.interrupts import handle_signals

    spec = _spec_from_args(args, "hmc")
    _check_device(args.device)
    check_seed(args.seed)
    targets = [e for e in entries(args.tier) if (e.reference or e.exact)
               and (not args.only or any(fnmatch.fnmatchcase(e.id, pattern) for pattern in args.only))]
    if not targets:
        matching = f" matching {' or '.join(args.only)}" if args.only else ""
        raise UsageError(f"no {args.tier} entries{matching} with reference values")
    tasks = [make_task(e.id, spec, args.seed) for e in targets]
    with tempfile.TemporaryDirectory() as scratch, handle_signals():
        folder = args.out or scratch
        outcome = run_tasks(tasks, folder, device=args.device, dtype=args.dtype, force=args.out is None,
                            log=lambda msg: print(msg, file=sys.stderr))
        # rows of tasks skipped as already done come from the folder
        keys = {task_key(t, task_dtype(t, args.dtype), args.device) for t in tasks}
        rows = [r for r in read_rows(folder) if r.run_id in keys and r.ok]
    table = [{"entry": r.entry, "observable": name, "measured": r.observables[name]["value"],
              "error": r.observables[name]["error"], "reference": ref["value"], "reference_error": ref["error"],
              "pull": ref["pull"]} for r in rows for name, ref in r.reference.items()]
    failed = [t for t in table if not abs(t["pull"]) <= VALIDATION_MAX_PULL]
    if args.json:
        print(json.dumps({"max_pull": VALIDATION_MAX_PULL, "passed": not failed and not outcome.failed,
                          "rows": [{k: (None if isinstance(v, float) and v != v else v) for k, v in t.items()}
                                   for t in table]}, indent=1))
    elif table:
        width = max(len(t["entry"]) for t in table)
        print(f"{'entry':<{width}}  {'observable':<15} {'measured':>22} {'reference':>22} {'pull':>6}")
        for t in table:
            flag = "" if abs(t["pull"]) <= VALIDATION_MAX_PULL else "  FAIL"
            print(f"{t['entry']:<{width}}  {t['observable']:<15} {t['measured']:>12.6g} ± {t['error']:<7.2g} "
                  f"{t['reference']:>12.6g} ± {t['reference_error']:<7.2g} {t['pull']:>+6.2f}{flag}")
        print(f"{len(table) - len(failed)} passed, {len(failed)} failed (|pull| <= {VALIDATION_MAX_PULL:g})")
    if outcome.failed:
        return _report_failures(outcome)
    return EXIT_VALIDATION_FAILED if failed else 0


def cmd_references(args) -> int:
    from suite.harness.references import reference_blocks
    from suite.harness.rows import read_rows

    if not Path(args.results).is_dir():
        raise UsageError(f"results folder {args.results!r} does not exist")
    rows = [r for r in read_rows(args.results) if r.ok]
    if not rows:
        raise UsageError(f"results folder {args.results!r} has no rows")
    names = [n.strip() for n in args.observables.split(",") if n.strip()]
    print(reference_blocks(rows, names, args.study, args.results))
    return 0


def cmd_throughput(args) -> int:
    from suite.throughput import Settings, check_distributed, run_throughput

    _check_device(args.device)
    world = _check_torchrun(args, "time every cell on its own")
    if args.distributed and args.workloads is None:
        args.workloads = ["training"]
    given = {k: getattr(args, k) for k in ("dtype", "sizes", "batch", "max_sites", "workloads", "flows", "objectives",
                                           "warmup", "repeats", "min_seconds", "seed") if getattr(args, k) is not None}
    try:
        settings = Settings(device=args.device, compile=args.compile,
                            **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    except ValueError as err:
        raise UsageError(str(err)) from None
    if not args.distributed:
        run_throughput(settings, args.out)
        return 0
    from suite import distributed

    check_distributed(settings, world)  # before joining the other ranks
    group = distributed.initialize(args.device, args.command)
    try:
        run_throughput(settings, args.out, group=group)
    finally:
        distributed.shutdown()
    return 0


COMMANDS = {"list": cmd_list, "samplers": cmd_samplers, "run": cmd_run, "status": cmd_status, "report": cmd_report, "compare": cmd_compare,
            "calibrate": cmd_calibrate, "references": cmd_references,
            "validate": cmd_validate, "throughput": cmd_throughput}
ROW_WRITERS = {"run", "calibrate", "validate", "throughput"}  # the commands whose rows record the code's git state


def main(argv=None) -> int:
    from suite.harness import results

    args = build_parser().parse_args(argv)
    results.COMMAND = "lftbench " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.command in ROW_WRITERS:
        results.code_state()  # the code this command starts with, whatever is edited or committed while it runs
    debug = args.debug or bool(os.environ.get("LFTBENCH_DEBUG"))
    if getattr(args, "distributed", False) and os.environ.get("RANK", "0") != "0" and not debug:
        sys.stderr = open(os.devnull, "w")  # ranks other than 0 say nothing: rank 0 prints the one line
    try:
        return COMMANDS[args.command](args)
    except UsageError as err:
        if debug:
            raise
        print(f"lftbench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except TaskFailure as err:
        if debug:
            raise
        print(f"lftbench: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, Interrupted) as err:
        name = getattr(err, "signal_name", "SIGINT")
        print(f"lftbench: interrupted by {name}; finished runs are kept and a training in progress saved its "
              "checkpoint: run the same command with --resume to continue", file=sys.stderr)
        return 128 + getattr(signal, name, signal.SIGINT).value
    except BrokenPipeError:  # the reader of the output went away (``lftbench list | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
