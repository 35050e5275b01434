"""Sphere flows for sigma models: O(3)-equivariant and CP(N−1) phase-equivariant couplings — exact
inverses, log-determinants against brute-force Jacobians in tangent coordinates, equivariance, the
degenerate-frame fallback, and a short training through the harness that beats the prior's ESS."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from reference.flows import build
from reference.flows.sphere import FRAME_TOL, IntervalSpline, ProjectiveMap, SphereMap, cpn_frame, o3_frame
from reference.flows.u1 import CircularSpline
from suite.cli import main
from suite.fields import wrap_angle
from suite.harness.rows import read_rows
from suite.stats import effective_sample_size
from suite.theories.cpn import CPNModel, random_unitary
from suite.theories.on import ONModel, random_rotation

NOISE = 0.1  # parameter noise: per-layer |ladj| of O(1-10), and round trips within 1e-10


def make_flow(kind, lattice, n=3, n_layers=4, seed=0):
    """A small float64 flow with randomised parameters (fresh nets are near-identity)."""
    torch.manual_seed(seed)
    if kind == "on":
        theory = ONModel(lattice, beta=1.0)
        flow = build("sphere-equivariant", theory, n_layers=n_layers, n_bins=4, hidden=(8,))
    else:
        theory = CPNModel(lattice, beta=1.0, n=n)
        flow = build("cpn-equivariant", theory, n_layers=n_layers, n_bins=4, hidden=(8,))
    flow = flow.double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(NOISE * torch.randn_like(p))
    return flow


def real_coordinates(x):
    """A field's points as real vectors (..., m): spins as they are, C^N as R^{2N} (Re, Im interleaved)."""
    return torch.view_as_real(x).flatten(-2) if x.is_complex() else x


def tangent_basis(v):
    """An orthonormal basis (m, m−1) of the tangent space at the unit vector v (m,) of R^m."""
    q, _ = torch.linalg.qr(torch.cat([v[:, None], torch.eye(len(v), dtype=v.dtype)], 1))
    assert torch.allclose(q[:, 0].abs(), v.abs(), atol=1e-12)
    return q[:, 1:]


def tangent_log_det(f, z):
    """log |det| of f restricted to the tangent spaces of the product of spheres, at z (sites, m) real:
    the Jacobian of the embedded map in orthonormal tangent bases at z and at f(z)."""
    jac = torch.autograd.functional.jacobian(lambda v: f(v.view_as(z)).flatten(), z.flatten(), vectorize=True)
    x = f(z)
    e_in = torch.block_diag(*[tangent_basis(v) for v in z])
    e_out = torch.block_diag(*[tangent_basis(v) for v in x])
    sign, logabs = torch.linalg.slogdet(e_out.T @ jac @ e_in)
    return sign, logabs


def field_log_det(flow, z):
    """`tangent_log_det` of a flow's transform at one configuration z (*lattice, N)."""
    complex_field = z.is_complex()
    shape = z.shape

    def f(v):
        x = torch.view_as_complex(v.reshape(*shape, 2)) if complex_field else v.reshape(shape)
        return real_coordinates(flow.transform(x[None])[0][0]).reshape(-1, v.shape[-1])

    return tangent_log_det(f, real_coordinates(z).reshape(-1, real_coordinates(z).shape[-1]))


def sphere_samples(shape, seed, dtype=torch.float64):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return g / g.norm(dim=-1, keepdim=True)


def test_interval_spline_has_free_end_slopes_and_the_circular_spline_a_mirror():
    polar, circle = IntervalSpline(5), CircularSpline(5)
    g = torch.Generator().manual_seed(0)
    p = torch.randn(4, 1, polar.n_params, generator=g, dtype=torch.float64).expand(-1, 201, -1)
    x = torch.linspace(-1, 1, 201, dtype=torch.float64).expand(4, -1)
    y, ladj = polar(x, p)
    assert (y[:, 0] == -1).all() and (y[:, -1] == 1).all() and (y.diff(dim=1) > 0).all()
    assert (ladj[:, 0] - ladj[:, -1]).abs().min() > 1e-3  # d_0 ≠ d_K: the ends are set separately
    h = 1e-6
    inner = x[:, 1:-1]
    slope = (polar(inner + h, p[:, 1:-1])[0] - polar(inner - h, p[:, 1:-1])[0]) / (2 * h)
    assert torch.allclose(slope, ladj[:, 1:-1].exp(), rtol=1e-4)
    back, ladj_back = polar(y, p, inverse=True)
    assert (back - x).abs().max() < 1e-12 and (ladj + ladj_back).abs().max() < 1e-12
    q = torch.randn(4, 1, circle.n_params, generator=g, dtype=torch.float64).expand(-1, 201, -1)
    phi = math.pi * torch.linspace(-0.99, 0.99, 201, dtype=torch.float64).expand(4, -1)
    (mirrored, ladj_m), (plain, ladj_p) = circle(phi, circle.reflect(q)), circle(-phi, q)
    assert wrap_angle(mirrored + plain).abs().max() < 1e-12 and (ladj_m - ladj_p).abs().max() < 1e-12
    assert wrap_angle(circle(phi, q)[0] + plain).abs().max() > 0.1  # f itself is not odd: R matters


