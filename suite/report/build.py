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
from suite.report.figures import history_and_autocorrelation, markdown_image, training_curves
from suite.report.complexity import complexity_section
from suite.report.protocol import ess_curve_section, mode_section
from suite.report.transport import transport_section
from suite.report.scaling import scaling_section
from suite.report.tables import format_value, observables_table, runs_tables, to_markdown
from suite.report.throughput import KIND as THROUGHPUT, throughput_section
from suite.samplers import samplers
from suite.theories.registry import registered_theories, theory_info


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
    names = [n for n in theory_info(row.theory).figure_observables if n in chain.observables][:3]
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


def _unfinished_section(rows) -> list[str]:
    """Runs whose training diverged: no estimates, their training curves are kept."""
    records = [{"entry": r.entry, "sampler": r.plugin.label(r.sampler), "seed": r.seed, "status": r.status,
                "steps": (r.training or {}).get("steps"), "why": r.message} for r in rows if not r.ok]
    if not records:
        return []
    return ["## Runs that did not finish", "", to_markdown(pd.DataFrame.from_records(records)), ""]


def _dirty_tree_warning(rows) -> list[str]:
    """A loud paragraph naming the rows made from a working tree with uncommitted changes (their
    numbers cannot be reproduced from a commit), and rows whose git state was not recorded."""
    dirty = [r for r in rows if r.provenance.get("git_dirty")]
    unknown = [r for r in rows if r.provenance.get("git_dirty") is None]
    lines = []
    if dirty:
        records = [{"entry": r.entry, "sampler": r.plugin.describe(r.sampler), "seed": r.seed,
                    "commit": str(r.provenance.get("git_commit"))[:10],
                    "changed files": ", ".join(r.provenance.get("git_changed_files") or []) or "(not recorded)",
                    "diff sha256": str(r.provenance.get("git_diff_sha256") or "(not recorded)")[:12]}
                   for r in dirty]
        lines += [f"**Warning: {len(dirty)} of {len(rows)} run(s) were made from a working tree with uncommitted "
                  f"changes; their numbers cannot be reproduced from a commit.**", "",
                  to_markdown(pd.DataFrame.from_records(records)), ""]
    if unknown:
        lines += [f"**Warning: {len(unknown)} of {len(rows)} run(s) have no recorded git state** (run outside a "
                  f"git checkout).", ""]
    return lines


def _commands(rows, results_folders, out: Path) -> list[str]:
    """The commands that made the rows (their provenance, where recorded) and this report."""
    runs = sorted({r.provenance["command"] for r in rows if r.provenance.get("command")})
    made = [f"Runs made by: {'; '.join(f'`{c}`' for c in runs)}."] if runs else []
    report = f"lftbench report {' '.join(map(str, results_folders))} --out {out}"
    return [*made, f"This report: `{report}`.", ""]


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
        *_dirty_tree_warning(rows),
        *_commands(rows, results_folders, out),
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
    for plugin in samplers().values():  # the sections each sampler adds (correlated: the differences)
        own = [r for r in finished if r.plugin is plugin]
        lines += plugin.report_section(own, out) if own else []
    lines += _unfinished_section(rows)
    for info in registered_theories().values():  # the sections each theory adds (U(1): topological freezing)
        theory_rows = [r for r in finished if r.theory == info.name]
        for section in info.report_sections if theory_rows else ():
            lines += section(theory_rows, out)
    lines += transport_section(finished, out) + mode_section(finished, out) + ess_curve_section(finished, out)
    lines += complexity_section(finished, out)
    lines += scaling_section(finished, out, target_ess=target_ess, n_independent=n_independent)
    lines += throughput_section(throughput, out)
    lines += ["## Observables against reference values", ""]
    for row in finished:
        lines += _observables_section(row, observables) + _chain_figure(row, out)
    report = out / "report.md"
    _write_atomic(report, "\n".join(lines))
    return report
