"""Flow samplers end to end: exact models give ESS 1 and acceptance 1; MH is correct; user models."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.errors import UsageError
from suite.exact.free_scalar import free_scalar_exact
from suite.flow_sampling import direct_sampling_chain, independence_metropolis_chain, independence_metropolis_indices
from suite.harness.rows import read_rows
from suite.metrics import estimate_observables, sampler_metrics
from suite.models import build_model
from suite.stats import gamma_method
from suite.theories.phi4 import Phi4

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "fourier_gaussian.py")


def exact_free_field_model(theory):
    """The example user model with σ(p)² = 1/K(p): it samples the free field exactly."""
    model = build_model(f"{EXAMPLE}:build", theory).double()
    p = torch.meshgrid(*[2 * math.pi * torch.arange(n, dtype=torch.float64) / n for n in theory.lattice],
                       indexing="ij")
    kernel = 2 * theory.A - 2 * theory.J * sum(torch.cos(pm) for pm in p)
    with torch.no_grad():
        model.log_sigma.copy_(-0.5 * torch.log(kernel))
    return model


def test_exact_model_has_unit_ess_and_acceptance_and_exact_observables():
    torch.manual_seed(0)
    theory = Phi4.from_lecture((6, 6), m2=0.5, lam=0.0)
    model = exact_free_field_model(theory)
    direct = direct_sampling_chain(model, theory, 4000, 1000)
    # log w = −S − log q is the constant log Z for an exact model.
    assert np.ptp(direct.log_weights) < 1e-9
    assert sampler_metrics(direct)["ess"]["value"] == pytest.approx(1.0)
    exact = free_scalar_exact(theory)
    estimates = estimate_observables(direct, theory)
    for name in ("phi2", "chi2", "e_ising", "action_density", "xi2nd"):
        assert abs(estimates[name]["value"] - exact[name]) < 4 * estimates[name]["error"], name
    mh = independence_metropolis_chain(model, theory, 500, 250, seed=1)
    assert mh.accepted.all()


def test_independence_metropolis_targets_p():
    """Proposals N(0, 1), target N(0.7, 1): the chain's mean converges to 0.7."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=40000)
    log_w = 0.7 * x  # log p − log q up to a constant
    index, accepted = independence_metropolis_indices(log_w, np.random.default_rng(4))
    result = gamma_method(x[index])
    assert abs(result.value - 0.7) < 4 * result.error
    assert 0.3 < accepted.mean() < 0.95 and result.tau_int > 0.6


def write_model(tmp_path, body):
    path = tmp_path / "bad_model.py"
    path.write_text("import torch\n" + body)
    return f"{path}:build"


@pytest.mark.parametrize("body,message", [
    ("def build(theory):\n    return 42\n", "not a torch.nn.Module"),
    ("class M(torch.nn.Module):\n    pass\ndef build(theory):\n    return M()\n", "no sample"),
    ("class M(torch.nn.Module):\n    def sample(self, n):\n        return torch.zeros(n, 3), torch.zeros(n)\n"
     "def build(theory):\n    return M()\n", "x of shape (2, 3)"),
    ("class M(torch.nn.Module):\n    def sample(self, n):\n        return torch.zeros(n, 4, 4), torch.zeros(n, 1)\n"
     "def build(theory):\n    return M()\n", "log_q of shape"),
    ("class M(torch.nn.Module):\n    def sample(self, n):\n"
     "        return torch.zeros(n, 4, 4), torch.full((n,), float('nan'))\n"
     "def build(theory):\n    return M()\n", "non-finite log_q"),
    ("def other(theory):\n    pass\n", "has no function 'build'"),
    ("raise ImportError('boom')\n", "importing"),
])
def test_bad_user_models_get_one_line_errors(tmp_path, body, message):
    theory = Phi4.from_lecture((4, 4), m2=1.0, lam=0.0)
    with pytest.raises(UsageError, match=re.escape(message)):
        build_model(write_model(tmp_path, body), theory)


def test_unknown_model_names():
    theory = Phi4.from_lecture((4, 4), m2=1.0, lam=0.0)
    with pytest.raises(UsageError, match="expected a registered name"):
        build_model("nonsense", theory)
    with pytest.raises(UsageError, match="cannot import module"):
        build_model("no_such_module_xyz:build", theory)
    with pytest.raises(UsageError, match="unknown hyperparameter"):
        build_model("affine", theory, {"n_layer": 3})


def test_cli_trains_a_user_model_from_a_file_and_a_reference_flow(tmp_path):
    out = tmp_path / "results"
    common = ["--entry", "phi4/free/L8", "--budget-steps", "30", "--n-samples", "512", "--out", str(out)]
    assert main(["run", "--sampler", "flow", "--model", f"{EXAMPLE}:build", "--lr", "0.05", *common]) == 0
    assert main(["run", "--sampler", "flow-mh", "--model", "affine", "--hparams", '{"n_layers": 2}', *common]) == 0
    rows = read_rows(out)
    assert [r.sampler["model"] for r in rows] == [f"{EXAMPLE}:build", "affine"]
    for row in rows:
        assert row.training["steps"] == 30 and row.dtype == "float32"
        # reverse-kl at the default batch of 64: one action and one force evaluation per sample and step
        assert row.training["evaluations"] == 30 * 64 * 2 and row.sampler_info["evaluations_per_sample"] == 1
        assert 0 < row.metrics["ess"]["value"] <= 1
        assert {"chains", "training", "model"} <= set(row.artifacts)
    assert 0 <= rows[1].metrics["acceptance"] <= 1
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Flow runs" in report and "fourier_gaussian.py:build" in report
    assert (tmp_path / "report" / "figures" / "training-phi4_free_L8.png").exists()


def test_cli_bad_flow_input_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "suite.cli", "run", "--entry", "phi4/free/L8", "--sampler", "flow",
                           "--hparams", "[1, 2]", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "JSON object" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "suite.cli", "run", "--entry", "phi4/free/L8", "--sampler", "flow",
                           "--objective", "kl", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "'objective' must be one of" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
