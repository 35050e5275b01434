"""Exact finite-volume expectation values of 2D compact U(1) (Wilson action) on a periodic torus.

Character expansion (Bonati & Rossi, "Topological susceptibility of two-dimensional U(N) gauge
theories", PRD 99, 054503 (2019), arXiv:1901.09830, there for U(N); the U(1) case is the formula
below). The same ⟨Q²⟩ formula is implemented in public quenched-Schwinger-model codes that cite
Bonati & Rossi and Kiskis, Narayanan & Sigdel, PRD 89, 085031 (2014); such finite-volume exact
values were used to validate HMC by Albandea et al., EPJC 81, 873 (2021), arXiv:2106.14234.
This module re-derives the formulas (below) and tests them against brute-force integrals.

Derivation. On an L0×L1 torus with V = L0·L1 plaquettes, the plaquette angles θ_P are linear in
the link angles and Σ_P θ_P = 0 exactly (every link enters two plaquettes with opposite signs).
The map from links to (plaquette phases, two Polyakov loops, gauge) is a group homomorphism, so
Haar measure on the links becomes the uniform measure on φ_P = wrap(θ_P) ∈ (−π, π] restricted to
Σ_P φ_P ∈ 2πZ; the Polyakov loops and the gauge orbits decouple (each integrates to 1). With the
periodic delta function
2π δ(Σ φ_P mod 2π) = Σ_{n∈Z} e^{i n Σ_P φ_P} and a θ-term for the geometric charge
Q = Σ_P φ_P / 2π (an integer because of the constraint),

    Z(θ) = ∫ Π_P dφ_P/2π e^{β Σ_P cos φ_P + i θ Q} Σ_n e^{i n Σ_P φ_P} = Σ_{n∈Z} w_n(θ)^V,
    w_n(θ) = (1/2π) ∫_{−π}^{π} dφ e^{β cos φ + i (n + θ/2π) φ},   w_n(0) = I_n(β)
    (modified Bessel function, integral representation Abramowitz & Stegun 9.6.19).

So Z = Σ_n I_n(β)^V (exactly, with dθ/2π per link), and in the sector n every plaquette carries the (complex) weight
e^{β cos φ + i n φ}/I_n(β). Writing q = φ/2π and, per sector,

    s_n = (1/2π) ∫ dφ q sin(nφ) e^{β cos φ} / I_n(β)      (so ⟨q⟩_n = i s_n),
    c_n = (1/2π) ∫ dφ q² cos(nφ) e^{β cos φ} / I_n(β)     (so ⟨q²⟩_n = c_n),

⟨Q²⟩ = −∂²_θ log Z(θ)|₀ = Σ_n I_n^V [V c_n − V(V−1) s_n²] / Σ_n I_n^V  (the V(V−1) cross terms
carry ⟨q⟩_n² = −s_n²), and χ_t = ⟨Q²⟩/V. Likewise

    ⟨cos θ_P⟩ = (1/V) ∂_β log Z = Σ_n I_n^{V−1} [I_{n−1} + I_{n+1}]/2 / Σ_n I_n^V,
    ⟨W(A)⟩    = Σ_n I_n^{V−A} I_{n+1}^A / Σ_n I_n^V   for a Wilson loop enclosing A < V plaquettes
               (its phase is the sum of the enclosed plaquette phases; the loop shifts n → n+1 inside).

Limits (V → ∞, only n = 0 survives): ⟨cos θ_P⟩ → I_1(β)/I_0(β); ⟨W(A)⟩ → (I_1/I_0)^A, so every
Creutz ratio → −log(I_1/I_0); χ_t → c_0 = (1/4π²) ∫ φ² e^{β cos φ} dφ / ∫ e^{β cos φ} dφ (the
plaquettes are independent and Q is a sum of independent q_P), which → 1/(4π²β) as β → ∞.

Numerics: everything is scaled by e^{−β} (``scipy.special.ive``) and by I_0^V, i.e. the sums run
over ratios r_n = I_n/I_0 ≤ 1 with powers taken as exp(k log r_n), so there is no overflow for any
β, V. The sum over n is symmetric (I_{−n} = I_n, c_{−n} = c_n, s_{−n} = −s_n) and truncated where
r_n^{V−2} < e^{−80}. The single-plaquette integrals s_n, c_n (smooth, entire integrands) use
Gauss–Legendre quadrature on [0, π] with enough nodes for the highest frequency n (absolute error
~1e-15 in units of e^β, against scipy.integrate.quad). tests/test_u1.py compares the results with
a direct integral over plaquette angles (2×2, to 1e-12), over gauge-fixed link angles with the
U1 theory's own code (2×2), a real-space convolution of plaquette-angle densities (3×4, 4×4, to
1e-9) and HMC.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import ive, logsumexp

LOG_CUTOFF = -80.0          # terms below e^{−80} of the leading one are dropped
MAX_SECTORS = 20000
CREUTZ_MIN_WILSON = 0.02    # catalogue references only for Creutz ratios of loops above this value


def _check(beta: float, volume: int):
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be finite and > 0, got {beta}")
    if int(volume) != volume or volume < 4:
        raise ValueError(f"volume (number of plaquettes) must be an integer >= 4, got {volume}")


@lru_cache(maxsize=256)
def _sectors(beta: float, volume: int) -> int:
    """n_max such that r_n^{V−2} < e^{LOG_CUTOFF} for n > n_max."""
    n = 8
    while n <= MAX_SECTORS:
        r = ive(n, beta) / ive(0, beta)
        if r == 0 or (volume - 2) * math.log(r) < LOG_CUTOFF:
            return n
        n *= 2
    raise ValueError(f"character expansion does not converge within {MAX_SECTORS} sectors (beta = {beta})")


@lru_cache(maxsize=256)
def _log_ratios(beta: float, n_max: int) -> np.ndarray:
    """log(I_n(β)/I_0(β)) for n = 0..n_max+1 (−inf where I_n underflows)."""
    n = np.arange(n_max + 2)
    with np.errstate(divide="ignore"):
        return np.log(ive(n, beta)) - np.log(ive(0, beta))


def _gauss_legendre_0_pi(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    return 0.5 * math.pi * (x + 1), 0.5 * math.pi * w


@lru_cache(maxsize=256)
def single_plaquette_moments(beta: float, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(S_n, C_n) for n = 0..n_max, scaled by e^{−β} (like ive):

    S_n = (1/2π) ∫_{−π}^{π} (φ/2π) sin(nφ) e^{β(cos φ − 1)} dφ,
    C_n = (1/2π) ∫_{−π}^{π} (φ/2π)² cos(nφ) e^{β(cos φ − 1)} dφ.

    s_n = S_n / ive(n, β) and c_n = C_n / ive(n, β) are the per-sector moments of q = φ/2π.
    """
    n_nodes = 2 * n_max + 16 * int(math.ceil(math.sqrt(beta))) + 128
    phi, weight = _gauss_legendre_0_pi(n_nodes)
    n = np.arange(n_max + 1)[:, None]
    base = weight * np.exp(beta * (np.cos(phi) - 1)) / math.pi  # 2 × (1/2π) for the even integrands on [0, π]
    q = phi / (2 * math.pi)
    s = (base * q * np.sin(n * phi)).sum(1)
    c = (base * q * q * np.cos(n * phi)).sum(1)
    return s, c


