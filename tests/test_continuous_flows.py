"""Continuous flows: integrators, adjoint gradients, exact divergences and log-densities, symmetries."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reference.flows import build
from reference.flows.continuous import ConvVelocity, EquivariantVelocity, wrapped_kernel_matrix
from reference.flows.ode import Solver, integrate, odeint, odeint_adjoint
from reference.flows.u1 import plaquette_angle
from suite.fields import wrap_angle
from suite.theories.phi4 import Phi4
from suite.theories.u1 import gauge_transform
from suite.training import OBJECTIVES, Budget, PathGradient, frozen_log_prob, train

SCALAR = ("cnf-equivariant", "cnf")
SMALL = {"cnf-equivariant": {"n_freq": 4, "n_time": 5}, "cnf": {"hidden": (4,), "n_time": 3},
         "u1-cnf": {"n_harmonics": 2, "n_time": 3}}


def make_flow(name, lattice, noise=0.05, seed=0, **options):
    """A small float64 flow with randomised parameters (fresh continuous flows are the identity)."""
    torch.manual_seed(seed)
    flow = build(name, SimpleNamespace(lattice=lattice), **{**SMALL[name], **options}).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(noise * torch.randn_like(p))
    return flow


def brute_force_log_det(transform, z):
    """log|det ∂transform(z)/∂z| of the numerical map, one configuration (1, *shape)."""
    jac = torch.autograd.functional.jacobian(lambda v: transform(v.view_as(z))[0].flatten(), z.flatten())
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign > 0
    return logabs


def test_integrators_reach_their_order_and_tolerance():
    f = lambda t, y: (math.cos(t) * y[0],)  # y = exp(sin t)
    y0, exact = (torch.ones(1, dtype=torch.float64),), math.exp(math.sin(2.0))
    errors = [abs(integrate(f, y0, 0.0, 2.0, Solver("rk4", n))[0].item() - exact) for n in (10, 20)]
    assert 12 < errors[0] / errors[1] < 20  # fourth order: 2⁴
    for tol in (1e-5, 1e-9):
        y = integrate(f, y0, 0.0, 2.0, Solver("dopri5", 4, rtol=tol, atol=tol))[0].item()
        assert abs(y - exact) < 20 * tol
    back = integrate(f, (torch.full((1,), exact, dtype=torch.float64),), 2.0, 0.0, Solver("dopri5", 4, 1e-9, 1e-9))
    assert abs(back[0].item() - 1) < 1e-7  # backward in time
    with pytest.raises(ValueError, match="unknown ODE method"):
        Solver("euler")


def displacement_orbits(lattice) -> tuple[torch.Tensor, int]:
    """Orbit of every displacement (shape ``lattice``) of the full periodic kernel, and their number."""
    wrap = wrapped_kernel_matrix(lattice, 0)
    return wrap.argmax(1).view(lattice), wrap.shape[1]


def test_displacement_orbits():
    index, n = displacement_orbits((4, 4))
    assert n == 6 and index[0, 0] == 0  # |r| classes (0,0) (1,0) (2,0) (1,1) (2,1) (2,2)
    assert index[1, 0] == index[0, 1] == index[3, 0] == index[0, 3] and index[1, 2] == index[2, 3]
    index, n = displacement_orbits((4, 6))  # unequal extents: reflections only
    assert n == 3 * 4 and index[1, 0] != index[0, 1]


RK4_32, DOPRI5_TIGHT = {"n_steps": 32}, {"method": "dopri5", "rtol": 1e-10, "atol": 1e-10}
SOLVERS = [pytest.param(name, options, id=f"{name}-{options.get('method', 'rk4')}")
           for name, options in [("cnf-equivariant", RK4_32), ("cnf-equivariant", DOPRI5_TIGHT), ("cnf", RK4_32)]]


@pytest.mark.parametrize("name, options", SOLVERS)
def test_reverse_integration_returns_the_prior_sample(name, options):
    """Forward then backward: z back to 1e-6 with 32 RK4 steps, 1e-9 with dopri5 at tolerance 1e-10."""
    tol = 1e-9 if options is DOPRI5_TIGHT else 1e-6
    flow = make_flow(name, (3, 3), **options)
    z = torch.randn(8, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x, ladj = flow.transform(z)
    back, ladj_inverse = flow.transform.inverse(x)
    assert (back - z).abs().max() < tol and (ladj + ladj_inverse).abs().max() < tol
    assert ladj.abs().max() > 0.1 and (x - z).abs().max() > 0.1  # far from the identity


@pytest.mark.parametrize("name, options", SOLVERS)
def test_log_det_equals_brute_force_jacobian(name, options):
    """The integrated divergence is the log-determinant of the numerical map up to its integration
    error: 1e-6 with 32 RK4 steps, 1e-8 with dopri5 at tolerance 1e-10."""
    tol = 1e-8 if options is DOPRI5_TIGHT else 1e-6
    flow = make_flow(name, (3, 3), **options)
    z = torch.randn(1, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ladj = flow.transform(z)[1]
    assert abs(ladj.item() - brute_force_log_det(flow.transform, z)) < tol and abs(ladj.item()) > 0.1


@pytest.mark.parametrize("lattice", [(3, 3), (14,)])
def test_conv_velocity_divergence_is_the_exact_trace(lattice):
    """Colouring probes give the exact Jacobian trace; (14,) uses 7 colours (receptive radius 3)."""
    torch.manual_seed(3)
    velocity = ConvVelocity(lattice, hidden=(4, 4), n_time=3).double().eval()
    phi = torch.randn(2, *lattice, dtype=torch.float64)
    divergence = velocity.dynamics(phi)(0.3, phi)[1]
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda y: velocity.velocity(0.3, y.view(1, *lattice)).flatten(),
                                                 phi[b].flatten(), vectorize=True)
        assert abs(divergence[b] - torch.trace(jac)) < 1e-10
    assert velocity.probes.shape[0] == (7 if lattice == (14,) else math.prod(lattice))
    velocity.divergence = "hutchinson"
    velocity.train()
    many = phi[:1].expand(4000, *lattice)
    estimate = velocity.dynamics(many)(0.3, many)[1]
    assert abs(estimate.mean() - divergence[0]) < 4 * estimate.std() / math.sqrt(4000)
    assert estimate.std() > 0  # a stochastic estimate in training mode ...
    velocity.eval()
    assert torch.allclose(velocity.dynamics(many)(0.3, many)[1], divergence[0].expand(4000))  # ... exact in eval


def test_the_wrapped_kernel_is_the_periodic_kernel_at_half_the_lattice_and_fixed_beyond():
    index, n = displacement_orbits((8, 8))
    full = wrapped_kernel_matrix((8, 8), 0)
    assert full.shape == (64, n) and torch.allclose(full.sum(0), torch.ones(n, dtype=torch.float64))
    sizes = torch.bincount(index.flatten()).double()  # R = L/2: each site carries 1/(its orbit's size)
    assert torch.equal(full, torch.nn.functional.one_hot(index.flatten(), n).double() / sizes)
    assert torch.equal(wrapped_kernel_matrix((8, 8), 4), full)
    small, large = wrapped_kernel_matrix((8, 8), 3), wrapped_kernel_matrix((12, 12), 3)
    assert small.shape == (64, 10) and large.shape == (144, 10)  # folded (0..3)², sorted: parameters independent of L
    box = [(x, y) for x in range(-3, 4) for y in range(-3, 4)]  # no wrapping once L > 2R: the same kernel
    assert all(torch.equal(small[(x % 8) * 8 + y % 8], large[(x % 12) * 12 + y % 12]) for x, y in box)
    assert torch.count_nonzero(large.sum(1)) == len(box)
    wrapped = wrapped_kernel_matrix((4, 4), 3)  # R > L/2: the images of a displacement add up
    assert torch.allclose(wrapped.sum(0), torch.ones(10, dtype=torch.float64)) and torch.all(wrapped.sum(1) > 0)


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_equivariant_velocity_symmetries_and_divergence(radius):
    torch.manual_seed(4)
    velocity = EquivariantVelocity((4, 4), n_freq=3, n_time=3, radius=radius).double()
    with torch.no_grad():
        velocity.weight.normal_()
    phi = torch.randn(3, 4, 4, dtype=torch.float64)
    f = velocity.dynamics(phi)
    v, divergence = f(0.7, phi)
    for op in [lambda a: torch.roll(a, (1, 2), (1, 2)), lambda a: a.transpose(1, 2),
               lambda a: torch.rot90(a, 1, (1, 2)), lambda a: a.flip(1), lambda a: -a]:
        v_op, div_op = f(0.7, op(phi))
        assert torch.allclose(v_op, op(v), atol=1e-12) and torch.allclose(div_op, divergence, atol=1e-12)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda y: f(0.7, y.view(1, 4, 4))[0].flatten(), phi[b].flatten())
        assert abs(divergence[b] - torch.trace(jac)) < 1e-10
    assert v.abs().max() > 0.1


def test_equivariant_flow_commutes_with_the_lattice_symmetries():
    flow = make_flow("cnf-equivariant", (4, 4), noise=0.1)
    z = torch.randn(4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x, ladj = flow.transform(z)
    for op in [lambda a: torch.roll(a, 1, 2), lambda a: torch.rot90(a, 1, (1, 2)), lambda a: -a]:
        x_op, ladj_op = flow.transform(op(z))
        assert torch.allclose(x_op, op(x), atol=1e-12) and torch.allclose(ladj_op, ladj, atol=1e-12)
    plain = make_flow("cnf", (4, 4), noise=0.1)  # the check is not vacuous
    assert not torch.allclose(plain.transform(-z)[0], -plain.transform(z)[0], atol=1e-3)


def test_linear_velocity_on_the_free_theory_is_exact():
    """v = Kφ with the constant kernel K = −½ log M (M the free precision matrix) maps N(0, 1) onto the
    free field exactly: log q = −S − log Z to the integration error, the ESS is 1."""
    lattice, m2 = (6, 6), 1.0
    theory = Phi4.from_albergo(lattice, m2=m2, lam=0.0)
    flow = build("cnf-equivariant", theory, n_freq=0, n_time=1, n_steps=64).double()
    p = torch.stack(torch.meshgrid(*[2 * math.pi * torch.arange(n, dtype=torch.float64) / n for n in lattice],
                                   indexing="ij"))
    precision = 2 * theory.A - 2 * theory.J * torch.cos(p).sum(0)  # S = ½ φᵀMφ, M̂(p)
    kernel = torch.fft.ifftn(-0.5 * torch.log(precision)).real
    velocity, (orbits, _) = flow.transform.velocity, displacement_orbits(lattice)
    with torch.no_grad():
        for orbit in range(velocity.weight.shape[0]):
            velocity.weight[orbit, 0, 0] = kernel[orbits == orbit].sum()  # W per orbit
    log_z = -0.5 * torch.log(precision).sum() + 0.5 * math.prod(lattice) * math.log(2 * math.pi)
    x, log_q = flow.sample(64, generator=torch.Generator().manual_seed(6))
    assert (log_q + theory.action(x) + log_z).abs().max() < 1e-6
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-6)
    assert flow.log_q_integration_error(64)["max"] < 1e-6


@pytest.mark.parametrize("name", SCALAR)
def test_adjoint_gradients_equal_backpropagation(name):
    """Reverse-KL and path gradients by the adjoint method agree with direct backpropagation to the
    integration error (relative 1e-4 at 8 RK4 steps)."""
    theory = Phi4.from_albergo((3, 3), m2=-4.0, lam=6.0)

    def gradient(adjoint, path):
        flow = make_flow(name, (3, 3), adjoint=adjoint, n_steps=8)
        torch.manual_seed(7)
        x, log_q = flow.sample(4)
        loss = ((frozen_log_prob(flow, x) if path else log_q) + theory.action(x)).mean()
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(flow.parameters()))])

    for path in (False, True):
        direct, adjoint = gradient(False, path), gradient(True, path)
        assert (direct - adjoint).abs().max() < 1e-4 * direct.abs().max()
        assert direct.abs().max() > 1e-2


def test_adjoint_without_parameters_and_with_dopri5():
    """The adjoint of dx/dt = a x, dℓ/dt = a·dim: dx(1)/dx0 = e^a, d/da = x(1) and dℓ/da = dim."""
    a = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    dynamics = lambda t, x: (a * x, (a * 3).expand(x.shape[0]))
    x1, ell = odeint_adjoint(dynamics, x0, [a], 0.0, 1.0, Solver("dopri5", 4, 1e-10, 1e-10))
    gx, ga = torch.autograd.grad(x1.sum() + ell.sum(), (x0, a))
    assert torch.allclose(x1, x0 * math.exp(0.3), atol=1e-9) and torch.allclose(ell, torch.full_like(ell, 0.9))
    assert torch.allclose(gx, torch.full_like(x0, math.exp(0.3)), atol=1e-8)
    assert abs(ga - (x0.detach().sum() * math.exp(0.3) + 6)) < 1e-8
    assert torch.allclose(odeint(dynamics, x0, 0.0, 1.0, Solver("rk4", 8))[0], x1, atol=1e-5)


def test_path_gradient_training_of_a_continuous_flow():
    """Twenty path-gradient steps (adjoint) on the free theory raise the batch ESS well above the identity's."""
    theory = Phi4.from_albergo((4, 4), m2=1.0, lam=0.0)
    torch.manual_seed(8)
    flow = build("cnf-equivariant", theory, n_freq=2, n_time=3, n_steps=4, adjoint=True)
    log = train(flow, PathGradient(theory), batch_size=32, lr=0.1, budget=Budget(steps=20), seed=8,
                schedule="constant", progress=False)
    ess = log.column("ess")
    assert ess[-5:].mean() > 4 * ess[:3].mean()


