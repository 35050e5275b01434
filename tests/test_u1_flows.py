"""Gauge-equivariant U(1) flows: circle maps, exact inverses and log-determinants, gauge equivariance."""

import math
from types import SimpleNamespace

import pytest
import torch

from reference.flows import build, build_u1_equivariant
from reference.flows.priors import FieldPrior
from reference.flows.u1 import CircularSpline, NCPMixture, plaquette_angle
from reference.flows.u1_plaquette import PlaquetteCoupling, SinkCoupling, transport_links
from suite.fields import TorusSpace
from suite.fields import wrap_angle as wrap
from suite.theories.u1 import U1, gauge_transform

TRANSFORMS = ["ncp", "spline"]
LOOPS = ["plaquette", "plaquette+rectangle"]
# parameter noise: enough for |ladj| of O(1-10); much more makes maps so steep that composed round
# trips lose their 1e-10 (the spline's logits feed softmaxes and softpluses, hence its smaller noise)
NOISE = {"ncp": 0.2, "spline": 0.1}


# (model, transform, loops): every U(1) coupling flow, with the loops its conditioners see
VARIANTS = [*[("u1-equivariant", t, loops) for t in TRANSFORMS for loops in LOOPS],
            *[("u1-plaquette", t, None) for t in TRANSFORMS]]


def make_flow(lattice, transform, loops="plaquette", n_layers=4, seed=0, model="u1-equivariant"):
    """A small float64 flow with randomised parameters (fresh nets are near-identity or the identity)."""
    torch.manual_seed(seed)
    options = {} if loops is None else {"loops": loops}
    flow = build(model, SimpleNamespace(lattice=lattice), n_layers=n_layers, transform=transform,
                 n_mixture=3, n_bins=5, **options).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(NOISE[transform] * torch.randn_like(p))
    return flow


def circle_map(transform, n_sets=4, seed=0, scale=1.5):
    """A map and random parameters of shape (n_sets, 1, n_params), logits of O(scale) (expand to use)."""
    f = NCPMixture(3) if transform == "ncp" else CircularSpline(5)
    g = torch.Generator().manual_seed(seed)
    return f, scale * torch.randn(n_sets, 1, f.n_params, generator=g, dtype=torch.float64)


