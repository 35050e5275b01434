"""Annealed importance sampling and log Z: exact free-field log Z and proposal ESS, AIS against them,
U(1)'s log Z convention, log Z of flows, and the ``ais`` sampler through run, report and compare."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reference.ais import AnnealedTheory, power_schedule, run_ais
from suite import stats
from suite.catalogue import get_entry
from suite.cli import main
from suite.exact.free_scalar import free_scalar_exact, gaussian_proposal_ess
from suite.exact.u1 import u1_exact
from suite.harness.rows import read_rows
from suite.chain import Chain
from suite.metrics import estimate_observables, sampler_metrics
from suite.samplers import run_sampler
from suite.theories.phi4 import Phi4
from suite.theories.u1 import U1

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "fourier_gaussian.py")


def dense_kernel(theory) -> torch.Tensor:
    """K of S = ½ φᵀKφ + CV as a dense matrix: the Hessian, column by column from the force."""
    v = theory.volume
    eye = torch.eye(v, dtype=torch.float64).reshape(v, *theory.lattice)
    return theory.force(eye).reshape(v, v)


def pull(value, error, exact):
    return (value - exact) / error


# -- exact values ------------------------------------------------------------------------------


@pytest.mark.parametrize("theory", [Phi4.from_lecture((4, 4), m2=0.3, lam=0.0),
                                    Phi4.from_hopping((2, 4), kappa=0.1, lam=0.0),  # C ≠ 0, an L = 2 axis
                                    Phi4((3, 2, 2), J=0.4, A=1.5, B=0.0, C=0.25)])
def test_free_field_log_z_is_the_gaussian_integral(theory):
    kernel = dense_kernel(theory)
    v = theory.volume
    x = torch.randn(3, *theory.lattice, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flat = x.reshape(3, v)
    assert torch.allclose(theory.action(x), 0.5 * torch.einsum("bi,ij,bj->b", flat, kernel, flat) + theory.C * v)
    expected = -theory.C * v + 0.5 * v * math.log(2 * math.pi) - 0.5 * torch.logdet(kernel).item()
    assert free_scalar_exact(theory)["log_z"] == pytest.approx(expected, rel=1e-12)


def test_gaussian_proposal_ess_from_determinants():
    theory = Phi4((4, 4), J=0.1, A=0.6, B=0.0)
    kernel = dense_kernel(theory)
    for a in (1.0, 0.7, 1.5):
        q = a * torch.eye(theory.volume, dtype=torch.float64)
        expected = math.exp(0.5 * torch.logdet(q).item() + 0.5 * torch.logdet(2 * kernel - q).item()
                            - torch.logdet(kernel).item())
        assert gaussian_proposal_ess(theory, a) == pytest.approx(expected, rel=1e-12)
    # a proposal narrower than √2 × the target in some mode has infinite weight variance
    assert gaussian_proposal_ess(theory, 2 * 0.8 + 0.01) == 0.0
    assert gaussian_proposal_ess(Phi4((4, 4), J=0.0, A=0.5, B=0.0)) == pytest.approx(1.0)  # q = p


def test_u1_exact_log_z_is_over_lebesgue_measure_of_the_links():
    from suite.exact.u1 import log_partition_function

    theory = U1((4, 4), beta=1.5)
    n_links = 2 * 16
    assert u1_exact(theory)["log_z"] == pytest.approx(log_partition_function(1.5, 16) + n_links * math.log(2 * math.pi))


# -- the annealed theory and the schedule --------------------------------------------------------


@pytest.mark.parametrize("theory", [Phi4.from_lecture((4, 4), m2=0.5, lam=0.7), U1((4, 4), beta=2.0)])
@pytest.mark.parametrize("b", [0.0, 0.3, 1.0])
def test_annealed_force_is_the_gradient_of_the_annealed_action_and_kicks_with_it(theory, b):
    annealed = AnnealedTheory(theory, b)
    x = theory.field.prior_sample(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(annealed.action(y).sum(), y)
    assert torch.allclose(annealed.force(x), grad, atol=1e-10)
    p = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(annealed.kick(x, p.clone(), 0.3), p - 0.3 * grad, atol=1e-10)
    expected = (1 - b) * -theory.field.prior_log_prob(x) + b * theory.action(x)
    assert torch.allclose(annealed.action(x), expected)


def test_power_schedule_runs_from_prior_to_target():
    b = power_schedule(4, 2.0)
    assert b.tolist() == [0.0, 1 / 16, 1 / 4, 9 / 16, 1.0]
    assert power_schedule(1).tolist() == [0.0, 1.0]
    assert np.all(np.diff(power_schedule(100, 3.0)) > 0)
    with pytest.raises(ValueError):
        power_schedule(0)


# -- AIS against exact values --------------------------------------------------------------------


def test_prior_importance_sampling_reproduces_the_exact_ess_and_log_z():
    """AIS with K = 1 is importance sampling from the N(0, 1) prior: its ESS and log Z are exact."""
    theory = Phi4((4, 4), J=0.1, A=0.6, B=0.0)
    chain = run_ais(theory, n_samples=20000, n_temperatures=1, batch=20000, seed=3)
    assert chain.info["force_evaluations_per_sample"] == 0 and chain.info["action_evaluations_per_sample"] == 1
    log_w = chain.log_weights.ravel()
    ess, ess_error = stats.effective_sample_size(log_w), stats.ess_bootstrap_error(log_w)
    exact_ess = gaussian_proposal_ess(theory)
    assert abs(pull(ess, ess_error, exact_ess)) < 4, (ess, ess_error, exact_ess)
    log_z, log_z_error = stats.log_mean_weight(log_w)
    assert 0 < log_z_error < 0.01
    assert abs(pull(log_z, log_z_error, free_scalar_exact(theory)["log_z"])) < 4


def test_ais_log_z_and_observables_match_the_free_field_on_4x4():
    theory = Phi4.from_lecture((4, 4), m2=0.5, lam=0.0)
    chain = run_ais(theory, n_samples=2000, n_temperatures=40, power=2.0, n_leapfrog=4, step_size=0.25, batch=2000,
                    seed=5)
    assert chain.info["evaluations_per_sample"] == 40 + 39 * 5 and 0.8 < chain.info["acceptance"] < 1
    exact = free_scalar_exact(theory)
    metrics = sampler_metrics(chain)
    # from the prior alone the weights have infinite variance here (2K(0) = 1 = the prior's precision)
    assert gaussian_proposal_ess(theory) == 0.0 and metrics["ess"]["value"] > 0.3
    estimates = estimate_observables(chain, theory)
    assert estimates["log_z"]["value"] == metrics["log_z"]["value"]
    for name in ("log_z", "phi2", "chi2", "e_ising", "action_density"):
        est = estimates[name]
        assert abs(pull(est["value"], est["error"], exact[name])) < 4, (name, est, exact[name])


def test_ais_on_u1_reproduces_the_exact_log_z_and_plaquette():
    """The Haar prior's (2π)^{−n} and the character expansion's normalisation agree (2×2 torus, 8 links)."""
    theory = U1((2, 2), beta=1.0)
    chain = run_ais(theory, n_samples=4000, n_temperatures=8, n_leapfrog=3, step_size=0.3, batch=4000, seed=2)
    exact = u1_exact(theory)
    estimates = estimate_observables(chain, theory)
    for name in ("log_z", "plaquette"):
        est = estimates[name]
        assert abs(pull(est["value"], est["error"], exact[name])) < 4, (name, est, exact[name])


def test_flow_log_z_exact_model_and_a_trained_tiny_flow(tmp_path):
    from suite.models import build_model

    theory = Phi4.from_lecture((4, 4), m2=0.5, lam=0.0)
    exact = free_scalar_exact(theory)["log_z"]
    # The example model with σ(p)² = 1/K(p) samples the free field exactly: log w = log Z for every sample.
    model = build_model(f"{EXAMPLE}:build", theory).double()
    p = torch.meshgrid(*[2 * math.pi * torch.arange(n, dtype=torch.float64) / n for n in theory.lattice],
                       indexing="ij")
    with torch.no_grad():
        model.log_sigma.copy_(-0.5 * torch.log(2 * theory.A - 2 * theory.J * sum(torch.cos(pm) for pm in p)))
    from suite.flow_sampling import direct_sampling_chain

    metrics = sampler_metrics(direct_sampling_chain(model, theory, 256, 256))
    assert metrics["log_z"]["value"] == pytest.approx(exact, abs=1e-4)  # float32 sampling of a float64 model
    # A trained tiny flow: a finite estimate with a finite, positive error.
    chain, training = run_sampler({"name": "flow", "model": "affine", "hparams": {"n_layers": 2, "hidden": [4]},
                                   "budget_steps": 20, "n_samples": 1024}, theory, seed=0, dtype=torch.float32,
                                  run_dir=tmp_path, progress=False)
    assert training["steps"] == 20
    metrics = sampler_metrics(chain)
    log_z = metrics["log_z"]
    assert math.isfinite(log_z["value"]) and 0 < log_z["error"] < 1
    # log mean w ≤ log Z + O(error) (Jensen: its expectation is below log Z), and far above a random guess
    assert log_z["value"] < exact + 4 * log_z["error"] and log_z["value"] > exact - 5


def test_ais_sampler_runs_through_run_report_and_compare(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "ais", "--n-samples", "1000", "--n-temperatures",
                 "50", "--batch", "1000", "--seed", "1", "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert row.dtype == "float64" and row.sampler["schedule_power"] == 2.0 and row.training is None
    assert row.sampler_info["evaluations_per_sample"] == 50 + 49 * 6
    log_z = row.metrics["log_z"]
    assert row.observables["log_z"]["value"] == log_z["value"] and 0 < log_z["error"] < 0.2
    ref = row.reference["log_z"]
    assert ref["value"] == pytest.approx(free_scalar_exact(get_entry("phi4/free/L8").build_theory())["log_z"])
    for name in ("log_z", "phi2", "chi2", "e_ising", "action_density"):
        assert abs(row.reference[name]["pull"]) < 4, (name, row.reference[name], row.observables[name])
    assert row.observables["phi2"]["tau_int"] == 0.5 and 0.02 < row.metrics["ess"]["value"] <= 1
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## AIS runs" in report and "evaluations_per_sample" in report and "log_z_pull" in report
    capsys.readouterr()
    assert main(["compare", str(out), "--format", "json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["contender"] == "ais" and entry["ess"] == pytest.approx(row.metrics["ess"]["value"])


def test_ais_options_are_validated(tmp_path, capsys):
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "ais", "--n-temperatures", "0",
                 "--out", str(tmp_path)]) == 2
    assert "'n_temperatures' must be >= 1" in capsys.readouterr().err
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "ais", "--step-size", "0",
                 "--out", str(tmp_path)]) == 2
    assert "'step_size' must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_ais_log_z_pulls_over_seeds_on_free_L8():
    """Over seeds the AIS log Z pulls at L = 8 have mean ≈ 0 and spread ≈ 1 (errors are right)."""
    theory = get_entry("phi4/free/L8").build_theory()
    exact = free_scalar_exact(theory)["log_z"]
    pulls = []
    for seed in range(12):
        chain = run_ais(theory, n_samples=4000, n_temperatures=100, power=2.0, batch=4000, seed=100 + seed)
        pulls.append(pull(*stats.log_mean_weight(chain.log_weights.ravel()), exact))
    pulls = np.array(pulls)
    assert np.abs(pulls).max() < 4, pulls
    assert abs(pulls.mean()) < 4 / math.sqrt(len(pulls)) and 0.4 < pulls.std(ddof=1) < 1.8, pulls


def test_scaling_section_takes_ais_rows_without_training(tmp_path):
    """AIS rows (no training) sit in the cost-vs-ξ part beside HMC, their training cost zero."""
    from test_report_scaling import XI, row

    from suite.report.scaling import scaling_section

    rows = [row(e, int(e.rsplit("L", 1)[1]), "hmc", tmp_path, tau=1.5 * xi**2, xi=xi) for e, xi in XI.items()]
    for e, xi in XI.items():
        ais = row(e, int(e.rsplit("L", 1)[1]), "flow", tmp_path, ess=0.3, reach_step=100, xi=xi)
        ais.sampler = {"name": "ais", "n_samples": 4096, "n_temperatures": 100, "schedule_power": 2.0,
                       "n_leapfrog": 5, "step_size": 0.2, "batch": 1024}
        ais.training, ais.artifacts = None, {}
        rows.append(ais)
    (tmp_path / "figures").mkdir()
    text = "\n".join(scaling_section(rows, tmp_path, target_ess=0.1, n_independent=1e4))
    assert "break-even N" in text
    table = pd.read_csv(tmp_path / "tables" / "break-even.csv")
    assert table.astype(str).apply(lambda c: c.str.contains("ais, 100 temperatures")).any().any()


# -- forward metrics from target samples ----------------------------------------------------------


def test_forward_ess_and_eubo_of_a_gaussian_proposal_are_exact():
    """Exact target samples of a free field against the N(0, 1) prior as q: the forward ESS
    estimates the same exact ESS as the reverse one, and EUBO − log Z is KL(p‖q) =
    ½ (tr Σ − V − log det Σ) with Σ = K⁻¹."""
    theory = Phi4((4, 4), J=0.1, A=0.6, B=0.0)
    kernel = dense_kernel(theory)
    cov = torch.linalg.inv(kernel)
    v = theory.volume
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(20000, v, dtype=torch.float64, generator=gen)
    x = (z @ torch.linalg.cholesky(cov).T).reshape(-1, *theory.lattice)
    log_q = -0.5 * (x.reshape(-1, v) ** 2).sum(1) - 0.5 * v * math.log(2 * math.pi)
    log_w = (-theory.action(x) - log_q).numpy()
    ess, ess_error = stats.forward_effective_sample_size(log_w), stats.forward_ess_bootstrap_error(log_w)
    assert abs(pull(ess, ess_error, gaussian_proposal_ess(theory))) < 4, (ess, ess_error)
    assert stats.forward_effective_sample_size(log_w + 123.0) == pytest.approx(ess, rel=1e-12)
    kl = 0.5 * (torch.trace(cov) - v - torch.logdet(cov)).item()
    eubo = sampler_metrics(Chain(observables={"phi2": np.zeros((1, 1))}, target_log_weights=log_w))["eubo"]
    assert abs(pull(eubo["value"], eubo["error"], free_scalar_exact(theory)["log_z"] + kl)) < 4, (eubo, kl)


def test_flow_rows_carry_forward_ess_and_eubo_from_a_cached_target_ensemble(tmp_path):
    from suite.cli import main

    flow = ["--sampler", "flow", "--model", "affine", "--budget-steps", "20", "--n-samples", "256",
            "--target-samples", "128", "--ensemble", '{"chains": 8, "n_therm": 20, "separation": 2}', "--out",
            str(tmp_path)]
    for seed in ("0", "1"):
        assert main(["run", "--entry", "phi4/free/L8", *flow, "--seed", seed]) == 0
    rows = read_rows(tmp_path)
    assert len(list((tmp_path / "ensembles").glob("*.pt"))) == 1  # generated once, shared by both seeds
    for row in rows:
        m = row.metrics
        assert 0 < m["forward_ess"]["value"] <= 1 and m["forward_ess"]["n_samples"] == 128
        assert m["eubo"]["value"] > row.reference["log_z"]["value"] - 4 * m["eubo"]["error"]  # an upper bound
        assert Chain.load(row.artifact("chains")).target_log_weights.shape == (128,)


def test_reverse_ais_gives_the_forward_ess_and_eubo():
    """AIS run backwards from exact target samples: with one temperature its log-weights are plain
    importance sampling's, so the forward ESS estimates the exact Gaussian-proposal ESS; with twenty,
    the EUBO falls towards log Z (it stays above it: EUBO − log Z = KL(P‖Q) ≥ 0) and the forward ESS rises."""
    theory = Phi4((4, 4), J=0.1, A=0.6, B=0.0)
    cov = torch.linalg.inv(dense_kernel(theory))
    z = torch.randn(8000, theory.volume, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    x = (z @ torch.linalg.cholesky(cov).T).reshape(-1, *theory.lattice)
    log_z = free_scalar_exact(theory)["log_z"]
    metrics = {}
    for k in (1, 20):
        chain = run_ais(theory, n_samples=16, n_temperatures=k, n_leapfrog=3, step_size=0.3, batch=4000, seed=1,
                        target=x)
        assert chain.target_log_weights.shape == (8000,)
        metrics[k] = sampler_metrics(chain)
    one = metrics[1]["forward_ess"]
    assert abs(pull(one["value"], one["error"], gaussian_proposal_ess(theory))) < 4, one
    eubo1, eubo20 = metrics[1]["eubo"], metrics[20]["eubo"]
    assert eubo20["value"] > log_z - 4 * eubo20["error"]
    assert eubo1["value"] - eubo20["value"] > 4 * math.hypot(eubo1["error"], eubo20["error"]), (eubo1, eubo20)
    assert metrics[20]["forward_ess"]["value"] > one["value"]


def test_ais_rows_carry_the_forward_ess_from_the_target_ensemble(tmp_path):
    out = tmp_path / "results"
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "ais", "--n-samples", "256", "--n-temperatures",
                 "10", "--target-samples", "256", "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert row.metrics["forward_ess"]["n_samples"] == 256 and 0 < row.metrics["forward_ess"]["value"] <= 1
    assert math.isfinite(row.metrics["eubo"]["value"]) and list((out / "ensembles").iterdir())
