"""Errors the CLI turns into one line and an exit status, never a traceback.

* `UsageError`: bad input from the user (unknown id or sampler, malformed file, nonsensical
  number, ...): ``lftbench: error: ...``, exit status 2.
* `TaskFailure`: a task that was set up correctly failed while it ran (a fault: out of memory, a
  full disk, a user's model raising): one line naming the task and the phase, exit status 1.
  `ModelFailure` is the case of a model (a user's or a reference one).
* `Diverged`: a sampler whose training diverged; the harness records a row with status
  ``diverged`` (its training curve kept) and the study goes on.
* `Interrupted`: SIGINT or SIGTERM arrived; a training in progress has written its checkpoint.
"""

from __future__ import annotations

import contextlib


class UsageError(ValueError):
    """Bad input from the user (unknown id or sampler, malformed file, nonsensical number, ...)."""


class TaskFailure(RuntimeError):
    """A task failed while running; the message is one line and names the phase."""


class ModelFailure(TaskFailure):
    """A model failed; the message reads ``model 'NAME' failed during PHASE [at step N]: Type: message``."""


class Diverged(RuntimeError):
    """A training diverged; ``training`` is the summary recorded in the row."""

    def __init__(self, message: str, training: dict):
        super().__init__(message)
        self.training = training


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a run (a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` swallows it); ``signal_name`` says which."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (a multi-line message is cut at its first line)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def model_phase(name: str, phase: str, step=None):
    """Turn any failure of a model's code inside the block into a one-line `ModelFailure`.

    ``step``: a callable giving the step reached (training) or None. UsageError, Diverged and
    Interrupted pass through; ``sys.exit`` inside a model is a failure too.
    """
    try:
        yield
    except (UsageError, Diverged, TaskFailure, Interrupted, KeyboardInterrupt):
        raise
    except (Exception, SystemExit) as err:
        at = getattr(err, "training_step", None) or (step() if step is not None else None)
        where = f" at step {at}" if at else ""
        what = f"SystemExit: called sys.exit({err.code!r})" if isinstance(err, SystemExit) else one_line(err)
        raise ModelFailure(f"model {name!r} failed during {phase}{where}: {what}") from err
