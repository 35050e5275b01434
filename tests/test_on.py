"""O(N) sigma model: force against autograd, O(N) invariance, the Berg–Lüscher charge (integer,
odd under reflections, ±1 on instantons), the Wolff cluster algorithm against the exact 1D chain and
against HMC in 2D, and the cluster sampler plugin end to end."""

import math

import numpy as np
import pytest
import torch

from reference.cluster import neighbour_table, run_cluster, wolff_update
from reference.hmc import run_hmc
from suite.catalogue import entries, get_entry
from suite.cli import main
from suite.errors import UsageError
from suite.harness.rows import read_rows
from suite.harness.study import make_task
from suite.metrics import estimate_observables
from suite.stats import gamma_method
from suite.theories import build_theory
from suite.theories.on import ONModel, instanton_configuration, random_rotation, solid_angle
from tests.test_sphere_fields import o3_chain_energy


def configurations(theory, batch=4, seed=0):
    return theory.field.prior_sample(batch, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("lattice,n", [((6, 6), 3), ((4, 5), 4), ((6,), 2), ((3, 4, 3), 3)])
def test_action_against_a_site_loop_and_force_against_autograd(lattice, n):
    theory = ONModel(lattice, 1.3, n)
    x = configurations(theory, batch=3)
    flat = x.reshape(3, -1, n)
    links = sum((flat[:, i] * flat[:, j]).sum(-1) for i, row in enumerate(neighbour_table(lattice))
                for j in row[:len(lattice)])
    torch.testing.assert_close(theory.action(x), -1.3 * links)
    force = theory.force(x)
    torch.testing.assert_close(force, theory.autograd_force(x), rtol=0, atol=1e-12)
    assert (force * x).sum(-1).abs().max() < 1e-12  # tangent


def test_observables_are_invariant_under_global_rotations_and_the_charge_under_proper_ones():
    theory = ONModel((8, 8), 1.0)
    x = configurations(theory, batch=6, seed=1)
    g = torch.Generator().manual_seed(2)
    base = theory.observables(x)
    assert set(base) == {"energy", "action_density", "chi_m", "g_pmin", "topological_charge", "chi_t"}
    assert all(v.shape == (6,) and v.dtype == torch.float64 for v in base.values())
    for proper in (True, False):
        rotated = theory.observables(x @ random_rotation(3, generator=g, proper=proper).T)
        for name in ("energy", "action_density", "chi_m", "g_pmin", "chi_t"):
            torch.testing.assert_close(rotated[name], base[name])
        sign = 1 if proper else -1
        torch.testing.assert_close(rotated["topological_charge"], sign * base["topological_charge"])
    # Translations too.
    torch.testing.assert_close(theory.observables(torch.roll(x, (3, 5), (1, 2)))["g_pmin"], base["g_pmin"])
    torch.testing.assert_close(base["action_density"], theory.action(x) / 64)


def test_chi_m_and_g_pmin_against_the_two_point_function():
    theory = ONModel((4, 6), 1.0)
    x = configurations(theory, batch=2, seed=3)
    obs = theory.observables(x)
    sites = [(a, b) for a in range(4) for b in range(6)]
    for k in range(2):
        s = x[k]
        corr = {(i, j): float(s[i] @ s[j]) for i in sites for j in sites}
        assert obs["chi_m"][k].item() == pytest.approx(sum(corr.values()) / 24)
        g = sum(c * (math.cos(2 * math.pi * (i[0] - j[0]) / 4) + math.cos(2 * math.pi * (i[1] - j[1]) / 6))
                for (i, j), c in corr.items()) / (2 * 24)
        assert obs["g_pmin"][k].item() == pytest.approx(g)


def test_solid_angle_of_an_octant_and_orientation():
    e = torch.eye(3, dtype=torch.float64)
    assert solid_angle(e[0], e[1], e[2]).item() == pytest.approx(math.pi / 2)  # 1/8 of 4π
    assert solid_angle(e[0], e[2], e[1]).item() == pytest.approx(-math.pi / 2)


def test_geometric_charge_is_an_integer_odd_under_reflections_and_one_on_an_instanton():
    theory = ONModel((8, 8), 1.0)
    x = configurations(theory, batch=64, seed=4)
    q = theory.topological_charge(x)
    assert (q - q.round()).abs().max() < 1e-10 and q.abs().max() >= 2  # random configurations: many charges
    # The exchange of the axes maps the triangulation (diagonal x -> x+0+1) onto itself: Q -> −Q exactly.
    torch.testing.assert_close(theory.topological_charge(x.transpose(1, 2)), -q, rtol=0, atol=1e-10)
    big = ONModel((16, 16), 1.0)
    for rho in (1.5, 3.0):
        inst = instanton_configuration((16, 16), rho=rho)
        assert big.topological_charge(inst).item() == pytest.approx(1.0, abs=1e-10)
        assert big.topological_charge(instanton_configuration((16, 16), rho=rho, anti=True)).item() == \
            pytest.approx(-1.0, abs=1e-10)
        # A smooth configuration: any reflection of the lattice flips its charge.
        assert big.topological_charge(torch.flip(inst, (1,))).item() == pytest.approx(-1.0, abs=1e-10)
    uniform = torch.zeros(1, 16, 16, 3, dtype=torch.float64)
    uniform[..., 2] = 1
    assert big.topological_charge(uniform).item() == 0


def test_theory_built_from_the_catalogue_and_bad_parameters():
    theory = build_theory("on", (8, 8), "standard", {"beta": 1.2, "n": 3})
    assert isinstance(theory, ONModel) and theory.field.shape == (8, 8, 3)
    assert build_theory("on", (8, 8), "standard", {"beta": 1.2}).n == 3
    for params in ({"beta": 1.0, "n": 1}, {"beta": -1.0}, {"beta": 1.0, "n": 2.5}, {"beta": 1.0, "m": 3}):
        with pytest.raises(ValueError):
            build_theory("on", (8, 8), "standard", params)
    grid = [e.id for e in entries() if e.theory == "on" and "-beta" in e.id]  # on.toml's β × L grid
    quick = {e.id for e in entries("quick") if e.theory == "on"}
    assert len(grid) == 9 and quick & set(grid) == {i for i in grid if i.endswith("/L8")}
    assert "on/o3-xi2/L12" in quick  # the calibrated line's smallest point is quick, as its lines file says


# -- the cluster algorithm -------------------------------------------------------------------------


def test_cluster_update_keeps_unit_spins_and_grows_with_beta():
    rng = np.random.default_rng(0)
    spins = rng.standard_normal((8, 64, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    neighbours = neighbour_table((8, 8))
    assert neighbours.shape == (64, 4) and (np.sort(neighbours[0]) == [1, 7, 8, 56]).all()
    assert (wolff_update(spins.copy(), 0.0, neighbours, rng) == 1).all()  # β = 0: the seed alone
    mean_size = {}
    for beta in (0.3, 3.0):
        sizes = [wolff_update(spins, beta, neighbours, rng) for _ in range(300)]
        mean_size[beta] = np.mean(sizes[100:])
    assert np.allclose(np.linalg.norm(spins, axis=-1), 1)
    # Deep in the ordered regime a cluster takes most of the lattice; at strong coupling a few sites.
    assert mean_size[3.0] > 32 and mean_size[0.3] < 3, mean_size


def test_cluster_reproduces_the_exact_1d_o3_chain_and_is_reproducible():
    theory = ONModel((8,), 1.5)
    chain = run_cluster(theory, chains=32, n_therm=20, n_meas=300, n_clusters=2, seed=3)
    r = gamma_method(chain.observables["energy"])
    exact = o3_chain_energy(8, 1.5)
    assert abs(r.value - exact) < 4 * r.error, (r.value, r.error, exact)
    again = run_cluster(theory, chains=32, n_therm=20, n_meas=300, n_clusters=2, seed=3)
    np.testing.assert_array_equal(again.observables["chi_m"], chain.observables["chi_m"])
    assert 1 < chain.info["mean_cluster_size"] < 8 and chain.accepted is None


def pulls_hmc_vs_cluster(entry_id, hmc, cluster, names=("energy", "chi_m", "chi_t", "xi2nd")):
    theory = get_entry(entry_id).build_theory()
    a = estimate_observables(run_hmc(theory, progress=False, **hmc), theory)
    b = estimate_observables(run_cluster(theory, **cluster), theory)
    return {k: (a[k]["value"] - b[k]["value"]) / math.hypot(a[k]["error"], b[k]["error"]) for k in names}, a, b


def test_hmc_and_cluster_agree_on_o3_at_beta_1_2():
    pulls, _, cluster = pulls_hmc_vs_cluster("on/o3-beta1.2/L8", dict(chains=16, n_therm=100, n_traj=300, seed=1),
                                             dict(chains=16, n_therm=20, n_meas=150, n_clusters=5, seed=2))
    assert max(abs(p) for p in pulls.values()) < 4, pulls
    assert cluster["chi_m"]["tau_int"] < 2  # O(1) in measurements of ~1 sweep


@pytest.mark.slow
@pytest.mark.parametrize("beta", ["1.0", "1.2", "1.4"])
def test_hmc_and_cluster_agree_on_the_o3_quick_entries(beta):
    pulls, hmc, cluster = pulls_hmc_vs_cluster(f"on/o3-beta{beta}/L8",
                                               dict(chains=32, n_therm=300, n_traj=2000, seed=11),
                                               dict(chains=32, n_therm=50, n_meas=1000, n_clusters=10, seed=12))
    assert max(abs(p) for p in pulls.values()) < 3.5, pulls
    assert cluster["chi_m"]["tau_int"] < 2


# -- the sampler plugin ---------------------------------------------------------------------------


def test_cluster_sampler_runs_and_refuses_other_theories(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--entry", "on/o3-beta1.0/L8", "--sampler", "cluster", "--chains", "4", "--therm", "10",
                 "--n-meas", "50", "--n-clusters", "3", "--seed", "1", "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert row.sampler == {"name": "cluster", "chains": 4, "n_therm": 10, "n_meas": 50, "n_clusters": 3}
    assert row.dtype == "float64" and row.sampler_info["mean_cluster_size"] > 1
    assert {"chi_m", "energy", "topological_charge", "xi2nd"} <= set(row.observables)
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "## Cluster runs" in (tmp_path / "report" / "report.md").read_text()
    capsys.readouterr()
    for entry in ("phi4/free/L8", "cpn/cp2-beta1.0/L8"):
        with pytest.raises(UsageError, match="applies to O\\(N\\) models only"):
            make_task(entry, {"name": "cluster"}, 0)
        assert main(["run", "--entry", entry, "--sampler", "cluster", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lftbench: error:") and "O(N) models only" in err and "\n" not in err