def test_log_q_integration_error_falls_with_the_steps():
    errors = [make_flow("cnf-equivariant", (4, 4), noise=0.1, n_steps=n).log_q_integration_error(
        16, generator=torch.Generator().manual_seed(9))["mean"] for n in (4, 8)]
    assert 8 < errors[0] / errors[1] < 40 and errors[0] > 1e-6  # about 2⁴: the RK4 error dominates


def u1_flow(**options):
    return make_flow("u1-cnf", (4, 4), noise=0.05, **options)


def test_u1_flow_is_gauge_equivariant_with_gauge_invariant_log_q():
    flow = u1_flow()
    g = torch.Generator().manual_seed(10)
    z = flow.prior.sample(6, generator=g, dtype=torch.float64)
    alpha = 2 * math.pi * torch.rand(6, 4, 4, generator=g, dtype=torch.float64)
    (x, ladj), (gx, gladj) = flow.transform(z), flow.transform(gauge_transform(z, alpha))
    assert wrap_angle(gx - gauge_transform(x, alpha)).abs().max() < 1e-10
    assert (gladj - ladj).abs().max() < 1e-10
    assert (flow.log_prob(gauge_transform(x, alpha)) - flow.log_prob(x)).abs().max() < 1e-8  # round-off in 2π
    conjugate, conjugate_ladj = flow.transform(-z)  # charge conjugation θ → −θ
    assert wrap_angle(conjugate + x).abs().max() < 1e-10 and (conjugate_ladj - ladj).abs().max() < 1e-10
    assert wrap_angle(plaquette_angle(x) - plaquette_angle(z)).abs().max() > 0.3  # not vacuous
    assert x.min() > -math.pi and x.max() <= math.pi


