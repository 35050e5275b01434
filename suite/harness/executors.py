"""Executors decide where a study's pending tasks run; they never change what a task computes.

The runner hands an executor the pending tasks, each with its index in the study (1-based, as
``lftbench run STUDY --task I`` addresses it), and a `TaskRunner` that runs one of them in this
process. ``local`` runs them one after the other here. A cluster executor is one more class with
the same `run` that submits ``lftbench run STUDY --task I`` per index instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from suite.harness.study import Task


@dataclass(frozen=True)
class IndexedTask:
    index: int  # 1-based position in the study
    total: int  # tasks in the study
    task: Task


class TaskRunner(Protocol):
    def __call__(self, pending: IndexedTask): ...


class LocalExecutor:
    """Every pending task in turn, in this process."""

    name = "local"

    def run(self, pending: list[IndexedTask], run_one: TaskRunner) -> None:
        for item in pending:
            run_one(item)


EXECUTORS = {LocalExecutor.name: LocalExecutor}
