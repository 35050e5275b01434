"""The sigma-model freezing section on hand-made rows: τ_int against ξ per sampler with both laws
fitted (the one the data follow has the smaller χ²), unreliable charges left out of the fits, the
cost per independent sample and training seconds, and its registration with both theories."""

import math

import pytest

from suite.report.freezing import freezing_section
from suite.samplers import spec_dict
from suite.theories.registry import theory_info
from tests.conftest import markdown_tables, result_row

HMC = spec_dict({"name": "hmc", "chains": 16, "n_traj": 2000})
CLUSTER = spec_dict({"name": "cluster", "chains": 16, "n_meas": 2000})
FLOW_MH = spec_dict({"name": "flow-mh", "model": "sphere-equivariant", "budget_steps": 400})
CP9 = {"cpn/cp9-aux-xi2/L12": 2.0, "cpn/cp9-aux-xi3/L18": 3.0, "cpn/cp9-aux-xi4/L24": 4.0}
O3 = {"on/o3-xi2/L12": 2.0, "on/o3-xi4/L24": 4.0, "on/o3-xi8/L48": 8.0}


def estimate(tau, n_samples=32000, seconds=1.0):
    return {"value": 1.0, "error": 0.01, "tau_int": tau, "tau_int_error": 0.02 * tau, "window": 10,
            "n_samples": n_samples, "seconds_per_independent_sample": seconds * tau}


def sigma_row(entry, xi, sampler, *, tau_q, tau_m, n_samples=32000, training=None):
    theory = entry.split("/")[0]
    return result_row(run_id=f"{entry}-{sampler['name']}", entry=entry, theory=theory,
                      lattice=(int(entry.rsplit("L", 1)[1]),) * 2, params={"beta": 1.0}, sampler=sampler,
                      training=training, metrics={"acceptance": 0.7},
                      observables={"topological_charge": estimate(tau_q, n_samples),
                                   "chi_t": estimate(tau_q, n_samples), "chi_m": estimate(tau_m, n_samples)},
                      reference={"xi2nd": {"value": xi, "error": 0.01}, "chi_m": {"value": 1.0, "error": 0.01,
                                                                                  "pull": 0.5}})


@pytest.fixture
def out(tmp_path):
    """A report folder as `build_report` prepares it."""
    (tmp_path / "figures").mkdir()
    return tmp_path


def fit_table(lines):
    tables = markdown_tables(lines, every=True)
    (heading, (fitted, runs)), = tables.items()
    return heading, fitted.set_index(["sampler", "observable"]), runs


def test_both_laws_are_fitted_and_the_true_one_has_the_smaller_chi2(out):
    # HMC: τ(Q) exponential in ξ (freezing), τ(χ_m) a power ξ^2; the flow's charge is stuck (N_eff < 50).
    rows = [sigma_row(e, xi, HMC, tau_q=0.5 * math.exp(1.5 * xi), tau_m=0.8 * xi**2) for e, xi in CP9.items()]
    rows += [sigma_row(e, xi, FLOW_MH, tau_q=500.0, tau_m=3.0, n_samples=4096, training={"seconds": 600.0})
             for e, xi in list(CP9.items())[:2]]
    lines = freezing_section(rows, out)
    heading, fitted, runs = fit_table(lines)
    assert heading == ("## Critical slowing down and topological freezing: CP(9) model, auxiliary-U(1) action, "
                       "β tuned to a second-moment correlation length at L/ξ ≈ 6")  # the line's description
    charge, magnet = fitted.loc[("hmc", "τ_int(Q)")], fitted.loc[("hmc", "τ_int(χ_m)")]
    assert charge["smaller χ²"] == "exponential" and magnet["smaller χ²"] == "power"
    assert float(charge["b"].split("(")[0]) == pytest.approx(1.5, abs=0.01)
    assert float(magnet["z"].split("(")[0]) == pytest.approx(2.0, abs=0.01)
    # The flow's two points have N/(2τ_int(Q)) = 4 < 50: nothing of its charge or χ_m series is fitted.
    flow = fitted[fitted.index.get_level_values(0).str.startswith("flow-mh")]
    assert list(flow["points fitted"]) == ["0", "0"]
    assert list(runs["N/(2τ_int(Q))"])[:2] == ["4", str(round(32000 / (2 * 0.5 * math.exp(3.0))))]  # flow, hmc
    assert (out / "figures" / "freezing-cpn-auxiliary-10.png").exists()
    assert (out / "tables" / "freezing-fits-cpn-auxiliary-10.csv").exists()


def test_hmc_and_cluster_fitted_side_by_side_with_the_flow_cost_and_training(out):
    rows = [sigma_row(e, xi, sampler, tau_q=xi, tau_m=xi) for e, xi in O3.items() for sampler in (HMC, CLUSTER)]
    rows.append(sigma_row("on/o3-xi2/L12", 2.0, FLOW_MH, tau_q=1.5, tau_m=1.5, training={"seconds": 100.0}))
    _, fitted, runs = fit_table(freezing_section(rows, out))
    assert {"hmc", "cluster"} <= set(fitted.index.get_level_values(0))
    assert fitted.loc[("cluster", "τ_int(χ_m)")]["z"].startswith("1.00")
    flow = runs[runs["sampler"].str.startswith("flow-mh")].iloc[0]
    assert flow["training s"] == "100" and flow["s / indep. χ_m"].startswith("1.50")


def test_a_line_needs_two_points_and_non_markov_rows_are_left_out(out):
    one = [sigma_row("on/o3-xi2/L12", 2.0, HMC, tau_q=2.0, tau_m=2.0)]
    assert freezing_section(one, out) == []
    flows = [sigma_row(e, xi, spec_dict({"name": "flow", "model": "sphere-equivariant"}), tau_q=1.0, tau_m=1.0)
             for e, xi in O3.items()]
    assert freezing_section(flows, out) == []


@pytest.mark.parametrize("theory", ["on", "cpn"])
def test_both_sigma_models_register_the_section(theory):
    assert [section.__name__ for section in theory_info(theory).report_sections] == ["freezing_section"]
