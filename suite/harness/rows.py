"""The result row: one typed record per task, and the only code that reads or writes ``results.jsonl``.

A results folder holds ``results.jsonl`` — one JSON object per line: `ResultRow` records of tasks,
and records of other kinds (``kind = "throughput"``, `read_records`) — and ``runs/<run_id>/`` with
each task's artifacts, whose paths (relative to the folder) the row records, and the task's own
copy of its row, ``runs/<run_id>/row.json``.

Guarantees:

* **Strict JSON.** NaN and ±inf are written as ``null`` and the row's ``nonfinite`` list names
  each such field and its value (``[["observables", "creutz_3_3", "value"], "nan"]``); reading
  restores them. Every line parses with any JSON parser (JavaScript's ``JSON.parse`` included).
* **Complete or not at all.** A row is first written to ``runs/<run_id>/row.json`` (a temporary
  file with a name unique across hosts, synced, renamed into place), then appended to
  ``results.jsonl`` with one ``write`` under the folder's lock; the byte count is checked, the
  file synced and the bytes read back; on any failure the file is cut back to its previous
  length, ``row.json`` is removed again and `RowWriteError` is raised (nothing half-written remains).
* **One row per run_id.** Writing a row whose ``run_id`` is present replaces the old row: the
  file is rewritten to a temporary file, synced and renamed into place, so a crash leaves either
  the old or the new file. Readers of folders written before this rule keep the last of equal
  run_ids and say so.
* **Rows from many hosts.** `read_rows` merges ``results.jsonl`` with the ``row.json`` files:
  a row found only in its run folder is read too, and where both hold a run_id the run folder's
  copy wins (it is replaced by one atomic rename, which a shared file system such as NFS keeps
  atomic). So ``results.jsonl`` is the merged index; the run folders are the record. This is what
  Slurm job arrays writing into one folder rely on: NFS emulates ``flock`` with POSIX locks (Linux
  ≥ 2.6.12), which needs a working lock daemon (and no ``local_lock`` mount option), and
  ``O_APPEND`` is not atomic across NFS clients — where locks are not honoured, lines of
  ``results.jsonl`` written at once from two hosts can tear, the readers skip and name them, and
  every row is still read from its ``row.json``.
* **Readers skip what is not a row** — a torn last line, ``{}``, ``null``, ``[1, 2]``, a dict
  missing required fields — and name each skipped line (``on_skip``; by default a warning on
  standard error).
* **Schema versions.** ``schema_version`` 2 (this module). Rows without one are schema 1 (before
  typed rows): they load, upgraded (`_upgrade_v1`; the sampler plugin adds artifact paths schema 1
  did not record).

Locks are ``fcntl.flock`` on files under ``.locks/`` (`task_lock`, `folder_lock`) and `file_lock`
elsewhere (a shared pretraining): honoured by local file systems; on NFS ``flock`` is emulated
with POSIX locks, which needs a working lock daemon. A task's exclusivity on a cluster does not
rest on them alone: a job array runs each task in exactly one element.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from suite.errors import TaskFailure, UsageError

SCHEMA_VERSION = 2
RESULTS_FILE = "results.jsonl"
ROW_FILE = "row.json"  # a task's own copy of its row, in runs/<run_id>/
LOCKS = ".locks"
REQUIRED = ("run_id", "entry", "theory", "lattice", "sampler", "seed", "device", "dtype")


class RowWriteError(TaskFailure):
    """A record could not be written completely; the results file is as it was before."""


@dataclass
class ResultRow:
    """One task's result. Nested parts are plain dicts:

    * ``sampler``: the full spec dict (``name`` and every option); ``params``: the entry's couplings
      with its ``convention``; ``sampler_info``: settings the sampler actually used.
    * ``observables[name]``: ``value``, ``error``, ``tau_int``, ``tau_int_error``, ``window``,
      ``n_samples``, ``seconds_per_independent_sample`` (and ``undefined`` with the reason, where
      the estimate does not exist); ``reference[name]``: ``value``, ``error``, ``provenance``, ``pull``.
    * ``metrics``: acceptance, ⟨e^{−ΔH}⟩, ESS with error and Pareto k̂, ... (what the chain allows).
    * ``training``: steps, wall and CPU seconds, stop reason, parameters (trained samplers; else None).
    * ``artifacts``: kind -> path relative to the results folder (`artifact` resolves it).
    * ``status``: ``ok`` or ``diverged`` (then ``message`` says why, and there are no estimates).
    """

    run_id: str
    entry: str
    theory: str
    lattice: tuple
    volume: int
    params: dict
    sampler: dict
    seed: int
    device: str
    device_name: str
    dtype: str
    suite_version: str
    catalogue_version: int
    sampler_info: dict = field(default_factory=dict)
    training: dict | None = None
    timings: dict = field(default_factory=dict)
    throughput: dict | None = None
    metrics: dict = field(default_factory=dict)
    observables: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    status: str = "ok"
    message: str | None = None
    schema_version: int = SCHEMA_VERSION
    folder: Path | None = field(default=None, compare=False)  # the results folder it was read from; not written

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def plugin(self):
        """The sampler plugin that produced the row (`suite.samplers`)."""
        from suite.samplers import plugin_of

        return plugin_of(self.sampler)

    def artifact(self, kind: str) -> Path | None:
        """The path of a recorded artifact (relative to the current directory), or None if not recorded."""
        rel = self.artifacts.get(kind)
        if rel is None:
            return None
        return Path(self.folder or ".") / rel

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "folder"}
        data["lattice"] = list(self.lattice)
        return data

    @classmethod
    def from_dict(cls, data: dict, folder: Path | None = None) -> "ResultRow":
        """A row from its decoded dict (schema 1 upgraded); ValueError if it is not a row."""
        if not isinstance(data, dict):
            raise ValueError(f"a {type(data).__name__}, not an object")
        version = data.get("schema_version", 1)
        if version not in (1, SCHEMA_VERSION):
            raise ValueError(f"schema_version {version!r} is not one this version reads (1, {SCHEMA_VERSION})")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ValueError(f"no {missing[0]!r} field")
        if not isinstance(data["sampler"], dict) or not isinstance(data["sampler"].get("name"), str):
            raise ValueError("its 'sampler' has no name")
        if version == 1:
            data = _upgrade_v1(data)
        known = {f.name for f in dataclasses.fields(cls)} - {"folder"}
        try:
            row = cls(**{k: v for k, v in data.items() if k in known}, folder=folder)
        except TypeError as err:
            raise ValueError(str(err)) from None
        row.lattice = tuple(row.lattice)
        return row


def _upgrade_v1(data: dict) -> dict:
    """Schema 1 → 2: status ok, and what the sampler plugin adds (e.g. the pretraining's artifact paths)."""
    from suite.samplers import samplers

    data = {**data, "schema_version": SCHEMA_VERSION, "status": "ok"}
    plugin = samplers().get(data["sampler"]["name"])
    return plugin.upgrade_v1(data) if plugin is not None else data


# -- strict JSON ----------------------------------------------------------------------------------

def _strict(value, path: list, nonfinite: list):
    if isinstance(value, float) and not math.isfinite(value):
        nonfinite.append([list(path), "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")])
        return None
    if isinstance(value, dict):
        return {k: _strict(v, [*path, k], nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v, [*path, i], nonfinite) for i, v in enumerate(value)]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _strict(value.item(), path, nonfinite)
    return value


