"""A sampler added as one plugin, in this file alone, runs through `run`, `report` and `compare`.

The plugin draws independent configurations from the field space's prior and reweights them
(w = e^{−S}/q) — a poor proposal for 64 coupled sites, but every metric applies to it.
"""

import math
from dataclasses import dataclass

import pytest
import torch

from suite.chain import Chain
from suite.cli import main
from suite.harness.rows import read_rows
from suite.samplers import Sampler, register, samplers, unregister
from suite.samplers.spec import option


@dataclass(frozen=True)
class PriorSpec:
    n_samples: int = option(4096, min=2, help="independent draws from the prior")


class PriorReweighting(Sampler):
    name = "prior-is"
    spec = PriorSpec
    default_dtype = "float64"
    markov = False
    runs_table = "Prior importance sampling"

    def run(self, spec, theory, context):
        import time

        generator = torch.Generator(device=context.device).manual_seed(context.seed)
        start = time.perf_counter()
        x = theory.field.prior_sample(spec.n_samples, generator=generator, dtype=context.dtype,
                                      device=context.device)
        log_q = -0.5 * x.pow(2).flatten(1).sum(1) - 0.5 * math.prod(theory.field.shape) * math.log(2 * math.pi)
        log_w = -theory.action(x) - log_q
        observables = {k: v.cpu().numpy()[None] for k, v in theory.observables(x).items()}
        chain = Chain(observables=observables, log_weights=log_w.cpu().numpy()[None],
                      timings={"sampling": time.perf_counter() - start}, info={"n_samples": spec.n_samples})
        return chain, None


@pytest.fixture
def prior_sampler():
    register(PriorReweighting())
    yield
    unregister("prior-is")


def test_a_sampler_plugin_runs_through_run_report_and_compare(prior_sampler, tmp_path, capsys):
    assert "prior-is" in samplers()
    out = tmp_path / "results"
    # The CLI's options come from the specs: the plugin's own option exists and is checked.
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "prior-is", "--n-samples", "20000",
                 "--out", str(out)]) == 0
    assert main(["run", "--entry", "phi4/free/L8", "--chains", "4", "--therm", "50", "--n-traj", "100",
                 "--out", str(out)]) == 0
    rows = {r.sampler["name"]: r for r in read_rows(out)}
    row = rows["prior-is"]
    assert row.sampler == {"name": "prior-is", "n_samples": 20000}
    assert 0 < row.metrics["ess"]["value"] <= 1 and row.metrics["ess"]["n_samples"] == 20000
    assert row.observables["phi2"]["tau_int"] == 0.5 and {"phi2", "chi2"} <= set(row.reference)
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Prior importance sampling" in report and "## HMC runs" in report
    capsys.readouterr()
    assert main(["compare", str(out), "--format", "json"]) == 0
    import json

    board = {r["contender"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(board) == {"hmc", "prior-is"}
    assert board["prior-is"]["vs_hmc"] > 0 and board["hmc"]["baseline"]


def test_a_plugin_option_is_validated_like_the_shipped_ones(prior_sampler, tmp_path, capsys):
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "prior-is", "--n-samples", "1",
                 "--out", str(tmp_path)]) == 2
    assert "'n_samples' must be >= 2" in capsys.readouterr().err
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "prior-is", "--chains", "3",
                 "--out", str(tmp_path)]) == 2
    assert "--chains is not an option of sampler 'prior-is'" in capsys.readouterr().err
