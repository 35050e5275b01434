"""Plaquette-transport flow for 2D U(1): plaquette couplings whose compensating change goes to one sink.

Layout and conventions as `reference.flows.u1` (links θ_μ(x), (B, 2, L0, L1), in (−π, π]; plaquette
θ_P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x)). On the torus the link angles are, up to a linear
change of variables with constant Jacobian, V − 1 gauge angles, two holonomies and the plaquettes, of
which V − 1 are free: Σ_x θ_P(x) ≡ 0 (mod 2π), so one plaquette, the **sink** s = (0, 0), is fixed by the
others. The Wilson action depends on the plaquettes alone, so the target is V − 1 independent weights
e^{β cos θ_P} times one more, e^{β cos θ_P(s)}, of their sum.

The coupling of Kanwar et al. (`reference.flows.u1`) moves one link per active plaquette, so the
neighbouring *passive* plaquette absorbs the change; a plaquette already brought to its target
distribution by one layer is displaced again whenever a later layer makes it passive, and the layers
have to undo each other's damage to an accuracy that grows with β. Here a change δ of an active
plaquette is instead carried along a fixed path of links on the dual lattice (`transport_links`) to
the sink, so every plaquette but the sink changes only when it is active:

* ``PlaquetteCoupling``: the active plaquettes (a checkerboard of plaquettes, never the sink) are
  mapped by a circle map θ_P → f(θ_P) whose parameters a ConvNet computes from cos and sin of the frozen
  plaquettes (the inactive ones except the sink, which changes; zero elsewhere). Links change by
  `transport_links` (δ = f(θ_P) − θ_P wrapped); in the coordinates above the map is triangular, so
  ladj = Σ_active log f′(θ_P).
* ``SinkCoupling`` k (k = 1 … K, applied from K down to 1): the plaquette a_k of flat index k (row-major,
  the sink is index 0), conditioned by an MLP on cos, sin of u_k = θ_P(s) + Σ_{j≤k} θ_P(a_j), which the
  layer leaves unchanged (a_k gains δ, the sink loses it); −u_k is the sum R_k of the free plaquettes
  other than a_1 … a_k. With the uniform-to-e^{β cos θ} maps of the plaquette couplings, the target
  is the weight e^{β cos θ_P(s)} of the total, which these layers take in autoregressively: layer k
  maps θ_P(a_k) to its conditional given R_k, ∝ e^{β cos θ} m_{k−1}(R_k + θ), with m_0 = e^{β cos} and
  m_k the convolution of m_{k−1} with the density of one more plaquette. The m_k flatten as r^k, with
  r = I₁(β)/I₀(β) (0.70 at β = 2, 0.91 at β = 6), so K layers leave a relative weight variation of about
  r^{K+1} and the family holds the exact flow of the Wilson action when K = V − 1.

The links' change depends on the plaquettes only, so the flow is gauge equivariant and log q is gauge
invariant; the sink and the paths break translation invariance (the samples are exact after
reweighting or Metropolis all the same). Prior: Haar (uniform angles), as `reference.flows.u1`.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.flows.couplings import ConvNet
from reference.flows.models import Flow
from reference.flows.transforms import Bijection, Sequential
from reference.flows.u1 import TRANSFORMS, CircularSpline, NCPMixture, haar_prior, plaquette_angle
from suite.fields import wrap_angle
from suite.lattice import checkerboard

SINK = (0, 0)  # flat index 0


def transport_links(delta: torch.Tensor) -> torch.Tensor:
    """Link changes (B, 2, L0, L1) that change θ_P(x) by δ(x) at every x ≠ (0, 0) and θ_P(0, 0) by
    −Σ_{x≠0} δ(x), every other plaquette change cancelling: δ (B, L0, L1), its value at the sink ignored.

    Paths: θ_0(x) (in θ_P(x) with +, θ_P(x−1̂) with −) at x_1 ≥ 1 carries Σ_{r≥x_1} δ(x_0, r), so each
    column's total T(x_0) reaches row 0; θ_1(x_0, 0) (in θ_P(x) with −, θ_P(x−0̂) with +) carries
    Σ_{c<x_0} T(c), so row 0's totals reach the sink."""
    delta = delta.clone()
    delta[:, SINK[0], SINK[1]] = 0
    delta[:, SINK[0], SINK[1]] = -delta.sum((1, 2))
    tail = delta.flip(2).cumsum(2).flip(2)  # Σ_{r ≥ x_1} δ(x_0, r)
    along_0 = torch.cat([torch.zeros_like(tail[:, :, :1]), tail[:, :, 1:]], 2)
    column_total = tail[:, :, 0]
    along_1 = torch.zeros_like(delta)
    along_1[:, :, 0] = column_total.cumsum(1) - column_total
    return torch.stack([along_0, along_1], 1)


