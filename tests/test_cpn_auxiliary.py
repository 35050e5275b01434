"""CP(N−1), convention ``auxiliary`` (S = −Σ log I_0(2Nβ|z̄_x·z_{x+μ}|), the auxiliary-U(1) action with
λ integrated out): the action against scipy's I_0 site by site, the force against autograd (also where
an overlap vanishes exactly or nearly), h(y) = I_1/(y I_0) across its series threshold, the I_0
identity and the λ heat bath by quadrature, invariances, CP(1) as an O(3) model with a log I_0 link
action, the small-β limit, and the independent check: the joint (z, λ) model sampled by heat bath and
Metropolis (`reference.cpn_auxiliary`) against HMC on the marginal action."""

import math

import numpy as np
import pytest
import torch
from scipy import special

from reference.cpn_auxiliary import run_cpn_auxiliary
from reference.hmc import run_hmc
from suite.metrics import estimate_observables
from suite.theories import build_theory
from suite.theories.cpn import (SERIES_BELOW, CPNModel, bessel_ratio_over_argument, link_overlaps, log_bessel_i0,
                                random_unitary, to_o3)
from suite.theories.on import ONModel


def auxiliary(lattice, beta, n):
    return CPNModel(lattice, beta, n, convention="auxiliary")


def configurations(theory, batch=4, seed=0):
    return theory.field.prior_sample(batch, generator=torch.Generator().manual_seed(seed))


