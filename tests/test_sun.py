"""SU(N): the field space (Haar prior against the Weyl density, momenta, exact update, drift), the
Wilson theory (force against an autograd derivative along the group, gauge invariance, loops against
path-walked and abelian transcriptions) and HMC on it (reversibility, |ΔH| ∝ ε², ⟨e^{−ΔH}⟩ = 1,
the 2D SU(2) plaquette I_2(β)/I_1(β))."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats
from scipy.special import iv

from reference.hmc import integrate, run_hmc
from suite.catalogue import entries, get_entry
from suite.fields import SUN, su2_exp, traceless_antihermitian
from suite.stats import gamma_method
from suite.theories import build_theory, theory_info
from suite.theories.sun import SUNGauge, gauge_transform, random_gauge_transformation
from suite.theories.u1 import U1

DTYPE = torch.float64


def generators(n: int) -> torch.Tensor:
    """The generalised Gell-Mann matrices / 2: Hermitian, traceless, Tr T_a T_b = ½ δ_ab, shape (N²−1, N, N)."""
    out = []
    for j in range(n):
        for k in range(j + 1, n):
            s = torch.zeros(n, n, dtype=torch.complex128)
            s[j, k] = s[k, j] = 0.5
            a = torch.zeros(n, n, dtype=torch.complex128)
            a[j, k], a[k, j] = -0.5j, 0.5j
            out += [s, a]
    for m in range(1, n):
        d = torch.zeros(n, n, dtype=torch.complex128)
        for j in range(m):
            d[j, j] = 1
        d[m, m] = -m
        out.append(d / math.sqrt(2 * m * (m + 1)))
    return torch.stack(out)


def group_derivative_force(theory, x):
    """Σ_a (iT_a) ∂_a S, ∂_a S the derivative of S along U_μ(x) → exp(t iT_a) U_μ(x) at t = 0 for every
    link, by autograd through matrix_exp: the reference the analytic force is tested against."""
    gens = 1j * generators(theory.n).to(x.dtype)
    t = torch.zeros((*x.shape[:-2], len(gens)), dtype=x.real.dtype, requires_grad=True)
    rotation = torch.linalg.matrix_exp(torch.einsum("...a,aij->...ij", t.to(x.dtype), gens))
    (grad,) = torch.autograd.grad(theory.action(rotation @ x).sum(), t)
    return torch.einsum("...a,aij->...ij", grad.to(x.dtype), gens)


def haar(n, batch, seed, shape=()):
    return SUN((*shape, n, n)).prior_sample(batch, generator=torch.Generator().manual_seed(seed))


def configurations(n, lattice, batch=3, seed=0):
    return SUN((len(lattice), *lattice, n, n)).prior_sample(batch, generator=torch.Generator().manual_seed(seed))


def unitarity_defect(u):
    eye = torch.eye(u.shape[-1], dtype=u.dtype)
    return (u.mH @ u - eye).abs().max().item(), (torch.linalg.det(u) - 1).abs().max().item()


# -- field space ------------------------------------------------------------------------------


def test_generators_are_orthonormal():
    for n in (2, 3, 4):
        t = generators(n)
        assert t.shape == (n * n - 1, n, n)
        torch.testing.assert_close(torch.einsum("aij,bji->ab", t, t), 0.5 * torch.eye(n * n - 1, dtype=t.dtype))
        torch.testing.assert_close(t, t.mH)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_prior_is_on_the_group_and_has_haar_trace_moments(n):
    u = haar(n, 40000, seed=n)
    assert u.dtype == torch.complex128 and u.shape == (40000, n, n)
    assert max(unitarity_defect(u)) < 1e-13
    assert torch.equal(SUN((n, n)).prior_log_prob(u), torch.zeros(40000, dtype=DTYPE))
    tr2 = torch.diagonal(u, dim1=-2, dim2=-1).sum(-1).abs().pow(2).numpy()
    for moment, exact in ((tr2, 1.0), (tr2**2, 2.0)):  # ⟨|Tr U|²⟩ = 1, ⟨|Tr U|⁴⟩ = 2 for N ≥ 2
        pull = (moment.mean() - exact) / (moment.std() / math.sqrt(len(moment)))
        assert abs(pull) < 4, (n, moment.mean(), exact, pull)
    assert SUN((n, n)).prior_sample(2, dtype=torch.float32).dtype == torch.complex64


def weyl_marginal_cdf(n: int, grid: int = 2048):
    """CDF on (−π, π] of one eigenphase of a Haar SU(N) matrix, from the Weyl density
    ∝ Π_{i<j} |e^{iθ_i} − e^{iθ_j}|² with θ_N = −Σ_{i<N} θ_i, integrated numerically over θ_2 … θ_{N−1}."""
    theta = np.linspace(-np.pi, np.pi, grid, endpoint=False) + np.pi / grid
    others = np.meshgrid(*([theta] * (n - 2)), indexing="ij") if n > 2 else []
    density = np.empty(grid)
    for k, t1 in enumerate(theta):
        phases = [np.full_like(others[0], t1) if others else np.array(t1)] + list(others)
        phases.append(-sum(phases))
        z = [np.exp(1j * p) for p in phases]
        vandermonde = np.ones_like(np.real(z[0]))
        for i in range(n):
            for j in range(i + 1, n):
                vandermonde = vandermonde * np.abs(z[i] - z[j]) ** 2
        density[k] = vandermonde.sum()
    cdf = np.concatenate([[0.0], np.cumsum(density)])
    edges = np.concatenate([theta - np.pi / grid, [np.pi]])
    return lambda x: np.interp(x, edges, cdf / cdf[-1])


@pytest.mark.parametrize("n", [2, 3])
def test_eigenphases_follow_the_weyl_density(n):
    """KS test of one eigenphase per matrix (a uniformly random one of the N) against the Weyl marginal;
    the same test rejects Q from the QR factorisation without the phases of R fixed (not Haar)."""
    cdf = weyl_marginal_cdf(n)
    g = torch.Generator().manual_seed(10 + n)
    u = SUN((n, n)).prior_sample(20000, generator=g)
    pick = torch.randint(0, n, (20000, 1), generator=g)
    phases = torch.angle(torch.linalg.eigvals(u)).gather(1, pick).squeeze(1).numpy()
    p_value = scipy_stats.kstest(phases, cdf).pvalue
    assert p_value > 1e-3, p_value
    # the test's power: unfixed QR of a Ginibre matrix, determinant phase divided out, is not Haar
    real = torch.randn((2, 20000, n, n), generator=g, dtype=DTYPE)
    q, _ = torch.linalg.qr(torch.complex(real[0], real[1]))
    q = q / torch.polar(torch.ones(20000, dtype=DTYPE), torch.angle(torch.linalg.det(q)) / n)[:, None, None]
    wrong = torch.angle(torch.linalg.eigvals(q)).gather(1, pick).squeeze(1).numpy()
    assert scipy_stats.kstest(wrong, cdf).pvalue < 1e-6


def test_weyl_marginal_of_su2_is_the_closed_form():
    theta = np.linspace(-np.pi, np.pi, 13)
    # density (1/2π)(1 − cos 2θ) on (−π, π]
    exact = (theta + np.pi) / (2 * np.pi) - np.sin(2 * theta) / (4 * np.pi)
    np.testing.assert_allclose(weyl_marginal_cdf(2)(theta), exact, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3])
def test_momenta_are_standard_normal_in_the_generator_basis(n):
    space = SUN((5, n, n))
    x = space.prior_sample(4000, generator=torch.Generator().manual_seed(1))
    p = space.momenta(x, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(p, -p.mH, rtol=0, atol=1e-15)
    assert torch.diagonal(p, dim1=-2, dim2=-1).sum(-1).abs().max() < 1e-14
    t = generators(n)
    comp = (-2j * torch.einsum("aij,...ji->...a", t, p))  # p = i p^a T_a → p^a = −2i Tr(T_a p)
    assert comp.imag.abs().max() < 1e-14
    comp = comp.real.reshape(-1, n * n - 1).numpy()
    cov = np.cov(comp.T)
    assert np.abs(comp.mean(0)).max() < 4 / math.sqrt(len(comp))
    assert np.abs(cov - np.eye(n * n - 1)).max() < 5 * math.sqrt(2 / len(comp))
    # K = −Σ Tr p² = ½ Σ (p^a)²
    k_trace = -torch.einsum("...ij,...ji->...", p, p).real.flatten(1).sum(1)
    torch.testing.assert_close(space.kinetic_energy(p), k_trace)
    torch.testing.assert_close(space.kinetic_energy(p), 0.5 * torch.from_numpy(comp).reshape(4000, -1).pow(2).sum(1))


@pytest.mark.parametrize("n", [2, 3])
def test_update_is_the_group_exponential_and_does_not_drift(n):
    space = SUN((4, n, n))
    g = torch.Generator().manual_seed(3)
    x = space.prior_sample(8, generator=g)
    p = space.momenta(x, generator=g)
    torch.testing.assert_close(space.update(x, p, 0.37), torch.linalg.matrix_exp(0.37 * p) @ x, rtol=0, atol=1e-14)
    torch.testing.assert_close(space.update(space.update(x, p, 0.37), p, -0.37), x, rtol=0, atol=1e-14)
    momenta = [space.momenta(x, generator=g) for _ in range(16)]
    for i in range(10000):
        x = space.update(x, momenta[i % 16], 0.2)
    unitary, det = unitarity_defect(x)
    assert unitary < 1e-12 and det < 1e-12, (unitary, det)


def test_su2_closed_form_exponential():
    p = SUN((2, 2)).momenta(torch.zeros(500, 2, 2, dtype=torch.complex128), generator=torch.Generator().manual_seed(4))
    scale = torch.logspace(-12, 1, 500, dtype=DTYPE)[:, None, None]
    torch.testing.assert_close(su2_exp(scale * p), torch.linalg.matrix_exp(scale * p), rtol=0, atol=1e-14)
    assert torch.equal(su2_exp(torch.zeros(2, 2, dtype=torch.complex128)), torch.eye(2, dtype=torch.complex128))


def test_reunitarise_restores_the_group():
    space = SUN((3, 3))
    x = haar(3, 50, seed=5)
    noisy = x + 1e-8 * torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.complex128)
    assert max(unitarity_defect(noisy)) > 1e-9
    fixed = space.reunitarise(noisy)
    assert max(unitarity_defect(fixed)) < 1e-13
    assert (fixed - x).abs().max() < 1e-7


def test_projection_is_the_traceless_antihermitian_gradient():
    m = torch.randn(6, 3, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(7))
    a = traceless_antihermitian(m)
    torch.testing.assert_close(a, -a.mH)
    assert torch.diagonal(a, dim1=-2, dim2=-1).sum(-1).abs().max() < 1e-15
    torch.testing.assert_close(traceless_antihermitian(a), a)
    with pytest.raises(ValueError, match="N × N"):
        SUN((2, 3))


# -- the theory ---------------------------------------------------------------------------------


CASES = [(2, (4, 4)), (3, (4, 3)), (2, (2, 3, 2)), (2, (2, 2, 2, 3)), (3, (2, 3, 2, 2))]


@pytest.mark.parametrize("n,lattice", CASES)
def test_force_is_the_derivative_along_the_group(n, lattice):
    theory = build_theory("sun", lattice, "wilson", {"N": n, "beta": 2.7})
    x = configurations(n, lattice, seed=8)
    force = theory.force(x)
    assert force.shape == x.shape and force.dtype == torch.complex128
    reference = group_derivative_force(theory, x)
    assert reference.abs().max() > 0.1
    torch.testing.assert_close(force, reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(theory.autograd_force(x), reference, rtol=0, atol=1e-12)  # the field space's project


@pytest.mark.parametrize("n,lattice", CASES)
def test_action_and_observables_are_gauge_invariant(n, lattice):
    theory = SUNGauge(lattice, n, 1.9)
    x = configurations(n, lattice, seed=9)
    y = random_gauge_transformation(x, torch.Generator().manual_seed(10))
    assert (y - x).abs().max() > 0.1
    torch.testing.assert_close(theory.action(y), theory.action(x), rtol=0, atol=1e-12)
    before, after = theory.observables(x), theory.observables(y)
    assert set(before) == set(after)
    for name in before:
        assert before[name].shape == (3,) and before[name].dtype == DTYPE, name
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-13, msg=name)


@pytest.mark.parametrize("n,lattice", CASES)
def test_unit_links(n, lattice):
    theory = SUNGauge(lattice, n, 2.5)
    x = torch.eye(n, dtype=torch.complex128).expand(2, len(lattice), *lattice, n, n).clone()
    obs = theory.observables(x)
    planes = len(lattice) * (len(lattice) - 1) // 2
    names = {"plaquette", "action_density", "polyakov"} | {f"wilson_{r}_{t}" for r in range(1, theory.loop_extent + 1)
                                                          for t in range(r, theory.loop_extent + 1)}
    if len(lattice) >= 3:
        names |= {f"plaquette_{mu}_{nu}" for mu in range(len(lattice)) for nu in range(mu + 1, len(lattice))}
    assert set(obs) == names
    for name, value in obs.items():
        expected = -2.5 * planes if name == "action_density" else 1.0
        torch.testing.assert_close(value, torch.full((2,), expected, dtype=DTYPE), msg=name)
    torch.testing.assert_close(theory.action(x), torch.full((2,), -2.5 * planes * theory.volume, dtype=DTYPE))
    assert theory.force(x).abs().max() < 1e-15


def walk(x, start, steps):
    """The product of links along a closed path of unit steps (+μ or −μ as (μ, ±1)) from ``start`` (one configuration)."""
    lattice = x.shape[1:-2]
    site, out = list(start), torch.eye(x.shape[-1], dtype=x.dtype)
    for mu, sign in steps:
        if sign > 0:
            out = out @ x[(mu, *site)]
            site[mu] = (site[mu] + 1) % lattice[mu]
        else:
            site[mu] = (site[mu] - 1) % lattice[mu]
            out = out @ x[(mu, *site)].mH
    assert site == list(start)
    return out


def test_loops_and_polyakov_against_walked_paths():
    lattice, n = (4, 5, 4), 3
    theory = SUNGauge(lattice, n, 1.0)
    assert theory.loop_extent == 2
    x = configurations(n, lattice, batch=1, seed=11)
    sites = list(np.ndindex(*lattice))
    obs = {k: v.item() for k, v in theory.observables(x).items()}

    def loop(r, t, mu, nu):
        steps = [(mu, 1)] * r + [(nu, 1)] * t + [(mu, -1)] * r + [(nu, -1)] * t
        return np.mean([torch.trace(walk(x[0], s, steps)).real.item() / n for s in sites])

    planes = [(0, 1), (0, 2), (1, 2)]
    for mu, nu in planes:
        assert obs[f"plaquette_{mu}_{nu}"] == pytest.approx(loop(1, 1, mu, nu), abs=1e-13)
    assert obs["plaquette"] == pytest.approx(np.mean([loop(1, 1, *p) for p in planes]), abs=1e-13)
    assert obs["wilson_1_2"] == pytest.approx(np.mean([loop(1, 2, *p) for p in planes] + [loop(2, 1, *p) for p in planes]),
                                              abs=1e-13)
    assert obs["wilson_2_2"] == pytest.approx(np.mean([loop(2, 2, *p) for p in planes]), abs=1e-13)
    spatial = {s[1:] for s in sites}
    poly = np.mean([torch.trace(walk(x[0], (0, *s), [(0, 1)] * lattice[0])).item() / n for s in spatial])
    assert obs["polyakov"] == pytest.approx(abs(poly), abs=1e-13)
    assert obs["action_density"] == pytest.approx(-1.0 * 3 * obs["plaquette"])


def test_abelian_su2_configurations_reproduce_u1():
    """U = diag(e^{iθ}, e^{−iθ}) makes (1/2) Re Tr of every loop cos of its U(1) angle: the SU(2) action at β
    is the U(1) action at β, and the loops are U(1)'s."""
    lattice = (6, 6)
    u1 = U1(lattice, beta=1.7)
    theta = u1.field.prior_sample(3, generator=torch.Generator().manual_seed(12))
    phase = torch.polar(torch.ones_like(theta), theta)
    x = torch.zeros((*theta.shape, 2, 2), dtype=torch.complex128)
    x[..., 0, 0], x[..., 1, 1] = phase, phase.conj()
    su2 = SUNGauge(lattice, 2, 1.7)
    torch.testing.assert_close(su2.action(x), u1.action(theta), rtol=0, atol=1e-12)
    expected, got = u1.observables(theta), su2.observables(x)
    for r in range(1, 4):
        for t in range(r, 4):
            torch.testing.assert_close(got[f"wilson_{r}_{t}"], expected[f"wilson_{r}_{t}"], rtol=0, atol=1e-13)
    torch.testing.assert_close(got["plaquette"], expected["plaquette"], rtol=0, atol=1e-13)
    # U = exp(2θ · iT_3): the U(1) force ∂S/∂θ is twice the SU(2) force's component ∂_3 S along iT_3,
    # read off as −2i Tr(T_3 F); the other components vanish
    force = su2.force(x)
    components = (-2j * torch.einsum("aij,...ji->...a", generators(2), force))
    torch.testing.assert_close(components.real[..., 2], 0.5 * u1.force(theta), rtol=0, atol=1e-12)
    assert components.real[..., :2].abs().max() < 1e-14 and components.imag.abs().max() < 1e-14