def _symmetric(values: np.ndarray, odd: bool = False) -> np.ndarray:
    """Extend f(0..n) to f(−n..n) with f(−k) = ±f(k)."""
    sign = -1.0 if odd else 1.0
    return np.concatenate((sign * values[:0:-1], values))


def log_partition_function(beta: float, volume: int) -> float:
    """log Z with Z = ∫ Π_links dθ/2π e^{−S} = Σ_n I_n(β)^V (Haar measure normalised to 1 per link;
    the Polyakov loops and gauge orbits integrate to 1). For flows: the exact free energy −log Z."""
    _check(beta, volume)
    n_max = _sectors(beta, volume)
    lr = _symmetric(_log_ratios(beta, n_max)[: n_max + 1])
    log_i0 = math.log(ive(0, beta)) + beta
    return float(volume * log_i0 + logsumexp(volume * lr))


def plaquette_exact(beta: float, volume: int) -> float:
    """⟨cos θ_P⟩ on a torus of V = ``volume`` plaquettes."""
    _check(beta, volume)
    n_max = _sectors(beta, volume)
    lr = _log_ratios(beta, n_max)                    # n = 0..n_max+1
    lr_n = _symmetric(lr[: n_max + 1])               # n = −n_max..n_max
    idx = np.abs(np.arange(-n_max, n_max + 1))
    lr_minus, lr_plus = lr[np.abs(idx - 1)], lr[idx + 1]
    # For n < 0 the neighbours n∓1 have |n∓1| = |n| ± 1: the pair is the same as for |n|, so the sum is symmetric.
    log_num = (volume - 1) * lr_n + np.logaddexp(lr_minus, lr_plus) - math.log(2)
    return float(np.exp(logsumexp(log_num) - logsumexp(volume * lr_n)))


