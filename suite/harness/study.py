"""Studies: TOML files listing tasks (entry × sampler spec × seed).

    name = "quick"
    description = "..."

    [[task]]
    entries = ["phi4/free/L8", "phi4/tutorial2021/L8"]
    sampler = { name = "hmc", chains = 16, n_therm = 200, n_traj = 1000 }
    seeds = [0]

An optional ``[executor]`` table says where the tasks run (`suite.harness.executors`), e.g.

    [executor]
    name = "slurm"
    partition = "gpu"
    time = "04:00:00"
    gpus_per_task = 1
    cpus_per_task = 8
    array_parallelism = 16

Shipped studies live in ``suite/studies/NAME.toml``; a study is named by NAME or by a path.
A study can be run in part: ``only`` keeps the entries matching shell-style patterns
(``phi4/xi4*/*``), ``tiers`` those of the given catalogue tiers; only the kept tasks are checked,
so the quick part of a study runs while its larger entries still await calibration.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from suite.catalogue import TIERS, get_entry, load_catalogue
from suite.catalogue.lines import point_tier
from suite.errors import UsageError
from suite.samplers import parse_spec, spec_dict

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"


MAX_SEED = 2**63 - 2  # torch and numpy take 64-bit seeds; forward-kl's ensemble uses seed + 1
STUDY_KEYS = ("name", "description", "task", "executor")
TASK_KEYS = ("entries", "sampler", "seeds")


@dataclass(frozen=True)
class Task:
    """One entry × sampler spec (the full, validated dict, `suite.samplers.spec_dict`) × seed."""

    entry_id: str
    sampler: dict
    seed: int


def make_task(entry_id: str, sampler: dict, seed) -> Task:
    """A validated task: the entry and its theory exist, the spec is valid and fits it, the seed is in range."""
    check_seed(seed)
    entry = get_entry(entry_id)
    entry.theory_info()  # its theory and exact solver are registered
    spec = spec_dict(sampler)
    plugin, typed = parse_spec(spec)
    plugin.check_task(typed, entry)
    return Task(entry_id, spec, seed)


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"a seed must be an integer in [0, 2^63 - 2], got {seed!r}")


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    tasks: tuple[Task, ...]
    executor: object = None  # `suite.harness.executors.ExecutorSettings` of its [executor] table, or None
    path: Path | None = field(default=None, compare=False)  # the file it was read from


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
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"study {path.name}: not valid TOML ({err})") from None
    except UnicodeDecodeError:
        raise UsageError(f"study {path.name}: not a UTF-8 text file") from None
    except OSError as err:
        raise UsageError(f"study {path.name}: cannot be read ({err.strerror})") from None
    unknown = sorted(set(data) - set(STUDY_KEYS))
    if unknown:
        raise UsageError(f"study {path.name}: unknown field {unknown[0]!r}; fields: {', '.join(STUDY_KEYS)}")
    executor = None
    if "executor" in data:
        from suite.harness.executors import check_executor_table

        try:
            executor = check_executor_table(data["executor"])
        except UsageError as err:
            raise UsageError(f"study {path.name}: {err}") from None
    raw_tasks = data.get("task")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise UsageError(f"study {path.name}: needs at least one [[task]]")
    tasks = []
    for i, raw in enumerate(raw_tasks, 1):
        where = f"study {path.name} task {i}"
        unknown = sorted(set(raw) - set(TASK_KEYS))
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(TASK_KEYS)}")
        entries, sampler, seeds = raw.get("entries"), raw.get("sampler"), raw.get("seeds", [0])
        if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
            raise UsageError(f"{where}: 'entries' must be a non-empty list of entry ids")
        if not isinstance(sampler, dict):
            raise UsageError(f"{where}: 'sampler' must be a table with a 'name'")
        if not isinstance(seeds, list) or not seeds:
            raise UsageError(f"{where}: 'seeds' must be a non-empty list of non-negative integers")
        entries = [e for e in entries if _selected(e, only, tiers)]
        try:
            spec_dict(sampler)  # a bad spec fails even when --only keeps none of its entries
            tasks += [make_task(entry_id, sampler, seed) for entry_id in entries for seed in seeds]
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
    if not tasks:
        raise UsageError(f"study {path.name}: no task left after --only/--tier")
    # a task listed twice (e.g. a shared baseline in two [[task]] tables) is run once
    unique: dict = {}
    for task in tasks:
        unique.setdefault((task.entry_id, json.dumps(task.sampler, sort_keys=True), task.seed), task)
    return Study(name=data.get("name", path.stem), description=data.get("description", ""),
                 tasks=tuple(unique.values()), executor=executor, path=path.resolve())
