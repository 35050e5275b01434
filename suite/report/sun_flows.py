"""The SU(N) flow-quality section (theories ``sun`` and ``sun-matrix`` register it).

`sun_flow_section` is given one theory's rows and tabulates every run with importance weights (flow,
flow-mh proposals, ais, ...), ordered by N, lattice and β: the exact (or reference) value of the
headline observable, the ESS per sample with its Pareto k̂ (above 0.7 the ESS is not to be trusted),
the flow-MH acceptance, the reverse KL(q‖p) = log Z − ELBO where the entry has an exact log Z
(ELBO = E_q[log w], `suite.metrics`), the largest |pull| over the observables with an exact or
computed reference (log Z left out: it has its own column), and the training cost (steps, CPU
seconds of the process, all threads).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report.tables import format_value, to_markdown


def _colours(r) -> int:
    return int(r.params["N"])


def flow_quality_record(r) -> dict:
    """One row of the table for the run ``r`` (module docstring)."""
    from suite.theories import theory_info

    headline = theory_info(r.theory).headline_observable
    ess, metrics, training = r.metrics["ess"], r.metrics, r.training or {}
    reference = {name: ref for name, ref in r.reference.items() if name != "log_z" and ref.get("pull") is not None}
    exact_log_z, elbo = r.reference.get("log_z"), metrics.get("elbo")
    kl = (format_value(exact_log_z["value"] - elbo["value"], elbo["error"]) if exact_log_z and elbo else None)
    worst = max(reference, key=lambda name: abs(reference[name]["pull"]), default=None)
    measured = r.observables.get(headline, {})
    return {
        "entry": r.entry, "N": _colours(r), "β": r.params["beta"], "model": r.sampler.get("model", r.sampler["name"]),
        "sampler": r.sampler["name"],
        f"{headline} (reference)": r.reference[headline]["value"] if headline in r.reference else None,
        headline: format_value(measured["value"], measured["error"]) if measured else None,
        "ESS": format_value(ess["value"], ess["error"]), "k̂": round(ess["pareto_k"], 2),
        "acceptance": metrics.get("acceptance"), "KL(q‖p)": kl,
        "largest pull": f"{abs(reference[worst]['pull']):.2f} ({worst}, of {len(reference)})" if worst else None,
        "train steps": training.get("steps"), "train CPU s": training.get("cpu_seconds"),
        "n_samples": ess["n_samples"],
    }


def sun_flow_section(rows, out: Path) -> list[str]:
    """The flow-quality table of one SU(N) theory's importance-sampled runs (`flow_quality_record`)."""
    weighted = [r for r in rows if "ess" in (r.metrics or {})]
    if not weighted:
        return []
    weighted.sort(key=lambda r: (_colours(r), len(r.lattice), tuple(r.lattice), r.params["beta"],
                                 r.sampler.get("model", ""), r.seed))
    table = pd.DataFrame.from_records([flow_quality_record(r) for r in weighted])
    theory = weighted[0].theory
    title = ("single SU(N) matrices, p ∝ exp((β/N) Re Tr U)" if theory == "sun-matrix"
             else "SU(N) gauge theory (Wilson action)")
    return [f"## Flow quality: {title}", "",
            "ESS per sample with the Pareto k̂ of the weights (k̂ ≥ 0.7: the ESS is not to be trusted); acceptance "
            "of the independence Metropolis chain (flow-mh); KL(q‖p) = log Z − ELBO against the exact log Z; "
            "the largest |pull| over the observables with a reference (log Z aside); training CPU seconds of the process.",
            "", to_markdown(table), ""]
