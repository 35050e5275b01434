"""The report's sections on the protocol metrics of importance samplers and mode coverage:

* `mode_section`: per entry, the exact sector probabilities against each run's observed fractions
  (figure) and the χ² tests of `suite.modes` (table);
* `ess_curve_section`: per entry, each weighted run's ESS per sample against the number of samples
  with its bootstrap band (`suite.stats.ess_versus_samples`), where the small-sample bias shows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report.figures import ess_curves, markdown_image, sector_fractions
from suite.report.tables import to_markdown


def _record(row, coverage: dict) -> dict:
    record = {"sampler": row.plugin.label(row.sampler), "seed": row.seed}
    for kind in ("unweighted", "reweighted"):
        test = coverage.get(kind)
        record.update({f"{kind} N_eff": round(test["n_effective"]) if test else None,
                       f"{kind} χ²/dof": f"{test['chi2']:.1f}/{test['dof']}" if test and test["dof"] else None,
                       f"{kind} p": test["p_value"] if test else None})
    return record


def mode_section(rows, out: Path) -> list[str]:
    """Markdown lines (and figures) for the entries whose rows carry ``mode_coverage``."""
    lines = []
    for entry in dict.fromkeys(r.entry for r in rows if "mode_coverage" in r.metrics):
        at = [r for r in rows if r.entry == entry and "mode_coverage" in r.metrics]
        first = at[0].metrics["mode_coverage"]
        if not lines:
            lines += ["## Mode coverage", "",
                      "Observed sector fractions against the exact probabilities, Pearson χ² with the tails "
                      "merged until each bin expects ≥ 5 (N_eff: N for independent samples, N/(2τ_int) of "
                      "the labelling observable for Markov chains, the Kish ESS when reweighted). A small "
                      "unweighted p with a large reweighted one: modes in the wrong proportions, corrected by "
                      "the weights; both small: a mode the sampler does not reach.", ""]
        figure = out / "figures" / f"modes-{entry.replace('/', '_')}.png"
        runs = {f"{r.plugin.label(r.sampler)}, seed {r.seed}": r.metrics["mode_coverage"] for r in at}
        sector_fractions((first["labels"], first["exact"]), runs, first["observable"], f"{entry}: sectors", figure)
        table = pd.DataFrame.from_records([_record(r, r.metrics["mode_coverage"]) for r in at])
        lines += [f"### {entry} ({first['observable']}; {first['source']})", "",
                  *markdown_image(f"sector fractions for {entry}", figure), to_markdown(table), ""]
    return lines


def ess_curve_section(rows, out: Path) -> list[str]:
    """Markdown lines (and figures) for the entries whose rows carry ``ess_curve``."""
    lines = []
    for entry in dict.fromkeys(r.entry for r in rows if "ess_curve" in r.metrics):
        if not lines:
            lines += ["## ESS against the number of samples", "",
                      "ESS per sample of n of a run's weights (median and 16–84 % band of bootstrap resamples of "
                      "size n): where it still falls at the run's N, its ESS is biased upwards — the large "
                      "weights have not all been drawn.", ""]
        curves = {f"{r.plugin.label(r.sampler)}, seed {r.seed}": r.metrics["ess_curve"]
                  for r in rows if r.entry == entry and "ess_curve" in r.metrics}
        figure = out / "figures" / f"ess-curve-{entry.replace('/', '_')}.png"
        ess_curves(curves, f"{entry}: ESS against sample size", figure)
        lines += markdown_image(f"ESS against the number of samples for {entry}", figure)
    return lines
