"""``lftbench calibrate``: tune a line-of-constant-physics point's parameter with its line's sampler
(HMC, or the cluster algorithm for O(N)) and store its catalogue entry with measured reference values.

Tuned points (see `suite.catalogue.lines`): find p with O(p) = target (O the target observable,
e.g. ξ_2nd) to within the relative tolerance, from HMC estimates with errors, on the root of
f(p) = ln(O(p)/target):

1. from the guess, step (doubling) in the direction the observable's slope says until f changes
   sign (the first step's direction from the line's ``monotone``, later ones from the data);
2. once f has changed sign, the root of a straight line fitted (weighted by the errors) to the
   evaluations nearest the root, kept inside the evaluated range;
3. an evaluation within half the tolerance of the target, with a relative error below the
   tolerance, is measured again with the reference statistics; if that lands within the tolerance the point
   is calibrated, else it joins the search.

Volume points take the tuned parameter of their ``from`` point and are measured once.

Every evaluation and every segment of a reference measurement is kept in a state folder as
soon as it is done (``evaluations.json``, ``segment-K.npz``), so an interrupted calibration
resumes where it stopped and repeats no finished run. A reference measurement of S segments is
S independent runs (own seeds, own thermalisation) pooled as replica.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from suite import __version__
from suite.catalogue import catalogue_version
from suite.catalogue.lines import LINES_DIR, Point, calibrated_file, points
from suite.chain import Chain
from suite.errors import UsageError

MAX_EVALUATIONS = 20
DIGITS = 6  # decimals of a tuned parameter
NEAREST = 4  # evaluations (nearest the root) in the straight-line fit once the root is bracketed
SEARCH_SEED, REFERENCE_SEED = 1, 1000


def _state_path(state_dir: Path, point: Point) -> Path:
    return Path(state_dir) / point.id.replace("/", "_")


def _save_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _theory(point: Point, value: float):
    from suite.theories import build_theory

    return build_theory(point.theory, point.lattice, point.convention, {**point.fixed, point.parameter: value})


def _run(point: Point, value: float, settings: dict, seed: int, progress) -> Chain:
    """One run of the line's sampler (its default precision) with ``settings`` at ``value``."""
    import tempfile

    import torch

    from suite.samplers import get_sampler, run_sampler

    spec = {"name": point.sampler, **{k: v for k, v in settings.items() if k != "segments"}}
    dtype = getattr(torch, get_sampler(point.sampler).default_dtype)
    with tempfile.TemporaryDirectory() as run_dir:  # these samplers keep no artifacts
        chain, _ = run_sampler(spec, _theory(point, value), seed=seed, dtype=dtype, run_dir=run_dir,
                               progress=progress)
    return chain


def _estimates(point: Point, value: float, chain: Chain) -> dict[str, dict]:
    from suite.metrics import estimate_observables
    from suite.theories import theory_info

    est = estimate_observables(chain, _theory(point, value))
    return {k: {"value": est[k]["value"], "error": est[k]["error"], "tau_int": est[k]["tau_int"]}
            for k in theory_info(point.theory).reference_observables if k in est and math.isfinite(est[k]["error"])}


def _target(point: Point) -> tuple[str, float]:
    (name, value), = point.target.items()
    return name, float(value)


def _check_target(point: Point) -> None:
    """A one-line UsageError unless a tuned point's target is one of the reference observables its
    theory registers (those a calibration measures, `suite.theories.registry`); volume points have none."""
    from suite.theories import theory_info

    if not point.tuned:
        return
    name, _ = _target(point)
    known = theory_info(point.theory).reference_observables
    if name not in known:
        raise UsageError(f"{point.id}: the target {name!r} is not a reference observable of theory {point.theory!r} "
                         f"(it has {', '.join(known) or 'none'})")


def _f(point: Point, evaluation: dict) -> tuple[float, float]:
    """f = ln(O/target) and its error."""
    name, target = _target(point)
    est = evaluation["observables"][name]
    return math.log(est["value"] / target), est["error"] / est["value"]


def next_value(point: Point, evaluations: list[dict], monotone: int) -> float:
    """The parameter to evaluate next, from the evaluations so far (see the module docstring).

    ``monotone`` is the sign of dO/dp assumed before two evaluations show it. Values are rounded
    to `DIGITS` decimals, so the catalogue stores the parameter that was simulated.
    """
    return round(_next_value(point, evaluations, monotone), DIGITS)


