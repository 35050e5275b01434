"""The catalogue of target theories: versioned TOML data, validated on load.

Every ``*.toml`` file beside this module holds ``catalogue_version`` and a list of
``[[entry]]`` tables. An entry has a stable ``id`` (``theory/point/L``), the ``theory``, the
source ``convention`` and its ``params`` (converted to the canonical form in code), the
``lattice``, a ``tier`` (quick, standard, large), a ``description``, the ``source`` of its
parameters, and zero or more reference values ``[entry.reference.NAME]`` with ``value``,
``error`` and ``provenance`` (``exact``, ``literature: <arXiv id, table>`` or
``computed: <sampler, statistics, suite version>``; computed ones also name the ``command``
that regenerates them). ``exact = "NAME"`` (e.g. ``"free-scalar"``, ``"u1-character-expansion"``)
marks entries whose exact values the suite computes itself: NAME is one of the exact solvers the
entry's theory registers (`suite.theories.registry`), checked when the entry is used (its theory
resolved), not when the file is parsed. Entries on lines of constant physics are written by
``lftbench calibrate`` (`suite.catalogue.lines`) into ``phi4-lcp.toml``. `add_catalogue_file` adds
a file outside this folder to the process's catalogue (a test's toy theory, a user's plugin).

This module imports no torch: ``lftbench list`` must start fast.
"""

from __future__ import annotations

import math
import difflib
import tomllib
from dataclasses import dataclass, field
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from suite.errors import UsageError

TIERS = ("quick", "standard", "large")
CATALOGUE_DIR = Path(__file__).parent


class CatalogueError(UsageError):
    """A malformed catalogue file or an unknown entry id; the message names the culprit."""


@dataclass(frozen=True)
class ReferenceValue:
    value: float
    error: float
    provenance: str
    command: str | None = None


@dataclass(frozen=True)
class Entry:
    id: str
    theory: str
    convention: str
    params: dict
    lattice: tuple[int, ...]
    tier: str
    description: str
    source: str
    reference: dict[str, ReferenceValue] = field(default_factory=dict)
    exact: str | None = None

    @property
    def volume(self) -> int:
        return math.prod(self.lattice)

    def theory_info(self):
        """The registered `TheoryInfo` of this entry's theory (imports torch); checks the ``exact`` solver
        is one it registers. A one-line CatalogueError naming the entry otherwise."""
        from suite.theories import theory_info

        try:
            info = theory_info(self.theory)
            if self.exact is not None:
                info.exact_solver(self.exact)
        except UsageError as err:
            raise CatalogueError(f"entry {self.id!r}: {err}") from None
        return info

    def build_theory(self, lattice: tuple[int, ...] | None = None):
        """The Theory this entry describes (imports torch); ``lattice`` puts the same couplings on another lattice."""
        info = self.theory_info()
        try:
            return info.build_theory(self.convention, tuple(lattice or self.lattice), **self.params)
        except UsageError as err:
            raise CatalogueError(f"entry {self.id!r}: {err}") from None

    def reference_values(self) -> dict[str, ReferenceValue]:
        """The stored reference values plus, for ``exact`` entries, those its theory's exact solver computes now."""
        values = dict(self.reference)
        if self.exact is not None:
            solver = self.theory_info().exact_solver(self.exact)
            for name, value in solver.function(self.build_theory()).items():
                values[name] = ReferenceValue(value, 0.0, solver.provenance)
        return values


