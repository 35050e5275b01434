"""Figures of a run: Monte Carlo histories and normalised autocorrelation functions ρ(t)
with the Γ-method's chosen window marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from suite import stats  # noqa: E402

HISTORY_REPLICA = 4  # chains drawn in a history plot


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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
