"""The report's topological-freezing section on a real (tiny) U(1) study: one figure and one table per
lattice, samplers kept apart by their labels, N_eff(Q) = N / (2 τ_int(Q))."""

import pandas as pd

from suite.harness.runner import run_tasks
from suite.samplers import spec_dict
from suite.harness.study import Task
from suite.report.build import build_report

HMC = {"name": "hmc", "chains": 2, "n_therm": 10, "n_traj": 40}
FLOW = {"name": "flow-mh", "model": "u1-equivariant", "hparams": {"n_layers": 2}, "batch_size": 8,
        "budget_steps": 0, "n_samples": 64, "sample_batch": 32, "pretrain": {"L": 4, "budget_steps": 3}}


def test_freezing_section_has_both_samplers_at_every_beta(tmp_path):
    entries = ["u1/beta1/L8", "u1/beta2/L8"]
    tasks = [Task(e, spec_dict(spec), 0) for spec in (HMC, FLOW) for e in entries]
    run_tasks(tasks, tmp_path / "results", log=lambda *_: None)
    report = build_report([tmp_path / "results"], tmp_path / "report").read_text()
    assert "## Topological freezing, U(1) 8x8" in report
    assert (tmp_path / "report" / "figures" / "topology-u1-8x8.png").stat().st_size > 0
    assert (tmp_path / "report" / "figures" / "topology-u1-8x8.pdf").read_bytes().startswith(b"%PDF")
    assert "([PDF](figures/topology-u1-8x8.pdf))" in report
    for entry in ("u1_beta1_L8", "u1_beta2_L8"):  # no steps on L = 8: the figure is the pretraining's
        assert f"figures/training-{entry}.png" in report
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if "N_eff(Q)" in line and line.startswith("|"))
    columns = [c.strip() for c in lines[start].strip("|").split("|")]
    body = lines[start + 2:]
    body = body[:next(i for i, line in enumerate(body) if not line.startswith("|"))]
    rows = pd.DataFrame([[c.strip() for c in line.strip("|").split("|")] for line in body], columns=columns)
    assert len(rows) == 4  # two samplers × two β
    assert set(rows["β"]) == {"1", "2"}
    assert (rows.sampler == "flow-mh u1-equivariant reverse-kl, 3 steps at L = 4, used as is, batch 8").sum() == 2
    hmc = rows[rows.sampler == "hmc"]
    assert all(0 < int(n) <= 2 * 40 for n in hmc["N_eff(Q)"])  # N/(2τ) with τ ≥ ½
