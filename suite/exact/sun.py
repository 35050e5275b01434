"""Exact finite-volume expectation values of 2D SU(N) lattice gauge theory (Wilson action) on a torus.

Action and observables as in the suite's SU(N) theory: S = −(β/N) Σ_P Re Tr U_P on a periodic
L0×L1 lattice with V = L0·L1 plaquettes; ``plaquette`` = (1/N)⟨Re Tr U_P⟩, ``action_density`` =
⟨S⟩/V = −β·plaquette, ``wilson_R_T`` = (1/N)⟨Re Tr W(R×T)⟩ (an R×T rectangle, either orientation).
Haar measure normalised to 1 per link, so Z = ∫ Π dU e^{−S}.

Character expansion (Migdal, Sov. Phys. JETP 42 (1975) 413; Drouffe & Zuber, Phys. Rep. 102
(1983) 1; Rusakov, Mod. Phys. Lett. A 5 (1990) 693; Witten, Commun. Math. Phys. 141 (1991) 153,
sec. 2). The single-plaquette weight is a class function, expanded in the characters χ_λ of the
irreducible representations λ (dimension d_λ):

    f(U) = e^{(β/N) Re Tr U} = Σ_λ a_λ χ_λ(U),     a_λ = ∫ dU χ̄_λ(U) f(U)   (a_λ > 0, a_λ̄ = a_λ).

Integrating a link shared by two plaquettes, ∫ dU χ_λ(XU) χ_μ(U⁻¹Y) = δ_λμ χ_λ(XY)/d_λ, glues
them. Gluing plaquettes into a surface Σ of Euler characteristic χ(Σ) with boundary holonomies
g_b gives Z_Σ = Σ_λ d_λ^{χ(Σ)} (a_λ/d_λ)^{#plaquettes} Π_b χ_λ(g_b) (Witten 1991, sec. 2, for
the lattice derivation). Hence:

* Torus (χ = 0):                       Z = Σ_λ (a_λ/d_λ)^V.
* Plaquette:                           (1/N)⟨Re Tr U_P⟩ = (1/V) ∂_β log Z.
* Contractible Wilson loop enclosing A plaquettes (R < L0, T < L1 and transposed; A = R·T < V).
  The loop cuts the torus into a disc D (χ = 1, area A) and a torus with one hole C (χ = −1,
  area V − A). Gluing them along the loop with χ_F inserted, ∫ dg χ_λ(g) χ_F(g) χ̄_μ(g) = N^μ_{λF}
  (Pieri's rule: μ is λ with one box added, multiplicity one), so

      ⟨Tr W⟩ = (1/Z) Σ_λ Σ_{μ ∈ λ⊗F} d_λ (a_λ/d_λ)^A · d_μ^{−1} (a_μ/d_μ)^{V−A},

  which is real (λ → λ̄ maps it to ⟨Tr W†⟩), and (1/N)⟨Re Tr W⟩ = ⟨Tr W⟩/N. For A = 1 it is the
  plaquette; that (1/V)∂_β log Z gives the same number follows from the fusion identity
  ∂_β a_λ = (1/2N) [Σ_{μ∈λ⊗F} a_μ + Σ_{μ∈λ⊗F̄} a_μ]; the tests check it by finite differences.

Coefficients (Bars & Green, Phys. Rev. D 20 (1979) 3311; Drouffe & Zuber 1983). For U(N) and a
signature λ_1 ≥ … ≥ λ_N, with e^{(β/N) Re Tr U} = Π_i e^{(β/2N)(z_i + 1/z_i)} on the eigenvalues
z_i and e^{(x/2)(z + 1/z)} = Σ_n I_n(x) zⁿ, the Weyl integration formula (Andreief/Cauchy–Binet)
gives the Toeplitz determinant a_λ^{U(N)} = det[I_{λ_j − j + i}(β/N)]_{i,j=1..N}. SU(N) Haar
measure is U(N) Haar measure times 2π δ(arg det U) = Σ_k (det U)^k, and χ̄_λ det^k = χ̄_{λ−k·1},
so for an SU(N) irrep (λ_N = 0)

    a_λ = Σ_{k∈Z} det[I_{λ_j − j + i + k}(β/N)]_{i,j=1..N},    d_λ = Π_{i<j} (λ_i − λ_j + j − i)/(j − i).

For SU(2) this is a_m = (m+1)·2 I_{m+1}(β)/β (Drouffe & Zuber), so Z = Σ_{m≥0} (2I_{m+1}(β)/β)^V
and the infinite-volume plaquette is I_2(β)/I_1(β); the tests check the determinant sums
against this closed form and against a direct Weyl-formula quadrature over eigenphases.

Limits. V → ∞ at fixed β: only λ = 0 survives in Z, plaquette → a_F/(N a_0) and
W(A) → (a_F/(N a_0))^A (area law: in 2D the plaquettes of a disc are independent). Strong coupling
β → 0: plaquette = β/N²·⟨(Re Tr U)²⟩_Haar + O(β²) = β/4 for SU(2), β/(2N²) for N ≥ 3. Weak coupling
β → ∞ (infinite volume): 1 − plaquette ≈ (N² − 1)/(2β) (N² − 1 Gaussian modes).

Numerics. Bessel functions are scaled by e^{−β/N} (``scipy.special.ive``), so the a_λ carry a
common factor e^{−β} that cancels in all ratios; sums run over r_λ = a_λ/(d_λ a_0) ≤ 1 in logs
(no overflow for any V). The k-sum is cut where every Bessel index exceeds the order n_cut with
I_{n_cut}/I_0 < 1e-22. The representations are all λ with λ_1 ≤ M (the first row length);
M is doubled from 4 until the outermost shell λ_1 = M contributes N·Σ max(r)^V < 1e-17 of the
leading term of every returned quantity (its smallest being the largest loop's r_F^A), so every
value carries a relative truncation error below ~1e-16; ``max_row`` overrides M (the tests
check that doubling it changes nothing). The determinants lose about log10(β/N)·N(N−1)/2 digits
to cancellation at large β/N (measured against Weyl quadrature: a_λ/a_0 to 2e-13 for SU(3) at
β = 50 and 150). Haar integrals over the class of
U (the eigenphase measure, `plaquette_moments_infinite_volume`) use the periodic trapezoidal
rule on [0, 2π)^{N−1}, spectrally accurate for these entire integrands.

Values (tests/test_exact_sun.py checks them; the method is checked there against brute-force
Haar integration, closed forms and limits):

    N  β   8×8 torus plaquette     infinite volume a_F/(N a_0)
    2  2   0.43312742672231        0.43312742672231 (= I_2(2)/I_1(2))
    2  4   0.65804726735962        0.65804726735936 (= I_2(4)/I_1(4))
    3  2   0.12862778532208        0.12862778532208
    3  4   0.27961914940930        0.27961914940930
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
from scipy.special import ive, logsumexp

MAX_LOOP_EXTENT = 6          # as the SU(N) theory: loops R, T ≤ min(min(L)//2, 6)
BESSEL_CUTOFF = 1e-22        # Bessel orders with I_n/I_0 below this are dropped from the k-sum
TRUNCATION = 1e-17           # outermost representation shell, relative to each quantity's leading term
MAX_ROW_LIMIT = 4096


def _check(n: int, beta: float, lattice) -> tuple[int, int]:
    if int(n) != n or n < 2:
        raise ValueError(f"number of colours must be an integer >= 2, got {n}")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be finite and > 0, got {beta}")
    lattice = tuple(lattice)
    if len(lattice) != 2 or any(int(x) != x or x < 1 for x in lattice):
        raise ValueError(f"lattice must be two positive integer extents, got {list(lattice)}")
    return int(lattice[0]), int(lattice[1])


def irreps(n: int, max_row: int) -> np.ndarray:
    """All SU(n) irreps λ_1 ≥ … ≥ λ_{n−1} ≥ λ_n = 0 with λ_1 ≤ max_row, as an (K, n) int array
    (the trivial representation first)."""
    rows = [sorted(c, reverse=True) + [0] for c in itertools.combinations_with_replacement(range(max_row + 1), n - 1)]
    rows.sort(key=lambda r: (sum(r), r))
    return np.array(rows, dtype=np.int64).reshape(-1, n)


def dimension(lam: np.ndarray) -> np.ndarray:
    """Weyl's dimension formula Π_{i<j} (λ_i − λ_j + j − i)/(j − i) for each row of ``lam`` (K, n)."""
    lam = np.atleast_2d(np.asarray(lam, dtype=np.float64))
    n = lam.shape[1]
    d = np.ones(lam.shape[0])
    for i in range(n):
        for j in range(i + 1, n):
            d *= (lam[:, i] - lam[:, j] + j - i) / (j - i)
    return d


