"""The ``cluster`` sampler: Wolff's single-cluster algorithm (`reference.cluster`) for O(N) models.

``chains`` independent chains run as one batch on the CPU (numpy): ``n_therm`` × ``n_clusters``
thermalisation updates, then ``n_meas`` measurements of the theory's observables, ``n_clusters``
single-cluster updates apart (τ_int is in units of measurements). The row's sampler info records the
mean cluster size (also as a fraction of V, and the sweeps per measurement it amounts to). It applies
to O(N) entries only (`suite.theories.on.ONModel`); any other entry is refused when a study is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import UsageError
from suite.samplers import register
from suite.samplers.base import RunContext, Sampler
from suite.samplers.spec import option


@dataclass(frozen=True)
class ClusterSpec:
    chains: int = option(16, min=1, help="independent chains (one batch)")
    n_therm: int = option(200, min=0, flag="--therm",
                          help="thermalisation, in measurement intervals of n_clusters updates")
    n_meas: int = option(1000, min=2, flag="--n-meas", help="measurements per chain")
    n_clusters: int = option(10, min=1, help="single-cluster updates between measurements")


def _check_theory(theory, what: str) -> None:
    from suite.theories.on import ONModel

    if not isinstance(theory, ONModel):
        raise UsageError(f"the cluster sampler applies to O(N) models only, not to {what}")


class Cluster(Sampler):
    name = "cluster"
    spec = ClusterSpec
    default_dtype = "float64"
    markov = True
    runs_table = "Cluster runs"
    description = "Wolff single-cluster algorithm (O(N) models)"

    def check_task(self, spec: ClusterSpec, entry) -> None:
        _check_theory(entry.build_theory(), f"entry {entry.id!r} (theory {entry.theory!r})")

    def run(self, spec: ClusterSpec, theory, context: RunContext):
        from reference.cluster import run_cluster

        _check_theory(theory, f"theory {type(theory).__name__}")
        if str(context.device) != "cpu":
            raise UsageError(f"the cluster sampler runs on the CPU, not on {context.device!r}")
        chain = run_cluster(theory, chains=spec.chains, n_therm=spec.n_therm, n_meas=spec.n_meas,
                            n_clusters=spec.n_clusters, seed=context.seed, dtype=context.dtype,
                            progress=context.progress)
        return chain, None

    def budget_label(self, spec: dict) -> str:
        return f"{spec['chains']} chains × {spec['n_meas']} × {spec['n_clusters']} clusters"

    def statistics(self, info: dict) -> str:
        return (f"{info['chains']} chains x {info['n_meas']} measurements {info['n_clusters']} clusters apart "
                f"after {info['n_therm'] * info['n_clusters']} clusters")

    def columns(self, row) -> dict:
        info = row.sampler_info
        return {"chains": info.get("chains"), "n_meas": info.get("n_meas"), "n_clusters": info.get("n_clusters"),
                "mean_cluster_size": info.get("mean_cluster_size"),
                "sweeps_per_measurement": info.get("sweeps_per_measurement")}


register(Cluster())
