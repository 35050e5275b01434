"""Wolff's single-cluster algorithm for the O(N) model (U. Wolff, PRL 62 (1989) 361), numpy, CPU.

Action S = −β Σ_{x,μ} s_x·s_{x+μ} (`suite.theories.on`). One update of one chain:

1. draw a reflection plane: a unit vector r uniform on S^{N−1}; the reflection s → s − 2 (s·r) r
   leaves the action of two spins reflected together unchanged;
2. pick a seed site uniformly; grow the cluster: from every cluster site x, the bond to a
   neighbour y not yet in the cluster is activated with probability
   p = 1 − exp(min(0, −2β (s_x·r)(s_y·r))), computed with the spins as they were before the
   update (the cluster is reflected only when complete, which is the same as Wolff's
   flip-as-you-go with p = 1 − exp(min(0, 2β (s'_x·r)(s_y·r))) and s'_x the reflected spin);
3. reflect every spin of the cluster.

Each update satisfies detailed balance for exp(−S) (the embedded Ising model's Fortuin–Kasteleyn
percolation), and the random r makes the chain ergodic. Measurements come every ``n_clusters``
single-cluster updates; ⟨|C|⟩/V per update says how much of a sweep one update is.

Batched over independent chains: all chains grow their clusters together, one breadth-first layer
at a time, as flat arrays of (chain, site) pairs; a chain whose cluster is complete just has no
frontier. Python work per update is one loop iteration per layer of the largest cluster, the rest is
vectorised numpy. Randomness from one ``numpy.random.Generator`` (PCG64) seeded by the run's seed,
so runs are reproducible.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from suite.chain import Chain


def neighbour_table(lattice: tuple[int, ...]) -> np.ndarray:
    """Flat indices (C order) of the 2d neighbours of every site: columns x+μ̂ for μ = 0..d−1, then x−μ̂;
    shape (V, 2d), int64, periodic."""
    lattice = tuple(int(n) for n in lattice)
    sites = np.arange(math.prod(lattice)).reshape(lattice)
    columns = [np.roll(sites, -step, axis=mu).ravel() for step in (1, -1) for mu in range(len(lattice))]
    return np.stack(columns, 1)


def random_unit_vectors(rng: np.random.Generator, count: int, n: int, dtype=np.float64) -> np.ndarray:
    """``count`` vectors uniform on S^{n−1}, shape (count, n)."""
    g = rng.standard_normal((count, n)).astype(dtype, copy=False)
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def wolff_update(spins: np.ndarray, beta: float, neighbours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One single-cluster update of every chain, in place on ``spins`` (C, V, N); returns the cluster sizes (C,)."""
    chains, volume, n = spins.shape
    r = random_unit_vectors(rng, chains, n, spins.dtype)
    in_cluster = np.zeros((chains, volume), dtype=bool)
    front_c = np.arange(chains)
    front_x = rng.integers(volume, size=chains)
    in_cluster[front_c, front_x] = True
    member_c, member_x, member_p = [], [], []
    degree = neighbours.shape[1]
    while front_c.size:
        proj_x = np.einsum("ij,ij->i", spins[front_c, front_x], r[front_c])
        member_c.append(front_c)
        member_x.append(front_x)
        member_p.append(proj_x)
        cand_c = np.repeat(front_c, degree)
        cand_y = neighbours[front_x].ravel()
        cand_p = np.repeat(proj_x, degree)
        outside = ~in_cluster[cand_c, cand_y]
        cand_c, cand_y, cand_p = cand_c[outside], cand_y[outside], cand_p[outside]
        proj_y = np.einsum("ij,ij->i", spins[cand_c, cand_y], r[cand_c])
        prob = -np.expm1(np.minimum(0.0, -2 * beta * cand_p * proj_y))
        bonded = rng.random(cand_c.size) < prob
        joined = np.unique(cand_c[bonded] * volume + cand_y[bonded])  # a site bonded from two sides joins once
        front_c, front_x = np.divmod(joined, volume)
        in_cluster[front_c, front_x] = True
    c, x, p = np.concatenate(member_c), np.concatenate(member_x), np.concatenate(member_p)
    spins[c, x] -= (2 * p)[:, None] * r[c]
    return np.bincount(c, minlength=chains)


def run_cluster(theory, *, chains: int, n_therm: int, n_meas: int, n_clusters: int, seed: int,
                dtype=torch.float64, progress: bool | None = None) -> Chain:
    """Start ``chains`` chains from the uniform prior, thermalise with ``n_therm`` × ``n_clusters`` updates,
    then measure ``theory.observables`` ``n_meas`` times, ``n_clusters`` single-cluster updates apart.

    ``theory`` is an O(N) model (`suite.theories.on.ONModel`: its ``beta``, ``lattice`` and ``n``).
    ``chain.info`` records the mean cluster size over the measured updates (and as a fraction of V).
    """
    if chains < 1 or n_therm < 0 or n_meas < 1 or n_clusters < 1:
        raise ValueError(f"need chains, n_meas, n_clusters >= 1 and n_therm >= 0; got {chains}, {n_meas}, "
                         f"{n_clusters}, {n_therm}")
    rng = np.random.default_rng(seed)
    lattice, volume, n = tuple(theory.lattice), theory.volume, theory.n
    neighbours = neighbour_table(lattice)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    spins = random_unit_vectors(rng, chains * volume, n, np_dtype).reshape(chains, volume, n)
    quiet = None if progress is None else not progress

    start = time.perf_counter()
    for _ in tqdm(range(n_therm * n_clusters), desc="thermalise", disable=quiet, leave=False):
        wolff_update(spins, theory.beta, neighbours, rng)
    therm_seconds = time.perf_counter() - start

    records, sizes = {}, np.zeros(chains)
    start = time.perf_counter()
    for i in tqdm(range(n_meas), desc="measure", disable=quiet, leave=False):
        for _ in range(n_clusters):
            sizes += wolff_update(spins, theory.beta, neighbours, rng)
        x = torch.from_numpy(spins.reshape(chains, *lattice, n))
        for name, value in theory.observables(x).items():
            if name not in records:
                records[name] = np.empty((chains, n_meas), dtype=value.numpy().dtype)
            records[name][:, i] = value.numpy()
    sample_seconds = time.perf_counter() - start
    mean_size = float(sizes.sum() / (chains * n_meas * n_clusters))
    return Chain(
        observables=records,
        timings={"thermalisation": therm_seconds, "sampling": sample_seconds},
        info={"chains": chains, "n_therm": n_therm, "n_meas": n_meas, "n_clusters": n_clusters, "seed": seed,
              "dtype": str(dtype).removeprefix("torch."), "mean_cluster_size": mean_size,
              "mean_cluster_fraction": mean_size / volume,
              "sweeps_per_measurement": n_clusters * mean_size / volume},
    )
