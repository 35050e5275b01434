"""The ``snf`` sampler: a stochastic normalizing flow (`reference.snf`; Wu, Köhler & Noé 2020,
Caselle et al. 2022), float64 by default.

``n_blocks`` = K blocks along AIS's annealing path π_k ∝ q_0^{1−b_k} e^{−b_k S},
b_k = (k/K)^``schedule_power``: block k applies ``layers_per_block`` layers of the coupling flow
``model`` (``hparams``: its other hyperparameters; ``affine`` or ``spline`` for scalar fields,
``u1-equivariant`` for U(1), ``sun-equivariant`` for SU(N) links), then, for k < K, one HMC
trajectory of ``n_leapfrog`` steps of size ``step_size`` at b_k. The layers start as the identity
(so an untrained SNF is ``ais`` with K temperatures, log-weights equal to round-off) and are trained
for ``train_steps`` steps of ``batch_size`` paths (AdamW, learning rate ``lr``, cosine schedule) on
the dissipated work mean(−log w), gradients through the accepted proposals. Then ``n_samples``
paths (``batch`` at a time, from the task's seed) give the chain: the final configurations'
observables and their log-weights log w = −S(y_K) − log q_0(x_0) + Σ log|det J| + Σ (heat of the
HMC steps), exact (E[w] = Z) for any trained parameters. ``target_samples = M`` runs the trained SNF
backwards from M configurations of the target (the cached HMC ensemble that ``ais`` and ``nets`` use:
inverse flow layers and the same HMC steps in reverse order) and records those paths' log-weights,
from which the row gets the forward ESS and the EUBO. The row's ``sampler_info`` records the
acceptance and the action, force and flow-layer evaluations per sample; its timings the training
seconds; its training summary the training's action + force evaluations (per path twice a sample's:
backpropagation included).
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.samplers import register
from suite.samplers.base import RunContext, Sampler, target_configurations, weight_columns
from suite.samplers.spec import option


@dataclass(frozen=True)
class SNFSpec:
    n_samples: int = option(4096, min=2, help="independent SNF samples")
    n_blocks: int = option(16, min=1, help="blocks K: flow layers, then an HMC trajectory at b_k (k < K)")
    schedule_power: float = option(2.0, above=0, help="schedule b_k = (k/K)^power (1: linear)")
    n_leapfrog: int = option(5, min=1, help="leapfrog steps of each block's HMC trajectory (1: MALA)")
    step_size: float = option(0.2, above=0, help="leapfrog step size")
    model: str = option("affine", help="coupling flow whose layers make the blocks: affine, spline, u1-equivariant, "
                                       "...")
    hparams: dict = option({}, help="the model's hyperparameters other than n_layers (a JSON object)")
    layers_per_block: int = option(1, min=1, help="flow layers per block")
    train_steps: int = option(500, min=0, help="training steps on the dissipated work (0: untrained, i.e. AIS)")
    batch_size: int = option(64, min=2, help="training batch (paths)")
    lr: float = option(1e-3, above=0, help="AdamW learning rate (cosine schedule)")
    batch: int = option(1024, min=1, help="paths advanced together when sampling")
    target_samples: int = option(0, min=0, help="HMC configurations of the target (the flow sampler's default "
                                                "ensemble settings) to run the SNF backwards from, for the "
                                                "forward ESS and EUBO (0: none)")

    def check(self) -> None:
        from reference.snf import check_block_model

        check_block_model(self.model, self.hparams)


class SNF(Sampler):
    name = "snf"
    spec = SNFSpec
    default_dtype = "float64"
    markov = False
    trained = True
    runs_table = "SNF runs"
    transport_arm = "corrected"
    description = "a stochastic normalizing flow: AIS with trained flow layers before each HMC step"

    def run(self, spec: SNFSpec, theory, context: RunContext):
        import torch

        from reference.snf import DissipatedWork, build_snf, snf_chain
        from suite.distributed import TRAINING, rank_seed
        from suite.errors import model_phase
        from suite.training import Budget, TrainingLog, atomic_save, train_in_folder

        torch.manual_seed(context.seed)
        snf = build_snf(theory, n_blocks=spec.n_blocks, model=spec.model, hparams=spec.hparams,
                        layers_per_block=spec.layers_per_block, schedule_power=spec.schedule_power,
                        step_size=spec.step_size, n_leapfrog=spec.n_leapfrog)
        snf = snf.to(device=context.device, dtype=context.dtype)
        log = TrainingLog()
        if spec.train_steps:  # its own stream: the sampling noise is independent of the trained parameters
            with model_phase(spec.model, "training"):
                log = train_in_folder(snf, DissipatedWork(snf), context.run_dir, batch_size=spec.batch_size,
                                      lr=spec.lr, budget=Budget(steps=spec.train_steps), resume=context.resume,
                                      seed=rank_seed(context.seed, 0, TRAINING), progress=context.progress)
        atomic_save(snf.state_dict(), context.run_dir / "model.pt")
        snf.eval()
        target = target_configurations(theory, context, spec.target_samples)
        with model_phase(spec.model, "sampling"):
            chain = snf_chain(snf, n_samples=spec.n_samples, batch=spec.batch, seed=context.seed,
                              progress=context.progress, target=target)
        chain.info.update(model=spec.model, schedule_power=spec.schedule_power, train_steps=log.steps)
        chain.timings["training"] = log.seconds
        training = {"objective": DissipatedWork.name, **log.totals(),
                    "n_parameters": sum(p.numel() for p in snf.parameters())}
        return chain, training

    def label(self, spec: dict) -> str:
        return f"{self.name} {spec['model']}, {self.budget_label(spec)}"

    def describe(self, spec: dict) -> str:
        return f"{self.name} ({spec['model']}, {spec['n_blocks']} blocks)"

    def budget_label(self, spec: dict) -> str:
        return (f"{spec['n_blocks']} blocks × {spec['n_leapfrog']} leapfrog steps, {spec['train_steps']} steps × "
                f"batch {spec['batch_size']}, {spec['n_samples']} samples")

    def columns(self, row) -> dict:
        info, training = row.sampler_info, row.training or {}
        return {
            "model": info.get("model"),
            "n_samples": info.get("n_samples"),
            "n_blocks": info.get("n_blocks"),
            "layers_per_block": info.get("layers_per_block"),
            "n_leapfrog": info.get("n_leapfrog"),
            "acceptance": info.get("acceptance"),
            "evaluations_per_sample": info.get("evaluations_per_sample"),
            "train_steps": training.get("steps"),
            "train_seconds": training.get("seconds"),
            "train_evaluations": training.get("evaluations"),  # action + force evaluations of the training
            **weight_columns(row),
        }


register(SNF())