def _bessel_cut(x: float) -> int:
    n = int(math.ceil(x)) + 8
    while ive(n, x) / ive(0, x) > BESSEL_CUTOFF:
        n += 8
    return n


def character_coefficients(n: int, beta: float, lam: np.ndarray) -> np.ndarray:
    """a_λ e^{−β} = Σ_k det[ive(λ_j − j + i + k, β/n)] for each SU(n) irrep row of ``lam``."""
    lam = np.atleast_2d(np.asarray(lam, dtype=np.int64))
    x = beta / n
    cut = _bessel_cut(x)
    lmax = int(lam[:, 0].max())
    k = np.arange(-(lmax + cut + n), cut + n + 1)
    i = np.arange(1, n + 1)[:, None]
    j = np.arange(1, n + 1)[None, :]
    orders = np.arange(-(lmax + 2 * cut + 3 * n), lmax + 2 * cut + 3 * n + 1)
    table = ive(orders, x)
    table[np.abs(orders) > cut + n] = 0.0  # below BESSEL_CUTOFF relative: dropped
    out = np.empty(lam.shape[0])
    for chunk in range(0, lam.shape[0], 512):
        block = lam[chunk:chunk + 512]
        idx = block[:, None, None, :] - j[None, None] + i[None, None] + k[None, :, None, None]  # (K, k, i, j)
        m = table[idx - orders[0]]
        out[chunk:chunk + 512] = np.linalg.det(m).sum(axis=1)
    return out


