"""The marginal + conditional model of the Schwinger model with pseudofermions (reference/flows/pseudofermions.py)
and the pseudo-marginal chain (sampler flow-pmmh): the pseudofermion map against dense algebra and the free
closed form, exactness of q(φ | U) at M = D†, gauge covariance, the joint action's gradients, and the
pseudo-marginal chain against exact-determinant reweighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference.flows import build
from suite import fermions
from suite.errors import UsageError
from suite.flow_sampling import direct_sampling_of, draw, independence_metropolis_of, pseudo_marginal_log_weights
from suite.metrics import estimate_observables, sampler_metrics
from suite.samplers import parse_spec, run_sampler
from suite.theories import build_theory
from suite.theories.u1 import gauge_transform
from test_schwinger import dense_pseudofermion_action, random_links

KAPPA = 0.26


def theories(lattice=(4, 4), beta=1.0, kappa=KAPPA):
    params = {"beta": beta, "kappa": kappa}
    return (build_theory("schwinger", lattice, "pseudofermion", {**params, "cg_tol": 1e-13}),
            build_theory("schwinger", lattice, "exact", params))


def model(theory, perturb=0.0, seed=0):
    """A small float64 schwinger-pf-flow (a fresh gauge flow: random, not the identity); ``perturb`` > 0
    adds noise to M's network (M ≠ D†)."""
    torch.manual_seed(seed)
    flow = build("schwinger-pf-flow", theory, n_layers=2, n_mixture=2, hidden=(4,), pf_order=2,
                 pf_hidden=(4,)).double()
    with torch.no_grad():
        for p in flow.pseudofermions.parameters():
            p.add_(perturb * torch.randn_like(p))
    return flow


def phase(alpha):
    """Ω(x) = e^{iα(x)} as a factor on fermion fields (B, L0, L1, 1)."""
    return torch.polar(torch.ones_like(alpha), alpha)[..., None]


# -- the map M[U] ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lattice", [(4, 4), (4, 6)])
def test_stencil_and_dense_matrix_agree_and_log_det_matches_the_stencils_matrix(lattice):
    pf, _ = theories(lattice)
    pf_map = model(pf, perturb=0.3).pseudofermions
    theta = random_links(2, lattice, seed=1)
    n = 2 * math.prod(lattice)
    basis = torch.eye(n, dtype=torch.complex128).view(n, *lattice, 2)
    with torch.no_grad():
        dense = pf_map.dense(theta)
        columns = [pf_map.apply(theta[b:b + 1].expand(n, -1, -1, -1), basis).reshape(n, n).T for b in range(2)]
        assert torch.allclose(torch.stack(columns), dense, rtol=0, atol=1e-13)
        assert (dense - fermions.dense(theta, KAPPA).mH).abs().max() > 0.01  # the corrections are on
        # log|det M| against numpy's LU of the matrix the stencil built
        numpy_log_det = [np.linalg.slogdet(c.numpy())[1] for c in columns]
        assert pf_map.log_abs_det(theta).numpy() == pytest.approx(numpy_log_det, abs=1e-10)


def test_log_det_at_unit_links_is_the_free_closed_form():
    """M = 1 + a_1 K + a_2 K² with global a_k at unit links: K(p) = 2κ Σ_μ (cos p_μ + iγ_μ sin p_μ) has
    eigenvalues 2κ Σ cos p_μ ± 2iκ (Σ sin² p_μ)^½ (antiperiodic p_0), and
    det M = Π_p Π_± (1 + a_1 λ + a_2 λ²)."""
    lattice, (a1, a2) = (4, 6), (-0.8, 0.15)
    pf, _ = theories(lattice)
    pf_map = model(pf).pseudofermions
    with torch.no_grad():
        pf_map.net[-1].bias.copy_(torch.tensor([a1, a2], dtype=torch.float64))
        log_det = float(pf_map.log_abs_det(torch.zeros((1, 2, *lattice), dtype=torch.float64)))
    p0, p1 = fermions.free_momenta(lattice)
    c = 2 * KAPPA * (torch.cos(p0) + torch.cos(p1))
    s = 2 * KAPPA * torch.sqrt(torch.sin(p0) ** 2 + torch.sin(p1) ** 2)
    closed = sum(torch.log(torch.abs(1 + a1 * lam + a2 * lam**2)).sum() for lam in (c + 1j * s, c - 1j * s))
    assert log_det == pytest.approx(float(closed), abs=1e-11)


