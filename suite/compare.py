"""The leaderboard of ``lftbench compare``: per catalogue entry, every sampler (grouped by model,
objective or sampler) against HMC and the reference flows, from result rows.

Per contender and entry (several seeds pooled: mean, error from the per-run errors and the
seed-to-seed spread):

* ``ess``: ESS per sample at the contender's budget — for ``flow`` the reweighting ESS
  (Σw)²/(N Σw²); for Markov chains (``hmc``, ``flow-mh``) N_eff/N = 1/(2 τ_int) of the
  leaderboard observable (by default the theory's headline observable, `TheoryInfo.headline_observable`).
* ``steps_to_target`` / ``seconds_to_target``: training steps and seconds until the running
  mean of the batch ESS first reaches the target (flows; see `suite.metrics.time_to_target`).
* ``cost``: seconds per effectively independent sample of the observable while sampling;
  ``cost_amortised``: the same with the training time spread over N independent samples.
* ``vs_hmc``: cost_amortised / HMC's cost on the same entry (< 1: cheaper than HMC), and
  ``break_even_n``: the N beyond which the flow, training included, is cheaper;
  ``vs_best_reference_flow``: cost_amortised / that of the cheapest reference flow on the entry.

The protocol metrics of the sampling literature, where the rows have them (NaN otherwise):

* ``log_z_error``: |log Z − log Z_exact| of importance samplers on entries with an exact log Z
  (error: that of the estimate);
* ``forward_ess`` and ``eubo``: from the sampler's density on target samples (`suite.metrics`);
* ``modes_p``: the p-value of the mode-coverage χ² test (`suite.modes`), reweighted where the
  sampler has weights, else unweighted; pooled over seeds as the smallest;
* ``evaluations_per_independent_sample``: action + force evaluations per sample
  (``sampler_info.evaluations_per_sample``: HMC, AIS, flows and the samplers that report it) / ESS per
  sample; ``evaluations_amortised``: the same with the training's evaluations (``training.evaluations``)
  spread over N independent samples, as ``cost_amortised`` does with its seconds.

``rank_by`` orders each entry's contenders by one of `RANKINGS` (default: amortised cost).
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pandas as pd

from suite.errors import UsageError
from suite.metrics import run_time_to_target
from suite.report import fits
from suite.theories.registry import theory_info

GROUPINGS = ("model", "objective", "sampler")
# --rank-by: the column each entry's contenders are sorted by, and whether larger is better
RANKINGS = {"cost": ("cost_amortised", False), "ess": ("ess", True), "forward-ess": ("forward_ess", True),
            "log-z-error": ("log_z_error", False), "eubo": ("eubo", False), "modes": ("modes_p", True),
            "evaluations": ("evaluations_per_independent_sample", False),
            "evaluations-amortised": ("evaluations_amortised", False)}
PROTOCOL = ("log_z_error", "forward_ess", "eubo", "evaluations_per_independent_sample")


def contender(row, by: str) -> str:
    """The leaderboard label of a row, from its sampler plugin (HMC is always ``hmc``; flows by
    model, objective or sampler)."""
    return row.plugin.contender(row.sampler, by)


def _run_record(row, observable: str, target: float) -> dict:
    """One row's numbers: ESS per sample, time to target, cost per independent sample."""
    est, training = row.observables.get(observable), row.training or {}
    if est is None:
        raise UsageError(f"run {row.run_id} has no observable {observable!r}; choose one with --observable")
    if "ess" in row.metrics and not row.plugin.markov:
        ess, ess_error = row.metrics["ess"]["value"], row.metrics["ess"]["error"]
    else:  # Markov chain: N_eff / N = 1/(2 τ_int)
        ess = 1 / (2 * est["tau_int"])
        ess_error = ess * est["tau_int_error"] / est["tau_int"]
    cost = est.get("seconds_per_independent_sample", math.nan)
    cost_error = cost * ess_error / ess if ess > 0 else math.nan
    train_evaluations = training.get("evaluations", 0)
    record = {"ess": ess, "ess_error": ess_error, "cost": cost, "cost_error": cost_error,
              "train_steps": training.get("steps", 0), "train_seconds": training.get("seconds", 0.0),
              "train_evaluations": math.nan if train_evaluations is None else train_evaluations}
    record.update(protocol_record(row, ess, ess_error))
    crossing = run_time_to_target(row, target)
    if crossing is not None:
        record.update({"reached_to_target": crossing["reached"],
                       **{f"{n}_to_target{e}": crossing[n + e] for n in ("steps", "seconds") for e in ("", "_error")}})
    return record


