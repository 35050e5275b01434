"""The Schwinger-model report section: samplers along the κ line (`suite.theories.schwinger` registers it).

`schwinger_section` is given the schwinger rows of a report (both forms: pseudofermion HMC on the
``-pf`` entries, flows on either) and writes one table per lattice size of `schwinger_record` of
every run, ordered by κ. An independent sample is one independent in both Q and the chiral
condensate: N_eff = N / (2 max(τ_int(Q), τ_int(ψ̄ψ))). Its cost is given twice, in wall seconds:
sampling only, and with the training amortised over the run's own N_eff,
(training + sampling seconds) / N_eff (HMC has no training; its thermalisation is left out of both).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report.tables import format_value, sampler_label, to_markdown

TIMED = ("topological_charge", "chiral_condensate")  # the observables N_eff is taken over


def independent_samples(r) -> float:
    """N_eff = N / (2 max τ_int) over Q and the chiral condensate (module docstring)."""
    estimates = [r.observables[name] for name in TIMED]
    return estimates[0]["n_samples"] / (2 * max(e["tau_int"] for e in estimates))


def schwinger_record(r) -> dict:
    """One row of the table: couplings, sampler, acceptance, τ_int of Q and the condensate, CG iterations
    per HMC trajectory (the pseudofermion form's `solver_work`), training seconds and the two costs per
    independent sample (module docstring)."""
    obs, training = r.observables, r.training or {}
    n_eff = independent_samples(r)
    sampling, train = r.timings["sampling"], training.get("seconds", 0.0)
    return {
        "β": r.params["beta"], "κ": r.params["kappa"], "entry": r.entry, "sampler": sampler_label(r.sampler),
        "acceptance": r.metrics.get("acceptance"),
        **{f"tau_int({label})": format_value(obs[name]["tau_int"], obs[name]["tau_int_error"])
           for name, label in zip(TIMED, ("Q", "ψ̄ψ"))},
        "CG iter / traj": r.sampler_info.get("cg_iterations_per_trajectory"),
        "train s": training.get("seconds"),
        "N_eff": round(n_eff),
        "s per indep. (sampling)": sampling / n_eff,
        "s per indep. (amortised)": (sampling + train) / n_eff,
    }


def schwinger_section(rows, out: Path) -> list[str]:
    """One table per lattice size of the Schwinger-model runs (`schwinger_record`), by κ and sampler."""
    lines = []
    for lattice in sorted(dict.fromkeys(tuple(r.lattice) for r in rows)):
        at = sorted((r for r in rows if tuple(r.lattice) == lattice),
                    key=lambda r: (r.params["beta"], r.params["kappa"], sampler_label(r.sampler)))
        table = pd.DataFrame.from_records([schwinger_record(r) for r in at])
        name = "x".join(map(str, lattice))
        lines += [f"## Schwinger model {name}: samplers along κ", "",
                  "τ_int in trajectories (HMC) or Metropolis steps (flow-mh, flow-pmmh). N_eff = N/(2 max(τ_int(Q), "
                  "τ_int(ψ̄ψ))). CG iterations per trajectory: pseudofermion HMC (flow-pmmh solves once per "
                  "pseudofermion draw of each proposal instead). Costs in wall seconds per independent sample: "
                  "sampling only, and with the training amortised over the run's own N_eff.", "",
                  to_markdown(table), ""]
    return lines
