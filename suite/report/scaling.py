"""The scaling section of a report: runs on the lines of constant physics (`suite.catalogue.lines`)
turned into fitted laws, figures (PNG and PDF) and tables (Markdown, CSV, LaTeX).

* Dynamic exponent: HMC's τ_int of |M| and χ₂ against ξ_2nd at fixed L/ξ, τ_int = c ξ^z.
* ESS against volume: each flow recipe on the volume line, ESS(V) = ESS(V₀)^(V/V₀).
* Training cost: steps and seconds until the batch ESS reaches the target, against L (volume line)
  and ξ (continuum line at L/ξ = 4), power and exponential laws both fitted.
* Cost per independent sample of χ₂ against ξ: HMC, and each flow with its training amortised
  over N independent samples; the break-even N per entry.

ξ is the entry's reference ξ_2nd (measured by `lftbench calibrate`); τ_int is in trajectories of
unit length; costs are wall seconds on the row's device.
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
from suite.metrics import run_time_to_target  # noqa: E402
from suite.report import fits  # noqa: E402
from suite.report.figures import FIT_STYLE, errorbar_with_fit, markdown_image, plain_log_ticks, save_figure  # noqa: E402
from suite.report.tables import format_value, sampler_label, to_markdown, write_table  # noqa: E402

TAU_OBSERVABLES = {"abs_mag": "|M|", "chi2": "χ₂"}
COST_OBSERVABLE = "chi2"
# A reweighted ESS measured with fewer effective samples than this is dominated by a few weights (its
# bootstrap error is then unreliable too): drawn, but left out of the ESS(V) fit.
MIN_EFFECTIVE_SAMPLES = 100
MAX_PARETO_K = 0.7  # above it the weights' tail is too heavy for any ESS estimate (`stats.pareto_k`)


def _save(fig, path: Path) -> list[str]:
    """Write ``path``.png and ``path``.pdf; returns the Markdown image lines."""
    return markdown_image(path.stem, save_figure(fig, path))


def _xi(row) -> tuple[float, float]:
    ref = row.reference.get("xi2nd")
    return (ref["value"], ref["error"]) if ref else (math.nan, math.nan)


def _continuum_rows(rows: list[dict]) -> dict[int, list[dict]]:
    """Rows on tuned points with a ξ_2nd target, by L/ξ (rounded)."""
    lines = {}
    for row in rows:
        point = points().get(row.entry)
        if point is not None and point.tuned and "xi2nd" in point.target:
            lines.setdefault(round(point.lattice[0] / point.target["xi2nd"]), []).append(row)
    return lines


def _volume_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows on volume lines (a tuned point and the points taking its parameter), by the tuned point."""
    lines = {}
    for row in rows:
        point = points().get(row.entry)
        if point is None:
            continue
        lines.setdefault(point.source or point.id, []).append(row)
    return {k: v for k, v in lines.items() if len({r.volume for r in v}) >= 2 and
            any(points()[r.entry].source for r in v)}


def dynamic_exponent_part(lines: dict[int, list[dict]], folder: Path) -> list[str]:
    hmc = {ratio: [r for r in rows if r.plugin.baseline] for ratio, rows in lines.items()}
    hmc = {k: v for k, v in hmc.items() if len(v) >= 2}
    if not hmc:
        return []
    records = []
    with plt.rc_context(FIT_STYLE):
        fig, ax = plt.subplots()
        for (ratio, rows), marker in zip(sorted(hmc.items()), "os^v"):
            for name, symbol in TAU_OBSERVABLES.items():
                xi = np.array([_xi(r)[0] for r in rows])
                tau = np.array([r.observables[name]["tau_int"] for r in rows])
                err = np.array([r.observables[name]["tau_int_error"] for r in rows])
                fit = fits.try_fit(fits.fit_dynamic_exponent, xi, tau, err)
                errorbar_with_fit(ax, xi, tau, err, f"HMC, τ_int({symbol}), L/ξ = {ratio}", fit, ("z",), marker)
                records.append({"line": f"L/ξ = {ratio}", "observable": symbol, "points": len(rows),
                                **({"z": format_value(fit.params["z"], fit.errors["z"]),
                                    "c": format_value(fit.params["c"], fit.errors["c"]),
                                    "chi2/dof": fit.chi2_dof} if fit else {"z": "too few points"})})
        ax.set(xscale="log", yscale="log", xlabel="ξ_2nd [lattice units]", ylabel="τ_int [trajectories of length 1]",
               title="HMC autocorrelation towards the continuum")
        ax.legend()
        plain_log_ticks(ax)
        image = _save(fig, folder / "figures" / "scaling-tau-vs-xi")
    table = pd.DataFrame.from_records(records)
    return ["### HMC: τ_int against ξ (dynamic exponent z)", "", *image, to_markdown(table), "",
            *write_table(table, folder / "tables" / "dynamic-exponent"), ""]