def protocol_record(row, ess: float, ess_error: float) -> dict:
    """The protocol metrics of one row (module docstring), NaN where the row has none."""
    metrics, nan = row.metrics, (math.nan, math.nan)
    log_z, exact = metrics.get("log_z"), row.reference.get("log_z")
    log_z_error = (abs(log_z["value"] - exact["value"]), log_z["error"]) if log_z and exact else nan
    forward, eubo = (metrics.get(name) for name in ("forward_ess", "eubo"))
    evaluations = row.sampler_info.get("evaluations_per_sample")
    per_independent = nan
    if evaluations is not None and ess > 0:
        per_independent = (evaluations / ess, evaluations * ess_error / ess**2)
    coverage = metrics.get("mode_coverage")
    test = coverage and (coverage.get("reweighted") or coverage["unweighted"])
    record = {"modes_p": test["p_value"] if test and test["p_value"] is not None else math.nan}
    for name, (value, error) in (("log_z_error", log_z_error),
                                 ("forward_ess", (forward["value"], forward["error"]) if forward else nan),
                                 ("eubo", (eubo["value"], eubo["error"]) if eubo else nan),
                                 ("evaluations_per_independent_sample", per_independent)):
        record[name], record[f"{name}_error"] = value, error
    return record


def _pooled(values: np.ndarray, errors: np.ndarray) -> tuple[float, float]:
    """Mean of per-seed values; error from the per-run errors and, with several seeds, the spread."""
    n = len(values)
    stat = math.sqrt(np.sum(np.square(errors))) / n
    spread = np.std(values, ddof=1) / math.sqrt(n) if n > 1 else 0.0
    return float(np.mean(values)), math.hypot(stat, spread)


def leaderboard(rows: list[dict], *, by: str = "model", target_ess: float = 0.5, n_independent: float = 1e4,
                observable: str | None = None, rank_by: str = "cost") -> pd.DataFrame:
    """One row per (entry, contender), sorted by entry and then by ``rank_by``; see the module docstring."""
    if by not in GROUPINGS:
        raise UsageError(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}")
    if rank_by not in RANKINGS:
        raise UsageError(f"--rank-by must be one of {', '.join(RANKINGS)}, got {rank_by!r}")
    if not 0 < target_ess <= 1:
        raise UsageError(f"--target-ess must be in (0, 1], got {target_ess}")
    if not n_independent > 0:
        raise UsageError(f"--n-independent must be > 0, got {n_independent}")
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:  # runs are pooled only when their specs agree (seeds of one recipe)
        if not row.ok:
            continue
        name = observable or theory_info(row.theory).headline_observable
        record = {**_run_record(row, name, target_ess), "observable": name, "row": row}
        recipe = json.dumps(row.sampler, sort_keys=True)
        groups.setdefault((row.entry, contender(row, by), recipe), []).append(record)
    recipes = Counter((entry, label) for entry, label, _ in groups)
    table = []
    for (entry, label, _), records in groups.items():
        first = records[0]["row"]
        if recipes[entry, label] > 1:  # one contender with several recipes at this entry: name the budget
            label = f"{label} [{first.plugin.budget_label(first.sampler)}]"
        frame = pd.DataFrame.from_records([{k: v for k, v in r.items() if k != "row"} for r in records])
        out = {"entry": entry, "contender": label, "baseline": first.plugin.baseline,
               "trained": first.plugin.trained,
               "reference": first.plugin.is_reference(first.sampler), "runs": len(records),
               "observable": records[0]["observable"],
               "train_steps": frame.train_steps.mean(), "train_seconds": frame.train_seconds.mean()}
        for name in ("ess", "cost", *PROTOCOL):
            out[name], out[f"{name}_error"] = _pooled(frame[name].to_numpy(), frame[f"{name}_error"].to_numpy())
        out["modes_p"] = float(frame.modes_p.min())
        out["cost_amortised"] = float(fits.amortised_cost(out["train_seconds"], out["cost"], n_independent))
        out["evaluations_amortised"] = float(fits.amortised_cost(frame.train_evaluations.mean(),
                                                                 out["evaluations_per_independent_sample"],
                                                                 n_independent))
        out["evaluations_amortised_error"] = out["evaluations_per_independent_sample_error"]
        for name in ("steps", "seconds"):
            column = f"{name}_to_target"
            if column in frame and frame["reached_to_target"].fillna(False).all():
                out[column], out[f"{column}_error"] = _pooled(frame[column].to_numpy(),
                                                              frame[f"{column}_error"].to_numpy())
            else:
                out[column], out[f"{column}_error"] = math.nan, math.nan
        table.append(out)
    if not table:
        raise UsageError("no finished result rows to compare")
    board = pd.DataFrame.from_records(table)
    hmc = board[board.baseline].drop_duplicates("entry").set_index("entry")
    vs, n_star, n_star_error = [], [], []
    for r in board.itertuples():
        if r.entry in hmc.index and not r.baseline:
            h = hmc.loc[r.entry]
            vs.append(r.cost_amortised / h.cost)
            value, error = fits.break_even(r.train_seconds, r.cost, r.cost_error, h.cost, h.cost_error)
        else:
            vs.append(1.0 if r.baseline else math.nan)
            value, error = math.nan, math.nan
        n_star.append(value)
        n_star_error.append(error)
    reference_flows = board[board.reference & board.trained]
    best = reference_flows.groupby("entry").cost_amortised.min()
    board = board.assign(vs_hmc=vs, break_even_n=n_star, break_even_n_error=n_star_error,
                         vs_best_reference_flow=board.cost_amortised / board.entry.map(best))
    column, larger_is_better = RANKINGS[rank_by]
    return board.sort_values(["entry", column], ascending=[True, not larger_is_better], na_position="last",
                             kind="stable").reset_index(drop=True)