def test_haar_prior():
    prior = FieldPrior(TorusSpace((2, 3, 4)))
    z = prior.sample(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert z.shape == (1000, 2, 3, 4) and z.min() > -math.pi and z.max() <= math.pi
    assert abs(z.mean()) < 0.05 and abs(z.var() - math.pi**2 / 3) < 0.05
    assert torch.allclose(prior.log_prob(z), torch.full((1000,), -24 * math.log(2 * math.pi), dtype=torch.float64))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_circle_map_is_a_bijection_with_exact_log_derivative(transform):
    f, p = circle_map(transform)
    n = 2000
    x = (-math.pi + 2 * math.pi * (torch.arange(n, dtype=torch.float64) + 0.5) / n).expand(p.shape[0], n)
    p = p.expand(-1, n, -1)  # the spline does not broadcast
    y, ladj = f(x, p)
    assert y.min() > -math.pi and y.max() <= math.pi
    steps = wrap(torch.roll(y, -1, 1) - y)  # degree one with positive steps: a bijection of the circle
    assert (steps > 0).all() and torch.allclose(steps.sum(1), torch.full((p.shape[0],), 2 * math.pi, dtype=y.dtype))
    h = 1e-6
    slope = wrap(f(x + h, p)[0] - f(x - h, p)[0]) / (2 * h)
    assert torch.allclose(slope, ladj.exp(), rtol=1e-5, atol=0)  # the spline: O(h) at its knots
    assert ladj.abs().max() > 0.5
    back, ladj_inverse = f(y, p, inverse=True)
    assert wrap(back - x).abs().max() < 1e-10 and (ladj + ladj_inverse).abs().max() < 1e-10
    # the pushforward of the uniform density, q(y) = exp(ladj_inverse(y)) / 2π, integrates to one
    # (midpoint rule on the circle; moderate slopes, as steep maps put narrow peaks into q)
    f, p = circle_map(transform, scale=0.5)
    density = f(x, p.expand(-1, n, -1), inverse=True)[1].exp() / (2 * math.pi)
    assert torch.allclose(density.mean(1) * 2 * math.pi, torch.ones(p.shape[0], dtype=y.dtype), atol=1e-5)


def test_circular_spline_is_smooth_across_the_cut():
    f, p = circle_map("spline", scale=0.5)  # moderate slopes, so that finite differences resolve them
    p = p.expand(-1, 2, -1)
    ends = torch.tensor([-math.pi, math.pi], dtype=torch.float64).expand(p.shape[0], 2)
    _, ladj = f(ends, p)
    assert torch.allclose(ladj[:, 0], ladj[:, 1], atol=1e-12)  # d_0 = d_K
    assert (ladj.abs() > 0.01).all()  # ... and not the identity spline's 1
    h = 1e-6  # a central difference across the cut: O(h) off (f'' jumps there), not O(1)
    ends = torch.tensor([-math.pi + h, math.pi - h], dtype=torch.float64).expand(p.shape[0], 2)
    y = f(ends, p)[0]
    assert torch.allclose(wrap(y[:, 0] - y[:, 1]) / (2 * h), ladj[:, 1].exp(), rtol=1e-4)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_circle_map_gradients(transform):
    """Inverse included: the NCP bisection carries gradients through the implicit-function step."""
    f, p = circle_map(transform, n_sets=2)
    p = p.expand(-1, 3, -1).clone()
    x = (torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 5 - 2.5)
    for inverse in (False, True):
        assert torch.autograd.gradcheck(lambda a, b: f(a, b, inverse), (x.requires_grad_(), p.requires_grad_()))


@pytest.mark.parametrize("model, transform, loops", VARIANTS)
def test_inverse_and_log_prob(model, transform, loops):
    for lattice in [(4, 4), (4, 6)]:  # stripe period 4, and 3 along an axis of 6
        flow = make_flow(lattice, transform, loops, model=model)
        x, log_q = flow.sample(8, generator=torch.Generator().manual_seed(1))
        assert x.shape == (8, 2, *lattice) and x.min() > -math.pi and x.max() <= math.pi
        z, ladj = flow.transform.inverse(x)
        again, ladj_forward = flow.transform(z)
        assert wrap(again - x).abs().max() < 1e-10 and (ladj + ladj_forward).abs().max() < 1e-10
        assert torch.allclose(flow.log_prob(x), log_q, atol=1e-10, rtol=0)
        assert ladj.abs().max() > 0.3


@pytest.mark.parametrize("model, transform, loops", VARIANTS)
@pytest.mark.parametrize("size", [2, 4])
def test_log_det_equals_brute_force_jacobian(size, model, transform, loops):
    flow = make_flow((size, size), transform, loops, model=model)
    z = flow.prior.sample(2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, ladj = flow.transform(z)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v: flow.transform(v.view(1, 2, size, size))[0].flatten(), z[b].flatten(), vectorize=True)
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign > 0 and abs(logabs - ladj[b]) < 1e-8


@pytest.mark.parametrize("model, transform, loops", VARIANTS)
def test_gauge_equivariance(model, transform, loops):
    flow = make_flow((4, 4), transform, loops, model=model)
    g = torch.Generator().manual_seed(3)
    z = flow.prior.sample(6, generator=g, dtype=torch.float64)
    alpha = 2 * math.pi * torch.rand(6, 4, 4, generator=g, dtype=torch.float64)
    (x, ladj), (gx, gladj) = flow.transform(z), flow.transform(gauge_transform(z, alpha))
    assert wrap(gx - gauge_transform(x, alpha)).abs().max() < 1e-10
    assert wrap(plaquette_angle(gx) - plaquette_angle(x)).abs().max() < 1e-10
    assert (gladj - ladj).abs().max() < 1e-10
    assert (flow.log_prob(gauge_transform(x, alpha)) - flow.log_prob(x)).abs().max() < 1e-10
    assert wrap(gx - x).abs().max() > 1  # the check is not vacuous


@pytest.mark.parametrize("lattice", [(2, 2), (8, 8), (6, 4)])
def test_masks_and_conditioning_on_invariant_loops(lattice):
    """Each layer changes only its active links, and its conditioner input (cos, sin of the frozen
    loops) is the same before and after the layer, which makes the Jacobian triangular."""
    flow = make_flow(lattice, "ncp", "plaquette+rectangle", n_layers=8)
    z = flow.prior.sample(3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for i, layer in enumerate(flow.transform.bijections):
        x, _ = layer(z)
        changed = (wrap(x - z).abs() > 1e-12).any(0)
        assert changed.flatten().nonzero().squeeze(1).tolist() == layer.link_sites.tolist()
        before, after = (layer.conditioner_input(plaquette_angle(t)) for t in (z, x))
        assert (before - after).abs().max() < 1e-12
        if lattice == (8, 8):  # the tutorial's masks: stripes o (active), o+1, o+2 (frozen), o+3 (passive)
            mu, offset = i % 2, (i // 2) % 4
            rows = (torch.arange(8) - offset) % 4
            frozen = ((rows == 1) | (rows == 2)).float()
            frozen = frozen[None, :] if mu == 0 else frozen[:, None]
            assert torch.equal(layer.frozen_plaq, frozen.expand(8, 8))
            stripe = layer.plaq_sites % 8 if mu == 0 else layer.plaq_sites // 8
            assert len(stripe) == 16 and (stripe % 4 == offset).all()
        z = x


def test_registered_build_and_errors():
    from suite.models import build_model
    from suite.theories.u1 import U1

    theory = U1((4, 4), beta=1.0)
    flow = build_model("u1-equivariant", theory, {"n_layers": 2, "transform": "spline"})
    x, log_q = flow.sample(3)
    assert x.dtype == torch.float32 and x.shape == (3, 2, 4, 4) and torch.isfinite(log_q).all()
    assert torch.isfinite(theory.action(x)).all()
    square = SimpleNamespace(lattice=(4, 4))
    for options, message, guard in [({"transform": "affine"}, "transform must be one of ncp, spline", "unknown transform"),
                                    ({"loops": "wilson"}, "loops must be one of plaquette", "unknown loops"),
                                    ({"n_layers": 0}, "n_layers must be an integer >= 1", "at least one")]:
        with pytest.raises(ValueError, match=message):  # the registry's schema
            build("u1-equivariant", square, **options)
        with pytest.raises(ValueError, match=guard):  # the factory's own guard
            build_u1_equivariant(square, **options)
    with pytest.raises(ValueError, match="two-dimensional"):
        build("u1-equivariant", SimpleNamespace(lattice=(4, 4, 4)))
    with pytest.raises(ValueError, match="divisible"):
        build("u1-equivariant", SimpleNamespace(lattice=(5, 4)))


@pytest.mark.parametrize("lattice", [(2, 2), (4, 4), (6, 4), (3, 5)])
def test_transport_moves_each_plaquette_change_to_the_sink(lattice):
    g = torch.Generator().manual_seed(5)
    x = math.pi * (2 * torch.rand(3, 2, *lattice, generator=g, dtype=torch.float64) - 1)
    delta = torch.randn(3, *lattice, generator=g, dtype=torch.float64)
    change = plaquette_angle(x + transport_links(delta)) - plaquette_angle(x)
    expected = delta.clone()
    expected[:, 0, 0] = 0
    expected[:, 0, 0] = -expected.sum((1, 2))
    assert (change - expected).abs().max() < 1e-12 and expected[:, 0, 0].abs().min() > 0.1


@pytest.mark.parametrize("lattice", [(4, 4), (6, 4)])
def test_plaquette_flow_layers_change_their_active_plaquettes_and_the_sink_only(lattice):
    """A plaquette coupling leaves its conditioner's input unchanged and changes no plaquette but its
    active ones and the sink; sink coupling k changes plaquette k (flat index) and the sink (index 0),
    and leaves the sum of plaquettes 0 … k, its conditioner's input, unchanged."""
    flow = make_flow(lattice, "spline", None, n_layers=2, model="u1-plaquette")
    z = flow.prior.sample(3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sink = torch.zeros(lattice, dtype=torch.bool)
    sink[0, 0] = True
    sinks = [layer.k for layer in flow.transform.bijections if isinstance(layer, SinkCoupling)]
    assert sinks == list(range(math.prod(lattice) - 1, 0, -1))[-32:]  # K = min(32, V − 1), last k = 1
    for layer in flow.transform.bijections:
        x, _ = layer(z)
        before, after = plaquette_angle(z), plaquette_angle(x)
        changed = (wrap(after - before).abs() > 1e-12).all(0)
        active = torch.zeros(math.prod(lattice), dtype=torch.bool)
        active[layer.sites] = True
        assert torch.equal(changed, active.view(lattice) | sink)
        if isinstance(layer, PlaquetteCoupling):
            assert (layer.params(wrap(before)) - layer.params(wrap(after))).abs().max() < 1e-12
            assert not (layer.frozen.bool() & (active.view(lattice) | sink)).any()
        else:
            assert layer.sites.tolist() == [layer.k]
            total = [t.flatten(1)[:, :layer.k + 1].sum(1) for t in (before, after)]
            assert wrap(total[1] - total[0]).abs().max() < 1e-12
        z = x


def test_plaquette_flow_learns_the_wilson_action():
    """Reverse-KL training of the plaquette flow on 2×4 at β = 2, where its K = V − 1 sink couplings make
    the family hold the exact flow, reaches ESS > 0.9; the untrained flow's ESS is below 0.5."""
    theory = U1((2, 4), beta=2.0)
    torch.manual_seed(0)
    flow = build("u1-plaquette", theory, n_layers=2, hidden=[4])

    def ess():
        with torch.no_grad():
            x, log_q = flow.sample(4096)
            log_w = -theory.action(x.double()) - log_q.double()
            return float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / 4096)

    assert ess() < 0.5
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 300)
    for _ in range(300):
        x, log_q = flow.sample(256)
        loss = (log_q + theory.action(x)).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 20.0)
        optimizer.step()
        schedule.step()
    print(ess())
    assert ess() > 0.9
