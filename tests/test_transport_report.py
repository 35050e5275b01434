"""The transport-versus-quality report section (`suite.report.transport`) on hand-made rows with
known numbers, its study, and a tiny run through `lftbench run` and `lftbench report`."""

import math

import pytest

from conftest import result_row
from suite.harness.study import load_study
from suite.report.transport import transport_records, transport_section
from suite.samplers import samplers


def weighted_row(sampler, *, entry="phi4/free/L8", ess=0.2, n_samples=1000, train=None, sampling=10.0,
                 log_z=(17.9, 0.05), exact=17.847, forward=None, evaluations=1, seed=0):
    metrics = {"ess": {"value": ess, "error": 0.1 * ess, "n_samples": n_samples, "pareto_k": 0.25},
               "log_z": {"value": log_z[0], "error": log_z[1]}}
    if forward is not None:
        metrics["forward_ess"] = {"value": forward, "error": 0.01}
    return result_row(run_id=f"{sampler['name']}-{entry}-{seed}", entry=entry, sampler=sampler, seed=seed,
                      metrics=metrics, training=None if train is None else {"steps": 100, "seconds": train},
                      timings={"sampling": sampling}, sampler_info={"evaluations_per_sample": evaluations},
                      reference={"log_z": {"value": exact, "error": 0.0, "pull": 1.0}})


FLOW = {"name": "flow", "model": "affine", "objective": "reverse-kl", "budget_steps": 100, "batch_size": 64}
FLOW_AIS = {**FLOW, "name": "flow-ais", "n_temperatures": 4, "n_leapfrog": 3}
AIS = {"name": "ais", "n_samples": 1000, "n_temperatures": 100, "n_leapfrog": 5}


def rows():
    return [weighted_row(FLOW, ess=0.5, n_samples=2000, train=90.0, sampling=10.0, forward=0.3),      # 10 /s
            weighted_row(FLOW_AIS, ess=0.8, n_samples=1000, train=20.0, sampling=30.0, evaluations=22),  # 16 /s
            weighted_row(AIS, ess=0.25, n_samples=4000, sampling=50.0, log_z=(17.8, 0.02), evaluations=694),  # 20 /s
            weighted_row(FLOW, entry="phi4/free/L16", train=50.0, sampling=10.0)]  # one arm only: not compared


def test_ess_per_second_of_total_cost_and_the_ordering():
    frame = transport_records(rows())
    assert set(frame.entry) == {"phi4/free/L8"}  # L16 has a flow only
    assert list(frame.name) == ["ais", "flow-ais", "flow"]  # best first
    by = frame.set_index("name")
    assert by.loc["flow", "total_seconds"] == 100.0 and by.loc["ais", "total_seconds"] == 50.0
    assert by.loc["flow", "ess_per_second"] == pytest.approx(2000 * 0.5 / 100)
    assert by.loc["flow", "ess_per_second_error"] == pytest.approx(2000 * 0.05 / 100)
    assert by.loc["flow-ais", "ess_per_second"] == pytest.approx(1000 * 0.8 / 50)
    assert by.loc["ais", "ess_per_second"] == pytest.approx(4000 * 0.25 / 50)
    assert by.loc["ais", "log_z_error"] == pytest.approx(0.047) and by.loc["ais", "log_z_error_error"] == 0.02
    assert by.loc["flow", "forward_ess"] == 0.3 and math.isnan(by.loc["ais", "forward_ess"])
    assert list(by.arm) == ["prior", "corrected", "flow"]
    assert by.loc["ais", "evaluations_per_sample"] == 694 and by.loc["ais", "pareto_k"] == 0.25


def test_section_has_one_table_per_compared_entry_and_one_figure(tmp_path):
    (tmp_path / "figures").mkdir()
    lines = transport_section(rows(), tmp_path)
    text = "\n".join(lines)
    assert text.count("### ") == 1 and "### phi4/free/L8" in text
    table = [line for line in text.splitlines() if line.startswith("| (")]
    assert [line.split(" | ")[0] for line in table] == ["| (c)", "| (b)", "| (a)"]
    assert "| 20.0(20) |" in table[0] and "| 10.0(10) |" in table[2] and "| 0.300(10) |" in table[2]
    assert (tmp_path / "figures" / "transport-vs-quality.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "transport-vs-quality.pdf").is_file()


def test_no_section_without_two_arms_on_an_entry(tmp_path):
    only_flows = [weighted_row(FLOW), weighted_row({**FLOW, "model": "spline"}, seed=1)]
    assert transport_section(only_flows, tmp_path) == []
    assert transport_section([], tmp_path) == []


def test_every_importance_sampler_has_an_arm_and_markov_chains_none():
    from suite.samplers.base import TRANSPORT_ARMS

    arms = {name: plugin.transport_arm for name, plugin in samplers().items()}
    assert {arms[name] for name in ("flow", "flow-ais", "snf", "nets", "ais")} == set(TRANSPORT_ARMS)
    assert all(arm is None for name, arm in arms.items() if samplers()[name].markov)


def test_the_study_loads_with_all_arms_on_each_entry_at_comparable_budgets():
    study = load_study("transport-vs-quality")
    entries = {"phi4/free/L8", "phi4/free/L16", "u1/beta2/L8", "u1/beta2/L16"}
    assert {t.entry_id for t in study.tasks} == entries
    for entry in entries:
        specs = {t.sampler["name"]: t.sampler for t in study.tasks if t.entry_id == entry}
        assert set(specs) == {"flow", "flow-ais", "snf", "nets", "ais"}
        flow, cheap = specs["flow"], specs["flow-ais"]
        assert flow["model"] == cheap["model"] and flow["target_samples"] > 0
        assert 0 < cheap["budget_seconds"] < flow["budget_seconds"] and not flow["budget_steps"]
    quick = load_study("transport-vs-quality", only=["*/L8"]).tasks
    assert all(t.sampler.get("budget_seconds", 0) <= 120 for t in quick)


def test_run_and_report_of_a_tiny_comparison(tmp_path):
    from suite.cli import main

    study = tmp_path / "tiny.toml"
    study.write_text("\n".join([
        'name = "tiny"',
        '[[task]]', 'entries = ["phi4/free/L8"]',
        'sampler = { name = "flow", model = "affine", hparams = { n_layers = 2, hidden = [4] }, budget_steps = 3, '
        'n_samples = 256, target_samples = 64, ensemble = { chains = 4, n_therm = 20, separation = 1 } }',
        '[[task]]', 'entries = ["phi4/free/L8"]',
        'sampler = { name = "ais", n_samples = 256, n_temperatures = 5 }', ""]))
    out = tmp_path / "results"
    assert main(["run", str(study), "--out", str(out)]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    section = report.split("## Transport versus quality", 1)[1].split("\n## ", 1)[0]
    assert "### phi4/free/L8" in section and section.count("| (") == 2
    assert (tmp_path / "report" / "figures" / "transport-vs-quality.pdf").is_file()
