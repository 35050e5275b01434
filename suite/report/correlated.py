"""The report section of the ``correlated`` sampler: differences between two couplings per run.

For every run, a table of ⟨O⟩₂ − ⟨O⟩₁ per observable — the correlated estimate with its Γ-method
error and τ_int, the exact difference and pull where both couplings have references, the baseline
(two independent HMC ensembles) with its error as measured and at the correlated estimate's cost,
the pull between the two estimates, the variance reductions at equal CPU seconds and at equal
evaluations (`suite.correlated`) — then log(Z₂/Z₁) and the cost of every phase.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report.tables import HIDDEN_PREFIXES, format_value, to_markdown, write_table
from suite.samplers.correlated import couplings_label


def _signed(value) -> str:
    return "" if value is None or value != value else f"{value:+.2f}"


def difference_records(row) -> list[dict]:
    """One record per observable of a correlated run (the table of `correlated_section`)."""
    records = []
    for name, record in row.metrics["correlated"]["observables"].items():
        if name.startswith(HIDDEN_PREFIXES):
            continue
        if "undefined" in record:
            records.append({"observable": name, "Δ correlated": "undefined"})
            continue
        diff, base, exact = record["difference"], record.get("baseline"), record.get("exact")
        reduction = record.get("variance_reduction", {})
        records.append({
            "observable": name,
            "Δ correlated": format_value(diff["value"], diff["error"]),
            "τ_int": format_value(diff["tau_int"], diff["tau_int_error"]),
            "Δ exact": format_value(exact["value"], exact["error"]) if exact else "",
            "pull": _signed(record.get("pull")),
            "Δ baseline": format_value(base["value"], base["error"]) if base else "",
            "baseline error at equal cost": f"{base['error_at_equal_cost']:.2g}" if base else "",
            "baseline pull": _signed(record.get("baseline_pull")),
            "pull vs baseline": _signed(record.get("pull_vs_baseline")),
            "VR (CPU s)": reduction.get("cpu_seconds"),
            "VR (evaluations)": reduction.get("evaluations"),
        })
    return records


def cost_records(row) -> list[dict]:
    """Seconds and evaluations of every phase of a correlated run and of its baseline."""
    found = row.metrics["correlated"]
    records = [{"phase": name, **{unit: phase.get(unit) for unit in ("seconds", "cpu_seconds", "evaluations")}}
               for name, phase in found["cost"]["phases"].items()]
    for label, total in (("correlated total", found["cost"]), ("baseline total", found["baseline_cost"])):
        records.append({"phase": label, **{unit: total[unit] for unit in ("seconds", "cpu_seconds", "evaluations")}})
    return records


def correlated_section(rows, out: Path) -> list[str]:
    lines = ["## Correlated ensembles: ⟨O⟩₂ − ⟨O⟩₁", "",
             "Δ correlated = ⟨w·O∘f⟩₁/⟨w⟩₁ − ⟨O⟩₁ on one HMC chain at the entry's couplings α₁, f trained to "
             "carry it to α₂, error by the Γ-method on the derived quantity (τ_int in trajectories); Δ baseline = "
             "the difference of two independent HMC ensembles at α₁ and α₂, errors in quadrature, and its error "
             "scaled to the correlated estimate's CPU seconds (variance ∝ 1/cost); VR = (baseline error / "
             "correlated error)² at equal cost, in CPU seconds and in evaluations (action and force evaluations "
             "plus flow passes). pull = (Δ − Δ exact)/√(σ² + σ_exact²); pull vs baseline compares the two "
             "independent estimates.", ""]
    for row in rows:
        found = row.metrics["correlated"]
        stem = out / "tables" / f"correlated-{row.run_id}"
        table = pd.DataFrame.from_records(difference_records(row))
        log_z = found["log_z_ratio"]
        exact = log_z.get("exact")
        info, steps = row.sampler_info, (row.training or {}).get("steps")
        where = (f"the catalogue entry {info['target_entry']}" if info.get("target_entry") else
                 "no catalogue entry; its references are the exact solver's, where the entry has one")
        trained = (f"trained for {steps} steps on {info['train_configs']} configurations of an independent run"
                   if steps else "untrained (plain reweighting where it starts from the identity)")
        lines += [f"### {row.entry} — {row.plugin.describe(row.sampler)}, seed {row.seed}", "",
                  f"α₁: {couplings_label(row.params)}; α₂: {couplings_label(info['target'])} ({where}). f: "
                  f"{row.sampler['model']} {row.sampler['hparams']}, from the {row.sampler['init']}, {trained}. "
                  f"α₁ ensemble: {info['chains']} chains × {info['n_traj']} trajectories; baseline: "
                  f"{info['chains']} chains × {info['baseline_traj']} trajectories at each coupling. Kish ESS of w "
                  f"per configuration {found['weights_ess']:.3f}.", "",
                  f"log(Z₂/Z₁) = {format_value(log_z['value'], log_z['error'])} (τ_int "
                  f"{format_value(log_z['tau_int'], log_z['tau_int_error'])})"
                  + (f", exact {exact['value']:.6g}, pull {_signed(log_z['pull'])}" if exact else "") + ".", "",
                  to_markdown(table), "", *write_table(table, stem), "",
                  to_markdown(pd.DataFrame.from_records(cost_records(row))), ""]
    return lines
