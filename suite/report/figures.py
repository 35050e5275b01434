"""Figures of a run: Monte Carlo histories and normalised autocorrelation functions ρ(t)
with the Γ-method's chosen window marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from suite import stats  # noqa: E402
from suite.report.tables import format_value  # noqa: E402

HISTORY_REPLICA = 4  # chains drawn in a history plot
# The look of the fitted-law figures of a paper (scaling and freezing sections).
FIT_STYLE = {"figure.figsize": (6.4, 4.2), "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
             "legend.fontsize": 7, "errorbar.capsize": 3, "lines.markersize": 5, "savefig.dpi": 150}


def save_figure(fig, path: Path, vector: bool = True, dpi: float | None = None) -> Path:
    """Write ``path`` as PNG and, for the figures of a paper (``vector``), as PDF beside it; closes
    ``fig`` and returns the PNG's path. ``dpi`` None: matplotlib's ``savefig.dpi``."""
    fig.tight_layout()
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=dpi)
    if vector:
        fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return png


def _save(fig, title: str, path: Path, vector: bool = True) -> Path:
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, vector, dpi=110)


def markdown_image(alt: str, path: Path) -> list[str]:
    """The Markdown lines showing a figure written by this module (PNG, with its PDF linked when there is one)."""
    pdf = f" ([PDF](figures/{path.with_suffix('.pdf').name}))" if path.with_suffix(".pdf").exists() else ""
    return [f"![{alt}](figures/{path.name}){pdf}", ""]


def history_and_autocorrelation(observables: dict[str, np.ndarray], names: list[str], title: str,
                                path: Path) -> Path:
    """One row per observable: history of the first chains (left), ρ(t) with window W (right)."""
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.4 * len(names)), squeeze=False)
    for (ax_hist, ax_rho), name in zip(axes, names):
        data = observables[name]
        for replica in data[:HISTORY_REPLICA]:
            ax_hist.plot(replica, lw=0.6, alpha=0.8)
        ax_hist.set_ylabel(name)
        ax_hist.set_xlabel("trajectory")
        result = stats.gamma_method(data)
        t_max = max(10, min(len(result.rho), 4 * max(result.window, 1)))
        t = np.arange(t_max)
        ax_rho.plot(t, result.rho[:t_max], marker=".", lw=0.8)
        ax_rho.axhline(0, color="grey", lw=0.5)
        ax_rho.axvline(result.window, color="C3", ls="--", lw=0.8, label=f"W = {result.window}")
        ax_rho.set_xlabel("t [trajectories]")
        ax_rho.set_ylabel(f"ρ(t), {name}")
        ax_rho.set_title(f"τ_int = {result.tau_int:.2f} ± {result.tau_int_error:.2f}", fontsize=9)
        ax_rho.legend(fontsize=8)
    return _save(fig, title, path, vector=False)  # a diagnostic, one per run


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Running mean over ``width`` finite points (NaNs, steps without an ESS, are dropped first)."""
    values = values[np.isfinite(values)]
    if len(values) < width or width < 2:
        return values
    return np.convolve(values, np.ones(width) / width, mode="valid")


