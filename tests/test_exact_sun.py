"""Exact 2D SU(N) values (suite.exact.sun) against things computed another way: closed forms,
Weyl-formula quadrature, brute-force Haar integration (quadrature and seeded Monte Carlo) on tiny
tori, a Metropolis chain on a 3×3 torus, and the infinite-volume, strong- and weak-coupling limits.

The Monte Carlo helpers here are plain numpy, independent of the module and of the SU(N) theory.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate
from scipy.special import iv, ive

from suite.exact import sun

# ---------------------------------------------------------------------------------------------
# brute-force helpers


def su2_matrix(q):
    """The unit quaternion q = (a0, a) (last axis) as the SU(2) matrix a0 + i a·σ."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    a0, a1, a2, a3 = np.moveaxis(q, -1, 0)
    u = np.empty((*q.shape[:-1], 2, 2), dtype=complex)
    u[..., 0, 0] = a0 + 1j * a3
    u[..., 0, 1] = a2 + 1j * a1
    u[..., 1, 0] = -a2 + 1j * a1
    u[..., 1, 1] = a0 - 1j * a3
    return u


def haar_su2(rng, shape):
    """Haar SU(2): a uniform point on S³ (a normalised Gaussian 4-vector) as a matrix."""
    return su2_matrix(rng.standard_normal((*shape, 4)))


def haar_sun(rng, shape, n):
    """Haar SU(n): QR of a complex Ginibre matrix with R's diagonal phases moved into Q (Haar
    U(n), Mezzadri, Notices AMS 54 (2007) 592), divided by an n-th root of its determinant
    (principal branch; the branch only multiplies by the centre, which preserves Haar measure)."""
    z = (rng.standard_normal((*shape, n, n)) + 1j * rng.standard_normal((*shape, n, n))) / math.sqrt(2)
    q, r = np.linalg.qr(z)
    diag = np.diagonal(r, axis1=-2, axis2=-1)
    q = q * (diag / np.abs(diag))[..., None, :]
    det = np.linalg.det(q)
    return q * np.exp(-1j * np.angle(det) / n)[..., None, None]


def dagger(u):
    return np.conj(np.swapaxes(u, -1, -2))


def re_tr(u):
    return np.real(np.trace(u, axis1=-2, axis2=-1))


def plaquettes(links):
    """(1/N) Re Tr U_P for links (S, 2, L0, L1, N, N): U_P(x) = U_0(x) U_1(x+0̂) U_0(x+1̂)† U_1(x)†."""
    u0, u1 = links[:, 0], links[:, 1]
    p = u0 @ np.roll(u1, -1, axis=1) @ dagger(np.roll(u0, -1, axis=2)) @ dagger(u1)
    return re_tr(p) / links.shape[-1]


def reweighted_plaquette(n, beta, lattice, samples, seed, chunk=50_000):
    """⟨plaquette⟩ = E_Haar[P e^{−S}] / E_Haar[e^{−S}] with its delta-method error."""
    rng = np.random.default_rng(seed)
    volume = lattice[0] * lattice[1]
    log_w, obs = [], []
    for start in range(0, samples, chunk):
        m = min(chunk, samples - start)
        shape = (m, 2, *lattice)
        links = haar_su2(rng, shape) if n == 2 else haar_sun(rng, shape, n)
        p = plaquettes(links).reshape(m, -1).mean(axis=1)
        log_w.append(beta * volume * p)          # −S = (β/N) Σ_P Re Tr U_P = β V p
        obs.append(p)
    log_w, obs = np.concatenate(log_w), np.concatenate(obs)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = float(np.sum(w * obs))
    error = float(math.sqrt(np.sum(w**2 * (obs - mean) ** 2)))
    return mean, error


# ---------------------------------------------------------------------------------------------
# the coefficients


@pytest.mark.parametrize("beta", [0.3, 2.0, 9.0])
def test_su2_coefficients_match_closed_form(beta):
    """SU(2): a_m = (m+1)·2 I_{m+1}(β)/β (Drouffe & Zuber 1983), from ∫ (2/π) sin²θ sin((m+1)θ)/sinθ e^{β cos θ}."""
    lam = sun.irreps(2, 12)
    m = lam[:, 0]
    expected = (m + 1) * 2 * ive(m + 1, beta) / beta        # both scaled by e^{−β}
    got = sun.character_coefficients(2, beta, lam)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(sun.dimension(lam), m + 1)


