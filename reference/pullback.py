"""A theory pulled back through a flow: sampling the flow's latent variable z instead of x = f(z).

With a flow x = f(z), z ~ p_0 (its prior, the field space's), log q(x) = log p_0(z) − log|det ∂f/∂z|,
the target e^{−S(x)} dx pulls back to the latent density

    π(z) ∝ e^{−S(f(z))} |det ∂f/∂z| = e^{−S̃(z)},   S̃(z) = S(f(z)) − log|det ∂f/∂z|,

with the same normalisation Z = ∫ e^{−S̃} dz = ∫ e^{−S} dx. A perfect flow makes π the prior; a
good one makes it nearly so, and a Markov chain or an annealing in z starts close to its target
(the idea of "neural transport" HMC, Hoffman et al., arXiv:1903.03704). `PulledBackTheory` offers
S̃ against the interface HMC and AIS use (action, force, field, observables), so `reference.ais`
anneals from p_0 to π in latent space unchanged: its log-weights are Σ_k (b_k − b_{k−1})
[−S̃(z) − log p_0(z)] = Σ_k (b_k − b_{k−1}) [−S(x) − log q(x)], and with one temperature they are
the flow's own importance weights.

The force is −∇_z S̃ by autograd through the flow's forward pass (no inverse needed); observables
are the theory's at x = f(z). Real field spaces only (a flat or torus latent space, whose force is
the plain gradient). Cost: every action or force evaluation of S̃ is one of S plus a flow pass.
"""

from __future__ import annotations

import torch

from suite.theories.base import Theory


class PulledBackTheory:
    """S̃(z) = S(f(z)) − log|det ∂f/∂z| of a theory and a flow (``flow.transform(z) -> (x, ladj)``,
    prior ``theory.field``'s); shapes as the theory's, batch first."""

    def __init__(self, theory, flow):
        if theory.field.is_complex:
            raise ValueError("a theory on a complex field space cannot be pulled back through a flow here")
        if not callable(getattr(flow, "transform", None)):
            raise ValueError(f"{type(flow).__name__} has no transform(z) -> (x, log|det|) to pull the theory back")
        self.theory, self.flow = theory, flow
        self.field, self.lattice = theory.field, theory.lattice

    def push(self, z: torch.Tensor) -> torch.Tensor:
        """x = f(z)."""
        return self.flow.transform(z)[0]

    def pull(self, x: torch.Tensor) -> torch.Tensor:
        """z = f^{-1}(x) (x ~ e^{−S}/Z gives z ~ π); ValueError for a flow without an inverse pass."""
        inverse = getattr(self.flow.transform, "inverse", None)
        try:
            return inverse(x)[0]
        except (TypeError, NotImplementedError):
            raise ValueError(f"{type(self.flow).__name__} has no inverse pass to pull target samples back") from None

    def action(self, z: torch.Tensor) -> torch.Tensor:
        x, ladj = self.flow.transform(z)
        return self.theory.action(x) - ladj

    def force(self, z: torch.Tensor) -> torch.Tensor:
        """∇_z S̃ (the gradient HMC kicks the momenta with, as ``Theory.force``)."""
        with torch.enable_grad():
            y = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.action(y).sum(), y)
        return grad

    kick = Theory.kick

    @torch.no_grad()
    def observables(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.theory.observables(self.push(z))