@pytest.mark.parametrize("kind, n", [("on", 3), ("cpn", 3), ("cpn", 2)])
def test_inverse_log_prob_and_unit_norm(kind, n):
    for lattice in [(4, 4), (2, 6)]:
        flow = make_flow(kind, lattice, n)
        x, log_q = flow.sample(8, generator=torch.Generator().manual_seed(1))
        assert x.shape == (8, *lattice, n) and x.is_complex() == (kind == "cpn")
        assert (torch.linalg.vector_norm(x, dim=-1) - 1).abs().max() < 1e-12
        z, ladj = flow.transform.inverse(x)
        again, ladj_forward = flow.transform(z)
        assert (again - x).abs().max() < 1e-10 and (ladj + ladj_forward).abs().max() < 1e-10
        assert torch.allclose(flow.log_prob(x), log_q, atol=1e-10, rtol=0)
        assert ladj.abs().max() > 0.3 and (x - z).abs().max() > 0.05  # not the identity


@pytest.mark.parametrize("kind, n, lattice", [("on", 3, (2, 2)), ("on", 3, (4, 2)), ("cpn", 3, (2, 2)),
                                              ("cpn", 4, (4, 2)), ("cpn", 2, (2, 2))])
def test_log_det_equals_brute_force_tangent_jacobian(kind, n, lattice):
    flow = make_flow(kind, lattice, n)
    z = flow.prior.sample(2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, ladj = flow.transform(z)
    for b in range(2):
        sign, logabs = field_log_det(flow, z[b])
        assert sign != 0 and abs(logabs - ladj[b]) < 1e-8
    assert ladj.abs().max() > 0.3


@pytest.mark.parametrize("proper", [True, False])
def test_o3_equivariance(proper):
    flow = make_flow("on", (4, 4), n_layers=6)
    z = flow.prior.sample(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r = random_rotation(3, generator=torch.Generator().manual_seed(4), proper=proper)
    (x, ladj), (rx, rladj) = flow.transform(z), flow.transform(z @ r.T)
    assert (rx - x @ r.T).abs().max() < 1e-10 and (rladj - ladj).abs().max() < 1e-10
    assert (flow.log_prob(x @ r.T) - flow.log_prob(x)).abs().max() < 1e-10
    assert (x - z).abs().max() > 0.1 and (x @ r.T - x).abs().max() > 0.1  # not vacuous


def test_without_the_symmetrisation_only_rotations_commute():
    """The pseudo-scalar features make the unsymmetrised layer SO(3)- but not O(3)-equivariant: the
    mirrored half of the parameters is what the reflections need (and the check above can fail)."""
    flow = make_flow("on", (4, 4), n_layers=2)
    for layer in flow.transform.bijections:
        layer.signs = None
    z = flow.prior.sample(4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = flow.transform(z)[0]
    g = torch.Generator().manual_seed(4)
    proper, improper = (random_rotation(3, generator=g, proper=p) for p in (True, False))
    assert (flow.transform(z @ proper.T)[0] - x @ proper.T).abs().max() < 1e-10
    assert (flow.transform(z @ improper.T)[0] - x @ improper.T).abs().max() > 1e-3


def test_cpn_equivariance_and_local_phase_invariance():
    flow = make_flow("cpn", (4, 4), n=3, n_layers=6)
    g = torch.Generator().manual_seed(6)
    z = flow.prior.sample(6, generator=g, dtype=torch.float64)
    u = random_unitary(3, generator=g)
    phases = torch.polar(torch.ones(6, 4, 4, 1, dtype=torch.float64),
                         2 * math.pi * torch.rand(6, 4, 4, 1, generator=g, dtype=torch.float64))
    (x, ladj), (gx, gladj) = flow.transform(z), flow.transform(phases * (z @ u.T))
    assert (gx - phases * (x @ u.T)).abs().max() < 1e-10 and (gladj - ladj).abs().max() < 1e-10
    assert (flow.log_prob(phases * x) - flow.log_prob(x)).abs().max() < 1e-10
    assert (flow.log_prob(x @ u.T) - flow.log_prob(x)).abs().max() < 1e-10
    moved = x[..., :, None] * x.conj()[..., None, :] - z[..., :, None] * z.conj()[..., None, :]
    assert moved.abs().max() > 0.1  # the projectors change: the flow moves points of CP(N−1)


def test_o3_frame_and_its_fallbacks():
    s, t = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    generic = sphere_samples((4, 3), 7)
    cancelling = torch.stack([s, t, -s, -t])  # Σ = 0: the axis falls back to the first neighbour
    parallel = torch.stack([s, s, -s, s])  # every neighbour ∥ n: no reference direction
    n, e, has_e = o3_frame(torch.stack([generic, cancelling, parallel]))
    total = generic.sum(0)
    assert torch.allclose(n[0], total / total.norm(), atol=1e-14) and has_e[0]
    first = generic[0] - (generic[0] @ n[0]) * n[0]
    assert torch.allclose(e[0], first / first.norm(), atol=1e-14)
    assert torch.allclose(n[1], s) and has_e[1] and torch.allclose(e[1], torch.tensor([1.0, 0, 0], dtype=torch.float64))
    assert torch.allclose(n[2], s) and not has_e[2]
    assert (n.norm(dim=-1) - 1).abs().max() < 1e-14 and (e[:2] @ n[:2].T).diagonal().abs().max() < 1e-14
    tiny = torch.stack([s, s, s, s + torch.tensor([FRAME_TOL / 10, 0, 0], dtype=torch.float64)])
    assert not o3_frame(tiny)[2]  # a perpendicular part below the tolerance gives no direction


def test_degenerate_frame_leaves_the_azimuth_alone():
    """Every neighbour ∥ n: the site map commutes with rotations about n (only cos θ moves) and its
    log-det is the polar one, checked against the brute-force Jacobian; on a generic frame the same
    parameters do turn the azimuth (the fallback has an effect)."""
    site_map = SphereMap(4)
    g = torch.Generator().manual_seed(8)
    p = 1.5 * torch.randn(5, site_map.n_params, generator=g, dtype=torch.float64)
    axis = torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64)
    parallel = torch.stack([axis, axis, -axis, axis]).expand(5, 4, 3)
    generic = sphere_samples((5, 4, 3), 9)
    s = sphere_samples((5, 3), 10)
    angle = 0.7  # a rotation about the axis (Rodrigues)
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    spin = torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    for nb, symmetric in [(parallel, True), (generic, False)]:
        out, ladj = site_map(s, nb, p)
        back, ladj_back = site_map(out, nb, p, inverse=True)
        assert (back - s).abs().max() < 1e-12 and (ladj + ladj_back).abs().max() < 1e-12
        turned = site_map(s @ spin.T, nb, p)[0]
        assert ((turned - out @ spin.T).abs().max() < 1e-12) == symmetric
        polar = site_map.polar((s * o3_frame(nb)[0]).sum(-1), p[:, :site_map.polar.n_params])[1]
        assert torch.allclose(ladj, polar, atol=1e-12) == symmetric
        for b in range(5):
            sign, logabs = tangent_log_det(lambda v: site_map(v, nb[b:b + 1], p[b:b + 1])[0], s[b:b + 1])
            assert sign != 0 and abs(logabs - ladj[b]) < 1e-9
    # a whole layer where every frozen spin is the same: invertible, exact log-det, equivariant
    flow = make_flow("on", (2, 4), n_layers=1)
    z = sphere_samples((1, 2, 4, 3), 11)
    z[:, torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]], dtype=torch.bool)] = axis
    x, ladj = flow.transform(z)
    assert (flow.transform.inverse(x)[0] - z).abs().max() < 1e-12
    assert abs(field_log_det(flow, z[0])[1] - ladj[0]) < 1e-9
    r = random_rotation(3, generator=torch.Generator().manual_seed(12), proper=False)
    assert (flow.transform(z @ r.T)[0] - x @ r.T).abs().max() < 1e-12


