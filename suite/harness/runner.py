"""Run tasks: sample, measure, write artifacts atomically, then write one result row.

A task is keyed by what it computes (`task_key`: entry, sampler spec, seed, dtype, device kind,
catalogue version). A task whose row is in ``results.jsonl`` is skipped, so an interrupted study
resumes where it stopped; ``force`` runs it again and its new row replaces the old one.

Each task holds a lock while it runs (`suite.harness.rows.task_lock`): two processes running the
same study into one folder share the work — each skips the tasks the other holds — and never
write the same task twice. Artifacts are written to unique temporary names and renamed into
place; a task that fails leaves no row, and in ``runs/<key>/failure.txt`` its one-line failure
(which ``lftbench status`` shows; removed when the task runs again).

Outcomes per task: ``ok`` (row written), ``diverged`` (training diverged: a row with status
``diverged`` and its training curve; the study goes on), ``failed`` (a fault, reported in one line
naming the task and the phase; the study goes on), ``skipped`` (done already, or running in
another process). A row that cannot be written (full disk, read-only file) stops the whole run.
A SIGINT/SIGTERM stops it too, after the training in progress has written its checkpoint; an
interrupted task is continued with ``resume`` (or restarted with ``force``) — run without either,
it is refused rather than silently restarted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite import __version__, distributed
from suite.catalogue import catalogue_version, get_entry
from suite.errors import Diverged, TaskFailure, UsageError, one_line
from suite.harness import rows as rowio
from suite.harness.executors import IndexedTask, LocalExecutor
from suite.harness.results import device_name, now, provenance
from suite.harness.study import Task
from suite.samplers import RunContext, parse_spec

# Options added after results were first written, left out of the task key at their default so that
# existing results keep their keys.
LATER_OPTIONS = {"pretrain": {}, "measure_every": 1, "costly_every": 1, "target_samples": 0}
ARTIFACTS = {"chains": "chains.npz", "training": "training.csv", "model": "model.pt", "checkpoint": "checkpoint.pt"}
OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")  # torch's messages
RESUMABLE = "checkpoint.pt"  # a run folder with this file and no row is an interrupted training
FAILURE = "failure.txt"  # a run folder with this file and no row is a failed task; it holds the line


def task_key(task: Task, dtype: str, device: str) -> str:
    """A stable identifier of what a task computes (not of when it ran)."""
    sampler = {k: v for k, v in task.sampler.items() if LATER_OPTIONS.get(k, ...) != v}
    payload = json.dumps({"entry": task.entry_id, "sampler": sampler, "seed": task.seed, "dtype": dtype,
                          "device": device.split(":")[0], "catalogue": catalogue_version()}, sort_keys=True)
    digest = hashlib.sha1(payload.encode()).hexdigest()[:10]
    return f"{task.entry_id.replace('/', '_')}-{task.sampler['name']}-s{task.seed}-{digest}"


def task_dtype(task: Task, dtype: str | None) -> str:
    """The real precision a task runs in: ``dtype``, or its sampler's default."""
    return dtype or parse_spec(task.sampler)[0].default_dtype


def describe_task(task: Task) -> str:
    return f"{task.entry_id} {task.sampler['name']} seed {task.seed}"


def record_failure(out: Path, key: str, message: str) -> None:
    """Keep a failed task's one-line message in ``runs/<key>/failure.txt`` (replaced atomically)."""
    path = Path(out) / "runs" / key / FAILURE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rowio._replace_file(path, message.strip().splitlines()[0] + "\n" if message.strip() else "\n")
    except (OSError, rowio.RowWriteError):
        pass  # the failure is still reported on standard error


def recorded_failure(out: Path, key: str) -> str | None:
    """The one-line message of a task's last failure, or None."""
    try:
        return (Path(out) / "runs" / key / FAILURE).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _relative(path: Path, out: Path) -> str:
    return str(Path(path).relative_to(out))


