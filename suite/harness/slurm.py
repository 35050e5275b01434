"""Slurm job arrays through submitit: the submission, the array element, job records and status.

``lftbench run STUDY --out DIR --executor slurm --time HH:MM:SS [...]`` submits the study's pending
tasks as one job array (`SubmititExecutor`); element I runs `TaskElement`, which calls the CLI's
``lftbench run STUDY --task I --out DIR --executor local`` in its process — the code path of a
local run, so rows are identical. ``--executor submitit-local`` submits the same elements to
submitit's local executor (processes on this machine), which is how the tests run this path.

What the results folder gets:

* ``jobs/<job-id>.json`` per submission: the study, the run's options, the tasks of the selection
  (index, run_id) and, per submitted task, its element's job id and log file (`job_records`).
* ``jobs/submitit/``: submitit's pickles and the elements' logs.
* per task what a local run writes (``runs/<run_id>/``: artifacts, ``row.json``, on a failure
  ``failure.txt``), and its row in ``results.jsonl`` (`suite.harness.rows` says what a shared
  file system must honour, and what happens where it does not).

Preemption: an element turns SIGTERM and submitit's time-limit signal (SIGUSR2, sent by Slurm
before the time runs out) into `suite.errors.Interrupted`; a training stops at its next step
boundary and writes its checkpoint; then the element hands over to submitit's handler of that
signal, which calls `TaskElement.checkpoint` — the same element with ``--resume`` and without
``--force`` — saves it and requeues the job. The requeued element resumes bit-for-bit.

`task_states` is what ``lftbench status DIR`` shows: per task done / running / pending / failed
(with its one-line failure) / diverged, and the job id of its latest submission.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from suite.errors import UsageError
from suite.harness import rows as rowio
from suite.harness.executors import ExecutorSettings, IndexedTask, TaskRunner

JOBS = "jobs"
SUBMITIT_FOLDER = "submitit"  # under jobs/
LOCAL_TIMEOUT_MIN = 60  # submitit-local's time limit per element when --time is not given
INTERRUPTED = "checkpoint.pt"  # a run folder with it and no row: an interrupted training (runner.RESUMABLE)


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError("the slurm and submitit-local executors need submitit: "
                         "pip install 'lftbench[cluster]'") from None
    return submitit


def preempt_signal() -> signal.Signals:
    """The signal submitit has Slurm send before a time limit (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


class ElementFailed(RuntimeError):
    """An element's ``lftbench run`` ended with a non-zero status (its one line is in its log)."""


class TaskElement:
    """One element of a job array: ``lftbench ARGV`` (``run STUDY --task I --out DIR ...``).

    Submitit's hook calls `checkpoint` when the job is preempted or about to time out (it looks for
    a ``checkpoint`` method, as on ``submitit.helpers.Checkpointable``): the element to requeue.
    """

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def __call__(self) -> int:
        from suite.cli import main
        from suite.interrupts import handle_signals

        preempt = preempt_signal()
        with handle_signals(extra=(preempt,)):  # the CLI's run adds SIGINT and SIGTERM inside
            code = main(self.argv)
        if code in (128 + signal.SIGTERM, 128 + preempt):
            handler = signal.getsignal(preempt)  # submitit's again, now the checkpoint is written
            if callable(handler):
                handler(preempt, None)  # saves self.checkpoint() and requeues; exits
            raise ElementFailed(f"lftbench {' '.join(self.argv)} was interrupted and not requeued")
        if code != 0:
            raise ElementFailed(f"lftbench {' '.join(self.argv)} exited with status {code}")
        return code

    def checkpoint(self, *args, **kwargs):
        """The element to requeue: the same run with ``--resume`` (and without ``--force``)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TaskElement(resumed_argv(self.argv)))


def resumed_argv(argv: list[str]) -> list[str]:
    kept = [a for a in argv if a != "--force"]
    return kept if "--resume" in kept else [*kept, "--resume"]


def submitit_parameters(settings: ExecutorSettings, job_name: str) -> dict:
    """submitit's parameters for the settings (generic ones, and ``slurm_*`` that other clusters ignore)."""
    seconds = settings.seconds
    params = {"name": job_name, "nodes": 1, "tasks_per_node": 1,
              "timeout_min": math.ceil(seconds / 60) if seconds else LOCAL_TIMEOUT_MIN}
    if settings.partition:
        params["slurm_partition"] = settings.partition
    if settings.gpus_per_task:
        params["slurm_gpus_per_task"] = settings.gpus_per_task
    if settings.cpus_per_task:
        params["cpus_per_task"] = settings.cpus_per_task
        params["slurm_setup"] = [f"export OMP_NUM_THREADS={settings.cpus_per_task}"]
    if settings.array_parallelism:
        params["slurm_array_parallelism"] = settings.array_parallelism
    return params


class SubmititExecutor:
    """Submits the pending tasks (those not running elsewhere) as one job array; `run` returns at
    once, with the submission in ``record`` (None: nothing submitted) and its jobs in ``jobs``."""

    def __init__(self, settings: ExecutorSettings, *, study: str, study_name: str, out: Path,
                 selection: list[IndexedTask], run_args: list[str], log=print):
        self.settings, self.study, self.study_name = settings, study, study_name
        self.out, self.selection, self.run_args, self.log = Path(out).resolve(), selection, list(run_args), log
        self.record, self.jobs = None, []
        self._submitit = require_submitit()
        if settings.name == "slurm" and shutil.which("sbatch") is None:
            raise UsageError("the slurm executor submits with sbatch, which is not on this machine's PATH "
                             "(run it on the cluster's login node; --executor submitit-local tries it here)")

    @property
    def name(self) -> str:
        return self.settings.name

    def element_argv(self, index: int) -> list[str]:
        return ["run", self.study, "--task", str(index), "--out", str(self.out), "--executor", "local",
                *self.run_args]

    def run(self, pending: list[IndexedTask], run_one: TaskRunner) -> None:
        from suite.harness.results import now
        from suite.harness.runner import describe_task

        submit = []
        for item in pending:
            if rowio.task_running(self.out, item.run_id):
                self.log(f"[{item.index}/{item.total}] {describe_task(item.task)}: running, not submitted again")
            else:
                submit.append(item)
        if not submit:
            self.log("nothing to submit")
            return
        cluster = "slurm" if self.name == "slurm" else "local"
        folder = self.out / JOBS / SUBMITIT_FOLDER
        executor = self._submitit.AutoExecutor(folder=folder, cluster=cluster)
        executor.update_parameters(**submitit_parameters(self.settings, f"lftbench-{self.study_name}"))
        self.jobs = executor.submit_array([TaskElement(self.element_argv(item.index)) for item in submit])
        job_id = str(self.jobs[0].job_id).split("_")[0]
        self.record = {
            "job_id": job_id, "executor": self.name, "submitted": now(), "submitted_ns": time.time_ns(),
            "host": socket.gethostname(),
            "study": self.study, "out": str(self.out), "run_args": self.run_args,
            "options": self.settings.cluster_options,
            "tasks": [{"index": item.index, "run_id": item.run_id, "job_id": str(job.job_id),
                       "log": os.path.relpath(job.paths.stderr, self.out)} for item, job in zip(submit, self.jobs)],
            "selection": [{"index": item.index, "total": item.total, "run_id": item.run_id,
                           "task": describe_task(item.task)} for item in self.selection],
        }
        write_job_record(self.out, self.record)

    def wait(self) -> None:
        for job in self.jobs:
            job.wait()


# -- records and status ---------------------------------------------------------------------------

def write_job_record(out: Path, record: dict) -> Path:
    path = Path(out) / JOBS / f"{record['job_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rowio._replace_file(path, json.dumps(record, indent=1) + "\n")
    return path


def job_records(out) -> list[dict]:
    """The submissions recorded in a results folder, oldest first (unreadable files skipped)."""
    found = []
    for path in sorted((Path(out) / JOBS).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and isinstance(record.get("tasks"), list) and "selection" in record:
            found.append(record)
    return sorted(found, key=lambda r: (str(r.get("submitted", "")), r.get("submitted_ns", 0)))


def _last_error(log: Path) -> str | None:
    """The last ``lftbench: error: ...`` line of an element's log, without its prefix."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    errors = [line for line in lines if line.startswith("lftbench: error: ")]
    return errors[-1].removeprefix("lftbench: error: ") if errors else None


STATES = ("done", "running", "pending", "failed", "diverged")


def task_states(out) -> list[dict]:
    """Per task of the latest submission's selection (and of earlier ones): index, total, task,
    run_id, state (one of `STATES`), job_id of its latest submission, and a line (the failure, a
    diverged run's message, or a note)."""
    from suite.harness.runner import recorded_failure

    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"results folder {str(out)!r} does not exist")
    records = job_records(out)
    if not records:
        raise UsageError(f"no submissions are recorded in {out / JOBS} (lftbench run STUDY --out {out} "
                         "--executor slurm records them)")
    tasks: dict[str, dict] = {}
    for record in records:  # later submissions win; a task keeps the place it was first listed at
        for item in record["selection"]:
            tasks[item["run_id"]] = {**item, "job_id": None, "log": None}
    for record in records:
        for item in record["tasks"]:
            if item["run_id"] in tasks:
                tasks[item["run_id"]].update(job_id=item["job_id"], log=item["log"])
    rows = {row.run_id: row for row in rowio.read_rows(out, on_skip=None)}
    states = []
    for key, item in tasks.items():
        row, line = rows.get(key), None
        if row is not None:
            state, line = ("done", None) if row.ok else ("diverged", row.message)
        elif rowio.task_running(out, key):
            state = "running"
        elif (line := recorded_failure(out, key) or (item["log"] and _last_error(out / item["log"]))):
            state = "failed"
        else:
            state = "pending"
            if (out / "runs" / key / INTERRUPTED).exists():
                line = "interrupted; its training checkpoint is kept (submit again with --resume)"
        states.append({"index": item["index"], "total": item["total"], "task": item["task"], "run_id": key,
                       "state": state, "job_id": item["job_id"], "line": line})
    return states
