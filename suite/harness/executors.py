"""Executors decide where a study's pending tasks run; they never change what a task computes.

The runner hands an executor the pending tasks, each with its index in the study (1-based, as
``lftbench run STUDY --task I`` addresses it) and its task key, and a `TaskRunner` that runs one
of them in this process. ``local`` runs them one after the other here. ``slurm`` ignores the
`TaskRunner` and submits one Slurm job array through submitit, whose element I runs
``lftbench run STUDY --task I`` (`suite.harness.slurm`); ``submitit-local`` submits the same array
to submitit's local executor (each element a process on this machine — what the tests run).

Where tasks run is chosen by ``--executor`` and its options, or by the study's ``[executor]``
table (`check_executor_table`); options given on the command line win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Protocol

from suite.errors import UsageError
from suite.harness.study import Task


@dataclass(frozen=True)
class IndexedTask:
    index: int  # 1-based position in the study
    total: int  # tasks in the study
    task: Task
    run_id: str = ""  # its task key (`suite.harness.runner.task_key`)


class TaskRunner(Protocol):
    def __call__(self, pending: IndexedTask): ...


class LocalExecutor:
    """Every pending task in turn, in this process."""

    name = "local"

    def run(self, pending: list[IndexedTask], run_one: TaskRunner) -> None:
        for item in pending:
            run_one(item)


CLUSTER_EXECUTORS = ("slurm", "submitit-local")
EXECUTOR_NAMES = (LocalExecutor.name, *CLUSTER_EXECUTORS)
_TIME = re.compile(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)")


@dataclass(frozen=True)
class ExecutorSettings:
    """Where a study's tasks run: the executor's name and the cluster options (None: not given)."""

    name: str = LocalExecutor.name
    partition: str | None = None
    time: str | None = None  # Slurm's time limit per element, [D-]HH:MM:SS
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    array_parallelism: int | None = None  # elements running at once (Slurm's %K)

    @property
    def cluster_options(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "name" and getattr(self, f.name) is not None}

    @property
    def seconds(self) -> int | None:
        return None if self.time is None else parse_time(self.time)


OPTION_FLAGS = {"partition": "--partition", "time": "--time", "gpus_per_task": "--gpus-per-task",
                "cpus_per_task": "--cpus-per-task", "array_parallelism": "--array-parallelism"}


def parse_time(text) -> int:
    """Seconds of a Slurm time limit ``HH:MM:SS`` or ``D-HH:MM:SS`` (more than zero), or a UsageError."""
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match[3]) >= 60 or int(match[4]) >= 60:
        raise UsageError(f"time must be HH:MM:SS or D-HH:MM:SS, got {text!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise UsageError(f"time must be more than 00:00:00, got {text!r}")
    return total


def _check_option(name: str, value):
    if name == "partition":
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise UsageError(f"partition must be a Slurm partition name, got {value!r}")
    elif name == "time":
        parse_time(value)
    else:
        least = 0 if name == "gpus_per_task" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def check_executor_table(table) -> ExecutorSettings:
    """The settings of a study's ``[executor]`` table (keys ``name`` and the cluster options), or a UsageError."""
    if not isinstance(table, dict):
        raise UsageError("'executor' must be a table, e.g. [executor] name = \"slurm\"")
    known = ("name", *OPTION_FLAGS)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UsageError(f"[executor]: unknown field {unknown[0]!r}; fields: {', '.join(known)}")
    name = table.get("name", LocalExecutor.name)
    if name not in EXECUTOR_NAMES:
        raise UsageError(f"[executor]: unknown executor {name!r}; expected one of {', '.join(EXECUTOR_NAMES)}")
    try:
        options = {k: _check_option(k, v) for k, v in table.items() if k != "name"}
    except UsageError as err:
        raise UsageError(f"[executor]: {err}") from None
    settings = ExecutorSettings(name=name, **options)
    if name == LocalExecutor.name:
        _consistent(settings, "[executor]")  # its time limit may still come from --time
    return settings


def _consistent(settings: ExecutorSettings, where: str = "") -> ExecutorSettings:
    """Cluster options only with a cluster executor, and a time limit for Slurm. ``where``: a study's
    ``[executor]`` table (options named by their keys), or "" (the command line's flags)."""
    name_of = (lambda key: key) if where else OPTION_FLAGS.get
    prefix = f"{where}: " if where else ""
    if settings.name == LocalExecutor.name and settings.cluster_options:
        option = name_of(next(iter(settings.cluster_options)))
        raise UsageError(f"{prefix}{option} is an option of a cluster executor ({', '.join(CLUSTER_EXECUTORS)}); "
                         "the local executor runs the tasks in this process")
    if settings.name == "slurm" and settings.time is None:
        raise UsageError(f"{prefix}the slurm executor needs {name_of('time')} HH:MM:SS (each element's time limit)")
    return settings


def executor_settings(study: ExecutorSettings | None, name: str | None = None, **given) -> ExecutorSettings:
    """The settings of a run: the study's (if any), overridden by the command line's ``name`` and options."""
    base = study or ExecutorSettings()
    given = {k: v for k, v in given.items() if v is not None}
    if name is not None and name not in EXECUTOR_NAMES:
        raise UsageError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTOR_NAMES)}")
    for key, value in given.items():
        try:
            _check_option(key, value)
        except UsageError as err:
            raise UsageError(f"{OPTION_FLAGS[key]}: {err}") from None
    if name == LocalExecutor.name and name != base.name:  # --executor local drops the study's cluster options
        base = ExecutorSettings()
    return _consistent(replace(base, **({"name": name} if name else {}), **given))


EXECUTORS = {LocalExecutor.name: LocalExecutor}
