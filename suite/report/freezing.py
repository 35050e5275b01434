"""The sigma-model report section: critical slowing down and topological freezing along lines of
constant physics (theories ``on`` and ``cpn`` register it).

For every line of `suite.catalogue.lines` (theory, convention, fixed parameters) with Markov-chain
runs at two or more of its tuned points, `freezing_section` draws per sampler τ_int of the
topological charge Q and of χ_m against the entry's reference ξ_2nd (log-log), fits both laws
τ_int = c ξ^z and τ_int = a e^(b ξ) to each series, and draws and tabulates the cost per independent
sample of χ_t and χ_m, with a trained sampler's training amortised over `AMORTISE_OVER` of them.

Units: τ_int counts each sampler's own updates — HMC trajectories, cluster measurements (each
``n_clusters`` Wolff clusters), flow-mh proposals — so only the seconds per independent sample
compare samplers. A run with fewer than `MIN_INDEPENDENT` independent charges, N/(2τ_int(Q)), has
not seen enough of the charge for its τ_int (a lower bound) or its error: such points are drawn open
and left out of the fits.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from suite.catalogue.lines import points  # noqa: E402
from suite.report import fits  # noqa: E402
from suite.report.figures import (FIT_STYLE, errorbar_with_fit, fit_label, markdown_image,  # noqa: E402
                                  plain_log_ticks, save_figure)
from suite.report.tables import format_value, n_independent, sampler_label, to_markdown, write_table  # noqa: E402

TAU_OBSERVABLES = {"topological_charge": "Q", "chi_m": "χ_m"}
COST_OBSERVABLES = {"chi_t": "χ_t", "chi_m": "χ_m"}
MIN_INDEPENDENT = 50
AMORTISE_OVER = 1e4


def _line_key(point) -> tuple:
    return point.theory, point.convention, tuple(sorted(point.fixed.items()))


def _lines(rows) -> dict[tuple, tuple[str, list]]:
    """Markov-chain rows on tuned points with a reference ξ_2nd, by line, with the line's description;
    lines with two or more ξ only."""
    lines = {}
    for r in rows:
        point = points().get(r.entry)
        if point is None or not point.tuned or "xi2nd" not in r.reference or not r.plugin.markov:
            continue
        lines.setdefault(_line_key(point), (point.line or point.theory, []))[1].append(r)
    return {k: v for k, v in lines.items() if len({r.entry for r in v[1]}) >= 2}


def _xi(r) -> float:
    return r.reference["xi2nd"]["value"]


def _reliable(r) -> bool:
    charge = r.observables.get("topological_charge")
    return charge is None or n_independent(charge) >= MIN_INDEPENDENT


def sample_cost(r, name: str) -> tuple[float, float]:
    """Seconds per independent sample of ``name`` while sampling, with the error from τ_int's."""
    est = r.observables[name]
    value = est.get("seconds_per_independent_sample", math.nan)
    return value, value * est["tau_int_error"] / est["tau_int"]


def _training_seconds(r) -> float:
    return float((r.training or {}).get("seconds", 0.0))


def _rounded(value, digits: int):
    return None if value is None else round(value, digits)


def freezing_record(r) -> dict:
    """One row of the freezing table: the run's ξ, acceptance, τ_int of Q and χ_m, N/(2τ_int(Q)),
    seconds per independent χ_t and χ_m (sampling), training seconds, χ_t and χ_m with their pulls."""
    obs = r.observables
    record = {"entry": r.entry, "ξ_2nd": format_value(r.reference["xi2nd"]["value"], r.reference["xi2nd"]["error"]),
              "sampler": sampler_label(r.sampler), "acceptance": _rounded(r.metrics.get("acceptance"), 3)}
    for name, symbol in TAU_OBSERVABLES.items():
        if name in obs:
            record[f"τ_int({symbol})"] = format_value(obs[name]["tau_int"], obs[name]["tau_int_error"])
    if "topological_charge" in obs:
        record["N/(2τ_int(Q))"] = round(n_independent(obs["topological_charge"]))
    for name, symbol in COST_OBSERVABLES.items():
        if name in obs:
            record[f"s / indep. {symbol}"] = format_value(*sample_cost(r, name))
    record["training s"] = _training_seconds(r) or None
    for name, symbol in COST_OBSERVABLES.items():
        if name in obs:
            record[symbol] = format_value(obs[name]["value"], obs[name]["error"])
            record[f"{symbol} pull"] = _rounded(r.reference.get(name, {}).get("pull"), 2)
    return record


def _series(rows, name: str, y) -> dict[str, tuple]:
    """Per sampler: ξ, y(row) as (value, error), and which points are reliable, sorted by ξ."""
    out = {}
    for r in sorted(rows, key=_xi):
        if name in r.observables:
            out.setdefault(sampler_label(r.sampler), []).append((_xi(r), *y(r), _reliable(r)))
    return {label: tuple(np.array(column) for column in zip(*points_)) for label, points_ in out.items()}


def _tau(name):
    return lambda r: (r.observables[name]["tau_int"], r.observables[name]["tau_int_error"])


def _legend(label: str) -> str:
    """A sampler label cut to its name, model and objective (the training budget is in the tables)."""
    return label.split(",")[0]


