"""Prior (latent) distributions of flows: the simple prior of the theory's field space.

A flow does not re-implement its prior: `FieldPrior` adapts a `suite.fields.FieldSpace`
(``prior_sample``, ``prior_log_prob``) to what `Flow` calls, ``sample(n, generator=, dtype=, device=)``
and ``log_prob(z) -> (B,)``. A `EuclideanSpace` gives N(0, 1) on every component, a `TorusSpace`
uniform (Haar) angles in (−π, π]. The prior holds no parameters, so a flow's ``state_dict`` is
its transform's alone.
"""

from __future__ import annotations

import torch

from suite.fields import FieldSpace


class FieldPrior:
    """The prior of ``field`` (a `FieldSpace`) on configurations of shape ``field.shape``."""

    def __init__(self, field: FieldSpace):
        self.field = field

    @property
    def shape(self) -> tuple[int, ...]:
        return self.field.shape

    def sample(self, n: int, generator=None, dtype=torch.float32, device=None) -> torch.Tensor:
        """A batch of shape (n, *shape); randomness from ``generator`` or torch's global RNG."""
        return self.field.prior_sample(n, generator=generator, dtype=dtype, device=device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) summed over a configuration, shape (B,)."""
        return self.field.prior_log_prob(x)

    def __repr__(self) -> str:
        return f"FieldPrior({type(self.field).__name__}{self.shape})"


def field_prior(theory, space: type[FieldSpace], shape) -> FieldPrior:
    """The prior of ``theory.field``, which must be a ``space`` of per-configuration shape ``shape``
    (ValueError otherwise); a theory-like object without a ``field`` (only a ``lattice``) gets
    ``space(shape)``."""
    shape = tuple(int(n) for n in shape)
    field = getattr(theory, "field", None)
    if field is None:
        field = space(shape)
    if not isinstance(field, space) or tuple(field.shape) != shape:
        raise ValueError(f"the flow needs a {space.__name__} of shape {list(shape)}, the theory's field is "
                         f"a {type(field).__name__} of shape {list(getattr(field, 'shape', ()))}")
    return FieldPrior(field)