def weyl_coefficients(n, beta, lam, nodes=96):
    """a_λ e^{−β} by the Weyl integration formula over the eigenphases, with Weyl's character
    formula: |Δ|² χ̄_λ = Δ · conj(det[z_i^{λ_j+n−j}]), ∫_{SU(n)} = (1/n!) ∫ Π dθ/2π |Δ|² (…)."""
    grid = 2 * math.pi * np.arange(nodes) / nodes
    theta = np.meshgrid(*([grid] * (n - 1)), indexing="ij")
    theta = np.stack([*theta, -sum(theta)], axis=-1)                 # (..., n), Σθ = 0
    z = np.exp(1j * theta)
    powers = np.arange(n - 1, -1, -1)
    vandermonde = np.linalg.det(z[..., :, None] ** powers)
    f = np.exp((beta / n) * (np.cos(theta).sum(-1) - n))
    out = []
    for row in np.atleast_2d(lam):
        numerator = np.linalg.det(z[..., :, None] ** (row + powers))
        out.append(np.real(np.mean(vandermonde * np.conj(numerator) * f)) / math.factorial(n))
    return np.array(out)


@pytest.mark.parametrize("n,beta", [(3, 0.5), (3, 6.0), (4, 3.0)])
def test_coefficients_match_weyl_quadrature(n, beta):
    lam = sun.irreps(n, 3)
    np.testing.assert_allclose(sun.character_coefficients(n, beta, lam),
                               weyl_coefficients(n, beta, lam, nodes=64 if n == 3 else 24), rtol=1e-10, atol=1e-17)


def test_dimensions():
    lam = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [2, 1, 0], [3, 0, 0], [2, 2, 0]])
    np.testing.assert_array_equal(sun.dimension(lam), [1, 3, 3, 6, 8, 10, 6])
    assert sun.dimension(np.array([[1, 1, 1, 0]]))[0] == 4 and sun.dimension(np.array([[2, 1, 1, 0]]))[0] == 15


# ---------------------------------------------------------------------------------------------
# tiny tori by brute force


@pytest.mark.parametrize("beta", [0.5, 2.0, 5.0])
def test_su2_one_plaquette_torus_by_quadrature(beta):
    """On the 1×1 torus U_P = A B A⁻¹ B⁻¹. Diagonalise A = diag(e^{iθ}, e^{−iθ}) (class measure
    (2/π) sin²θ dθ); with B = (a, b; −b̄, ā) Haar, ½ Tr U_P = 1 − 2|b|² sin²θ, and |b|² is uniform
    on [0, 1] (Archimedes). Both integrals by adaptive quadrature."""
    def integrand(u, theta, power):
        p = 1 - 2 * u * math.sin(theta) ** 2
        return (2 / math.pi) * math.sin(theta) ** 2 * p**power * math.exp(beta * (p - 1))

    z = integrate.dblquad(integrand, 0, math.pi, 0, 1, args=(0,), epsabs=1e-14, epsrel=1e-13)[0]
    num = integrate.dblquad(integrand, 0, math.pi, 0, 1, args=(1,), epsabs=1e-14, epsrel=1e-13)[0]
    exact = sun.sun_2d_exact(2, beta, (1, 1))
    assert exact["plaquette"] == pytest.approx(num / z, abs=1e-11)
    assert sun.log_partition_function(2, beta, (1, 1)) == pytest.approx(math.log(z) + beta, abs=1e-11)
    # and the closed form this integral has, Z = (e^β − I_0(β))/β
    assert math.log(z) + beta == pytest.approx(math.log((math.exp(beta) - iv(0, beta)) / beta), abs=1e-12)


@pytest.mark.parametrize("n,beta,lattice,samples", [
    (2, 2.0, (1, 1), 200_000),
    (2, 2.0, (2, 1), 200_000),
    (2, 1.5, (2, 2), 200_000),
    (3, 3.0, (1, 1), 100_000),
])
def test_tiny_torus_plaquette_by_haar_monte_carlo(n, beta, lattice, samples):
    """Haar-distributed links, importance weights e^{−S}: a pull test; and the finite-torus value
    differs from the infinite-volume one by many σ, so the test sees the torus."""
    mean, error = reweighted_plaquette(n, beta, lattice, samples, seed=17 + n + lattice[0] + lattice[1])
    exact = sun.sun_2d_exact(n, beta, lattice, loops=())["plaquette"]
    pull = (mean - exact) / error
    print(f"SU({n}) {lattice} beta={beta}: MC {mean:.5f}({error:.5f}) exact {exact:.6f} pull {pull:+.2f}")
    assert abs(pull) < 4
    assert abs(exact - sun.plaquette_infinite_volume(n, beta)) > 4 * error