def _artifacts(run_dir: Path, out: Path, extra: dict | None = None) -> dict[str, str]:
    """Kind -> path relative to ``out`` of the artifacts that exist: the run folder's and ``extra`` (kind -> path)."""
    found = {kind: run_dir / name for kind, name in ARTIFACTS.items()}
    return {kind: _relative(path, out) for kind, path in {**found, **(extra or {})}.items() if path.exists()}


def _save_chain(chain, path: Path) -> None:
    try:
        chain.save(path)
    except OSError as err:
        raise TaskFailure(f"failed while writing {path.name} ({err.strerror or err})") from None


def _row(task: Task, entry, key: str, *, dtype: str, device: str, started: str, **fields) -> rowio.ResultRow:
    return rowio.ResultRow(
        run_id=key, entry=entry.id, theory=entry.theory, lattice=tuple(entry.lattice), volume=entry.volume,
        params={"convention": entry.convention, **entry.params}, sampler=task.sampler, seed=task.seed,
        device=device, device_name=device_name(device), dtype=dtype, suite_version=__version__,
        catalogue_version=catalogue_version(),
        provenance={**provenance(), "start_time": started, "end_time": now()}, **fields)


def run_task(task: Task, out: Path, *, device: str = "cpu", dtype: str | None = None, resume: bool = False,
             force: bool = False, progress=None) -> rowio.ResultRow:
    """Run one task, save its artifacts under ``runs/<key>/`` and write its row; returns the row.

    ``dtype`` None means the sampler's default (HMC float64, flows float32). Raises `TaskFailure`
    (one line, naming the phase) for a fault; a diverged training gives a row with status ``diverged``.
    Distributed (`suite.distributed`), every rank runs the task and rank 0 alone writes: the others
    return None.
    """
    import torch

    from suite.metrics import estimate_observables, pulls, sampler_metrics

    out = Path(out)
    plugin, spec = parse_spec(task.sampler)
    dtype = dtype or plugin.default_dtype
    entry = get_entry(task.entry_id)
    key = task_key(task, dtype, device)
    run_dir = out / "runs" / key
    group = distributed.current()
    writer = group is None or group.writer
    if (run_dir / RESUMABLE).exists() and not resume:
        if not force:
            raise UsageError(f"task {describe_task(task)} did not finish (its training checkpoint is in "
                             f"{run_dir}); rerun with --resume to continue it or --force to start it afresh")
        if writer:  # start the training afresh; the other artifacts are replaced as rewritten
            (run_dir / RESUMABLE).unlink(missing_ok=True)
    if group is not None:  # the other ranks look for the checkpoint once rank 0 has removed it
        distributed.broadcast_object(None)
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
    context = RunContext(entry=entry, seed=task.seed, device=distributed.rank_device(device, group),
                         dtype=getattr(torch, dtype), run_dir=run_dir,
                         out=out, catalogue_version=catalogue_version(), resume=resume, progress=progress)
    started, wall = now(), time.perf_counter()
    phase = "setup"
    try:
        theory = entry.build_theory()
        phase = "sampling"
        try:
            chain, training = plugin.run(spec, theory, context)
        except Diverged as err:
            if not writer:
                return None
            row = _row(task, entry, key, dtype=dtype, device=device, started=started, training=err.training,
                       timings={"total": time.perf_counter() - wall}, artifacts=_artifacts(run_dir, out),
                       status="diverged", message=str(err))
            rowio.write_row(out, row)
            return row
        if not writer:
            return None
        phase = "measurement"
        configs = chain.shape[0] * chain.shape[1]
        sampling = chain.timings["sampling"]
        estimates = estimate_observables(chain, theory, seconds_per_config=sampling / configs)
        phase = "writing"
        _save_chain(chain, run_dir / ARTIFACTS["chains"])
        artifacts = _artifacts(run_dir, out, plugin.artifacts(spec, context))
        row = _row(task, entry, key, dtype=dtype, device=device, started=started, sampler_info=chain.info,
                   training=training, timings={**chain.timings, "total": time.perf_counter() - wall},
                   throughput={"configs_per_second": configs / sampling,
                               "site_updates_per_second": configs * entry.volume / sampling},
                   metrics={**sampler_metrics(chain, theory, plugin.markov), **chain.metrics}, observables=estimates,
                   reference=pulls(estimates, entry.reference_values()), artifacts=artifacts)
        rowio.write_row(out, row)
        return row
    except (UsageError, TaskFailure):
        raise
    except (Exception, SystemExit) as err:
        if isinstance(err, MemoryError) or any(sign in str(err).lower() for sign in OUT_OF_MEMORY):
            raise TaskFailure(f"failed during {phase}: out of memory ({one_line(err)}); try a smaller "
                              "batch, lattice or number of chains") from err
        raise TaskFailure(f"failed during {phase}: {one_line(err)}") from err
    finally:
        if writer and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()


