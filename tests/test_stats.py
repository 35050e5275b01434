"""Tests for suite.stats: Γ-method on AR(1) chains, pyerrors cross-checks, ESS, reweighting."""
import numpy as np
import pytest
from scipy.signal import lfilter

from suite import stats


def ar1(a, shape, seed):
    """Stationary AR(1) x_t = a x_{t-1} + sqrt(1-a²) ε_t with unit variance, along the last axis."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(shape)
    zi = a * rng.standard_normal(shape[:-1] + (1,))
    return lfilter([np.sqrt(1 - a * a)], [1.0, -a], eps, axis=-1, zi=zi)[0]


def tau_exact(a):
    return 0.5 * (1 + a) / (1 - a)


@pytest.mark.parametrize("a", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(100_000,), (8, 12_500)])
def test_ar1_tau_and_error(a, shape):
    x = ar1(a, shape, seed=int(10 * a) + len(shape))
    res = stats.gamma_method(x)
    n = x.size
    assert res.n_samples == n
    assert abs(res.tau_int - tau_exact(a)) < 4 * res.tau_int_error
    assert res.error == pytest.approx(np.sqrt(2 * tau_exact(a) / n), rel=0.12)
    assert abs(res.value) < 4 * res.error
    assert res.n_eff == pytest.approx(n / (2 * res.tau_int))
    assert res.rho[0] == 1.0 and len(res.rho) == shape[-1] // 2 > 2 * res.window


def test_error_coverage():
    x = ar1(0.7, (200, 2000), seed=7)
    results = [stats.gamma_method(row) for row in x]
    frac = np.mean([abs(r.value) < r.error for r in results])
    assert abs(frac - 0.683) < 0.1  # binomial sd ≈ 0.033
    assert np.mean([r.tau_int for r in results]) == pytest.approx(tau_exact(0.7), rel=0.1)


def _pe_obs(pe, reps):
    names = ["ens"] if len(reps) == 1 else [f"ens|r{i}" for i in range(len(reps))]
    return pe.Obs(list(reps), names)


REPLICA_CASES = {
    "single": lambda a, s: [ar1(a, (5000,), s)],
    "equal": lambda a, s: list(ar1(a, (4, 3000), s)),
    "unequal": lambda a, s: [ar1(a, (n,), s + n) for n in (3000, 1200, 77)],
}


@pytest.mark.parametrize("a", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("case", sorted(REPLICA_CASES))
def test_matches_pyerrors(a, case):
    pe = pytest.importorskip("pyerrors")
    reps = [r + 1.0 for r in REPLICA_CASES[case](a, 3)]
    ref = _pe_obs(pe, reps)
    ref.gamma_method(S=1.5)
    res = stats.gamma_method(reps)
    assert res.window == ref.e_windowsize["ens"]
    assert res.value == pytest.approx(ref.value, rel=1e-12)
    assert res.error == pytest.approx(ref.dvalue, rel=1e-10)
    assert res.tau_int == pytest.approx(ref.e_tauint["ens"], rel=1e-10)
    assert res.tau_int_error == pytest.approx(ref.e_dtauint["ens"], rel=1e-10)
    np.testing.assert_allclose(res.rho, ref.e_rho["ens"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", sorted(REPLICA_CASES))
def test_derived_ratio_matches_pyerrors(case):
    pe = pytest.importorskip("pyerrors")
    num = [r + 3.0 for r in REPLICA_CASES[case](0.8, 11)]
    den = [2.0 + 0.5 * n + 0.3 * r for n, r in zip(num, REPLICA_CASES[case](0.5, 12))]
    ref = _pe_obs(pe, num) / _pe_obs(pe, den)
    ref.gamma_method(S=1.5)
    res = stats.gamma_method_derived(lambda x, y: x / y, [num, den])
    exact = stats.gamma_method_derived(lambda x, y: x / y, [num, den], grad=lambda x, y: [1 / y, -x / y**2])
    assert res.window == exact.window == ref.e_windowsize["ens"]
    assert res.value == pytest.approx(ref.value, rel=1e-12)
    assert res.error == pytest.approx(ref.dvalue, rel=1e-8)  # numerical derivative
    assert exact.error == pytest.approx(ref.dvalue, rel=1e-10)
    assert exact.tau_int == pytest.approx(ref.e_tauint["ens"], rel=1e-10)


def test_derived_linear_equals_primary():
    x = ar1(0.5, (4, 2000), seed=5)
    y = ar1(0.3, (4, 2000), seed=6)
    res = stats.gamma_method_derived(lambda u, v: 2 * u - v, [x, y])
    prim = stats.gamma_method(2 * x - y)
    assert res.value == pytest.approx(prim.value, abs=1e-12)
    assert res.error == pytest.approx(prim.error, rel=1e-8)
    assert res.window == prim.window


def test_constant_series():
    for data in ([3.7] * 50, np.full((3, 40), -1.25)):
        res = stats.gamma_method(data)
        assert (res.error, res.tau_int, res.tau_int_error, res.window) == (0.0, 0.5, 0.0, 0)
        assert res.value == pytest.approx(np.mean(data))
    res = stats.gamma_method_derived(lambda u, v: u * v, [np.full(30, 2.0), np.full(30, 3.0)])
    assert (res.value, res.error, res.window) == (6.0, 0.0, 0)


def test_invalid_input():
    with pytest.raises(ValueError, match="non-finite"):
        stats.gamma_method([1.0, np.nan, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.effective_sample_size([0.0, np.inf])
    with pytest.raises(ValueError, match="at least 2"):
        stats.gamma_method([1.0])
    with pytest.raises(ValueError, match="at least 2"):
        stats.gamma_method([np.arange(10.0), np.array([1.0])])
    with pytest.raises(ValueError, match="same replica lengths"):
        stats.gamma_method_derived(lambda u, v: u + v, [np.ones((2, 10)), np.ones((2, 11))])
    with pytest.raises(ValueError):
        stats.gamma_method(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError):
        stats.gamma_method(np.arange(10.0), S=0)


def test_tiny_series():
    res = stats.gamma_method([1.0, 2.0])
    assert (res.window, res.tau_int, res.tau_int_error) == (0, 0.5, 0.0)
    assert res.error > 0


def test_bin_data():
    x = np.arange(10.0)
    np.testing.assert_allclose(stats.bin_data(x, 3), [1.0, 4.0, 7.0])
    np.testing.assert_allclose(stats.bin_data(x, 1), x)
    y = np.arange(24.0).reshape(2, 3, 4)
    b = stats.bin_data(y, 2)
    assert b.shape == (2, 3, 2)
    np.testing.assert_allclose(b, y.reshape(2, 3, 2, 2).mean(-1))
    for bad in (0, 11):
        with pytest.raises(ValueError):
            stats.bin_data(x, bad)


def test_ess():
    n = 1000
    assert stats.effective_sample_size(np.full(n, 3.3)) == pytest.approx(1.0, abs=1e-14)
    one = np.full(n, -1e4)
    one[17] = 0.0
    assert stats.effective_sample_size(one) == pytest.approx(1 / n, rel=1e-12)
    lw = np.random.default_rng(0).normal(0.0, 1.5, n)
    w = np.exp(lw)
    direct = w.sum() ** 2 / (n * (w**2).sum())
    ess = stats.effective_sample_size(lw)
    assert ess == pytest.approx(direct, rel=1e-12)
    assert stats.effective_sample_size(lw + 1e4) == pytest.approx(ess, rel=1e-9)
    assert stats.effective_sample_size(lw - 1e4) == pytest.approx(ess, rel=1e-9)
    assert 0 < ess < 1


def test_ess_bootstrap_error():
    rng = np.random.default_rng(2)
    n = 2000
    assert stats.ess_bootstrap_error(np.zeros(n)) == 0.0
    lw = rng.normal(0.0, 0.5, (100, n))  # mild tails: bootstrap is reliable here
    spread = np.std([stats.effective_sample_size(r) for r in lw], ddof=1)
    boot = stats.ess_bootstrap_error(lw[0], n_boot=200, seed=1)
    assert boot == stats.ess_bootstrap_error(lw[0], n_boot=200, seed=1)
    assert 0.6 < boot / spread < 1.6


def test_ess_versus_samples_shows_the_small_sample_bias():
    """Gaussian log-weights of variance σ² have ESS per sample e^{−σ²}: at the full N the band holds it,
    with few samples the median lies far above it (the large weights are rarely drawn), and the band
    at each n covers the spread of the ESS of fresh draws of n."""
    rng = np.random.default_rng(7)
    sigma = 1.5
    lw = rng.normal(0.0, sigma, 200_000)
    curve = stats.ess_versus_samples(lw, n_points=8, n_boot=60, seed=3)
    exact = np.exp(-sigma**2)
    assert curve["n"][0] == 16 and curve["n"][-1] == len(lw) and len(curve["median"]) == 8
    assert curve["low"][-1] <= exact * 1.1 and curve["high"][-1] >= exact * 0.9
    assert curve["median"][0] > 3 * exact
    assert np.all(np.diff(curve["median"]) < 0.02)     # falls (up to noise) towards the exact value
    fresh = [stats.effective_sample_size(rng.normal(0.0, sigma, curve["n"][2])) for _ in range(400)]
    low, high = np.percentile(fresh, [16, 84])
    assert curve["low"][2] == pytest.approx(low, rel=0.35) and curve["high"][2] == pytest.approx(high, rel=0.35)


def test_reweighted_mean():
    mu, n = 0.5, 20_000
    x = np.random.default_rng(4).standard_normal(n)
    log_w = mu * x - 0.5 * mu**2  # log N(x; mu, 1) - log N(x; 0, 1)
    mean, err = stats.reweighted_mean(x, log_w)
    assert abs(mean - mu) < 4 * err
    assert err == pytest.approx(np.sqrt(np.exp(mu**2) * (1 + mu**2) / n), rel=0.1)  # E_p[w (x-μ)²] / n
    assert stats.reweighted_mean(x, log_w + 1e4) == pytest.approx((mean, err), rel=1e-9)
    mean0, err0 = stats.reweighted_mean(x, np.zeros(n))
    assert mean0 == pytest.approx(x.mean(), rel=1e-12)
    assert err0 == pytest.approx(x.std(ddof=1) / np.sqrt(n), rel=1e-12)
    with pytest.raises(ValueError, match="shapes differ"):
        stats.reweighted_mean(x, log_w[:-1])


def test_reweighted_derived_ratio_against_bootstrap():
    """A ratio of reweighted means: value near the exact one, error close to a bootstrap error."""
    rng = np.random.default_rng(42)
    n, mu = 20000, 0.4
    x = rng.normal(size=n)
    log_w = mu * x - mu**2 / 2  # N(0,1) reweighted to N(mu,1)
    a, b = x**2, 1.0 + x
    value, error = stats.reweighted_derived(lambda p, q: p / q, [a, b], log_w)
    exact = (1 + mu**2) / (1 + mu)
    assert abs(value - exact) < 4 * error
    w = np.exp(log_w)
    boot = []
    for _ in range(300):
        i = rng.integers(0, n, n)
        boot.append((w[i] @ a[i]) / (w[i] @ b[i]))
    assert error == pytest.approx(np.std(boot), rel=0.15)
    # Equal weights: the derived value is f of the plain means.
    value0, _ = stats.reweighted_derived(lambda p, q: p / q, [a, b], np.zeros(n))
    assert value0 == pytest.approx(a.mean() / b.mean(), rel=1e-12)


@pytest.mark.parametrize("k", [0.3, 0.5, 0.9])
def test_pareto_k_recovers_the_tail_index_of_pareto_weights(k):
    # log w ~ Exponential(scale k) makes w Pareto with tail index 1/k, i.e. generalised Pareto shape k.
    rng = np.random.default_rng(7)
    estimates = [stats.pareto_k(rng.exponential(k, 16384)) for _ in range(8)]
    assert abs(np.mean(estimates) - k) < 0.1, estimates


def test_pareto_k_separates_good_from_unreliable_weights():
    rng = np.random.default_rng(3)
    assert stats.pareto_k(rng.normal(0, 0.3, 16384)) < 0.3  # near-perfect flow: light tail
    assert stats.pareto_k(rng.normal(0, 3.0, 16384)) > 0.7  # log-normal weights of a poor flow
    assert stats.pareto_k(np.zeros(1000)) == -np.inf
    assert np.isnan(stats.pareto_k(np.zeros(10)))