def local_phases(z, seed):
    alpha = 2 * math.pi * torch.rand(z.shape[:-1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return z * torch.exp(1j * alpha)[..., None]


def assert_force_is_the_horizontal_autograd_gradient(theory, z, atol=1e-12):
    force = theory.force(z)
    assert torch.isfinite(force.real).all() and torch.isfinite(force.imag).all()
    torch.testing.assert_close(force, theory.autograd_force(z), rtol=0, atol=atol)
    assert (z.conj() * force).sum(-1).abs().max() < atol  # horizontal: tangent and no phase component
    return force


@pytest.mark.parametrize("lattice,n,beta", [((6, 6), 3, 0.7), ((4, 5), 2, 1.3), ((4, 4), 10, 0.65), ((3, 4), 4, 3.0)])
def test_action_against_scipy_site_by_site_and_force_against_autograd(lattice, n, beta):
    theory = auxiliary(lattice, beta, n)
    z = configurations(theory, batch=3)
    l0, l1 = lattice
    zn = z.numpy()
    for b in range(3):
        links = [abs(np.vdot(zn[b, i, j], zn[b, (i + di) % l0, (j + dj) % l1]))
                 for i in range(l0) for j in range(l1) for di, dj in ((1, 0), (0, 1))]
        expected = -np.log(special.i0(2 * n * beta * np.array(links))).sum()
        assert theory.action(z)[b].item() == pytest.approx(expected, rel=1e-13)
    assert_force_is_the_horizontal_autograd_gradient(theory, z)
    with torch.enable_grad():  # the gradient of the invariant action has no phase component before the projection
        y = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(theory.action(y).sum(), y)
    assert ((1j * z).conj() * grad).sum(-1).real.abs().max() < 1e-12
    obs = theory.observables(z)
    torch.testing.assert_close(obs["action_density"], theory.action(z) / theory.volume)
    torch.testing.assert_close(obs["energy"], CPNModel(lattice, beta, n).observables(z)["energy"], rtol=0, atol=0)


def test_force_where_an_overlap_vanishes_exactly_or_nearly():
    theory = auxiliary((4, 4), 0.8, 3)
    z = configurations(theory, batch=4, seed=3)
    # Chain 0: w = 0 exactly on the links (0,0)→(0,1) and (0,1)→(0,2) (basis vectors e_0, e_1, e_2).
    for j in range(3):
        z[0, 0, j] = 0
        z[0, 0, j, j] = 1
    # Chains 1–3: one link with |w| ~ 1e-9, 0.9e-3/(2Nβ) and 1.1e-3/(2Nβ) (arguments y either side of the
    # series threshold): z_(0,1) = ε e^{iφ} z_(0,0) + √(1−ε²) u with u ⟂ z_(0,0).
    kappa = 2 * 3 * 0.8
    for b, eps in ((1, 1e-9), (2, 0.9 * SERIES_BELOW / kappa), (3, 1.1 * SERIES_BELOW / kappa)):
        base, other = z[b, 0, 0], z[b, 0, 1]
        u = other - base * torch.vdot(base, other)
        u = u / torch.linalg.vector_norm(u)
        z[b, 0, 1] = eps * complex(math.cos(1.0), math.sin(1.0)) * base + math.sqrt(1 - eps**2) * u
    w = link_overlaps(z, 1)
    assert w[0, 0, 0] == 0 and w[0, 0, 1] == 0
    moduli = [w[b, 0, 0].abs().item() for b in (1, 2, 3)]
    assert moduli == pytest.approx([1e-9, 0.9 * SERIES_BELOW / kappa, 1.1 * SERIES_BELOW / kappa], rel=1e-6)
    assert torch.isfinite(theory.link_weight(w)).all()
    force = assert_force_is_the_horizontal_autograd_gradient(theory, z)
    # Against central finite differences of the action along a horizontal direction (geodesic), chain by chain.
    noise = torch.randn(z.shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(4))
    v = theory.field.project(z, noise)
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    h = 1e-5

    def moved(t):
        return z * torch.cos(t * norm) + v / norm * torch.sin(t * norm)

    numeric = (theory.action(moved(h)) - theory.action(moved(-h))) / (2 * h)
    analytic = (force.conj() * v).real.sum((1, 2, 3))
    torch.testing.assert_close(analytic, numeric, rtol=1e-7, atol=1e-7)


def test_bessel_ratio_over_argument_and_log_i0_against_scipy():
    y = torch.tensor([0.0, 1e-300, 1e-12, 1e-6, 0.999 * SERIES_BELOW, SERIES_BELOW, 1.001 * SERIES_BELOW, 0.01, 0.5,
                      1.0, 3.0, 10.0, 60.0, 700.0, 1e4], dtype=torch.float64)
    h = bessel_ratio_over_argument(y)
    assert h[0].item() == 0.5 and torch.isfinite(h).all()
    yn = y.numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        reference = np.where(yn > 0, special.i1e(yn) / (yn * special.i0e(yn)), 0.5)
    np.testing.assert_allclose(h.numpy(), reference, rtol=1e-14)
    # log i0e(y) + y: absolute error of a few ulp of max(1, y) (the cancellation at small y costs relative,
    # not absolute, accuracy, which is what an action summed over links needs)
    np.testing.assert_allclose(log_bessel_i0(y).numpy(), np.log(special.i0e(yn)) + yn, rtol=1e-14, atol=1e-15)
    series = yn**2 / 4 - yn**4 / 64
    small = yn < 1e-2
    np.testing.assert_allclose(log_bessel_i0(y).numpy()[small], series[small], rtol=0, atol=1e-15)
    assert log_bessel_i0(torch.tensor([3.0], dtype=torch.float64)).item() == pytest.approx(math.log(special.i0(3.0)),
                                                                                             rel=1e-14)
    # float32: no NaN, and the same function to float precision.
    h32 = bessel_ratio_over_argument(y.float())
    assert torch.isfinite(h32).all()
    np.testing.assert_allclose(h32.numpy(), reference, rtol=1e-6)


@pytest.mark.parametrize("c", [0.0, 0.3, 0.25 - 0.6j, -0.9j, 1.0, 0.7 + 0.7j])
def test_integrating_a_link_out_gives_log_i0_and_its_heat_bath(c):
    """∫dθ/2π exp(κ Re(e^{iθ} conj(w))) = I_0(κ|w|) by quadrature (the trapezoid rule is spectrally accurate
    for periodic integrands), and the λ conditional, von Mises(arg w, κ|w|) as drawn by the joint sampler,
    has the quadrature mean ⟨λ⟩ = (I_1/I_0)(κ|w|) w/|w|."""
    w = complex(c)
    theta = 2 * np.pi * np.arange(512) / 512
    for kappa in (0.5, 6.0, 20.0, 60.0):
        exponent = kappa * (np.exp(1j * theta) * np.conj(w)).real
        log_quadrature = special.logsumexp(exponent) - math.log(512)
        closed = log_bessel_i0(torch.tensor(kappa * abs(w), dtype=torch.float64)).item()
        assert log_quadrature == pytest.approx(closed, rel=1e-13, abs=1e-13)
        weights = np.exp(exponent - exponent.max())
        mean_lambda = (weights * np.exp(1j * theta)).sum() / weights.sum()
        ratio = kappa * bessel_ratio_over_argument(torch.tensor(kappa * abs(w), dtype=torch.float64)).item()
        assert abs(mean_lambda - ratio * w) < 1e-13  # (I_1/I_0)(κ|w|) w/|w| = κ h(κ|w|) w
        draws = np.exp(1j * np.random.default_rng(5).vonmises(np.angle(w), kappa * abs(w), 40000))
        assert abs(draws.mean() - mean_lambda) < 5 * math.sqrt(max(1 - abs(mean_lambda) ** 2, 1e-4) / 40000)


def test_invariances_under_global_unitaries_and_local_phases():
    theory = auxiliary((6, 6), 0.7, 4)
    z = configurations(theory, batch=5, seed=1)
    base, action, force = theory.observables(z), theory.action(z), theory.force(z)
    assert set(base) == {"energy", "action_density", "chi_m", "g_pmin", "topological_charge", "chi_t"}
    u = random_unitary(4, generator=torch.Generator().manual_seed(2))
    alpha = 2 * math.pi * torch.rand(z.shape[:-1], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    phase = torch.exp(1j * alpha)[..., None]
    for transformed, f_transformed in ((z @ u.T, force @ u.T), (z * phase, force * phase),
                                       ((z * phase) @ u.T, (force * phase) @ u.T)):
        torch.testing.assert_close(theory.action(transformed), action, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(theory.force(transformed), f_transformed, rtol=0, atol=1e-12)  # covariant
        for name, value in theory.observables(transformed).items():
            torch.testing.assert_close(value, base[name], rtol=1e-10, atol=1e-10)


def test_cp1_is_an_o3_model_with_a_log_i0_link_action_and_small_beta_is_quartic_at_n_beta_squared():
    """No known model equals auxiliary CP(1), but with s = z̄σz, |w|² = (1 + s_x·s_y)/2, so its action is the
    O(3) one with link action −log I_0(4β √((1 + s_x·s_y)/2)); and −log I_0(2Nβ|w|) = −(Nβ)²|w|² + O(β⁴)."""
    beta = 0.8
    cp1 = auxiliary((6, 6), beta, 2)
    z = configurations(cp1, batch=5, seed=8)
    s = to_o3(z).numpy()
    dots = np.stack([(s * np.roll(s, -1, axis=1 + mu)).sum(-1) for mu in range(2)], 1)
    expected = -np.log(special.i0(4 * beta * np.sqrt((1 + dots) / 2))).sum((1, 2, 3))
    np.testing.assert_allclose(cp1.action(z).numpy(), expected, rtol=1e-13)
    o3 = ONModel((6, 6), beta).observables(torch.from_numpy(s))
    torch.testing.assert_close(cp1.observables(z)["energy"], (1 + o3["energy"]) / 2)
    small, n = 1e-3, 3
    theory, quartic = auxiliary((4, 4), small, n), CPNModel((4, 4), n * small**2, n)
    z = configurations(theory, batch=3, seed=9)
    # next term: +(2Nβ|w|)⁴/64 per link, at most 32 links × (6e-3)⁴/64 ≈ 6.5e-10
    torch.testing.assert_close(theory.action(z), quartic.action(z), rtol=0, atol=1e-9)


def test_built_from_the_registry_with_its_convention_and_bad_parameters():
    theory = build_theory("cpn", (8, 8), "auxiliary", {"beta": 0.6, "n": 10})
    assert isinstance(theory, CPNModel) and theory.convention == "auxiliary"
    assert theory.params == {"convention": "auxiliary", "beta": 0.6, "n": 10} and theory.field.shape == (8, 8, 10)
    assert build_theory("cpn", (8, 8), "quartic", {"beta": 0.6, "n": 10}).convention == "quartic"
    z = theory.field.prior_sample(2, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    assert theory.action(z).dtype == torch.float32 and theory.force(z).dtype == torch.complex64
    for params in ({"beta": 0.7}, {"beta": 0.7, "n": 1}, {"beta": -1.0, "n": 3}, {"beta": 1.0, "n": 3, "x": 1}):
        with pytest.raises(ValueError):
            build_theory("cpn", (8, 8), "auxiliary", params)
    with pytest.raises(ValueError, match="unknown cpn convention 'villain'; expected one of quartic, auxiliary"):
        CPNModel((4, 4), 1.0, 3, convention="villain")


def joint_against_marginal_hmc(n, beta, lattice, joint, hmc):
    """Pulls (joint − HMC)/σ of energy, chi_m, action density, xi2nd and the link energy: ⟨Re λ conj(w)⟩ in
    the joint model, ⟨|w| (I_1/I_0)(2Nβ|w|)⟩ on the marginal HMC configurations (same expectation); and of
    chi_t where Q moves. Γ-method errors, chains as replica."""
    theory = auxiliary(lattice, beta, n)
    a = estimate_observables(run_cpn_auxiliary(theory, **joint), theory)
    kappa, improved = 2 * n * beta, []

    def record(x):
        r = torch.stack([link_overlaps(x, mu).abs() for mu in range(2)], 1)
        improved.append((r * kappa * r * bessel_ratio_over_argument(kappa * r)).mean((1, 2, 3)).numpy())

    chain = run_hmc(theory, progress=False, on_measurement=record, **hmc)
    chain.observables["link_energy"] = np.stack(improved, 1)
    b = estimate_observables(chain, theory)
    names = ["energy", "chi_m", "action_density", "xi2nd", "link_energy"] + (["chi_t"] if n < 10 else [])
    return {k: (a[k]["value"] - b[k]["value"]) / math.hypot(a[k]["error"], b[k]["error"]) for k in names}


@pytest.mark.parametrize("n,beta", [(3, 0.7), (10, 0.65)])
def test_joint_heat_bath_sampler_agrees_with_hmc_on_the_marginal(n, beta):
    pulls = joint_against_marginal_hmc(n, beta, (4, 4), dict(chains=16, n_therm=100, n_meas=1200, seed=1),
                                       dict(chains=16, n_therm=100, n_traj=400, seed=2))
    assert max(abs(p) for p in pulls.values()) < 4, pulls


@pytest.mark.slow
@pytest.mark.parametrize("n,beta,lattice", [(3, 0.7, (4, 4)), (10, 0.65, (4, 4)), (3, 1.0, (6, 6)), (10, 0.6, (6, 6))])
def test_joint_heat_bath_sampler_agrees_with_hmc_on_the_marginal_long(n, beta, lattice):
    pulls = joint_against_marginal_hmc(n, beta, lattice, dict(chains=16, n_therm=300, n_meas=6000, seed=11),
                                       dict(chains=16, n_therm=200, n_traj=3000, seed=12))
    assert max(abs(p) for p in pulls.values()) < 4, pulls