def test_u1_flow_log_density_and_inverse():
    """With 32 RK4 steps: round trip to 1e-5, log-determinant to 1e-4 (|ladj| ≈ 6)."""
    flow = make_flow("u1-cnf", (3, 3), noise=0.05, n_steps=32)
    z = flow.prior.sample(4, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    x, ladj = flow.transform(z)
    back, ladj_inverse = flow.transform.inverse(x)
    assert wrap_angle(back - z).abs().max() < 1e-5 and (ladj + ladj_inverse).abs().max() < 1e-5
    assert abs(ladj[0] - brute_force_log_det(flow.transform, z[:1])) < 1e-4
    assert ladj.abs().max() > 0.3


def test_registered_continuous_flows_follow_the_model_protocol():
    from suite.models import build_model
    from suite.theories.u1 import U1

    for name, theory in [("cnf-equivariant", Phi4.from_albergo((4, 4), -4.0, 6.0)),
                         ("cnf", Phi4.from_albergo((4, 4), -4.0, 6.0)), ("u1-cnf", U1((4, 4), beta=1.0))]:
        flow = build_model(name, theory, {"n_steps": 2})
        x, log_q = flow.sample(3)
        assert x.dtype == torch.float32 and x.shape == (3, *theory.field.shape) and torch.isfinite(log_q).all()
    square = SimpleNamespace(lattice=(4, 4))
    from reference.flows import REGISTRY

    for name, options, message, guard in [
            ("cnf", {"method": "euler"}, "method must be one of rk4, dopri5", "unknown ODE method"),
            ("cnf", {"divergence": "trace"}, "divergence must be one of exact, hutchinson", "unknown divergence"),
            ("cnf-equivariant", {"n_steps": 0}, "n_steps must be an integer >= 1", "positive integer"),
            ("u1-cnf", {"loops": "wilson"}, "loops must be one of plaquette", "unknown loops")]:
        with pytest.raises(ValueError, match=message):  # the registry's schema
            build(name, square, **options)
        with pytest.raises(ValueError, match=guard):  # the factory's own guard
            REGISTRY[name].factory(square, **options)


@pytest.mark.slow
def test_equivariant_flow_learns_the_free_field():
    """Reverse-KL training reaches ESS > 0.9 on the free field (representable exactly: a linear
    velocity), and the reweighted χ₂ agrees with the exact value within 4σ."""
    from suite.exact.free_scalar import free_scalar_exact
    from suite.flow_sampling import direct_sampling_chain
    from suite.stats import effective_sample_size

    theory = Phi4.from_albergo((8, 8), m2=0.5, lam=0.0)
    torch.manual_seed(12)
    flow = build("cnf-equivariant", theory, n_freq=2, n_time=3, n_steps=8)
    train(flow, OBJECTIVES["reverse-kl"](theory), batch_size=64, lr=0.05, budget=Budget(steps=300), seed=12,
          progress=False)
    flow.eval()
    chain = direct_sampling_chain(flow, theory, 8192, 1024)
    log_w = chain.log_weights[0]
    assert effective_sample_size(log_w) > 0.9
    w = np.exp(log_w - log_w.max())
    chi2 = chain.observables["chi2"][0]
    mean = (w * chi2).sum() / w.sum()
    error = np.sqrt((w**2 * (chi2 - mean) ** 2).sum()) / w.sum()
    assert abs(mean - free_scalar_exact(theory)["chi2"]) < 4 * error
    assert flow.log_q_integration_error(256)["max"] < 0.05


def test_the_report_warns_of_runs_whose_log_q_solver_error_varies(tmp_path):
    """The flow plugin's report section names the runs whose log q − log q_fine spread is large, and only those."""
    import dataclasses

    from suite.cli import main
    from suite.harness.rows import read_rows

    out = tmp_path / "results"
    assert main(["run", "--entry", "phi4/free/L8", "--sampler", "flow", "--model", "cnf-equivariant", "--hparams",
                 '{"n_freq": 2, "n_steps": 2}', "--budget-steps", "2", "--batch-size", "4", "--n-samples", "32",
                 "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert row.sampler_info["log_q_integration_error"]["std"] < 0.1
    assert row.plugin.report_section([row], tmp_path) == []
    coarse = dataclasses.replace(row, sampler_info={**row.sampler_info, "log_q_integration_error":
                                                    {"mean": 0.62, "std": 0.25, "max": 1.76}})
    warning, _, table, _ = row.plugin.report_section([row, coarse], tmp_path)
    assert warning.startswith("**Warning: 1 flow run(s)") and "| 0.25 |" in table and "| 0.62 |" in table
