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
``ais``: each also costs a flow pass (not counted). ``target_samples = M`` pulls M configurations of the
target ensemble back through the flow's inverse, z = f^{-1}(x) ~ π, and runs the latent AIS backwards
from them (`reference.ais.reverse_ais_log_weights`, the stream seeded with the seed + 1 as ``ais``
does): the reverse paths' log-weights give the forward ESS and EUBO. Not distributed.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import UsageError, model_phase
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


class FlowAIS(Flow):
    name = "flow-ais"
    spec = FlowAISSpec
    runs_table = "Flow + AIS runs"
    transport_arm = "corrected"
    description = "a trained flow corrected by annealed importance sampling in its latent space"
    split_over_ranks = ()

    @staticmethod
    def _pulled(model, theory):
        """The theory pulled back through the float64 flow (`reference.pullback`); one-line UsageError."""
        import torch

        from reference.pullback import PulledBackTheory

        try:
            return PulledBackTheory(theory, model.to(torch.float64).requires_grad_(False))
        except ValueError as err:
            raise UsageError(f"flow-ais: {err}") from None

    def _sample(self, spec: FlowAISSpec, model, theory, context: RunContext):
        from reference.ais import run_ais

        return run_ais(self._pulled(model, theory), n_samples=spec.n_samples, n_temperatures=spec.n_temperatures,
                       power=spec.schedule_power, n_leapfrog=spec.n_leapfrog, step_size=spec.step_size,
                       batch=spec.sample_batch, seed=context.seed, device=context.device, progress=context.progress)

    def _target_log_weights(self, spec: FlowAISSpec, model, theory, context: RunContext):
        """log w of the latent AIS run backwards from the target ensemble pulled back, z = f^{-1}(x)."""
        import torch

        from reference.ais import power_schedule, reverse_ais_log_weights

        pulled = self._pulled(model, theory)
        configs = self._target_configurations(spec, theory, context).to(device=context.device, dtype=torch.float64)
        schedule = power_schedule(spec.n_temperatures, spec.schedule_power)
        generator = torch.Generator(device=context.device).manual_seed(context.seed + 1)
        with model_phase(spec.model, "evaluation"):
            try:
                latent = [pulled.pull(part) for part in configs.split(spec.sample_batch)]
            except ValueError as err:
                raise UsageError(f"flow-ais --target-samples: {err}") from None
            return torch.cat([reverse_ais_log_weights(pulled, schedule, z, step_size=spec.step_size,
                                                      n_leapfrog=spec.n_leapfrog, generator=generator)
                              for z in latent]).cpu().numpy()

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
