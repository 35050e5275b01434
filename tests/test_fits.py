"""Scaling fits on synthetic data with known parameters: unbiased, errors right (pulls ~ N(0, 1)),
χ²/dof ~ 1 for the true law and ≫ 1 for a wrong one."""

import math

import numpy as np
import pytest

from suite.report import fits

REPLICAS = 400


def pulls_of(make_fit, truth: dict, rng, replicas=REPLICAS):
    """Pulls (fitted − true)/error per parameter and χ²/dof over independent synthetic data sets."""
    pulls, chi2_dof = {k: [] for k in truth}, []
    for _ in range(replicas):
        fit = make_fit(rng)
        for name, value in truth.items():
            pulls[name].append((fit.params[name] - value) / fit.errors[name])
        chi2_dof.append(fit.chi2_dof)
    return {k: np.array(v) for k, v in pulls.items()}, np.array(chi2_dof)


def assert_standard_normal(pulls: np.ndarray):
    assert abs(pulls.mean()) < 4 / math.sqrt(len(pulls)) + 0.05, pulls.mean()
    assert 0.85 < pulls.std() < 1.15, pulls.std()


def test_dynamic_exponent_pulls():
    rng = np.random.default_rng(1)
    xi = np.array([2.0, 3.0, 4.0, 6.0, 8.0])
    c, z = 1.3, 2.1
    tau = c * xi**z
    sigma = 0.04 * tau

    pulls, chi2_dof = pulls_of(lambda r: fits.fit_dynamic_exponent(xi, tau + sigma * r.normal(size=5), sigma),
                               {"c": c, "z": z}, rng)
    assert_standard_normal(pulls["z"])
    assert_standard_normal(pulls["c"])
    assert 0.85 < chi2_dof.mean() < 1.15  # E[χ²/dof] = 1 for the true law


def test_ess_volume_law_pulls_and_decay_volume():
    rng = np.random.default_rng(2)
    volume = np.array([64, 144, 256, 576, 1024], dtype=float)
    ess0 = 0.8
    ess = ess0 ** (volume / 64)
    sigma = 0.01 + 0.02 * ess

    pulls, chi2_dof = pulls_of(lambda r: fits.fit_ess_volume(volume, ess + sigma * r.normal(size=5), sigma),
                               {"ess_v0": ess0}, rng)
    assert_standard_normal(pulls["ess_v0"])
    assert 0.8 < chi2_dof.mean() < 1.2
    fit = fits.fit_ess_volume(volume, ess, sigma)
    assert fit.fixed["v0"] == 64 and fit.params["ess_v0"] == pytest.approx(ess0, rel=1e-6)
    v_e, v_e_error = fits.ess_decay_volume(fit)
    assert v_e == pytest.approx(-64 / math.log(ess0)) and v_e_error > 0


def test_ess_volume_law_reference_volume_is_a_convention():
    """Only ln ESS(V₀)/V₀ is identified: a different V₀ gives the same curve."""
    volume = np.array([64, 256, 1024], dtype=float)
    ess = np.array([0.9, 0.62, 0.2])
    sigma = np.full(3, 0.02)
    a, b = fits.fit_ess_volume(volume, ess, sigma), fits.fit_ess_volume(volume, ess, sigma, v0=100)
    assert a.chi2 == pytest.approx(b.chi2, rel=1e-6)
    assert np.allclose(a(volume), b(volume), rtol=1e-6)
    assert fits.ess_decay_volume(a)[0] == pytest.approx(fits.ess_decay_volume(b)[0], rel=1e-6)


def test_training_cost_reports_both_laws_and_prefers_the_true_one():
    rng = np.random.default_rng(3)
    size = np.array([8.0, 12.0, 16.0, 24.0, 32.0])
    truth = {"power": 0.5 * size**2.5, "exponential": 3.0 * np.exp(0.2 * size)}
    for law, cost in truth.items():
        sigma = 0.03 * cost
        found = fits.fit_training_cost(size, cost + sigma * rng.normal(size=5), sigma)
        assert set(found) == {"power", "exponential"}
        assert fits.preferred(found) == law
        other = "exponential" if law == "power" else "power"
        assert found[other].chi2_dof > 5 * max(found[law].chi2_dof, 1)
    pulls, _ = pulls_of(lambda r: fits.fit_training_cost(size, truth["power"] * (1 + 0.03 * r.normal(size=5)),
                                                          0.03 * truth["power"])["power"],
                        {"c": 0.5, "b": 2.5}, rng, replicas=200)
    assert_standard_normal(pulls["b"])


def test_points_without_errors_are_left_out_and_too_few_points_fail():
    xi = np.array([2.0, 4.0, 8.0, 16.0])
    tau = 2 * xi**2
    fit = fits.fit_dynamic_exponent(xi, np.append(tau[:3], np.nan), [0.1, 0.3, 1.0, 1.0])
    assert fit.dof == 1 and fit.params["z"] == pytest.approx(2, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fits.fit_dynamic_exponent(xi[:1], tau[:1], [0.1])


def test_break_even_and_amortised_cost():
    n_star, err = fits.break_even(100.0, 0.01, 0.001, 0.11, 0.002)
    assert n_star == pytest.approx(1000.0)
    assert err == pytest.approx(1000 / 0.1 * math.hypot(0.001, 0.002))
    # At N*, the amortised flow cost equals HMC's.
    assert fits.amortised_cost(100.0, 0.01, n_star) == pytest.approx(0.11)
    assert fits.break_even(100.0, 0.2, 0.01, 0.1, 0.01) == (math.inf, pytest.approx(math.nan, nan_ok=True))


def test_summary_is_flat_with_errors():
    fit = fits.fit_dynamic_exponent([2, 4, 8], [8.1, 31.5, 130.0], [0.5, 1.5, 6.0])
    s = fit.summary()
    assert {"c", "c_error", "z", "z_error", "chi2", "dof", "chi2_dof", "p_value"} <= set(s)
    assert s["dof"] == 1 and 0 <= s["p_value"] <= 1
