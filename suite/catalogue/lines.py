"""Lines of constant physics: catalogue points whose bare parameter is tuned, not given.

``lines/*.toml`` beside this module describe each line (theory, convention, the fixed
parameters, the tuned one and the tolerance) and its points:

* a *tuned* point has a ``target`` (e.g. ``{ xi2nd = 4.0 }``) reached on its own lattice to
  within ``tolerance`` (relative) by ``lftbench calibrate``;
* a *volume* point takes the tuned parameter of another point (``from``) on a different lattice,
  so that a line of points differs only in volume.

A line names the sampler that measures it (``sampler``, a registered plugin: ``hmc`` by default,
``cluster`` for O(N)); a point's ``search`` and ``reference`` tables are that sampler's options
(checked against its spec when the file is read) plus ``segments``, the independent runs pooled for
the reference. ``monotone`` (±1, default −1) is the sign of dO/dp the search assumes before two
evaluations show it (−1: ξ_2nd falls as φ⁴'s m² rises; +1: ξ grows with a sigma model's β).

``lftbench calibrate ID`` writes each point's entry, with the tuned parameter and the measured
reference values (provenance ``computed``), to the calibrated-catalogue file of its lines file
(``lines/NAME.toml`` → ``NAME-lcp.toml`` beside this module, `calibrated_file`) that the catalogue
loads like any other; a point not yet calibrated is no entry (so it can carry no reference value),
and asking for it names the command that calibrates it.

This module imports no torch.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from suite.errors import UsageError

LINES_DIR = Path(__file__).parent / "lines"


def calibrated_file(lines_file: Path) -> Path:
    """The catalogue file that ``lftbench calibrate`` writes a lines file's entries to."""
    return Path(__file__).parent / f"{Path(lines_file).stem}-lcp.toml"


CALIBRATED_FILE = calibrated_file(LINES_DIR / "phi4.toml")


@dataclass(frozen=True)
class Point:
    """One point of a line: its entry id, lattice, tier, and how its parameter is found."""

    id: str
    theory: str
    convention: str
    fixed: dict            # parameters held fixed along the line, e.g. {"lam": 5.0}
    parameter: str         # the tuned parameter, e.g. "m2"
    lattice: tuple[int, ...]
    tier: str
    description: str
    target: dict = field(default_factory=dict)   # observable -> value (tuned points)
    tolerance: float = 0.03
    guess: float | None = None                   # start of the search (tuned points)
    step: float = 0.1                            # first step of the bracket search
    source: str | None = None                    # the point whose parameter a volume point takes
    search: dict = field(default_factory=dict)   # sampler options of one search evaluation
    reference: dict = field(default_factory=dict)  # sampler options (and segments) of the reference measurement
    sampler: str = "hmc"                         # the registered sampler plugin that measures the line
    monotone: int = -1                           # sign of dO/dp assumed before the data show it
    catalogue_file: Path = CALIBRATED_FILE       # where its calibrated entry is written
    line: str = ""                               # the description of its line (a report heading)

    @property
    def tuned(self) -> bool:
        return self.source is None


def _run_settings(raw, where: str, sampler: str) -> dict:
    """A search or reference table: the sampler's options (validated by its spec) and ``segments``."""
    from suite.samplers import parse_spec

    if not isinstance(raw, dict):
        raise UsageError(f"{where}: give the {sampler} options of the search and the reference as tables")
    settings = {"segments": 1, **raw}
    segments = settings.pop("segments")
    if not isinstance(segments, int) or isinstance(segments, bool) or segments < 1:
        raise UsageError(f"{where}: segments must be a positive integer, got {segments!r}")
    try:
        parse_spec({"name": sampler, **settings})
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    return {**settings, "segments": segments}


def parse_lines_file(path: Path) -> dict[str, Point]:
    """The points of one lines file, validated; keyed by entry id."""
    from suite.catalogue import TIERS

    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path.name}: not valid TOML ({err})") from None
    points = {}
    for i, line in enumerate(data.get("line", []), 1):
        for key in ("theory", "convention", "fixed", "parameter", "point"):
            if key not in line:
                raise UsageError(f"{path.name} line {i}: missing field {key!r}")
        sampler, monotone = line.get("sampler", "hmc"), line.get("monotone", -1)
        if monotone not in (-1, 1):
            raise UsageError(f"{path.name} line {i}: monotone must be -1 or 1, got {monotone!r}")
        for raw in line["point"]:
            where = f"{path.name} point {raw.get('id')!r}"
            tuned = "target" in raw
            if tuned == ("from" in raw):
                raise UsageError(f"{where}: give either a 'target' (tuned) or 'from' (volume point)")
            if raw.get("tier") not in TIERS:
                raise UsageError(f"{where}: 'tier' must be one of {', '.join(TIERS)}")
            point = Point(
                id=raw["id"], theory=line["theory"], convention=line["convention"], fixed=dict(line["fixed"]),
                parameter=line["parameter"], lattice=tuple(raw["lattice"]), tier=raw["tier"],
                description=raw.get("description", line.get("description", "")),
                target=dict(raw.get("target", {})), tolerance=float(line.get("tolerance", 0.03)),
                guess=raw.get("guess"), step=float(raw.get("step", line.get("step", 0.1))), source=raw.get("from"),
                search=_run_settings(raw.get("search", line.get("search")), where, sampler) if tuned else {},
                reference=_run_settings(raw.get("reference", line.get("reference")), where, sampler),
                sampler=sampler, monotone=monotone, catalogue_file=calibrated_file(path),
                line=line.get("description", ""))
            if tuned and point.guess is None:
                raise UsageError(f"{where}: a tuned point needs a 'guess' of {point.parameter}")
            if point.id in points:
                raise UsageError(f"{where}: duplicate point id")
            points[point.id] = point
    for point in points.values():
        if point.source is not None and (point.source not in points or not points[point.source].tuned):
            raise UsageError(f"{path.name} point {point.id!r}: 'from' must name a tuned point of the file")
    return points


@lru_cache(maxsize=1)
def points() -> dict[str, Point]:
    """Every point of every shipped line, by entry id."""
    found = {}
    for path in sorted(LINES_DIR.glob("*.toml")):
        found.update(parse_lines_file(path))
    return found


def point_tier(entry_id: str) -> str | None:
    """The tier of a line's point, calibrated or not (None if ``entry_id`` is no point)."""
    point = points().get(entry_id)
    return point.tier if point else None
