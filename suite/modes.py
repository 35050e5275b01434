"""Mode coverage: do a sampler's configurations fall into a theory's sectors with the right weights?

A theory that knows the exact probabilities of its sectors returns `Sectors` from its ``sectors()``
hook (`suite.theories.base.Theory`): 2D U(1) the charge distribution P(Q) of the character
expansion (`suite.exact.u1.charge_distribution`), φ⁴ the two signs of the magnetisation, each of
probability ½ by the Z₂ symmetry at finite volume (in the broken phase a mode-seeking flow drops one).

`mode_coverage` compares the observed sector fractions with them by Pearson's χ² test on N_eff
samples, χ² = N_eff Σ_k (p̂_k − P_k)² / P_k with K − 1 degrees of freedom, after merging the
tails into one bin on each side until each bin expects ≥ 5 samples (N_eff P_k ≥ 5):

* ``unweighted``: the fractions among the sampler's configurations — what a flow proposes, or the
  states of a Markov chain. N_eff = N for independent samples; for a Markov chain N/(2 τ_int) with
  τ_int the Γ-method autocorrelation time of the labelling observable (an approximation: the χ²
  then counts effectively independent configurations; a chain stuck in one sector has N_eff = its
  number of chains, and the test says it carries no information).
* ``reweighted`` (independent importance samples with log-weights): p̂_k = Σ_i w̃_i 1[x_i ∈ k] with
  self-normalised weights, and N_eff the Kish ESS (Σw)²/Σw² — the usual approximation for
  weighted χ² tests; the exact sectors must come back here if the weights are right and ample.

A small p-value of ``unweighted`` with a large one of ``reweighted`` is a flow that covers the modes
in the wrong proportions and is corrected by its weights; both small is a mode it does not reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats as scipy_stats

from suite import stats
from suite.chain import Chain

MIN_EXPECTED = 5.0  # the tail bins are merged until each expects this many samples


@dataclass(frozen=True)
class Sectors:
    """Sectors labelled by a per-configuration observable, with their exact probabilities.

    ``labels`` (K,) ints in increasing order; ``probabilities`` (K,) summing to 1; ``assign`` maps
    the observable's values (N,) to labels (N,) — configurations beyond the outermost labels are
    counted in them; ``source`` says where the probabilities come from."""

    observable: str
    labels: np.ndarray
    probabilities: np.ndarray
    source: str
    assign: Callable[[np.ndarray], np.ndarray] = np.rint


def _bins(expected: np.ndarray) -> list[slice]:
    """Consecutive groups of sectors: the tails merged until each expects ≥ MIN_EXPECTED, the middle
    one by one (sectors below that in the middle are merged with their right neighbour)."""
    groups, start, total = [], 0, 0.0
    for k, e in enumerate(expected):
        total += e
        if total >= MIN_EXPECTED:
            groups.append(slice(start, k + 1))
            start, total = k + 1, 0.0
    if start < len(expected):  # the right tail that did not fill a bin joins the last one
        if groups:
            groups[-1] = slice(groups[-1].start, len(expected))
        else:
            groups.append(slice(0, len(expected)))
    return groups


def chi2_test(fractions: np.ndarray, probabilities: np.ndarray, n_effective: float) -> dict:
    """Pearson's χ² of observed fractions against probabilities on ``n_effective`` samples, tails merged
    (module docstring); chi2/dof/p_value are None when fewer than two bins remain."""
    groups = _bins(n_effective * probabilities)
    observed = np.array([fractions[g].sum() for g in groups])
    expected = np.array([probabilities[g].sum() for g in groups])
    result = {"fractions": [float(f) for f in fractions], "n_effective": float(n_effective), "bins": len(groups)}
    if len(groups) < 2:
        return {**result, "chi2": None, "dof": None, "p_value": None}
    chi2 = float(n_effective * np.sum((observed - expected) ** 2 / expected))
    dof = len(groups) - 1
    return {**result, "chi2": chi2, "dof": dof, "p_value": float(scipy_stats.chi2.sf(chi2, dof))}


def _sector_index(sectors: Sectors, values: np.ndarray) -> np.ndarray:
    labels = np.asarray(sectors.labels)
    assigned = np.clip(np.asarray(sectors.assign(values)), labels[0], labels[-1])
    index = np.searchsorted(labels, assigned)
    if not np.array_equal(labels[np.clip(index, 0, len(labels) - 1)], assigned):
        raise ValueError(f"{sectors.observable} values fall between the sector labels")
    return index


def _markov_n_effective(values: np.ndarray) -> float:
    """N/(2 τ_int) of the labelling observable over the chains (R, N); R if it never changes."""
    if np.all(values == values[:, :1]):
        return float(values.shape[0])
    return float(values.size / (2 * stats.gamma_method(values).tau_int))


def mode_coverage(chain: Chain, sectors: Sectors, markov: bool) -> dict:
    """The ``mode_coverage`` metric of a chain (module docstring): the sectors, their exact
    probabilities and the unweighted (and, for importance samples, reweighted) χ² tests."""
    values = np.asarray(chain.observables[sectors.observable], dtype=float)
    index = _sector_index(sectors, values.ravel())
    probabilities = np.asarray(sectors.probabilities, dtype=float)
    k = len(probabilities)
    fractions = np.bincount(index, minlength=k) / index.size
    n_effective = _markov_n_effective(values) if markov else float(index.size)
    coverage = {"observable": sectors.observable, "source": sectors.source,
                "labels": [int(v) for v in sectors.labels], "exact": [float(p) for p in probabilities],
                "unweighted": chi2_test(fractions, probabilities, n_effective)}
    if chain.log_weights is not None and not markov:
        log_w = np.asarray(chain.log_weights, dtype=float).ravel()
        w = np.exp(log_w - log_w.max())
        weighted = np.bincount(index, weights=w, minlength=k) / w.sum()
        coverage["reweighted"] = chi2_test(weighted, probabilities, stats.effective_sample_size(log_w) * w.size)
    return coverage