def test_a_fresh_map_is_d_dagger_and_its_log_det_that_of_d():
    pf, _ = theories()
    pf_map = model(pf).pseudofermions
    theta = random_links(3, (4, 4), seed=2)
    with torch.no_grad():
        assert torch.equal(pf_map.coefficients(theta)[:, 0], torch.full((3, 4, 4), -1.0, dtype=torch.float64))
        assert torch.allclose(pf_map.dense(theta), fermions.dense(theta, KAPPA).mH, rtol=0, atol=1e-15)
        assert torch.allclose(2 * pf_map.log_abs_det(theta), fermions.log_det_ddag(theta, KAPPA), rtol=0, atol=1e-11)


# -- exactness of q(φ | U) at M = D† and log q ----------------------------------------------------------


def test_log_weight_does_not_depend_on_phi_at_m_equal_d_dagger():
    """log p(U, φ) − log q(U, φ) = −S_g + log det D†D + 2V log π − log q(U) for every φ ~ q(φ | U)."""
    pf, exact = theories()
    flow = model(pf)
    n, n_pf = 4, 16
    with torch.no_grad():
        theta, log_q_u = flow.sample(n, generator=torch.Generator().manual_seed(3))
        phi, log_q_phi = flow.sample_pseudofermions(theta, n_pf, generator=torch.Generator().manual_seed(4))
        action = pf.joint_action(theta.repeat_interleave(n_pf, 0), phi.flatten(0, 1)).view(n, n_pf)
        log_w = -action - log_q_phi - log_q_u[:, None]
        marginal = -exact.action(theta) + 2 * pf.volume * math.log(math.pi) - log_q_u
    spread = (log_w - log_w.mean(1, keepdim=True)).abs().max()
    assert (log_w - marginal[:, None]).abs().max() < 1e-9 and spread < 1e-9
    assert (action - action.mean(1, keepdim=True)).abs().max() > 1  # φ varies, its action with it


def test_log_prob_of_the_pseudofermions_inverts_their_sampling():
    pf, _ = theories()
    flow = model(pf, perturb=0.3)
    with torch.no_grad():
        theta, phi, log_q = flow.sample_joint(5, generator=torch.Generator().manual_seed(5))
        again = flow.log_prob(theta) + flow.log_prob_pseudofermions(theta, phi)
    assert torch.allclose(again, log_q, rtol=0, atol=1e-9)


# -- gauge covariance ---------------------------------------------------------------------------------------


def test_pseudofermions_are_gauge_covariant_and_log_q_gauge_invariant():
    pf, _ = theories()
    flow = model(pf, perturb=0.3)
    g = torch.Generator().manual_seed(6)
    theta = random_links(4, (4, 4), seed=7)
    chi = torch.randn((4, 4, 4, 2), generator=g, dtype=torch.complex128)
    alpha = 2 * math.pi * torch.rand((4, 4, 4), generator=g, dtype=torch.float64)
    moved = gauge_transform(theta, alpha)
    with torch.no_grad():
        phi = flow.pseudofermions.apply(theta, chi)
        assert (flow.pseudofermions.apply(moved, phase(alpha) * chi) - phase(alpha) * phi).abs().max() < 1e-12
        log_q = flow.log_prob(theta) + flow.log_prob_pseudofermions(theta, phi)
        log_q_moved = flow.log_prob(moved) + flow.log_prob_pseudofermions(moved, phase(alpha) * phi)
        assert (log_q_moved - log_q).abs().max() < 1e-9
        assert (pf.joint_action(moved, phase(alpha) * phi) - pf.joint_action(theta, phi)).abs().max() < 1e-9
        assert (phase(alpha) * phi - phi).abs().max() > 0.1  # not vacuous


# -- the joint action ---------------------------------------------------------------------------------------


def test_joint_action_and_its_gradients_match_the_dense_action():
    """Value and both gradients (links, and φ in torch's convention) against autograd through dense algebra,
    with float32 inputs (CG runs in float64 regardless)."""
    pf, _ = theories((4, 6))
    theta = random_links(3, (4, 6), seed=8)
    phi = torch.randn((3, 4, 6, 2), generator=torch.Generator().manual_seed(9), dtype=torch.complex128)
    x, p = theta.clone().requires_grad_(True), phi.clone().requires_grad_(True)
    reference = dense_pseudofermion_action(x, p, KAPPA, 1.0)
    grad_x, grad_p = torch.autograd.grad(reference.sum(), (x, p))
    for dtype in (torch.float64, torch.float32):
        x, p = theta.to(dtype).requires_grad_(True), phi.to(fermions.complex_dtype(dtype)).requires_grad_(True)
        action = pf.joint_action(x, p)
        got_x, got_p = torch.autograd.grad(action.sum(), (x, p))
        tol = 1e-9 if dtype == torch.float64 else 1e-3
        assert action.dtype == dtype and torch.allclose(action.double(), reference.detach(), rtol=tol, atol=0)
        assert torch.allclose(got_x.double(), grad_x, rtol=0, atol=tol * 10)
        assert torch.allclose(got_p.to(torch.complex128), grad_p, rtol=0, atol=tol * 10)