def _require(table: dict, key: str, kind, where: str):
    if key not in table:
        raise CatalogueError(f"{where}: missing field '{key}'")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CatalogueError(f"{where}: field '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _parse_entry(raw: dict, where: str) -> Entry:
    entry_id = _require(raw, "id", str, where)
    where = f"{where} (id {entry_id!r})"
    allowed = {"id", "theory", "convention", "params", "lattice", "tier", "description", "source", "reference", "exact"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise CatalogueError(f"{where}: unknown field '{unknown[0]}'")
    lattice = _require(raw, "lattice", list, where)
    if not lattice or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in lattice):
        raise CatalogueError(f"{where}: field 'lattice' must be a list of positive integers, got {lattice!r}")
    tier = _require(raw, "tier", str, where)
    if tier not in TIERS:
        raise CatalogueError(f"{where}: field 'tier' must be one of {', '.join(TIERS)}, got {tier!r}")
    params = _require(raw, "params", dict, where)
    for key, value in params.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CatalogueError(f"{where}: field 'params.{key}' must be a number, got {value!r}")
    exact = raw.get("exact")  # the solver's name is checked against the theory's registry when the entry is used
    if exact is not None and (not isinstance(exact, str) or not exact):
        raise CatalogueError(f"{where}: field 'exact' must be the name of an exact solver, got {exact!r}")
    reference = {}
    for name, ref in raw.get("reference", {}).items():
        ref_where = f"{where} reference '{name}'"
        if not isinstance(ref, dict):
            raise CatalogueError(f"{ref_where}: must be a table with value, error, provenance")
        value = _require(ref, "value", (int, float), ref_where)
        error = _require(ref, "error", (int, float), ref_where)
        provenance = _require(ref, "provenance", str, ref_where)
        if error < 0:
            raise CatalogueError(f"{ref_where}: field 'error' must be >= 0, got {error}")
        if not provenance.startswith(("exact", "literature:", "computed:")):
            raise CatalogueError(f"{ref_where}: field 'provenance' must start with exact, literature: or computed:")
        command = ref.get("command")
        if provenance.startswith("computed:") and not command:
            raise CatalogueError(f"{ref_where}: a computed value needs the 'command' that regenerates it")
        reference[name] = ReferenceValue(float(value), float(error), provenance, command)
    return Entry(
        id=entry_id,
        theory=_require(raw, "theory", str, where),
        convention=_require(raw, "convention", str, where),
        params=dict(params),
        lattice=tuple(lattice),
        tier=tier,
        description=_require(raw, "description", str, where),
        source=_require(raw, "source", str, where),
        reference=reference,
        exact=exact,
    )


def parse_catalogue_files(paths) -> tuple[int, dict[str, Entry]]:
    """Parse and validate catalogue files; returns (catalogue version, entries by id)."""
    version, entries = None, {}
    for path in sorted(paths):
        try:
            data = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as err:
            raise CatalogueError(f"{Path(path).name}: not valid TOML ({err})") from None
        file_version = _require(data, "catalogue_version", int, Path(path).name)
        if version is not None and file_version != version:
            raise CatalogueError(f"{Path(path).name}: catalogue_version {file_version} differs from {version}")
        version = file_version
        for i, raw in enumerate(_require(data, "entry", list, Path(path).name)):
            entry = _parse_entry(raw, f"{Path(path).name} entry {i + 1}")
            if entry.id in entries:
                raise CatalogueError(f"{Path(path).name}: duplicate entry id {entry.id!r}")
            entries[entry.id] = entry
    if version is None:
        raise CatalogueError("no catalogue files found")
    return version, entries


_EXTRA_FILES: list[Path] = []


@lru_cache(maxsize=1)
def load_catalogue() -> tuple[int, dict[str, Entry]]:
    """The catalogue: (version, entries by id) of the shipped files and any added with `add_catalogue_file`."""
    return parse_catalogue_files([*CATALOGUE_DIR.glob("*.toml"), *_EXTRA_FILES])


def add_catalogue_file(path) -> None:
    """Add a catalogue file (same ``catalogue_version`` as the shipped ones) to this process's catalogue.

    Its entries are validated on the next load; a malformed file or a duplicate id is a CatalogueError then.
    """
    path = Path(path).resolve()
    if path not in _EXTRA_FILES:
        _EXTRA_FILES.append(path)
    load_catalogue.cache_clear()


def remove_catalogue_file(path) -> None:
    """Undo `add_catalogue_file`."""
    path = Path(path).resolve()
    if path in _EXTRA_FILES:
        _EXTRA_FILES.remove(path)
    load_catalogue.cache_clear()


@contextmanager
def extra_catalogue_file(path):
    """``with extra_catalogue_file(path):`` the catalogue includes ``path`` (for tests and plugins)."""
    add_catalogue_file(path)
    try:
        yield
    finally:
        remove_catalogue_file(path)


def catalogue_version() -> int:
    return load_catalogue()[0]


def get_entry(entry_id: str) -> Entry:
    """The entry with this id, or a CatalogueError suggesting close ids."""
    entries = load_catalogue()[1]
    if entry_id not in entries:
        from suite.catalogue.lines import points

        if entry_id in points():
            raise CatalogueError(f"entry {entry_id!r} (a line of constant physics) is not calibrated yet; "
                                 f"run 'lftbench calibrate {entry_id}'")
        close = difflib.get_close_matches(entry_id, entries, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see 'lftbench list'"
        raise CatalogueError(f"unknown entry id {entry_id!r}{hint}")
    return entries[entry_id]


def entries(tier: str | None = None) -> list[Entry]:
    """All entries (optionally of one tier), in catalogue order."""
    if tier is not None and tier not in TIERS:
        raise CatalogueError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    return [e for e in load_catalogue()[1].values() if tier is None or e.tier == tier]
