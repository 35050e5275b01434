"""The ``flow``, ``flow-mh`` and ``flow-pmmh`` samplers: train a model (a normalizing flow or any
model with an exact density, `suite.models`), then use its samples. Flows run in float32 by default.

* ``flow``: draw ``n_samples`` independent samples and reweight them (w = e^{−S}/q).
* ``flow-mh``: an independence Metropolis-Hastings chain of ``n_samples`` steps with the model as
  proposal.
* ``flow-pmmh``: for theories with pseudofermions, a joint model q(U) q(φ | U) trained by the
  reverse KL on (U, φ), then the pseudo-marginal independence chain on U whose weight estimates
  average ``n_pf`` pseudofermion draws per proposal (exact for every ``n_pf`` ≥ 1,
  `suite.flow_sampling`). Its options are those of ``flow`` with another default ``model``
  (``schwinger-pf-flow``), ``n_pf``, the objective ``reverse-kl`` only and no ``target_samples``.

Options: ``model`` (registered name, ``module:function`` or ``file.py:function``), ``hparams``
(the factory's keyword arguments), ``objective`` (reverse-kl, forward-kl, path-gradient),
``batch_size``, ``lr``, ``schedule`` (cosine, constant), ``weight_decay``, ``clip_grad`` (0:
none), the budget ``budget_steps`` / ``budget_seconds`` / ``target_ess`` (0: no such limit; the
first reached stops), ``checkpoint_every``, ``n_samples``, ``sample_batch``, ``ensemble`` (the HMC
training set of forward-kl: ``n_configs``, ``chains``, ``n_therm``, ``separation`` in
trajectories), ``target_samples`` and ``pretrain``.

``target_samples = M`` (0: off) evaluates the trained model's ``log_prob`` on M configurations of
the target — an HMC ensemble with the ``chains``, ``n_therm`` and ``separation`` of ``ensemble``,
generated once per results folder and entry (`suite.harness.ensembles`) — and records the forward
ESS and the EUBO (`suite.metrics.sampler_metrics`), which see the modes that q misses.

``pretrain = {L = 8, budget_steps = 4000}`` first trains the same model, with the same options, on
the same couplings on an L^d lattice, then loads its parameters into the model for the entry's
lattice and trains on for the task's own budget (which may then be zero: the transferred flow is
used as it is). This works for models whose parameters do not depend on the lattice size
(convolutional conditioners). The pretrained flow is stored once per results folder under
``pretrain/<key>/`` (recorded in the row's artifacts as ``pretrain_training``,
``pretrain_model`` and ``pretrain_checkpoint``) and shared by every task that asks for the same pretraining;
it is computed once, under a lock in its folder (``pretrain/<key>/.lock``), even when several
processes or Slurm jobs ask for it at once: the others wait, then reuse it. The training
summary's ``steps`` are those on the entry's lattice; its ``seconds``, ``cpu_seconds`` and ``evaluations``
include the pretraining (its evaluations on the smaller lattice), which is also given on its own under ``pretrain``.

Evaluation counts: the training summary's ``evaluations`` are the action + force evaluations of the
training (`suite.training`, objective by objective); sampling costs one action evaluation per
sample (``sampler_info.evaluations_per_sample = 1``).

A model failing anywhere (its check, training, sampling, evaluation of what it sampled) raises a
one-line `suite.errors.ModelFailure` naming the phase; a diverged training raises
`suite.errors.Diverged` with the training curve written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from suite.errors import UsageError, model_phase
from suite.samplers import register
from suite.samplers.base import RunContext, Sampler
from suite.samplers.spec import MISSING, option

# Spread of log q − log q_fine between samples above which the report warns (reweighting feels e^{±spread}).
LOG_Q_SPREAD_WARNING = 0.1


def _objectives() -> tuple[str, ...]:
    from suite.training import OBJECTIVES

    return tuple(OBJECTIVES)


@dataclass(frozen=True)
class EnsembleSpec:
    """The HMC ensemble forward-kl trains on."""

    n_configs: int = option(8192, min=1, help="configurations in the training set")
    chains: int = option(64, min=1, help="HMC chains producing them")
    n_therm: int = option(500, min=0, help="thermalisation trajectories per chain")
    separation: int = option(4, min=1, help="trajectories between stored configurations")


@dataclass(frozen=True)
class PretrainSpec:
    """Training on a smaller L^d lattice first (see the module docstring)."""

    L: int = option(MISSING, min=2, help="extent of the pretraining lattice")
    budget_steps: int = option(MISSING, min=1, help="training steps on it")


@dataclass(frozen=True)
class FlowSpec:
    model: str = option("affine", help="affine, spline, hybrid, ..., module:function or file.py:function")
    hparams: dict = option({}, help="the model factory's keyword arguments (a JSON object)")
    objective: str = option("reverse-kl", choices=_objectives, help="reverse-kl, forward-kl or path-gradient")
    batch_size: int = option(64, min=2, help="training batch")
    lr: float = option(1e-3, above=0, help="AdamW learning rate")
    schedule: str = option("cosine", choices=("cosine", "constant"), help="learning-rate schedule")
    weight_decay: float = option(0.0, min=0, help="AdamW weight decay")
    clip_grad: float = option(0.0, min=0, help="largest gradient norm (0: no clipping)")
    budget_steps: int = option(1000, min=0, help="training steps (0: no limit)")
    budget_seconds: float = option(0.0, min=0, help="training seconds (0: no limit)")
    target_ess: float = option(0.0, min=0, max=1, help="stop training at this batch ESS (0: no limit)")
    checkpoint_every: int = option(100, min=1, help="steps between training checkpoints")
    n_samples: int = option(16384, min=2, help="samples drawn after training")
    sample_batch: int = option(1024, min=1, help="samples drawn per call of the model")
    ensemble: EnsembleSpec = option(EnsembleSpec(), help="forward-kl's HMC training set")
    target_samples: int = option(0, min=0, help="HMC configurations of the target (chains, n_therm and separation "
                                                "of ensemble) for the forward ESS and EUBO (0: none)")
    pretrain: PretrainSpec | None = option(None, help='train first on a smaller lattice, e.g. {"L": 8, '
                                                      '"budget_steps": 4000}')

    def check(self) -> None:
        if not self.pretrain and not self.has_budget:
            raise UsageError("a flow needs a training budget: budget_steps, budget_seconds or target_ess "
                             "(or a pretrain)")
        from suite.models import check_model_spec

        check_model_spec(self.model, self.hparams)  # hparams checked against the model's schema

    @property
    def has_budget(self) -> bool:
        return bool(self.budget_steps or self.budget_seconds or self.target_ess)

    def budget(self):
        from suite.training import Budget

        return Budget(steps=self.budget_steps or None, seconds=self.budget_seconds or None,
                      target_ess=self.target_ess or None)


PRETRAIN_LOCK = ".lock"  # in pretrain/<key>/: held while the shared pretraining trains

TRAINED = ("model", "hparams", "objective", "batch_size", "lr", "schedule", "weight_decay", "clip_grad", "ensemble",
           "pretrain")  # what a pretraining trains: its key leaves out the task's own budget and sampling options


def pretrain_key(spec: dict, *, theory: str, convention: str, params: dict, seed: int, dtype: str, device: str,
                 catalogue: int) -> str:
    """A stable name for the pretraining a flow spec dict asks for: what it trains, not the task's own budget."""
    trained = {k: spec[k] for k in TRAINED}
    payload = json.dumps({"theory": theory, "convention": convention, "params": params, "spec": trained,
                          "seed": seed, "dtype": dtype, "device": device.split(":")[0], "catalogue": catalogue},
                         sort_keys=True)
    digest = hashlib.sha1(payload.encode()).hexdigest()[:10]
    return f"{theory}-L{spec['pretrain']['L']}-{spec['model']}-s{seed}-{digest}"


