"""Tables of a report: one row per run, and one per (run, observable) with references and pulls."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

HIDDEN_PREFIXES = ("corr_",)  # per-t correlator entries are inputs of m_pole, not table rows


def format_value(value: float, error: float) -> str:
    """'1.2345(67)': the value rounded to the error's two significant digits, error in brackets."""
    if value is None or not math.isfinite(value):
        return "nan"
    if error is None or not math.isfinite(error) or error <= 0:
        return f"{value:.6g}"
    digits = max(0, 1 - math.floor(math.log10(error)))
    scaled = round(error * 10**digits)
    return f"{value:.{digits}f}({scaled})"


def n_independent(estimate: dict) -> float:
    """N/(2τ_int) of a row's observable estimate: the effectively independent measurements behind it
    (`suite.stats.GammaResult.n_eff` of the recorded estimate)."""
    return estimate["n_samples"] / (2 * estimate["tau_int"])


def sampler_label(spec: dict) -> str:
    """Legend label of a run: ``hmc``, or a flow's sampler, model, objective and training budget
    (the sampler plugin's `label`)."""
    from suite.samplers import plugin_of

    return plugin_of(spec).label(spec)


def mode_columns(coverage: dict | None) -> dict:
    """The p-values of the mode-coverage χ² tests (`suite.modes`), unweighted and reweighted."""
    if not coverage:
        return {}
    return {f"modes_p_{kind}": coverage[kind]["p_value"] for kind in ("unweighted", "reweighted") if kind in coverage}


def runs_tables(rows) -> dict[str, pd.DataFrame]:
    """One table per report section (the sampler plugins' ``runs_table``, in registry order), one
    row per finished run: entry, sampler, seed, the plugin's columns, throughput, device."""
    from suite.samplers import samplers

    order: dict[str, int] = {}
    for plugin in samplers().values():
        order.setdefault(plugin.runs_table, len(order))
    records: dict[str, list] = {}
    for r in rows:
        if not r.ok:
            continue
        plugin = r.plugin
        records.setdefault(plugin.runs_table, []).append({
            "entry": r.entry,
            "sampler": r.sampler["name"],
            "seed": r.seed,
            **plugin.columns(r),
            "fraction_M>0": r.metrics.get("fraction_positive_mag"),
            **mode_columns(r.metrics.get("mode_coverage")),
            "configs_per_s": r.throughput["configs_per_second"],
            "site_updates_per_s": r.throughput["site_updates_per_second"],
            "device": r.device_name,
            "dtype": r.dtype,
            "run_id": r.run_id,
        })
    titles = sorted(records, key=lambda t: order.get(t, len(order)))
    return {title: pd.DataFrame.from_records(records[title]) for title in titles}


def observables_table(rows) -> pd.DataFrame:
    records = []
    for r in rows:
        refs = r.reference
        names = list(refs) + [n for n in r.observables if n not in refs and not n.startswith(HIDDEN_PREFIXES)]
        for name in names:
            est, ref = r.observables[name], refs.get(name)
            records.append({
                "run_id": r.run_id,
                "entry": r.entry,
                "sampler": r.sampler["name"],
                "model": r.sampler.get("model"),
                "seed": r.seed,
                "observable": name,
                "value": est["value"],
                "error": est["error"],
                "tau_int": est["tau_int"],
                "tau_int_error": est["tau_int_error"],
                "seconds_per_independent_sample": est.get("seconds_per_independent_sample"),
                "reference": ref["value"] if ref else None,
                "reference_error": ref["error"] if ref else None,
                "provenance": ref["provenance"] if ref else None,
                "pull": ref["pull"] if ref else None,
            })
    return pd.DataFrame.from_records(records)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no dependency on tabulate)."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def to_latex(df: pd.DataFrame) -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule); text escaped, numbers as in Markdown."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)

    lines = [r"\begin{tabular}{" + "l" * len(df.columns) + "}", r"\toprule",
             " & ".join(cell(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", ""])


def write_table(df: pd.DataFrame, stem) -> list[str]:
    """Write ``stem``.md, .csv and .tex; returns a Markdown line linking them (relative to the report)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(to_markdown(df) + "\n")
    df.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".tex").write_text(to_latex(df))
    rel = f"{stem.parent.name}/{stem.name}"
    return [f"Table files: [{stem.name}.csv]({rel}.csv), [{stem.name}.tex]({rel}.tex) (booktabs)."]