def q2_exact(beta: float, volume: int) -> float:
    """⟨Q²⟩ of the geometric charge on a torus of V = ``volume`` plaquettes."""
    _check(beta, volume)
    n_max = _sectors(beta, volume)
    lr = _log_ratios(beta, n_max)[: n_max + 1]
    s, c = single_plaquette_moments(beta, n_max)
    i0 = ive(0, beta)
    with np.errstate(over="ignore", invalid="ignore"):
        weight = np.exp((volume - 2) * lr)           # r_n^{V−2}
        r = np.exp(lr)
        terms = weight * (volume * r * c / i0 - volume * (volume - 1) * (s / i0) ** 2)
    terms = np.where(weight > 0, terms, 0.0)
    numerator = terms[0] + 2 * terms[1:].sum()
    denominator = np.exp(logsumexp(_symmetric(volume * lr)))
    return float(numerator / denominator)


def charge_distribution(beta: float, volume: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact distribution P(Q) of the geometric charge: (charges Q = −q..q, probabilities).

    Z(θ)/Z(0) = ⟨e^{iθQ}⟩ = Σ_Q P(Q) e^{iθQ}, so P(Q) = ∫_0^1 du cos(2πuQ) Z(2πu)/Z(0), with
    Z(2πu) = Σ_n g(n + u)^V and g(k) = (1/π) ∫_0^π e^{β cos φ} cos(kφ) dφ (= I_k(β) for integer k; the
    θ-dependent weight w_n(θ) of the module docstring). Z(2πu) is smooth and 1-periodic in u, so the
    trapezoidal rule on M points is exact up to the aliasing of P(Q ± M), negligible for the M chosen
    (≥ 16 standard deviations of Q); the charges returned stop where P(Q) < 1e-15.
    """
    _check(beta, volume)
    width = math.sqrt(max(q2_exact(beta, volume), 1e-3))
    m = 1 << max(6, math.ceil(math.log2(32 * width + 64)))
    u = np.arange(m) / m
    n_max = max(_sectors(beta, volume), 16) + 1
    phi, weight = _gauss_legendre_0_pi(4 * n_max + 16 * int(math.ceil(math.sqrt(beta))) + 128)
    base = weight * np.exp(beta * (np.cos(phi) - 1)) / math.pi / ive(0, beta)   # g(k)/I_0(β)
    k = (np.arange(-n_max, n_max + 1)[:, None] + u[None, :])[..., None]        # (2n+1, M, 1)
    g = (base * np.cos(k * phi)).sum(-1)                                         # (2n+1, M)
    z = np.power(g, volume).sum(0)                                               # Z(2πu)/I_0^V
    charges = np.arange(-(m // 2) + 1, m // 2)
    p = (np.cos(2 * math.pi * charges[:, None] * u[None, :]) * z[None, :]).mean(1) / z[0]
    keep = np.abs(charges) <= np.abs(charges[p > 1e-15]).max(initial=0)
    return charges[keep], np.clip(p[keep], 0.0, None)


def wilson_loop_exact(beta: float, volume: int, area: int) -> float:
    """⟨cos(loop angle)⟩ of a contractible Wilson loop enclosing ``area`` plaquettes (0 < area < V)."""
    _check(beta, volume)
    if not 0 < area < volume:
        raise ValueError(f"area must be in (0, V), got {area} with V = {volume}")
    n_max = _sectors(beta, volume) + 1
    lr = _log_ratios(beta, n_max + 1)
    n = np.arange(-n_max, n_max + 1)
    log_terms = (volume - area) * lr[np.abs(n)] + area * lr[np.abs(n + 1)]
    log_z = logsumexp(volume * lr[np.abs(n)])
    return float(np.exp(logsumexp(log_terms) - log_z))


def chi_t_infinite_volume(beta: float) -> float:
    """lim_{V→∞} ⟨Q²⟩/V = (1/4π²) ∫ φ² e^{β cos φ} dφ / ∫ e^{β cos φ} dφ."""
    _check(beta, 4)
    s, c = single_plaquette_moments(beta, 0)
    return float(c[0] / ive(0, beta))


def plaquette_infinite_volume(beta: float) -> float:
    """lim_{V→∞} ⟨cos θ_P⟩ = I_1(β)/I_0(β)."""
    return float(ive(1, beta) / ive(0, beta))


def creutz_from_loops(w: dict[tuple[int, int], float], r: int, t: int) -> float:
    """χ(R,T) from Wilson loop values keyed by (min, max) extents."""
    from suite.theories.base import creutz_ratio

    def get(a, b):
        return w[(min(a, b), max(a, b))]

    return creutz_ratio(get(r, t), get(r - 1, t - 1), get(r, t - 1), get(r - 1, t))


def u1_exact(theory, creutz_min_wilson: float = CREUTZ_MIN_WILSON) -> dict[str, float]:
    """Exact values for a `U1` theory, named as its observables and derived quantities.

    ``plaquette``, ``action_density`` (−β·plaquette), ``topological_charge`` (0 by symmetry), ``q2``,
    ``chi_t``, every ``wilson_R_T`` it measures, and the ``creutz_R_T`` whose four loops are all
    ≥ ``creutz_min_wilson`` (smaller loops are noise-dominated at any affordable statistics, and an
    undefined estimate would read as a failed comparison). And ``log_z``, the log of
    Z = ∫ Π_links dθ e^{−S} over Lebesgue measure on (−π, π] per link, the convention of importance
    samplers' log Z (`suite.metrics`; `suite.fields.TorusSpace`'s normalised Haar prior has density
    (2π)^{−n}): `log_partition_function` (Haar measure of mass 1 per link) + n log 2π, n the number
    of links.
    """
    beta, volume = theory.beta, theory.volume
    q2 = q2_exact(beta, volume)
    plaquette = plaquette_exact(beta, volume)
    values = {
        "plaquette": plaquette,
        "action_density": -beta * plaquette,
        "topological_charge": 0.0,
        "q2": q2,
        "chi_t": q2 / volume,
        "log_z": log_partition_function(beta, volume) + math.prod(theory.field.shape) * math.log(2 * math.pi),
    }
    n = theory.loop_extent
    loops = {(r, t): wilson_loop_exact(beta, volume, r * t) for r in range(1, n + 1) for t in range(r, n + 1)}
    for (r, t), w in loops.items():
        values[f"wilson_{r}_{t}"] = w
    for r in range(2, n + 1):
        for t in range(r, n + 1):
            inputs = [loops[(min(a, b), max(a, b))] for a, b in ((r, t), (r - 1, t - 1), (r, t - 1), (r - 1, t))]
            if min(inputs) >= creutz_min_wilson:
                values[f"creutz_{r}_{t}"] = creutz_from_loops(loops, r, t)
    return values
