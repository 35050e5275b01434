"""2D U(1): action, force, charge and loops against independent transcriptions; gauge invariance;
the exact character-expansion values against brute-force integrals that do not use it; HMC."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.signal import fftconvolve
from scipy.special import ive

from reference.hmc import integrate as hmc_integrate
from reference.hmc import run_hmc
from suite.catalogue import entries, get_entry
from suite.exact.u1 import (charge_distribution, chi_t_infinite_volume, log_partition_function, plaquette_exact,
                            plaquette_infinite_volume, q2_exact, single_plaquette_moments, u1_exact,
                            wilson_loop_exact)
from suite.fields import TorusSpace, wrap_angle
from suite.stats import gamma_method
from suite.theories import build_theory
from suite.theories.base import creutz_ratio
from suite.theories.u1 import (U1, constant_flux_configuration, gauge_transform,
                               random_gauge_transformation)

TWO_PI = 2 * math.pi


def configurations(lattice, batch=4, seed=0, spread=1.0):
    """Haar-random links (spread 1) or links concentrated near 0 (smaller spread: HMC-like, mostly Q = 0)."""
    x = TorusSpace((2, *lattice)).prior_sample(batch, generator=torch.Generator().manual_seed(seed))
    return wrap_angle(spread * x)


# -- field space ------------------------------------------------------------------------------


def test_torus_space_prior_update_and_kinetic_energy():
    space = TorusSpace((2, 4, 4))
    g = torch.Generator().manual_seed(0)
    x = space.prior_sample(2000, generator=g)
    assert x.shape == (2000, 2, 4, 4) and x.dtype == torch.float64
    assert x.min() > -math.pi and x.max() <= math.pi
    assert abs(x.mean().item()) < 0.02 and x.var().item() == pytest.approx(math.pi**2 / 3, rel=0.02)  # uniform
    p = space.momenta(x, generator=g)
    assert space.kinetic_energy(p).shape == (2000,)
    y = space.update(x, p, 3.7)
    assert y.min() > -math.pi and y.max() <= math.pi
    torch.testing.assert_close(torch.exp(1j * y), torch.exp(1j * (x + 3.7 * p)), rtol=0, atol=1e-12)
    assert torch.equal(space.project(x, p), p)
    wrapped = wrap_angle(torch.tensor([math.pi, -math.pi, 3 * math.pi, -2.5 * math.pi, 0.0], dtype=torch.float64))
    assert wrapped.tolist() == pytest.approx([math.pi, math.pi, math.pi, -0.5 * math.pi, 0.0], abs=1e-15)


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_integrators_are_reversible_on_the_torus(integrator):
    theory = U1((6, 6), beta=3.0)
    x0 = configurations((6, 6), batch=3, seed=1)
    p0 = theory.field.momenta(x0, generator=torch.Generator().manual_seed(2))
    x1, p1 = hmc_integrate(theory, x0, p0, 0.1, 20, integrator)
    x2, p2 = hmc_integrate(theory, x1, -p1, 0.1, 20, integrator)
    torch.testing.assert_close(wrap_angle(x2 - x0), torch.zeros_like(x0), rtol=0, atol=1e-11)
    torch.testing.assert_close(-p2, p0, rtol=0, atol=1e-11)


# -- action, force, observables -----------------------------------------------------------------


def plaquette_loops(x, n0, n1):
    """θ_P at site (n0, n1) of one configuration x[mu, n0, n1], link by link."""
    l0, l1 = x.shape[1:]
    return x[0, n0, n1] + x[1, (n0 + 1) % l0, n1] - x[0, n0, (n1 + 1) % l1] - x[1, n0, n1]


def loop_angle_by_path(x, n0, n1, a, b):
    """Angle of the a×b rectangle (a along axis 0, b along axis 1) from (n0, n1): the links walked around it."""
    l0, l1 = x.shape[1:]
    bottom = sum(x[0, (n0 + i) % l0, n1] for i in range(a))
    right = sum(x[1, (n0 + a) % l0, (n1 + j) % l1] for j in range(b))
    top = sum(x[0, (n0 + i) % l0, (n1 + b) % l1] for i in range(a))
    left = sum(x[1, n0, (n1 + j) % l1] for j in range(b))
    return bottom + right - top - left


def tutorial_action_and_charge(cfgs, beta):
    """Transcription of U1GaugeAction / topo_charge of the 2021 tutorial (arXiv:2101.08176), wrap [−π, π)."""
    plaq = cfgs[:, 0] + torch.roll(cfgs[:, 1], -1, 1) - torch.roll(cfgs[:, 0], -1, 2) - cfgs[:, 1]
    action = -beta * torch.cos(plaq).sum((1, 2))
    charge = (torch.remainder(plaq + math.pi, TWO_PI) - math.pi).sum((1, 2)) / TWO_PI
    return action, charge


@pytest.mark.parametrize("lattice", [(4, 4), (3, 5), (6, 4)])
def test_action_charge_and_loops_against_transcriptions(lattice):
    theory = U1(lattice, beta=1.7)
    x = configurations(lattice, batch=3, seed=3)
    npx = x.numpy()
    l0, l1 = lattice
    for b in range(3):
        plaq = np.array([[plaquette_loops(npx[b], i, j) for j in range(l1)] for i in range(l0)])
        np.testing.assert_allclose(theory.plaquette_angle(x)[b].numpy(), plaq, rtol=0, atol=1e-13)
        assert theory.action(x)[b].item() == pytest.approx(-1.7 * np.cos(plaq).sum(), rel=1e-12)
    action, charge = tutorial_action_and_charge(x, 1.7)
    torch.testing.assert_close(theory.action(x), action, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(theory.topological_charge(x), charge, rtol=0, atol=1e-10)
    obs = theory.observables(x)
    assert all(v.shape == (3,) for v in obs.values())
    n = theory.loop_extent
    assert n == min(l0, l1) // 2
    assert {k for k in obs if k.startswith("wilson_")} == {f"wilson_{r}_{t}" for r in range(1, n + 1)
                                                          for t in range(r, n + 1)}
    for r, t in itertools.product(range(1, n + 1), repeat=2):
        if r > t:
            continue
        want = []
        for b in range(3):
            w = np.mean([np.cos(loop_angle_by_path(npx[b], i, j, r, t)) for i in range(l0) for j in range(l1)])
            w_t = np.mean([np.cos(loop_angle_by_path(npx[b], i, j, t, r)) for i in range(l0) for j in range(l1)])
            want.append(0.5 * (w + w_t))
        np.testing.assert_allclose(obs[f"wilson_{r}_{t}"].numpy(), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(obs["plaquette"].numpy(), obs["wilson_1_1"].numpy(), atol=1e-14)
    np.testing.assert_allclose(obs["action_density"].numpy(), theory.action(x).numpy() / (l0 * l1), rtol=1e-12)
    np.testing.assert_allclose(obs["q2"].numpy(), obs["topological_charge"].numpy() ** 2)
    np.testing.assert_allclose(obs["chi_t"].numpy(), obs["q2"].numpy() / (l0 * l1))


@pytest.mark.parametrize("lattice", [(2, 2), (4, 4), (3, 5), (8, 6)])
@pytest.mark.parametrize("beta", [0.5, 3.0])
def test_force_equals_autograd(lattice, beta):
    theory = build_theory("u1", lattice, "wilson", {"beta": beta})
    x = configurations(lattice, batch=5, seed=4)
    torch.testing.assert_close(theory.force(x), theory.autograd_force(x), rtol=1e-12, atol=1e-12)
    # and a finite difference of the action along a random direction
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    h = 1e-5
    fd = (theory.action(x + h * v) - theory.action(x - h * v)) / (2 * h)
    torch.testing.assert_close((theory.force(x) * v).flatten(1).sum(1), fd, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("spread", [1.0, 0.3])
def test_action_and_every_observable_are_gauge_invariant(spread):
    theory = U1((8, 6), beta=2.0)
    x = configurations((8, 6), batch=6, seed=6, spread=spread)
    g = torch.Generator().manual_seed(7)
    y = random_gauge_transformation(x, g)
    assert y.min() > -math.pi and y.max() <= math.pi
    assert (y - x).abs().max() > 1  # the links did change
    torch.testing.assert_close(theory.action(y), theory.action(x), rtol=0, atol=1e-11)
    ox, oy = theory.observables(x), theory.observables(y)
    for name in ox:
        torch.testing.assert_close(oy[name], ox[name], rtol=0, atol=1e-11, msg=name)
    # The force is gauge covariant: it transforms like the links' tangent vectors, i.e. it is unchanged in U(1).
    torch.testing.assert_close(theory.force(y), theory.force(x), rtol=0, atol=1e-11)


def test_topological_charge_is_an_integer_on_every_configuration():
    for lattice, seed in [((2, 2), 0), ((4, 4), 1), ((5, 3), 2), ((16, 16), 3)]:
        theory = U1(lattice, beta=1.0)
        q = theory.topological_charge(configurations(lattice, batch=200, seed=seed))
        assert (q - q.round()).abs().max() < 1e-10
        assert q.abs().max() >= 1  # Haar-random links carry charge


@pytest.mark.parametrize("lattice", [(4, 4), (6, 8), (5, 7)])
def test_constant_flux_configuration_has_the_winding_it_was_built_with(lattice):
    theory = U1(lattice, beta=1.0)
    volume = lattice[0] * lattice[1]
    g = torch.Generator().manual_seed(8)
    for k in range(-(volume // 2 - 1), volume // 2):
        x = constant_flux_configuration(lattice, k)
        assert x.min() > -math.pi and x.max() <= math.pi
        assert theory.topological_charge(x).item() == pytest.approx(k, abs=1e-10)
        assert theory.observables(x)["plaquette"].item() == pytest.approx(math.cos(TWO_PI * k / volume), abs=1e-12)
        torch.testing.assert_close(wrap_angle(theory.plaquette_angle(x)), torch.full((1, *lattice), TWO_PI * k / volume,
                                   dtype=torch.float64), rtol=0, atol=1e-12)
        y = random_gauge_transformation(x, g)
        assert theory.topological_charge(y).item() == pytest.approx(k, abs=1e-10)
    with pytest.raises(ValueError):
        constant_flux_configuration(lattice, math.ceil(volume / 2))


def test_gauge_transform_formula():
    x = configurations((4, 4), batch=1, seed=9)
    alpha = torch.rand(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    y = gauge_transform(x, alpha)
    # θ_0(x) → α(x) + θ_0(x) − α(x + 0̂) at site (3, 1): x + 0̂ = (0, 1)
    want = alpha[0, 3, 1] + x[0, 0, 3, 1] - alpha[0, 0, 1]
    assert math.cos(y[0, 0, 3, 1] - want) == pytest.approx(1.0, abs=1e-14)


def test_creutz_ratio_and_derived_quantities():
    theory = U1((8, 8), beta=2.0)
    derived = theory.derived_quantities()
    assert set(derived) == {f"creutz_{r}_{t}" for r in range(2, 5) for t in range(r, 5)}
    assert derived["creutz_2_3"].inputs == ("wilson_2_3", "wilson_1_2", "wilson_2_2", "wilson_1_3")
    assert derived["creutz_3_3"].inputs == ("wilson_3_3", "wilson_2_2", "wilson_2_3", "wilson_2_3")
    r = 0.7  # area law W = r^(RT): every Creutz ratio is −log r
    w = {(a, b): r ** (a * b) for a in range(1, 5) for b in range(1, 5)}
    assert creutz_ratio(w[3, 4], w[2, 3], w[3, 3], w[2, 4]) == pytest.approx(-math.log(r), rel=1e-12)
    assert math.isnan(creutz_ratio(-0.01, 0.5, 0.2, 0.3))
    assert math.isnan(creutz_ratio(0.01, 0.5, 0.0, 0.3))


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="two dimensions"):
        U1((4, 4, 4), beta=1.0)
    with pytest.raises(ValueError, match="lattice extents"):
        U1((1, 4), beta=1.0)
    with pytest.raises(ValueError, match="unknown u1 convention"):
        build_theory("u1", (4, 4), "villain", {"beta": 1.0})
    with pytest.raises(ValueError, match="beta"):
        U1((4, 4), beta=-1.0)
    with pytest.raises(ValueError):
        q2_exact(0.0, 16)


# -- exact values ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # quad's round-off notice at 1e-15
@pytest.mark.parametrize("beta", [0.5, 2.0, 7.0, 10.0])
def test_single_plaquette_moments_against_adaptive_quadrature(beta):
    s, c = single_plaquette_moments(beta, 24)
    for n in (0, 1, 2, 7, 24):
        def weight(p, n=n):
            return math.exp(beta * (math.cos(p) - 1)) / TWO_PI
        s_quad = integrate.quad(lambda p: p / TWO_PI * math.sin(n * p) * weight(p), -math.pi, math.pi,
                                epsabs=1e-16, limit=200)[0]
        c_quad = integrate.quad(lambda p: (p / TWO_PI) ** 2 * math.cos(n * p) * weight(p), -math.pi, math.pi,
                                epsabs=1e-16, limit=200)[0]
        i_quad = integrate.quad(lambda p: math.cos(n * p) * weight(p), -math.pi, math.pi, epsabs=1e-15, limit=200)[0]
        assert s[n] == pytest.approx(s_quad, abs=1e-14)
        assert c[n] == pytest.approx(c_quad, abs=1e-14)
        assert ive(n, beta) == pytest.approx(i_quad, abs=1e-14)


def _gauss_legendre(a, b, n):
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (b - a) * (x + 1) + a, 0.5 * (b - a) * w


def brute_force_2x2_plaquette_variables(beta, nodes=40):
    """<cos θ_P>, <Q²> on the 2×2 torus as a direct 3D integral over plaquette angles, no Fourier sum.

    Variables φ1, φ2 ∈ (−π, π] and s = φ1 + φ2 + φ3 with φ3 ∈ (−π, π]; the constraint Σ_P θ_P = 0
    makes φ4 = wrap(−s), so cos φ4 = cos s and Q = (φ1 + φ2 + φ3 + φ4)/2π = round(s/2π).
    Gauss–Legendre on every piece where the integrand and the limits are smooth (s split at
    multiples of π, φ1 at s)."""
    z = plaq = q2 = 0.0
    x, w = np.polynomial.legendre.leggauss(nodes)
    for k in range(-3, 3):
        for s, ws in zip(*_gauss_legendre(k * math.pi, (k + 1) * math.pi, nodes)):
            lo1, hi1 = max(-math.pi, s - TWO_PI), min(math.pi, s + TWO_PI)
            for a, b in ([(lo1, s), (s, hi1)] if lo1 < s < hi1 else [(lo1, hi1)]):
                p1, w1 = _gauss_legendre(a, b, nodes)
                lo2, hi2 = np.maximum(-math.pi, s - p1 - math.pi), np.minimum(math.pi, s - p1 + math.pi)
                p2 = 0.5 * (hi2 - lo2)[:, None] * (x + 1) + lo2[:, None]
                w2 = 0.5 * (hi2 - lo2)[:, None] * w
                cos_sum = np.cos(p1)[:, None] + np.cos(p2) + np.cos(s - p1[:, None] - p2) + math.cos(s)
                weight = ws * w1[:, None] * w2 * np.exp(beta * (cos_sum - 4))
                z += weight.sum()
                plaq += (weight * cos_sum / 4).sum()
                q2 += weight.sum() * round(s / TWO_PI) ** 2
    return plaq / z, q2 / z


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_exact_2x2_against_direct_integral_over_plaquette_angles(beta):
    plaq, q2 = brute_force_2x2_plaquette_variables(beta)
    assert plaquette_exact(beta, 4) == pytest.approx(plaq, rel=1e-12)
    assert q2_exact(beta, 4) == pytest.approx(q2, rel=1e-11)


def link_grid_2x2(beta, n, log_z=False):
    """<cos θ_P>, <Q²> on 2×2 from the links themselves, with the U1 theory's own action and observables:
    maximal-tree gauge (3 links set to 0, exact for gauge-invariant quantities), the other 5 links on an n^5
    periodic midpoint grid. Spectrally accurate for the smooth plaquette; O(1/n) for the discontinuous Q²."""
    theory = U1((2, 2), beta)
    g = -math.pi + TWO_PI * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    free = torch.stack(torch.meshgrid(*[g] * 5, indexing="ij"), -1).reshape(-1, 5)
    x = torch.zeros(len(free), 2, 2, 2, dtype=torch.float64)  # tree: θ_0(0,0), θ_1(0,0), θ_1(1,0) = 0
    x[:, 0, 1, 0], x[:, 0, 0, 1], x[:, 0, 1, 1], x[:, 1, 0, 1], x[:, 1, 1, 1] = free.T
    s = theory.action(x)
    if log_z:  # Z = ∫ Π dθ/2π e^{−S}: the grid mean (the 3 gauge-fixed links integrate to 1)
        return (torch.logsumexp(-s, 0) - math.log(len(s))).item()
    w = torch.exp(-(s - s.min()))
    obs = theory.observables(x)
    return ((w * obs["plaquette"]).sum() / w.sum()).item(), ((w * obs["q2"]).sum() / w.sum()).item()


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_exact_2x2_against_integral_over_link_angles(beta):
    plaq, q2_coarse = link_grid_2x2(beta, 12)
    plaq_fine, q2_fine = link_grid_2x2(beta, 16)
    exact = q2_exact(beta, 4)
    assert plaquette_exact(beta, 4) == pytest.approx(plaq_fine, rel=1e-12)
    assert log_partition_function(beta, 4) == pytest.approx(link_grid_2x2(beta, 16, log_z=True), rel=1e-12)
    assert abs(q2_fine - exact) < abs(q2_coarse - exact)  # converging towards the exact value
    assert q2_fine == pytest.approx(exact, rel=0.015)


def brute_force_by_convolution(beta, volume, areas=(), m=2048, charges=()):
    """<cos θ_P>, <Q²>, Wilson loops and P(Q) for Q in ``charges`` on a torus of V plaquettes from the
    density of sums of plaquette angles: p = f*f*...*f (linear convolutions on a grid of m cells per 2π,
    f(φ) = e^{β cos φ} on (−π, π]), the last plaquette φ_V = wrap(−s) weighted by e^{β cos s},
    Q = round(s/2π). No Fourier series, no Bessel functions; midpoint rule with error O(h²), removed by
    Richardson extrapolation (m, 2m)."""

    def once(m):
        h = TWO_PI / m
        phi = -math.pi + (np.arange(m) + 0.5) * h
        f = np.exp(beta * (np.cos(phi) - 1)) * h

        def power(k):  # density of a sum of k plaquette angles on its grid, and that grid
            p = f.copy()
            for _ in range(k - 1):
                p = fftconvolve(p, f)
            return p, -k * math.pi + (np.arange(len(p)) + 0.5 * k) * h

        p, s = power(volume - 1)
        w = p * np.exp(beta * (np.cos(s) - 1))
        values = [(w * np.cos(s)).sum() / w.sum(), (w * np.round(s / TWO_PI) ** 2).sum() / w.sum()]
        for area in areas:  # cos of the sum of `area` plaquettes: one more convolution
            pa, sa = power(area)
            rest, _ = power(volume - 1 - area)
            joint = fftconvolve(pa * np.cos(sa), rest)
            values.append((joint * np.exp(beta * (np.cos(s) - 1))).sum() / w.sum())
        values += [w[np.round(s / TWO_PI) == q].sum() / w.sum() for q in charges]
        return np.array(values)

    return (4 * once(2 * m) - once(m)) / 3


@pytest.mark.parametrize("beta", [1.0, 4.0])
@pytest.mark.parametrize("lattice", [(4, 4), (3, 4)])
def test_exact_against_brute_force_convolution(lattice, beta):
    volume = lattice[0] * lattice[1]
    got = brute_force_by_convolution(beta, volume, areas=(2, 4))
    assert plaquette_exact(beta, volume) == pytest.approx(got[0], rel=1e-9)
    assert q2_exact(beta, volume) == pytest.approx(got[1], rel=1e-9)
    assert wilson_loop_exact(beta, volume, 2) == pytest.approx(got[2], rel=1e-8)
    assert wilson_loop_exact(beta, volume, 4) == pytest.approx(got[3], rel=1e-8)


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_charge_distribution_against_brute_force_convolution(beta):
    charges = (0, 1, 2, 3)
    got = brute_force_by_convolution(beta, 16, m=1024, charges=charges)[2:]
    q, p = charge_distribution(beta, 16)
    exact = dict(zip(q.tolist(), p))
    for charge, value in zip(charges, got):
        assert exact.get(charge, 0.0) == pytest.approx(value, rel=1e-7, abs=1e-13)
        assert exact.get(-charge, 0.0) == pytest.approx(exact.get(charge, 0.0), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("beta, volume", [(0.5, 64), (2.0, 256), (6.0, 1024), (1.0, 1024)])
def test_charge_distribution_is_normalised_and_has_the_exact_second_moment(beta, volume):
    q, p = charge_distribution(beta, volume)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (q * q * p).sum() == pytest.approx(q2_exact(beta, volume), rel=1e-9)
    assert np.all(p >= 0) and p[len(p) // 2] == p.max() and q[len(q) // 2] == 0


def test_known_limits_and_stability():
    for beta in (1.0, 2.0, 5.0, 10.0):
        # V → ∞: <cos θ_P> → I_1/I_0, χ_t → (1/4π²) <φ²> of one free plaquette, W(A) → (I_1/I_0)^A
        assert plaquette_exact(beta, 64 * 64) == pytest.approx(ive(1, beta) / ive(0, beta), rel=1e-12)
        assert q2_exact(beta, 64 * 64) / 64**2 == pytest.approx(chi_t_infinite_volume(beta), rel=1e-9)
        assert wilson_loop_exact(beta, 64 * 64, 9) == pytest.approx(plaquette_infinite_volume(beta) ** 9, rel=1e-9)
        phi2 = integrate.quad(lambda p: p * p * math.exp(beta * (math.cos(p) - 1)), -math.pi, math.pi)[0]
        norm = integrate.quad(lambda p: math.exp(beta * (math.cos(p) - 1)), -math.pi, math.pi)[0]
        assert chi_t_infinite_volume(beta) == pytest.approx(phi2 / norm / (4 * math.pi**2), rel=1e-10)
    for beta in (20.0, 50.0):  # continuum: χ_t → 1/(4π²β) (1 + 1/(2β) + O(1/β²))
        ratio = chi_t_infinite_volume(beta) * 4 * math.pi**2 * beta
        assert abs(ratio - 1 - 1 / (2 * beta)) < 2 / beta**2
    # finite and ordered for every β, V of the catalogue and beyond: χ_t grows towards its V = ∞ value
    for beta in (0.1, 1.0, 7.0, 10.0):
        chis = [q2_exact(beta, length**2) / length**2 for length in (2, 4, 8, 16, 32, 64)]
        assert all(np.isfinite(chis)) and all(a <= b * (1 + 1e-12) for a, b in zip(chis, chis[1:]))
        plaqs = [plaquette_exact(beta, length**2) for length in (2, 4, 8, 16, 32, 64)]
        assert all(a >= b * (1 - 1e-12) for a, b in zip(plaqs, plaqs[1:]))
    # the 2021 tutorial's HMC estimate of <Q²> at L = 8, β = 2 (its "topological susceptibility"): 1.23(2)
    assert abs(q2_exact(2.0, 64) - 1.23) < 0.02


def test_u1_exact_names_match_the_theory():
    theory = U1((8, 8), beta=1.0)
    values = u1_exact(theory)
    # log_z is the estimate of importance samplers (suite.metrics), not a per-configuration observable
    names = set(theory.observables(configurations((8, 8), batch=1))) | set(theory.derived_quantities()) | {"log_z"}
    assert set(values) <= names
    assert {n for n in names if not n.startswith("creutz")} <= set(values)
    assert "creutz_2_2" in values and "creutz_4_4" not in values  # W(4,4) ≈ 2.5e-6 at β = 1: no reference
    assert set(u1_exact(theory, creutz_min_wilson=0.0)) == names
    assert values["wilson_1_1"] == values["plaquette"]
    assert values["chi_t"] == pytest.approx(values["q2"] / 64)


def test_catalogue_entries_build_and_carry_exact_values():
    u1_entries = [e for e in entries() if e.theory == "u1"]
    ids = {e.id for e in u1_entries}
    assert {f"u1/beta{b}/L{length}" for b in range(1, 8) for length in (8, 16, 32)} | {"u1/tutorial2021/L8"} == ids
    # L = 8 is quick where default HMC can check it (β ≤ 4); HMC freezes topology beyond.
    assert {e.id for e in u1_entries if e.tier == "quick"} == {f"u1/beta{b}/L8" for b in range(1, 5)} | {
        "u1/tutorial2021/L8"}
    entry = get_entry("u1/tutorial2021/L8")
    theory = entry.build_theory()
    assert isinstance(theory, U1) and theory.beta == 2.0 and theory.lattice == (8, 8)
    refs = entry.reference_values()
    assert refs["plaquette"].provenance.startswith("exact")
    assert refs["plaquette"].value == pytest.approx(plaquette_exact(2.0, 64))
    assert refs["chi_t"].value == pytest.approx(q2_exact(2.0, 64) / 64)


def test_hmc_reproduces_exact_values_at_L4():
    theory = build_theory("u1", (4, 4), "wilson", {"beta": 2.0})
    chain = run_hmc(theory, chains=64, n_therm=100, n_traj=800, seed=11, progress=False)
    assert 0.6 < chain.accepted.mean() < 0.95
    exact = u1_exact(theory, creutz_min_wilson=0.0)
    for name in ("plaquette", "q2", "chi_t", "topological_charge", "wilson_1_2", "wilson_2_2"):
        r = gamma_method(chain.observables[name])
        assert abs(r.value - exact[name]) < 4 * r.error, (name, r.value, r.error, exact[name])
    q = chain.observables["topological_charge"]
    assert np.abs(q - np.round(q)).max() < 1e-9


@pytest.mark.slow
def test_hmc_reproduces_exact_plaquette_and_chi_t_within_3_sigma_at_L8():
    theory = build_theory("u1", (8, 8), "wilson", {"beta": 2.0})
    chain = run_hmc(theory, chains=64, n_therm=300, n_traj=3000, seed=12, progress=False)
    exact = u1_exact(theory)
    for name in ("plaquette", "chi_t", "wilson_2_2"):
        r = gamma_method(chain.observables[name])
        assert abs(r.value - exact[name]) < 3 * r.error, (name, r.value, r.error, exact[name])