def test_cpn_site_map_commutes_with_phases_and_its_spline_keeps_the_frame_point():
    site_map = ProjectiveMap(4, n_bins=4)
    g = torch.Generator().manual_seed(13)
    p = 1.5 * torch.randn(3, site_map.n_params, generator=g, dtype=torch.float64)
    nb = torch.view_as_complex(torch.randn(3, 4, 4, 2, generator=g, dtype=torch.float64))
    nb = nb / torch.linalg.vector_norm(nb, dim=-1, keepdim=True)
    z = torch.view_as_complex(torch.randn(3, 4, 2, generator=g, dtype=torch.float64))
    z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    out, ladj = site_map(z, nb, p)
    phase = torch.polar(torch.ones(3, 1, dtype=torch.float64), torch.tensor([[0.3], [2.0], [-1.0]], dtype=torch.float64))
    nb_phases = torch.polar(torch.ones(3, 4, 1, dtype=torch.float64), torch.rand(3, 4, 1, generator=g, dtype=torch.float64) * 6)
    moved, moved_ladj = site_map(phase * z, nb_phases * nb, p)
    assert (moved - phase * out).abs().max() < 1e-12 and (moved_ladj - ladj).abs().max() < 1e-12
    n, polar_only = cpn_frame(nb), p.clone()
    polar_only[:, 0] = 0  # c = 0: e^{cM} = 1, and the polar spline fixes the frame point, with a finite log-det
    pole, pole_ladj = site_map(n, nb, polar_only)
    assert (pole - n).abs().max() < 1e-12 and torch.isfinite(pole_ladj).all()
    assert (site_map(n, nb, p)[0] - n).abs().max() > 1e-3  # e^{cM} moves it (n is not an eigenvector of M)
    assert ladj.abs().min() > 0.05