def _fit_record(label: str, symbol: str, x, y, e, keep):
    """The fit table's record of one series and its power and exponential fits (None where they fail)."""
    power = fits.try_fit(fits.fit_power, x[keep], y[keep], e[keep], ("c", "z"), "τ_int = c ξ^z")
    exponential = fits.try_fit(fits.fit_exponential, x[keep], y[keep], e[keep], ("a", "b"), "τ_int = a e^(b ξ)")
    record = {"sampler": label, "observable": f"τ_int({symbol})", "points fitted": int(keep.sum())}
    for fit, name in ((power, "z"), (exponential, "b")):
        record[name] = format_value(fit.params[name], fit.errors[name]) if fit else "too few points"
        record[f"χ²/dof ({name})"] = _rounded(fit.chi2_dof, 2) if fit and fit.dof > 0 else None
    laws = {law: fit for law, fit in (("power", power), ("exponential", exponential)) if fit is not None}
    record["smaller χ²"] = fits.preferred(laws) if len(laws) == 2 and power.dof > 0 else None
    return record, power, exponential


def _panel(ax, series, symbol: str, fit_into: list):
    """One panel: each sampler's points (open where unreliable) with both fits (power solid,
    exponential dashed); the fits' records go to ``fit_into``."""
    for label, (x, y, e, keep) in series.items():
        record, power, exponential = _fit_record(label, symbol, x, y, e, keep)
        fit_into.append(record)
        colour = None
        if keep.any():
            colour = errorbar_with_fit(ax, x[keep], y[keep], e[keep], _legend(label), power, ("z",))
        if exponential is not None:
            grid = np.geomspace(x[keep].min(), x[keep].max(), 100)
            ax.plot(grid, exponential(grid), color=colour, lw=1, ls="--", label=f"fit {fit_label(exponential, ('b',))}")
        if (~keep).any():
            ax.errorbar(x[~keep], y[~keep], yerr=e[~keep], marker="o", ls="none", mfc="none", color=colour,
                        label=f"{_legend(label)}: N/(2τ_int(Q)) < {MIN_INDEPENDENT}")


def _cost_panel(ax, rows, name: str, symbol: str):
    for label, (x, c, e, _) in _series(rows, name, lambda r: sample_cost(r, name)).items():
        colour = errorbar_with_fit(ax, x, c, e, f"{_legend(label)}: sampling")
        trained = [r for r in sorted(rows, key=_xi) if sampler_label(r.sampler) == label and name in r.observables]
        train = np.array([_training_seconds(r) for r in trained])
        if train.any():
            ax.errorbar(x, fits.amortised_cost(train, c, AMORTISE_OVER), yerr=e, marker="D", ls="--", mfc="none",
                        color=colour, label=f"{_legend(label)}: training over {AMORTISE_OVER:g} samples")
    ax.set(xscale="log", yscale="log", xlabel="ξ_2nd", ylabel=f"seconds per independent {symbol}")


def freezing_section(rows, out: Path) -> list[str]:
    """The report lines of the freezing section of one theory's rows (module docstring)."""
    lines = []
    for key, (name, at) in _lines(rows).items():
        slug = "-".join(str(part) for part in (key[0], key[1], *(v for _, v in key[2])))
        taus = {n: s for n, s in TAU_OBSERVABLES.items() if any(n in r.observables for r in at)}
        costs = {n: s for n, s in COST_OBSERVABLES.items() if any(n in r.observables for r in at)}
        fit_records = []
        with plt.rc_context(FIT_STYLE):
            fig, axes = plt.subplots(2, max(len(taus), len(costs)), figsize=(11, 8), squeeze=False)
            for ax, (obs, symbol) in zip(axes[0], taus.items()):
                _panel(ax, _series(at, obs, _tau(obs)), symbol, fit_records)
                ax.set(xscale="log", yscale="log", xlabel="ξ_2nd", ylabel=f"τ_int({symbol}) [updates]",
                       title=f"τ_int({symbol})")
            for ax, (obs, symbol) in zip(axes[1], costs.items()):
                _cost_panel(ax, at, obs, symbol)
            for ax in axes.flat:
                if ax.has_data():
                    ax.legend(fontsize=6)
                    plain_log_ticks(ax)
            fig.suptitle(f"{name}: autocorrelation and cost against ξ_2nd ({at[0].device_name})")
            image = markdown_image(f"freezing {name}", save_figure(fig, out / "figures" / f"freezing-{slug}"))
        ordered = sorted(at, key=lambda r: (_xi(r), sampler_label(r.sampler)))
        runs = pd.DataFrame.from_records([freezing_record(r) for r in ordered])
        fitted = pd.DataFrame.from_records(fit_records)
        (out / "tables").mkdir(exist_ok=True)
        lines += [f"## Critical slowing down and topological freezing: {name}", "", *image,
                  "τ_int in each sampler's updates (HMC trajectories, cluster measurements, flow-mh proposals); "
                  "the seconds per independent sample (wall, sampling only; dashed: a trained sampler with its "
                  f"training spread over {AMORTISE_OVER:g} independent samples) compare them. ξ_2nd is the "
                  f"entry's reference value. Open points: fewer than {MIN_INDEPENDENT} independent charges, so "
                  "τ_int is a lower bound; left out of the fits. Both laws are fitted to each series; with two "
                  "points a fit has no degrees of freedom and its χ²/dof is blank.", "",
                  to_markdown(fitted), "", *write_table(fitted, out / "tables" / f"freezing-fits-{slug}"), "",
                  to_markdown(runs), "", *write_table(runs, out / "tables" / f"freezing-runs-{slug}"), ""]
    return lines
