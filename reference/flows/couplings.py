"""Coupling layers: update the active sites by an elementwise monotone map whose parameters a
convolutional net computes from the frozen sites (active sites zeroed), so the Jacobian is
triangular and ladj is the sum of the per-site log-derivatives over the active sites.

Z₂ (φ → −φ). Each elementwise map f_p has a linear involution R on its parameters with
f_{Rp}(x) = −f_p(−x). With ``z2=True`` the parameters are symmetrised, p(c) = [n(c) + R n(−c)] / 2
for conditioner output n and frozen field c; then p(−c) = R p(c), hence
y(−x) = f_{p(−c)}(−x_A) = −f_{p(c)}(x_A) = −y(x), with the same ladj (f' is even under the
reflection). For the affine map R(s, t) = (s, −t): s even and t odd in c. For the spline R reverses
the bins (widths, heights and interior derivatives): the point reflection of a rational-quadratic
spline through the origin is the spline with mirrored knots, which holds bin by bin because the
segment formula is symmetric under ξ → 1 − ξ, y → y_{k+1} − y, d_k ↔ d_{k+1}. The construction
works for any conditioner, keeps the flow smooth in c, and contains the odd splines (p = Rp) as
a special case.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.flows.splines import rational_quadratic_spline
from reference.flows.transforms import Bijection

CONVOLUTIONS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}  # torch's; periodic with padding_mode="circular"


class PeriodicConv4d(nn.Conv3d):
    """A 4D convolution with periodic boundaries and kernel k⁴ (k odd), which torch lacks, as one Conv3d.

    (B, C, L0, L1, L2, L3) -> (B, C_out, L0, L1, L2, L3): the k copies of the input shifted along axis 0,
    x(· + (j − k//2)·0̂) for j = 0 … k−1, become k·C input channels (channel c·k + j) of a Conv3d with
    circular padding over axes 1-3, applied to every slice x_0 alike. So
    out(x) = bias + Σ_{j, c} Σ_{s ∈ {0…k−1}³} w[·, c·k + j, s] in_c(x + (j, s) − k//2): the cross-correlation
    of `torch.nn.Conv3d`'s convention in four dimensions, with the parameter count and fan-in of a Conv4d.
    Same constructor as the torch convolutions here (``padding`` must be k//2, ``padding_mode`` circular).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int | None = None,
                 padding_mode: str = "circular"):
        if kernel_size % 2 == 0 or padding not in (None, kernel_size // 2) or padding_mode != "circular":
            raise ValueError("PeriodicConv4d needs an odd kernel_size, padding kernel_size // 2 and circular padding")
        super().__init__(in_channels * kernel_size, out_channels, kernel_size, padding=kernel_size // 2,
                         padding_mode="circular")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        b, c, l0, *rest = x.shape
        shifted = torch.stack([torch.roll(x, k // 2 - j, 2) for j in range(k)], 2)  # (B, C, k, L0, L1, L2, L3)
        out = super().forward(shifted.permute(0, 3, 1, 2, 4, 5, 6).reshape(b * l0, c * k, *rest))
        return out.view(b, l0, -1, *rest).transpose(1, 2)


CONVNET_LAYERS = {**CONVOLUTIONS, 4: PeriodicConv4d}


class ConvNet(nn.Sequential):
    """Convolutions with circular padding (periodic lattice), LeakyReLU between, optional final Tanh.

    (B, in_channels, *lattice) -> (B, out_channels, *lattice) for lattice dimension ``dim``
    (1 … 4; 4 through `PeriodicConv4d`); as ``make_conv_net`` of the 2021 tutorial (arXiv:2101.08176).
    """

    def __init__(self, in_channels: int, hidden, out_channels: int, kernel_size: int = 3, *,
                 dim: int = 2, final_tanh: bool = True):
        if dim not in CONVNET_LAYERS:
            raise ValueError(f"convolutional conditioners support lattice dimensions 1-4, got {dim}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the output keeps the lattice shape), got {kernel_size}")
        sizes = [in_channels, *hidden, out_channels]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(CONVNET_LAYERS[dim](a, b, kernel_size, padding=kernel_size // 2, padding_mode="circular"))
            if i < len(sizes) - 2:
                layers.append(nn.LeakyReLU())
            elif final_tanh:
                layers.append(nn.Tanh())
        super().__init__(*layers)

    def zero_output(self) -> None:
        """Zero the last convolution's weights and bias: the net then outputs 0 for every input, which
        the coupling maps here (affine, spline, NCP mixture, circular spline) take to the identity."""
        last = [m for m in self if isinstance(m, tuple(CONVOLUTIONS.values()))][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)


class AffineMap:
    """x ↦ x·exp(s) + t; parameters (..., 2) = (s, t); reflection R(s, t) = (s, −t)."""

    n_params = 2

    def __call__(self, x, p, inverse=False):
        s, t = p.unbind(-1)
        return ((x - t) * torch.exp(-s), -s) if inverse else (x * torch.exp(s) + t, s)

    def reflect(self, p):
        return p * p.new_tensor([1.0, -1.0])


class SplineMap:
    """Rational-quadratic spline on [−bound, bound], identity tails (see `splines`).

    Parameters (..., 3K−1) = (width logits K, height logits K, interior derivative logits K−1);
    reflection R reverses each group.
    """

    def __init__(self, n_bins: int = 8, bound: float = 5.0, min_bin: float = 1e-3, min_derivative: float = 1e-3):
        if n_bins < 1 or min_bin * n_bins >= 1:
            raise ValueError(f"need n_bins >= 1 and min_bin * n_bins < 1, got n_bins={n_bins}, min_bin={min_bin}")
        self.n_bins, self.bound, self.min_bin, self.min_derivative = int(n_bins), float(bound), min_bin, min_derivative
        self.n_params = 3 * self.n_bins - 1

    def _split(self, p):
        return p.split((self.n_bins, self.n_bins, self.n_bins - 1), dim=-1)

    def __call__(self, x, p, inverse=False):
        return rational_quadratic_spline(x, *self._split(p), bound=self.bound, inverse=inverse,
                                         min_width=self.min_bin, min_height=self.min_bin,
                                         min_derivative=self.min_derivative)

    def reflect(self, p):
        return torch.cat([q.flip(-1) for q in self._split(p)], dim=-1)


class Coupling(Bijection):
    """y_A = f(x_A; p(x_F)), y_F = x_F for the active mask A (shape ``lattice``) and frozen F = ~A.

    ``net`` maps (B, 1, *lattice) to (B, map.n_params, *lattice); ``z2`` symmetrises p (module doc).
    """

    def __init__(self, elementwise, mask: torch.Tensor, net: nn.Module, z2: bool = False):
        super().__init__()
        self.map, self.net, self.z2 = elementwise, net, bool(z2)
        self.register_buffer("active", mask.bool(), persistent=False)
        # flat indices of the active sites: integer indexing, unlike boolean, never syncs a GPU
        self.register_buffer("sites", mask.flatten().nonzero().squeeze(1), persistent=False)

    def _params(self, x):
        """Per-active-site parameters (B, |A|, n_params) from the frozen sites of x."""
        c = x.masked_fill(self.active, 0).unsqueeze(1)
        if self.z2:
            c = torch.cat([c, -c])
        p = self.net(c).flatten(2)[..., self.sites].movedim(1, -1)
        if self.z2:
            n, m = p.chunk(2)
            p = (n + self.map.reflect(m)) / 2
        return p

    def _couple(self, x, inverse):
        flat = x.flatten(1)
        y, ladj = self.map(flat[:, self.sites], self._params(x), inverse)
        return flat.index_copy(1, self.sites, y).view_as(x), ladj.sum(-1)

    def forward(self, x):
        return self._couple(x, False)

    def inverse(self, y):
        return self._couple(y, True)


class AffineCoupling(Coupling):
    """RealNVP coupling y_A = x_A·exp(s) + t (Albergo et al. 2019; tutorial arXiv:2101.08176).

    s and t are the two output channels of a ConvNet ending in Tanh; ladj = Σ_A s.
    """

    def __init__(self, mask, hidden=(8, 8), kernel_size=3, z2=False):
        net = ConvNet(1, hidden, AffineMap.n_params, kernel_size, dim=mask.dim(), final_tanh=True)
        super().__init__(AffineMap(), mask, net, z2)


class SplineCoupling(Coupling):
    """Rational-quadratic spline coupling (Durkan et al. 2019) on [−bound, bound], identity tails."""

    def __init__(self, mask, n_bins=8, bound=5.0, hidden=(8, 8), kernel_size=3, z2=False):
        spline = SplineMap(n_bins, bound)
        net = ConvNet(1, hidden, spline.n_params, kernel_size, dim=mask.dim(), final_tanh=False)
        super().__init__(spline, mask, net, z2)
