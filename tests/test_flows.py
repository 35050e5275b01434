"""Reference flows: exact invertibility, log-determinants, normalisation, Z₂ equivariance, spline edges."""

from types import SimpleNamespace

import pytest
import torch

from reference.flows import REGISTRY, build, build_spline, hparams
from reference.flows.couplings import AffineCoupling, ConvNet, SplineCoupling, SplineMap
from reference.flows.masks import layer_mask
from reference.flows.splines import _knots, rational_quadratic_spline
from reference.flows.transforms import Rescale
from suite.theories.phi4 import Phi4

# the coupling flows for scalar fields, from the registry (the others: test_u1_flows.py, test_continuous_flows.py)
SCALAR_FLOWS = tuple(name for name, entry in REGISTRY.items() if entry.field == "scalar" and "z2" in entry.schema.kinds)
SMALL = {"affine": {"n_layers": 4}, "spline": {"n_layers": 4}, "hybrid": {"n_affine": 2, "n_spline": 2}}
NARROW = {"affine": {}, "spline": {"bound": 2.0}, "hybrid": {"bound": 2.0}}  # many sites in spline tails
FLOWS = [pytest.param(name, z2, id=f"{name}-z2={z2}") for name in SCALAR_FLOWS for z2 in (False, True)]



def make_flow(name, lattice, z2, noise=0.1, seed=0, **options):
    """A small float64 flow of the registered kind, parameters randomised (fresh nets are near-trivial).

    noise 0.1 gives spline logits of O(2) and |ladj| of O(10); much larger noise makes splines with
    slopes ~1e-7 whose composition is too ill-conditioned for any round trip to 1e-10.
    """
    torch.manual_seed(seed)
    flow = build(name, SimpleNamespace(lattice=lattice), z2=z2, **{**SMALL[name], **options}).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(noise * torch.randn_like(p))
    return flow


def test_small_hparams_cover_every_registered_coupling_flow():
    assert SCALAR_FLOWS and set(SMALL) == set(NARROW) == set(SCALAR_FLOWS)


@pytest.mark.parametrize("name, z2", FLOWS)
def test_inverse_undoes_forward(name, z2):
    flow = make_flow(name, (4, 4), z2, **NARROW[name])
    z = 1.5 * torch.randn(8, 4, 4, dtype=torch.float64)
    z[0, 0, 0], z[1, 1, 1] = 7.0, -2.0  # far out; exactly at -bound where the first layer is a spline
    x, ladj = flow.transform(z)
    back, ladj_inverse = flow.transform.inverse(x)
    assert torch.allclose(back, z, atol=1e-10, rtol=0)
    assert torch.allclose(ladj_inverse, -ladj, atol=1e-10, rtol=0)
    assert ladj.abs().max() > 0.1  # the randomised flow is far from volume-preserving


@pytest.mark.parametrize("name, z2", FLOWS)
@pytest.mark.parametrize("lattice", [(4, 4), (6,)], ids=["4x4", "6"])
def test_log_det_equals_brute_force_jacobian(name, z2, lattice):
    flow = make_flow(name, lattice, z2)
    z = torch.randn(1, *lattice, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v.view(1, *lattice))[0].flatten(), z.flatten())
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign > 0  # orientation-preserving (monotone elementwise maps)
    assert torch.allclose(flow.transform(z)[1], logabsdet, atol=1e-9, rtol=0)
    x = flow.transform(z)[0]
    jac_inverse = torch.autograd.functional.jacobian(
        lambda v: flow.transform.inverse(v.view(1, *lattice))[0].flatten(), x.flatten())
    assert torch.allclose(flow.transform.inverse(x)[1], torch.linalg.slogdet(jac_inverse)[1], atol=1e-9, rtol=0)


@pytest.mark.parametrize("mask", ["rows", "columns", "stripes"])
def test_other_masks_give_exact_flows(mask):
    flow = make_flow("hybrid", (4, 4), z2=True, mask=mask, n_affine=4)
    z = torch.randn(1, 4, 4, dtype=torch.float64)
    x, ladj = flow.transform(z)
    jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v.view(1, 4, 4))[0].flatten(), z.flatten())
    assert torch.allclose(ladj, torch.linalg.slogdet(jac)[1], atol=1e-9, rtol=0)
    assert torch.allclose(flow.transform.inverse(x)[0], z, atol=1e-10, rtol=0)
    assert (x - z).abs().min() > 0  # every site was updated


