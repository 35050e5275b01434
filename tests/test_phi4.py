"""φ⁴: each source convention against an independent transcription of its action; force vs autograd."""

import itertools
import math

import numpy as np
import pytest
import torch

from suite.exact.free_scalar import free_scalar_exact
from suite.theories import build_theory
from suite.theories.phi4 import Phi4, effective_mass_average


def sites(lattice):
    return itertools.product(*[range(n) for n in lattice])


def neighbour(n, mu, lattice):
    m = list(n)
    m[mu] = (m[mu] + 1) % lattice[mu]
    return tuple(m)


def lecture_action_loops(phi, m2, lam):
    """Σ_x [½ Σ_mu (φ(x+mu) − φ(x))² + ½ m² φ² + λ/4! φ⁴], site by site."""
    lattice = phi.shape
    total = 0.0
    for n in sites(lattice):
        kinetic = sum((phi[neighbour(n, mu, lattice)] - phi[n]) ** 2 for mu in range(len(lattice)))
        total += 0.5 * kinetic + 0.5 * m2 * phi[n] ** 2 + lam / 24 * phi[n] ** 4
    return total


def albergo_action_tutorial(cfgs, m2, lam):
    """Transcription of ScalarPhi4Action from the 2021 tutorial notebook (arXiv:2101.08176)."""
    action_density = m2 * cfgs**2 + lam * cfgs**4
    dims = range(1, cfgs.ndim)
    for mu in dims:
        action_density += 2 * cfgs**2
        action_density -= cfgs * np.roll(cfgs, -1, mu)
        action_density -= cfgs * np.roll(cfgs, 1, mu)
    return action_density.sum(axis=tuple(dims))


def hopping_action_loops(phi, kappa, lam):
    """Σ_x [−2κ Σ_mu φ(x) φ(x+mu) + φ² + λ(φ² − 1)²], site by site."""
    lattice = phi.shape
    total = 0.0
    for n in sites(lattice):
        hop = sum(phi[n] * phi[neighbour(n, mu, lattice)] for mu in range(len(lattice)))
        total += -2 * kappa * hop + phi[n] ** 2 + lam * (phi[n] ** 2 - 1) ** 2
    return total


LATTICES = [(4, 4), (3, 5), (2, 3, 4)]


@pytest.mark.parametrize("lattice", LATTICES)
def test_lecture_convention(lattice):
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(3, *lattice))
    theory = Phi4.from_lecture(lattice, m2=-0.5, lam=1.5)
    got = theory.action(torch.from_numpy(phi)).numpy()
    want = [lecture_action_loops(c, -0.5, 1.5) for c in phi]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("lattice", LATTICES)
def test_albergo_convention(lattice):
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(3, *lattice))
    theory = Phi4.from_albergo(lattice, m2=-4.0, lam=8.0)
    got = theory.action(torch.from_numpy(phi)).numpy()
    np.testing.assert_allclose(got, albergo_action_tutorial(phi.copy(), -4.0, 8.0), rtol=1e-12)


