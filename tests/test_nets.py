"""NETS (`reference.nets`, sampler ``nets``): log Z exact at finite step with no, a random and a trained
drift on the free field and on 2D U(1), training raises the ESS, the divergence against autograd, the
trained drift reused across sampling options, and the sampler through run, report and compare."""

import json

import pytest
import torch

from reference.nets import DriftNet, basis_probes, divergence, rademacher_probes, run_nets
from suite import stats
from suite.catalogue import get_entry
from suite.cli import main
from suite.exact.free_scalar import free_scalar_exact
from suite.exact.u1 import u1_exact
from suite.harness.rows import read_rows
from suite.samplers import run_sampler
from suite.theories.phi4 import Phi4
from suite.theories.u1 import U1

FREE = Phi4.from_lecture((4, 4), m2=0.5, lam=0.0)
# a drift small enough to train in seconds: 2 convolutions of 8 channels, 10 training steps of ε = 0.5
TINY = {"schedule_power": 1.0, "budget_steps": 100, "batch_size": 16, "lr": 1e-2, "hidden": 8, "n_layers": 2,
        "train_n_steps": 10, "train_diffusivity": 0.5}


def log_z_pull(chain, exact):
    value, error = stats.log_mean_weight(chain.log_weights.ravel())
    return (value - exact) / error


def ess(chain):
    log_w = chain.log_weights.ravel()
    return stats.effective_sample_size(log_w), stats.ess_bootstrap_error(log_w)


def log_weight_variance(chain):
    """The sample variance of log w and its standard error, sqrt((m4 − s⁴) / N)."""
    centred = chain.log_weights.ravel() - chain.log_weights.mean()
    s2 = (centred**2).mean()
    return s2, ((centred**4).mean() - s2**2) ** 0.5 / centred.size**0.5


def random_drift(theory, seed=0):
    torch.manual_seed(seed)
    drift = DriftNet(theory, hidden=4, n_layers=2).double()
    for p in drift.net[-1].parameters():  # the last layer starts at zero: make b ≠ 0
        torch.nn.init.normal_(p, std=0.2)
    return drift


# -- exact weights at finite step --------------------------------------------------------------------


@pytest.mark.parametrize("n_steps, diffusivity", [(20, 3.0), (60, 6.0)])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_annealed_langevin_log_z_is_exact_at_finite_step(n_steps, diffusivity, power):
    """No drift: Euler–Maruyama steps of h ε = 0.15 and 0.1 (far from the continuum) are weighted exactly."""
    chain = run_nets(FREE, None, n_samples=4000, n_steps=n_steps, diffusivity=diffusivity, power=power,
                     batch=4000, seed=1)
    assert chain.info["force_evaluations_per_sample"] == n_steps + 1
    assert chain.info["action_evaluations_per_sample"] == 1 and chain.info["drift_evaluations_per_sample"] == 0
    assert abs(log_z_pull(chain, free_scalar_exact(FREE)["log_z"])) < 4
    assert ess(chain)[0] > 0.03


def test_any_drift_keeps_log_z_exact_on_phi4_and_on_the_torus():
    """A random (untrained) drift moves the walkers off the path, yet E[w] = Z: the weights are the path ratio.
    On U(1) the steps wrap the angles and the kernels are Gaussians on the covering space."""
    chain = run_nets(FREE, random_drift(FREE), n_samples=4000, n_steps=20, diffusivity=3.0, power=1.0,
                     batch=4000, seed=2)
    assert chain.info["drift_evaluations_per_sample"] == 40
    assert abs(log_z_pull(chain, free_scalar_exact(FREE)["log_z"])) < 4
    u1 = U1((2, 2), beta=1.0)
    exact = u1_exact(u1)
    for drift in (None, random_drift(u1)):
        chain = run_nets(u1, drift, n_samples=4000, n_steps=10, diffusivity=1.0, power=1.0, batch=4000, seed=3)
        assert abs(log_z_pull(chain, exact["log_z"])) < 4 and ess(chain)[0] > 0.1
        plaquette, weights = chain.observables["plaquette"].ravel(), torch.softmax(
            torch.from_numpy(chain.log_weights.ravel()), 0).numpy()
        assert abs((weights * plaquette).sum() - exact["plaquette"]) < 0.05