def training_curves(curves: dict, title: str, path: Path) -> Path:
    """Loss against step, batch ESS against step and against wall time, one line per run.

    ``curves`` maps a legend label (sampler, model, objective, budget) to its training.csv as a DataFrame.
    """
    fig, (ax_loss, ax_step, ax_time) = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, log in curves.items():
        width = max(1, len(log) // 100)
        ax_loss.plot(log.step[: len(_smooth(log.loss.to_numpy(), width))], _smooth(log.loss.to_numpy(), width),
                     lw=0.8, label=label)
        has_ess = np.isfinite(log.ess.to_numpy())
        ess = _smooth(log.ess.to_numpy(), width)
        ax_step.plot(log.step[has_ess].to_numpy()[: len(ess)], ess, lw=0.8, label=label)
        ax_time.plot(log.seconds[has_ess].to_numpy()[: len(ess)], ess, lw=0.8, label=label)
    ax_loss.set(xlabel="training step", ylabel="loss (running mean)")
    ax_step.set(xlabel="training step", ylabel="batch ESS per sample (running mean)", ylim=(0, 1))
    ax_time.set(xlabel="training wall time [s]", ylabel="batch ESS per sample (running mean)", ylim=(0, 1))
    ax_time.legend(fontsize=7)
    return _save(fig, title, path)


def autocorrelation_scan(series: dict[str, list[tuple[float, dict]]], observable: str, parameter: str,
                         title: str, path: Path) -> Path:
    """τ_int of ``observable`` (left, log scale) and seconds per independent sample (right) against
    a theory parameter, one line per sampler. ``series`` maps a label to (parameter value, estimate)."""
    fig, (ax_tau, ax_cost) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, points in series.items():
        points = sorted(points, key=lambda p: p[0])
        x = [p for p, _ in points]
        ax_tau.errorbar(x, [e["tau_int"] for _, e in points], yerr=[e["tau_int_error"] for _, e in points],
                        marker="o", capsize=3, label=label)
        ax_cost.plot(x, [e.get("seconds_per_independent_sample", np.nan) for _, e in points], marker="o",
                     label=label)
    ax_tau.set(xlabel=parameter, ylabel=f"τ_int({observable}) [updates]", yscale="log")
    ax_cost.set(xlabel=parameter, ylabel=f"seconds per independent {observable}", yscale="log")
    ax_tau.legend(fontsize=8)
    return _save(fig, title, path)


def throughput_vs_volume(sampling: dict[str, list[tuple[int, float]]], training: dict[str, list[tuple[int, float]]],
                         title: str, path: Path) -> Path:
    """Site-updates/s of the samplers (left) and training steps/s (right) against the volume
    V = L², log-log; each dict maps a label to its (V, rate) points."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, series, ylabel in ((axes[0], sampling, "site updates / s"), (axes[1], training, "training steps / s")):
        for label, points in series.items():
            ax.plot(*zip(*sorted(points)), marker="o", lw=0.9, label=label)
        ax.set(xlabel="volume V = L²", ylabel=ylabel, xscale="log", yscale="log")
        if series:
            ax.legend(fontsize=7)
    return _save(fig, title, path)


def sector_fractions(exact: tuple[list, list], runs: dict[str, dict], observable: str, title: str,
                     path: Path) -> Path:
    """The exact sector probabilities (bars) and each run's observed fractions (markers: filled
    unweighted, open reweighted), log scale. ``runs`` maps a label to a ``mode_coverage`` metric."""
    labels, probabilities = (np.asarray(v, dtype=float) for v in exact)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.bar(labels, probabilities, width=0.8, color="0.85", label="exact")
    offsets = np.linspace(-0.25, 0.25, max(len(runs), 1))
    for offset, (label, coverage) in zip(offsets, runs.items()):
        line, = ax.plot(labels + offset, coverage["unweighted"]["fractions"], "o", label=f"{label} (unweighted)")
        if "reweighted" in coverage:
            ax.plot(labels + offset, coverage["reweighted"]["fractions"], "o", mfc="none", color=line.get_color(),
                    label=f"{label} (reweighted)")
    positive = probabilities[probabilities > 0]
    ax.set(xlabel=f"sector ({observable})", ylabel="probability", yscale="log",
           ylim=(max(positive.min(), 1e-6) / 3, 1.5))
    ax.legend(fontsize=7)
    return _save(fig, title, path)


def ess_curves(curves: dict[str, dict], title: str, path: Path) -> Path:
    """ESS per sample against the number of samples n (log–log), median line and 16–84 % band per run;
    ``curves`` maps a label to an ``ess_curve`` metric (`suite.stats.ess_versus_samples`)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for label, curve in curves.items():
        line, = ax.plot(curve["n"], curve["median"], marker="o", ms=3, label=label)
        ax.fill_between(curve["n"], curve["low"], curve["high"], color=line.get_color(), alpha=0.25)
    ax.set(xlabel="number of samples n", ylabel="ESS per sample", xscale="log", yscale="log")
    ax.legend(fontsize=7)
    return _save(fig, title, path)


def transport_bars(groups: dict[str, list[tuple[str, str, float, float]]], title: str, path: Path) -> Path:
    """Bars of a rate per run with error bars, grouped by entry, log scale, coloured by the run's arm
    (`suite.samplers.base.TRANSPORT_ARMS`); ``groups`` maps an entry to its (label, arm, value, error)."""
    from suite.samplers.base import TRANSPORT_ARMS

    colours = {arm: f"C{i}" for i, arm in enumerate(TRANSPORT_ARMS)}
    bars = sum(len(runs) for runs in groups.values())
    fig, ax = plt.subplots(figsize=(max(6.4, 0.45 * bars + 1.5 * len(groups)), 4.2))
    ticks, labels, x = [], [], 0.0
    for entry, runs in groups.items():
        start = x
        for label, arm, value, error in runs:
            low = min(error, 0.9 * value)  # on a log scale the bar's lower error stops above zero
            ax.bar(x, value, yerr=[[low], [error]], color=colours[arm], capsize=3, width=0.8)
            ticks.append(x)
            labels.append(label)
            x += 1
        ax.text((start + x - 1) / 2, 1.01, entry, ha="center", va="bottom", fontsize=8,
                transform=ax.get_xaxis_transform())
        x += 1  # a gap between entries
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="effective samples per second", yscale="log")
    ax.legend(handles=[Patch(color=colours[arm], label=text) for arm, text in TRANSPORT_ARMS.items()],
              fontsize=7, loc="best")
    return _save(fig, title, path)


def plain_log_ticks(ax) -> None:
    """Plain numbers at 1, 2, 3, 4, 6, 8 × 10^k on log axes spanning less than two decades
    (wider ones keep powers of ten)."""
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = axis.get_view_interval()
        if axis.get_scale() == "log" and 0 < lo and hi / lo < 100:
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 3, 4, 6, 8)))
            axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def fit_label(fit, names) -> str:
    """``formula: name = value(error), ..., χ²/dof`` of a `suite.report.fits.FitResult`."""
    shown = ", ".join(f"{n} = {format_value(fit.params[n], fit.errors[n])}" for n in names)
    quality = f"χ²/dof = {fit.chi2_dof:.2g}" if fit.dof > 0 else "no dof"
    return f"{fit.formula}: {shown}, {quality}"


def errorbar_with_fit(ax, x, y, yerr, label, fit=None, fit_names=(), marker="o", others=(), **style):
    """Points with error bars and, if given, the fitted curve across their range (``others``:
    further fits, dashed); ``style``: further errorbar options (a colour, open markers). Returns the colour used."""
    bars = ax.errorbar(x, y, yerr=yerr, marker=marker, ls="none", label=label, **style)
    grid = np.geomspace(min(x), max(x), 100)
    for curve, line in [(fit, "-")] * (fit is not None) + [(f, "--") for f in others]:
        ax.plot(grid, curve(grid), color=bars[0].get_color(), lw=1, ls=line,
                label=f"fit {fit_label(curve, fit_names)}")
    return bars[0].get_color()
