"""SU(N) flows: conjugation-equivariant spectral maps of one matrix (log-densities against brute-force
Jacobians in Lie-algebra coordinates and the exact single-matrix normalisation, training) and the
gauge-equivariant plaquette couplings on 2D lattices (inverse, Jacobian, gauge equivariance)."""

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.special import iv

from reference.flows import build, build_sun_equivariant
from reference.flows.sun import plaquettes
from reference.flows.sun_spectral import SpectralMap, build_spectral_flow, eigenphases
from suite.exact.sun import single_matrix_log_z
from suite.fields import SUN, traceless_antihermitian
from suite.theories.sun import SUNGauge, gauge_transform

C128 = torch.complex128


def generators(n):
    """i T_a, a = 1 … N² − 1, Tr T_a T_b = ½ δ_ab (off-diagonal pairs, then the diagonal ones)."""
    out = []
    for i in range(n):
        for j in range(i + 1, n):
            for entry in (0.5, -0.5j):
                t = torch.zeros(n, n, dtype=C128)
                t[i, j], t[j, i] = entry, entry.conjugate()
                out.append(1j * t)
    for k in range(1, n):
        t = torch.diag(torch.tensor([1.0] * k + [-k] + [0.0] * (n - k - 1), dtype=C128)) / math.sqrt(2 * k * (k + 1))
        out.append(1j * t)
    return torch.stack(out)


def lie_log_det(f, w0, gens):
    """log|det| of w ↦ f(w) at w0 in right-trivialised Lie-algebra coordinates (w = e^X w0, f = e^Y f(w0)),
    i.e. w.r.t. the Haar measure, by autograd: y^a = −2 Re Tr(iT_a P(f(e^X w0) f(w0)†))."""
    y0 = f(w0)

    def coords(x):
        w = torch.linalg.matrix_exp(torch.einsum("a,a...->...", x.to(C128), gens)) @ w0
        return (-2 * torch.einsum("aij,...ji->...a", gens, traceless_antihermitian(f(w) @ y0.mH))).real.flatten()

    jac = torch.autograd.functional.jacobian(coords, torch.zeros(gens.shape[0], dtype=torch.float64), vectorize=True)
    return torch.linalg.slogdet(jac)


def haar(shape, n, seed, dtype=torch.float64):
    return SUN((n, n)).prior_sample(math.prod(shape), generator=torch.Generator().manual_seed(seed),
                                    dtype=dtype).view(*shape, n, n)


def degenerate(n, seed):
    """Ω diag(e^{iθ}) Ω† with θ_1 = θ_2 (a doubly degenerate eigenvalue) and the identity."""
    omega = haar((1,), n, seed)[0]
    theta = torch.full((n,), 0.7, dtype=torch.float64)
    theta[-1] = -(n - 1) * 0.7
    return [omega @ torch.diag(torch.polar(torch.ones(n, dtype=torch.float64), theta)).to(C128) @ omega.mH,
            torch.eye(n, dtype=C128)]


