"""The U(1) report section: topological freezing against β (`suite.theories.u1` registers it).

`topology_section` is given the U(1) rows of a report; for every lattice with runs at two or more β
it draws τ_int(Q) against β per sampler and tabulates `topology_record` of each run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report.figures import autocorrelation_scan, markdown_image
from suite.report.tables import format_value, n_independent, sampler_label, to_markdown


def topology_record(r) -> dict:
    """One row of the freezing table: τ_int of Q, Q² and the plaquette, N_eff(Q) = N/(2τ_int) (below
    ~50 the τ_int and errors of that row are not to be trusted), cost per independent Q² sample
    (sampling only) and training cost, the measured plaquette and χ_t beside the exact ones."""
    obs, training = r.observables, r.training or {}
    ess = r.metrics.get("ess")
    return {
        "β": r.params["beta"], "sampler": sampler_label(r.sampler), "acceptance": r.metrics.get("acceptance"),
        "ESS": format_value(ess["value"], ess["error"]) if ess else None,
        **{f"tau_int({name})": format_value(obs[key]["tau_int"], obs[key]["tau_int_error"])
           for key, name in (("topological_charge", "Q"), ("q2", "Q²"), ("plaquette", "plaquette"))},
        "N_eff(Q)": round(n_independent(obs["topological_charge"])),
        "s per indep. Q²": obs["q2"].get("seconds_per_independent_sample"),
        "train CPU s": training.get("cpu_seconds"),
        **{f"{k} measured": format_value(obs[k]["value"], obs[k]["error"]) for k in ("plaquette", "chi_t")},
        **{f"{k} exact": r.reference.get(k, {}).get("value") for k in ("plaquette", "chi_t")},
        **{f"{k} pull": r.reference.get(k, {}).get("pull") for k in ("plaquette", "chi_t")},
    }


def topology_section(rows, out: Path) -> list[str]:
    """U(1) runs at several β on one lattice: τ_int(Q) and cost against β per sampler, and the
    measured plaquette and χ_t beside the exact values."""
    lines = []
    for lattice in dict.fromkeys(tuple(r.lattice) for r in rows):
        at = [r for r in rows if tuple(r.lattice) == lattice]
        if len({r.params["beta"] for r in at}) < 2:
            continue
        series = {}
        for r in at:
            series.setdefault(sampler_label(r.sampler), []).append((r.params["beta"],
                                                                   r.observables["topological_charge"]))
        name = "x".join(map(str, lattice))
        figure = out / "figures" / f"topology-u1-{name}.png"
        autocorrelation_scan(series, "Q", "β", f"U(1) {name}: topological freezing", figure)
        table = pd.DataFrame.from_records([topology_record(r) for r in
                                           sorted(at, key=lambda r: (r.params["beta"], sampler_label(r.sampler)))])
        lines += [f"## Topological freezing, U(1) {name}", "", *markdown_image("τ_int(Q) against β", figure),
                  "τ_int in trajectories (HMC) or Metropolis steps (flow-mh). N_eff(Q) = N/(2τ_int(Q)): where it "
                  "is below about 50 the chain has seen too few independent charges for its τ_int, errors and "
                  "pulls to be trusted (a flow chain stuck by rejections, or HMC frozen). Training CPU seconds "
                  "include any pretraining.", "", to_markdown(table), ""]
    return lines