def _next_value(point: Point, evaluations: list[dict], monotone: int) -> float:
    if not evaluations:
        return float(point.guess)
    pts = sorted((e["value"], *_f(point, e)) for e in evaluations)
    if min(p[1] for p in pts) < 0 < max(p[1] for p in pts):  # bracketed: local weighted straight line
        near = sorted(pts, key=lambda p: abs(p[1]))[:NEAREST]
        x, f, sigma = (np.array(c) for c in zip(*near))
        if len(set(x)) >= 2:
            slope, intercept = np.polyfit(x, f, 1, w=1 / sigma)
            if slope != 0:
                return float(np.clip(-intercept / slope, pts[0][0], pts[-1][0]))
    slope = monotone
    if len(pts) >= 2:
        (pa, fa, _), (pb, fb, _) = pts[0], pts[-1]
        slope = 1 if (fb - fa) / (pb - pa) > 0 else -1
    p, f, _ = min(pts, key=lambda q: abs(q[1]))
    step = point.step * 2 ** (len(evaluations) - 1)
    return p - math.copysign(step, f * slope)


def _close(point: Point, evaluation: dict) -> bool:
    """Within half the tolerance of the target, with a relative error below the tolerance."""
    name, target = _target(point)
    est = evaluation["observables"][name]
    return abs(est["value"] / target - 1) <= point.tolerance / 2 and est["error"] / target <= point.tolerance


def _tuned_value(point: Point, state: dict, save, log, progress, monotone: int) -> float:
    """Search until an evaluation lands close to the target (see `_close`); returns its parameter."""
    name, target = _target(point)
    for evaluation in state["evaluations"]:
        if _close(point, evaluation) and not evaluation.get("rejected"):
            return evaluation["value"]
    while len(state["evaluations"]) < MAX_EVALUATIONS:
        value = next_value(point, state["evaluations"], monotone)
        seed = SEARCH_SEED + len(state["evaluations"])
        observables = _estimates(point, value, _run(point, value, point.search, seed, progress))
        est = observables[name]
        state["evaluations"].append({"value": value, "seed": seed, "settings": point.search,
                                     "observables": observables})
        close = _close(point, state["evaluations"][-1])
        save()
        log(f"{point.id}: {point.parameter} = {value:.6g}: {name} = {est['value']:.4g} ± {est['error']:.2g}"
            f" (target {target:g}){' -> reference run' if close else ''}")
        if close:
            return value
    raise UsageError(f"{point.id}: no {point.parameter} within tolerance after {MAX_EVALUATIONS} evaluations; "
                     f"adjust its 'guess', 'step' or 'search' statistics, and remove this point's folder under "
                     f"--state (which keeps these evaluations) to search afresh")


def _reference_measurement(point: Point, value: float, folder: Path, log, progress) -> Chain:
    """The pooled segments of the reference measurement at ``value``, each saved once done."""
    settings = point.reference
    chains = []
    for k in range(settings["segments"]):
        path = folder / f"segment-{k}.npz"
        saved = Chain.load(path) if path.exists() else None
        if saved is None or saved.info.get(point.parameter) != value:
            log(f"{point.id}: reference segment {k + 1}/{settings['segments']} at {point.parameter} = {value:.6g}")
            saved = _run(point, value, settings, REFERENCE_SEED + k, progress)
            saved.info[point.parameter] = value
            saved.save(path)
        chains.append(saved)
    return Chain(observables={name: np.concatenate([c.observables[name] for c in chains])
                              for name in chains[0].observables},
                 info={**chains[0].info, "segments": len(chains)})


