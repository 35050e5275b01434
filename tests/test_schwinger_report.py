"""The Schwinger-model report section on hand-made rows (one table per lattice size, costs from N_eff over
Q and the condensate), its registration with the theory, and the study schwinger-flows."""

import pytest

from suite.harness.study import load_study
from suite.report.schwinger import schwinger_section
from suite.samplers import spec_dict
from suite.theories.registry import theory_info
from tests.conftest import markdown_tables as tables, result_row

HMC = spec_dict({"name": "hmc", "chains": 16, "n_traj": 300, "integrator": "omelyan"})
FLOW_MH = spec_dict({"name": "flow-mh", "model": "u1-equivariant", "budget_steps": 1500})
FLOW_PMMH = spec_dict({"name": "flow-pmmh", "budget_steps": 600})


def estimate(tau_int, n_samples):
    return {"value": 0.0, "error": 0.1, "tau_int": tau_int, "tau_int_error": 0.1 * tau_int, "window": 5,
            "n_samples": n_samples}


def schwinger_row(run_id, sampler, kappa, lattice=(8, 8), *, tau_q, tau_condensate, n_samples=4800,
                  sampling=48.0, training=None, info=None):
    pf = "-pf" if sampler["name"] != "flow-mh" else ""
    return result_row(run_id=run_id, entry=f"schwinger/beta2-kappa{kappa}{pf}/L{lattice[0]}", theory="schwinger",
                      lattice=lattice, params={"convention": "pseudofermion" if pf else "exact", "beta": 2.0,
                                               "kappa": kappa},
                      sampler=sampler, sampler_info=info or {}, training=training, timings={"sampling": sampling},
                      metrics={"acceptance": 0.5},
                      observables={"topological_charge": estimate(tau_q, n_samples),
                                   "chiral_condensate": estimate(tau_condensate, n_samples)})


def test_one_table_per_lattice_with_cg_iterations_and_both_costs(tmp_path):
    rows = [
        schwinger_row("h8", HMC, 0.2, tau_q=2.0, tau_condensate=1.5, info={"cg_iterations_per_trajectory": 306.5}),
        schwinger_row("f8", FLOW_MH, 0.2, tau_q=1.0, tau_condensate=3.0, n_samples=4096, sampling=30.0,
                      training={"seconds": 210.0, "steps": 1500}),
        schwinger_row("p8", FLOW_PMMH, 0.276, tau_q=4.0, tau_condensate=2.0, n_samples=4096, sampling=60.0,
                      training={"seconds": 200.0, "steps": 600}),
        schwinger_row("h16", HMC, 0.24, (16, 16), tau_q=5.0, tau_condensate=2.0,
                      info={"cg_iterations_per_trajectory": 900}),
    ]
    lines = schwinger_section(rows, tmp_path)
    found = tables(lines)
    assert list(found) == ["## Schwinger model 8x8: samplers along κ", "## Schwinger model 16x16: samplers along κ"]
    small = found["## Schwinger model 8x8: samplers along κ"]
    assert list(small["κ"]) == ["0.2", "0.2", "0.276"]  # by κ, then sampler
    assert small.columns[4:7].tolist() == ["acceptance", "tau_int(Q)", "tau_int(ψ̄ψ)"]
    small = small.set_index(small.sampler.str.split().str[0])
    hmc, flow = small.loc["hmc"], small.loc["flow-mh"]
    assert hmc["CG iter / traj"] == "306.5" and hmc["train s"] == ""
    assert int(hmc["N_eff"]) == 4800 / 4  # the larger τ_int: Q's 2.0
    sampling, amortised = "s per indep. (sampling)", "s per indep. (amortised)"
    assert float(hmc[sampling]) == pytest.approx(48.0 / 1200, rel=1e-3)
    assert float(hmc[amortised]) == float(hmc[sampling])  # no training to amortise
    assert flow["CG iter / traj"] == "" and int(flow["N_eff"]) == round(4096 / 6)  # the condensate's τ_int 3.0
    assert float(flow[sampling]) == pytest.approx(30.0 / (4096 / 6), rel=1e-3)
    assert float(flow[amortised]) == pytest.approx((210.0 + 30.0) / (4096 / 6), rel=1e-3)
    assert found["## Schwinger model 16x16: samplers along κ"]["CG iter / traj"].tolist() == ["900"]


def test_the_theory_registers_the_section_beside_topology():
    names = [section.__name__ for section in theory_info("schwinger").report_sections]
    assert names == ["topology_section", "schwinger_section"]


def test_the_study_pits_pf_hmc_against_both_flows_along_kappa():
    study = load_study("schwinger-flows")
    kappas = ("0.2", "0.24", "0.26", "0.276")
    for size in (8, 16):
        tasks = [t for t in study.tasks if t.entry_id.endswith(f"/L{size}")]
        by_sampler = {}
        for task in tasks:
            by_sampler.setdefault(task.sampler["name"], set()).add(task.entry_id)
        assert by_sampler == {
            "hmc": {f"schwinger/beta2-kappa{k}-pf/L{size}" for k in kappas},
            "flow-mh": {f"schwinger/beta2-kappa{k}/L{size}" for k in kappas},
            "flow-pmmh": {f"schwinger/beta2-kappa{k}-pf/L{size}" for k in kappas},
        }
        for task in tasks:
            assert {"hmc": "omelyan", "flow-mh": None, "flow-pmmh": None}[task.sampler["name"]] == \
                task.sampler.get("integrator")
            if task.sampler["name"] == "flow-mh":
                assert task.sampler["model"] == "u1-equivariant"
            if size == 16 and task.sampler["name"] != "hmc":
                assert task.sampler["pretrain"]["L"] == 8
    part = load_study("schwinger-flows", only=["schwinger/beta2-kappa0.2/L8", "schwinger/beta2-kappa0.2-pf/L8"])
    assert sorted(t.sampler["name"] for t in part.tasks) == ["flow-mh", "flow-pmmh", "hmc"]


@pytest.mark.parametrize("flag", ["--only schwinger/beta2-kappa0.2/L8 --only schwinger/beta2-kappa0.2-pf/L8",
                                  "lftbench report results/schwinger-flows --out reports/schwinger"])
def test_the_study_names_its_commands(flag):
    from suite.harness.study import STUDIES_DIR

    assert flag in " ".join((STUDIES_DIR / "schwinger-flows.toml").read_text().split())