def budget_label(spec: dict) -> str:
    """A flow spec's training budget in words, e.g. ``1000 steps × batch 64``, ``50 s × batch 64`` (a
    seconds budget only) or, pretrained, ``6000 steps at L = 8, used as is, batch 128``."""
    steps, batch, pretrain = spec.get("budget_steps"), spec.get("batch_size"), spec.get("pretrain")
    if pretrain:
        then = f" + {steps} steps" if steps else ", used as is"
        return f"{pretrain['budget_steps']} steps at L = {pretrain['L']}{then}, batch {batch}"
    if not steps and spec.get("budget_seconds"):
        return f"{spec['budget_seconds']:g} s × batch {batch}"
    return f"{steps or 'no'} steps × batch {batch}"


def final_batch_ess(log) -> float | None:
    """Mean batch ESS over the last tenth of training (None where the objective logs none)."""
    import numpy as np

    ess = log.column("ess") if log.rows else np.array([])
    ess = ess[np.isfinite(ess)]
    return float(ess[-max(1, len(ess) // 10):].mean()) if len(ess) else None


class Flow(Sampler):
    """``flow``: independent samples of a trained model, reweighted."""

    name = "flow"
    spec = FlowSpec
    default_dtype = "float32"
    markov = False
    runs_table = "Flow runs"
    trained = True
    transport_arm = "flow"
    description = "a trained model's independent samples, reweighted"
    split_over_ranks = ("batch_size", "n_samples")

    # -- study-time checks and labels ------------------------------------------------------------

    def check_task(self, spec: FlowSpec, entry) -> None:
        if spec.pretrain and any(spec.pretrain.L > n for n in entry.lattice):
            raise UsageError(f"pretraining lattice L = {spec.pretrain.L} is larger than the entry's lattice "
                             f"{'x'.join(map(str, entry.lattice))}")

    def is_reference(self, spec: dict) -> bool:
        from reference.flows import is_reference_model

        return is_reference_model(spec.get("model"))

    def label(self, spec: dict) -> str:
        return f"{self.name} {spec['model']} {spec['objective']}, {budget_label(spec)}"

    def describe(self, spec: dict) -> str:
        return f"{self.name} ({spec['model']}, {spec['objective']})"

    def contender(self, spec: dict, by: str) -> str:
        label = {"model": spec.get("model"), "objective": f"{spec.get('model')} {spec.get('objective')}",
                 "sampler": f"{self.name} {spec.get('model')}"}[by]
        return label if by == "sampler" or not self.markov else f"{label} ({self.name.removeprefix('flow-')})"

    def budget_label(self, spec: dict) -> str:
        return budget_label(spec)

    def columns(self, row) -> dict:
        spec, training, metrics = row.sampler, row.training or {}, row.metrics
        ess, log_q_error = metrics.get("ess"), row.sampler_info.get("log_q_integration_error")
        from suite.report.tables import format_value

        pretrain = training.get("pretrain") or {}
        return {
            "model": spec.get("model"),
            "objective": spec.get("objective"),
            "parameters": training.get("n_parameters"),
            "batch": spec.get("batch_size"),
            "pretrain_steps": pretrain.get("steps"),
            "pretrain_L": pretrain.get("L"),
            "train_steps": training.get("steps"),
            "train_seconds": training.get("seconds"),
            "train_cpu_seconds": training.get("cpu_seconds"),
            "train_evaluations": training.get("evaluations"),  # action + force evaluations of the training
            "stop": training.get("stop_reason"),
            "n_samples": ess.get("n_samples") if ess else None,
            "ess": format_value(ess["value"], ess["error"]) if ess else None,
            "pareto_k": ess.get("pareto_k") if ess else None,  # > 0.7: the ESS is not to be trusted
            "log_z": format_value(metrics["log_z"]["value"], metrics["log_z"]["error"]) if "log_z" in metrics else None,
            **{name: format_value(metrics[name]["value"], metrics[name]["error"]) if name in metrics else None
               for name in ("forward_ess", "eubo")},  # from target samples (option target_samples)
            "acceptance": metrics.get("acceptance"),
            "log_q_int_error": log_q_error["max"] if log_q_error else None,  # continuous flows: max |Δ log q|
        }

    def report_section(self, rows, out: Path) -> list[str]:
        """A loud paragraph naming the continuous-flow runs whose log q departs from a finer solve by a
        spread ≥ `LOG_Q_SPREAD_WARNING` (the spread, not a constant offset, is what biases reweighting)."""
        import pandas as pd

        from suite.report.tables import sampler_label, to_markdown

        records = [{"entry": r.entry, "recipe": sampler_label(r.sampler), "seed": r.seed,
                    "mean of abs. Δ log q": round(err["mean"], 3), "spread": round(err["std"], 3),
                    "max": round(err["max"], 3)}
                   for r in rows if (err := r.sampler_info.get("log_q_integration_error"))
                   and err["std"] >= LOG_Q_SPREAD_WARNING]
        if not records:
            return []
        return [f"**Warning: {len(records)} {self.name} run(s) have a log q whose solver error varies by "
                f"≥ {LOG_Q_SPREAD_WARNING} between samples (log q against 8× the steps): their weights, ESS and "
                "log Z are those of the solved density, not of the samples' own; a flow trained on with too "
                "coarse a solver learns to exploit its error.**", "",
                to_markdown(pd.DataFrame.from_records(records)), ""]

    # -- artifacts -------------------------------------------------------------------------------

    def _pretrain_folder(self, spec: dict, context: RunContext) -> Path:
        entry = context.entry
        dtype = str(context.dtype).removeprefix("torch.")
        return context.out / "pretrain" / pretrain_key(spec, theory=entry.theory, convention=entry.convention,
                                                       params=entry.params, seed=context.seed, dtype=dtype,
                                                       device=context.device, catalogue=context.catalogue_version)

    def artifacts(self, spec: FlowSpec, context: RunContext) -> dict[str, Path]:
        if not spec.pretrain:
            return {}
        from suite.samplers.spec import as_dict

        folder = self._pretrain_folder({"name": self.name, **as_dict(spec)}, context)
        return {"pretrain_training": folder / "training.csv", "pretrain_model": folder / "model.pt",
                "pretrain_checkpoint": folder / "checkpoint.pt"}

    def upgrade_v1(self, data: dict) -> dict:
        """Schema-1 rows did not record where their pretraining is: the path its key gives."""
        spec = data.get("sampler", {})
        if not spec.get("pretrain") or "pretrain_training" in data.get("artifacts", {}):
            return data
        params = {k: v for k, v in data["params"].items() if k != "convention"}
        key = pretrain_key(spec, theory=data["theory"], convention=data["params"].get("convention"), params=params,
                           seed=data["seed"], dtype=data["dtype"], device=data["device"],
                           catalogue=data["catalogue_version"])
        folder = Path("pretrain") / key
        artifacts = {**data.get("artifacts", {}), "pretrain_training": str(folder / "training.csv"),
                     "pretrain_model": str(folder / "model.pt"), "pretrain_checkpoint": str(folder / "checkpoint.pt")}
        return {**data, "artifacts": artifacts}

    # -- running ---------------------------------------------------------------------------------

    def _objective(self, spec: FlowSpec, model, theory, context: RunContext):
        from suite.training import OBJECTIVES

        if OBJECTIVES[spec.objective].needs_log_prob and not callable(getattr(model, "log_prob", None)):
            raise UsageError(f"model {spec.model!r} has no log_prob(x), which the {spec.objective} objective needs")
        if spec.objective != "forward-kl":
            return OBJECTIVES[spec.objective](theory)
        from reference.hmc import hmc_ensemble

        ens = spec.ensemble
        configs = hmc_ensemble(theory, n_configs=ens.n_configs, chains=ens.chains, n_therm=ens.n_therm,
                               separation=ens.separation, seed=context.seed + 1, device=context.device,
                               progress=context.progress)
        return OBJECTIVES["forward-kl"](configs.to(context.dtype), theory=theory, seed=context.seed)

    def _train(self, spec: FlowSpec, model, theory, budget, folder: Path, context: RunContext, resume: bool):
        """Train ``model`` with the spec's options and ``budget``, checkpoints and ``training.csv`` in ``folder``."""
        from suite import distributed
        from suite.training import train_in_folder

        objective = self._objective(spec, model, theory, context)
        with model_phase(spec.model, "training"):
            return train_in_folder(model, objective, folder, writer=distributed.is_writer(),
                                   batch_size=spec.batch_size, lr=spec.lr, budget=budget,
                                   weight_decay=spec.weight_decay, schedule=spec.schedule,
                                   clip_grad=spec.clip_grad or None, checkpoint_every=spec.checkpoint_every,
                                   resume=resume, seed=context.seed, progress=context.progress,
                                   group=distributed.current())

    def _build(self, spec: FlowSpec, theory, context: RunContext):
        from suite.models import build_model

        with model_phase(spec.model, "check"):
            return build_model(spec.model, theory, spec.hparams).to(device=context.device, dtype=context.dtype)

    def _pretrained(self, spec: FlowSpec, model, context: RunContext) -> dict:
        """Train the spec's model on the pretraining lattice (or resume/reuse it) and load it into ``model``.

        Returns the pretraining's totals. A finished pretraining is reused: its checkpoint is at its budget.
        """
        from suite.training import Budget, atomic_save

        entry = context.entry
        theory = entry.build_theory(lattice=(spec.pretrain.L,) * len(entry.lattice))
        folder = self.artifacts(spec, context)["pretrain_training"].parent
        small = self._build(spec, theory, context)
        target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        source = {k: tuple(v.shape) for k, v in small.state_dict().items()}
        if target != source:
            differ = sorted(k for k in target.keys() | source.keys() if target.get(k) != source.get(k))
            raise UsageError(f"model {spec.model!r} cannot be pretrained on another lattice: its parameter "
                             f"{differ[0]!r} depends on the lattice size")
        # Tasks sharing a pretraining (other entries, other processes or Slurm jobs) take its folder's
        # lock: one trains, the others wait and then find its checkpoint at the budget and reuse it.
        # Distributed, rank 0 alone takes the lock and writes; the other ranks train alongside it.
        import contextlib

        from suite import distributed
        from suite.harness.rows import file_lock

        writer = distributed.is_writer()
        if writer:
            folder.mkdir(parents=True, exist_ok=True)
        with file_lock(folder / PRETRAIN_LOCK) if writer else contextlib.nullcontext():
            if distributed.current() is not None:  # every rank resumes from what rank 0 found under the lock
                distributed.broadcast_object(None)
            log = self._train(spec, small, theory, Budget(steps=spec.pretrain.budget_steps), folder, context,
                              resume=True)
            if writer:
                atomic_save(small.state_dict(), folder / "model.pt")
        model.load_state_dict(small.state_dict())
        return {"L": spec.pretrain.L, **log.totals()}

    def _weigher(self, spec: FlowSpec):
        """The log-weights of a batch of samples (`suite.flow_sampling.draw`'s ``weigh``)."""
        from suite.flow_sampling import direct_log_weights

        return direct_log_weights

    def _sample(self, spec: FlowSpec, model, theory, context: RunContext):
        """The chain of the trained ``model``: its samples drawn (`suite.flow_sampling.draw`) and weighed."""
        import torch

        from suite import distributed
        from suite.flow_sampling import distributed_draw, draw

        group = distributed.current()
        if group is None:
            drawn = draw(model, theory, spec.n_samples, spec.sample_batch, self._weigher(spec))
        else:  # each rank draws n_samples / N from its own stream; rank 0 gathers them
            torch.manual_seed(distributed.rank_seed(context.seed, group.rank, distributed.SAMPLING))
            drawn = distributed_draw(model, theory, spec.n_samples, spec.sample_batch, group, self._weigher(spec))
        return self._chain_of(drawn, context)

    def _chain_of(self, drawn, context: RunContext):
        """The chain of what `suite.flow_sampling.draw` returned (observables, log-weights, seconds)."""
        from suite.flow_sampling import direct_sampling_of

        return direct_sampling_of(*drawn)

    def _target_log_weights(self, spec: FlowSpec, model, theory, context: RunContext):
        """log w at the folder's cached target ensemble of the entry (`suite.harness.ensembles`)."""
        from suite.flow_sampling import target_log_weights

        if not callable(getattr(model, "log_prob", None)):
            raise UsageError(f"model {spec.model!r} has no log_prob(x), which target_samples needs")
        configs = self._target_configurations(spec, theory, context)
        with model_phase(spec.model, "evaluation"):
            return target_log_weights(model, theory, configs.to(context.device), spec.sample_batch,
                                      context.dtype)

    def _target_configurations(self, spec: FlowSpec, theory, context: RunContext):
        """``target_samples`` configurations of the folder's cached target ensemble (``ensemble`` settings)."""
        from suite.harness.ensembles import target_ensemble

        ens = spec.ensemble
        return target_ensemble(theory, context.entry, context.out, n_configs=spec.target_samples,
                               chains=ens.chains, n_therm=ens.n_therm, separation=ens.separation,
                               progress=context.progress)

    def run(self, spec: FlowSpec, theory, context: RunContext):
        import torch

        from suite import distributed
        from suite.training import TrainingLog, atomic_save

        group = distributed.current()
        if group is not None:
            distributed.split(spec.n_samples, group, "n_samples")
        torch.manual_seed(context.seed)
        model = self._build(spec, theory, context)
        pretrained = self._pretrained(spec, model, context) if spec.pretrain else None
        log = TrainingLog()
        if spec.has_budget:
            log = self._train(spec, model, theory, spec.budget(), context.run_dir, context, resume=context.resume)
        if group is None or group.writer:
            atomic_save(model.state_dict(), context.run_dir / "model.pt")
        model.eval()
        with model_phase(spec.model, "sampling"):
            chain = self._sample(spec, model, theory, context)
        training = {
            "objective": spec.objective,
            **log.totals(),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "final_batch_ess": final_batch_ess(log),
        }
        if pretrained is not None:
            training["pretrain"] = pretrained
            training["seconds"] += pretrained["seconds"]
            training["cpu_seconds"] += pretrained["cpu_seconds"]
            both = (training["evaluations"], pretrained.get("evaluations"))
            training["evaluations"] = None if None in both else sum(both)
        # sampling costs one action evaluation per sample (its weight, or its Metropolis ratio)
        chain.info = {"n_samples": spec.n_samples, "seed": context.seed,
                      "dtype": str(context.dtype).removeprefix("torch."),
                      "evaluations_per_sample": self._evaluations_per_sample(spec), **chain.info}
        if group is not None:
            chain.info["distributed"] = group.info("sliced" if distributed.can_slice(model) else "per-rank")
        if spec.target_samples and (group is None or group.writer):
            chain.target_log_weights = self._target_log_weights(spec, model, theory, context)
        if callable(getattr(model, "log_q_integration_error", None)):  # continuous flows: log q has a solver error
            with model_phase(spec.model, "evaluation"):
                chain.info["log_q_integration_error"] = model.log_q_integration_error(min(spec.n_samples, 1024))
        return chain, training

    def _evaluations_per_sample(self, spec: FlowSpec) -> int:
        return 1


class FlowMH(Flow):
    """``flow-mh``: an independence Metropolis-Hastings chain with the trained model as proposal."""

    name = "flow-mh"
    markov = True
    transport_arm = None  # a Markov chain: its ESS is not the reweighting ESS the comparison is in
    description = "an independence Metropolis chain with a trained model as proposal"

    def _chain_of(self, drawn, context: RunContext):
        from suite.flow_sampling import independence_metropolis_of

        return independence_metropolis_of(*drawn, context.seed)


@dataclass(frozen=True)
class PseudoMarginalSpec(FlowSpec):
    model: str = option("schwinger-pf-flow", help="a joint model of links and pseudofermions: schwinger-pf-flow, "
                                                  "module:function or file.py:function")
    n_pf: int = option(4, min=1, help="pseudofermion draws per proposal, averaged in its weight estimate")

    def check(self) -> None:
        super().check()
        if self.objective != "reverse-kl":
            raise UsageError(f"flow-pmmh trains with the reverse KL on the joint (U, φ) only, got objective "
                             f"{self.objective!r}")
        if self.target_samples:
            raise UsageError("flow-pmmh has no target_samples: the target ensemble has no pseudofermions")


class FlowPMMH(FlowMH):
    """``flow-pmmh``: the pseudo-marginal independence Metropolis chain of a joint model q(U) q(φ | U)
    on a theory with pseudofermions (`suite.flow_sampling`, module docstring): training by the
    reverse KL on the joint (U, φ) (`suite.training.JointReverseKL`), then each proposal's weight
    estimated from ``n_pf`` pseudofermion draws. The model needs ``sample_joint`` and
    ``sample_pseudofermions``, the theory ``joint_action`` (the schwinger pseudofermion form);
    ``sampler_info.evaluations_per_sample`` is ``n_pf`` (joint actions, each a CG solve)."""

    name = "flow-pmmh"
    spec = PseudoMarginalSpec
    description = "a pseudo-marginal independence Metropolis chain with a joint model of links and pseudofermions"

    def label(self, spec: dict) -> str:
        return f"{super().label(spec)}, n_pf {spec['n_pf']}"

    def _objective(self, spec: PseudoMarginalSpec, model, theory, context: RunContext):
        from suite.training import JointReverseKL

        if not callable(getattr(theory, "joint_action", None)):
            raise UsageError("flow-pmmh needs a theory with pseudofermions (joint_action: the schwinger "
                             "pseudofermion form)")
        return JointReverseKL(theory)

    def _weigher(self, spec: PseudoMarginalSpec):
        from suite.flow_sampling import pseudo_marginal_log_weights

        return pseudo_marginal_log_weights(spec.n_pf)

    def _evaluations_per_sample(self, spec: PseudoMarginalSpec) -> int:
        return spec.n_pf


register(Flow())
register(FlowMH())
register(FlowPMMH())