def test_gauge_transform_of_unit_links_is_pure_gauge():
    lattice, n = (3, 4), 2
    omega = haar(n, 2, seed=13, shape=lattice)
    x = gauge_transform(torch.eye(n, dtype=torch.complex128).expand(2, 2, *lattice, n, n), omega)
    obs = SUNGauge(lattice, n, 1.0).observables(x)
    torch.testing.assert_close(obs["wilson_1_1"], torch.ones(2, dtype=DTYPE))
    torch.testing.assert_close(obs["polyakov"], torch.ones(2, dtype=DTYPE))


def test_derived_creutz_ratios_and_bad_parameters():
    theory = SUNGauge((8, 8), 2, 2.0)
    assert theory.loop_extent == 4
    derived = theory.derived_quantities()
    assert set(derived) == {f"creutz_{r}_{t}" for r in range(2, 5) for t in range(r, 5)}
    w = 0.4
    assert derived["creutz_2_3"].function(w**6, w**2, w**4, w**3) == pytest.approx(-math.log(w))
    for bad, message in (({"N": 1, "beta": 1.0}, "N must be"), ({"N": 2.5, "beta": 1.0}, "N must be"),
                         ({"N": 2, "beta": -1.0}, "beta")):
        with pytest.raises(ValueError, match=message):
            SUNGauge((4, 4), bad["N"], bad["beta"])
    with pytest.raises(ValueError, match="d = 2, 3, 4"):
        SUNGauge((4,), 2, 1.0)


