"""Mode coverage (`suite.modes`): the χ² test against exact sector probabilities, its tail merging,
the Markov and reweighted variants, and the metric in rows of real runs."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from suite.chain import Chain
from suite.exact.u1 import charge_distribution
from suite.modes import Sectors, _bins, chi2_test, mode_coverage
from suite.theories import build_theory


def u1_sectors(beta=2.0, lattice=(8, 8)):
    return build_theory("u1", lattice, "wilson", {"beta": beta}).sectors()


def test_tail_bins_expect_at_least_five():
    expected = np.array([0.1, 0.5, 3.0, 20.0, 40.0, 20.0, 3.0, 0.5, 0.1, 0.01])
    groups = _bins(expected)
    assert [expected[g].sum() >= 5 for g in groups] == [True] * len(groups)
    assert groups[0] == slice(0, 4) and groups[-1] == slice(5, 10)
    assert sum(g.stop - g.start for g in groups) == len(expected)
    assert _bins(np.array([1.0, 2.0])) == [slice(0, 2)]


def test_exact_draws_pass_and_the_p_values_are_uniform():
    """Fractions of exact draws from P(Q): over 300 seeds the p-values are uniform (KS), and a
    sampler that never leaves Q = 0, ±1 is rejected."""
    sectors = u1_sectors()
    p = sectors.probabilities
    rng = np.random.default_rng(5)
    p_values = []
    for _ in range(300):
        draws = rng.choice(len(p), size=2000, p=p)
        p_values.append(chi2_test(np.bincount(draws, minlength=len(p)) / 2000, p, 2000)["p_value"])
    assert scipy_stats.kstest(p_values, "uniform").pvalue > 1e-3
    truncated = np.where(np.abs(sectors.labels) <= 1, p, 0.0)
    draws = rng.choice(len(p), size=2000, p=truncated / truncated.sum())
    assert chi2_test(np.bincount(draws, minlength=len(p)) / 2000, p, 2000)["p_value"] < 1e-6


def test_reweighting_restores_the_exact_sectors_of_a_wrong_proposal():
    """Samples uniform over |Q| ≤ 3 with weights P(Q)/q(Q): the unweighted test rejects, the
    reweighted one (Kish N_eff) accepts."""
    sectors = u1_sectors()
    rng = np.random.default_rng(11)
    charges = rng.integers(-3, 4, size=20000).astype(float)
    exact = dict(zip(sectors.labels.tolist(), sectors.probabilities))
    log_w = np.log([exact[int(q)] * 7 for q in charges])
    chain = Chain(observables={"topological_charge": charges[None]}, log_weights=log_w[None])
    coverage = mode_coverage(chain, sectors, markov=False)
    assert coverage["unweighted"]["p_value"] < 1e-10
    assert coverage["reweighted"]["p_value"] > 1e-3
    assert coverage["reweighted"]["n_effective"] < 20000


def test_markov_chains_count_effective_samples():
    """A chain that repeats each exact draw 10 times has N_eff ≈ N/10; a frozen chain has N_eff = R."""
    sectors = u1_sectors()
    rng = np.random.default_rng(3)
    draws = rng.choice(sectors.labels, size=(4, 500), p=sectors.probabilities).astype(float)
    sticky = np.repeat(draws, 10, axis=1)
    coverage = mode_coverage(Chain(observables={"topological_charge": sticky}), sectors, markov=True)
    assert coverage["unweighted"]["n_effective"] == pytest.approx(2000, rel=0.3)
    assert "reweighted" not in coverage
    frozen = Chain(observables={"topological_charge": np.zeros((4, 500))})
    assert mode_coverage(frozen, sectors, markov=True)["unweighted"]["n_effective"] == 4


def test_values_beyond_the_outermost_sector_count_in_it():
    sectors = Sectors("mag", np.array([-1, 1]), np.array([0.5, 0.5]), "exact: Z2 symmetry",
                      assign=lambda m: np.where(m > 0, 1, -1))
    chain = Chain(observables={"mag": np.array([[0.3, -0.2, 0.1, 0.4]])})
    assert mode_coverage(chain, sectors, markov=False)["unweighted"]["fractions"] == [0.25, 0.75]
    q_sectors = u1_sectors(beta=6.0)
    far = Chain(observables={"topological_charge": np.array([[40.0, -40.0]])})
    fractions = mode_coverage(far, q_sectors, markov=False)["unweighted"]["fractions"]
    assert fractions[0] == fractions[-1] == 0.5


def test_u1_sectors_are_the_exact_charge_distribution():
    sectors = u1_sectors(beta=3.0, lattice=(8, 8))
    q, p = charge_distribution(3.0, 64)
    assert np.array_equal(sectors.labels, q) and np.allclose(sectors.probabilities, p)
    assert build_theory("u1", (8, 8), "wilson", {"beta": 0.0}).sectors() is None


def test_rows_of_hmc_runs_carry_mode_coverage(tmp_path):
    from suite.cli import main
    from suite.harness.rows import read_rows

    for entry in ("u1/beta1/L8", "phi4/free/L8"):
        assert main(["run", "--entry", entry, "--sampler", "hmc", "--chains", "2", "--n-traj", "200",
                     "--therm", "20", "--out", str(tmp_path), "--seed", "1"]) == 0
    assert main(["run", "--entry", "u1/beta1/L8", "--sampler", "ais", "--n-samples", "512", "--n-temperatures", "5",
                 "--out", str(tmp_path), "--seed", "1"]) == 0
    rows = {r.entry: r for r in read_rows(tmp_path) if r.sampler["name"] == "hmc"}
    ais = next(r for r in read_rows(tmp_path) if r.sampler["name"] == "ais")
    assert ais.metrics["mode_coverage"]["reweighted"]["n_effective"] < 512
    assert ais.metrics["ess_curve"]["n"][-1] == 512
    u1 = rows["u1/beta1/L8"].metrics["mode_coverage"]
    assert u1["observable"] == "topological_charge" and sum(u1["exact"]) == pytest.approx(1)
    assert u1["unweighted"]["p_value"] > 1e-4           # HMC at β = 1 moves between sectors freely
    phi4 = rows["phi4/free/L8"].metrics["mode_coverage"]
    assert phi4["labels"] == [-1, 1] and phi4["unweighted"]["p_value"] > 1e-4
    from suite.report.build import build_report

    report = build_report([tmp_path], tmp_path / "report").read_text()
    assert "## Mode coverage" in report and "### u1/beta1/L8 (topological_charge" in report
    assert (tmp_path / "report" / "figures" / "modes-phi4_free_L8.png").is_file()
    assert "## ESS against the number of samples" in report
    assert (tmp_path / "report" / "figures" / "ess-curve-u1_beta1_L8.png").is_file()
