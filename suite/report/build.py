"""Assemble a report folder from one or more results folders."""

from __future__ import annotations

import os
from pathlib import Path

from suite.chain import Chain
from suite.errors import UsageError
from suite.harness.results import now, prepare_output_folder, read_rows
from suite.report.figures import history_and_autocorrelation
from suite.report.tables import format_value, observables_table, runs_table, to_markdown

FIGURE_OBSERVABLES = ("chi2", "abs_mag", "action_density")


def _load_rows(folders) -> list[dict]:
    rows = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise UsageError(f"results folder {str(folder)!r} does not exist")
        found = read_rows(folder)
        if not found:
            raise UsageError(f"results folder {str(folder)!r} has no rows (results.jsonl missing or empty)")
        rows += [{**row, "_folder": str(folder)} for row in found]
    return rows


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_report(results_folders, out) -> Path:
    """Write report.md, runs.csv, observables.csv and figures/ to ``out``; returns the report path."""
    rows = _load_rows(results_folders)
    out = prepare_output_folder(out)
    (out / "figures").mkdir(exist_ok=True)
    runs = runs_table(rows)
    observables = observables_table(rows)
    runs.to_csv(out / "runs.csv", index=False)
    observables.to_csv(out / "observables.csv", index=False)

    lines = [
        "# lftbench report",
        "",
        f"Generated {now()} from {len(rows)} run(s) in {', '.join(map(str, results_folders))}.",
        f"Suite version(s): {', '.join(sorted({r['suite_version'] for r in rows}))}; "
        f"catalogue version(s): {', '.join(sorted({str(r['catalogue_version']) for r in rows}))}; "
        f"git commit(s): {', '.join(sorted({str(r['provenance'].get('git_commit'))[:10] + (' (dirty)' if r['provenance'].get('git_dirty') else '') for r in rows}))}.",
        "",
        "Errors are statistical (Wolff's Γ-method, S = 1.5, chains as replica); "
        "τ_int = ½ + Σ_{t≥1} ρ(t) in trajectories; pull = (measured − reference)/√(σ² + σ_ref²).",
        "",
        "## Runs",
        "",
        to_markdown(runs.drop(columns=["run_id"])),
        "",
        "## Observables against reference values",
        "",
    ]
    for row in rows:
        table = observables[(observables.entry == row["entry"]) & (observables.seed == row["seed"])
                            & (observables.sampler == row["sampler"]["name"])]
        shown = table.assign(
            measured=[format_value(v, e) for v, e in zip(table.value, table.error)],
            tau_int=[format_value(v, e) for v, e in zip(table.tau_int, table.tau_int_error)],
            reference=[format_value(v, e) if v is not None and v == v else "" for v, e in
                       zip(table.reference, table.reference_error)],
            pull=[f"{p:+.2f}" if p is not None and p == p else "" for p in table.pull],
        )[["observable", "measured", "tau_int", "reference", "pull", "provenance"]]
        lines += [f"### {row['entry']} — {row['sampler']['name']}, seed {row['seed']}", "", to_markdown(shown), ""]
        chain_path = Path(row["_folder"]) / row["artifacts"]["chains"]
        if chain_path.exists():
            chain = Chain.load(chain_path)
            names = [n for n in FIGURE_OBSERVABLES if n in chain.observables]
            figure = out / "figures" / f"{row['run_id']}.png"
            history_and_autocorrelation(chain.observables, names, f"{row['entry']} ({row['sampler']['name']})",
                                        figure)
            lines += [f"![histories and autocorrelations](figures/{figure.name})", ""]
        else:
            lines += [f"(chains file {chain_path} missing: no figures)", ""]
    report = out / "report.md"
    _write_atomic(report, "\n".join(lines))
    return report
