"""The ``correlated`` sampler: ⟨O⟩_{α₂} − ⟨O⟩_{α₁} from one HMC ensemble at the entry's couplings
α₁, mapped to the couplings α₂ = ``target`` by a trained invertible map f (correlated ensembles;
the estimator, its Γ-method errors and the equal-cost baseline are in `suite.correlated`).

Why a sampler plugin and not an option of ``hmc``: a task is (entry, sampler spec, seed) and gives
one row, and what this computes is a measurement on an HMC chain of the entry together with a
trained model and two more ensembles. As a plugin, the entry stays α₁ (its chain's observables are
estimated and pulled against α₁'s references like any HMC row's), the spec names α₂, f and the
budget, the study schema and CLI options come from its spec, and its rows get their own runs table
and report section (`Sampler.report_section`); HMC tasks, their keys and rows are untouched.

A run, every phase timed (wall and CPU seconds) and counted (action and force evaluations, flow passes):

1. the α₁ ensemble: HMC with the options of ``hmc`` (float64), its configurations kept in Monte
   Carlo order (`reference.hmc.run_hmc`'s ``on_measurement``);
2. f's training set: ``train_configs`` configurations of an independent HMC run at α₁ (seed + 1),
   so that f does not depend on the configurations it is evaluated on;
3. f: the transform of the model ``model`` with ``hparams`` built for the entry's theory — the
   coupling layers of `reference.flows` without their prior (the base distribution is the α₁
   ensemble); ``init = "identity"`` zeroes the last layer of every conditioner, so training starts
   from plain reweighting (affine couplings and rescalings are then exactly the identity, circle
   maps up to rounding); trained for ``budget_steps`` AdamW steps (cosine schedule, batch
   ``batch_size``, rate ``lr``) on `suite.training.TransportKL`, E_{α₁}[S₂(f(U)) − log|det ∂f/∂U|];
   its curve is ``training.csv``, its parameters ``model.pt``;
4. the mapping: every configuration U of the ensemble to f(U), log w = −S₂(f(U)) + log|det J| + S₁(U)
   and the α₂ theory's observables at f(U) (``mapped.npz``: a chain with those observables and log w);
5. the baseline: two independent HMC ensembles, at α₁ (seed + 2) and α₂ (seed + 3), of
   ``baseline_traj`` measurements per chain (``baseline_alpha1.npz``, ``baseline_alpha2.npz``).

The row's ``metrics["correlated"]`` holds, per observable, the difference with error and τ_int,
⟨O⟩₂, the baseline difference with its error (and at equal cost), the variance reductions, the
exact difference and the pulls where the references of both couplings are known; and log(Z₂/Z₁) =
log⟨w⟩₁ with error (and pull). α₂'s references are those of the catalogue entry with the same
theory, convention, lattice and couplings if there is one (named in the row's
``sampler_info.target_entry``), else those the entry's exact solver gives at α₂ (e.g. the U(1) character expansion at β + Δβ, the free field at another mass).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

from suite.errors import Diverged, UsageError, model_phase
from suite.samplers import register
from suite.samplers.base import RunContext, Sampler
from suite.samplers.hmc import HMCSpec
from suite.samplers.spec import MISSING, option

INITS = ("identity", "random")
MAPPED, BASELINE = "mapped.npz", ("baseline_alpha1.npz", "baseline_alpha2.npz")


@dataclass(frozen=True)
class CorrelatedSpec:
    target: dict = option(MISSING, help='the couplings α₂ in the entry\'s convention, overriding the entry\'s '
                                        '(α₁), e.g. {"lam": 5.55}')
    model: str = option("affine", help="the model whose transform, without its prior, is the map f")
    hparams: dict = option({}, help="the model factory's keyword arguments (a JSON object)")
    init: str = option("identity", choices=INITS, help="f before training: the identity (last conditioner "
                                                       "layers zeroed) or the model's own initialisation")
    batch_size: int = option(64, min=2, help="training batch")
    lr: float = option(1e-3, above=0, help="AdamW learning rate")
    budget_steps: int = option(500, min=0, help="training steps (0: f as initialised)")
    train_configs: int = option(4096, min=2, help="α₁ configurations of an independent HMC run f is trained on")
    sample_batch: int = option(1024, min=1, help="configurations mapped per call of f")
    hmc: HMCSpec = option(HMCSpec(), help="the HMC of the α₁ ensemble, f's training set and both baseline ensembles")
    baseline_traj: int = option(0, min=0, help="measurements per chain of each baseline ensemble (0: hmc.n_traj)")

    def check(self) -> None:
        if not self.target:
            raise UsageError('target needs at least one coupling, e.g. {"beta": 2.25}')
        for name, value in self.target.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UsageError(f"target coupling {name!r} must be a finite number, got {value!r}")
        if self.hmc.costly_every != 1:
            raise UsageError("hmc.costly_every must be 1 here: every configuration is mapped with all its observables")
        if self.batch_size > self.train_configs and self.budget_steps:
            raise UsageError(f"batch_size {self.batch_size} exceeds the {self.train_configs} training configurations")
        from suite.models import check_model_spec

        check_model_spec(self.model, self.hparams)


def target_entry(entry, target: dict):
    """The entry at the couplings α₂: the catalogue's entry with the same theory, convention, lattice
    and couplings if there is one, else ``entry`` with its couplings replaced and no stored references."""
    from suite.catalogue import entries

    params = {**entry.params, **target}
    for other in entries():
        if (other.theory, other.convention, other.lattice, other.params) == \
                (entry.theory, entry.convention, entry.lattice, params):
            return other
    return dataclasses.replace(entry, id=f"{entry.id} at {couplings_label(target)}", params=params, reference={})


def _references(entry) -> dict:
    """The entry's reference values; none where its exact solver does not apply (e.g. λ ≠ 0 for the free field)."""
    try:
        return entry.reference_values()
    except ValueError:
        return dict(entry.reference)