@lru_cache(maxsize=128)
def _tables(n: int, beta: float, max_row: int):
    """Representations with λ_1 ≤ max_row + 1, their log r_λ = log(a_λ/(d_λ a_0)), log d_λ, and
    for each λ with λ_1 ≤ max_row the indices of μ ∈ λ⊗F (−1 where a row cannot take a box)."""
    lam = irreps(n, max_row + 1)
    a = character_coefficients(n, beta, lam)
    d = dimension(lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_r = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)) - np.log(d) - math.log(a[0]), -np.inf)
    index = {tuple(row): q for q, row in enumerate(lam.tolist())}
    inner = np.flatnonzero(lam[:, 0] <= max_row)
    fusion = -np.ones((inner.size, n), dtype=np.int64)
    for q, p in enumerate(inner):
        row = lam[p]
        for b in range(n):
            if b > 0 and row[b - 1] == row[b]:
                continue
            mu = row.copy()
            mu[b] += 1
            mu -= mu[-1]
            fusion[q, b] = index[tuple(mu.tolist())]
    return lam, log_r, np.log(d), inner, fusion


def _pow(power, log_r):
    """power · log r with 0 · (−inf) = 0 (a factor r^0 = 1)."""
    with np.errstate(invalid="ignore"):
        return np.where(power == 0, 0.0, power * log_r)


def _shell(n, beta, volume, max_row) -> float:
    lam, log_r, _, inner, fusion = _tables(n, beta, max_row)
    outer = lam[:, 0] >= max_row
    return n * float(np.exp(logsumexp(volume * log_r[outer])))


def _max_row(n: int, beta: float, volume: int, leading: float) -> int:
    m = 4
    while m <= MAX_ROW_LIMIT:
        if _shell(n, beta, volume, m) < TRUNCATION * leading:
            return m
        m *= 2
    raise ValueError(f"character expansion does not converge within λ_1 <= {MAX_ROW_LIMIT} (beta = {beta})")


def _log_z(log_r, lam, max_row, volume):
    return logsumexp(volume * log_r[lam[:, 0] <= max_row])