@pytest.mark.parametrize("n,beta,lattice", [(2, 1.5, (2, 2)), (3, 2.0, (2, 1))])
def test_tiny_torus_log_z_by_haar_monte_carlo(n, beta, lattice):
    """Z = E_Haar[e^{−S}] (the normalisation importance samplers estimate), pull < 4."""
    rng = np.random.default_rng(23 + n)
    shape = (200_000, 2, *lattice)
    links = haar_su2(rng, shape) if n == 2 else haar_sun(rng, shape, n)
    w = np.exp(beta * plaquettes(links).reshape(len(links), -1).sum(axis=1))
    z, error = w.mean(), w.std() / math.sqrt(len(w))
    assert abs(math.log(z) - sun.log_partition_function(n, beta, lattice)) < 4 * error / z


def su2_metropolis_loops(beta, size, chains, sweeps, thermal, seed, step=0.6):
    """Metropolis on an size×size SU(2) torus, ``chains`` independent chains; per chain the mean
    of the plaquette, W(1×2) and W(2×2) (positions and both orientations) over the sweeps after
    ``thermal``. Proposal U → R U with R a random SU(2) element near 1, as likely as R†."""
    rng = np.random.default_rng(seed)
    links = haar_su2(rng, (chains, 2, size, size))

    def plaq(x0, x1):
        l0, l1 = links[:, 0], links[:, 1]
        a, b = x0 % size, x1 % size
        p = l0[:, a, b] @ l1[:, (a + 1) % size, b] @ dagger(l0[:, a, (b + 1) % size]) @ dagger(l1[:, a, b])
        return re_tr(p)

    def loop(r, t):
        """Mean of ½ Re Tr of r×t loops (r along axis 0) over positions."""
        l0, l1 = links[:, 0], links[:, 1]
        total = 0.0
        for a in range(size):
            for b in range(size):
                w = np.broadcast_to(np.eye(2, dtype=complex), (chains, 2, 2))
                for k in range(r):
                    w = w @ l0[:, (a + k) % size, b]
                for k in range(t):
                    w = w @ l1[:, (a + r) % size, (b + k) % size]
                for k in reversed(range(r)):
                    w = w @ dagger(l0[:, (a + k) % size, (b + t) % size])
                for k in reversed(range(t)):
                    w = w @ dagger(l1[:, a, (b + k) % size])
                total = total + re_tr(w) / 2
        return total / size**2

    records = []
    for sweep in range(sweeps):
        for mu in range(2):
            for a in range(size):
                for b in range(size):
                    # plaquettes containing U_mu(a, b): at (a, b), and at (a, b−1) for μ = 0 / (a−1, b) for μ = 1
                    other = (a, b - 1) if mu == 0 else (a - 1, b)
                    before = plaq(a, b) + plaq(*other)
                    old = links[:, mu, a, b].copy()
                    g = step * rng.standard_normal((chains, 3))   # g and −g equally likely: R, R† too
                    r = su2_matrix(np.concatenate([np.ones((chains, 1)), g], axis=1))
                    links[:, mu, a, b] = r @ old
                    after = plaq(a, b) + plaq(*other)
                    reject = rng.random(chains) >= np.exp(np.minimum(0.0, (beta / 2) * (after - before)))
                    links[reject, mu, a, b] = old[reject]
        if sweep >= thermal:
            records.append([plaquettes(links).reshape(chains, -1).mean(1),
                            (loop(1, 2) + loop(2, 1)) / 2, loop(2, 2)])
    return np.array(records).mean(axis=0)  # (3, chains)


