"""Statistical analysis of Monte Carlo samples: Γ-method errors, reweighting, ESS.

Conventions
-----------
Importance weights
    ``w = exp(log_w)``.  The effective sample size *per sample* is
    ``ESS = (Σw)² / (N Σw²)`` in ``(0, 1]``, evaluated from ``log_w`` with
    logsumexp after subtracting ``max(log_w)`` (stable for ``log_w ~ ±1e4``).
    With normalised log-weights (``log w = −S − log q``, q a normalised density)
    ``log((1/N) Σ w)`` estimates log Z (`log_mean_weight`).
Autocorrelation
    ``τ_int = ½ + Σ_{t≥1} ρ(t)``, so uncorrelated data give ``τ_int = ½`` and
    ``N_eff = N / (2 τ_int)``.
Γ-method
    U. Wolff, Comput. Phys. Commun. 156 (2004) 143, hep-lat/0306017, implemented
    to reproduce ``pyerrors`` (``Obs.gamma_method``) to rounding error:

    * Replica (independent chains) are given as an ``(R, N)`` array or as a list
      of 1-D arrays of possibly unequal lengths ``N_r``; ``N = Σ N_r``.  The value
      is the global mean.  Fluctuations are taken about each replica's own mean
      (the pyerrors convention; Wolff uses the global mean, identical for R = 1).
    * ``Γ(t) = Σ_r Σ_i δ_i^r δ_{i+t}^r / Σ_r max(N_r − t, 0)`` for
      ``t = 0 .. max_r(N_r)//2 − 1``; ``ρ(t) = Γ(t)/Γ(0)``.
    * Automatic window: with the naive ``τ(W) = ½ + Σ_{t=1}^{W} ρ(t)`` (clipped
      to ``> ½``), ``τ_W = S / ln((2τ(W)+1)/(2τ(W)−1))`` and
      ``g(W) = exp(−W/τ_W) − τ_W/sqrt(W N)``, the window is the first ``W ≥ 1``
      with ``g(W) < 0`` (else the largest available).  ``S = 1.5`` by default.
    * Bias correction (Wolff eq. (49) as in pyerrors):
      ``τ_int = τ(W) (1 + (2W+1)/N) / (1 + 1/N)`` and
      ``error² = 2 τ_int Γ(0) (1 + 1/N) / N`` (this equals Wolff's
      ``C_F(W)(1 + (2W+1)/N)/N``).
    * ``δτ_int = 2 τ(W) sqrt((W + ½ − τ(W)) / N)``, i.e. Wolff's
      ``δτ² ≈ 4(W + ½ − τ)/N τ²`` (the ``(4W+2)/N τ²`` form with the Madras-Sokal
      ``−τ`` term, as in Wolff's UWerr and pyerrors).
    * Derived quantities ``f(ā_1, ..., ā_K)``: fluctuations are projected on the
      gradient of ``f`` at the global means, ``δf = Σ_k ∂_k f δ_k``, and the
      Γ-method is run on ``δf``.
    * A constant series (``Γ(0) = 0``) gives error 0, ``τ_int = ½``, window 0.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.special import logsumexp

__all__ = ["GammaResult", "bin_data", "effective_sample_size", "ess_bootstrap_error",
           "gamma_method", "gamma_method_derived", "log_mean_weight", "log_mean_weight_gamma", "reweighted_derived",
           "reweighted_mean", "transported_derived"]


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def _vector(x, name: str) -> np.ndarray:
    """Validate a 1-D finite array with at least two entries."""
    v = np.asarray(x, dtype=float)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"{name} must be 1-D with at least 2 entries, got shape {v.shape}")
    _check_finite(v, name)
    return v


def _replica(data, name: str = "data") -> list[np.ndarray]:
    """Turn (N,), (R, N) or a list of 1-D arrays into a list of validated replica."""
    if isinstance(data, (list, tuple)):
        items = [np.asarray(d, dtype=float) for d in data]
        reps = [np.asarray(items)] if all(d.ndim == 0 for d in items) else items
    else:
        arr = np.asarray(data, dtype=float)
        reps = [arr] if arr.ndim == 1 else list(arr) if arr.ndim == 2 else [arr]
    if not reps or any(r.ndim != 1 for r in reps):
        raise ValueError(f"{name} must be of shape (N,), (R, N) or a list of 1-D arrays")
    if min(len(r) for r in reps) < 2:
        raise ValueError(f"{name}: every replica needs at least 2 samples")
    for r in reps:
        _check_finite(r, name)
    return reps


def _fluctuations(rep: np.ndarray) -> np.ndarray:
    """Deviations from the replica mean, exactly zero for a constant replica."""
    return rep - rep.mean() if np.ptp(rep) > 0 else np.zeros_like(rep)


@dataclass(frozen=True, eq=False)
class GammaResult:
    """Result of a Γ-method analysis (conventions in the module docstring).

    Attributes
    ----------
    value : float
        Global mean for a primary, ``f(means)`` for a derived quantity.
    error : float
        Statistical error including autocorrelations.
    tau_int, tau_int_error : float
        Bias-corrected integrated autocorrelation time and its error.
    window : int
        Chosen summation window ``W``.
    n_samples : int
        Total number of samples ``N`` over all replica.
    rho : np.ndarray, shape (max_r(N_r)//2,)
        Normalised autocorrelation function ``ρ(t)``, ``t = 0, 1, ...``.
    """

    value: float
    error: float
    tau_int: float
    tau_int_error: float
    window: int
    n_samples: int
    rho: np.ndarray

    @property
    def n_eff(self) -> float:
        """Effective number of independent samples ``N / (2 τ_int)``."""
        return self.n_samples / (2.0 * self.tau_int)


def _gamma_core(value: float, deltas: list[np.ndarray], S: float) -> GammaResult:
    if not S > 0:
        raise ValueError(f"S must be positive, got {S}")
    n_r = np.array([len(d) for d in deltas])
    n = int(n_r.sum())
    w_max = int(n_r.max()) // 2
    gamma = np.zeros(w_max)
    for d in deltas:  # within-replica products via zero-padded FFT
        m = min(len(d), w_max)
        pad = len(d) + m
        gamma[:m] += np.fft.irfft(np.abs(np.fft.rfft(d, pad)) ** 2, pad)[:m]
    gamma /= np.maximum(np.clip(n_r[:, None] - np.arange(w_max), 0, None).sum(axis=0), 1)
    if gamma[0] <= 10 * np.finfo(float).tiny:
        rho = np.zeros(w_max)
        rho[0] = 1.0
        return GammaResult(value, 0.0, 0.5, 0.0, 0, n, rho)
    rho = gamma / gamma[0]
    tau_w = np.cumsum(np.concatenate(([0.5], rho[1:])))  # naive τ(W), W = 0..w_max-1
    tau_w[tau_w <= 0.5] = 0.5 + np.finfo(float).eps
    win = np.arange(1, w_max)
    tau_exp = S / np.log((2 * tau_w[1:] + 1) / (2 * tau_w[1:] - 1))
    g = np.exp(-win / tau_exp) - tau_exp / np.sqrt(win * n)
    neg = np.flatnonzero(g < 0)
    window = int(win[neg[0]]) if neg.size else w_max - 1
    t_naive = tau_w[window] if window > 0 else 0.5
    tau = t_naive * (1 + (2 * window + 1) / n) / (1 + 1 / n)
    dtau = 2 * t_naive * np.sqrt(abs(window + 0.5 - t_naive) / n)
    error = np.sqrt(2 * tau * gamma[0] * (1 + 1 / n) / n)
    return GammaResult(float(value), float(error), float(tau), float(dtau), window, n, rho)


def gamma_method(data, S: float = 1.5) -> GammaResult:
    """Γ-method error analysis of a primary observable.

    Parameters
    ----------
    data : array_like, shape (N,) or (R, N), or list of R 1-D arrays of lengths N_r
        Monte Carlo history, one row/array per replica (independent chain).
    S : float
        Wolff's window parameter ``S > 0``.

    Returns
    -------
    GammaResult
    """
    reps = _replica(data)
    value = np.concatenate(reps).mean()
    return _gamma_core(value, [_fluctuations(r) for r in reps], S)


def _value_and_gradient(func, means: np.ndarray, spreads, grad=None) -> tuple[float, np.ndarray]:
    """f(means) and its gradient: ``grad`` if given, else central differences with step
    ``eps**(1/3) * max(|mean_k|, spread_k)``. ValueError where either is not finite."""
    if grad is None:
        scale = np.maximum(np.abs(means), spreads)
        h = np.cbrt(np.finfo(float).eps) * np.where(scale > 0, scale, 1.0)
        g = np.empty(len(means))
        for k in range(len(means)):
            xp, xm = means.copy(), means.copy()
            xp[k] += h[k]
            xm[k] -= h[k]
            g[k] = (func(*xp) - func(*xm)) / (xp[k] - xm[k])
    else:
        g = np.asarray(grad(*means), dtype=float).reshape(len(means))
    value = float(func(*means))
    if not (np.isfinite(value) and np.all(np.isfinite(g))):
        raise ValueError("func or its gradient is not finite at the means")
    return value, g


def gamma_method_derived(func: Callable[..., float], datas: Sequence, S: float = 1.5,
                         grad: Callable[..., Sequence[float]] | None = None) -> GammaResult:
    """Γ-method error analysis of ``f(<a_1>, ..., <a_K>)`` by linear error propagation.

    Parameters
    ----------
    func : callable
        ``func(*means) -> float`` with ``K`` scalar arguments.
    datas : sequence of K primaries
        Each as ``data`` in :func:`gamma_method`, all with the same replica lengths.
    S : float
        Wolff's window parameter.
    grad : callable, optional
        ``grad(*means) -> (K,)`` partial derivatives; by default central differences
        with step ``eps**(1/3) * max(|mean_k|, std_k)``.

    Returns
    -------
    GammaResult
    """
    prims = [_replica(d, f"datas[{k}]") for k, d in enumerate(datas)]
    if not prims:
        raise ValueError("datas must contain at least one primary observable")
    lengths = [len(r) for r in prims[0]]
    if any([len(r) for r in p] != lengths for p in prims):
        raise ValueError("all primaries must have the same replica lengths")
    flat = [np.concatenate(p) for p in prims]
    means = np.array([f.mean() for f in flat])
    value, g = _value_and_gradient(func, means, [f.std() for f in flat], grad)
    deltas = [sum(g[k] * _fluctuations(p[r]) for k, p in enumerate(prims))
              for r in range(len(lengths))]
    return _gamma_core(value, deltas, S)


def _weights(log_w) -> tuple[list[np.ndarray], float]:
    """Replica of ``exp(log_w − max)`` and the max subtracted."""
    reps = _replica(log_w, "log_w")
    top = max(float(r.max()) for r in reps)
    return [np.exp(r - top) for r in reps], top


def transported_derived(func: Callable[..., float], datas: Sequence, mapped: Sequence, log_w, S: float = 1.5,
                        grad: Callable[..., Sequence[float]] | None = None) -> tuple[GammaResult, GammaResult]:
    """``f(<a>_2) − f(<a>_1)`` and ``f(<a>_2)`` from one Markov chain of p_1 and a map x ↦ y to p_2.

    ``datas[k]`` holds a_k(x) on the chain, ``mapped[k]`` a_k(y) at the mapped configurations and
    ``log_w`` the log-weights log w = log p̃_2(y) + log|det ∂y/∂x| − log p̃_1(x) (all shaped like
    ``data`` of `gamma_method`), so that <a>_2 = <w a(y)>_1 / <w>_1 (self-normalised). Both results
    are derived quantities of the chain's means of a_k(x), w a_k(y) and w, analysed together by
    `gamma_method_derived`: the correlation between the two ends, which the difference gains from,
    and the chain's autocorrelations are in the error. ``grad``: the gradient of ``func`` (default:
    central differences of the whole estimator). Returns (difference, value at p_2).
    """
    k = len(datas)
    if k == 0 or len(mapped) != k:
        raise ValueError("datas and mapped must hold the same, non-zero number of observables")
    weights, _ = _weights(log_w)
    at_one = [_replica(d, f"datas[{i}]") for i, d in enumerate(datas)]
    reweighted = [[w * a for w, a in zip(weights, _replica(m, f"mapped[{i}]"))] for i, m in enumerate(mapped)]
    if any(len(r) != len(weights) for r in (*at_one, *reweighted)):
        raise ValueError("datas, mapped and log_w must have the same replica")

    def at_two(*means):
        return func(*(np.asarray(means[:k]) / means[k]))

    def difference(*means):
        return at_two(*means[k:]) - func(*means[:k])

    grad_two = grad_difference = None
    if grad is not None:
        def grad_two(*means):
            g = np.asarray(grad(*(np.asarray(means[:k]) / means[k])), dtype=float)
            return [*(g / means[k]), -float(g @ np.asarray(means[:k])) / means[k] ** 2]

        def grad_difference(*means):
            return [*(-np.asarray(grad(*means[:k]), dtype=float)), *grad_two(*means[k:])]

    return (gamma_method_derived(difference, [*at_one, *reweighted, weights], S, grad_difference),
            gamma_method_derived(at_two, [*reweighted, weights], S, grad_two))


def log_mean_weight_gamma(log_w, S: float = 1.5) -> GammaResult:
    """``log <w>`` of log-weights on a Markov chain (shaped like ``data`` of `gamma_method`), its error
    by the Γ-method with the autocorrelations of w (e.g. log(Z_2/Z_1) of `transported_derived`'s weights)."""
    weights, top = _weights(log_w)
    result = gamma_method_derived(np.log, [weights], S, grad=lambda c: [1.0 / c])
    return GammaResult(result.value + top, result.error, result.tau_int, result.tau_int_error, result.window,
                       result.n_samples, result.rho)


def bin_data(data, bin_size: int) -> np.ndarray:
    """Block means over the last axis, dropping the remainder.

    Parameters
    ----------
    data : array_like, shape (..., N)
    bin_size : int
        Number of consecutive samples per block, ``1 <= bin_size <= N``.

    Returns
    -------
    np.ndarray, shape (..., N // bin_size)
    """
    x = np.asarray(data, dtype=float)
    b = operator.index(bin_size)
    if x.ndim < 1 or b < 1 or b > x.shape[-1]:
        raise ValueError(f"need 1 <= bin_size <= N, got bin_size={b} for shape {x.shape}")
    nb = x.shape[-1] // b
    return x[..., : nb * b].reshape(*x.shape[:-1], nb, b).mean(axis=-1)


def _ess(lw: np.ndarray) -> float:
    lw = lw - lw.max()
    return float(min(np.exp(2 * logsumexp(lw) - logsumexp(2 * lw) - np.log(len(lw))), 1.0))


def effective_sample_size(log_w) -> float:
    """ESS per sample ``(Σw)² / (N Σw²)`` in ``(0, 1]`` from ``log_w`` of shape (N,)."""
    return _ess(_vector(log_w, "log_w"))


def ess_bootstrap_error(log_w, n_boot: int = 200, seed: int = 0) -> float:
    """Standard deviation of the ESS per sample over ``n_boot`` bootstrap resamples.

    Parameters
    ----------
    log_w : array_like, shape (N,)
    n_boot : int
        Number of resamples (>= 2).
    seed : int
        Seed of the ``numpy.random.default_rng`` used for resampling.
    """
    return _bootstrap_std(_ess, _vector(log_w, "log_w"), n_boot, seed)


def ess_versus_samples(log_w, n_points: int = 12, n_boot: int = 50, seed: int = 0, n_min: int = 16) -> dict:
    """The ESS per sample of n weights against n, with bootstrap bands: at ``n_points`` sizes n from
    ``n_min`` to N (geometric), ``n_boot`` resamples of n of the N weights (with replacement); the
    median and the 16th and 84th percentiles of their ESS per sample. A small-sample ESS of heavy-
    tailed weights is biased upwards: the curve falls until n has seen the large weights.

    Returns ``{"n": [...], "median": [...], "low": [...], "high": [...], "n_boot": n_boot}``."""
    lw = _vector(log_w, "log_w")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    sizes = np.unique(np.geomspace(min(n_min, len(lw)), len(lw), n_points).round().astype(int))
    rng = np.random.default_rng(seed)
    curve = {"n": [int(n) for n in sizes], "median": [], "low": [], "high": [], "n_boot": n_boot}
    for n in sizes:
        values = [_ess(lw[rng.integers(0, len(lw), n)]) for _ in range(n_boot)]
        low, median, high = np.percentile(values, [16, 50, 84])
        curve["median"].append(float(median))
        curve["low"].append(float(low))
        curve["high"].append(float(high))
    return curve


def _forward_ess(lw: np.ndarray) -> float:
    return float(min(np.exp(2 * np.log(len(lw)) - logsumexp(lw) - logsumexp(-lw)), 1.0))


def forward_effective_sample_size(log_w) -> float:
    """Forward ESS per sample ``N² / (Σ w · Σ 1/w)`` in ``(0, 1]`` from ``log_w`` of shape (N,)
    evaluated at samples of the *target* p (not of q).

    With w = p̃/q and x ~ p: E_p[1/w] = 1/Z and E_p[w] = E_q[w²]/Z, so 1/(E_p[w] E_p[1/w]) =
    Z²/E_q[w²] is the (reverse) ESS per sample of q, estimated here from target samples, where it
    sees the regions of p that q misses (Blessing et al., arXiv:2406.07423). Invariant under a
    constant shift of log w, so it needs no normalisation.
    """
    return _forward_ess(_vector(log_w, "log_w"))


def _bootstrap_std(statistic: Callable[[np.ndarray], float], x: np.ndarray, n_boot: int, seed: int) -> float:
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    rng = np.random.default_rng(seed)
    return float(np.std([statistic(x[rng.integers(0, len(x), len(x))]) for _ in range(n_boot)], ddof=1))


def forward_ess_bootstrap_error(log_w, n_boot: int = 200, seed: int = 0) -> float:
    """Standard deviation of the forward ESS per sample over ``n_boot`` bootstrap resamples of
    ``log_w`` (N,) (independent target samples assumed)."""
    return _bootstrap_std(_forward_ess, _vector(log_w, "log_w"), n_boot, seed)


def log_mean_weight(log_w) -> tuple[float, float]:
    """``log((1/N) Σ w)`` and its delta-method error from independent ``log_w`` of shape (N,).

    With normalised log-weights ``log w = −S − log q`` (q a normalised density of the samples) the
    mean weight is an unbiased estimate of ``Z = ∫ e^{−S}``, so this estimates log Z. The error is
    ``δ log Z = s_w / (w̄ √N)`` with ``s_w`` the sample standard deviation (ddof=1) of the weights:
    the delta method, δ log w̄ = δw̄ / w̄. It equals ``sqrt((1/ESS − 1)/(N − 1))`` exactly, and is as
    trustworthy as the ESS (Pareto k̂ < 0.5). The logarithm biases the estimate low by about
    ``δ²/2``, below the error whenever δ < 1. Evaluated after subtracting ``max(log_w)``.
    """
    lw = _vector(log_w, "log_w")
    top = lw.max()
    w = np.exp(lw - top)
    mean = w.mean()
    return float(top + np.log(mean)), float(w.std(ddof=1) / (mean * np.sqrt(len(w))))


def pareto_k(log_w) -> float:
    """Pareto k̂ of importance weights (PSIS diagnostic; Vehtari, Simpson, Gelman, Yao & Gabry,
    arXiv:1507.02646): the shape of a generalised Pareto distribution fitted by maximum likelihood
    (``scipy.stats.genpareto``, location at the threshold) to the exceedances of the
    M = ⌈min(N/5, 3√N)⌉ largest weights. k̂ < 0.5: the weights have finite variance and the ESS and
    reweighted errors are reliable; 0.5 ≤ k̂ < 0.7: finite mean, slow convergence; k̂ ≥ 0.7: the
    ESS, reweighted means and their errors are not to be trusted at any practical N. −inf when
    the largest weights are all equal (no tail). NaN for fewer than 25 weights.
    """
    from scipy.stats import genpareto

    lw = np.sort(_vector(log_w, "log_w"))
    m = int(np.ceil(min(0.2 * len(lw), 3 * np.sqrt(len(lw)))))
    if m < 5:
        return float("nan")
    top = lw[-1]
    exceedances = np.exp(lw[-m:] - top) - np.exp(lw[-m - 1] - top)  # in units of the largest weight
    if not exceedances.max() > 0:
        return float("-inf")
    shape, _, _ = genpareto.fit(exceedances, floc=0)
    return float(shape)


def reweighted_mean(obs, log_w) -> tuple[float, float]:
    """Self-normalised importance-sampling estimate of ``<O>_p`` from samples of ``q``.

    ``Ō = Σ w O / Σ w`` with ``w = exp(log_w)``; the error is the delta-method
    (ratio estimator) error for independent samples,
    ``σ² = N/(N−1) Σ w² (O − Ō)² / (Σw)²``, which reduces to the standard error
    of the mean (ddof=1) for equal weights.

    Parameters
    ----------
    obs, log_w : array_like, shape (N,)

    Returns
    -------
    (mean, error) : tuple of float
    """
    o, lw = _vector(obs, "obs"), _vector(log_w, "log_w")
    if o.shape != lw.shape:
        raise ValueError(f"obs and log_w shapes differ: {o.shape} vs {lw.shape}")
    w = np.exp(lw - lw.max())
    sw = w.sum()
    mean = float(w @ o / sw)
    n = len(o)
    var = n / (n - 1) * np.sum((w * (o - mean)) ** 2) / sw**2
    return mean, float(np.sqrt(var))


def reweighted_derived(func: Callable[..., float], datas: Sequence, log_w,
                       grad: Callable[..., Sequence[float]] | None = None) -> tuple[float, float]:
    """``f(<a_1>_p, ..., <a_K>_p)`` from independent samples of ``q`` with weights ``exp(log_w)``.

    The means are self-normalised reweighted means; the error is the delta-method error of the
    projected observable ``Σ_k ∂_k f a_k`` (as `reweighted_mean`), i.e. linear error propagation.

    Parameters
    ----------
    func : callable ``func(*means) -> float``
    datas : sequence of K arrays of shape (N,)
    log_w : array_like, shape (N,)
    """
    prims = [_vector(d, f"datas[{k}]") for k, d in enumerate(datas)]
    lw = _vector(log_w, "log_w")
    if not prims or any(p.shape != lw.shape for p in prims):
        raise ValueError("datas must be non-empty and shaped like log_w")
    w = np.exp(lw - lw.max())
    means = np.array([w @ p / w.sum() for p in prims])
    value, g = _value_and_gradient(func, means, [p.std() for p in prims], grad)
    _, error = reweighted_mean(sum(gk * p for gk, p in zip(g, prims)), lw)
    return value, error
