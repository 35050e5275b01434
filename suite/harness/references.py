"""Catalogue reference blocks computed from result rows (``lftbench references``).

Rows of one entry whose sampler specs are identical apart from the seed are independent runs of
the same Markov chain: they are **pooled** — every chain of every run becomes one replica of a
single Γ-method analysis (`suite.stats.gamma_method`, S = 1.5), so several seeds add up to one
value with one error and one τ_int, exactly as if the chains had been one run. A row whose chains
file is missing, or a sampler without a Markov chain, is used on its own. The provenance names
the runs and seeds; the command regenerates them.

**Thermalisation check.** Where the chains are saved, the measurements of every replica are cut
into halves and the two halves' Γ-method means compared: a pull |z| > `DRIFT_LIMIT` (a trend
through the run, typically too short a thermalisation from the prior) prints the block commented
out with the two halves, for a longer ``n_therm`` to settle rather than a reference to paste.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from suite import stats
from suite.chain import Chain
from suite.harness.rows import ResultRow

DRIFT_LIMIT = 2.0  # |first half − second half| / σ above which a block is printed commented out


@dataclass
class Reference:
    """One computed reference value: the estimate and where it came from."""

    value: float
    error: float
    tau_int: float
    provenance: str
    drift: float | None = None  # pull of the first against the second half of the measurements


def half_drift(replicas: list[np.ndarray]) -> float | None:
    """(mean of the first halves − mean of the second halves) / combined error, from the Γ-method on
    each half of every replica (None if the halves are too short to analyse)."""
    halves = [[r[: len(r) // 2] for r in replicas], [r[len(r) // 2:] for r in replicas]]
    try:
        first, second = (stats.gamma_method(h) for h in halves)
    except ValueError:
        return None
    sigma = np.hypot(first.error, second.error)
    return float((first.value - second.value) / sigma) if sigma > 0 else None


def _spec_key(row: ResultRow) -> tuple[str, str]:
    return row.entry, json.dumps(row.sampler, sort_keys=True)


def group_runs(rows: list[ResultRow]) -> list[list[ResultRow]]:
    """Rows grouped by (entry, sampler spec), seeds ascending; groups in order of first appearance."""
    groups: dict[tuple[str, str], list[ResultRow]] = {}
    for row in rows:
        groups.setdefault(_spec_key(row), []).append(row)
    return [sorted(group, key=lambda r: r.seed) for group in groups.values()]


def _chains(group: list[ResultRow]) -> list[Chain] | None:
    """The saved Markov chains of every row of the group, or None if one is missing or not Markov."""
    chains = []
    for row in group:
        path = row.artifact("chains")
        if path is None or not path.exists():
            return None
        chain = Chain.load(path)
        if chain.accepted is None:
            return None
        chains.append(chain)
    return chains


def _provenance(group: list[ResultRow]) -> str:
    first = group[0]
    statistics = first.plugin.statistics(first.sampler_info)
    if len(group) == 1:
        runs = f"{statistics}, seed {first.seed}"
    else:
        seeds = ", ".join(str(r.seed) for r in group)
        runs = f"{len(group)} runs (seeds {seeds}) of {statistics}, pooled"
    return f"computed: {first.sampler['name']}, {runs}, lftbench {first.suite_version}"


def pooled_references(group: list[ResultRow], names: list[str]) -> dict[str, Reference | None]:
    """The reference value of each observable from one group of runs (None: not measured or undefined).
    Observables that are not per-configuration series of every chain (derived quantities) come from
    the group's last row alone, with that row's provenance."""
    chains = _chains(group)
    out: dict[str, Reference | None] = {}
    for name in names:
        series = chains is not None and all(name in c.observables for c in chains)
        replicas = [r for c in chains for r in np.asarray(c.observables[name], dtype=float)] if series else None
        if series and len(group) > 1:
            try:
                result = stats.gamma_method(replicas)
            except ValueError:
                out[name] = None
                continue
            value, error, tau, provenance = result.value, result.error, result.tau_int, _provenance(group)
        else:
            est = group[-1].observables.get(name)
            if est is None:
                out[name] = None
                continue
            value, error, tau, provenance = est["value"], est["error"], est["tau_int"], _provenance(group[-1:])
        drift = half_drift(replicas) if replicas is not None else None
        out[name] = Reference(value, error, tau, provenance, drift) if np.isfinite(error) else None
    return out


def reference_blocks(rows: list[ResultRow], names: list[str], study: str, results: str) -> str:
    """The TOML blocks to paste into each entry's ``[[entry]]``, one per group of runs."""
    from suite.report.tables import format_value

    lines = []
    for group in group_runs(rows):
        lines.append(f"# {group[0].entry}: paste into its [[entry]]")
        for name, ref in pooled_references(group, names).items():
            if ref is None:
                lines.append(f"# {name}: not measured or undefined, skipped")
                continue
            block = [f"[entry.reference.{name}]  # {format_value(ref.value, ref.error)}, tau_int {ref.tau_int:.3g}",
                     f"value = {ref.value!r}", f"error = {ref.error:.3g}", f'provenance = "{ref.provenance}"',
                     f'command = "lftbench run {study} --out {results}"']
            if ref.drift is not None and abs(ref.drift) > DRIFT_LIMIT:
                lines.append(f"# {name}: the first and second halves of the measurements differ by "
                             f"{ref.drift:+.1f} sigma (not thermalised?); not a reference until rerun longer:")
                block = ["# " + line for line in block]
            lines += block
        lines.append("")
    return "\n".join(lines)