@pytest.mark.slow
def test_su2_wilson_loops_on_3x3_torus_by_metropolis():
    """The finite-torus Wilson-loop formula (disc glued to a one-holed torus) against a Markov
    chain at β = 4 on 3×3, where W(2×2) is ~15% above the area law plaquette⁴."""
    beta = 4.0
    per_chain = su2_metropolis_loops(beta, 3, chains=400, sweeps=700, thermal=100, seed=5)
    exact = sun.sun_2d_exact(2, beta, (3, 3), loops=((1, 2), (2, 2)))
    for row, name in zip(per_chain, ("plaquette", "wilson_1_2", "wilson_2_2")):
        mean, error = row.mean(), row.std(ddof=1) / math.sqrt(row.size)
        pull = (mean - exact[name]) / error
        print(f"{name}: MCMC {mean:.5f}({error:.5f}) exact {exact[name]:.6f} pull {pull:+.2f}")
        assert abs(pull) < 4
    area_law = sun.plaquette_infinite_volume(2, beta) ** 4
    assert abs(exact["wilson_2_2"] - area_law) > 8 * per_chain[2].std(ddof=1) / math.sqrt(per_chain.shape[1])


# ---------------------------------------------------------------------------------------------
# limits and identities


@pytest.mark.parametrize("beta", [1.0, 2.0, 4.0])
def test_su2_large_torus_plaquette_is_bessel_ratio(beta):
    exact = sun.sun_2d_exact(2, beta, (16, 16))["plaquette"]
    assert abs(exact - iv(2, beta) / iv(1, beta)) < 1e-12
    assert abs(sun.plaquette_infinite_volume(2, beta) - iv(2, beta) / iv(1, beta)) < 1e-14


@pytest.mark.parametrize("n,beta", [(2, 2.0), (2, 6.0), (3, 3.0), (3, 8.0)])
def test_large_torus_area_law(n, beta):
    """L → ∞: W(A) → plaquette^A (the plaquettes of a disc are independent in 2D)."""
    exact = sun.sun_2d_exact(n, beta, (24, 24))
    p = sun.plaquette_infinite_volume(n, beta)
    for r in range(1, 7):
        for t in range(r, 7):
            assert exact[f"wilson_{r}_{t}"] == pytest.approx(p ** (r * t), rel=1e-9)
    # a small torus is not: on 3×3 the loop's outside (area 5) is small, W(2×2) is 2–14% above p⁴
    small = sun.sun_2d_exact(n, beta, (3, 3), loops=((2, 2),))
    assert small["wilson_2_2"] / p**4 - 1 > 0.02


def test_value_table():
    """The module docstring's table (8×8 torus); SU(2) equals I_2/I_1 there to 1e-12."""
    table = {(2, 2.0): 0.43312742672231, (2, 4.0): 0.65804726735962, (3, 2.0): 0.12862778532208,
             (3, 4.0): 0.27961914940930}
    for (n, beta), value in table.items():
        assert sun.sun_2d_exact(n, beta, (8, 8))["plaquette"] == pytest.approx(value, abs=1e-13)


@pytest.mark.parametrize("n,slope", [(2, 1 / 4), (3, 1 / 18), (4, 1 / 32)])
def test_strong_coupling(n, slope):
    """β → 0: plaquette = (β/N²)⟨(Re Tr U)²⟩_Haar = β/4 (SU(2)), β/(2N²) (N ≥ 3)."""
    beta = 1e-4
    for lattice in ((4, 4), (8, 8)):
        assert sun.sun_2d_exact(n, beta, lattice, loops=())["plaquette"] / beta == pytest.approx(slope, rel=1e-3)


@pytest.mark.parametrize("n", [2, 3])
def test_weak_coupling(n):
    """β → ∞ (infinite volume): 1 − plaquette = (N² − 1)/(2β) + O(1/β²); the torus value stays
    below 1 and increases with β."""
    b1, b2 = 200.0, 400.0
    d1, d2 = (b * (1 - sun.plaquette_infinite_volume(n, b)) for b in (b1, b2))
    target = (n * n - 1) / 2
    assert abs(d2 - target) < 0.6 * abs(d1 - target) and abs(d2 - target) < 0.01 * target
    torus = [sun.sun_2d_exact(n, b, (4, 4), loops=())["plaquette"] for b in (5.0, 10.0, 20.0, 40.0)]
    assert all(0 < a < b < 1 for a, b in zip(torus, torus[1:]))


@pytest.mark.parametrize("n,beta,lattice", [(2, 3.0, (1, 1)), (2, 3.0, (3, 2)), (3, 2.5, (2, 2)), (3, 6.0, (4, 6)),
                                            (4, 2.0, (3, 3))])
