"""SIGINT and SIGTERM as `suite.errors.Interrupted`, raised where a run can stop cleanly.

`handle_signals` installs handlers for the duration of a run (SIGTERM is what Slurm sends before
it kills or requeues a job; a Slurm job element adds the signal submitit asks Slurm to send before
its time runs out, SIGUSR2, and requeues itself once the run stopped: `suite.harness.slurm`). Outside a `deferred` block a signal raises `Interrupted` at once;
inside one (a training loop) it is remembered and raised by `raise_if_pending` at the next step
boundary, so that the checkpoint written on the way out matches the steps taken.
"""

from __future__ import annotations

import contextlib
import signal

from suite.errors import Interrupted

_state = {"deferring": 0, "pending": None}


def _handler(signum, frame):
    name = signal.Signals(signum).name
    if _state["deferring"]:
        _state["pending"] = name
        return
    raise Interrupted(name)


@contextlib.contextmanager
def handle_signals(extra=()):
    """Turn SIGINT, SIGTERM and the ``extra`` signals into `Interrupted` inside the block (main
    thread only); the previous handlers are restored after it."""
    try:
        previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM, *extra)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    _state["pending"] = None
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred():
    """Hold signals until `raise_if_pending` (or the end of the block)."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    raise_if_pending()


def take_pending() -> str | None:
    """The name of a signal held since the last call (and forget it), or None."""
    name, _state["pending"] = _state["pending"], None
    return name


def raise_if_pending() -> None:
    name, _state["pending"] = _state["pending"], None
    if name is not None:
        raise Interrupted(name)
