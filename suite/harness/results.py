"""The provenance every result row records, and the output-folder check shared by every writer.

Rows themselves are read and written by `suite.harness.rows`."""

from __future__ import annotations

import hashlib

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from suite.errors import UsageError

PACKAGES = ("lftbench", "torch", "numpy", "scipy", "pandas", "matplotlib", "tqdm")
COMMAND: str | None = None  # the lftbench command line of this process (`suite.cli.main` sets it), in provenance


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


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.rstrip() if out.returncode == 0 else None  # rstrip: porcelain lines start with a space


@lru_cache(maxsize=1)
def code_state() -> dict:
    """The git state of the code this process runs, read once, at the first call (`suite.cli.main`
    calls it at start, so commits or edits made while a long run goes on do not change what its rows
    say): commit, whether tracked files differ from it, which, and a hash of `git diff HEAD`."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    diff = _git("diff", "HEAD") if status else None
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "git_changed_files": sorted(line[3:] for line in status.splitlines()) if status else [],
        "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


def provenance() -> dict:
    """Where and with what a row was produced: the lftbench command, git state, package versions, host, threads."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": COMMAND,
        **code_state(),
        "packages": versions,
        "python": sys.version.split()[0],
        "host": platform.node(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_element": (f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
                                if os.environ.get("SLURM_ARRAY_JOB_ID") else None),  # as lftbench status names it
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