def encode(record: dict) -> str:
    """One strict JSON line (newline included) of a record; non-finite numbers listed in ``nonfinite``."""
    nonfinite: list = []
    data = _strict({k: v for k, v in record.items() if k != "nonfinite"}, [], nonfinite)
    if nonfinite:
        data["nonfinite"] = nonfinite
    return json.dumps(data, allow_nan=False, ensure_ascii=False) + "\n"


def decode(line: str):
    """The record of a line written by `encode` (non-finite numbers restored), or of an older one."""
    data = json.loads(line)
    if isinstance(data, dict) and isinstance(data.get("nonfinite"), list):
        for path, value in data.pop("nonfinite"):
            target = data
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = float(value)
    return data


# -- locks ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _flock(path: Path, blocking: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def folder_lock(folder: Path):
    """The results file's lock (held while a record is written or the file rewritten)."""
    return _flock(Path(folder) / LOCKS / "results.lock")


def task_lock(folder: Path, run_id: str):
    """A task's lock, taken without waiting: yields True if this process now owns the task."""
    return _flock(Path(folder) / LOCKS / f"{run_id}.lock", blocking=False)


def task_running(folder: Path, run_id: str) -> bool:
    """Whether another process holds the task's lock now (it is running)."""
    path = Path(folder) / LOCKS / f"{run_id}.lock"
    if not path.exists():
        return False
    with _flock(path, blocking=False) as mine:
        return not mine