def test_the_divergence_is_the_trace_of_the_jacobian():
    for theory in (Phi4.from_lecture((3, 4), m2=0.5, lam=0.5), U1((2, 3), beta=1.0)):
        drift = random_drift(theory, seed=4)
        x = theory.field.prior_sample(3, generator=torch.Generator().manual_seed(5))
        t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
        n = x[0].numel()
        brute = torch.stack([torch.autograd.functional.jacobian(lambda y: drift(t[i:i + 1], y[None])[0], x[i])
                             .reshape(n, n).trace() for i in range(3)])
        b, quad = divergence(drift, t, x, basis_probes(x))
        assert torch.allclose(b, drift(t, x)) and torch.allclose(quad.sum(0), brute, atol=1e-12)
        assert brute.abs().max() > 0.1  # not the zero drift
        torch.manual_seed(6)
        _, hutchinson = divergence(drift, t, x, rademacher_probes(4000, x))
        mean, error = hutchinson.mean(0), hutchinson.std(0) / 4000**0.5
        assert (((mean - brute) / error).abs() < 4).all() and (error > 0).all()


# -- training -----------------------------------------------------------------------------------------


def test_training_raises_the_ess_and_the_trained_drift_is_reused_across_step_sizes(tmp_path):
    exact = free_scalar_exact(FREE)["log_z"]
    for n_steps, diffusivity in ((50, 0.5), (50, 1.0)):
        untrained, training = run_sampler({"name": "nets", "n_samples": 4000, "n_steps": n_steps,
                                           "diffusivity": diffusivity, "batch": 4000,
                                           "drift": {**TINY, "budget_steps": 0}}, FREE, seed=1,
                                          dtype=torch.float64, run_dir=tmp_path / "none", progress=False)
        assert training is None and untrained.timings["training"] == 0.0
        chain, training = run_sampler({"name": "nets", "n_samples": 4000, "n_steps": n_steps,
                                       "diffusivity": diffusivity, "batch": 4000, "drift": TINY}, FREE, seed=1,
                                      dtype=torch.float64, run_dir=tmp_path, progress=False)
        assert training["steps"] == 100 and training["reused"] == (diffusivity == 1.0)
        assert chain.timings["training"] == training["seconds"] > 0
        assert chain.info["drift_evaluations_per_sample"] == 2 * n_steps
        (before, before_error), (after, after_error) = log_weight_variance(untrained), log_weight_variance(chain)
        assert before - after > 4 * (before_error**2 + after_error**2) ** 0.5 and after < before / 4, (before, after)
        assert ess(chain)[0] > 3 * ess(untrained)[0] and ess(chain)[0] > 0.1
        assert abs(log_z_pull(chain, exact)) < 4 and abs(log_z_pull(untrained, exact)) < 4
    (folder,) = (tmp_path / "nets").iterdir()  # trained once, for the drift table, not the sampling options
    assert {"model.pt", "checkpoint.pt", "training.csv"} <= {p.name for p in folder.iterdir()}


# -- the sampler through the CLI ------------------------------------------------------------------------


