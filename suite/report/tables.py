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


def budget_label(spec: dict) -> str:
    """A flow spec's training budget in words, e.g. ``1000 steps × batch 64`` or, pretrained,
    ``6000 steps at L = 8, used as is, batch 128``."""
    steps, batch, pretrain = spec.get("budget_steps"), spec.get("batch_size"), spec.get("pretrain")
    if pretrain:
        then = f" + {steps} steps" if steps else ", used as is"
        return f"{pretrain['budget_steps']} steps at L = {pretrain['L']}{then}, batch {batch}"
    return f"{steps or 'no'} steps × batch {batch}"


def sampler_label(spec: dict) -> str:
    """Legend label of a run: ``hmc``, or a flow's sampler, model, objective and training budget."""
    if spec["name"] == "hmc":
        return "hmc"
    return f"{spec['name']} {spec['model']} {spec['objective']}, {budget_label(spec)}"


def _hmc_record(r: dict) -> dict:
    info, metrics = r.get("sampler_info", {}), r.get("metrics", {})
    exp_dh = metrics.get("exp_minus_delta_h")
    return {
        "chains": info.get("chains"),
        "n_traj": info.get("n_traj"),
        "integrator": info.get("integrator"),
        "n_steps": info.get("n_steps"),
        "step_size": info.get("step_size"),
        "acceptance": metrics.get("acceptance"),
        "exp_minus_delta_h": format_value(exp_dh["value"], exp_dh["error"]) if exp_dh else None,
        "diverged": metrics.get("diverged_fraction"),
    }


def _flow_record(r: dict) -> dict:
    spec, training, metrics = r["sampler"], r.get("training") or {}, r.get("metrics", {})
    ess, log_q_error = metrics.get("ess"), r.get("sampler_info", {}).get("log_q_integration_error")
    return {
        "model": spec.get("model"),
        "objective": spec.get("objective"),
        "parameters": training.get("n_parameters"),
        "batch": spec.get("batch_size"),
        "pretrain_steps": (training.get("pretrain") or {}).get("steps"),
        "pretrain_L": (training.get("pretrain") or {}).get("L"),
        "train_steps": training.get("steps"),
        "train_seconds": training.get("seconds"),
        "train_cpu_seconds": training.get("cpu_seconds"),
        "stop": training.get("stop_reason"),
        "n_samples": ess.get("n_samples") if ess else None,
        "ess": format_value(ess["value"], ess["error"]) if ess else None,
        "pareto_k": ess.get("pareto_k") if ess else None,  # > 0.7: the ESS is not to be trusted
        "acceptance": metrics.get("acceptance"),
        "log_q_int_error": log_q_error["max"] if log_q_error else None,  # continuous flows: max |Δ log q|
    }


def runs_table(rows: list[dict], kind: str) -> pd.DataFrame:
    """One row per run of the given kind: ``hmc`` or ``flow`` (flow and flow-mh)."""
    records = []
    for r in rows:
        is_hmc = r["sampler"]["name"] == "hmc"
        if is_hmc != (kind == "hmc"):
            continue
        records.append({
            "entry": r["entry"],
            "sampler": r["sampler"]["name"],
            "seed": r["seed"],
            **(_hmc_record(r) if is_hmc else _flow_record(r)),
            "fraction_M>0": r.get("metrics", {}).get("fraction_positive_mag"),
            "configs_per_s": r["throughput"]["configs_per_second"],
            "site_updates_per_s": r["throughput"]["site_updates_per_second"],
            "device": r["device_name"],
            "dtype": r["dtype"],
            "run_id": r["run_id"],
        })
    return pd.DataFrame.from_records(records)


def observables_table(rows: list[dict]) -> pd.DataFrame:
    records = []
    for r in rows:
        refs = r.get("reference", {})
        names = list(refs) + [n for n in r["observables"] if n not in refs and not n.startswith(HIDDEN_PREFIXES)]
        for name in names:
            est, ref = r["observables"][name], refs.get(name)
            records.append({
                "run_id": r["run_id"],
                "entry": r["entry"],
                "sampler": r["sampler"]["name"],
                "model": r["sampler"].get("model"),
                "seed": r["seed"],
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
