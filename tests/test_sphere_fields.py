"""Sphere field spaces (S^{N−1}, S^{2N−1}, CP(N−1)) and HMC on them: the geodesic drift with its
parallel transport, tangent momenta, reversibility, ΔH ∝ ε², and the exact energy of the 1D O(3)
chain; flat spaces and the torus drift exactly as before."""

import math

import numpy as np
import pytest
import torch
from scipy.special import spherical_in

from reference.hmc import integrate, run_hmc
from suite.fields import (ComplexSphereSpace, EuclideanSpace, ProjectiveSpace, SphereSpace, TorusSpace,
                          sphere_area)
from suite.stats import gamma_method
from suite.theories.cpn import CPNModel
from suite.theories.on import ONModel


def real_inner(a, b):
    if a.is_complex():
        return (a.real * b.real + a.imag * b.imag).sum(-1)
    return (a * b).sum(-1)


@pytest.mark.parametrize("space", [SphereSpace((4, 4, 3)), SphereSpace((6, 2)), ComplexSphereSpace((4, 4, 3)),
                                   ProjectiveSpace((4, 4, 3))])
def test_points_momenta_and_the_geodesic_drift(space):
    g = torch.Generator().manual_seed(0)
    x = space.prior_sample(50, generator=g)
    assert x.shape == (50, *space.shape) and x.is_complex() == space.is_complex
    torch.testing.assert_close(real_inner(x, x), torch.ones(x.shape[:-1], dtype=torch.float64), rtol=0, atol=1e-14)
    p = space.momenta(x, generator=g)
    assert real_inner(x, p).abs().max() < 1e-14  # tangent
    if isinstance(space, ProjectiveSpace):  # horizontal: no component along the phase direction i z
        assert real_inner(1j * x, p).abs().max() < 1e-14
    assert space.kinetic_energy(p).shape == (50,)
    eps = 0.37
    y, q = space.update_with_momentum(x, p, eps)
    torch.testing.assert_close(y, space.update(x, p, eps))
    assert (real_inner(y, y) - 1).abs().max() < 1e-14 and real_inner(y, q).abs().max() < 1e-13
    torch.testing.assert_close(real_inner(q, q), real_inner(p, p))  # |p| conserved
    if isinstance(space, ProjectiveSpace):
        assert real_inner(1j * y, q).abs().max() < 1e-13  # stays horizontal
    # The great circle in closed form: the angle between x and y is eps |p| (mod 2π), y in span(x, p).
    speed = real_inner(p, p).sqrt()
    torch.testing.assert_close(real_inner(x, y), torch.cos(eps * speed), rtol=0, atol=1e-13)
    # Splitting the step in two halves gives the same point and momentum (a geodesic flow).
    y2, q2 = space.update_with_momentum(*space.update_with_momentum(x, p, eps / 2), eps / 2)
    torch.testing.assert_close(y2, y, rtol=0, atol=1e-13)
    torch.testing.assert_close(q2, q, rtol=0, atol=1e-13)
    # Zero momentum stays put.
    y0, q0 = space.update_with_momentum(x, torch.zeros_like(p), eps)
    torch.testing.assert_close(y0, x, rtol=0, atol=1e-15)


def test_sphere_prior_is_uniform_with_the_stated_density():
    space = SphereSpace((3, 3))  # 3 sites of S^2
    x = space.prior_sample(20000, generator=torch.Generator().manual_seed(1))
    assert abs(x.mean().item()) < 0.01 and x[..., 2].pow(2).mean().item() == pytest.approx(1 / 3, abs=0.01)
    torch.testing.assert_close(space.prior_log_prob(x[:2]), torch.full((2,), -3 * math.log(4 * math.pi),
                                                                       dtype=torch.float64))
    assert sphere_area(1) == pytest.approx(2 * math.pi) and sphere_area(3) == pytest.approx(2 * math.pi**2)
    c = ComplexSphereSpace((2, 3))
    assert c.prior_log_prob(c.prior_sample(1)).item() == pytest.approx(-2 * math.log(sphere_area(5)))
    assert c.prior_sample(1, dtype=torch.float32).dtype == torch.complex64


