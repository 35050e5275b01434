"""Correlated ensembles: differences ⟨O⟩_{α₂} − ⟨O⟩_{α₁} from one Markov chain of p_{α₁}, mapped to
α₂ by an invertible map f, against two independent ensembles of the same cost.

With x on the α₁ chain, y = f(x) and log w(x) = −S₂(y) + log|det ∂f/∂x| + S₁(x),

    ⟨O⟩₂ = ⟨w · O(f(x))⟩₁ / ⟨w⟩₁,    ⟨O⟩₂ − ⟨O⟩₁ = ⟨w · O∘f⟩₁ / ⟨w⟩₁ − ⟨O⟩₁,    Z₂/Z₁ = ⟨w⟩₁

(w self-normalised by its mean: the ratio of correlated means). Each is a derived quantity of the
chain's means of O(x), w·O(f(x)) and w, so its error comes from Wolff's Γ-method on the projected
fluctuations (`suite.stats.transported_derived`, `suite.stats.log_mean_weight_gamma`): the chain's
autocorrelations and the correlation between the two ends, which is what the difference gains
from, are both in it. Derived quantities of the theory (ξ_2nd, m_pole, Creutz ratios) are
differenced the same way, F(⟨a⟩₂) − F(⟨a⟩₁).

The baseline is the difference of the means of two independent HMC ensembles, at α₁ and at α₂,
its error the two errors added in quadrature. Its error at the cost of the correlated estimate
is σ_b² · C_b / C (Monte Carlo variances fall as 1/cost), and the variance reduction is

    VR = σ_b² · (C_b / C) / σ²,

(baseline variance over correlated variance at equal cost), per observable and per unit of cost:
``cpu_seconds`` (every phase, thermalisation included: HMC of the α₁ ensemble and of f's training
set, the training, the mapping, against both baseline runs) and ``evaluations`` (action and force
evaluations, plus one per flow pass: forward in the mapping, forward with backward per training
sample; a unit that ignores what a flow pass costs against an action, so seconds are the measure).
"""

from __future__ import annotations

import math

import numpy as np

from suite import stats

COST_UNITS = ("cpu_seconds", "evaluations")


def _summary(result: stats.GammaResult) -> dict:
    return {"value": result.value, "error": result.error, "tau_int": result.tau_int,
            "tau_int_error": result.tau_int_error}


def _pull(value: float, error: float, reference: float, reference_error: float) -> float:
    sigma = math.hypot(error, reference_error)
    return (value - reference) / sigma if sigma > 0 else float("nan")


def _exact_difference(name: str, reference1: dict, reference2: dict) -> dict | None:
    if name not in reference1 or name not in reference2:
        return None
    one, two = reference1[name], reference2[name]
    provenance = one.provenance if one.provenance == two.provenance else f"{two.provenance} − {one.provenance}"
    return {"value": two.value - one.value, "error": math.hypot(one.error, two.error), "provenance": provenance}


def _estimators(theory, observables: dict) -> dict:
    """name -> (function, inputs, gradient or None): every primary observable (the identity) and derived quantity."""
    found = {name: (lambda a: a, (name,), lambda a: [1.0]) for name in observables}
    for name, derived in theory.derived_quantities().items():
        found[name] = (derived.function, derived.inputs, None)
    return found


def _variance_reduction(baseline_error: float, error: float, cost_ratio: float) -> float:
    variance = error**2
    return baseline_error**2 * cost_ratio / variance if variance > 0 else float("inf")


def correlated_metrics(theory, observables: dict, mapped: dict, log_w, baseline: tuple, cost: dict,
                       baseline_cost: dict, reference1: dict, reference2: dict) -> dict:
    """The correlated estimates of a run (module docstring), as the row's ``metrics["correlated"]``.

    ``observables``/``mapped``: per-configuration observables (R, N) at x and at f(x) (the latter
    evaluated with the α₂ theory); ``log_w`` (R, N); ``baseline``: the estimates
    (`suite.metrics.estimate_observables`) of the baseline's α₁ and α₂ ensembles; ``cost`` and
    ``baseline_cost``: totals per unit of `COST_UNITS`; ``reference1``/``reference2``: the
    reference values (name -> `suite.catalogue.ReferenceValue`) at α₁ and α₂.
    """
    ratio = {unit: baseline_cost[unit] / cost[unit] for unit in COST_UNITS}
    base1, base2 = baseline
    out = {}
    for name, (function, inputs, grad) in _estimators(theory, observables).items():
        try:
            difference, at_two = stats.transported_derived(function, [observables[k] for k in inputs],
                                                           [mapped[k] for k in inputs], log_w, grad=grad)
        except ValueError as err:  # undefined at the means (e.g. arccosh of a ratio below 1)
            out[name] = {"undefined": str(err)}
            continue
        record = {"difference": _summary(difference), "at_target": _summary(at_two)}
        one, two = base1.get(name), base2.get(name)
        if one and two and math.isfinite(one["value"]) and math.isfinite(two["value"]):
            error = math.hypot(one["error"], two["error"])
            record["baseline"] = {"value": two["value"] - one["value"], "error": error,
                                  "error_at_equal_cost": error * math.sqrt(ratio["cpu_seconds"])}
            record["variance_reduction"] = {unit: _variance_reduction(error, difference.error, ratio[unit])
                                            for unit in COST_UNITS}
            record["pull_vs_baseline"] = _pull(difference.value, difference.error,
                                               record["baseline"]["value"], error)
        exact = _exact_difference(name, reference1, reference2)
        if exact is not None:
            record["exact"] = exact
            record["pull"] = _pull(difference.value, difference.error, exact["value"], exact["error"])
            if "baseline" in record:
                record["baseline_pull"] = _pull(record["baseline"]["value"], record["baseline"]["error"],
                                                exact["value"], exact["error"])
        if name in reference2:
            ref = reference2[name]
            record["target_reference"] = {"value": ref.value, "error": ref.error, "provenance": ref.provenance}
            record["target_pull"] = _pull(at_two.value, at_two.error, ref.value, ref.error)
        out[name] = record
    log_z = stats.log_mean_weight_gamma(log_w)
    log_z_ratio = _summary(log_z)
    exact = _exact_difference("log_z", reference1, reference2)
    if exact is not None:
        log_z_ratio["exact"] = exact
        log_z_ratio["pull"] = _pull(log_z.value, log_z.error, exact["value"], exact["error"])
    flat = np.asarray(log_w, dtype=float).ravel()
    return {"observables": out, "log_z_ratio": log_z_ratio, "weights_ess": stats.effective_sample_size(flat),
            "cost": cost, "baseline_cost": baseline_cost}
