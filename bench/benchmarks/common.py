"""Shared set-up of the asv benchmarks: theories at a fixed point, batches, seeds.

Conventions: φ⁴ at the 2021 tutorial's point (Albergo convention, m² = −4, λ = 8) and U(1) at
β = 2 on L × L lattices; SU(N) (Wilson, β = 2) on 16² in 2D and 4⁴ in 4D (256 sites each), Haar links; HMC in float64, flows in float32, batch BATCH; every random draw seeded.
The cost does not depend on the couplings. Threads: torch's default (``OMP_NUM_THREADS``; ``make
bench`` sets 1).
"""

import torch

from suite.theories import phi4, sun, u1  # modules, not classes: asv inspects every class in a benchmark module

BATCH = 16
SEED = 1234
FLOWS = ("affine", "spline", "hybrid", "cnf-equivariant", "u1-equivariant", "u1-cnf")  # continuous flows: defaults


def theory(name: str, L: int):
    """``phi4`` or ``u1`` on an L × L lattice."""
    return phi4.Phi4.from_albergo((L, L), m2=-4.0, lam=8.0) if name == "phi4" else u1.U1((L, L), beta=2.0)


SUN_LATTICES = {2: (16, 16), 4: (4, 4, 4, 4)}


def sun_theory(n: int, d: int):
    """SU(N) with the Wilson action at β = 2 on the d-dimensional lattice of ``SUN_LATTICES``."""
    return sun.SUNGauge(SUN_LATTICES[d], n, beta=2.0)


def flow_theory(flow: str, L: int):
    """The theory a reference flow is built for: U(1) for the ``u1-`` flows, φ⁴ otherwise."""
    return theory("u1" if flow.startswith("u1-") else "phi4", L)


def configurations(theory, batch: int = BATCH, dtype=torch.float64):
    """A seeded batch: 0.3·N(0, 1) for φ⁴ (near equilibrium), uniform angles for U(1), Haar links for SU(N)."""
    generator = torch.Generator().manual_seed(SEED)
    x = theory.field.prior_sample(batch, generator=generator, dtype=dtype)
    return 0.3 * x if isinstance(theory, phi4.Phi4) else x


def flow(name: str, L: int):
    """A freshly initialised (seeded) reference flow and its theory."""
    from reference.flows import build

    torch.manual_seed(SEED)
    target = flow_theory(name, L)
    return build(name, target), target