@pytest.mark.parametrize("name, z2", FLOWS)
def test_density_integrates_to_one(name, z2):
    flow = make_flow(name, (2,), z2).float()  # float32: float64 convolutions take a slow CPU path
    with torch.no_grad():
        edge = 1.5 * flow.sample(4000, generator=torch.Generator().manual_seed(1))[0].abs().max().item() + 3
        grid = torch.linspace(-edge, edge, 301)
        density = flow.log_prob(torch.cartesian_prod(grid, grid)).double().exp()
    mass = density.sum().item() * (2 * edge / 300) ** 2
    assert abs(mass - 1) < 1e-3


@pytest.mark.parametrize("name", SCALAR_FLOWS)
def test_z2_equivariance(name):
    flow = make_flow(name, (4, 4), z2=True, **NARROW[name])
    z = 1.5 * torch.randn(8, 4, 4, dtype=torch.float64)
    (x, ladj), (x_flip, ladj_flip) = flow.transform(z), flow.transform(-z)
    assert torch.allclose(x_flip, -x, atol=1e-12, rtol=0)
    assert torch.allclose(ladj_flip, ladj, atol=1e-10, rtol=0)
    assert torch.allclose(flow.log_prob(-x), flow.log_prob(x), atol=1e-10, rtol=0)
    plain = make_flow(name, (4, 4), z2=False)  # the check is not vacuous: without z2 the symmetry is broken
    assert not torch.allclose(plain.transform(-z)[0], -plain.transform(z)[0], atol=1e-3)


def spline_logits(shape, n_bins=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    w, h = (2 * torch.randn(*shape, n_bins, generator=g, dtype=dtype) for _ in range(2))
    return w, h, 2 * torch.randn(*shape, n_bins - 1, generator=g, dtype=dtype)


def test_spline_boundaries_and_identity_tails():
    bound = 3.0
    x = torch.tensor([-bound, bound, -1e3, 1e3, -bound - 1e-6, bound + 1e-6, 40.0], dtype=torch.float64,
                     requires_grad=True)
    w, h, d = (t.requires_grad_() for t in spline_logits(x.shape))
    for inverse in (False, True):
        y, ladj = rational_quadratic_spline(x, w, h, d, bound=bound, inverse=inverse)
        assert torch.allclose(y, x, atol=1e-12, rtol=0)  # ±B are fixed points, outside is the identity
        assert torch.allclose(ladj, torch.zeros_like(ladj), atol=1e-9)  # d = 1 at ±B, identity tails
        grads = torch.autograd.grad(y.sum() + ladj.sum(), (x, w, h, d))
        assert all(torch.isfinite(g).all() for g in grads)


def test_spline_zero_logits_is_identity_and_monotone():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    zero = [torch.zeros(1001, k, dtype=torch.float64) for k in (5, 5, 4)]
    y, ladj = rational_quadratic_spline(x, *zero, bound=5.0)
    assert torch.allclose(y, x, atol=1e-12) and torch.allclose(ladj, torch.zeros_like(ladj), atol=1e-12)
    logits = [t.expand(1001, -1) for t in spline_logits((), n_bins=5)]
    y, _ = rational_quadratic_spline(x, *logits, bound=5.0)
    assert (y.diff() > 0).all()


def test_spline_float32_round_trip_near_knots():
    bound, n_bins, n = 4.0, 8, 4096
    w, h, d = (t.float() / 2 for t in spline_logits((n,), n_bins=n_bins, seed=3))  # logits O(1)
    inner = _knots(w, bound, 1e-3)[:, 1:-1]
    pick = torch.randint(0, n_bins - 1, (n, 1), generator=torch.Generator().manual_seed(4))
    offsets = torch.tensor([-1e-6, -1e-7, 0.0, 1e-7, 1e-6]).repeat(n // 5 + 1)[:n]
    x = inner.gather(-1, pick).squeeze(-1) + offsets
    y, ladj = rational_quadratic_spline(x, w, h, d, bound=bound)
    back, ladj_inverse = rational_quadratic_spline(y, w, h, d, bound=bound, inverse=True)
    assert y.dtype == back.dtype == torch.float32 and torch.isfinite(back).all()
    assert (back - x).abs().max() < 1e-5
    assert (rational_quadratic_spline(back, w, h, d, bound=bound)[0] - y).abs().max() < 4e-6  # a few ulps
    assert (ladj + ladj_inverse).abs().max() < 1e-2


@pytest.mark.parametrize("name", SCALAR_FLOWS)
def test_sample_shapes_dtypes_and_reproducibility(name):
    theory = Phi4.from_albergo((6, 6), m2=-4.0, lam=8.0)
    flow = build(name, theory, **SMALL[name])
    x, log_q = flow.sample(5)
    assert x.shape == (5, 6, 6) and x.dtype == torch.float32 and log_q.shape == (5,)
    assert torch.isfinite(log_q).all() and torch.isfinite(theory.action(x)).all()
    a, b = (flow.sample(3, generator=torch.Generator().manual_seed(7))[0] for _ in range(2))
    assert torch.equal(a, b)
    flow = flow.double()
    x, log_q = flow.sample(4)
    assert x.dtype == torch.float64
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-10, rtol=0)


def test_flows_on_other_lattice_dimensions():
    for lattice in [(2,), (5,), (2, 4, 4)]:
        x, log_q = build("hybrid", SimpleNamespace(lattice=lattice), n_affine=2, n_spline=2).sample(2)
        assert x.shape == (2, *lattice) and torch.isfinite(log_q).all()
    with pytest.raises(ValueError, match="dimensions 1-4"):
        build("affine", SimpleNamespace(lattice=(2, 2, 2, 2, 2)))


def test_unknown_name_and_hparam_errors():
    theory = SimpleNamespace(lattice=(4, 4))
    with pytest.raises(ValueError, match="expected one of affine, spline, hybrid") as error:
        build("glow", theory)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="n_layer.*valid: n_layers, hidden") as error:
        build("affine", theory, n_layer=4)
    assert "\n" not in str(error.value)
    assert hparams("hybrid")[:2] == ("n_affine", "n_spline")
    with pytest.raises(ValueError, match="mask must be one of checkerboard, rows, columns, stripes"):
        build("affine", theory, mask="diagonal")
    with pytest.raises(ValueError, match="z2 must be true or false, got 'false'"):
        build("affine", theory, z2="false")