@dataclass
class RunOutcome:
    """What `run_tasks` did: rows written (ok and diverged), failures (task, message) and tasks
    left to another process that holds them."""

    rows: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    busy: list = field(default_factory=list)


def run_tasks(tasks, out, *, device="cpu", dtype=None, force=False, resume=False, progress=None, log=print,
              executor=None, indices=None, total=None) -> RunOutcome:
    """Run tasks into folder ``out`` through ``executor`` (default: `LocalExecutor`), skipping
    those already done unless ``force``. ``indices``: the tasks' 1-based positions in their study of
    ``total`` tasks (default 1..n of n). Usage errors and row-write failures propagate; other
    failures are collected.

    Distributed (`suite.distributed`), every rank calls this with the same tasks: rank 0 checks the
    folder, takes the locks, decides what runs and logs; the other ranks follow its decisions."""
    group = distributed.current()
    writer = group is None or group.writer
    if not writer:
        log = lambda message: None  # noqa: E731
    out = rowio.check_results_folder(out) if writer else Path(out)
    tasks = list(tasks)
    indices = list(indices or range(1, len(tasks) + 1))
    total = total or len(tasks)
    outcome = RunOutcome()
    done = {row.run_id for row in rowio.read_rows(out)} if writer else None  # names any line that is not a row
    if group is not None:
        done = distributed.broadcast_object(done)
    pending = []
    for index, task in zip(indices, tasks):
        where = f"[{index}/{total}] {describe_task(task)}"
        if task_key(task, task_dtype(task, dtype), device) in done and not force:
            log(f"{where}: already done, skipped")
            continue
        pending.append(IndexedTask(index, total, task, task_key(task, task_dtype(task, dtype), device)))

    def run_one(item: IndexedTask) -> None:
        task = item.task
        where = f"[{item.index}/{item.total}] {describe_task(task)}"
        key = task_key(task, task_dtype(task, dtype), device)
        with rowio.task_lock(out, key) if writer else contextlib.nullcontext(None) as mine:
            state = None
            if writer:
                state = "busy" if not mine else "done" if key in rowio.done_run_ids(out) and not force else "run"
            if group is not None:
                state = distributed.broadcast_object(state)
            if state == "busy":
                log(f"{where}: running in another process, left to it")
                outcome.busy.append(task)
                return
            if state == "done":  # finished by another process meanwhile
                log(f"{where}: already done, skipped")
                return
            log(f"{where}: running")
            if writer:
                (out / "runs" / key / FAILURE).unlink(missing_ok=True)
            try:
                row = run_task(task, out, device=device, dtype=dtype, resume=resume, force=force, progress=progress)
            except rowio.RowWriteError:
                raise
            except UsageError as err:  # e.g. an interrupted task run without --resume
                if writer:
                    record_failure(out, key, f"{describe_task(task)}: {err}")
                raise
            except TaskFailure as err:  # reported once, by the caller
                outcome.failed.append((task, f"{describe_task(task)}: {err}"))
                if writer:
                    record_failure(out, key, f"{describe_task(task)}: {err}")
                return
            if row is None:  # a rank other than 0
                return
            if not row.ok:
                log(f"{where}: {row.status}: {row.message}")
            outcome.rows.append(row)

    (executor or LocalExecutor()).run(pending, run_one)
    return outcome