def _flow_rows(rows):
    """Runs with independent weighted samples (a reweighting ESS)."""
    return [r for r in rows if not r.plugin.markov and "ess" in r.metrics]


def _reliable_ess(ess: dict) -> bool:
    """Enough effective samples, and (where recorded) a Pareto k̂ of the weights below `MAX_PARETO_K`."""
    return (ess["value"] * ess["n_samples"] >= MIN_EFFECTIVE_SAMPLES
            and not ess.get("pareto_k", -math.inf) >= MAX_PARETO_K)


def ess_volume_part(lines: dict[str, list[dict]], folder: Path) -> list[str]:
    records, measured = [], []
    with plt.rc_context(FIT_STYLE):
        fig, ax = plt.subplots()
        for source, rows in lines.items():
            recipes = {}
            for r in _flow_rows(rows):
                recipes.setdefault(sampler_label(r.sampler), []).append(r)
            for recipe, runs in recipes.items():
                runs = sorted(runs, key=lambda r: r.volume)
                volume = np.array([r.volume for r in runs], dtype=float)
                ess = np.array([r.metrics["ess"]["value"] for r in runs])
                err = np.array([r.metrics["ess"]["error"] for r in runs])
                kept = np.array([_reliable_ess(r.metrics["ess"]) for r in runs])
                fit = fits.try_fit(fits.fit_ess_volume, volume[kept], ess[kept], err[kept]) if kept.sum() >= 2 else None
                label, colour = f"{recipe} ({source} line)", None
                if kept.any():
                    colour = errorbar_with_fit(ax, volume[kept], ess[kept], err[kept], label, fit, ("ess_v0",))
                if not kept.all():  # open symbols, the recipe's colour
                    ax.errorbar(volume[~kept], ess[~kept], yerr=err[~kept], marker="o", mfc="none", ls="none",
                                color=colour, label=None if kept.any() else label)
                measured += [e for e in ess if e > 0]
                listed = {True: "volumes fitted", False: "volumes not fitted"}
                record = {"line": source, "recipe": recipe,
                          **{name: ", ".join(str(int(v)) for v in volume[kept == flag]) for flag, name in listed.items()},
                          "Pareto k̂ by volume": ", ".join(f"{r.metrics['ess'].get('pareto_k', math.nan):.2f}"
                                                          for r in runs)}
                if fit is not None:
                    v_e, v_e_error = fits.ess_decay_volume(fit)
                    record.update({"V0": int(fit.fixed["v0"]), "ESS(V0)": format_value(fit.params["ess_v0"],
                                                                                      fit.errors["ess_v0"]),
                                   "V_e": format_value(v_e, v_e_error), "chi2/dof": fit.chi2_dof})
                records.append(record)
        ax.set(yscale="log", xlabel="volume V = L² [sites]", ylabel="ESS per sample",
               title=f"Flow ESS against volume, fit ESS(V) = ESS(V₀)^(V/V₀)\n(open: N·ESS < {MIN_EFFECTIVE_SAMPLES} "
                     f"or Pareto k̂ ≥ {MAX_PARETO_K}, not fitted)")
        if measured:  # the fitted curve may fall far below the data: keep the data in view
            ax.set_ylim(bottom=0.3 * min(measured))
        if not records:
            plt.close(fig)
            return []
        fig.set_size_inches(6.4, 4.2 + 0.18 * len(ax.get_legend_handles_labels()[1]))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=7)
        plain_log_ticks(ax)
        image = _save(fig, folder / "figures" / "scaling-ess-vs-volume")
    table = pd.DataFrame.from_records(records)
    return ["### Flow ESS against volume", "",
            "V_e = −V₀/ln ESS(V₀): the volume over which the ESS falls by e. Points measured with fewer than "
            f"{MIN_EFFECTIVE_SAMPLES} effective samples (N·ESS), or whose weights have a Pareto k̂ ≥ {MAX_PARETO_K} "
            "(PSIS diagnostic: a tail too heavy for the ESS to converge), are drawn open and not fitted (a fit "
            "needs two points or more): a few weights dominate them, and their bootstrap errors are unreliable.", "",
            *image, to_markdown(table), "", *write_table(table, folder / "tables" / "ess-vs-volume"), ""]