def spectral(n, k=3, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return SpectralMap(n, k), scale * torch.randn(2 * k, generator=g, dtype=torch.float64)


# -- one matrix ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
def test_eigenphase_gradients_are_exact_at_degenerate_spectra(n):
    """∂/∂W of a symmetric function of the phases against the analytic Ω diag(i g_i e^{iθ_i}) Ω†, also
    at a doubly degenerate eigenvalue and at W = 𝟙."""
    for w in [haar((), n, 1), *degenerate(n, 2)]:
        w = w.clone().requires_grad_()
        theta = eigenphases(w)
        (grad,) = torch.autograd.grad((torch.sin(theta) + 0.3 * torch.cos(2 * theta)).sum(), w)
        lam, v = torch.linalg.eig(w.detach())
        g = torch.cos(theta.detach()) - 0.6 * torch.sin(2 * theta.detach())
        q = torch.linalg.qr(v)[0]
        assert torch.isfinite(grad).all()
        assert (grad - (q * (1j * g * lam).unsqueeze(-2)) @ q.mH).abs().max() < 1e-12


@pytest.mark.parametrize("n", [2, 3])
def test_log_det_equals_brute_force_lie_algebra_jacobian(n):
    f, p = spectral(n)
    gens = generators(n)
    points = [*haar((3,), n, 3), *degenerate(n, 4), torch.linalg.matrix_exp(1e-3 * (gens * torch.arange(1.0, n * n)[:, None, None]).sum(0))]
    for w in points:
        out, ladj = f(w, p)
        assert (out.mH @ out - torch.eye(n)).abs().max() < 1e-12 and abs(torch.linalg.det(out) - 1) < 1e-12
        sign, logabs = lie_log_det(lambda m: f(m, p)[0], w, gens)
        assert sign > 0 and abs(logabs - ladj) < 1e-9
    assert abs(ladj) > 0.1  # the map is far from volume-preserving


@pytest.mark.parametrize("n", [2, 3])
def test_inverse_conjugation_equivariance_and_determinant(n):
    f, p = spectral(n, seed=1)
    w = torch.cat([haar((64,), n, 5), torch.stack(degenerate(n, 6))])
    out, ladj = f(w, p)
    back, ladj_inverse = f(out, p, inverse=True)
    assert (back - w).abs().max() < 1e-10 and (ladj + ladj_inverse).abs().max() < 1e-10
    omega = haar((len(w),), n, 7)
    turned, turned_ladj = f(omega @ w @ omega.mH, p)
    assert (turned - omega @ out @ omega.mH).abs().max() < 1e-12 and (turned_ladj - ladj).abs().max() < 1e-10
    zero = f(w, torch.zeros_like(p))
    assert (zero[0] - w).abs().max() < 1e-14 and zero[1].abs().max() < 1e-14  # zero parameters: identity


@pytest.mark.parametrize("n", [2, 3])
def test_inverse_gradients(n):
    """The inverse's implicit-function step gives the derivatives of the exact inverse (no eigenvector
    is differentiated): checked along group coordinates of W′ and the map's parameters."""
    f, p = spectral(n, k=2, seed=2, scale=1.0)
    gens, w0 = generators(n), haar((), n, 8)

    def inverse(x, params):
        w = torch.linalg.matrix_exp(torch.einsum("a,a...->...", x.to(C128), gens)) @ w0
        back, ladj = f(w, params, inverse=True)
        return torch.view_as_real(back).flatten(), ladj

    x = torch.zeros(n * n - 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(inverse, (x, p.clone().requires_grad_()))


def test_single_matrix_normalisation_is_the_bessel_determinant():
    """a_0 = Σ_k det[I_{k+i−j}(β/N)] against 2 I_1(β)/β (SU(2)) and Haar Monte Carlo (pulls < 4)."""
    assert abs(math.exp(single_matrix_log_z(2, 3.0)) - 2 * iv(1, 3.0) / 3.0) < 1e-12
    for n, beta in [(2, 3.0), (3, 4.0), (3, 9.0)]:
        u = haar((200_000,), n, 9)
        w = torch.exp((beta / n) * torch.diagonal(u, dim1=-2, dim2=-1).real.sum(-1))
        pull = (w.mean().item() - math.exp(single_matrix_log_z(n, beta))) / (w.std().item() / math.sqrt(len(w)))
        assert abs(pull) < 4, (n, beta, pull)


def test_su2_log_q_is_the_change_of_variables_of_the_phase():
    """SU(2): the phase θ ∈ [0, π] has Haar density (2/π) sin²θ, so with θ′ = h(θ),
    log q(W′) = log(sin²θ / sin²θ′) − log h′(θ), h′ by autograd of the scalar phase map."""
    flow = build_spectral_flow(2, n_layers=3, n_harmonics=3).double()
    with torch.no_grad():
        for par in flow.parameters():
            par.copy_(torch.randn(par.shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64))
    z = flow.prior.sample(16, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    x, log_q = flow.sample(16, generator=torch.Generator().manual_seed(11))

    def phase_map(t):  # θ of diag(e^{iθ}, e^{−iθ}) through the layers' phase maps
        theta = torch.stack([t, -t], -1)
        for layer in flow.transform.bijections:
            theta = layer.map.forward_phases(theta, *layer.map.coefficients(layer.params))
        return theta[..., 0]

    t = eigenphases(z)[..., 0].abs().requires_grad_()
    (slope,) = torch.autograd.grad(phase_map(t).sum(), t)
    t_out = phase_map(t.detach())
    expected = torch.log(torch.sin(t.detach()) ** 2 / torch.sin(t_out) ** 2) - torch.log(slope)
    assert (log_q - expected).abs().max() < 1e-10
    assert (eigenphases(x).abs().max(-1).values - t_out.abs()).abs().max() < 1e-10


def target_log_p(n, beta):
    log_z = single_matrix_log_z(n, beta)
    return lambda u: (beta / n) * torch.diagonal(u, dim1=-2, dim2=-1).real.sum(-1) - log_z


@pytest.mark.parametrize("n", [2, 3])
def test_density_is_normalised(n):
    """E_q[p/q] = 1 with p the exactly normalised target, and E_Haar[q] = 1 (log_prob through the
    inverse), pulls < 4, for a randomised flow."""
    torch.manual_seed(12)
    flow = build_spectral_flow(n, n_layers=2, n_harmonics=3).double()
    with torch.no_grad():
        for par in flow.parameters():
            par.normal_(0, 1.0)
        x, log_q = flow.sample(10_000, generator=torch.Generator().manual_seed(13))
        ratio = (target_log_p(n, 3.0)(x) - log_q).exp()
        density = flow.log_prob(haar((10_000,), n, 14)).exp()
    for values in (ratio, density):
        pull = (values.mean().item() - 1) / (values.std().item() / math.sqrt(len(values)))
        assert abs(pull) < 4


def train_single(n, beta, steps, n_layers=2, lr=3e-2, seed=0):
    """Reverse-KL training of a float32 spectral flow; returns (flow, ESS and KL before and after, CPU s)."""
    torch.manual_seed(seed)
    flow, log_p = build_spectral_flow(n, n_layers=n_layers, n_harmonics=4), target_log_p(n, beta)

    def measure():
        with torch.no_grad():
            x, log_q = flow.sample(4096, generator=torch.Generator().manual_seed(seed + 1))
            log_w = log_p(x.to(C128)) - log_q.double()
            w = (log_w - log_w.max()).exp()
            return (w.sum() ** 2 / (w**2).sum() / len(w)).item(), -log_w.mean().item()

    before = measure()
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    start = time.process_time()
    for _ in range(steps):
        x, log_q = flow.sample(256)
        loss = (log_q - log_p(x)).mean()
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(par.grad).all() for par in flow.parameters())
        opt.step()
    return flow, before, measure(), time.process_time() - start


@pytest.mark.parametrize("n, beta", [(2, 4.0), (3, 6.0)])
def test_training_on_the_single_matrix_target(n, beta):
    _, (ess0, kl0), (ess, kl), _ = train_single(n, beta, steps=150)
    assert ess0 < 0.25 and ess > 0.9 and ess > 4 * ess0 and 0 <= kl < 0.1 * kl0


@pytest.mark.parametrize("n, beta", [(2, 40.0), (3, 60.0)])
def test_training_near_the_identity_stays_finite(n, beta):
    """At large β the target sits near W = 𝟙 (nearly degenerate spectra); gradients stay finite
    (asserted at every step) and training still helps."""
    _, (ess0, _), (ess, _), _ = train_single(n, beta, steps=60, n_layers=4, lr=5e-2)
    assert ess0 < 0.01 and ess > 0.3


# -- 2D lattice couplings -----------------------------------------------------------------------


def make_flow(lattice, n, loops="plaquette", n_layers=4, seed=0, noise=0.3):
    """A small complex128 flow with randomised parameters (fresh nets are near-identity)."""
    torch.manual_seed(seed)
    flow = build("sun-equivariant", SUNGauge(lattice, n, 2.0), n_layers=n_layers, n_harmonics=3, loops=loops).double()
    with torch.no_grad():
        for par in flow.parameters():
            par.add_(noise * torch.randn_like(par))
    return flow


@pytest.mark.parametrize("loops", ["plaquette", "plaquette+rectangle"])
@pytest.mark.parametrize("n", [2, 3])
def test_lattice_inverse_and_log_prob(n, loops):
    for lattice in [(4, 4), (4, 6)]:
        flow = make_flow(lattice, n, loops)
        x, log_q = flow.sample(4, generator=torch.Generator().manual_seed(1))
        assert x.shape == (4, 2, *lattice, n, n) and x.dtype == C128
        assert (x.mH @ x - torch.eye(n)).abs().max() < 1e-12 and (torch.linalg.det(x) - 1).abs().max() < 1e-12
        z, ladj = flow.transform.inverse(x)
        again, ladj_forward = flow.transform(z)
        assert (again - x).abs().max() < 1e-10 and (ladj + ladj_forward).abs().max() < 1e-10
        assert (flow.log_prob(x) - log_q).abs().max() < 1e-10 and ladj.abs().max() > 0.3


@pytest.mark.parametrize("n", [2, 3])
def test_lattice_log_det_equals_brute_force_jacobian(n):
    """2×2 lattice, all 8 links: the full (8(N²−1))² Jacobian in Lie-algebra coordinates."""
    flow = make_flow((2, 2), n, "plaquette+rectangle")
    z = flow.prior.sample(1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, ladj = flow.transform(z)
    gens = generators(n)
    y0 = flow.transform(z)[0]

    def coords(v):
        x = torch.linalg.matrix_exp(torch.einsum("...a,aij->...ij", v.view(1, 2, 2, 2, -1).to(C128), gens)) @ z
        y = flow.transform(x)[0]
        return (-2 * torch.einsum("aij,...ji->...a", gens, traceless_antihermitian(y @ y0.mH))).real.flatten()

    jac = torch.autograd.functional.jacobian(coords, torch.zeros(8 * (n * n - 1), dtype=torch.float64), vectorize=True)
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign > 0 and abs(logabs - ladj[0]) < 1e-8


@pytest.mark.parametrize("n", [2, 3])
def test_gauge_equivariance(n):
    flow = make_flow((4, 4), n, "plaquette+rectangle")
    z = flow.prior.sample(3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    omega = haar((3, 4, 4), n, 4)
    (x, ladj), (gx, gladj) = flow.transform(z), flow.transform(gauge_transform(z, omega))
    assert (gx - gauge_transform(x, omega)).abs().max() < 1e-10 and (gladj - ladj).abs().max() < 1e-10
    assert (flow.log_prob(gauge_transform(x, omega)) - flow.log_prob(x)).abs().max() < 1e-10
    assert (gx - x).abs().max() > 0.5  # not vacuous


def test_each_layer_changes_only_its_active_links_and_keeps_its_conditioner_input():
    flow = make_flow((4, 6), 2, "plaquette+rectangle", n_layers=4)
    z = flow.prior.sample(2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for layer in flow.transform.bijections:
        x, ladj = layer(z)
        changed = ((x - z).abs() > 1e-12).flatten(4).any(-1).any(0).flatten()
        assert changed.nonzero().squeeze(1).tolist() == layer.link_sites.tolist()
        assert (layer.conditioner_input(x) - layer.conditioner_input(z)).abs().max() < 1e-12
        active = plaquettes(x).flatten(1, 2)[:, layer.plaq_sites]
        assert active.shape[1] == len(layer.link_sites)
        z = x


def test_registered_build_and_errors():
    from suite.models import build_model

    theory = SUNGauge((4, 4), 3, 2.0)
    flow = build_model("sun-equivariant", theory, {"n_layers": 2, "loops": "plaquette+rectangle"})
    x, log_q = flow.sample(3)
    assert x.dtype == torch.complex64 and x.shape == (3, 2, 4, 4, 3, 3) and torch.isfinite(log_q).all()
    assert flow.prior.field is theory.field and torch.isfinite(theory.action(x)).all()
    for options, message, guard in [({"loops": "wilson"}, "loops must be one of plaquette", "unknown loops"),
                                    ({"n_layers": 0}, "n_layers must be an integer >= 1", "at least one")]:
        with pytest.raises(ValueError, match=message):  # the registry's schema
            build("sun-equivariant", theory, **options)
        with pytest.raises(ValueError, match=guard):  # the factory's own guard
            build_sun_equivariant(theory, **options)
    with pytest.raises(ValueError, match="n_harmonics must be an integer >= 1 and <= 16"):
        build("sun-equivariant", theory, n_harmonics=0)
    with pytest.raises(ValueError, match="d = 2, 3, 4"):
        build("sun-equivariant", SimpleNamespace(lattice=(4,), n=2))
    with pytest.raises(ValueError, match="divisible"):
        build("sun-equivariant", SUNGauge((5, 4), 2, 2.0))
    with pytest.raises(ValueError, match="SU\\(N\\) theory"):
        build("sun-equivariant", SimpleNamespace(lattice=(4, 4)))


@pytest.mark.parametrize("entry, n_layers, batch, lattice", [("sun/su2-2d-beta2/L8", 2, 8, [8, 8]),
                                                              ("sun/su2-4d-beta2.2/L4", 4, 4, [4, 4, 4, 4])])
def test_lftbench_run_trains_through_the_cli(tmp_path, entry, n_layers, batch, lattice):
    from suite.cli import main
    from suite.harness.rows import read_rows

    out = tmp_path / "results"
    assert main(["run", "--entry", entry, "--sampler", "flow", "--model", "sun-equivariant",
                 "--hparams", f'{{"n_layers": {n_layers}, "hidden": [4]}}', "--budget-steps", "3",
                 "--batch-size", str(batch), "--n-samples", "16", "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert row.sampler["model"] == "sun-equivariant" and list(row.lattice) == lattice and row.training["steps"] == 3