def file_lock(path: Path):
    """An exclusive lock on ``path`` (created if needed), waiting for it."""
    return _flock(Path(path))


# -- reading --------------------------------------------------------------------------------------

def _warn(path: Path, line_no: int, reason: str) -> None:
    print(f"lftbench: warning: {path} line {line_no}: {reason}; skipped", file=sys.stderr)


def _lines(folder: Path) -> list[str]:
    path = Path(folder) / RESULTS_FILE
    if not path.exists():
        return []
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise UsageError(f"cannot read {path} ({err.strerror})") from None


def read_records(folder, kind: str) -> list[dict]:
    """The records of another kind (e.g. ``throughput``) in a results folder, as dicts."""
    found = []
    for line in _lines(folder):
        try:
            data = decode(line)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == kind:
            found.append(data)
    return found


def _row_files(folder: Path) -> list[Path]:
    runs = folder / "runs"
    return sorted(runs.glob(f"*/{ROW_FILE}")) if runs.is_dir() else []


def read_rows(folder, on_skip: Callable[[Path, int, str], None] | None = _warn) -> list[ResultRow]:
    """The result rows of a folder: those of ``results.jsonl`` in file order, then those found only
    in run folders (``runs/*/row.json``, by name); a run folder's copy replaces the line of the
    same run_id. Lines and files that are not rows are skipped and named through
    ``on_skip(path, line number, reason)`` (None: silently). Of equal run_ids in the file the last is kept."""
    folder = Path(folder)
    path = folder / RESULTS_FILE
    rows: dict[str, ResultRow] = {}
    for number, line in enumerate(_lines(folder), 1):
        if not line.strip():
            continue
        try:
            data = decode(line)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            if on_skip:
                on_skip(path, number, "not valid JSON (a torn write?)")
            continue
        if isinstance(data, dict) and "kind" in data:
            continue  # a record of another kind
        try:
            row = ResultRow.from_dict(data, folder=folder)
        except ValueError as err:
            if on_skip:
                on_skip(path, number, f"not a result row ({err})")
            continue
        if row.run_id in rows:
            if on_skip:
                on_skip(path, number, f"run_id {row.run_id} appears again; the later row is kept")
            del rows[row.run_id]
        rows[row.run_id] = row
    for own in _row_files(folder):
        try:
            row = ResultRow.from_dict(decode(own.read_text(encoding="utf-8")), folder=folder)
        except OSError as err:
            if on_skip:
                on_skip(own, 1, f"cannot be read ({err.strerror})")
            continue
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as err:
            if on_skip:
                on_skip(own, 1, f"not a result row ({err})")
            continue
        if row.run_id != own.parent.name:
            if on_skip:
                on_skip(own, 1, f"holds the row of run_id {row.run_id}, not of its folder")
            continue
        rows[row.run_id] = row  # replaces the index's line in place, or is added at the end
    return list(rows.values())