class _Clock:
    """Wall and CPU seconds of the phases of a run."""

    def __init__(self):
        self.phases: dict[str, dict] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.phases[name] = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def _identity_init(transform, model: str) -> None:
    """Zero the last layer of every conditioner (`reference.flows.couplings.ConvNet`) of ``transform``."""
    import torch

    from reference.flows.couplings import ConvNet

    nets = [m for m in transform.modules() if isinstance(m, ConvNet)]
    if not nets:
        raise UsageError(f"model {model!r} has no ConvNet conditioners to start from the identity; use init = 'random'")
    with torch.no_grad():
        for net in nets:
            last = [layer for layer in net if isinstance(layer, torch.nn.modules.conv._ConvNd)][-1]
            last.weight.zero_()
            last.bias.zero_()


class Correlated(Sampler):
    name = "correlated"
    spec = CorrelatedSpec
    default_dtype = "float64"
    markov = True
    trained = True
    runs_table = "Correlated-ensemble runs"
    description = "differences between two couplings from one HMC ensemble mapped by a trained flow"

    # -- study-time checks and labels ------------------------------------------------------------

    def check_task(self, spec: CorrelatedSpec, entry) -> None:
        unknown = sorted(set(spec.target) - set(entry.params))
        if unknown:
            raise UsageError(f"target coupling {unknown[0]!r} is not one of entry {entry.id!r}'s: "
                             f"{', '.join(entry.params)}")

    def is_reference(self, spec: dict) -> bool:
        from reference.flows import is_reference_model

        return is_reference_model(spec.get("model"))

    def label(self, spec: dict) -> str:
        return f"{self.name} to {couplings_label(spec['target'])}, {spec['model']}, {spec['budget_steps']} steps"

    def describe(self, spec: dict) -> str:
        return f"{self.name} (to {couplings_label(spec['target'])}, {spec['model']})"

    def budget_label(self, spec: dict) -> str:
        hmc = spec["hmc"]
        return (f"{hmc['chains']} chains × {hmc['n_traj']} trajectories, {spec['budget_steps']} steps × batch "
                f"{spec['batch_size']}")

    def columns(self, row) -> dict:
        from suite.report.tables import format_value

        found, training = row.metrics.get("correlated", {}), row.training or {}
        log_z = found.get("log_z_ratio", {})
        reductions = [record["variance_reduction"]["cpu_seconds"] for name, record in found.get("observables", {}).items()
                      if "variance_reduction" in record and not name.startswith("corr_")]
        return {
            "target": couplings_label(row.sampler["target"]),
            "model": row.sampler.get("model"),
            "train_steps": training.get("steps"),
            "weights_ess": found.get("weights_ess"),
            "log_z_ratio": format_value(log_z["value"], log_z["error"]) if log_z else None,
            "log_z_ratio_pull": log_z.get("pull"),
            "cpu_seconds": found.get("cost", {}).get("cpu_seconds"),
            "baseline_cpu_seconds": found.get("baseline_cost", {}).get("cpu_seconds"),
            "variance_reduction_median": float(sorted(reductions)[len(reductions) // 2]) if reductions else None,
        }

    def artifacts(self, spec: CorrelatedSpec, context: RunContext) -> dict[str, Path]:
        return {"mapped": context.run_dir / MAPPED,
                **{name.removesuffix(".npz"): context.run_dir / name for name in BASELINE}}

    def report_section(self, rows, out: Path) -> list[str]:
        from suite.report.correlated import correlated_section

        return correlated_section(rows, out)

    # -- running ---------------------------------------------------------------------------------

    def _ensemble(self, spec: CorrelatedSpec, theory, n_traj: int, seed: int, context: RunContext, keep: bool):
        """An HMC chain with the options of ``spec.hmc`` and, if ``keep``, its configurations (R, N, *shape)."""
        import torch

        from reference.hmc import run_hmc

        kept = []
        chain = run_hmc(theory, chains=spec.hmc.chains, n_therm=spec.hmc.n_therm, n_traj=n_traj, seed=seed,
                        settings=spec.hmc.settings(), dtype=context.dtype, device=context.device,
                        progress=context.progress, measure_every=spec.hmc.measure_every,
                        on_measurement=kept.append if keep else None)
        return chain, torch.stack(kept, 1) if keep else None

    def _map(self, spec, transform, source, target, configs):
        """(α₂ observables at f(U), log w), each (R, N), for configurations (R, N, *shape)."""
        import numpy as np
        import torch

        chains, n = configs.shape[:2]
        flat = configs.flatten(0, 1)
        observables, log_w = {}, []
        with torch.no_grad():
            for start in range(0, len(flat), spec.sample_batch):
                x = flat[start:start + spec.sample_batch]
                y, ladj = transform(x)
                log_w.append(-target.action(y) + ladj + source.action(x))
                for name, value in target.observables(y).items():
                    observables.setdefault(name, []).append(value)
        shape = (chains, n)
        return ({name: torch.cat(parts).reshape(shape).cpu().numpy() for name, parts in observables.items()},
                torch.cat(log_w).reshape(shape).cpu().numpy().astype(np.float64))

    def _train(self, spec: CorrelatedSpec, transform, source, target, configs, context: RunContext):
        from suite.training import Budget, TrainingDiverged, TransportKL, train

        objective = TransportKL(configs, source, target, seed=context.seed)
        with model_phase(spec.model, "training"):
            try:
                log = train(transform, objective, batch_size=spec.batch_size, lr=spec.lr,
                            budget=Budget(steps=spec.budget_steps), checkpoint_path=context.run_dir / "checkpoint.pt",
                            resume=context.resume, seed=context.seed, progress=context.progress)
            except TrainingDiverged as err:
                err.log.to_csv(context.run_dir / "training.csv")
                raise Diverged(str(err), training={"objective": objective.name, **err.log.totals()}) from None
        log.to_csv(context.run_dir / "training.csv")
        return log

    def run(self, spec: CorrelatedSpec, theory, context: RunContext):
        import torch

        from suite.catalogue import entries
        from suite.chain import Chain
        from suite.correlated import correlated_metrics
        from suite.metrics import estimate_observables
        from suite.models import build_model
        from suite.training import TrainingLog, atomic_save

        if context.entry is None:
            raise UsageError("the correlated sampler needs a catalogue entry (run it through a study or lftbench run)")
        entry2 = target_entry(context.entry, spec.target)
        theory2 = entry2.build_theory()
        clock, hmc = _Clock(), spec.hmc
        with clock.phase("ensemble"):
            chain, configs = self._ensemble(spec, theory, hmc.n_traj, context.seed, context, keep=True)
        torch.manual_seed(context.seed)
        with model_phase(spec.model, "check"):
            model = build_model(spec.model, theory, spec.hparams)
            transform = getattr(model, "transform", None)
            if not isinstance(transform, torch.nn.Module):
                raise UsageError(f"model {spec.model!r} has no transform (its bijection without the prior) to map with")
            transform = transform.to(device=context.device, dtype=context.dtype)
            if spec.init == "identity":
                _identity_init(transform, spec.model)
        log, train_chain = TrainingLog(), None
        if spec.budget_steps:
            n_train = math.ceil(spec.train_configs / hmc.chains)
            with clock.phase("training_set"):
                train_chain, train_configs = self._ensemble(spec, theory, n_train, context.seed + 1, context, keep=True)
            log = self._train(spec, transform, theory, theory2, train_configs.flatten(0, 1)[:spec.train_configs],
                              context)
            clock.phases["training"] = {"seconds": log.seconds, "cpu_seconds": log.cpu_seconds}
        atomic_save(transform.state_dict(), context.run_dir / "model.pt")
        transform.eval()
        with clock.phase("mapping"), model_phase(spec.model, "mapping"):
            mapped, log_w = self._map(spec, transform, theory, theory2, configs)
        Chain(observables=mapped, log_weights=log_w).save(context.run_dir / MAPPED)
        baseline_traj = spec.baseline_traj or hmc.n_traj
        baseline = []
        for i, (couplings, name) in enumerate(zip((theory, theory2), BASELINE)):
            with clock.phase(f"baseline_alpha{i + 1}"):
                part, _ = self._ensemble(spec, couplings, baseline_traj, context.seed + 2 + i, context, keep=False)
            part.save(context.run_dir / name)
            baseline.append((part, couplings))

        configs_mapped = chain.shape[0] * chain.shape[1]
        evaluations = {
            "ensemble": hmc.chains * chain.info["evaluations_per_chain"],
            "training_set": hmc.chains * train_chain.info["evaluations_per_chain"] if train_chain else 0,
            # per training sample: S₂(f(U)) with its gradient and S₁(U), and the flow's forward and backward pass
            "training": log.steps * spec.batch_size * 4,
            # per configuration: S₁, S₂ and one forward pass of f
            "mapping": configs_mapped * 3,
            **{f"baseline_alpha{i + 1}": hmc.chains * part.info["evaluations_per_chain"]
               for i, (part, _) in enumerate(baseline)},
        }
        for name, count in evaluations.items():
            clock.phases.setdefault(name, {"seconds": 0.0, "cpu_seconds": 0.0})["evaluations"] = count
        cost, baseline_cost = (
            {unit: sum(clock.phases[p].get(unit, 0) for p in phases) for unit in ("seconds", "cpu_seconds", "evaluations")}
            for phases in (("ensemble", "training_set", "training", "mapping"), ("baseline_alpha1", "baseline_alpha2")))
        cost["phases"] = clock.phases
        chain.metrics = {"correlated": correlated_metrics(
            theory, chain.observables, mapped, log_w,
            tuple(estimate_observables(part, couplings) for part, couplings in baseline),
            cost, baseline_cost, _references(context.entry), _references(entry2))}
        chain.timings = {**chain.timings, **{name: phase["seconds"] for name, phase in clock.phases.items()}}
        in_catalogue = entry2.id in {e.id for e in entries()}
        chain.info = {**chain.info, "target": {**entry2.params}, "target_entry": entry2.id if in_catalogue else None,
                      "train_configs": spec.train_configs if spec.budget_steps else 0, "baseline_traj": baseline_traj}
        training = {"objective": "transport-kl", **log.totals(),
                    "n_parameters": sum(p.numel() for p in transform.parameters())}
        return chain, training


def couplings_label(params: dict) -> str:
    """Couplings in words, ``lam = 5.55`` (a params dict's ``convention`` left out)."""
    return ", ".join(f"{k} = {v}" for k, v in params.items() if k != "convention")


register(Correlated())
