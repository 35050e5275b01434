"""The ``ais`` sampler: annealed importance sampling (`reference.ais`, Neal 2001) from the field
space's prior to the theory, float64 by default; no training.

``n_samples`` independent AIS runs (``batch`` at a time), each through ``n_temperatures`` = K
annealing steps b_k = (k/K)^``schedule_power`` of the targets π_k ∝ q_0^{1−b_k} e^{−b_k S}, with one
HMC trajectory of ``n_leapfrog`` leapfrog steps of size ``step_size`` at each intermediate b_k
(``n_leapfrog = 1``: MALA). The chain holds the final configurations' observables and the
log-weights log w = Σ_k (b_k − b_{k−1}) [−S(x_{k−1}) − log q_0(x_{k−1})] (shape (1, N), like ``flow``);
they are normalised (E[w] = Z), so the row's log Z estimate (`suite.metrics`) is unbiased in Z.
``target_samples = M`` runs AIS backwards from M configurations of the target (an HMC ensemble
cached per results folder, with the flow sampler's default ensemble settings) and records the reverse paths' log-weights, from which
the row gets the forward ESS and the EUBO (`reference.ais.reverse_ais_log_weights`).
K = 1 is plain importance sampling from the prior. The row's ``sampler_info`` records the
acceptance (mean and the lowest over temperatures) and the action and force evaluations per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.samplers import register
from suite.samplers.base import RunContext, Sampler, target_configurations, weight_columns
from suite.samplers.spec import option


@dataclass(frozen=True)
class AISSpec:
    n_samples: int = option(4096, min=2, help="independent AIS samples")
    n_temperatures: int = option(100, min=1, help="annealing steps K (1: importance sampling from the prior)")
    schedule_power: float = option(2.0, above=0, help="schedule b_k = (k/K)^power (1: linear)")
    n_leapfrog: int = option(5, min=1, help="leapfrog steps of the HMC transition per temperature (1: MALA)")
    step_size: float = option(0.2, above=0, help="leapfrog step size")
    batch: int = option(1024, min=1, help="AIS runs advanced together")
    target_samples: int = option(0, min=0, help="HMC configurations of the target (the flow sampler's default "
                                                "ensemble settings) to run AIS backwards from, for the forward ESS "
                                                "and EUBO (0: none)")


class AIS(Sampler):
    name = "ais"
    spec = AISSpec
    default_dtype = "float64"
    markov = False
    runs_table = "AIS runs"
    transport_arm = "prior"
    description = "annealed importance sampling from the prior with HMC transitions"

    def run(self, spec: AISSpec, theory, context: RunContext):
        from reference.ais import run_ais

        target = target_configurations(theory, context, spec.target_samples)
        chain = run_ais(theory, n_samples=spec.n_samples, n_temperatures=spec.n_temperatures,
                        power=spec.schedule_power, n_leapfrog=spec.n_leapfrog, step_size=spec.step_size,
                        batch=spec.batch, seed=context.seed, dtype=context.dtype, device=context.device,
                        progress=context.progress, target=target)
        return chain, None

    def label(self, spec: dict) -> str:
        return f"{self.name}, {self.budget_label(spec)}"

    def describe(self, spec: dict) -> str:
        return f"{self.name} ({spec['n_temperatures']} temperatures)"

    def budget_label(self, spec: dict) -> str:
        return (f"{spec['n_temperatures']} temperatures × {spec['n_leapfrog']} leapfrog steps, "
                f"{spec['n_samples']} samples")

    def columns(self, row) -> dict:
        info = row.sampler_info
        return {
            "n_samples": info.get("n_samples"),
            "n_temperatures": info.get("n_temperatures"),
            "n_leapfrog": info.get("n_leapfrog"),
            "step_size": info.get("step_size"),
            "acceptance": info.get("acceptance"),
            "evaluations_per_sample": info.get("evaluations_per_sample"),
            **weight_columns(row),
        }


register(AIS())