def calibrate(entry_id: str, state_dir: str | Path, *, catalogue_file: Path | None = None,
              log=print, progress=None) -> dict:
    """Calibrate one point (its ``from`` point first, if needed) and write its entry; returns it.

    ``catalogue_file``: where to write it (default: its lines file's calibrated file).
    """
    point = points().get(entry_id)
    if point is None:
        raise UsageError(f"{entry_id!r} is not a point of a line of constant physics; see 'lftbench calibrate --list'")
    _check_target(point)
    catalogue_file = point.catalogue_file if catalogue_file is None else catalogue_file
    written = read_calibrated(catalogue_file)
    if point.source is not None:
        if point.source not in written:
            calibrate(point.source, state_dir, catalogue_file=catalogue_file, log=log, progress=progress)
            written = read_calibrated(catalogue_file)
        value = written[point.source]["params"][point.parameter]
    folder = _state_path(state_dir, point)
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "evaluations.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"point": point.id, "evaluations": []}

    def save():
        _save_json(state_file, state)

    while True:
        if point.tuned:
            value = _tuned_value(point, state, save, log, progress, point.monotone)
        chain = _reference_measurement(point, value, folder, log, progress)
        observables = _estimates(point, value, chain)
        if not point.tuned:
            break
        name, target = _target(point)
        est = observables[name]
        if abs(est["value"] / target - 1) <= point.tolerance:
            break
        log(f"{point.id}: reference {name} = {est['value']:.4g} ± {est['error']:.2g} outside the tolerance; "
            "searching on")
        for evaluation in state["evaluations"]:
            if evaluation["value"] == value:
                evaluation["rejected"] = True
        state["evaluations"].append({"value": value, "seed": REFERENCE_SEED, "settings": point.reference,
                                     "observables": observables, "rejected": True})
        save()
    entry = _entry(point, value, observables, chain.info)
    record_calibrated(entry, catalogue_file)
    log(f"{point.id}: {point.parameter} = {value:.6g} written to {catalogue_file}")
    return entry


def _entry(point: Point, value: float, observables: dict, info: dict) -> dict:
    """The catalogue entry (as a dict in catalogue-file form) of a calibrated point; ``info`` is the
    reference measurement's sampler info (its statistics in words go into the provenance)."""
    from suite.samplers import get_sampler

    segments = point.reference["segments"]
    stats = (f"{segments} x {get_sampler(point.sampler).statistics(info)}, "
             f"seeds {REFERENCE_SEED}..{REFERENCE_SEED + segments - 1}")
    if point.tuned:
        name, target = _target(point)
        how = (f"{point.parameter} tuned by lftbench calibrate to {name} = {target:g} within "
               f"{100 * point.tolerance:g}% on this lattice")
    else:
        how = f"{point.parameter} of {point.source} (same bare theory, another volume)"
    reference = {name: {"value": est["value"], "error": float(f"{est['error']:.3g}"),
                        "provenance": f"computed: {point.sampler}, {stats}, lftbench {__version__}",
                        "command": f"lftbench calibrate {point.id}"}
                 for name, est in observables.items()}
    return {"id": point.id, "theory": point.theory, "convention": point.convention,
            "params": {**point.fixed, point.parameter: value}, "lattice": list(point.lattice), "tier": point.tier,
            "description": point.description, "source": f"this project's line of constant physics: {how}",
            "reference": reference}


def read_calibrated(path: Path | None = None) -> dict[str, dict]:
    """The calibrated entries written so far to ``path`` (default: every lines file's), as raw dicts by id."""
    import tomllib

    if path is None:
        files = [calibrated_file(lines) for lines in sorted(LINES_DIR.glob("*.toml"))]
        return {k: v for file in files for k, v in read_calibrated(file).items()}
    if not Path(path).exists():
        return {}
    return {e["id"]: e for e in tomllib.loads(Path(path).read_text()).get("entry", [])}


def _toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return repr(value)


def record_calibrated(entry: dict, path: Path) -> None:
    """Add or replace one entry: the file is read again and rewritten under an exclusive lock, so
    calibrations running side by side (each for hours) do not drop each other's entries."""
    import fcntl

    with open(Path(path).with_name(Path(path).name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_calibrated({**read_calibrated(path), entry["id"]: entry}, path)


def write_calibrated(entries: dict[str, dict], path: Path) -> None:
    """Write the calibrated entries (in the lines files' order) as a catalogue file, atomically."""
    order = list(points())
    lines = ["# Lines of constant physics: entries written by `lftbench calibrate` from",
             "# suite/catalogue/lines/*.toml. Do not edit by hand; rerun the command in each `command` field.",
             f"catalogue_version = {catalogue_version()}", ""]
    for entry_id in sorted(entries, key=lambda i: order.index(i) if i in order else len(order)):
        entry = entries[entry_id]
        lines.append("[[entry]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items() if k != "reference"]
        for name, ref in entry.get("reference", {}).items():
            lines.append(f"[entry.reference.{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in ref.items()]
        lines.append("")
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)


def status() -> list[dict]:
    """Every line point with its tier and whether it is calibrated (an entry of the catalogue)."""
    written = read_calibrated()
    return [{"id": p.id, "tier": p.tier, "lattice": list(p.lattice), "target": p.target, "from": p.source,
             "calibrated": p.id in written, "parameter": p.parameter,
             "value": written[p.id]["params"][p.parameter] if p.id in written else None}
            for p in points().values()]