@pytest.mark.parametrize("kind", ["checkerboard", "rows", "columns", "stripes"])
def test_masks_are_alternating_halves(kind):
    lattice = (4, 6)
    masks = [layer_mask(kind, lattice, i) for i in range(4)]
    for i, mask in enumerate(masks):
        assert mask.shape == lattice and mask.dtype == torch.bool and mask.sum() == 12
        if i % 2:
            assert torch.equal(mask, ~masks[i - 1])
    if kind == "stripes":
        assert torch.equal(masks[0], layer_mask("rows", lattice, 0))
        assert torch.equal(masks[2], layer_mask("columns", lattice, 0))
    if kind == "columns":
        with pytest.raises(ValueError, match="dimension"):
            layer_mask(kind, (4,), 0)


def test_bad_architectures_are_rejected():
    with pytest.raises(ValueError, match="odd"):
        ConvNet(1, [4], 2, kernel_size=2)
    with pytest.raises(ValueError, match="min_bin"):
        SplineMap(n_bins=1000, min_bin=1e-3)
    with pytest.raises(ValueError, match="n_layers must be an integer >= 1"):
        build("spline", SimpleNamespace(lattice=(4, 4)), n_layers=0)
    with pytest.raises(ValueError, match="at least one coupling"):  # the factory's own guard
        build_spline(SimpleNamespace(lattice=(4, 4)), n_layers=0)


def test_hybrid_is_the_del_debbio_marsh_rossney_wilson_stack():
    layers = list(build("hybrid", SimpleNamespace(lattice=(4, 4)), n_affine=4, n_spline=2).transform.bijections)
    kinds = [type(layer) for layer in layers]
    assert kinds == [AffineCoupling] * 4 + [Rescale] + [SplineCoupling] * 2 + [Rescale]
    assert [bool(layer.active[0, 0]) for layer in layers if not isinstance(layer, Rescale)] == [True, False] * 3
