"""Fits of a scaling study, each a weighted least-squares fit with parameter errors and χ²/dof.

All fits use ``scipy.optimize.curve_fit`` with ``absolute_sigma=True``: the errors are the
data's own one-σ errors, not rescaled by the fit quality, and χ²/dof says how well the law
describes the data (≈ 1 for a good description; ≫ 1 means the quoted errors understate the
law's mismatch).

Laws:

* ESS per sample against the volume V (in sites): ESS(V) = ESS(V₀)^(V/V₀), the form for a
  sampler whose log-weight variance grows linearly in V. The law depends on V₀ and ESS(V₀) only
  through ln ESS(V₀)/V₀, so V₀ is fixed (the smallest volume in the data, or given) and ESS(V₀)
  is fitted; ``v_e = −V₀/ln ESS(V₀)`` is the volume over which the ESS falls by a factor e.
* τ_int against the correlation length: τ_int = c ξ^z (the dynamic exponent z).
* Training cost against a size x (L or ξ): c x^b (power) and a e^(b x) (exponential), both
  reported; the one with the smaller χ² is marked preferred (equal parameter counts).
* Cost per effectively independent sample: HMC costs c_HMC per independent sample; a flow costs
  T_train/N + c_flow for N independent samples (training amortised over N). The break-even
  N* = T_train / (c_HMC − c_flow) is where the two totals meet (infinite if c_flow ≥ c_HMC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True)
class FitResult:
    """A weighted least-squares fit: parameter values, one-σ errors and covariance, χ², dof."""

    law: str                      # "exp-volume", "power", "exponential"
    formula: str                  # the law in words, e.g. "τ = c ξ^z"
    params: dict[str, float]
    errors: dict[str, float]
    covariance: np.ndarray
    chi2: float
    dof: int
    fixed: dict[str, float] = field(default_factory=dict)   # parameters held fixed (V₀)
    function: object = None       # f(x, *params) as fitted, for drawing the curve

    @property
    def chi2_dof(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else float("nan")

    @property
    def p_value(self) -> float:
        """Probability of a χ² at least this large if the law is right (NaN without dof)."""
        return float(stats.chi2.sf(self.chi2, self.dof)) if self.dof > 0 else float("nan")

    def __call__(self, x) -> np.ndarray:
        return self.function(np.asarray(x, dtype=float), *self.params.values())

    def summary(self) -> dict:
        """Flat dict for tables and JSON: each parameter with its error, χ², dof, χ²/dof, p."""
        out = {"law": self.law, "formula": self.formula, **self.fixed}
        for name, value in self.params.items():
            out[name], out[f"{name}_error"] = value, self.errors[name]
        return {**out, "chi2": self.chi2, "dof": self.dof, "chi2_dof": self.chi2_dof, "p_value": self.p_value}


def _arrays(x, y, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, sigma = (np.asarray(a, dtype=float) for a in (x, y, sigma))
    if not (x.shape == y.shape == sigma.shape and x.ndim == 1):
        raise ValueError(f"x, y and sigma must be 1-d of one length, got {x.shape}, {y.shape}, {sigma.shape}")
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(sigma) & (sigma > 0)
    return x[keep], y[keep], sigma[keep]


def weighted_fit(function, x, y, sigma, p0, names, *, law: str, formula: str, fixed=None) -> FitResult:
    """Minimise Σ ((y − f(x))/σ)² over the parameters ``names`` starting from ``p0``.

    Points with a non-finite value or a non-positive error are left out; at least as many
    points as parameters are needed.
    """
    x, y, sigma = _arrays(x, y, sigma)
    if len(x) < len(names):
        raise ValueError(f"{law} fit needs at least {len(names)} points with errors, got {len(x)}")
    popt, pcov = optimize.curve_fit(function, x, y, p0=p0, sigma=sigma, absolute_sigma=True, maxfev=20000)
    chi2 = float(np.sum(((y - function(x, *popt)) / sigma) ** 2))
    errors = np.sqrt(np.clip(np.diag(pcov), 0, None))
    return FitResult(law=law, formula=formula, params=dict(zip(names, map(float, popt))),
                     errors=dict(zip(names, map(float, errors))), covariance=pcov, chi2=chi2,
                     dof=len(x) - len(names), fixed=dict(fixed or {}), function=function)


def try_fit(make, *args):
    """``make(*args)``, or None where there are too few points or the fit does not converge."""
    try:
        return make(*args)
    except (RuntimeError, ValueError):
        return None


def _log_slope_start(x, y) -> tuple[float, float]:
    """Intercept and slope of the straight line through (x, ln y) for y > 0: starting values."""
    positive = y > 0
    if positive.sum() < 2:
        return 0.0, 1.0
    slope, intercept = np.polyfit(x[positive], np.log(y[positive]), 1)
    return float(intercept), float(slope)


def fit_ess_volume(volume, ess, ess_error, v0: float | None = None) -> FitResult:
    """ESS(V) = ESS(V₀)^(V/V₀) with V₀ fixed (default: the smallest volume); fits ESS(V₀)."""
    volume = np.asarray(volume, dtype=float)
    v0 = float(np.min(volume)) if v0 is None else float(v0)

    def law(v, ess0):
        return np.power(np.clip(ess0, 1e-300, None), v / v0)

    x_, y_, _ = _arrays(volume / v0, ess, ess_error)
    log_ess_v0 = np.sum(x_ * np.log(np.clip(y_, 1e-12, None))) / np.sum(x_ * x_) if len(x_) else math.log(0.5)
    return weighted_fit(law, volume, ess, ess_error, [min(math.exp(log_ess_v0), 0.999)], ["ess_v0"], law="exp-volume",
                        formula="ESS(V) = ESS(V₀)^(V/V₀)", fixed={"v0": v0})


def ess_decay_volume(fit: FitResult) -> tuple[float, float]:
    """V_e = −V₀/ln ESS(V₀), the volume per e-fold of the ESS, with its propagated error."""
    ess0, err = fit.params["ess_v0"], fit.errors["ess_v0"]
    log0 = math.log(ess0)
    value = -fit.fixed["v0"] / log0
    return value, abs(value / log0) * err / ess0


def _power(x, c, b):
    return c * np.power(x, b)


def _exponential(x, a, b):
    return a * np.exp(b * x)


def fit_power(x, y, sigma, names=("c", "z"), formula="y = c x^z") -> FitResult:
    """y = c x^b by weighted least squares (starting from the straight line in log-log)."""
    x_, y_, _ = _arrays(x, y, sigma)
    intercept, slope = _log_slope_start(np.log(x_), y_)
    return weighted_fit(_power, x, y, sigma, [math.exp(intercept), slope], list(names), law="power",
                        formula=formula)


def fit_exponential(x, y, sigma, names=("a", "b"), formula="y = a e^(b x)") -> FitResult:
    """y = a e^(b x) by weighted least squares (starting from the straight line in lin-log)."""
    x_, y_, _ = _arrays(x, y, sigma)
    intercept, slope = _log_slope_start(x_, y_)
    return weighted_fit(_exponential, x, y, sigma, [math.exp(intercept), slope], list(names), law="exponential",
                        formula=formula)


def fit_dynamic_exponent(xi, tau, tau_error) -> FitResult:
    """τ_int = c ξ^z: the dynamic critical exponent z of a Markov chain (HMC: z ≈ 2)."""
    return fit_power(xi, tau, tau_error, names=("c", "z"), formula="τ_int = c ξ^z")


def fit_training_cost(size, cost, cost_error) -> dict[str, FitResult]:
    """Cost to reach a target ESS against a size (L or ξ): both ``power`` (c x^b) and
    ``exponential`` (a e^(b x)); fits that fail to converge are left out."""
    fits = {"power": try_fit(fit_power, size, cost, cost_error, ("c", "b"), "cost = c x^b"),
            "exponential": try_fit(fit_exponential, size, cost, cost_error, ("a", "b"), "cost = a e^(b x)")}
    return {law: fit for law, fit in fits.items() if fit is not None}


def preferred(fits: dict[str, FitResult]) -> str | None:
    """The law with the smaller χ² among fits with equal parameter counts (None if there are none)."""
    return min(fits, key=lambda k: fits[k].chi2) if fits else None


def amortised_cost(train_seconds: float, sample_cost: float, n: np.ndarray | float) -> np.ndarray:
    """Seconds per independent sample of a flow when its training is spread over ``n`` of them."""
    return train_seconds / np.asarray(n, dtype=float) + sample_cost


def break_even(train_seconds: float, flow_cost: float, flow_cost_error: float, hmc_cost: float,
               hmc_cost_error: float) -> tuple[float, float]:
    """N* = T_train/(c_HMC − c_flow) independent samples, with its propagated error.

    Beyond N* the flow (training included) is cheaper than HMC; (inf, nan) when the flow's
    sampling alone costs at least as much as HMC. T_train is a measured time, taken as exact.
    """
    gap = hmc_cost - flow_cost
    if not gap > 0:
        return math.inf, math.nan
    value = train_seconds / gap
    return value, value / gap * math.hypot(hmc_cost_error, flow_cost_error)
