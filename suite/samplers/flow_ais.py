"""The ``flow-ais`` sampler: a trained flow corrected by annealed importance sampling in its latent space.

The flow is trained exactly as by ``flow`` (every option of `suite.samplers.flow.FlowSpec`: model,
objective, budget, pretraining, ...). Sampling then runs AIS (`reference.ais`) from the flow's prior
p_0 to the target pulled back through the flow, π(z) ∝ e^{−S(f(z))} |det ∂f/∂z|
(`reference.pullback`), in float64 whatever the training precision: ``n_temperatures`` = K steps
b_k = (k/K)^``schedule_power`` of π_k ∝ p_0^{1−b_k} π^{b_k}, one HMC trajectory of ``n_leapfrog``
steps of ``step_size`` at each intermediate b_k, and the sample x = f(z_{K−1}) with the weight

    log w = Σ_k (b_k − b_{k−1}) [−S(x_{k−1}) − log q(x_{k−1})],   x_k = f(z_k),

normalised like a flow's (E[w] = Z). K = 1 is the flow's own reweighting; a larger K trades
sampling cost for ESS without retraining, the "cheap flow corrected by Monte Carlo" arm of a
transport-versus-quality comparison. Evaluation counts (``sampler_info``) are those of S, as for
``ais``: each also costs a flow pass (not counted). Not with ``target_samples`` (the marginal density
of an AIS sample is not tractable, so there is no forward ESS from target samples) and not distributed.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import UsageError
from suite.samplers import register
from suite.samplers.ais import AISSpec
from suite.samplers.base import RunContext
from suite.samplers.flow import Flow, FlowSpec
from suite.samplers.spec import option

_AIS = AISSpec()


@dataclass(frozen=True)
class FlowAISSpec(FlowSpec):
    n_temperatures: int = option(_AIS.n_temperatures // 10, min=1,
                                 help="annealing steps K in the latent space (1: the flow's reweighting)")
    schedule_power: float = option(1.0, above=0, help="schedule b_k = (k/K)^power (1: linear)")
    n_leapfrog: int = option(_AIS.n_leapfrog, min=1, help="leapfrog steps of the HMC transition per temperature")
    step_size: float = option(_AIS.step_size, above=0, help="leapfrog step size (in the latent space)")

    def check(self) -> None:
        super().check()
        if self.target_samples:
            raise UsageError("flow-ais has no forward ESS from target samples (the density of an AIS sample is "
                             "not tractable); set target_samples = 0")


class FlowAIS(Flow):
    name = "flow-ais"
    spec = FlowAISSpec
    runs_table = "Flow + AIS runs"
    transport_arm = "corrected"
    description = "a trained flow corrected by annealed importance sampling in its latent space"
    split_over_ranks = ()

    def _sample(self, spec: FlowAISSpec, model, theory, context: RunContext):
        import torch

        from reference.ais import run_ais
        from reference.pullback import PulledBackTheory

        try:
            pulled = PulledBackTheory(theory, model.to(torch.float64).requires_grad_(False))
        except ValueError as err:
            raise UsageError(f"flow-ais: {err}") from None
        return run_ais(pulled, n_samples=spec.n_samples, n_temperatures=spec.n_temperatures,
                       power=spec.schedule_power, n_leapfrog=spec.n_leapfrog, step_size=spec.step_size,
                       batch=spec.sample_batch, seed=context.seed, device=context.device, progress=context.progress)

    def run(self, spec: FlowAISSpec, theory, context: RunContext):
        from suite import distributed

        if distributed.current() is not None:
            raise UsageError("flow-ais does not run distributed; run it in one process")
        return super().run(spec, theory, context)

    def label(self, spec: dict) -> str:
        return f"{super().label(spec)}, AIS {spec['n_temperatures']} × {spec['n_leapfrog']}"

    def describe(self, spec: dict) -> str:
        return f"{self.name} ({spec['model']}, {spec['n_temperatures']} temperatures)"

    def contender(self, spec: dict, by: str) -> str:
        return f"{super().contender(spec, by)} + AIS {spec['n_temperatures']}"

    def columns(self, row) -> dict:
        info = row.sampler_info
        return {**super().columns(row), "n_temperatures": info.get("n_temperatures"),
                "n_leapfrog": info.get("n_leapfrog"), "step_size": info.get("step_size"),
                "ais_acceptance": info.get("acceptance"), "evaluations_per_sample": info.get("evaluations_per_sample")}


register(FlowAIS())
