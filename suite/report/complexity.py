"""Model quality against parameter complexity: the ESS per sample of trained flows against their number
of trained parameters, per entry and training budget, one series per model.

A group is the flow rows of one entry trained for the same budget (steps, batch, wall seconds and any
pretraining equal), drawn when it holds three or more distinct parameter counts. ESS errors are the
rows' bootstrap errors; points whose Pareto k̂ is 0.7 or more are drawn open, as their ESS (and every
reweighted number of that run) is not reliable (Vehtari et al., arXiv:1507.02646).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from suite.report.figures import FIT_STYLE, markdown_image, save_figure
from suite.report.tables import format_value, to_markdown, write_table

K_HAT_RELIABLE = 0.7
MIN_SIZES = 3  # distinct parameter counts a group needs for a figure


def _budget(r) -> tuple:
    spec = r.sampler
    return (spec.get("budget_steps"), spec.get("batch_size"), spec.get("budget_seconds"),
            tuple(sorted((spec.get("pretrain") or {}).items())))


def _budget_label(budget) -> str:
    steps, batch, seconds, pretrain = budget
    parts = [f"{steps} steps" if steps else None, f"at most {seconds:g} s" if seconds else None,
             f"batch {batch}", ", ".join(f"pretrain {k} = {v}" for k, v in pretrain) or None]
    return ", ".join(p for p in parts if p)


def complexity_record(r) -> dict:
    """One row of the table: model, hyperparameters, parameters, ESS, k̂ and the training cost."""
    ess = r.metrics["ess"]
    return {"model": r.sampler.get("model"), "hparams": r.sampler.get("hparams") or {},
            "parameters": r.training["n_parameters"], "ESS": format_value(ess["value"], ess["error"]),
            "pareto_k": ess.get("pareto_k"), "train CPU s": r.training.get("cpu_seconds"),
            "sampler": r.sampler["name"], "seed": r.seed}


def _groups(rows) -> dict:
    groups = {}
    for r in rows:
        if (r.training or {}).get("n_parameters") and "ess" in r.metrics and r.sampler.get("model"):
            groups.setdefault((r.entry, _budget(r)), []).append(r)
    return {key: rs for key, rs in groups.items() if len({r.training["n_parameters"] for r in rs}) >= MIN_SIZES}


def complexity_figure(rows, title: str, path: Path) -> Path:
    """ESS per sample against parameters (log x), one series per model; k̂ ≥ 0.7 drawn open."""
    with plt.rc_context(FIT_STYLE):
        fig, ax = plt.subplots()
        for model in dict.fromkeys(r.sampler["model"] for r in rows):
            mine = sorted((r for r in rows if r.sampler["model"] == model), key=lambda r: r.training["n_parameters"])
            x = [r.training["n_parameters"] for r in mine]
            y = [r.metrics["ess"]["value"] for r in mine]
            err = [r.metrics["ess"]["error"] for r in mine]
            line = ax.errorbar(x, y, yerr=err, marker="o", ls="-", lw=0.8, label=model)
            shaky = [i for i, r in enumerate(mine) if (r.metrics["ess"].get("pareto_k") or 0) >= K_HAT_RELIABLE]
            if shaky:
                ax.plot([x[i] for i in shaky], [y[i] for i in shaky], "o", mfc="white",
                        mec=line[0].get_color(), zorder=3)
        ax.set(xscale="log", xlabel="trained parameters", ylabel="ESS per sample", ylim=(0, 1.02), title=title)
        ax.plot([], [], "o", mfc="white", mec="grey", label=f"Pareto k̂ ≥ {K_HAT_RELIABLE}")
        ax.legend()
        return save_figure(fig, path)


def complexity_section(rows, out: Path) -> list[str]:
    """The figure and table of every group (module docstring); nothing when no group qualifies."""
    lines = []
    for (entry, budget), group in _groups(rows).items():
        label = _budget_label(budget)
        stem = f"complexity-{entry.replace('/', '_')}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"
        figure = complexity_figure(group, f"{entry}: {label}", out / "figures" / stem)
        table = pd.DataFrame.from_records([complexity_record(r) for r in
                                           sorted(group, key=lambda r: (r.sampler["model"], r.training["n_parameters"]))])
        lines += [f"## Quality against parameters: {entry}", "", f"Every run trained for the same budget: {label}.",
                  "", *markdown_image(f"ESS against parameters, {entry}", figure),
                  "Open markers: Pareto k̂ ≥ 0.7, an unreliable ESS.", "", to_markdown(table), "",
                  *write_table(table, out / "tables" / stem), ""]
    return lines
