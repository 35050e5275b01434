"""The continuous gauge-equivariant SU(N) flow (sun-cnf): loops, the exact divergence against autograd, the
Lie-group integrators' orders, the map's symmetries, log q, adjoint gradients and a run through the harness."""

import math

import pytest
import torch

from reference.flows import build
from reference.flows.lie_ode import LieSolver, integrate, su_exp
from reference.flows.loops import links_on_lattice
from reference.flows.sun_continuous import SHAPES, loop_paths
from suite.fields import SUN
from suite.theories.sun import SUNGauge, random_gauge_transformation
from suite.training import frozen_log_prob


def make_flow(n, lattice, noise=0.05, seed=0, **options):
    """A float64 sun-cnf with parameters drawn off zero (a fresh flow is the identity)."""
    theory = SUNGauge(lattice, n, beta=2.0)
    torch.manual_seed(seed)
    flow = build("sun-cnf", theory, **{"n_harmonics": 2, "n_time": 3, **options}).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(noise * torch.randn_like(p))
    return flow, theory


def draw(theory, batch, seed):
    return theory.field.prior_sample(batch, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def generators(n):
    """X_a = iT_a, T_a Hermitian traceless with Tr T_a T_b = ½ δ_ab (generalised Gell-Mann / 2)."""
    out = []
    for i in range(n):
        for j in range(i + 1, n):
            for entry in ((1, 1), (-1j, 1j)):
                m = torch.zeros(n, n, dtype=torch.complex128)
                m[i, j], m[j, i] = 0.5 * entry[0], 0.5 * entry[1]
                out.append(m)
    for k in range(1, n):
        m = torch.zeros(n, n, dtype=torch.complex128)
        m[range(k), range(k)] = 1
        m[k, k] = -k
        out.append(m / math.sqrt(2 * k * (k + 1)))
    return 1j * torch.stack(out)


def test_loops_every_orientation_once_and_each_link_once():
    counts = {d: [len(loop_paths(shape, d)) for shape in SHAPES] for d in (2, 3, 4)}
    assert counts == {2: [1, 2, 0], 3: [3, 6, 12], 4: [6, 12, 48]}  # plaquettes, 2×1 loops, chairs
    for shape in SHAPES:
        for path in loop_paths(shape, 4):
            links = links_on_lattice(path, (3, 3, 3, 3))
            assert len(set(links)) == len(links) == len(SHAPES[shape])
    theory = SUNGauge((4, 2), 2, beta=1.0)  # a 2×1 loop along the extent-2 axis passes a link twice
    with pytest.raises(ValueError, match="passes a link twice"):
        build("sun-cnf", theory)
    assert build("sun-cnf", theory, loops="plaquette").sample(1)[0].shape == (1, 2, 4, 2, 2, 2)
    with pytest.raises(ValueError, match="chair loops span three axes"):
        build("sun-cnf", SUNGauge((4, 4), 2, beta=1.0), loops="plaquette+rectangle+chair")


@pytest.mark.parametrize("n, lattice", [(2, (4, 4)), (3, (4, 4, 4, 4))])
def test_loop_sums_are_the_theory_s_loops_and_the_velocity_is_the_gradient(n, lattice):
    """Σ_x (1/N) Re Tr over plaquettes / 2×1 loops equals the theory's plaquette / wilson_1_2 sums, and
    g(Z, X) = −2 Re Tr ZX is the derivative of φ along U → exp(sX) U."""
    flow, theory = make_flow(n, lattice, noise=0.3)
    velocity = flow.transform.velocity
    u = draw(theory, 1, 1)
    values = velocity.loop_sums(u)[0]  # (B, shape, harmonic)
    obs, volume, planes = theory.observables(u), math.prod(lattice), len(theory.planes)
    assert torch.allclose(values[:, 0, 0], volume * planes * obs["plaquette"], atol=1e-10)
    assert torch.allclose(values[:, 1, 0], 2 * volume * planes * obs["wilson_1_2"], atol=1e-10)
    z = velocity.dynamics(u)(0.4, u)[0]
    assert torch.allclose(z, -z.mH) and torch.diagonal(z, dim1=-2, dim2=-1).sum(-1).abs().max() < 1e-12
    direction = SUN(theory.field.shape).momenta(u, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        s = 1e-5
        slope = (velocity.potential(0.4, su_exp(s * direction) @ u)
                 - velocity.potential(0.4, su_exp(-s * direction) @ u)) / (2 * s)
    pairing = -2 * (z * direction.transpose(-2, -1)).sum((-2, -1)).real.flatten(1).sum(1)
    assert torch.allclose(slope, pairing, rtol=1e-7) and pairing.abs().min() > 0.1


def lie_algebra_jacobian_trace(velocity, u, t):
    """tr ∂z^b/∂ε^a of the velocity's coordinates z^a = g(Z, X_a) at U(ε) = exp(Σ ε^a X_a) U, by autograd."""
    n = u.shape[-1]
    basis, links = generators(n), u[0].reshape(-1, n, n)
    f = velocity.dynamics(u)

    def coordinates(eps):
        moved = (torch.linalg.matrix_exp(torch.einsum("la,aij->lij", eps.view(len(links), -1).to(basis.dtype),
                                                      basis)) @ links).view_as(u)
        z = f(t, moved)[0].reshape(-1, n, n)
        return -2 * torch.einsum("lij,aji->la", z, basis).real.flatten()

    eps = torch.zeros(len(links) * len(basis), dtype=torch.float64)
    return torch.trace(torch.autograd.functional.jacobian(coordinates, eps, vectorize=True))


@pytest.mark.parametrize("n, lattice, loops", [(2, (3, 3), "plaquette+rectangle"), (3, (3, 3), "plaquette+rectangle"),
                                               (2, (3, 3, 3), "plaquette+rectangle+chair"),
                                               (2, (3, 3, 2, 2), "plaquette")])
def test_exact_divergence_equals_the_trace_of_the_jacobian(n, lattice, loops):
    """The analytic Laplace–Beltrami divergence (with the cross terms of Re Tr W² and W³) against the
    brute-force trace of the velocity's Jacobian in Lie-algebra coordinates."""
    flow, theory = make_flow(n, lattice, noise=0.5, loops=loops, n_harmonics=3)
    velocity = flow.transform.velocity
    u = draw(theory, 1, 3)
    with torch.no_grad():
        divergence = velocity.dynamics(u)(0.3, u)[1]
    trace = lie_algebra_jacobian_trace(velocity, u, 0.3)
    assert abs(divergence.item() - trace.item()) < 1e-9 * max(1.0, abs(trace.item())) and abs(trace) > 1.0


def test_lie_integrators_reach_their_orders():
    """Errors of U and of ℓ = ∫∇·v against a 128-step cf4 integration fall by about 2³ (cf3) and 2⁴ (cf4)
    per halving of the step (measured log₂ ratios at 8 → 16 → 32 steps: cf3 U 3.1, 3.1, ℓ 2.7, 2.9;
    cf4 U 3.9, 4.0, ℓ 4.2, 4.2)."""
    flow, theory = make_flow(2, (3, 3), noise=0.3)
    transform = flow.transform
    z = draw(theory, 2, 4)
    with torch.no_grad():
        reference, reference_ell = transform.flow(z, 0.0, 1.0, LieSolver("cf4", 128))
        for method, order in (("cf3", 3), ("cf4", 4)):
            errors = []
            for steps in (8, 16, 32):
                x, ell = transform.flow(z, 0.0, 1.0, LieSolver(method, steps))
                errors.append(((x - reference).abs().max().item(), (ell - reference_ell).abs().max().item()))
            for coarse, fine in zip(errors[:-1], errors[1:]):
                for a, b in zip(coarse, fine):
                    assert 2 ** (order - 0.7) < a / b < 2 ** (order + 0.7), (method, errors)
    assert reference_ell.abs().min() > 1.0 and (reference - z).abs().max() > 0.3  # far from the identity


def test_cf_schemes_on_a_time_dependent_matrix_ode():
    """dU/dt = (A + t B) U with non-commuting A, B (one SU(2) matrix): both schemes converge to the exact
    solution (the time-ordered exponential, from a 4096-step cf4 run checked against its 2048-step run)."""
    basis = generators(2)
    a, b = 0.9 * basis[0] + 0.4 * basis[2], 1.3 * basis[1]
    dynamics = lambda t, u: ((a + t * b).expand_as(u), u.real.new_full((u.shape[0],), 2.0 + t))  # ℓ(1) = 2.5
    u0 = torch.eye(2, dtype=torch.complex128).expand(1, 1, 2, 2)
    exact = integrate(dynamics, u0, 0.0, 1.0, LieSolver("cf4", 4096))[0]
    assert (exact - integrate(dynamics, u0, 0.0, 1.0, LieSolver("cf4", 2048))[0]).abs().max() < 1e-13
    for method, order in (("cf3", 3), ("cf4", 4)):
        errors = [(integrate(dynamics, u0, 0.0, 1.0, LieSolver(method, steps))[0] - exact).abs().max().item()
                  for steps in (8, 16, 32)]
        for coarse, fine in zip(errors[:-1], errors[1:]):
            assert 2 ** (order - 0.5) < coarse / fine < 2 ** (order + 0.5), (method, errors)
        assert abs(integrate(dynamics, u0, 0.0, 1.0, LieSolver(method, 4))[1].item() - 2.5) < 1e-12


@pytest.mark.parametrize("n, lattice", [(2, (4, 4)), (3, (4, 4)), (2, (3, 3, 3, 3))])
def test_flow_is_gauge_equivariant_and_log_q_gauge_invariant(n, lattice):
    flow, theory = make_flow(n, lattice, noise=0.1, n_steps=2)
    z = draw(theory, 2, 5)
    with torch.no_grad():
        x, ladj = flow.transform(z)
        gx, gladj = flow.transform(random_gauge_transformation(z, torch.Generator().manual_seed(6)))
        assert (gx - random_gauge_transformation(x, torch.Generator().manual_seed(6))).abs().max() < 1e-11
        assert (gladj - ladj).abs().max() < 1e-10 * ladj.abs().max()
        log_q = flow.log_prob(x)
        g_log_q = flow.log_prob(random_gauge_transformation(x, torch.Generator().manual_seed(7)))
        assert (g_log_q - log_q).abs().max() < 1e-10 * log_q.abs().max()
        conjugate, conjugate_ladj = flow.transform(z.conj())  # charge conjugation U → U*
        assert (conjugate - x.conj()).abs().max() < 1e-11 and (conjugate_ladj - ladj).abs().max() < 1e-9
        rolled = flow.transform(torch.roll(z, 1, 2))[0]  # translations
        assert (rolled - torch.roll(x, 1, 2)).abs().max() < 1e-11
        plaquettes = [torch.stack(list(theory.plaquettes(v).values())) for v in (z, x)]
        assert (plaquettes[1] - plaquettes[0]).abs().max() > 0.1 and ladj.abs().min() > 0.1  # not vacuous


@pytest.mark.parametrize("method, tol", [("cf3", (1e-5, 5e-3)), ("cf4", (2e-8, 1e-5))])
def test_reverse_integration_returns_the_prior_sample(method, tol):
    """32 steps forward then back: the links return to 1e-5 (cf3) / 2e-8 (cf4), the log-determinants
    (|ladj| ≈ 7) cancel to 5e-3 / 1e-5 (neither scheme is time-symmetric: what is left is the integration
    error, about 2.6e-6 / 6e-9 and 1.7e-3 / 3e-6 here)."""
    flow, theory = make_flow(3, (4, 4), noise=0.2, method=method, n_steps=32)
    z = draw(theory, 3, 8)
    with torch.no_grad():
        x, ladj = flow.transform(z)
        back, ladj_inverse = flow.transform.inverse(x)
    assert (back - z).abs().max() < tol[0] and (ladj + ladj_inverse).abs().max() < tol[1]
    assert (x - z).abs().max() > 0.1 and ladj.abs().max() > 3


def test_log_q_against_a_fine_integration_and_its_recorded_error():
    """log q of 8 cf4 steps equals that of 128 steps to its integration error, which
    `log_q_integration_error` (8× the steps) measures; log_prob inverts sample."""
    flow, theory = make_flow(2, (4, 4), noise=0.2, n_steps=8)
    torch.manual_seed(9)
    with torch.no_grad():
        x, log_q = flow.sample(4)
        z, _ = flow.transform.inverse(x)
        fine = flow.prior.log_prob(z) - flow.transform.flow(z, 0.0, 1.0, LieSolver("cf4", 128))[1]
        error = (log_q - fine).abs()
        assert error.max() < 1e-3 * log_q.abs().max() and log_q.abs().min() > 1.0
        assert (flow.log_prob(x) - log_q).abs().max() < 1e-2  # the inverse integration's error added
        estimate = flow.log_q_integration_error(16, generator=torch.Generator().manual_seed(10))
        assert 0 < estimate["mean"] <= estimate["max"] < 1e-2
        coarse = make_flow(2, (4, 4), noise=0.2, n_steps=4)[0].log_q_integration_error(
            16, generator=torch.Generator().manual_seed(10))
        assert 8 < coarse["mean"] / estimate["mean"] < 32  # fourth order


@pytest.mark.parametrize("n", [2, 3])
def test_output_stays_in_sun(n):
    flow, theory = make_flow(n, (4, 4), noise=0.3, n_steps=8)
    eye = torch.eye(n, dtype=torch.complex128)
    with torch.no_grad():
        x = flow.sample(4)[0]
        assert (x.mH @ x - eye).abs().max() < 1e-13 and (torch.linalg.det(x) - 1).abs().max() < 1e-13
        single = flow.float().sample(4)[0]  # float32 / complex64, the default
        assert single.dtype == torch.complex64
        assert (single.mH @ single - eye.to(single.dtype)).abs().max() < 1e-5
        assert (torch.linalg.det(single) - 1).abs().max() < 1e-5


def test_adjoint_gradients_equal_backpropagation():
    """Reverse-KL and path gradients (which also flow through the inverse map to x) by the adjoint pass
    agree with backpropagation through the solver to its reconstruction error: relative 1e-4 at 8 cf4
    steps, more than 8× smaller than at 4 steps."""
    def gradient(adjoint, path, steps):
        flow, theory = make_flow(2, (3, 3), noise=0.2, n_steps=steps, adjoint=adjoint)
        torch.manual_seed(11)
        x, log_q = flow.sample(2)
        loss = ((frozen_log_prob(flow, x) if path else log_q) + theory.action(x)).mean()
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(flow.parameters()))])

    for path in (False, True):
        direct, adjoint = gradient(False, path, 8), gradient(True, path, 8)
        assert (direct - adjoint).abs().max() < 1e-4 * direct.abs().max() and direct.abs().max() > 1e-2
    coarse = (gradient(False, False, 4) - gradient(True, False, 4)).abs().max()
    fine = (gradient(False, False, 8) - gradient(True, False, 8)).abs().max()
    assert coarse > 8 * fine


@pytest.mark.parametrize("entry, hparams", [("sun/su2-2d-beta2/L8", '{"n_steps": 2, "n_harmonics": 2, "n_time": 3}'),
                                            ("sun/su2-4d-beta2.2/L4", '{"n_steps": 1, "loops": "plaquette", '
                                                                      '"n_harmonics": 1, "n_time": 1}')])
def test_sun_cnf_runs_through_the_harness(tmp_path, entry, hparams):
    from suite.cli import main
    from suite.harness.rows import read_rows

    out = tmp_path / "results"
    assert main(["run", "--entry", entry, "--sampler", "flow", "--model", "sun-cnf", "--hparams", hparams,
                 "--budget-steps", "2", "--batch-size", "4", "--n-samples", "32", "--out", str(out)]) == 0
    (row,) = read_rows(out)
    error = row.sampler_info["log_q_integration_error"]
    assert row.sampler["model"] == "sun-cnf" and row.training["steps"] == 2
    assert 0 <= error["mean"] <= error["max"] and math.isfinite(error["std"])
    assert 0 < row.metrics["ess"]["value"] <= 1
