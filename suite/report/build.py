"""Assemble a report folder from one or more results folders."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from suite import stats
from suite.chain import Chain
from suite.errors import UsageError
from suite.harness.results import now, prepare_output_folder
from suite.harness.rows import read_records, read_rows
from suite.report.figures import (autocorrelation_scan, history_and_autocorrelation, markdown_image,
                                  training_curves)
from suite.report.scaling import scaling_section
from suite.report.tables import format_value, observables_table, runs_tables, sampler_label, to_markdown
from suite.report.throughput import KIND as THROUGHPUT, throughput_section

FIGURE_OBSERVABLES = ("chi2", "abs_mag", "topological_charge", "plaquette", "action_density")  # those present


def load_rows(folders) -> list:
    """Result rows of all results folders pooled (`suite.harness.rows.ResultRow`, each knowing its
    folder); a UsageError for a missing folder or one without rows."""
    rows = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise UsageError(f"results folder {str(folder)!r} does not exist")
        found = read_rows(folder)
        if not found and not read_records(folder, THROUGHPUT):
            raise UsageError(f"results folder {str(folder)!r} has no rows (results.jsonl missing or empty)")
        rows += [_with_pareto_k(row) for row in found]
    return rows


def _with_pareto_k(row):
    """A flow row from before the Pareto k̂ was recorded gets it from its saved log-weights."""
    ess = row.metrics.get("ess")
    chains = row.artifact("chains")
    if ess is None or "pareto_k" in ess or chains is None or not chains.is_file():
        return row
    try:
        log_w = Chain.load(chains).log_weights
    except ValueError:
        return row
    if log_w is not None:
        row.metrics = {**row.metrics, "ess": {**ess, "pareto_k": stats.pareto_k(log_w.ravel())}}
    return row


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _legend(row) -> str:
    spec, training = row.sampler, row.training or {}
    return (f"{spec['name']} {spec.get('model')} {spec.get('objective')}, "
            f"{training.get('steps')} steps / {training.get('seconds', 0):.0f} s, seed {row.seed}")


def _observables_section(row, observables) -> list[str]:
    table = observables[observables.run_id == row.run_id]
    shown = table.assign(
        measured=[format_value(v, e) for v, e in zip(table.value, table.error)],
        tau_int=[format_value(v, e) for v, e in zip(table.tau_int, table.tau_int_error)],
        reference=[format_value(v, e) if v is not None and v == v else "" for v, e in
                   zip(table.reference, table.reference_error)],
        pull=[f"{p:+.2f}" if p is not None and p == p else "" for p in table.pull],
    )[["observable", "measured", "tau_int", "reference", "pull", "provenance"]]
    return [f"### {row.entry} — {row.plugin.describe(row.sampler)}, seed {row.seed}", "", to_markdown(shown), ""]


def _chain_figure(row, out: Path) -> list[str]:
    """Histories and autocorrelations, for Markov chains only (independent samples have none)."""
    chain_path = row.artifact("chains")
    if chain_path is None or not chain_path.exists():
        return [f"(chains file {chain_path} missing: no figures)", ""]
    try:
        chain = Chain.load(chain_path)
    except ValueError as err:
        return [f"({err}: no figures)", ""]
    if chain.accepted is None:
        return []
    names = [n for n in FIGURE_OBSERVABLES if n in chain.observables][:3]
    if not names:
        return []
    figure = out / "figures" / f"{row.run_id}.png"
    history_and_autocorrelation(chain.observables, names, f"{row.entry} ({row.sampler['name']})", figure)
    return [f"![histories and autocorrelations](figures/{figure.name})", ""]


def _training_section(rows, out: Path) -> list[str]:
    """One figure of training curves per entry, every flow run on it overlaid (with the pretraining of pretrained ones)."""
    lines = []
    for entry in dict.fromkeys(r.entry for r in rows):
        curves = {}
        for row in rows:
            if row.entry != entry:
                continue
            path = row.artifact("training")
            if path is not None and path.exists():
                curves[_legend(row)] = pd.read_csv(path)
            pretraining = row.artifact("pretrain_training")
            if pretraining is not None and pretraining.is_file():
                spec = row.sampler
                curves[f"{spec['model']}: pretraining at L = {spec['pretrain']['L']}, seed {row.seed}"] = \
                    pd.read_csv(pretraining)
        if curves:
            figure = out / "figures" / f"training-{entry.replace('/', '_')}.png"
            training_curves(curves, f"{entry}: training", figure)
            lines += markdown_image(f"training curves for {entry}", figure)
    return lines


def _topology_record(r) -> dict:
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
        "N_eff(Q)": round(obs["topological_charge"]["n_samples"] / (2 * obs["topological_charge"]["tau_int"])),
        "s per indep. Q²": obs["q2"].get("seconds_per_independent_sample"),
        "train CPU s": training.get("cpu_seconds"),
        **{f"{k} measured": format_value(obs[k]["value"], obs[k]["error"]) for k in ("plaquette", "chi_t")},
        **{f"{k} exact": r.reference.get(k, {}).get("value") for k in ("plaquette", "chi_t")},
        **{f"{k} pull": r.reference.get(k, {}).get("pull") for k in ("plaquette", "chi_t")},
    }


def _topology_section(rows, out: Path) -> list[str]:
    """U(1) runs at several β on one lattice: τ_int(Q) and cost against β per sampler, and the
    measured plaquette and χ_t beside the exact values."""
    lines = []
    u1 = [r for r in rows if r.theory == "u1"]
    for lattice in dict.fromkeys(tuple(r.lattice) for r in u1):
        at = [r for r in u1 if tuple(r.lattice) == lattice]
        if len({r.params["beta"] for r in at}) < 2:
            continue
        series = {}
        for r in at:
            series.setdefault(sampler_label(r.sampler), []).append((r.params["beta"], r.observables["topological_charge"]))
        name = "x".join(map(str, lattice))
        figure = out / "figures" / f"topology-u1-{name}.png"
        autocorrelation_scan(series, "Q", "β", f"U(1) {name}: topological freezing", figure)
        table = pd.DataFrame.from_records([_topology_record(r) for r in
                                           sorted(at, key=lambda r: (r.params["beta"], sampler_label(r.sampler)))])
        lines += [f"## Topological freezing, U(1) {name}", "", *markdown_image("τ_int(Q) against β", figure),
                  "τ_int in trajectories (HMC) or Metropolis steps (flow-mh). N_eff(Q) = N/(2τ_int(Q)): where it "
                  "is below about 50 the chain has seen too few independent charges for its τ_int, errors and "
                  "pulls to be trusted (a flow chain stuck by rejections, or HMC frozen). Training CPU seconds "
                  "include any pretraining.", "", to_markdown(table), ""]
    return lines


def _unfinished_section(rows) -> list[str]:
    """Runs whose training diverged: no estimates, their training curves are kept."""
    records = [{"entry": r.entry, "sampler": r.plugin.label(r.sampler), "seed": r.seed, "status": r.status,
                "steps": (r.training or {}).get("steps"), "why": r.message} for r in rows if not r.ok]
    if not records:
        return []
    return ["## Runs that did not finish", "", to_markdown(pd.DataFrame.from_records(records)), ""]


def build_report(results_folders, out, *, target_ess: float = 0.1, n_independent: float = 1e4) -> Path:
    """Write report.md, runs.csv, observables.csv, figures/ and tables/ to ``out``; returns the report path.

    ``target_ess`` and ``n_independent``: the scaling section's training-cost target and the number
    of independent samples the training is amortised over.
    """
    rows = load_rows(results_folders)
    throughput = [record for folder in results_folders for record in read_records(folder, THROUGHPUT)]
    finished = [r for r in rows if r.ok]
    out = prepare_output_folder(out)
    (out / "figures").mkdir(exist_ok=True)
    runs = runs_tables(rows)
    observables = observables_table(finished)
    (pd.concat(runs.values()) if runs else pd.DataFrame()).to_csv(out / "runs.csv", index=False)
    observables.to_csv(out / "observables.csv", index=False)
    commits = sorted({str(r.provenance.get("git_commit"))[:10] + (" (dirty)" if r.provenance.get("git_dirty")
                                                                    else "") for r in rows})
    lines = [
        "# lftbench report",
        "",
        f"Generated {now()} from {len(rows)} run(s) in {', '.join(map(str, results_folders))}.",
        f"Suite version(s): {', '.join(sorted({r.suite_version for r in rows}))}; "
        f"catalogue version(s): {', '.join(sorted({str(r.catalogue_version) for r in rows}))}; "
        f"git commit(s): {', '.join(commits)}.",
        "",
        "Errors are statistical: Wolff's Γ-method (S = 1.5, chains as replica) for Markov chains, "
        "τ_int = ½ + Σ_{t≥1} ρ(t) in trajectories (flow-mh: proposals); reweighted means with delta-method "
        "errors for independent flow samples. ESS per sample = (Σw)²/(N Σw²) with a bootstrap error. "
        "pull = (measured − reference)/√(σ² + σ_ref²).",
        "",
    ]
    for title, table in runs.items():
        lines += [f"## {title}", "", to_markdown(table.drop(columns=["run_id"])), ""]
        if any(r.training for r in finished if r.plugin.runs_table == title):
            lines += _training_section([r for r in finished if r.plugin.runs_table == title], out)
    lines += _unfinished_section(rows)
    lines += _topology_section(finished, out)
    lines += scaling_section(finished, out, target_ess=target_ess, n_independent=n_independent)
    lines += throughput_section(throughput, out)
    lines += ["## Observables against reference values", ""]
    for row in finished:
        lines += _observables_section(row, observables) + _chain_figure(row, out)
    report = out / "report.md"
    _write_atomic(report, "\n".join(lines))
    return report
