"""The ``nets`` sampler: the Non-Equilibrium Transport Sampler (`reference.nets`; Albergo and
Vanden-Eijnden, arXiv:2410.02711) — annealed Langevin dynamics from the field space's prior to the
theory with a learned drift, importance-weighted; float64 by default.

Sampling options (changeable without retraining): ``n_samples`` independent walkers (``batch`` at a
time), each through ``n_steps`` = K Euler–Maruyama steps of dX = [−ε∇U_t + b_θ(t, X)] dt + √(2ε) dW
with the diffusivity ``diffusivity`` = ε, weighted by the discrete path-measure ratio of
`reference.nets` (E[w] = Z at every K and ε, so the row's log Z estimate is unbiased in Z).

``drift``: the path and the learned drift — ``schedule_power`` p of b(t) = t^p, the network
(``hidden``, ``n_layers``, ``kernel_size``: a periodic convolutional net, the time an input channel),
its PINN training (``budget_steps``, 0: no drift, plain annealed Langevin dynamics; ``batch_size``
walkers per step, AdamW with ``lr`` on a cosine schedule, the divergence ``exact`` or ``hutchinson``,
the training SDE's ``train_n_steps`` and ``train_diffusivity``). The trained drift is stored once per
results folder under ``nets/<key>/`` (``training.csv``, ``model.pt``, ``checkpoint.pt``; recorded in
the row's artifacts as ``nets_training``, ``nets_model``, ``nets_checkpoint``), keyed by the theory,
its lattice and parameters, the ``drift`` table, the seed, dtype, device type and catalogue version —
not by the sampling options: runs that differ only in those reuse it (under a lock in its folder, so
concurrent tasks train it once). A reused drift's training summary is that of its training, with
``reused`` true; its seconds are in the chain's timings as ``training``.

Real fields (φ⁴) and angles (2D U(1); the Langevin steps wrap, the prior is uniform Haar) on 1–3
dimensional lattices; other field spaces are refused when a study is loaded. The row's
``sampler_info`` records the action, force and drift evaluations per sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from suite.errors import Diverged, UsageError
from suite.samplers import register
from suite.samplers.base import RunContext, Sampler, target_configurations, weight_columns
from suite.samplers.spec import as_dict, option

LOCK = ".lock"  # in nets/<key>/: held while the drift trains


@dataclass(frozen=True)
class DriftSpec:
    """The path and the learned drift; changing any of these trains a new drift."""

    schedule_power: float = option(2.0, min=1, help="path b(t) = t^power from the prior (t = 0) to the theory")
    budget_steps: int = option(500, min=0, help="PINN training steps (0: no drift, annealed Langevin dynamics)")
    batch_size: int = option(64, min=2, help="training walkers per step")
    lr: float = option(3e-3, above=0, help="AdamW learning rate (cosine schedule)")
    hidden: int = option(16, min=1, help="channels of the drift network's hidden layers")
    n_layers: int = option(3, min=1, help="periodic convolutions of the drift network")
    kernel_size: int = option(3, min=1, help="odd kernel size of the convolutions")
    divergence: str = option("hutchinson", choices=("exact", "hutchinson"), help="divergence of the drift in the "
                             "loss: exact (a network pass per field component) or Hutchinson (two probes)")
    train_n_steps: int = option(20, min=1, help="time steps of the training walkers' SDE")
    train_diffusivity: float = option(1.0, above=0, help="diffusivity of the training walkers' SDE")

    def check(self) -> None:
        if self.kernel_size % 2 == 0:
            raise UsageError(f"option 'drift': kernel_size must be odd, got {self.kernel_size}")


@dataclass(frozen=True)
class NETSSpec:
    n_samples: int = option(4096, min=2, help="independent NETS samples")
    n_steps: int = option(100, min=1, help="time steps K of the sampling SDE (no retraining)")
    diffusivity: float = option(1.0, above=0, help="Langevin diffusivity ε of the sampling SDE (no retraining)")
    batch: int = option(1024, min=1, help="walkers advanced together")
    checkpoint_every: int = option(100, min=1, help="training steps between checkpoints of the drift")
    target_samples: int = option(0, min=0, help="HMC configurations of the target (the flow sampler's default "
                                                "ensemble settings) to run NETS backwards from, for the forward "
                                                "ESS and EUBO (0: none)")
    drift: DriftSpec = option(DriftSpec(), help='the path and the learned drift, e.g. {"budget_steps": 200}')


def drift_key(drift: dict, theory, *, seed: int, dtype: str, device: str, catalogue: int) -> str:
    """The name of a trained drift's folder: what it trains on and with, not the sampling options."""
    payload = json.dumps({"theory": type(theory).__name__, "lattice": list(theory.lattice), "params": theory.params,
                          "drift": drift, "seed": seed, "dtype": dtype, "device": device.split(":")[0],
                          "catalogue": catalogue}, sort_keys=True, default=str)
    lattice = "x".join(map(str, theory.lattice))
    return f"{type(theory).__name__.lower()}-{lattice}-s{seed}-{hashlib.sha1(payload.encode()).hexdigest()[:10]}"