def _loop(n, beta, volume, area, max_row) -> float:
    """⟨Tr W⟩/N for a contractible loop enclosing ``area`` plaquettes (the plaquette for area 1)."""
    lam, log_r, log_d, inner, fusion = _tables(n, beta, max_row)
    valid = fusion >= 0
    mu = np.where(valid, fusion, 0)
    lam_idx = np.broadcast_to(inner[:, None], mu.shape)
    terms = log_d[lam_idx] - log_d[mu] + area * log_r[lam_idx] + _pow(volume - area, log_r[mu])
    terms = np.where(valid, terms, -np.inf)
    return float(np.exp(logsumexp(terms) - _log_z(log_r, lam, max_row, volume)) / n)


def log_partition_function(n: int, beta: float, lattice, max_row: int | None = None) -> float:
    """log Z, Z = ∫ Π_links dU e^{−S} = Σ_λ (a_λ/d_λ)^V (Haar measure of mass 1 per link)."""
    l0, l1 = _check(n, beta, lattice)
    volume = l0 * l1
    m = max_row or _max_row(n, beta, volume, 1.0)
    lam, log_r, *_ = _tables(n, beta, m)
    log_a0 = math.log(character_coefficients(n, beta, lam[:1])[0]) + beta
    return float(volume * log_a0 + _log_z(log_r, lam, m, volume))


def representation_cutoff(n: int, beta: float, lattice, max_area: int = 1) -> int:
    """The truncation M (representations λ_1 ≤ M) used for loops up to ``max_area`` plaquettes:
    the first of 4, 8, 16, … whose shell λ_1 = M is below TRUNCATION × the largest loop's leading
    term r_F^{max_area} (floored at 1e-290)."""
    l0, l1 = _check(n, beta, lattice)
    log_rf = _tables(int(n), float(beta), 4)[1][1]  # the fundamental is the second representation
    leading = math.exp(max_area * log_rf) if np.isfinite(log_rf) else 0.0
    return _max_row(int(n), float(beta), l0 * l1, min(1.0, max(leading, 1e-290)))