@pytest.mark.parametrize("lattice", LATTICES)
def test_hopping_convention(lattice):
    rng = np.random.default_rng(2)
    phi = rng.normal(size=(3, *lattice))
    theory = Phi4.from_hopping(lattice, kappa=0.27, lam=0.02)
    got = theory.action(torch.from_numpy(phi)).numpy()
    want = [hopping_action_loops(c, 0.27, 0.02) for c in phi]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_lecture_and_albergo_are_the_same_theory_after_field_rescaling():
    # φ_albergo = φ_lecture / sqrt(2) with m² equal and λ_lecture = 6 λ_albergo.
    lattice = (6, 6)
    phi = torch.randn(4, *lattice, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lecture = Phi4.from_lecture(lattice, m2=-1.0, lam=6 * 0.7)
    albergo = Phi4.from_albergo(lattice, m2=-1.0, lam=0.7)
    torch.testing.assert_close(lecture.action(phi), albergo.action(phi / math.sqrt(2)))


@pytest.mark.parametrize("convention,params", [("lecture", {"m2": -0.5, "lam": 4.5}),
                                               ("albergo", {"m2": -4.0, "lam": 6.975}),
                                               ("hopping", {"kappa": 0.3, "lam": 0.5})])
@pytest.mark.parametrize("lattice", [(5, 5), (2, 4), (3, 3, 3)])
def test_force_and_fused_kick_equal_autograd(convention, params, lattice):
    """The analytic force against autograd, and the fused kick against p − ε·(autograd force)."""
    theory = build_theory("phi4", lattice, convention, params)
    generator = torch.Generator().manual_seed(4)
    x = 1.3 * torch.randn(5, *lattice, dtype=torch.float64, generator=generator)
    p = torch.randn(5, *lattice, dtype=torch.float64, generator=generator)
    force = theory.autograd_force(x)
    torch.testing.assert_close(theory.force(x), force, rtol=1e-12, atol=1e-12)
    kicked = p.clone()
    assert theory.kick(x, kicked, 0.37) is kicked
    torch.testing.assert_close(kicked, p - 0.37 * force, rtol=1e-12, atol=1e-12)


def test_observables_definitions():
    lattice = (6, 6)
    theory = Phi4.from_albergo(lattice, m2=-4.0, lam=8.0)
    x = torch.randn(7, *lattice, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    obs = theory.observables(x)
    assert all(v.shape == (7,) for v in obs.values())
    volume = 36
    npx = x.numpy()
    m = npx.sum((1, 2))
    np.testing.assert_allclose(obs["chi2"].numpy(), m**2 / volume)
    np.testing.assert_allclose(obs["abs_mag"].numpy(), np.abs(m) / volume)
    # Correlator by brute force over time slices; Σ_t C(t) = M²/V.
    slices = npx.sum(2)
    for t in range(4):
        want = sum(slices[:, tau] * slices[:, (tau + t) % 6] for tau in range(6)) / volume
        np.testing.assert_allclose(obs[f"corr_{t}"].numpy(), want, rtol=1e-10)
    full = theory.time_slice_correlator(x).numpy()
    np.testing.assert_allclose(full.sum(1), m**2 / volume, rtol=1e-10)
    # G̃(p_min) from a direct Fourier sum.
    ft = sum(np.abs(np.fft.fft2(npx)[:, k0, k1]) ** 2 for k0, k1 in [(1, 0), (0, 1)]) / (2 * volume)
    np.testing.assert_allclose(obs["g_pmin"].numpy(), ft, rtol=1e-10)
    e = sum(npx * np.roll(npx, -1, ax) for ax in (1, 2)).sum((1, 2)) / (2 * volume)
    np.testing.assert_allclose(obs["e_ising"].numpy(), e, rtol=1e-12)


def test_free_field_exact_values_by_brute_force_gaussian_integral():
    """On a tiny lattice, the exact values equal those from the inverse of the kernel matrix."""
    lattice = (4, 4)
    theory = Phi4.from_lecture(lattice, m2=0.3, lam=0.0)
    volume = 16
    # Quadratic form S = ½ φᵀ K φ: K = Hessian of the action, built column by column from the force.
    eye = torch.eye(volume, dtype=torch.float64).reshape(volume, *lattice)
    kernel = theory.force(eye).reshape(volume, volume).numpy()
    cov = np.linalg.inv(kernel)
    exact = free_scalar_exact(theory)
    assert exact["phi2"] == pytest.approx(np.trace(cov) / volume, rel=1e-12)
    assert exact["chi2"] == pytest.approx(cov.sum() / volume, rel=1e-12)
    idx = np.arange(volume).reshape(lattice)
    nn = sum(cov[idx.ravel(), np.roll(idx, -1, ax).ravel()].sum() for ax in (0, 1)) / (2 * volume)
    assert exact["e_ising"] == pytest.approx(nn, rel=1e-12)
    # Exact time-slice correlator from the covariance: its effective mass is the pole mass for every t.
    slice_cov = np.array([[cov[idx[t0]][:, idx[t1]].sum() for t1 in range(4)] for t0 in range(4)])
    corr = np.array([np.mean([slice_cov[t0, (t0 + t) % 4] for t0 in range(4)]) * 4 / volume for t in range(3)])
    assert exact["m_pole"] == pytest.approx(effective_mass_average(corr), rel=1e-10)
    assert exact["xi2nd"] == pytest.approx(1 / math.sqrt(0.3), rel=1e-12)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="lattice extents"):
        Phi4.from_lecture((1, 4), m2=1.0, lam=0.0)
    with pytest.raises(ValueError, match="unknown phi4 convention"):
        build_theory("phi4", (4, 4), "nonsense", {"m2": 1.0, "lam": 0.0})
    with pytest.raises(ValueError, match="unknown theory"):
        build_theory("phi6", (4, 4), "lecture", {})
    with pytest.raises(ValueError, match="no stable vacuum"):
        free_scalar_exact(Phi4.from_lecture((4, 4), m2=-0.1, lam=0.0))