@pytest.mark.parametrize("real, complex_", [(torch.float32, torch.complex64), (torch.float64, torch.complex128)])
def test_gradients_stay_finite_at_the_poles(real, complex_):
    """A site exactly on its pole (s = ±n, z = n) gets finite parameter gradients (√ at 0 would give NaN)."""
    g = torch.Generator().manual_seed(14)
    site_map, cpn_map = SphereMap(4), ProjectiveMap(3, n_bins=4)
    nb = sphere_samples((3, 4, 3), 15, real)
    nbz = torch.randn(3, 4, 3, generator=g, dtype=complex_)
    nbz = nbz / torch.linalg.vector_norm(nbz, dim=-1, keepdim=True)
    q = torch.randn(3, cpn_map.n_params, generator=g, dtype=real)
    q[:, 0] = 0  # e^{cM} = 1 keeps z on the frame point
    n = o3_frame(nb)[0]
    cases = [(site_map, s, nb, torch.randn(3, site_map.n_params, generator=g, dtype=real)) for s in (n, -n)]
    for site, point, neighbourhood, params in [*cases, (cpn_map, cpn_frame(nbz), nbz, q)]:
        params = params.clone().requires_grad_()
        out, ladj = site(point, neighbourhood, params)
        (torch.view_as_real(out).sum() if out.is_complex() else out.sum()).add(ladj.sum()).backward()
        assert torch.isfinite(params.grad).all() and params.grad.abs().max() > 0


def test_registered_build_and_errors():
    from suite.models import build_model

    theory = ONModel((4, 4), beta=1.2)
    flow = build_model("sphere-equivariant", theory, {"n_layers": 2, "hidden": [4]})
    x, log_q = flow.sample(3)
    assert x.dtype == torch.float32 and x.shape == (3, 4, 4, 3) and torch.isfinite(log_q).all()
    cpn = CPNModel((4, 4), beta=1.0, n=3)
    flow = build_model("cpn-equivariant", cpn, {"n_layers": 2, "hidden": [4]})
    x, log_q = flow.sample(3)
    assert x.dtype == torch.complex64 and x.shape == (3, 4, 4, 3) and torch.isfinite(log_q).all()
    with pytest.raises(ValueError, match="even lattice extents"):
        build("sphere-equivariant", ONModel((3, 4), beta=1.0))
    with pytest.raises(ValueError, match="even lattice extents"):
        build("cpn-equivariant", SimpleNamespace(lattice=(4, 5), n=3))
    with pytest.raises(ValueError, match="needs real spins"):
        build("sphere-equivariant", cpn)  # CP(2) fields are complex vectors of length 3
    with pytest.raises(ValueError, match="needs a ProjectiveSpace"):
        build("cpn-equivariant", theory)
    with pytest.raises(ValueError, match="n_bins must be an integer >= 1"):
        build("sphere-equivariant", theory, n_bins=0)


def test_training_through_the_harness_beats_the_prior(tmp_path):
    """A short reverse-KL training on an O(3) catalogue entry (β = 1, L = 8) raises the ESS far above the
    uniform prior's (about 1/N on the same number of samples: its log-weights spread by ~6.5)."""
    n_samples = 1024
    theory = ONModel((8, 8), beta=1.0)
    z = theory.field.prior_sample(n_samples, generator=torch.Generator().manual_seed(0))
    prior_ess = effective_sample_size((-theory.action(z) - theory.field.prior_log_prob(z)).numpy())
    hparams = json.dumps({"n_layers": 2, "hidden": [8, 8], "n_bins": 4})
    assert main(["run", "--sampler", "flow", "--model", "sphere-equivariant", "--hparams", hparams,
                 "--entry", "on/o3-beta1.0/L8", "--budget-steps", "50", "--lr", "0.01",
                 "--n-samples", str(n_samples), "--out", str(tmp_path)]) == 0
    (row,) = read_rows(tmp_path)
    ess = row.metrics["ess"]["value"]
    assert row.sampler["model"] == "sphere-equivariant" and row.training["steps"] == 50
    assert prior_ess < 0.005 and ess > 0.015 and ess > 5 * prior_ess