def default_loops(lattice) -> tuple[tuple[int, int], ...]:
    """(R, T) for 1 ≤ R ≤ T ≤ max(1, min(min(L)//2, 6)), the loops the SU(N) theory measures."""
    extent = max(1, min(min(lattice) // 2, MAX_LOOP_EXTENT))
    return tuple((r, t) for r in range(1, extent + 1) for t in range(r, extent + 1))


def sun_2d_exact(n: int, beta: float, lattice, loops=None, max_row: int | None = None) -> dict[str, float]:
    """Exact ``plaquette``, ``action_density`` and ``wilson_R_T`` of 2D SU(n) on the periodic torus.

    ``loops``: (R, T) pairs (default `default_loops`); each must be contractible in both
    orientations (max(R, T) < min(L0, L1); the 1×1 loop, the plaquette, always is), and each is returned once as ``wilson_{min}_{max}``.
    ``max_row`` fixes the truncation λ_1 ≤ max_row (default: chosen as described in the module).
    """
    l0, l1 = _check(n, beta, lattice)
    n, beta, volume = int(n), float(beta), l0 * l1
    loops = default_loops((l0, l1)) if loops is None else tuple(tuple(int(v) for v in p) for p in loops)
    for r, t in loops:
        if min(r, t) < 1 or (r * t > 1 and max(r, t) >= min(l0, l1)):
            raise ValueError(f"Wilson loop {r}x{t} is not contractible on the {l0}x{l1} torus in both orientations")
    areas = sorted({1} | {r * t for r, t in loops})
    if max_row is None:
        max_row = representation_cutoff(n, beta, (l0, l1), max(areas))
    w = {area: _loop(n, beta, volume, area, max_row) for area in areas}
    values = {"plaquette": w[1], "action_density": -beta * w[1]}
    for r, t in loops:
        values[f"wilson_{min(r, t)}_{max(r, t)}"] = w[r * t]
    return values


def plaquette_infinite_volume(n: int, beta: float) -> float:
    """lim_{V→∞} plaquette = a_F/(N a_0) (I_2(β)/I_1(β) for SU(2))."""
    _check(n, beta, (1, 1))
    lam = irreps(n, 1)[:2]
    a = character_coefficients(n, beta, lam)
    return float(a[1] / (n * a[0]))


def single_matrix_log_z(n: int, beta: float) -> float:
    """log a_0 = log ∫ dU e^{(β/N) Re Tr U} over SU(n) (Haar measure of mass 1): the trivial
    character coefficient, Σ_k det[I_{k+i−j}(β/N)] (a Toeplitz determinant of Bessel functions;
    2 I_1(β)/β for SU(2)). It normalises the single-matrix target of the spectral flows' tests."""
    _check(n, beta, (1, 1))
    return float(math.log(character_coefficients(n, beta, np.zeros((1, int(n)), dtype=np.int64))[0]) + beta)


def plaquette_moments_infinite_volume(n: int, beta: float, powers=(1, 2), nodes: int | None = None) -> dict[int, float]:
    """⟨(1/N) Re Tr U^k⟩ for the single-plaquette measure dU e^{(β/N) Re Tr U}/a_0, which is the
    distribution of every plaquette of the infinite 2D lattice (in axial gauge the plaquettes are
    independent). Weyl integration over the eigenphases θ_1..θ_{N−1} (θ_N = −Σθ), density
    Π_{i<j} |e^{iθ_i} − e^{iθ_j}|², periodic trapezoidal rule with ``nodes`` points per angle."""
    _check(n, beta, (1, 1))
    if n > 4:
        raise ValueError("eigenphase quadrature is implemented for N <= 4")
    powers = tuple(int(k) for k in powers)
    if nodes is None:
        nodes = int(2 * max(powers) * n + 3 * beta / n + 64) if n < 4 else int(max(powers) * n + 2 * beta / n + 32)
    grid = 2 * math.pi * np.arange(nodes) / nodes
    angles = np.meshgrid(*([grid] * (n - 1)), indexing="ij", sparse=True)
    theta = list(angles) + [-sum(angles)]
    z = [np.exp(1j * t) for t in theta]
    density = np.ones(1)
    for i in range(n):
        for j in range(i + 1, n):
            density = density * np.abs(z[i] - z[j]) ** 2
    re_tr = sum(np.cos(t) for t in theta)
    weight = density * np.exp((beta / n) * (re_tr - n))
    norm = weight.sum()
    return {k: float((weight * sum(np.cos(k * t) for t in theta)).sum() / (n * norm)) for k in powers}


def _colours(theory) -> int:
    for name in ("n_colors", "N", "n", "n_colours"):
        value = getattr(theory, name, None)
        if value is not None:
            return int(value)
    raise AttributeError(f"{type(theory).__name__} has none of n_colors, N, n: cannot read the number of colours")


def sun_exact(theory) -> dict[str, float]:
    """Exact values for an SU(N) theory object (reads its number of colours as ``n_colors``, ``N``
    or ``n``, ``beta`` and the 2D ``lattice``), named as its observables: ``plaquette``,
    ``action_density`` and ``wilson_R_T`` for 1 ≤ R ≤ T ≤ its ``loop_extent`` (default
    min(min(L)//2, 6)); and ``log_z`` (`log_partition_function`: Haar measure of mass 1 per link, the
    normalisation of the field space's prior, so that importance samplers' log Z estimates compare)."""
    n = _colours(theory)
    for name in ("beta", "lattice"):
        if getattr(theory, name, None) is None:
            raise AttributeError(f"{type(theory).__name__} has no {name!r}: cannot compute SU(N) exact values")
    lattice = tuple(theory.lattice)
    if len(lattice) != 2:
        raise ValueError(f"exact SU(N) values exist in two dimensions only, got lattice {list(lattice)}")
    extent = getattr(theory, "loop_extent", None)
    loops = None if extent is None else tuple((r, t) for r in range(1, extent + 1) for t in range(r, extent + 1))
    values = sun_2d_exact(n, float(theory.beta), lattice, loops=loops)
    values["log_z"] = log_partition_function(n, float(theory.beta), lattice)
    return values
