"""From a Chain to the numbers of a result row: estimates with errors, τ_int, pulls, costs.

Training cost to a target ESS: steps and seconds until the running mean of the logged batch
ESS first reaches it (`time_to_target`).

Cost per independent sample of an observable = (wall seconds per measured configuration)
× 2 τ_int, i.e. seconds per effectively independent measurement.

log Z of importance samplers (``flow``, ``flow-mh``'s proposals, ``ais``: every chain with
``log_weights``): the log-weights are normalised, log w = −S − log q with q the normalised density
of the samples w.r.t. the field space's volume measure (Lebesgue measure on R^n and on (−π, π]^n;
`suite.fields`), so log Z = log mean w with Z = ∫ e^{−S} over that measure, and the delta-method
error (`suite.stats.log_mean_weight`). It is recorded twice: in the metrics
(``metrics["log_z"]``) and, so that an exact solver's ``log_z`` (same convention) becomes a
reference with a pull by name like any observable, as the estimate ``log_z`` among the
observables (τ_int ½: the weights are independent draws, also the proposals of ``flow-mh``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from suite import stats
from suite.chain import Chain
from suite.modes import mode_coverage

if TYPE_CHECKING:
    import pandas as pd


def _summary(result: stats.GammaResult, seconds_per_config: float | None) -> dict:
    summary = {
        "value": result.value,
        "error": result.error,
        "tau_int": result.tau_int,
        "tau_int_error": result.tau_int_error,
        "window": result.window,
        "n_samples": result.n_samples,
    }
    if seconds_per_config is not None:
        summary["seconds_per_independent_sample"] = seconds_per_config * 2 * result.tau_int
    return summary


def _undefined(err: Exception) -> dict:
    return {"value": float("nan"), "error": float("nan"), "tau_int": float("nan"), "tau_int_error": float("nan"),
            "window": 0, "n_samples": 0, "undefined": str(err)}


def estimate_observables(chain: Chain, theory, seconds_per_config: float | None = None) -> dict[str, dict]:
    """Estimates of every per-configuration observable and every derived quantity.

    Markov chains (HMC, flow-mh): Wolff's Γ-method with the chains as replica. Independent
    weighted samples (flow): reweighted means with delta-method errors; τ_int is ½ by
    construction, and the cost per independent sample is seconds per sample / ESS.
    """
    if chain.log_weights is not None and chain.accepted is None:
        return {**_reweighted_estimates(chain, theory, seconds_per_config), **_log_z_estimate(chain)}
    # an observable measured at every k-th measurement only (HMC's costly_every) has k times the seconds per record
    longest = max(data.shape[1] for data in chain.observables.values())

    def per_record(data):
        return None if seconds_per_config is None else seconds_per_config * longest / data.shape[1]

    estimates = {name: _summary(stats.gamma_method(data), per_record(data))
                 for name, data in chain.observables.items()}
    for name, derived in theory.derived_quantities().items():
        datas = [chain.observables[k] for k in derived.inputs]
        try:
            estimates[name] = _summary(stats.gamma_method_derived(derived.function, datas), per_record(datas[0]))
        except ValueError as err:  # undefined at the means (e.g. arccosh of a noisy ratio below 1)
            estimates[name] = _undefined(err)
    return {**estimates, **_log_z_estimate(chain)}


def _log_z_estimate(chain: Chain) -> dict[str, dict]:
    """``{"log_z": summary}`` of a chain with log-weights (see the module docstring), else ``{}``."""
    if chain.log_weights is None:
        return {}
    log_w = chain.log_weights.ravel()
    value, error = stats.log_mean_weight(log_w)
    return {"log_z": {"value": value, "error": error, "tau_int": 0.5, "tau_int_error": 0.0, "window": 0,
                      "n_samples": len(log_w)}}


def _reweighted_estimates(chain: Chain, theory, seconds_per_config: float | None) -> dict[str, dict]:
    log_w = chain.log_weights.ravel()
    ess = stats.effective_sample_size(log_w)
    n = len(log_w)

    def summary(value, error):
        out = {"value": value, "error": error, "tau_int": 0.5, "tau_int_error": 0.0, "window": 0, "n_samples": n}
        if seconds_per_config is not None:
            out["seconds_per_independent_sample"] = seconds_per_config / ess
        return out

    estimates = {name: summary(*stats.reweighted_mean(data.ravel(), log_w))
                 for name, data in chain.observables.items()}
    for name, derived in theory.derived_quantities().items():
        datas = [chain.observables[k].ravel() for k in derived.inputs]
        try:
            estimates[name] = summary(*stats.reweighted_derived(derived.function, datas, log_w))
        except ValueError as err:
            estimates[name] = _undefined(err)
    return estimates


def _mean_with_error(values: np.ndarray) -> dict:
    """Mean of independent draws with its standard error (the ELBO and the EUBO)."""
    return {"value": float(values.mean()), "error": float(values.std(ddof=1) / np.sqrt(len(values))),
            "n_samples": len(values)}


def sampler_metrics(chain: Chain, theory=None, markov: bool = True) -> dict:
    """Acceptance, <exp(−ΔH)> (must be 1 within errors for a correct HMC) and, for importance samplers,
    the ESS with the Pareto k̂ of their weights (`stats.pareto_k`: above 0.7 the ESS is not to be
    trusted) and against the number of samples (`stats.ess_versus_samples`), log Z = log mean w with
    its delta-method error (module docstring), the ELBO = mean log w and, where the sampler evaluated
    its density on target samples, the forward ESS and the EUBO; where ``theory`` knows its sectors, their coverage
    (`suite.modes.mode_coverage`; ``markov``: the chain's configurations are a Markov chain, not
    independent samples)."""
    metrics = {}
    if chain.accepted is not None:
        metrics["acceptance"] = float(np.mean(chain.accepted))
    if chain.delta_h is not None:
        r = stats.gamma_method(np.exp(-chain.delta_h))
        metrics["exp_minus_delta_h"] = {"value": r.value, "error": r.error}
        finite = np.isfinite(chain.delta_h)
        metrics["mean_delta_h"] = float(np.mean(chain.delta_h[finite])) if finite.any() else float("nan")
        metrics["diverged_fraction"] = float(1 - finite.mean())
    if chain.log_weights is not None:
        log_w = chain.log_weights.ravel()
        metrics["ess"] = {"value": stats.effective_sample_size(log_w), "error": stats.ess_bootstrap_error(log_w),
                          "n_samples": len(log_w), "pareto_k": stats.pareto_k(log_w)}
        log_z, log_z_error = stats.log_mean_weight(log_w)
        metrics["log_z"] = {"value": log_z, "error": log_z_error, "error_method": "delta"}
        # ELBO = E_q[log w] ≤ log Z (equality iff q = p; log Z − ELBO = KL(q‖p), the reverse KL)
        metrics["elbo"] = _mean_with_error(log_w)
        metrics["ess_curve"] = stats.ess_versus_samples(log_w)
    if chain.target_log_weights is not None:
        # Forward metrics from samples of the target (`stats.forward_effective_sample_size`): the
        # forward ESS, and EUBO = E_p[log w] ≥ log Z (equality iff q = p; EUBO − log Z = KL(p‖q)),
        # its error assuming independent target samples.
        lw = np.asarray(chain.target_log_weights, dtype=float).ravel()
        metrics["forward_ess"] = {"value": stats.forward_effective_sample_size(lw),
                                  "error": stats.forward_ess_bootstrap_error(lw), "n_samples": len(lw)}
        metrics["eubo"] = _mean_with_error(lw)
    if "mag" in chain.observables:
        # Mode coverage: the unweighted fraction of configurations with M > 0 (½ for a Z₂-symmetric
        # target; a flow that collapsed onto one vacuum of the broken phase shows ~0 or ~1).
        metrics["fraction_positive_mag"] = float(np.mean(chain.observables["mag"] > 0))
    sectors = theory.sectors() if theory is not None else None
    if sectors is not None and sectors.observable in chain.observables:
        metrics["mode_coverage"] = mode_coverage(chain, sectors, markov)
    return metrics


def pulls(estimates: dict[str, dict], reference: dict) -> dict[str, dict]:
    """(measured − reference) / sqrt(σ_measured² + σ_reference²) for every observable with a reference."""
    out = {}
    for name, ref in reference.items():
        if name not in estimates:
            continue
        est = estimates[name]
        sigma = math.hypot(est["error"], ref.error)
        pull = (est["value"] - ref.value) / sigma if sigma > 0 else float("nan")
        out[name] = {"value": ref.value, "error": ref.error, "provenance": ref.provenance, "pull": pull}
    return out


ESS_SMOOTHING_FRACTION = 0.05  # running-mean window of the batch ESS: this fraction of the logged steps


def time_to_target(log: pd.DataFrame, target: float) -> dict:
    """Steps and seconds until the running mean of the batch ESS first reaches ``target``.

    The window is `ESS_SMOOTHING_FRACTION` of the steps with an ESS (at least 5). The error is half
    the spread between the first crossings of the running mean ± its standard error; a curve
    that never reaches the target gives NaN (``reached`` False).
    """
    log = log[np.isfinite(log.ess.to_numpy())]
    if len(log) == 0:
        return {"reached": False, "steps": math.nan, "steps_error": math.nan, "seconds": math.nan,
                "seconds_error": math.nan}
    window = max(5, int(ESS_SMOOTHING_FRACTION * len(log)))
    rolling = log.ess.rolling(window, min_periods=window)
    mean, err = rolling.mean().to_numpy(), (rolling.std() / math.sqrt(window)).to_numpy()

    def first(condition):
        hit = np.flatnonzero(condition)
        return hit[0] if len(hit) else len(log) - 1

    with np.errstate(invalid="ignore"):
        reached = bool(np.any(mean >= target))
        i, lo, hi = first(mean >= target), first(mean + err >= target), first(mean - err >= target)
    if not reached:
        return {"reached": False, "steps": math.nan, "steps_error": math.nan, "seconds": math.nan,
                "seconds_error": math.nan}
    out = {"reached": True}
    for column, name in (("step", "steps"), ("seconds", "seconds")):
        values = log[column].to_numpy(dtype=float)
        out[name], out[f"{name}_error"] = values[i], max(abs(values[hi] - values[lo]) / 2, 0.0)
    return out


def run_time_to_target(row, target: float) -> dict | None:
    """`time_to_target` of a result row's training curve; None when the run has no curve.

    A pretrained flow's seconds include its pretraining (``training.pretrain.seconds``); its
    steps are those on the entry's lattice.
    """
    curve = row.artifact("training")
    if curve is None or not curve.is_file():
        return None
    import pandas as pd

    crossing = time_to_target(pd.read_csv(curve), target)
    crossing["seconds"] += ((row.training or {}).get("pretrain") or {}).get("seconds", 0.0)
    return crossing
