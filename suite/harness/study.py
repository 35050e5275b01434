"""Studies: TOML files listing tasks (entry × sampler spec × seed).

    name = "quick"
    description = "..."

    [[task]]
    entries = ["phi4/free/L8", "phi4/tutorial2021/L8"]
    sampler = { name = "hmc", chains = 16, n_therm = 200, n_traj = 1000 }
    seeds = [0]

Shipped studies live in ``suite/studies/NAME.toml``; a study is named by NAME or by a path.
A study can be run in part: ``only`` keeps the entries matching shell-style patterns
(``phi4/xi4*/*``), ``tiers`` those of the given catalogue tiers; only the kept tasks are checked,
so the quick part of a study runs while its larger entries still await calibration.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

from suite.catalogue import TIERS, get_entry, load_catalogue
from suite.catalogue.lines import point_tier
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


def entry_tier(entry_id: str) -> str | None:
    """The tier of a catalogue entry or of a not yet calibrated line point (None if unknown)."""
    entry = load_catalogue()[1].get(entry_id)
    return entry.tier if entry else point_tier(entry_id)


def _selected(entry_id: str, only, tiers) -> bool:
    return ((not only or any(fnmatch.fnmatchcase(entry_id, pattern) for pattern in only))
            and (not tiers or entry_tier(entry_id) in tiers))


def load_study(name_or_path: str, only: list[str] | None = None, tiers: list[str] | None = None) -> Study:
    """Parse and validate a study (entries, sampler specs and seeds of the kept tasks are all
    checked up front); ``only`` and ``tiers`` keep part of it (see the module docstring)."""
    unknown = sorted(set(tiers or ()) - set(TIERS))
    if unknown:
        raise UsageError(f"unknown tier {unknown[0]!r}; expected one of {', '.join(TIERS)}")
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
        entries = [e for e in entries if _selected(e, only, tiers)]
        try:
            spec = normalise_spec(sampler)
            for entry_id in entries:
                get_entry(entry_id)
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
        tasks += [Task(entry_id, spec, seed) for entry_id in entries for seed in seeds]
    if not tasks:
        raise UsageError(f"study {path.name}: no task left after --only/--tier")
    return Study(name=data.get("name", path.stem), description=data.get("description", ""), tasks=tuple(tasks))
