"""The two-flavour Schwinger model (suite/theories/schwinger.py): forces against autograd through dense
algebra and finite differences, gauge invariance, the free closed forms at unit links, the
pseudofermion heat bath, ⟨e^{−ΔH}⟩ = 1 and exact-determinant HMC against pseudofermion HMC."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reference.hmc import HMCSettings, run_hmc
from suite import fermions
from suite.catalogue import entries, extra_catalogue_file
from suite.cli import main
from suite.errors import UsageError
from suite.metrics import estimate_observables, sampler_metrics
from suite.theories import build_theory, schwinger
from suite.theories.u1 import U1, random_gauge_transformation

BETA, KAPPA = 2.0, 0.26


def theory(form, lattice=(4, 4), beta=BETA, kappa=KAPPA, **extra):
    return build_theory("schwinger", lattice, form, {"beta": beta, "kappa": kappa, **extra})


def random_links(batch, lattice, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.pi - 2 * torch.pi * torch.rand((batch, 2, *lattice), generator=generator, dtype=torch.float64)


def dense_pseudofermion_action(x, phi, kappa, beta):
    """S_g + φ†(D†D)⁻¹φ by a dense solve (the reference of the CG-based form; differentiable)."""
    matrix = fermions.dense(x, kappa)
    solution = torch.linalg.solve(matrix.mH @ matrix, phi.reshape(x.shape[0], -1, 1))[..., 0]
    return U1(x.shape[2:], beta).action(x) + (phi.reshape(x.shape[0], -1).conj() * solution).real.sum(1)


def finite_difference_force(action, x, links, h=1e-5):
    """Central differences of ``action`` along the given (batch, μ, x0, x1) links."""
    out = []
    for index in links:
        step = torch.zeros_like(x)
        step[index] = h
        out.append(float((action(x + step) - action(x - step))[index[0]] / (2 * h)))
    return out


LINKS = [(0, 0, 0, 0), (1, 1, 2, 3), (2, 0, 3, 1), (0, 1, 1, 2)]


@pytest.mark.parametrize("lattice", [(4, 4), (4, 6)])
def test_exact_force_against_autograd_and_finite_differences(lattice):
    th = theory("exact", lattice)
    x = random_links(3, lattice)
    force = th.force(x)
    assert torch.allclose(force, th.autograd_force(x), rtol=0, atol=1e-10)
    fd = finite_difference_force(th.action, x, LINKS)
    assert fd == pytest.approx([float(force[i]) for i in LINKS], abs=1e-6)


@pytest.mark.parametrize("lattice", [(4, 4), (6, 4)])
def test_pseudofermion_force_against_autograd_of_the_dense_action_and_finite_differences(lattice):
    th = theory("pseudofermion", lattice, cg_tol=1e-13)
    x = random_links(3, lattice, seed=1)
    th.refresh(x, torch.Generator().manual_seed(2))
    phi = th.pseudofermions
    with torch.enable_grad():
        y = x.clone().requires_grad_(True)
        (reference,) = torch.autograd.grad(dense_pseudofermion_action(y, phi, KAPPA, BETA).sum(), y)
    assert torch.allclose(th.action(x), dense_pseudofermion_action(x, phi, KAPPA, BETA), rtol=1e-12, atol=0)
    assert torch.allclose(th.force(x), reference, rtol=0, atol=1e-10)
    fd = finite_difference_force(th.action, x, LINKS)
    assert fd == pytest.approx([float(reference[i]) for i in LINKS], abs=1e-6)
    assert th.solver_work()["cg_iterations"] > 0


def test_action_and_observables_are_gauge_invariant():
    lattice = (4, 6)
    x = random_links(2, lattice, seed=3)
    y = random_gauge_transformation(x, torch.Generator().manual_seed(4))
    exact = theory("exact", lattice)
    assert torch.allclose(exact.action(y), exact.action(x), rtol=1e-12, atol=0)
    before, after = exact.observables(x), exact.observables(y)
    assert set(before) >= {"plaquette", "topological_charge", "chiral_condensate", "lambda_min", "pion_0", "pion_2"}
    for name in before:
        assert torch.allclose(after[name], before[name], rtol=1e-10, atol=1e-12), name
    # the pseudofermion action with φ → Ωφ: Ω(x) = e^{iα(x)}, recovered from the transformed links
    pf = theory("pseudofermion", lattice, cg_tol=1e-13)
    pf.refresh(x, torch.Generator().manual_seed(5))
    alpha = torch.rand((2, *lattice), generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 2 * math.pi
    from suite.theories.u1 import gauge_transform

    action = pf.action(x)
    pf.pseudofermions = torch.polar(torch.ones_like(alpha), alpha)[..., None] * pf.pseudofermions
    assert torch.allclose(pf.action(gauge_transform(x, alpha)), action, rtol=1e-10, atol=0)


def momentum_space_pion(lattice, kappa):
    """Folded free C(T) from S(x, 0) = (1/V) Σ_p e^{ipx} D(p)⁻¹ (suite.fermions' momenta)."""
    p0, p1 = fermions.free_momenta(lattice)
    g0, g1, _ = fermions.gamma_matrices()
    a = 1 - 2 * kappa * (torch.cos(p0) + torch.cos(p1))
    d = (a[..., None, None] * torch.eye(2) + 2j * kappa * (torch.sin(p0)[..., None, None] * g0
                                                         + torch.sin(p1)[..., None, None] * g1))
    x0, x1 = (torch.arange(n, dtype=torch.float64) for n in lattice)
    phase = torch.exp(1j * (p0[:, :, None, None] * x0[:, None] + p1[:, :, None, None] * x1))
    s = torch.einsum("pqab,pqxy->xyab", torch.linalg.inv(d), phase) / math.prod(lattice)
    c = s.abs().pow(2).sum((1, 2, 3))
    return (0.5 * (c + torch.roll(c.flip(0), 1, 0)))[: lattice[0] // 2 + 1]


@pytest.mark.parametrize("lattice,kappa", [((4, 4), 0.2), ((6, 4), 0.25), ((8, 6), 0.3)])
def test_unit_links_give_the_free_closed_forms(lattice, kappa):
    beta = 1.5
    volume = math.prod(lattice)
    th = theory("exact", lattice, beta=beta, kappa=kappa)
    x = torch.zeros((1, 2, *lattice), dtype=torch.float64)
    assert float(th.action(x)) == pytest.approx(-beta * volume - 2 * fermions.free_log_det(lattice, kappa), abs=1e-10)
    obs = th.observables(x)
    assert float(obs["chiral_condensate"]) == pytest.approx(
        -2 * fermions.free_trace_inverse(lattice, kappa) / volume, abs=1e-12)
    # D(p)†D(p) = det D(p) · 1 at unit links: the smallest eigenvalue is the smallest det D(p)
    assert float(obs["lambda_min"]) == pytest.approx(float(fermions.free_det_momentum(lattice, kappa).min()), abs=1e-12)
    pion = torch.stack([obs[f"pion_{t}"][0] for t in range(lattice[0] // 2 + 1)])
    assert torch.allclose(pion, momentum_space_pion(lattice, kappa), rtol=1e-10, atol=0)
    assert torch.allclose(th.force(x), torch.zeros_like(x), atol=1e-12)  # unit links are stationary


def test_cg_paths_of_large_lattices_agree_with_the_dense_ones(monkeypatch):
    """Above DENSE_MAX_SITES the propagator comes from CG and the condensate from Z₂ noise: on a small
    lattice, with the dense path switched off, the pion equals the dense one and the noisy condensate
    is within its noise of the exact trace."""
    lattice = (4, 4)
    th = theory("pseudofermion", lattice, cg_tol=1e-12)
    x = random_links(2, lattice, seed=7)
    dense = th.observables(x)
    monkeypatch.setattr(schwinger, "DENSE_MAX_SITES", 0)
    monkeypatch.setattr(schwinger, "NOISE_SOURCES", 400)
    noisy = th.observables(x)
    assert "lambda_min" not in noisy
    for t in range(3):
        assert torch.allclose(noisy[f"pion_{t}"], dense[f"pion_{t}"], rtol=1e-8, atol=0)
    # per-source variance of η†D⁻¹η is 2 Σ_{i≠j} |M_ij|² ≲ 2V·(2V)·max|M|²: bound the error by the dense inverse
    inverse = torch.linalg.inv(fermions.dense(x, KAPPA))
    off = inverse - torch.diag_embed(inverse.diagonal(dim1=-2, dim2=-1))
    sigma = 2 * (2 * off.abs().pow(2).sum((1, 2)) / 400).sqrt() / math.prod(lattice)
    assert ((noisy["chiral_condensate"] - dense["chiral_condensate"]).abs() < 4 * sigma).all()


def test_heat_bath_pseudofermion_action_has_mean_2v_at_fixed_links():
    lattice, n = (4, 4), 4000
    th = theory("pseudofermion", lattice)
    x = random_links(1, lattice, seed=8).expand(n, -1, -1, -1).contiguous()
    th.refresh(x, torch.Generator().manual_seed(9))
    fermion_action = th.action(x) - U1(lattice, BETA).action(x)
    two_v = 2 * math.prod(lattice)
    # χ†χ ~ Gamma(2V, 1): mean 2V, variance 2V
    pull = (float(fermion_action.mean()) - two_v) / math.sqrt(two_v / n)
    assert abs(pull) < 4
    assert float(fermion_action.var()) == pytest.approx(two_v, rel=0.1)


def test_effective_mass_of_a_cosh_and_undefined_values():
    m, t_half = 0.7, 4
    c = [math.cosh(m * (t - t_half)) for t in range(5)]
    assert schwinger.effective_mass(c[0], c[1], c[2]) == pytest.approx(m, abs=1e-12)
    assert math.isnan(schwinger.effective_mass(1.0, 1.0, 0.5))
    assert set(theory("exact", (8, 4)).derived_quantities()) >= {"pion_meff_1", "pion_meff_2", "pion_meff_3"}


@pytest.mark.parametrize("form,params,message", [
    ("exact", {"beta": 2.0, "kappa": 0.0}, "kappa must be finite and > 0"),
    ("exact", {"beta": 2.0, "kappa": -0.1}, "kappa must be finite and > 0"),
    ("exact", {"beta": -1.0, "kappa": 0.2}, "beta must be finite and >= 0"),
    ("exact", {"beta": 2.0, "kappa": 0.2, "cg_tol": 1e-8}, "takes beta, kappa"),
    ("pseudofermion", {"beta": 2.0}, "beta and kappa required"),
    ("pseudofermion", {"beta": 2.0, "kappa": 0.2, "cg_tol": 2.0}, "cg_tol must be in"),
    ("wilson", {"beta": 2.0, "kappa": 0.2}, "unknown schwinger convention"),
])
def test_bad_parameters_are_one_line_usage_errors(form, params, message):
    with pytest.raises(UsageError, match=message):
        build_theory("schwinger", (4, 4), form, params)


def test_pseudofermion_action_without_pseudofermions_is_a_usage_error():
    th = theory("pseudofermion")
    with pytest.raises(UsageError, match="needs pseudofermions"):
        th.action(random_links(2, (4, 4)))
    th.refresh(random_links(2, (4, 4)))
    with pytest.raises(UsageError, match="needs pseudofermions"):
        th.force(random_links(3, (4, 4)))


def test_bad_catalogue_entry_fails_with_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('catalogue_version = 2\n[[entry]]\nid = "schwinger/bad/L4"\ntheory = "schwinger"\n'
                    'convention = "exact"\nparams = { beta = 2.0, kappa = -0.2 }\nlattice = [4, 4]\n'
                    'tier = "quick"\ndescription = "bad"\nsource = "test"\n')
    with extra_catalogue_file(path):
        code = main(["run", "--entry", "schwinger/bad/L4", "--out", str(tmp_path / "out"), "--chains", "2",
                     "--therm", "0", "--n-traj", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("lftbench: error:") and "kappa must be finite and > 0" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_catalogue_entries_build_in_both_forms():
    shipped = [e for e in entries() if e.theory == "schwinger"]
    assert {e.convention for e in shipped} == {"exact", "pseudofermion"}
    assert {e.params["kappa"] for e in shipped} >= {0.276}
    for e in shipped:
        th = e.build_theory()
        assert th.lattice == tuple(e.lattice)
        assert th.sectors() is None  # the gauge action's exact P(Q) is not the Schwinger model's
        if e.convention == "pseudofermion":
            assert th.cg_tol == e.params["cg_tol"]
            twin = [t for t in shipped if t.id == e.id.replace("-pf/", "/")]
            assert len(twin) == 1  # carries the references of its exact twin
            assert {k: (r.value, r.error) for k, r in twin[0].reference.items()} == {
                k: (r.value, r.error) for k, r in e.reference.items()}


# -- HMC: ⟨e^{−ΔH}⟩ = 1 and the two forms against each other ---------------------------------------

SETTINGS = HMCSettings(integrator="omelyan", n_steps=3)


def hmc_chain(form, lattice, chains, n_therm, n_traj, seed, kappa=KAPPA):
    th = theory(form, lattice, kappa=kappa)
    chain = run_hmc(th, chains=chains, n_therm=n_therm, n_traj=n_traj, seed=seed, settings=SETTINGS)
    return th, chain


@pytest.fixture(scope="module")
def small_runs():
    """Exact-determinant and pseudofermion HMC on 4 × 4 at κ = 0.24, 64 chains × 40 trajectories (about 10 CPU-s)."""
    return {form: hmc_chain(form, (4, 4), chains=64, n_therm=20, n_traj=40, seed=11, kappa=0.24)
            for form in ("exact", "pseudofermion")}


def pull(a: dict, b: dict) -> float:
    return (a["value"] - b["value"]) / math.hypot(a["error"], b["error"])


@pytest.mark.parametrize("form", ["exact", "pseudofermion"])
def test_exp_minus_delta_h_is_one(small_runs, form):
    metrics = sampler_metrics(small_runs[form][1])
    estimate = metrics["exp_minus_delta_h"]
    assert abs(estimate["value"] - 1) < 4 * estimate["error"] and estimate["error"] < 0.05
    assert metrics["acceptance"] > 0.5


def test_pseudofermion_hmc_records_cg_iterations(small_runs):
    info = small_runs["pseudofermion"][1].info
    assert 0 < info["cg_iterations_per_trajectory"] <= info["cg_iterations_per_trajectory_max"]
    assert "cg_iterations_per_trajectory" not in small_runs["exact"][1].info
    json.dumps(info)  # goes into the row as is


def test_exact_and_pseudofermion_hmc_agree_at_L4(small_runs):
    estimates = {form: estimate_observables(chain, th) for form, (th, chain) in small_runs.items()}
    for name in ("plaquette", "chiral_condensate", "lambda_min", "pion_1"):
        z = pull(estimates["exact"][name], estimates["pseudofermion"][name])
        assert abs(z) < 4, (name, z)


@pytest.mark.slow
def test_exact_and_pseudofermion_hmc_agree_at_L8():
    """L = 8, κ = 0.26: about 10 CPU-minutes."""
    runs = {form: hmc_chain(form, (8, 8), chains=16, n_therm=100, n_traj=300, seed=12)
            for form in ("exact", "pseudofermion")}
    estimates = {form: estimate_observables(chain, th) for form, (th, chain) in runs.items()}
    for name in ("plaquette", "chiral_condensate", "q2", "lambda_min", "pion_meff_2"):
        z = pull(estimates["exact"][name], estimates["pseudofermion"][name])
        assert abs(z) < 4, (name, z)
    for form, (_, chain) in runs.items():
        estimate = sampler_metrics(chain)["exp_minus_delta_h"]
        assert abs(estimate["value"] - 1) < 4 * estimate["error"], form
