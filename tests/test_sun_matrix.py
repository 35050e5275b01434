"""The single-matrix target `sun-matrix`: exact values against Haar integration, the analytic force
against autograd, catalogue entries, and the `sun-spectral` flow and HMC through `lftbench run`."""

import json
import math

import pytest
import torch
from scipy.special import iv

from suite.catalogue import get_entry
from suite.fields import SUN
from suite.theories import build_theory
from suite.theories.sun_matrix import SUNMatrices, single_matrix_exact


@pytest.mark.parametrize("n, beta", [(2, 4.0), (3, 6.0)])
def test_exact_values_against_haar_integration(n, beta):
    """Z = E_Haar[e^{−S}] and ⟨O⟩ = E_Haar[O e^{−S}]/Z from 400k Haar matrices, pulls < 4 (delta method)."""
    theory = SUNMatrices(1, n, beta)
    exact = single_matrix_exact(theory)
    x = SUN((1, n, n)).prior_sample(400_000, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    w = torch.exp(-theory.action(x))
    z, z_err = w.mean().item(), w.std().item() / math.sqrt(len(w))
    assert abs(math.log(z) - exact["log_z"]) < 4 * z_err / z
    for name, values in theory.observables(x).items():
        mean = (w * values).sum() / w.sum()
        error = ((w * (values - mean)).pow(2).sum().sqrt() / w.sum()).item()
        assert abs(mean.item() - exact[name]) < 4 * error, name


def test_su2_closed_forms():
    theory = SUNMatrices(3, 2, 4.0)
    exact = single_matrix_exact(theory)
    assert set(exact) == set(theory.observables(theory.field.prior_sample(1))) | {"log_z"}  # no Im Tr for SU(2)
    assert exact["re_trace"] == pytest.approx(iv(2, 4.0) / iv(1, 4.0), abs=1e-12)
    assert exact["log_z"] == pytest.approx(3 * math.log(2 * iv(1, 4.0) / 4.0), abs=1e-12)  # K = 3 matrices


def test_force_is_the_autograd_force():
    theory = SUNMatrices(4, 3, 5.0)
    x = theory.field.prior_sample(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert (theory.force(x) - theory.autograd_force(x)).abs().max() < 1e-12


def test_catalogue_entries_and_bad_input():
    entry = get_entry("sun-matrix/su3-beta6/L1")
    theory = entry.build_theory()
    assert theory.lattice == (1,) and theory.field.shape == (1, 3, 3)
    assert single_matrix_exact(theory)["re_trace"] == pytest.approx(0.42253173965, abs=1e-10)
    for lattice, params, message in [((2, 2), {"N": 3, "beta": 1.0}, "lattice \\[K\\]"),
                                     ((1,), {"N": 3}, "needs params N and beta"),
                                     ((0,), {"N": 3, "beta": 1.0}, "K must be an integer >= 1"),
                                     ((1,), {"N": 1, "beta": 1.0}, "N must be an integer >= 2")]:
        with pytest.raises(ValueError, match=message):
            build_theory("sun-matrix", lattice, "wilson", params)


@pytest.mark.parametrize("sampler", [["--sampler", "hmc", "--n-traj", "400"],
                                     ["--sampler", "flow", "--model", "sun-spectral", "--budget-steps", "60",
                                      "--lr", "3e-2", "--n-samples", "4096"]])
def test_run_reproduces_the_exact_values(tmp_path, sampler):
    from suite.cli import main

    assert main(["run", "--entry", "sun-matrix/su3-beta6/L1", *sampler, "--out", str(tmp_path)]) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    pulls = {name: ref["pull"] for name, ref in row["reference"].items()}
    assert {"re_trace", "re_trace_2", "action_density"} <= set(pulls)
    assert all(abs(p) < 4 for p in pulls.values()), pulls
    if sampler[1] == "flow":
        metrics = row["metrics"]
        assert metrics["ess"]["value"] > 0.9 and abs(pulls["log_z"]) < 4
        kl = row["reference"]["log_z"]["value"] - metrics["elbo"]["value"]  # KL(q‖p) ≥ 0, small after training
        assert -4 * metrics["elbo"]["error"] < kl < 0.05
        assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
        report = (tmp_path / "report" / "report.md").read_text()
        section = report[report.index("## Flow quality: single SU(N) matrices"):]
        assert "| sun-matrix/su3-beta6/L1 | 3 | 6 | sun-spectral | flow | 0.4225 |" in section