# -- the pseudo-marginal chain -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pseudo_marginal_runs():
    """2 × 2, β = 0.5, κ = 0.3: pseudo-marginal chains (n_pf = 1, 4) with a perturbed M, and the reference:
    exact-determinant reweighting of independent samples of the same q(U) (about 10 CPU-s)."""
    pf, exact = theories((2, 2), beta=0.5, kappa=0.3)
    flow = model(pf, perturb=0.1)
    torch.manual_seed(10)
    reference = direct_sampling_of(*draw(flow, exact, 40000, 2000))
    chains = {}
    for n_pf in (1, 4):
        torch.manual_seed(11)
        chains[n_pf] = independence_metropolis_of(*draw(flow, pf, 12000, 2000, pseudo_marginal_log_weights(n_pf)),
                                                  12)
    return pf, exact, reference, chains


def pull(a, b):
    return (a["value"] - b["value"]) / math.hypot(a["error"], b["error"])


@pytest.mark.parametrize("n_pf", [1, 4])
def test_pseudo_marginal_chain_samples_the_exact_determinant_theory(pseudo_marginal_runs, n_pf):
    pf, exact, reference, chains = pseudo_marginal_runs
    expected, got = estimate_observables(reference, exact), estimate_observables(chains[n_pf], pf)
    for name in ("plaquette", "chiral_condensate"):
        assert abs(pull(got[name], expected[name])) < 4, (name, got[name], expected[name])
    # the fermions matter here: the gauge-only value of the same proposals is far off
    gauge = build_theory("u1", (2, 2), "wilson", {"beta": 0.5})
    torch.manual_seed(13)
    without = estimate_observables(direct_sampling_of(*draw(model(pf, perturb=0.1), gauge, 4000, 2000)), gauge)
    assert abs(pull(got["plaquette"], without["plaquette"])) > 6
    # mean ŵ estimates the joint Z = π^{2V} Z_exact
    log_z = got["log_z"]["value"] - 2 * pf.volume * math.log(math.pi)
    assert abs(log_z - expected["log_z"]["value"]) < 4 * math.hypot(got["log_z"]["error"], expected["log_z"]["error"])


def test_more_pseudofermions_per_proposal_raise_the_acceptance(pseudo_marginal_runs):
    chains = pseudo_marginal_runs[3]
    acceptance = {n: float(c.accepted.mean()) for n, c in chains.items()}
    assert 0.05 < acceptance[1] < acceptance[4], acceptance


# -- the sampler plugin ---------------------------------------------------------------------------------------


def test_flow_pmmh_trains_on_the_joint_and_samples(tmp_path):
    pf, _ = theories((2, 2), beta=0.5, kappa=0.3)
    spec = {"name": "flow-pmmh", "hparams": {"n_layers": 2, "n_mixture": 2, "hidden": [4], "pf_hidden": [4]},
            "budget_steps": 20, "batch_size": 32, "lr": 3e-3, "n_samples": 500, "sample_batch": 250, "n_pf": 2,
            "checkpoint_every": 100}
    chain, training = run_sampler(spec, pf, seed=0, dtype=torch.float64, run_dir=tmp_path)
    assert training["steps"] == 20 and training["evaluations"] == 20 * 32 * 2
    assert chain.info["evaluations_per_sample"] == 2 and chain.accepted.shape == (1, 500)
    metrics = sampler_metrics(chain)
    assert 0 < metrics["acceptance"] < 1 and np.isfinite(chain.log_weights).all()
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "training.csv").is_file()


@pytest.mark.parametrize("options,message", [
    ({"objective": "forward-kl"}, "reverse KL on the joint"),
    ({"target_samples": 10}, "no target_samples"),
    ({"n_pf": 0}, "n_pf"),
])
def test_flow_pmmh_spec_errors(options, message):
    with pytest.raises(UsageError, match=message):
        parse_spec({"name": "flow-pmmh", **options})


def test_flow_pmmh_needs_pseudofermions_and_the_model_needs_kappa(tmp_path):
    _, exact = theories((2, 2))
    spec = {"name": "flow-pmmh", "hparams": {"n_layers": 2}, "budget_steps": 1, "n_samples": 4}
    with pytest.raises(UsageError, match="needs a theory with pseudofermions"):
        run_sampler(spec, exact, seed=0, dtype=torch.float64, run_dir=tmp_path)
    with pytest.raises(UsageError, match="needs a theory with Wilson fermions"):
        run_sampler(spec, build_theory("u1", (2, 2), "wilson", {"beta": 1.0}), seed=0, dtype=torch.float64,
                    run_dir=tmp_path)