def test_nets_sampler_runs_through_run_report_and_compare(tmp_path, capsys):
    out = tmp_path / "results"
    drift = json.dumps({"budget_steps": 5, "batch_size": 4, "hidden": 4, "n_layers": 1, "train_n_steps": 4})
    for n_steps in ("40", "30"):
        assert main(["run", "--entry", "phi4/free/L8", "--sampler", "nets", "--n-samples", "1000", "--n-steps",
                     n_steps, "--diffusivity", "4", "--batch", "1000", "--drift", drift, "--seed", "1",
                     "--target-samples", "128", "--out", str(out)]) == 0
    rows = sorted(read_rows(out), key=lambda r: r.sampler["n_steps"])
    assert all(r.metrics["forward_ess"]["n_samples"] == 128 and "eubo" in r.metrics for r in rows)
    entry_theory = get_entry("phi4/free/L8").build_theory()
    assert [r.sampler["n_steps"] for r in rows] == [30, 40]
    for row in rows:
        assert row.dtype == "float64" and row.sampler["drift"]["schedule_power"] == 2.0
        n_steps = row.sampler["n_steps"]
        assert row.sampler_info["evaluations_per_sample"] == n_steps + 2
        assert row.sampler_info["drift_evaluations_per_sample"] == 2 * n_steps
        assert row.training["steps"] == 5 and row.timings["training"] == row.training["seconds"]
        assert row.artifact("nets_model").is_file() and row.artifact("nets_training").is_file()
        log_z = row.metrics["log_z"]
        assert row.reference["log_z"]["value"] == pytest.approx(free_scalar_exact(entry_theory)["log_z"])
        assert 0 < log_z["error"] < 1 and 0 < row.metrics["ess"]["value"] <= 1
    assert [r.training["reused"] for r in rows] == [True, False]  # n_steps 40 trained it, 30 reused it
    assert rows[0].artifact("nets_model") == rows[1].artifact("nets_model")
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## NETS runs" in report and "evaluations_per_sample" in report and "log_z_pull" in report
    capsys.readouterr()
    assert main(["compare", str(out), "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert {entry["contender"] for entry in board} == {  # two recipes of one contender: named by their budget
        f"nets [5 training steps, {n} steps × ε 4.0, 1000 samples]" for n in (30, 40)}


@pytest.mark.parametrize("options, message", [
    (["--diffusivity", "0"], "'diffusivity' must be > 0"),
    (["--n-steps", "0"], "'n_steps' must be >= 1"),
    (["--drift", '{"kernel_size": 2}'], "kernel_size must be odd"),
    (["--drift", '{"divergence": "exakt"}'], "'divergence' must be one of exact, hutchinson"),
    (["--drift", '{"schedule_power": 0.5}'], "'schedule_power' must be >= 1"),
    (["--drift", '{"budget": 5}'], "no option 'budget'"),
])
def test_nets_options_are_validated(options, message, tmp_path, capsys):
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "nets", *options, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("lftbench: error:")


def test_nets_refuses_field_spaces_it_does_not_support(tmp_path, capsys):
    assert main(["run", "--entry", "on/o3-beta1.0/L8", "--sampler", "nets", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nets supports real fields and angles (EuclideanSpace, TorusSpace), not SphereSpace" in err
    assert err.count("\n") == 1


def test_reverse_paths_from_target_samples_weigh_the_extended_target():
    """NETS run backwards from exact free-field samples: E_P[1/w] = 1/Z, so log mean(1/w) estimates −log Z,
    without a drift and with a random one (whose backward kernels are not the forward ones reversed); samples
    of a field 5 % too wide fail the same check, and the EUBO lies above log Z."""
    from reference.nets import reverse_nets_log_weights

    v = FREE.volume
    kernel = FREE.force(torch.eye(v, dtype=torch.float64).reshape(v, *FREE.lattice)).reshape(v, v)
    z = torch.randn(8000, v, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x = (z @ torch.linalg.cholesky(torch.linalg.inv(kernel)).T).reshape(-1, *FREE.lattice)
    log_z = free_scalar_exact(FREE)["log_z"]

    def pull(configs, drift, n_steps, diffusivity):
        log_w = reverse_nets_log_weights(FREE, drift, configs, n_steps=n_steps, diffusivity=diffusivity, power=1.0,
                                         generator=torch.Generator().manual_seed(6)).numpy()
        assert log_w.mean() > log_z - 4 * log_w.std() / len(log_w) ** 0.5  # EUBO ≥ log Z
        value, error = stats.log_mean_weight(-log_w)
        return (value + log_z) / error

    assert abs(pull(x, None, 60, 6.0)) < 4 and abs(pull(x, random_drift(FREE), 20, 3.0)) < 4
    assert pull(1.05 * x, None, 60, 6.0) > 4
    chain = run_nets(FREE, None, n_samples=64, n_steps=20, diffusivity=3.0, power=1.0, batch=64, seed=1, target=x[:256])
    assert chain.target_log_weights.shape == (256,)
