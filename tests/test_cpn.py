"""CP(N−1): force against autograd (horizontal), global U(N) and local U(1) invariance, the geometric
charge (integer, odd under reflections, ±1 on instantons), CP(1) = O(3) exactly, and HMC on CP(1)
against the O(3) cluster algorithm."""

import math

import pytest
import torch

from reference.cluster import run_cluster
from reference.hmc import run_hmc
from suite.catalogue import entries
from suite.metrics import estimate_observables
from suite.theories import build_theory
from suite.theories.cpn import CPNModel, instanton_configuration, random_unitary, to_o3
from suite.theories.on import ONModel
from suite.theories.on import instanton_configuration as o3_instanton


def configurations(theory, batch=4, seed=0):
    return theory.field.prior_sample(batch, generator=torch.Generator().manual_seed(seed))


def local_phases(z, seed):
    alpha = 2 * math.pi * torch.rand(z.shape[:-1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return z * torch.exp(1j * alpha)[..., None]


@pytest.mark.parametrize("lattice,n", [((6, 6), 3), ((4, 5), 2), ((4, 4), 10)])
def test_action_against_a_site_loop_and_force_against_autograd(lattice, n):
    theory = CPNModel(lattice, 0.9, n)
    z = configurations(theory, batch=3)
    l0, l1 = lattice
    links = sum(abs(torch.vdot(z[b, i, j], z[b, (i + di) % l0, (j + dj) % l1])) ** 2
                for b in range(3) for i in range(l0) for j in range(l1) for di, dj in ((1, 0), (0, 1)))
    assert theory.action(z).sum().item() == pytest.approx(-0.9 * n * links.item())
    force = theory.force(z)
    torch.testing.assert_close(force, theory.autograd_force(z), rtol=0, atol=1e-12)
    assert (z.conj() * force).sum(-1).abs().max() < 1e-12  # horizontal: tangent and no phase component
    # The gradient of an invariant action has no phase component even before the projection.
    with torch.enable_grad():
        y = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(theory.action(y).sum(), y)
    assert ((1j * z).conj() * grad).sum(-1).real.abs().max() < 1e-12


def test_observables_are_invariant_under_global_unitaries_and_local_phases():
    theory = CPNModel((8, 8), 0.7, 3)
    z = configurations(theory, batch=6, seed=1)
    base = theory.observables(z)
    assert set(base) == {"energy", "action_density", "chi_m", "g_pmin", "topological_charge", "chi_t"}
    assert all(v.shape == (6,) and v.dtype == torch.float64 for v in base.values())
    u = random_unitary(3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(u.conj().T @ u, torch.eye(3, dtype=torch.complex128))
    for transformed in (z @ u.T, local_phases(z, 3), local_phases(z @ u.T, 4)):
        for name, value in theory.observables(transformed).items():
            torch.testing.assert_close(value, base[name], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(base["action_density"], theory.action(z) / 64)


def test_chi_m_is_the_sum_of_projector_correlations():
    theory = CPNModel((3, 4), 1.0, 3)
    z = configurations(theory, batch=2, seed=5)
    p = theory.projectors(z).reshape(2, 12, 3, 3)
    for b in range(2):
        total = sum(torch.trace(p[b, i] @ p[b, j]).real for i in range(12) for j in range(12))
        assert theory.observables(z)["chi_m"][b].item() == pytest.approx(total.item() / 12)
        assert torch.trace(p[b, 0]).abs().item() < 1e-14  # P = z z̄ − 1/N is traceless


def test_geometric_charge_is_an_integer_odd_under_reflections_and_one_on_an_instanton():
    theory = CPNModel((8, 8), 0.7, 3)
    z = configurations(theory, batch=64, seed=6)
    q = theory.topological_charge(z)
    assert (q - q.round()).abs().max() < 1e-10 and q.abs().max() >= 2
    for reflected in (torch.flip(z, (1,)), torch.flip(z, (2,)), z.transpose(1, 2)):
        torch.testing.assert_close(theory.topological_charge(reflected), -q, rtol=0, atol=1e-10)
    torch.testing.assert_close(theory.topological_charge(local_phases(z, 7)), q, rtol=0, atol=1e-10)
    for n in (2, 3, 10):
        big = CPNModel((16, 16), 1.0, n)
        for rho in (1.5, 3.0):
            assert big.topological_charge(instanton_configuration((16, 16), n, rho=rho)).item() == \
                pytest.approx(1.0, abs=1e-10)
            assert big.topological_charge(instanton_configuration((16, 16), n, rho=rho, anti=True)).item() == \
                pytest.approx(-1.0, abs=1e-10)


def test_cp1_is_the_o3_model():
    cp1, o3 = CPNModel((6, 6), 0.8, 2), ONModel((6, 6), 0.8)
    z = configurations(cp1, batch=5, seed=8)
    s = to_o3(z)
    torch.testing.assert_close((s * s).sum(-1), torch.ones(5, 6, 6, dtype=torch.float64))
    torch.testing.assert_close(cp1.action(z), o3.action(s) - 0.8 * 2 * 36)       # S_CP(1)(β) = S_O(3)(β) − β dV
    a, b = cp1.observables(z), o3.observables(s)
    torch.testing.assert_close(a["energy"], (1 + b["energy"]) / 2)
    torch.testing.assert_close(a["chi_m"], b["chi_m"] / 2)                      # Tr P_x P_y = s_x·s_y / 2
    torch.testing.assert_close(a["g_pmin"], b["g_pmin"] / 2)
    # The instanton's images agree, and so do the two charges' orientations.
    inst = instanton_configuration((16, 16), 2)
    torch.testing.assert_close(to_o3(inst), o3_instanton((16, 16)))


def test_theory_built_from_the_catalogue_and_bad_parameters():
    theory = build_theory("cpn", (8, 8), "quartic", {"beta": 0.7, "n": 3})
    assert isinstance(theory, CPNModel) and theory.field.shape == (8, 8, 3) and theory.field.is_complex
    assert theory.field.prior_sample(1, dtype=torch.float32).dtype == torch.complex64
    for params in ({"beta": 0.7}, {"beta": 0.7, "n": 1}, {"beta": -1.0, "n": 3}, {"beta": 1.0, "n": 3, "x": 1}):
        with pytest.raises(ValueError):
            build_theory("cpn", (8, 8), "quartic", params)
    with pytest.raises(ValueError, match="two dimensions"):
        CPNModel((4, 4, 4), 1.0, 3)
    cpn = [e for e in entries() if e.theory == "cpn"]
    calibrated = [e for e in cpn if "-xi" in e.id]  # the lines of constant physics (cpn-lcp.toml)
    assert len(cpn) - len(calibrated) == 12 and {e.params["n"] for e in cpn} == {3, 10}
    assert all(set(e.reference) == {"xi2nd", "chi_m", "energy", "chi_t"} for e in calibrated) and calibrated
    assert {(e.convention, e.params["n"]) for e in cpn} == {("quartic", 3), ("quartic", 10), ("auxiliary", 10)}
    for e in cpn:
        theory = e.build_theory()
        assert theory.lattice == e.lattice and theory.convention == e.convention


def hmc_cp1_vs_cluster_o3(beta, hmc, cluster):
    """CP(1) at β by HMC on CP(1), O(3) at the same β by the cluster algorithm: energy_CP = (1 + energy_O3)/2,
    χ_m,CP = χ_m,O3 / 2 and the same ξ_2nd; pulls of each."""
    cp1, o3 = CPNModel((8, 8), beta, 2), ONModel((8, 8), beta)
    a = estimate_observables(run_hmc(cp1, progress=False, **hmc), cp1)
    b = estimate_observables(run_cluster(o3, **cluster), o3)
    maps = {"energy": lambda v: (1 + v) / 2, "chi_m": lambda v: v / 2, "xi2nd": lambda v: v}
    scale = {"energy": 0.5, "chi_m": 0.5, "xi2nd": 1.0}
    return {k: (a[k]["value"] - f(b[k]["value"])) / math.hypot(a[k]["error"], scale[k] * b[k]["error"])
            for k, f in maps.items()}


def test_hmc_on_cp1_agrees_with_the_o3_cluster_algorithm():
    pulls = hmc_cp1_vs_cluster_o3(1.2, dict(chains=16, n_therm=100, n_traj=300, seed=3),
                                  dict(chains=16, n_therm=20, n_meas=150, n_clusters=5, seed=4))
    assert max(abs(p) for p in pulls.values()) < 4, pulls


@pytest.mark.slow
def test_hmc_on_cp1_agrees_with_the_o3_cluster_algorithm_long():
    pulls = hmc_cp1_vs_cluster_o3(1.4, dict(chains=32, n_therm=300, n_traj=2000, seed=13),
                                  dict(chains=32, n_therm=50, n_meas=1000, n_clusters=10, seed=14))
    assert max(abs(p) for p in pulls.values()) < 3.5, pulls
