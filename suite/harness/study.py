"""Studies: TOML files listing tasks (entry × sampler spec × seed).

    name = "quick"
    description = "..."

    [[task]]
    entries = ["phi4/free/L8", "phi4/tutorial2021/L8"]
    sampler = { name = "hmc", chains = 16, n_therm = 200, n_traj = 1000 }
    seeds = [0]

Shipped studies live in ``suite/studies/NAME.toml``; a study is named by NAME or by a path.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from suite.catalogue import get_entry
from suite.errors import UsageError
from suite.harness.samplers import normalise_spec

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"


@dataclass(frozen=True)
class Task:
    entry_id: str
    sampler: dict
    seed: int


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    tasks: tuple[Task, ...]


def shipped_studies() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))


def load_study(name_or_path: str) -> Study:
    """Parse and validate a study (entries, sampler specs and seeds are all checked up front)."""
    path = Path(name_or_path)
    if not path.suffix == ".toml":
        path = STUDIES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UsageError(f"no study {name_or_path!r}: not a file, and not one of {', '.join(shipped_studies())}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"study {path.name}: not valid TOML ({err})") from None
    raw_tasks = data.get("task")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise UsageError(f"study {path.name}: needs at least one [[task]]")
    tasks = []
    for i, raw in enumerate(raw_tasks, 1):
        where = f"study {path.name} task {i}"
        unknown = sorted(set(raw) - {"entries", "sampler", "seeds"})
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r}")
        entries, sampler, seeds = raw.get("entries"), raw.get("sampler"), raw.get("seeds", [0])
        if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
            raise UsageError(f"{where}: 'entries' must be a non-empty list of entry ids")
        if not isinstance(sampler, dict):
            raise UsageError(f"{where}: 'sampler' must be a table with a 'name'")
        if not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise UsageError(f"{where}: 'seeds' must be a list of non-negative integers")
        try:
            spec = normalise_spec(sampler)
            for entry_id in entries:
                get_entry(entry_id)
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
        tasks += [Task(entry_id, spec, seed) for entry_id in entries for seed in seeds]
    return Study(name=data.get("name", path.stem), description=data.get("description", ""), tasks=tuple(tasks))
