"""Monotone rational-quadratic spline with identity tails (Durkan et al. 2019, arXiv:1906.04032).

The spline maps [−B, B] onto itself through K bins with knots (x_k, y_k), k = 0..K, and positive
knot derivatives d_k; outside [−B, B] it is the identity. d_0 = d_K = 1, so the map and its
derivative are continuous at ±B. Parameters are unconstrained logits with one trailing bin axis:
widths and heights (..., K), interior derivatives (..., K−1); zero logits give the identity.

Numerical safeguards (each was a bug report against another library):

* knots end exactly at ±B (nflows overwrites the first and last cumulative knot, since the
  softmax cumsum does not end at exactly 1); every bin is at least ``min_width``·2B wide, so the
  knots are strictly increasing;
* the bin index is ``searchsorted(..., right=True) − 1`` clamped to [0, K−1], so inputs exactly
  at ±B (and round-off just past an inner knot) land in a valid bin (nflows instead adds an eps
  to the last knot);
* inputs are clamped into [−B, B] before the spline is evaluated and the tails are selected with
  ``where``: the unused branch stays finite and its zero gradient never turns into NaN
  (flowjax #240, bayesflow #759);
* the inverse solves a ξ² + b ξ + c = 0 for the root in [0, 1], ξ = 2c / (−b − √(b²−4ac)) (Durkan
  et al., eq. 29, as in nflows). That form cancels when b < 0 (wide flat bins with steep ends:
  hundreds of ulps lost), so there the same root is taken as (√(b²−4ac) − b) / 2a, the usual
  sign-aware quadratic formula; neither denominator can vanish on the branch that uses it. The
  discriminant is clamped at 0, as float32 round-off can make it slightly negative (nflows #71,
  #87; pyro #3139), and ξ is clamped to [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _softmax_last(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last axis. Written out because torch's CPU kernel is slow for a last axis
    of a few bins (5x slower at K = 8, 256x512 sites; see bench/README.md)."""
    e = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def _knots(logits: torch.Tensor, bound: float, minimum: float) -> torch.Tensor:
    """Knot positions (..., K+1) from bin logits (..., K): bins ≥ minimum·2B, ends exactly at ±B."""
    sizes = minimum + (1 - minimum * logits.shape[-1]) * _softmax_last(logits)
    edge = torch.ones_like(sizes[..., :1])
    return bound * torch.cat([-edge, 2 * torch.cumsum(sizes[..., :-1], dim=-1) - 1, edge], dim=-1)


def rational_quadratic_spline(x, widths, heights, derivatives, *, bound: float, inverse: bool = False,
                              min_width: float = 1e-3, min_height: float = 1e-3, min_derivative: float = 1e-3,
                              boundary_derivatives: torch.Tensor | None = None):
    """The spline (or its inverse) applied elementwise to x (...), logits of shape (..., K) and (..., K−1).

    ``boundary_derivatives`` (logits parameterised like the interior ones: zero logits give 1) of
    shape (...) sets a common derivative d_0 = d_K at both ends, as circular splines need (Rezende
    et al. 2020, arXiv:2002.02428); of shape (..., 2) it sets (d_0, d_K), for maps of an interval
    whose end slopes are free (the polar maps of `reference.flows.sphere`). The default None keeps
    d_0 = d_K = 1, the identity tails' slope.

    Returns ``(out, ladj)``, both of x's shape; ladj is log|d out / d in| of the direction applied.
    """
    n_bins = widths.shape[-1]
    xk, yk = _knots(widths, bound, min_width), _knots(heights, bound, min_height)
    unit = math.log(math.expm1(1 - min_derivative))  # softplus(unit) + min_derivative == 1
    d = min_derivative + F.softplus(derivatives + unit)
    if boundary_derivatives is None:
        d = F.pad(d, (1, 1), value=1.0)
    else:
        edge = min_derivative + F.softplus(boundary_derivatives + unit)
        if edge.dim() < widths.dim():
            edge = edge.unsqueeze(-1).expand(*edge.shape, 2)
        d = torch.cat([edge[..., :1], d, edge[..., 1:]], dim=-1)

    inside = (x >= -bound) & (x <= bound)
    v = x.clamp(-bound, bound)
    knots = yk if inverse else xk
    k = torch.searchsorted(knots.contiguous(), v.unsqueeze(-1).contiguous(), right=True)
    k = (k - 1).clamp(0, n_bins - 1)
    x0, x1, y0, y1, d0, d1 = (t.gather(-1, j).squeeze(-1) for t in (xk, yk, d) for j in (k, k + 1))
    w, h = x1 - x0, y1 - y0
    s = h / w
    if inverse:
        r, bend = v - y0, d0 + d1 - 2 * s
        a = h * (s - d0) + r * bend
        b = h * d0 - r * bend
        c = -s * r
        root, positive = (b * b - 4 * a * c).clamp(min=0).sqrt(), b >= 0
        xi = (torch.where(positive, 2 * c, root - b) / torch.where(positive, -b - root, 2 * a)).clamp(0, 1)
    else:
        xi = ((v - x0) / w).clamp(0, 1)
    t = xi * (1 - xi)
    den = s + (d0 + d1 - 2 * s) * t
    ladj = torch.log(s * s * (d1 * xi * xi + 2 * s * t + d0 * (1 - xi) ** 2)) - 2 * torch.log(den)
    out = x0 + xi * w if inverse else y0 + h * (s * xi * xi + d0 * t) / den
    return torch.where(inside, out, x), torch.where(inside, -ladj if inverse else ladj, torch.zeros_like(ladj))


class SplineParameters:
    """Base of the spline maps: ``n_bins`` K ≥ 1 and ``n_params`` = 3K + 1 parameters per site (K width
    and K height logits, interior and end derivative logits, and one more whose meaning the map states)."""

    def __init__(self, n_bins: int = 8):
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = int(n_bins)
        self.n_params = 3 * self.n_bins + 1