class NETS(Sampler):
    name = "nets"
    spec = NETSSpec
    default_dtype = "float64"
    markov = False
    runs_table = "NETS runs"
    transport_arm = "corrected"
    description = "annealed Langevin dynamics from the prior with a learned transport drift, exactly weighted"

    def check_task(self, spec: NETSSpec, entry) -> None:
        from reference.nets import check_theory

        try:
            check_theory(entry.build_theory())
        except UsageError as err:
            raise UsageError(f"entry {entry.id!r}: {err}") from None

    def label(self, spec: dict) -> str:
        return f"{self.name}, {self.budget_label(spec)}"

    def describe(self, spec: dict) -> str:
        return f"{self.name} ({spec['n_steps']} steps, ε = {spec['diffusivity']})"

    def budget_label(self, spec: dict) -> str:
        return (f"{spec['drift']['budget_steps'] or 'no'} training steps, {spec['n_steps']} steps × ε "
                f"{spec['diffusivity']}, {spec['n_samples']} samples")

    def columns(self, row) -> dict:
        info, training = row.sampler_info, row.training or {}
        return {
            "n_samples": info.get("n_samples"),
            "n_steps": info.get("n_steps"),
            "diffusivity": info.get("diffusivity"),
            "train_steps": training.get("steps"),
            "train_seconds": training.get("seconds"),
            "evaluations_per_sample": info.get("evaluations_per_sample"),
            **weight_columns(row),
        }

    def _folder(self, spec: NETSSpec, theory, context: RunContext) -> Path:
        return context.out / "nets" / drift_key(as_dict(spec.drift), theory, seed=context.seed,
                                                dtype=str(context.dtype).removeprefix("torch."),
                                                device=context.device, catalogue=context.catalogue_version)

    def artifacts(self, spec: NETSSpec, context: RunContext) -> dict[str, Path]:
        if not spec.drift.budget_steps:
            return {}
        folder = self._folder(spec, context.entry.build_theory(), context)
        return {"nets_training": folder / "training.csv", "nets_model": folder / "model.pt",
                "nets_checkpoint": folder / "checkpoint.pt"}

    def _trained_drift(self, spec: NETSSpec, theory, context: RunContext):
        """The drift of ``spec.drift`` trained (or resumed, or reused) in its folder; (drift, training summary)."""
        import torch

        from reference.nets import PINN, DriftNet, NETSModel
        from suite.harness.rows import file_lock
        from suite.samplers.flow import final_batch_ess
        from suite.training import Budget, TrainingDiverged, atomic_save, train

        d, folder = spec.drift, self._folder(spec, theory, context)
        torch.manual_seed(context.seed)
        drift = DriftNet(theory, hidden=d.hidden, n_layers=d.n_layers, kernel_size=d.kernel_size)
        model = NETSModel(drift, d.train_n_steps + 1).to(device=context.device, dtype=context.dtype)
        objective = PINN(theory, n_steps=d.train_n_steps, diffusivity=d.train_diffusivity, power=d.schedule_power,
                         divergence=d.divergence)
        folder.mkdir(parents=True, exist_ok=True)
        with file_lock(folder / LOCK):
            reused = (folder / "model.pt").exists()
            try:
                log = train(model, objective, batch_size=d.batch_size, lr=d.lr, budget=Budget(steps=d.budget_steps),
                            checkpoint_path=folder / "checkpoint.pt", checkpoint_every=spec.checkpoint_every,
                            resume=True, seed=context.seed, progress=context.progress)
            except TrainingDiverged as err:
                err.log.to_csv(folder / "training.csv")
                raise Diverged(str(err), training={"objective": objective.name, **err.log.totals()}) from None
            log.to_csv(folder / "training.csv")
            atomic_save(model.state_dict(), folder / "model.pt")
        model.eval()
        training = {"objective": objective.name, **log.totals(),
                    "n_parameters": sum(p.numel() for p in drift.parameters()), "final_batch_ess": final_batch_ess(log),
                    "reused": reused}
        return drift, training

    def run(self, spec: NETSSpec, theory, context: RunContext):
        from reference.nets import check_theory, run_nets

        check_theory(theory)
        drift, training = self._trained_drift(spec, theory, context) if spec.drift.budget_steps else (None, None)
        target = target_configurations(theory, context, spec.target_samples)
        chain = run_nets(theory, drift, n_samples=spec.n_samples, n_steps=spec.n_steps,
                         diffusivity=spec.diffusivity, power=spec.drift.schedule_power, batch=spec.batch,
                         seed=context.seed, dtype=context.dtype, device=context.device, progress=context.progress,
                         target=target)
        chain.timings["training"] = training["seconds"] if training else 0.0
        return chain, training


register(NETS())
