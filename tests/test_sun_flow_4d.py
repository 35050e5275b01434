"""The gauge-equivariant SU(N) plaquette couplings in 3 and 4 dimensions: the periodic 4D convolution
of their conditioners, inverse and log-density, log-det against a brute-force Jacobian in Lie-algebra
coordinates, gauge equivariance, the triangular mask pattern, coverage of the layer schedule and a
training run through the CLI (the 2D flow: tests/test_sun_flows.py)."""

import itertools

import pytest
import torch

from reference.flows import build
from reference.flows.couplings import ConvNet, PeriodicConv4d
from reference.flows.masks import gauge_layer_schedule
from suite.fields import traceless_antihermitian
from suite.theories.sun import SUNGauge, gauge_transform
from test_sun_flows import C128, generators, haar


def make_flow(lattice, n, loops="plaquette+rectangle", n_layers=8, seed=0, noise=0.3, hidden=(8, 8), double=True):
    """A small complex128 flow with randomised parameters (fresh nets are near-identity)."""
    torch.manual_seed(seed)
    flow = build("sun-equivariant", SUNGauge(lattice, n, 2.0), n_layers=n_layers, n_harmonics=3, loops=loops,
                 hidden=hidden)
    flow = flow.double() if double else flow
    with torch.no_grad():
        for par in flow.parameters():
            par.add_(noise * torch.randn_like(par))
    return flow


def test_periodic_conv4d_is_the_periodic_4d_cross_correlation():
    """Against Σ over all k⁴ kernel offsets of w[·, ·, offset] · in(x + offset − k//2), periodic."""
    torch.manual_seed(0)
    conv = PeriodicConv4d(2, 3, 3).double()
    x = torch.randn(2, 2, 3, 4, 2, 5, dtype=torch.float64)
    expected = conv.bias.view(1, -1, 1, 1, 1, 1).expand(2, 3, 3, 4, 2, 5).clone()
    w = conv.weight.view(3, 2, 3, 3, 3, 3)  # (out, in, offset along axis 0, offsets along axes 1-3)
    for s in itertools.product(range(3), repeat=4):
        shifted = torch.roll(x, [1 - k for k in s], [2, 3, 4, 5])
        expected = expected + torch.einsum("oc,bcxyzt->boxyzt", w[(slice(None), slice(None), *s)], shifted)
    assert (conv(x) - expected).abs().max() < 1e-12
    net = ConvNet(2, [4], 3, dim=4)
    net.zero_output()
    assert net(x.float()).abs().max() == 0  # zero_output reaches the 4D convolution too


@pytest.mark.parametrize("n", [2, 3])
def test_inverse_and_log_prob(n):
    for lattice in [(2, 2, 2, 2), (2, 2, 2, 4), (2, 4, 4)]:
        flow = make_flow(lattice, n)
        x, log_q = flow.sample(3, generator=torch.Generator().manual_seed(1))
        assert x.shape == (3, len(lattice), *lattice, n, n) and x.dtype == C128
        assert (x.mH @ x - torch.eye(n)).abs().max() < 1e-12 and (torch.linalg.det(x) - 1).abs().max() < 1e-12
        z, ladj = flow.transform.inverse(x)
        again, ladj_forward = flow.transform(z)
        assert (again - x).abs().max() < 1e-10 and (ladj + ladj_forward).abs().max() < 1e-10
        assert (flow.log_prob(x) - log_q).abs().max() < 1e-10 and ladj.abs().max() > 0.5


