"""The ``flow-ais`` sampler: a theory pulled back through a flow (force against finite differences,
one temperature = the flow's own weights through its inverse), AIS in the latent space against the
exact free field, and the sampler through ``lftbench run``."""

import math

import pytest
import torch

from reference.ais import run_ais
from reference.pullback import PulledBackTheory
from suite import stats
from suite.cli import main
from suite.exact.free_scalar import free_scalar_exact
from suite.harness.rows import read_rows
from suite.metrics import estimate_observables, sampler_metrics
from suite.models import build_model
from suite.samplers import run_sampler
from suite.theories.phi4 import Phi4

AFFINE = {"n_layers": 2, "hidden": [8]}


def random_flow(theory, seed=0, scale=0.3):
    """An affine coupling flow with random (not identity) parameters, float64."""
    torch.manual_seed(seed)
    model = build_model("affine", theory, AFFINE).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.requires_grad_(False)


def test_pulled_back_force_is_the_gradient_of_the_pulled_back_action():
    theory = Phi4.from_lecture((2, 3), m2=-0.5, lam=1.0)
    pulled = PulledBackTheory(theory, random_flow(theory))
    z = torch.randn(2, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    force, h = pulled.force(z), 1e-6
    for i in range(6):
        dz = torch.zeros_like(z).view(2, 6)
        dz[:, i] = h
        dz = dz.view_as(z)
        numeric = (pulled.action(z + dz) - pulled.action(z - dz)) / (2 * h)
        assert torch.allclose(force.view(2, 6)[:, i], numeric, atol=1e-7)


def test_one_temperature_gives_the_flows_own_weights():
    """K = 1: log w = −S(x) − log q(x), with log q from the flow's inverse pass."""
    theory = Phi4.from_lecture((4, 4), m2=0.5, lam=0.5)
    model = random_flow(theory, seed=2)
    chain = run_ais(PulledBackTheory(theory, model), n_samples=64, n_temperatures=1, batch=64, seed=3)
    generator = torch.Generator().manual_seed(3)
    z = theory.field.prior_sample(64, generator=generator, dtype=torch.float64)
    x = model.transform(z)[0]
    expected = -(theory.action(x) + model.log_prob(x))
    assert torch.allclose(torch.as_tensor(chain.log_weights[0]), expected, atol=1e-10)
    assert chain.info["evaluations_per_sample"] == 1


def test_reverse_latent_annealing_from_target_samples():
    """Target samples pulled back through the flow's inverse and annealed backwards in latent space: with
    one temperature the log-weights are the flow's −S(x) − log q(x) at the samples; with ten, on exact
    free-field samples and a random flow, log mean(1/w) estimates −log Z (E_P[1/w] = 1/Z) while samples of
    a field 50 % too wide fail that check, and the EUBO lies above log Z and below the flow's own."""
    from reference.ais import power_schedule, reverse_ais_log_weights

    theory = Phi4.from_lecture((4, 4), m2=0.5, lam=0.0)
    v, log_z = theory.volume, free_scalar_exact(theory)["log_z"]
    kernel = theory.force(torch.eye(v, dtype=torch.float64).reshape(v, *theory.lattice)).reshape(v, v)
    noise = torch.randn(2000, v, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    x = (noise @ torch.linalg.cholesky(torch.linalg.inv(kernel)).T).reshape(-1, *theory.lattice)
    model = random_flow(theory, seed=2, scale=0.1)
    pulled = PulledBackTheory(theory, model)
    assert torch.allclose(pulled.push(pulled.pull(x)), x, atol=1e-10)

    def reverse(configs, k):
        return reverse_ais_log_weights(pulled, power_schedule(k, 1.0), pulled.pull(configs), step_size=0.3,
                                       n_leapfrog=3, generator=torch.Generator().manual_seed(9)).numpy()

    flow_only = reverse(x, 1)
    assert torch.allclose(torch.as_tensor(flow_only), -(theory.action(x) + model.log_prob(x)), atol=1e-10)
    annealed = reverse(x, 10)
    (eubo1, error1), (eubo10, error10) = [(w.mean(), w.std() / len(w) ** 0.5) for w in (flow_only, annealed)]
    assert eubo10 > log_z - 4 * error10 and eubo1 - eubo10 > 4 * math.hypot(error1, error10), (eubo1, eubo10)
    for log_w, lies_within in ((annealed, True), (reverse(1.5 * x, 10), False)):
        value, error = stats.log_mean_weight(-log_w)
        assert (abs(value + log_z) < 4 * error) == lies_within, (value, -log_z, error)


def test_latent_annealing_corrects_a_poor_flow_on_the_free_field(tmp_path):
    theory = Phi4.from_lecture((4, 4), m2=0.5, lam=0.0)
    exact = free_scalar_exact(theory)
    spec = {"name": "flow-ais", "model": "affine", "hparams": AFFINE, "budget_steps": 20, "n_samples": 2000,
            "sample_batch": 2000, "step_size": 0.3, "n_leapfrog": 3}
    ess = {}
    for k in (1, 20):
        chain, training = run_sampler({**spec, "n_temperatures": k}, theory, seed=4, dtype=torch.float32,
                                      run_dir=tmp_path / f"K{k}", progress=False)
        assert training["steps"] == 20 and training["evaluations"] == 20 * 64 * 2
        assert chain.info["evaluations_per_sample"] == k + (k - 1) * 4
        ess[k] = sampler_metrics(chain)["ess"]
        estimates = estimate_observables(chain, theory)
        for name in ("log_z", "phi2", "action_density"):
            est = estimates[name]
            assert abs(est["value"] - exact[name]) < 4 * est["error"], (k, name, est, exact[name])
    # the same trained flow (same seed): twenty annealing steps raise the ESS well beyond the flow's
    assert ess[20]["value"] - ess[1]["value"] > 3 * math.hypot(ess[1]["error"], ess[20]["error"]), ess


def test_flow_ais_runs_through_the_harness_and_refuses_what_it_cannot_do(tmp_path, capsys):
    out = tmp_path / "results"
    common = ["--entry", "u1/beta1/L8", "--model", "u1-equivariant", "--hparams", '{"n_layers": 2}',
              "--budget-steps", "5", "--n-samples", "64", "--out", str(out)]
    assert main(["run", "--sampler", "flow-ais", "--n-temperatures", "3", *common]) == 0
    (row,) = read_rows(out)
    assert row.sampler_info["n_temperatures"] == 3 and row.sampler_info["evaluations_per_sample"] == 3 + 2 * 6
    assert math.isfinite(row.reference["log_z"]["pull"])  # the exact U(1) log Z
    assert main(["run", "--sampler", "flow-ais", "--n-temperatures", "3", "--target-samples", "64", "--seed", "1",
                 *common]) == 0
    forward = {row.seed: row.metrics.get("forward_ess") for row in read_rows(out)}
    assert forward[0] is None and forward[1]["n_samples"] == 64 and 0 < forward[1]["value"] <= 1
    capsys.readouterr()
    assert main(["run", "--sampler", "flow-ais", "--entry", "sun/su2-2d-beta2/L8", "--model", "sun-equivariant",
                 "--budget-steps", "1", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "complex field space" in err and "Traceback" not in err