def leaderboard_markdown(board: pd.DataFrame, target_ess: float, n_independent: float) -> str:
    """The leaderboard as Markdown tables, one per entry, values with errors."""
    from suite.report.tables import format_value, to_markdown

    def fmt(value, error):
        return "—" if math.isnan(value) else format_value(value, error)

    lines = [(f"Target ESS {target_ess:g}; training amortised over N = {n_independent:g} independent samples; "
              "ESS/sample: (Σw)²/(N Σw²) for flows, 1/(2τ_int) for Markov chains; cost in seconds per "
              "independent sample; vs HMC < 1 means cheaper than HMC."), ""]
    for entry, part in board.groupby("entry", sort=False):
        shown = pd.DataFrame({
            "contender": part.contender + np.where(part.reference, "", " *"),
            "runs": part.runs,
            "ESS/sample": [fmt(v, e) for v, e in zip(part.ess, part.ess_error)],
            "train steps": part.train_steps.round().astype(int),
            "steps to target": [fmt(v, e) for v, e in zip(part.steps_to_target, part.steps_to_target_error)],
            "s to target": [fmt(v, e) for v, e in zip(part.seconds_to_target, part.seconds_to_target_error)],
            "cost (sampling)": [fmt(v, e) for v, e in zip(part.cost, part.cost_error)],
            "cost (amortised)": part.cost_amortised,
            "vs HMC": part.vs_hmc,
            "vs best ref. flow": part.vs_best_reference_flow,
            "break-even N": [fmt(v, e) if math.isfinite(v) else ("never" if v == math.inf else "—")
                             for v, e in zip(part.break_even_n, part.break_even_n_error)],
        })
        for name, heading in (("log_z_error", "|log Z − exact|"), ("forward_ess", "forward ESS"), ("eubo", "EUBO"),
                              ("evaluations_per_independent_sample", "evaluations / indep.")):
            if part[name].notna().any():
                shown[heading] = [fmt(v, e) for v, e in zip(part[name], part[f"{name}_error"])]
        if part.evaluations_amortised.notna().any():
            shown["evaluations / indep. (amortised)"] = [fmt(v, e) for v, e in zip(
                part.evaluations_amortised, part.evaluations_amortised_error)]
        if part.modes_p.notna().any():
            shown["modes p"] = ["—" if math.isnan(p) else f"{p:.2g}" for p in part.modes_p]
        lines += [f"### {entry} (observable {part.observable.iloc[0]})", "", to_markdown(shown), ""]
    lines.append("\\* not a reference sampler (a user's model).")
    return "\n".join(lines)