def _circle_map(transform: str, n_mixture: int, n_bins: int):
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {', '.join(TRANSFORMS)}")
    return NCPMixture(n_mixture) if transform == "ncp" else CircularSpline(n_bins)


class _TransportCoupling(Bijection):
    """Shared step: map the active plaquettes (flat indices ``sites``) with parameters ``params(plaq)``
    of shape (B, n_active, n_params), move the links by `transport_links`."""

    def __init__(self, lattice, sites: torch.Tensor, circle_map):
        super().__init__()
        self.lattice, self.map = tuple(lattice), circle_map
        self.register_buffer("sites", sites, persistent=False)

    def params(self, plaq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _couple(self, x, inverse):
        plaq = wrap_angle(plaquette_angle(x))
        old = plaq.flatten(1)[:, self.sites]
        new, ladj = self.map(old, self.params(plaq), inverse)
        delta = torch.zeros_like(plaq).flatten(1).index_copy(1, self.sites, wrap_angle(new - old))
        return wrap_angle(x + transport_links(delta.view_as(plaq))), ladj.sum(-1)

    def forward(self, x):
        return self._couple(x, False)

    def inverse(self, y):
        return self._couple(y, True)


class PlaquetteCoupling(_TransportCoupling):
    """Active plaquettes: sites of ``parity`` except the sink; conditioner: a ConvNet on cos, sin of the
    frozen plaquettes (the other parity, sink excluded), (B, 2, L0, L1) -> (B, n_params, L0, L1)."""

    def __init__(self, lattice, parity: int, circle_map, net: nn.Module):
        active = checkerboard(tuple(lattice), parity)
        active[SINK] = False
        frozen = ~checkerboard(tuple(lattice), parity)
        frozen[SINK] = False
        super().__init__(lattice, active.flatten().nonzero().squeeze(1), circle_map)
        self.net = net
        self.register_buffer("frozen", frozen.float(), persistent=False)

    def params(self, plaq):
        frozen = self.frozen.to(plaq.dtype)
        features = torch.stack([torch.cos(plaq) * frozen, torch.sin(plaq) * frozen], 1)
        return self.net(features).flatten(2)[..., self.sites].movedim(1, -1)


class SinkCoupling(_TransportCoupling):
    """The plaquette of flat index k ≥ 1, conditioned by an MLP on cos u, sin u, u = Σ of the plaquettes
    of flat index 0 (the sink) … k; the MLP's last layer starts at zero (the identity map)."""

    def __init__(self, lattice, k: int, circle_map, hidden):
        super().__init__(lattice, torch.tensor([k]), circle_map)
        self.k = int(k)
        sizes = [2, *hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU()]
        last = nn.Linear(sizes[-1], circle_map.n_params)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def params(self, plaq):
        u = plaq.flatten(1)[:, :self.k + 1].sum(1)
        return self.net(torch.stack([torch.cos(u), torch.sin(u)], -1)).unsqueeze(1)


def build_u1_plaquette(theory, n_layers=2, transform="spline", n_mixture=6, n_bins=16, hidden=(8, 8),
                       kernel_size=3, n_sink=32, sink_hidden=(32, 32)) -> Flow:
    """Plaquette-transport flow (module docstring) for 2D U(1) on ``theory.lattice`` (L0, L1):
    ``n_layers`` plaquette couplings of alternating checkerboard parity, then the sink couplings
    K = min(``n_sink``, V − 1), …, 1. Every conditioner's last layer starts at zero (the identity map). Returns a float32
    `Flow` on links (B, 2, L0, L1) in (−π, π]."""
    lattice = tuple(int(n) for n in theory.lattice)
    if len(lattice) != 2 or lattice[0] * lattice[1] < 2:
        raise ValueError(f"the U(1) plaquette flow needs a 2D lattice of two sites or more, got {list(lattice)}")
    layers = []
    for i in range(n_layers):
        circle_map = _circle_map(transform, n_mixture, n_bins)
        net = ConvNet(2, hidden, circle_map.n_params, kernel_size, dim=2, final_tanh=False)
        net.zero_output()
        layers.append(PlaquetteCoupling(lattice, i % 2, circle_map, net))
    for k in range(min(n_sink, lattice[0] * lattice[1] - 1), 0, -1):
        layers.append(SinkCoupling(lattice, k, _circle_map(transform, n_mixture, n_bins), sink_hidden))
    return Flow(haar_prior(theory), Sequential(*layers)).to(torch.float32)