@pytest.mark.parametrize("space", [EuclideanSpace((4, 4)), TorusSpace((2, 4, 4))])
def test_flat_and_torus_drift_leaves_the_momentum_object_alone(space):
    x = space.prior_sample(3, generator=torch.Generator().manual_seed(2))
    p = space.momenta(x, generator=torch.Generator().manual_seed(3))
    y, q = space.update_with_momentum(x, p, 0.3)
    assert q is p and torch.equal(y, space.update(x, p, 0.3))


THEORIES = [ONModel((6, 6), 1.1), ONModel((5, 4), 0.7, n=4), CPNModel((6, 6), 0.8, 3), CPNModel((4, 6), 0.6, 2)]


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: f"{type(t).__name__}{t.params}")
def test_integrators_are_reversible_on_spheres(theory, integrator):
    x0 = theory.field.prior_sample(3, generator=torch.Generator().manual_seed(4))
    p0 = theory.field.momenta(x0, generator=torch.Generator().manual_seed(5))
    x1, p1 = integrate(theory, x0, p0, 0.05, 20, integrator)
    x2, p2 = integrate(theory, x1, -p1, 0.05, 20, integrator)
    torch.testing.assert_close(x2, x0, rtol=0, atol=1e-11)
    torch.testing.assert_close(-p2, p0, rtol=0, atol=1e-11)


@pytest.mark.parametrize("theory", [THEORIES[0], THEORIES[2]], ids=["on", "cpn"])
def test_energy_violation_falls_as_eps_squared_on_spheres(theory):
    x = theory.field.prior_sample(1, generator=torch.Generator().manual_seed(6))
    p = theory.field.momenta(x, generator=torch.Generator().manual_seed(7))
    h0 = theory.field.kinetic_energy(p) + theory.action(x)
    steps = np.array([20, 40, 80, 160])
    dh = []
    for n in steps:
        x1, p1 = integrate(theory, x, p, 1.0 / n, n, "leapfrog")
        dh.append((theory.field.kinetic_energy(p1) + theory.action(x1) - h0).abs().item())
    slope = np.polyfit(np.log(1.0 / steps), np.log(dh), 1)[0]
    assert slope == pytest.approx(2.0, abs=0.15), dh


def o3_chain_energy(length, beta):
    """Exact ⟨s_x·s_{x+1}⟩ of the periodic 1D O(3) chain from the transfer matrix: the kernel e^{β s·s'}
    has eigenvalues i_l(β) (modified spherical Bessel), degeneracy 2l+1, so Z ∝ Σ_l (2l+1) i_l^L."""
    l = np.arange(60)
    i, di = spherical_in(l, beta), spherical_in(l, beta, derivative=True)
    return float(((2 * l + 1) * i ** (length - 1) * di).sum() / ((2 * l + 1) * i**length).sum())


def test_hmc_on_the_sphere_reproduces_the_exact_1d_o3_chain():
    theory = ONModel((8,), 1.5)
    exact = o3_chain_energy(8, 1.5)
    chain = run_hmc(theory, chains=32, n_therm=100, n_traj=400, seed=3, progress=False)
    r = gamma_method(chain.observables["energy"])
    assert abs(r.value - exact) < 4 * r.error, (r.value, r.error, exact)
    dh = gamma_method(np.exp(-chain.delta_h))
    assert abs(dh.value - 1) < 4 * dh.error


@pytest.mark.parametrize("space", [SphereSpace((4, 4, 3)), ComplexSphereSpace((4, 4, 3)), ProjectiveSpace((4, 4, 3))])
def test_momenta_are_standard_gaussians_of_the_tangent_space(space):
    """⟨2K⟩ per site is the tangent space's real dimension (N − 1, 2N − 1, 2N − 2): K = ½ Σ p² needs unit
    variance in every real component, also for complex fields."""
    x = space.prior_sample(4000, generator=torch.Generator().manual_seed(8))
    p = space.momenta(x, generator=torch.Generator().manual_seed(9))
    dim = {SphereSpace: 2, ComplexSphereSpace: 5, ProjectiveSpace: 4}[type(space)]
    per_site = (2 * space.kinetic_energy(p) / 16).mean().item()
    assert per_site == pytest.approx(dim, rel=0.01)