def test_registered_with_catalogue_entries():
    info = theory_info("sun")
    assert info.headline_observable == "plaquette" and set(info.exact) == {"sun-character-expansion"}
    ids = {e.id for e in entries() if e.theory == "sun"}
    assert {"sun/su2-2d-beta2/L8", "sun/su3-2d-beta4/L8", "sun/su2-4d-beta2.2/L4"} <= ids
    for entry_id in ids:
        entry = get_entry(entry_id)
        theory = entry.build_theory()
        assert isinstance(theory, SUNGauge) and theory.n == entry.params["N"]
        assert theory.field.shape == (len(entry.lattice), *entry.lattice, theory.n, theory.n)
    theory = get_entry("sun/su2-4d-beta2.2/L4").build_theory()
    names = set(theory.observables(theory.field.prior_sample(2)))
    assert set(info.figure_observables) <= names and "plaquette_0_3" in names


# -- HMC on SU(N) -------------------------------------------------------------------------------


HMC_CASES = [(2, (4, 4)), (3, (4, 4)), (2, (2, 2, 2, 2)), (3, (2, 2, 2, 2))]


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize("n,lattice", HMC_CASES)
def test_integrators_are_reversible(n, lattice, integrator):
    theory = SUNGauge(lattice, n, 2.0)
    x0 = configurations(n, lattice, seed=14)
    p0 = theory.field.momenta(x0, generator=torch.Generator().manual_seed(15))
    x1, p1 = integrate(theory, x0, p0, 0.1, 20, integrator)
    assert (x1 - x0).abs().max() > 0.1
    x2, p2 = integrate(theory, x1, -p1, 0.1, 20, integrator)
    torch.testing.assert_close(x2, x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(-p2, p0, rtol=0, atol=1e-10)


def delta_h(theory, x, p, eps, integrator):
    y, q = integrate(theory, x, p, eps, round(1 / eps), integrator)
    space = theory.field
    return space.kinetic_energy(q) + theory.action(y) - space.kinetic_energy(p) - theory.action(x)


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize("n,lattice", HMC_CASES)
def test_energy_violation_scales_as_eps_squared(n, lattice, integrator):
    """|ΔH| of unit-length trajectories at ε = 0.2, 0.1, 0.05: the log-log slope is 2 (it is ~0 for a force
    of the wrong sign or normalisation, whose ΔH does not vanish as ε → 0)."""
    theory = SUNGauge(lattice, n, 2.0)
    x = configurations(n, lattice, batch=4, seed=16)
    p = theory.field.momenta(x, generator=torch.Generator().manual_seed(17))
    eps = [0.2, 0.1, 0.05]
    dh = [delta_h(theory, x, p, e, integrator).abs().mean().item() for e in eps]
    slope = np.polyfit(np.log(eps), np.log(dh), 1)[0]
    assert 1.9 < slope < 2.1, (dh, slope)


@pytest.mark.parametrize("n,lattice,seed", [(2, (4, 4), 20), (3, (2, 2, 2, 2), 21)])
def test_hmc_exp_minus_delta_h_is_one(n, lattice, seed):
    theory = SUNGauge(lattice, n, 2.0)
    chain = run_hmc(theory, chains=16, n_therm=40, n_traj=60, seed=seed, progress=False)
    assert 0.5 < chain.accepted.mean() < 0.97
    r = gamma_method(np.exp(-chain.delta_h))
    assert abs(r.value - 1) < 4 * r.error, (r.value, r.error)
    assert r.error < 0.05


def test_hmc_plaquette_of_2d_su2_is_i2_over_i1():
    """2D SU(2), S = −(β/2) Σ Re Tr U_P: independent plaquettes with weight exp(β cos θ) against the Haar
    density ∝ sin²θ, so ⟨½ Tr U_P⟩ = I_2(β)/I_1(β) in infinite volume; at L = 8 the corrections are
    (I_2/I_1-like character ratios)^64, far below the statistical error."""
    beta = 2.0
    theory = build_theory("sun", (8, 8), "wilson", {"N": 2, "beta": beta})
    chain = run_hmc(theory, chains=8, n_therm=60, n_traj=150, seed=22, progress=False)
    r = gamma_method(chain.observables["plaquette"])
    exact = iv(2, beta) / iv(1, beta)
    pull = (r.value - exact) / r.error
    assert abs(pull) < 4 and r.error < 0.004, (r.value, r.error, exact, pull)


@pytest.mark.slow
@pytest.mark.parametrize("beta", [1.0, 2.0, 4.0])
def test_hmc_plaquette_of_2d_su2_long(beta):
    theory = build_theory("sun", (8, 8), "wilson", {"N": 2, "beta": beta})
    chain = run_hmc(theory, chains=16, n_therm=200, n_traj=2000, seed=23, progress=False)
    r = gamma_method(chain.observables["plaquette"])
    exact = iv(2, beta) / iv(1, beta)
    assert abs(r.value - exact) < 3.5 * r.error, (r.value, r.error, exact)
    w22 = gamma_method(chain.observables["wilson_2_2"])
    assert abs(w22.value - exact**4) < 3.5 * w22.error, (w22.value, w22.error, exact**4)


def test_2d_entries_take_exact_values_named_as_the_observables():
    entry = get_entry("sun/su2-2d-beta2/L8")
    theory = entry.build_theory()
    exact = entry.reference_values()
    names = set(theory.observables(theory.field.prior_sample(2, dtype=torch.float64)))
    assert {"plaquette", "action_density", "wilson_2_2", "wilson_3_3"} <= set(exact) <= names | {"log_z"}
    assert exact["plaquette"].value == pytest.approx(iv(2, 2.0) / iv(1, 2.0), abs=1e-10)
    assert exact["action_density"].value == pytest.approx(-2.0 * exact["plaquette"].value)
