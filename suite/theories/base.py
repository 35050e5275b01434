"""The Theory interface shared by every target: action, force, observables.

Layouts (batch first): scalar ``(B, *lattice)``; U(1) angles ``(B, d, *lattice)``;
SU(N) ``(B, d, *lattice, N, N)``; O(N)/CP(N-1) ``(B, *lattice, N)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch

from suite.fields import FieldSpace


@dataclass(frozen=True)
class DerivedQuantity:
    """An ensemble-level quantity f(<o_1>, ..., <o_k>) of per-configuration observables."""

    function: Callable[..., float]
    inputs: tuple[str, ...]
    description: str


class Theory(ABC):
    """A lattice field theory with Boltzmann weight exp(−S(x))."""

    field: FieldSpace
    lattice: tuple[int, ...]
    params: dict

    @property
    def volume(self) -> int:
        """Number of lattice sites V."""
        return math.prod(self.lattice)

    @abstractmethod
    def action(self, x: torch.Tensor) -> torch.Tensor:
        """S(x), shape (B,)."""

    def force(self, x: torch.Tensor) -> torch.Tensor:
        """dS/dx in the field's tangent space, shape of x. Subclasses give it analytically."""
        return self.autograd_force(x)

    def kick(self, x: torch.Tensor, p: torch.Tensor, eps: float) -> torch.Tensor:
        """The integrators' momentum update p ← p − eps·F(x), in place on p; returns p. Theories may
        fuse it so that no force tensor is made (the integrators call it on every step whose force
        they do not keep)."""
        return p.sub_(self.force(x), alpha=eps)

    def autograd_force(self, x: torch.Tensor) -> torch.Tensor:
        """dS/dx by automatic differentiation (the reference the analytic force is tested against)."""
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.action(y).sum(), y)
        return self.field.project(x, grad)

    def refresh(self, x: torch.Tensor, generator: torch.Generator | None = None) -> bool:
        """Redraw auxiliary fields the action depends on (pseudofermions) for the chains at x, from
        their heat-bath distribution; HMC calls it at the start of every trajectory. Returns whether
        it did (the action and force of x have then changed). None by default: False."""
        return False

    @property
    def chainwise(self) -> bool:
        """Whether S and F of each chain depend on that chain's field alone, so that HMC may integrate
        blocks of a batch's chains in turn (`reference.hmc.chains_per_block`): true unless the theory
        holds auxiliary fields for the whole batch (it overrides `refresh`; a CG solve then also
        iterates until every chain has converged)."""
        return type(self).refresh is Theory.refresh

    def solver_work(self) -> dict[str, int]:
        """Cumulative counts of the theory's own solver work (e.g. ``{"cg_iterations": n}``), which
        HMC records per trajectory; none by default."""
        return {}

    def sectors(self):
        """The sectors (modes) of configuration space with their exact probabilities, a
        `suite.modes.Sectors`, for the mode-coverage metric; None (the default) where none are known."""
        return None

    @abstractmethod
    def observables(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-configuration observables, each of shape (B,)."""

    def cheap_observables(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The observables without the costly ones (e.g. those after gradient flow), which HMC's
        ``costly_every`` measures only at every k-th measurement; by default all of them."""
        return self.observables(x)

    def derived_quantities(self) -> dict[str, DerivedQuantity]:
        """Ensemble-level quantities computed from means of observables (with propagated errors)."""
        return {}


def wilson_name(r: int, t: int) -> str:
    """The observable name of the R×T Wilson loop (W is symmetric: the smaller extent first)."""
    r, t = min(r, t), max(r, t)
    return f"wilson_{r}_{t}"


def creutz_ratio(w_rt: float, w_r1t1: float, w_rt1: float, w_r1t: float) -> float:
    """−log[W(R,T) W(R−1,T−1) / (W(R,T−1) W(R−1,T))]; NaN where the argument is not positive."""
    num, den = w_rt * w_r1t1, w_rt1 * w_r1t
    if not (den != 0 and num / den > 0):
        return float("nan")
    return -math.log(num / den)


def creutz_ratios(loop_extent: int) -> dict[str, DerivedQuantity]:
    """The derived ``creutz_R_T`` for 2 ≤ R ≤ T ≤ ``loop_extent``, from the ``wilson_R_T`` observables."""
    derived = {}
    for r in range(2, loop_extent + 1):
        for t in range(r, loop_extent + 1):
            derived[f"creutz_{r}_{t}"] = DerivedQuantity(
                function=creutz_ratio,
                inputs=(wilson_name(r, t), wilson_name(r - 1, t - 1), wilson_name(r, t - 1), wilson_name(r - 1, t)),
                description=f"Creutz ratio chi({r},{t}) = -log[W(R,T) W(R-1,T-1) / (W(R,T-1) W(R-1,T))]",
            )
    return derived


def check_coupling(value, name: str = "beta") -> float:
    """A coupling as a float: finite and >= 0, or a ValueError naming it."""
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def integer_parameter(value, name: str, minimum: int) -> int:
    """An integer parameter (catalogue numbers may come as 3.0), >= ``minimum``, or a ValueError naming it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value

