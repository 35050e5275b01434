"""Result rows (one JSON line per run, appended atomically) and the provenance every row records."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from suite.errors import UsageError

RESULTS_FILE = "results.jsonl"
PACKAGES = ("lftbench", "torch", "numpy", "scipy", "pandas", "matplotlib", "tqdm")


def prepare_output_folder(folder: str | Path) -> Path:
    """Create the folder if needed and check that it is writable, or raise a UsageError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"output folder {str(folder)!r} is not writable ({err.strerror})") from None
    return folder


def append_row(folder: str | Path, row: dict) -> None:
    """Append one row to ``folder/results.jsonl`` with a single write, flushed to disk.

    A torn last line left by a crash is terminated first, so it cannot swallow the new row.
    """
    path = Path(folder) / RESULTS_FILE
    line = json.dumps(row, allow_nan=True) + "\n"
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_rows(folder: str | Path) -> list[dict]:
    """All complete rows of ``folder/results.jsonl``; a torn last line (a crash mid-write) is skipped."""
    path = Path(folder) / RESULTS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    """Where and with what a row was produced: git state, package versions, host, threads."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "packages": versions,
        "python": sys.version.split()[0],
        "host": platform.node(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_name(device: str) -> str:
    """A human-readable name of the device: the GPU's name, or the CPU model."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"