def _crossings(rows: list[dict], target: float) -> list[dict]:
    """Steps and seconds to the target batch ESS for each flow row with a training curve."""
    found = []
    for r in _flow_rows(rows):
        crossing = run_time_to_target(r, target)
        if crossing is not None:
            found.append({"row": r, **crossing})
    return found


def training_cost_part(volume_lines, continuum_lines, folder: Path, target: float) -> list[str]:
    panels = [("L [sites]", "L", [r for rows in volume_lines.values() for r in rows],
               lambda r: r.lattice[0]),
              ("ξ_2nd [lattice units]", "ξ", continuum_lines.get(4, []), lambda r: _xi(r)[0])]
    records, missed, drawn = [], [], False
    with plt.rc_context(FIT_STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, (xlabel, short, rows, size_of) in zip(axes, panels):
            recipes = {}
            for c in _crossings(rows, target):
                (recipes.setdefault(sampler_label(c["row"].sampler), []) if c["reached"] else missed).append(c)
            for recipe, found in recipes.items():
                found = sorted(found, key=lambda c: size_of(c["row"]))
                size = np.array([size_of(c["row"]) for c in found], dtype=float)
                steps, err = np.array([c["steps"] for c in found]), np.array([c["steps_error"] for c in found])
                err = np.maximum(err, 1.0)  # at least the resolution of one logged step
                laws = fits.fit_training_cost(size, steps, err) if len(found) >= 2 else {}
                best = fits.preferred(laws)
                errorbar_with_fit(ax, size, steps, err, recipe, laws.get(best), ("b",),
                      others=[f for law, f in laws.items() if law != best])
                drawn = True
                for law, fit in laws.items():
                    records.append({"against": short, "recipe": recipe, "law": fit.formula.replace("x", short),
                                    "b": format_value(fit.params["b"], fit.errors["b"]), "chi2/dof": fit.chi2_dof,
                                    "preferred": law == best, "points": len(found)})
            ax.set(xlabel=xlabel, ylabel=f"training steps to batch ESS ≥ {target:g}", yscale="log",
                   title=f"training cost against {short}")
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
            plain_log_ticks(ax)
        if not drawn:
            plt.close(fig)
            return []
        image = _save(fig, folder / "figures" / "scaling-training-cost")
    lines = ["### Training cost to reach a target ESS", "",
             f"Steps until the running mean of the batch ESS first reaches {target:g} (error: the spread of "
             "the crossing of its ±1σ band); both laws are fitted, the smaller χ² is preferred.", "", *image]
    if records:
        table = pd.DataFrame.from_records(records)
        lines += [to_markdown(table), "", *write_table(table, folder / "tables" / "training-cost"), ""]
    if missed:
        lines += ["Not reached within the budget: " + ", ".join(sorted({c["row"].entry for c in missed})) + ".", ""]
    return lines


def _cost(row) -> tuple[float, float]:
    """Seconds per independent sample of `COST_OBSERVABLE` while sampling, with its error."""
    est = row.observables[COST_OBSERVABLE]
    if not row.plugin.markov:
        ess = row.metrics["ess"]
        relative = ess["error"] / ess["value"]
    else:
        relative = est["tau_int_error"] / est["tau_int"]
    value = est.get("seconds_per_independent_sample", math.nan)
    return value, value * relative


def cost_part(continuum_lines, folder: Path, n_independent: float) -> list[str]:
    rows = continuum_lines.get(4, [])
    hmc = sorted([r for r in rows if r.plugin.baseline], key=lambda r: _xi(r)[0])
    flows = {}
    for r in _flow_rows(rows):
        flows.setdefault(sampler_label(r.sampler), []).append(r)
    if not hmc or not flows:
        return []
    hmc_by_entry = {r.entry: r for r in hmc}
    records = []
    with plt.rc_context(FIT_STYLE):
        fig, ax = plt.subplots()
        xi = np.array([_xi(r)[0] for r in hmc])
        cost, err = np.array([_cost(r) for r in hmc]).T
        errorbar_with_fit(ax, xi, cost, err, "HMC (leapfrog, τ = 1)",
              fits.try_fit(fits.fit_power, xi, cost, err, ("c", "z"), "cost = c ξ^z"), ("z",))
        for recipe, runs in flows.items():
            runs = sorted(runs, key=lambda r: _xi(r)[0])
            x = np.array([_xi(r)[0] for r in runs])
            c, e = np.array([_cost(r) for r in runs]).T
            train = np.array([(r.training or {}).get("seconds", 0.0) for r in runs])  # ais: no training
            bars = ax.errorbar(x, c, yerr=e, marker="s", ls="none", label=f"{recipe}: sampling only")
            ax.errorbar(x, fits.amortised_cost(train, c, n_independent), yerr=e, marker="D", ls="--", mfc="none",
                        color=bars[0].get_color(), label=f"{recipe}: training amortised over N = {n_independent:g}")
            for r, ci, ei, ti in zip(runs, c, e, train):
                h = hmc_by_entry.get(r.entry)
                if h is None:
                    continue
                hc, he = _cost(h)
                n_star, n_star_error = fits.break_even(ti, ci, ei, hc, he)
                records.append({"entry": r.entry, "ξ": format_value(*_xi(r)), "recipe": recipe,
                                "HMC s/indep.": format_value(hc, he), "flow s/indep.": format_value(ci, ei),
                                "training s": ti, "break-even N": format_value(n_star, n_star_error)
                                if math.isfinite(n_star) else "never"})
        ax.set(xscale="log", yscale="log", xlabel="ξ_2nd [lattice units]",
               ylabel=f"seconds per independent {TAU_OBSERVABLES[COST_OBSERVABLE]} sample",
               title=f"Cost per independent sample at L/ξ = 4 ({hmc[0].device_name})")
        ax.legend()
        plain_log_ticks(ax)
        image = _save(fig, folder / "figures" / "scaling-cost-vs-xi")
    table = pd.DataFrame.from_records(records)
    return ["### Cost per independent sample against ξ", "",
            "HMC: seconds per trajectory × 2τ_int(χ₂); flow: seconds per sample / ESS, plus training seconds / N "
            "when amortised. Break-even N: independent samples beyond which the flow, training included, is "
            "cheaper than HMC. Errors are statistical (τ_int, ESS) only: wall-clock noise of a shared machine is "
            "not in them, so a χ²/dof ≫ 1 of the cost fit measures that noise.", "", *image, to_markdown(table), "",
            *write_table(table, folder / "tables" / "break-even"), ""]


def missing_part(rows: list[dict]) -> list[str]:
    """The line points without runs here: calibrated ones left to a larger run, and those not calibrated."""
    from suite.calibrate import read_calibrated

    present, calibrated = {r.entry for r in rows}, read_calibrated()
    records = [{"entry": p.id, "tier": p.tier, "lattice": "x".join(map(str, p.lattice)),
                "status": "calibrated; not run in these results" if p.id in calibrated
                else f"not calibrated (lftbench calibrate {p.id})"}
               for p in points().values() if p.id not in present]
    if not records:
        return []
    return ["### Points of the lines not in these results", "",
            "Left to a larger run (a GPU, or hours of CPU); a point not calibrated has no entry and no reference "
            "values yet.", "", to_markdown(pd.DataFrame.from_records(records)), ""]


def scaling_section(rows: list[dict], out: Path, *, target_ess: float, n_independent: float) -> list[str]:
    """The report lines of the scaling section (empty without runs on lines of constant physics)."""
    rows = [r for r in rows if r.ok and all(name in r.observables for name in TAU_OBSERVABLES)]  # φ⁴'s
    continuum, volume = _continuum_rows(rows), _volume_rows(rows)
    if not continuum and not volume:
        return []
    (out / "tables").mkdir(exist_ok=True)
    parts = (dynamic_exponent_part(continuum, out) + ess_volume_part(volume, out)
             + training_cost_part(volume, continuum, out, target_ess) + cost_part(continuum, out, n_independent))
    if not parts:
        return []
    return ["## Scaling on the lines of constant physics", "",
            "Fits are weighted least squares with the data's errors (χ²/dof ≈ 1: the law describes the data); "
            "tables are also in tables/ as CSV and LaTeX (booktabs).", "", *parts, *missing_part(rows)]