def done_run_ids(folder) -> set[str]:
    return {row.run_id for row in read_rows(folder, on_skip=None)}


# -- writing --------------------------------------------------------------------------------------

def _fail(path: Path, err: BaseException | str) -> RowWriteError:
    why = err if isinstance(err, str) else (getattr(err, "strerror", None) or str(err))
    return RowWriteError(f"could not write a row to {path} ({why}); nothing was recorded")


def _append_verified(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        if start:
            last = os.pread(fd, 1, start - 1)
            if last != b"\n":  # a torn last line must not swallow this record
                data = b"\n" + data
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise _fail(path, f"only {written} of {len(data)} bytes written")
            os.fsync(fd)
            if os.pread(fd, len(data), start) != data:
                raise _fail(path, "the bytes read back differ")
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
                os.fsync(fd)
            raise
    except OSError as err:
        raise _fail(path, err) from None
    finally:
        os.close(fd)


def append_record(folder, record: dict) -> None:
    """Append one record (any kind) to ``folder/results.jsonl``, completely or not at all."""
    folder = Path(folder)
    path = folder / RESULTS_FILE
    line = encode(record).encode("utf-8")
    with folder_lock(folder):
        _append_verified(path, line)


def _replace_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _fail(path, err) from None


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def row_file(folder, run_id: str) -> Path | None:
    """``runs/<run_id>/row.json`` of a folder (None for a run_id that is no plain file name)."""
    return Path(folder) / "runs" / run_id / ROW_FILE if _PLAIN_NAME.fullmatch(run_id) else None


def write_row(folder, row: ResultRow) -> None:
    """Write a row into ``folder/runs/<run_id>/row.json`` and ``folder/results.jsonl`` (appended,
    or replacing the row of the same run_id); on failure neither holds it (see the module docstring)."""
    folder = Path(folder)
    path = folder / RESULTS_FILE
    line = encode(row.to_dict())
    own = row_file(folder, row.run_id)
    previous = None
    if own is not None:
        try:
            own.parent.mkdir(parents=True, exist_ok=True)
            previous = own.read_text(encoding="utf-8") if own.exists() else None
        except OSError as err:
            raise _fail(own, err) from None
        _replace_file(own, line)
    try:
        with folder_lock(folder):
            lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if path.exists() else []
            kept = [old for old in lines if not _is_run(old, row.run_id)]
            if len(kept) == len(lines):
                _append_verified(path, line.encode("utf-8"))
                return
            _replace_file(path, "".join(old + "\n" for old in kept) + line)
    except BaseException:
        if own is not None:
            with contextlib.suppress(OSError, RowWriteError):
                if previous is None:
                    own.unlink()
                else:
                    _replace_file(own, previous)
        raise


def _is_run(line: str, run_id: str) -> bool:
    if run_id not in line:
        return False
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("run_id") == run_id and "kind" not in data


def check_results_folder(folder) -> Path:
    """Create the folder if needed and check that its results file and ``runs/`` can be written
    (before any sampling starts), or raise a one-line UsageError."""
    if str(folder) == "":
        raise UsageError("--out must name a folder")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"output folder {str(folder)!r} is not writable ({err.strerror})") from None
    if not folder.is_dir():
        raise UsageError(f"output folder {str(folder)!r} is not a folder")
    results, runs = folder / RESULTS_FILE, folder / "runs"
    if results.exists() and not results.is_file():
        raise UsageError(f"{results} is not a file")
    if runs.exists() and not runs.is_dir():
        raise UsageError(f"{runs} is not a folder")
    try:
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        with open(results, "ab"):
            pass
        with open(results, "rb"):
            pass
        (folder / LOCKS).mkdir(exist_ok=True)
    except OSError as err:
        name = getattr(err, "filename", None) or folder
        raise UsageError(f"{name} is not writable ({err.strerror})") from None
    return folder
