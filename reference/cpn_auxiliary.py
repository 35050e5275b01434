"""The joint (z, λ) auxiliary-U(1) CP(N−1) model by local updates, numpy, CPU: the independent check
of the marginal action of `suite.theories.cpn` (convention ``auxiliary``).

Joint action (Campostrini, Rossi & Vicari), z_x unit vectors of C^N, λ_{x,μ} ∈ U(1) on the links,
w_{x,μ} = z̄_x·z_{x+μ}:

    S(z, λ) = −Nβ Σ_{x,μ} (λ_{x,μ} z̄_{x+μ}·z_x + c.c.) = −κ Σ_{x,μ} Re(λ_{x,μ} conj(w_{x,μ})),  κ = 2Nβ,

with the uniform measure on every z_x ∈ S^{2N−1} and the Haar measure on every λ. Integrating λ out
gives the marginal e^{−S(z)}, S(z) = −Σ log I_0(κ|w|), which the suite's theory samples; this module
never uses that formula (nor torch, nor Bessel functions): it samples the joint model and measures the
theory's observables of z. One sweep is

1. λ heat bath: given z the links are independent, λ = e^{iθ} with θ von Mises with mean direction
   arg w and concentration κ|w| (numpy's ``Generator.vonmises``, exact; uniform for κ|w| = 0);
2. z Metropolis, checkerboard: given λ, the weight of z_x is exp(κ Re(F̄_x·z_x)) with
   F_x = Σ_μ [conj(λ_{x,μ}) z_{x+μ} + λ_{x−μ,μ} z_{x−μ}], which depends on neighbours only, so all sites
   of one parity are updated at once. Proposal z' = (z + ε η)/|z + ε η|, η a standard complex Gaussian
   in C^N: its density w.r.t. the uniform measure depends on Re(z̄·z') alone, so it is symmetric;
   ε_x = ``step``/√(N (1 + κ|F_x|)) depends on F_x only, which the update of x leaves alone. Accept with
   min(1, exp(κ Re(F̄_x·(z' − z))));
3. λ heat bath again;
4. z overrelaxation, checkerboard: the reflection z → 2 Re(F̂_x·z) F̂_x − z about F̂_x = F_x/|F_x| in
   R^{2N} (an isometric involution of the sphere keeping Re(F̄_x·z)), which leaves the conditional
   weight invariant and moves z far; sites with F_x = 0 are left alone.

Each step leaves the joint distribution invariant and the Metropolis step makes the chain ergodic.
Lattice extents must be even (checkerboard). ``link_energy`` (1/dV) Σ Re(λ conj(w)) is the joint model's
link energy, whose expectation is that of (1/dV) Σ |w| (I_1/I_0)(κ|w|) in the marginal model.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from suite.chain import Chain


def _forward(a: np.ndarray, mu: int) -> np.ndarray:
    """a_{x+μ} of a (C, L0, L1, ...) array."""
    return np.roll(a, -1, axis=1 + mu)


def _backward(a: np.ndarray, mu: int) -> np.ndarray:
    """a_{x−μ} of a (C, L0, L1, ...) array."""
    return np.roll(a, 1, axis=1 + mu)


def overlaps(z: np.ndarray) -> np.ndarray:
    """w_{x,μ} = z̄_x·z_{x+μ}, shape (C, 2, L0, L1), complex."""
    return np.stack([(z.conj() * _forward(z, mu)).sum(-1) for mu in range(2)], 1)


def local_field(z: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """F_x = Σ_μ [conj(λ_{x,μ}) z_{x+μ} + λ_{x−μ,μ} z_{x−μ}], shape of z."""
    return sum(lam[:, mu, ..., None].conj() * _forward(z, mu) + _backward(lam[:, mu, ..., None] * z, mu)
               for mu in range(2))


def heat_bath_links(z: np.ndarray, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """λ drawn from its conditional given z: θ von Mises(arg w, κ|w|) on every link, (C, 2, L0, L1)."""
    w = overlaps(z)
    return np.exp(1j * rng.vonmises(np.angle(w), kappa * np.abs(w)))


def metropolis_sites(z, lam, kappa, parity, step, rng) -> float:
    """One Metropolis hit on every site of ``parity`` (boolean (L0, L1) mask), in place; the acceptance rate."""
    f = local_field(z, lam)[:, parity]                       # (C, V/2, N)
    old = z[:, parity]
    eps = step / np.sqrt(z.shape[-1] * (1 + kappa * np.linalg.norm(f, axis=-1, keepdims=True)))
    eta = rng.standard_normal((*old.shape, 2)).view(np.complex128)[..., 0]
    new = old + eps * eta
    new /= np.linalg.norm(new, axis=-1, keepdims=True)
    log_ratio = kappa * (f.conj() * (new - old)).sum(-1).real
    accept = np.log(rng.random(log_ratio.shape)) < log_ratio
    z[:, parity] = np.where(accept[..., None], new, old)
    return float(accept.mean())


def overrelax_sites(z, lam, parity) -> None:
    """The reflection about F̂_x on every site of ``parity``, in place (module docstring)."""
    f = local_field(z, lam)[:, parity]
    norm = np.linalg.norm(f, axis=-1, keepdims=True)
    unit = f / np.where(norm > 0, norm, 1)
    old = z[:, parity]
    reflected = 2 * (unit.conj() * old).sum(-1, keepdims=True).real * unit - old
    z[:, parity] = np.where(norm > 0, reflected, old)


def run_cpn_auxiliary(theory, *, chains: int, n_therm: int, n_meas: int, n_sweeps: int = 1, seed: int,
                      step: float = 1.5) -> Chain:
    """``chains`` chains of the joint model at the theory's β and N from the uniform start: ``n_therm``
    × ``n_sweeps`` sweeps, then ``n_meas`` measurements of ``theory.observables`` (of z) and of
    ``link_energy`` (of z and λ), ``n_sweeps`` sweeps apart. Float64, reproducible for a seed.
    ``chain.info`` records the Metropolis acceptance over the measured sweeps."""
    lattice, n = tuple(theory.lattice), theory.n
    if any(k % 2 for k in lattice):
        raise ValueError(f"the checkerboard update needs even lattice extents, got {list(lattice)}")
    if chains < 1 or n_therm < 0 or n_meas < 1 or n_sweeps < 1:
        raise ValueError("need chains, n_meas, n_sweeps >= 1 and n_therm >= 0")
    kappa = 2 * theory.n * theory.beta
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((chains, *lattice, n, 2)).view(np.complex128)[..., 0]
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    even = (np.add.outer(np.arange(lattice[0]), np.arange(lattice[1])) % 2) == 0
    parities = (even, ~even)
    acceptance = []

    def sweep():
        lam = heat_bath_links(z, kappa, rng)
        acc = [metropolis_sites(z, lam, kappa, p, step, rng) for p in parities]
        lam = heat_bath_links(z, kappa, rng)
        for p in parities:
            overrelax_sites(z, lam, p)
        return float(np.mean(acc))

    start = time.perf_counter()
    for _ in range(n_therm * n_sweeps):
        sweep()
    therm_seconds = time.perf_counter() - start
    records = {}
    start = time.perf_counter()
    for i in range(n_meas):
        for _ in range(n_sweeps):
            acceptance.append(sweep())
        values = {name: v.numpy() for name, v in theory.observables(torch.from_numpy(z.copy())).items()}
        # λ was drawn for the z before the overrelaxation: redraw for the current z (an exact heat-bath step)
        lam = heat_bath_links(z, kappa, rng)
        values["link_energy"] = (lam * overlaps(z).conj()).real.mean((1, 2, 3))
        for name, value in values.items():
            records.setdefault(name, np.empty((chains, n_meas), dtype=value.dtype))[:, i] = value
    return Chain(
        observables=records,
        timings={"thermalisation": therm_seconds, "sampling": time.perf_counter() - start},
        info={"chains": chains, "n_therm": n_therm, "n_meas": n_meas, "n_sweeps": n_sweeps, "seed": seed,
              "step": step, "acceptance": float(np.mean(acceptance))},
    )