@pytest.mark.parametrize("n, n_layers", [(2, 8), (3, 4)])
def test_log_det_equals_brute_force_jacobian(n, n_layers):
    """2^4 lattice, all 64 links: the full (64(N²−1))² Jacobian in right-trivialised Lie-algebra
    coordinates, x = exp(v^a iT_a) z and f(x) = exp(y^a iT_a) f(z), against the summed ladj; 4 layers
    are one per direction (μ = 3 in the plane (3, 0), whose active loop is U_03†), 8 update every link
    once. A one-layer conditioner of kernel 3⁴ sees the whole 2^4 lattice (and keeps the test fast)."""
    flow = make_flow((2, 2, 2, 2), n, loops="plaquette", n_layers=n_layers, hidden=(2,))
    z = flow.prior.sample(1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y0, ladj = flow.transform(z)
    gens = generators(n)

    def coords(v):
        x = torch.linalg.matrix_exp(torch.einsum("...a,aij->...ij", v.view(*z.shape[:-2], -1).to(C128), gens)) @ z
        y = flow.transform(x)[0]
        return (-2 * torch.einsum("aij,...ji->...a", gens, traceless_antihermitian(y @ y0.mH))).real.flatten()

    jac = torch.autograd.functional.jacobian(coords, torch.zeros(64 * (n * n - 1), dtype=torch.float64), vectorize=True)
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign > 0 and abs(logabs - ladj[0]) < 1e-8 and abs(ladj[0]) > 1.0


@pytest.mark.parametrize("n", [2, 3])
def test_gauge_equivariance(n):
    for lattice in [(2, 2, 2, 4), (2, 4, 4)]:
        flow = make_flow(lattice, n)
        z = flow.prior.sample(2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        omega = haar((2, *lattice), n, 4)
        (x, ladj), (gx, gladj) = flow.transform(z), flow.transform(gauge_transform(z, omega))
        assert (gx - gauge_transform(x, omega)).abs().max() < 1e-10 and (gladj - ladj).abs().max() < 1e-10
        assert (flow.log_prob(gauge_transform(x, omega)) - flow.log_prob(x)).abs().max() < 1e-10
        assert (gx - x).abs().max() > 0.5  # not vacuous


def test_each_layer_changes_only_its_active_links_and_keeps_its_conditioner_input():
    """The triangular pattern: a layer changes exactly its active links, leaves the features of its
    frozen loops alone and turns each active loop W into W′ = R W with the spectral map's R."""
    flow = make_flow((2, 2, 2, 4), 2, n_layers=16)
    z = flow.prior.sample(2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for layer in flow.transform.bijections:
        x, ladj = layer(z)
        changed = ((x - z).abs() > 1e-12).flatten(6).any(-1).any(0).flatten()
        assert changed.nonzero().squeeze(1).tolist() == layer.link_sites.tolist()
        assert (layer.conditioner_input(x) - layer.conditioner_input(z)).abs().max() < 1e-12
        before, after = (layer.plaquettes(u)[:, layer.plane].flatten(1, 4)[:, layer.plaq_sites] for u in (z, x))
        if layer.mu > layer.nu:
            before, after = before.mH, after.mH
        params = layer.net(layer.conditioner_input(z)).flatten(2)[..., layer.plaq_sites].movedim(1, -1)
        assert (layer.map(before, params)[0] - after).abs().max() < 1e-12
        z = x


def test_schedule_updates_every_link():
    """Every link is active in exactly one of the first d·p layers (p the stripe period)."""
    for lattice, n_layers in [((4, 4, 4, 4), 16), ((2, 2, 2, 2), 8), ((2, 2, 2, 4), 16), ((2, 4, 4), 12), ((4, 6), 8)]:
        flow = build("sun-equivariant", SUNGauge(lattice, 2, 2.0), n_layers=n_layers, hidden=[2])
        counts = torch.zeros(len(lattice) * torch.Size(lattice).numel(), dtype=torch.long)
        for layer in flow.transform.bijections:
            counts[layer.link_sites] += 1
        assert counts.min() >= 1, lattice
        if all(extent == lattice[0] for extent in lattice):
            assert counts.max() == 1, lattice
    assert gauge_layer_schedule((4, 4, 4, 4), 5) == [(0, 1, 0), (1, 2, 0), (2, 3, 0), (3, 0, 0), (0, 1, 1)]
    assert [mu_nu_o for mu_nu_o in gauge_layer_schedule((2, 2, 2, 2), 24)[8::4]] == [(0, 2, 0), (0, 2, 1), (0, 3, 0), (0, 3, 1)]


def test_deep_float32_stacks_stay_unitary():
    """48 float32 layers: the links stay in SU(3) to 1e-5 (the update U′ = R U of
    `SpectralMap.rotation`; U′ = W′ W† U let the round-off grow geometrically with depth, to NaN)."""
    flow = make_flow((2, 2, 2, 4), 3, loops="plaquette", n_layers=48, noise=0.1, hidden=(2,), double=False)
    with torch.no_grad():
        x, log_q = flow.sample(2, generator=torch.Generator().manual_seed(6))
    assert x.dtype == torch.complex64 and torch.isfinite(log_q).all()
    assert (x.mH @ x - torch.eye(3)).abs().max() < 1e-5 and (torch.linalg.det(x) - 1).abs().max() < 1e-5


@pytest.mark.parametrize("n", [2, 3])
def test_registered_build_and_haar_prior(n):
    """The registered 4D model draws its prior from the theory's field space: links in SU(N), log p = 0,
    the Haar moments E Tr U = 0 and E |Tr U|² = 1 (8192 links, pulls < 4)."""
    from suite.models import build_model

    theory = SUNGauge((4, 4, 4, 4), n, 2.0)
    flow = build_model("sun-equivariant", theory, {"n_layers": 2})
    assert flow.prior.field is theory.field
    z = flow.prior.sample(8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert z.shape == (8, 4, 4, 4, 4, 4, n, n) and (flow.prior.log_prob(z) == 0).all()
    assert (z.mH @ z - torch.eye(n)).abs().max() < 1e-12 and (torch.linalg.det(z) - 1).abs().max() < 1e-12
    trace = torch.diagonal(z, dim1=-2, dim2=-1).sum(-1).flatten()
    for values, mean in [(trace.real, 0.0), (trace.imag, 0.0), (trace.abs() ** 2, 1.0)]:
        assert abs(values.mean() - mean) < 4 * values.std() / len(values) ** 0.5
    x, log_q = flow.sample(2)
    assert x.dtype == torch.complex64 and x.shape == (2, *theory.field.shape) and torch.isfinite(log_q).all()
    assert torch.isfinite(theory.action(x)).all()
