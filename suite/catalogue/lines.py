"""Lines of constant physics: catalogue points whose bare parameter is tuned, not given.

``lines/*.toml`` beside this module describe each line (theory, convention, the fixed
parameters, the tuned one and the tolerance) and its points:

* a *tuned* point has a ``target`` (e.g. ``{ xi2nd = 4.0 }``) reached on its own lattice to
  within ``tolerance`` (relative) by ``lftbench calibrate``;
* a *volume* point takes the tuned parameter of another point (``from``) on a different lattice,
  so that a line of points differs only in volume.

``lftbench calibrate ID`` writes each point's entry, with the tuned parameter and the measured
reference values (provenance ``computed``), to the calibrated-catalogue file ``CALIBRATED_FILE``
that the catalogue loads like any other; a point not yet calibrated is no entry (so it can carry
no reference value), and asking for it names the command that calibrates it.

This module imports no torch.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from suite.errors import UsageError

LINES_DIR = Path(__file__).parent / "lines"
CALIBRATED_FILE = Path(__file__).parent / "phi4-lcp.toml"
RUN_FIELDS = {"chains", "n_therm", "n_traj", "segments"}


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
    search: dict = field(default_factory=dict)   # HMC statistics of one search evaluation
    reference: dict = field(default_factory=dict)  # HMC statistics of the reference measurement

    @property
    def tuned(self) -> bool:
        return self.source is None


def _run_settings(raw, where: str) -> dict:
    if not isinstance(raw, dict) or not set(raw) <= RUN_FIELDS or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= (0 if k == "n_therm" else 1)
            for k, v in raw.items()) or not {"chains", "n_traj"} <= set(raw):
        raise UsageError(f"{where}: HMC settings need positive integers chains, n_traj (and n_therm, segments)")
    return {"n_therm": 500, "segments": 1, **raw}


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
                search=_run_settings(raw.get("search", line.get("search")), where) if tuned else {},
                reference=_run_settings(raw.get("reference", line.get("reference")), where))
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