def test_plaquette_is_derivative_of_log_z(n, beta, lattice):
    """(1/V) ∂_β log Z (finite differences) equals the A = 1 loop formula (the fusion identity)."""
    h = 1e-4
    volume = lattice[0] * lattice[1]
    derivative = (sun.log_partition_function(n, beta + h, lattice)
                  - sun.log_partition_function(n, beta - h, lattice)) / (2 * h * volume)
    assert sun.sun_2d_exact(n, beta, lattice, loops=())["plaquette"] == pytest.approx(derivative, abs=1e-8)


@pytest.mark.parametrize("n,beta,lattice", [(2, 1.0, (1, 1)), (2, 8.0, (4, 4)), (3, 0.2, (12, 12)), (3, 10.0, (2, 2)),
                                            (3, 4.0, (8, 8))])
def test_doubling_the_truncation_changes_nothing(n, beta, lattice):
    loops = sun.default_loops(lattice) if min(lattice) > 2 else ()
    max_area = max([r * t for r, t in loops], default=1)
    m = sun.representation_cutoff(n, beta, lattice, max_area)
    default = sun.sun_2d_exact(n, beta, lattice, loops=loops)
    doubled = sun.sun_2d_exact(n, beta, lattice, loops=loops, max_row=2 * m)
    for name, value in default.items():
        assert value == pytest.approx(doubled[name], rel=1e-14, abs=1e-300), name


@pytest.mark.parametrize("n,beta", [(2, 0.7), (2, 5.0), (3, 2.0), (3, 9.0), (4, 4.0)])
def test_plaquette_moments(n, beta):
    """Eigenphase quadrature vs characters: ⟨(1/N)Re Tr U⟩ = a_F/(N a_0) and, with
    Tr U² = χ_(2) − χ_(1,1) (χ_(1,1) = 1 for SU(2)), ⟨(1/N)Re Tr U²⟩ = (a_(2) − a_(1,1))/(N a_0)."""
    moments = sun.plaquette_moments_infinite_volume(n, beta, powers=(1, 2))
    zero = [0] * n
    two, one_one = [2] + [0] * (n - 1), ([1, 1] + [0] * (n - 2)) if n > 2 else zero
    a = sun.character_coefficients(n, beta, np.array([zero, two, one_one]))
    assert moments[1] == pytest.approx(sun.plaquette_infinite_volume(n, beta), abs=1e-13)
    assert moments[2] == pytest.approx((a[1] - a[2]) / (n * a[0]), abs=1e-13)
    if n == 2:
        assert moments[2] == pytest.approx((3 * iv(3, beta) / iv(1, beta) - 1) / 2, abs=1e-13)


# ---------------------------------------------------------------------------------------------
# the adapter and bad input


def test_adapter_reads_either_name_and_loop_extent():
    reference = sun.sun_2d_exact(3, 2.0, (8, 8))
    assert set(reference) == {"plaquette", "action_density"} | {f"wilson_{r}_{t}" for r in range(1, 5)
                                                               for t in range(r, 5)}
    assert reference["action_density"] == pytest.approx(-2.0 * reference["plaquette"])
    for name in ("n_colors", "N"):
        theory = SimpleNamespace(**{name: 3}, beta=2.0, lattice=(8, 8))
        assert sun.sun_exact(theory) == {**reference, "log_z": sun.log_partition_function(3, 2.0, (8, 8))}
    short = sun.sun_exact(SimpleNamespace(N=3, beta=2.0, lattice=(8, 8), loop_extent=2))
    assert set(short) == {"plaquette", "action_density", "wilson_1_1", "wilson_1_2", "wilson_2_2", "log_z"}
    with pytest.raises(AttributeError, match="n_colors"):
        sun.sun_exact(SimpleNamespace(beta=2.0, lattice=(8, 8)))
    with pytest.raises(ValueError, match="two dimensions"):
        sun.sun_exact(SimpleNamespace(N=2, beta=2.0, lattice=(4, 4, 4)))


def test_bad_input():
    with pytest.raises(ValueError, match="contractible"):
        sun.sun_2d_exact(2, 1.0, (4, 4), loops=((2, 4),))
    with pytest.raises(ValueError, match="beta"):
        sun.sun_2d_exact(2, 0.0, (4, 4))
    with pytest.raises(ValueError, match="colours"):
        sun.sun_2d_exact(1, 1.0, (4, 4))
