"""Sampler specs: a name plus options, validated, and the function that turns one into a Chain.

A spec is a dict such as ``{"name": "hmc", "chains": 16, "n_therm": 500, "n_traj": 1000}`` or
``{"name": "flow", "model": "affine", "objective": "reverse-kl", "budget_steps": 2000}``.

* ``hmc``: Hybrid Monte Carlo (`reference.hmc`), float64 by default.
* ``flow``: train a model, then draw ``n_samples`` independent samples and reweight them.
* ``flow-mh``: train a model, then run an independence Metropolis-Hastings chain of
  ``n_samples`` steps with the model as proposal.

Flow options: ``model`` (registered name, ``module:function`` or ``file.py:function``),
``hparams`` (the factory's keyword arguments), ``objective`` (reverse-kl, forward-kl,
path-gradient), ``batch_size``, ``lr``, ``schedule`` (cosine, constant), ``weight_decay``,
``clip_grad`` (0: none), the budget ``budget_steps`` / ``budget_seconds`` / ``target_ess``
(0: no such limit; the first reached stops), ``checkpoint_every``, ``n_samples``,
``sample_batch``, ``ensemble`` (the HMC training set of forward-kl: ``n_configs``,
``chains``, ``n_therm``, ``separation`` in trajectories) and ``pretrain``.

``pretrain = {L = 8, budget_steps = 4000}`` first trains the same model, with the same options, on
the same couplings on an L^d lattice, then loads its parameters into the model for the entry's
lattice and trains on for the task's own budget (which may then be zero: the transferred flow is
used as it is). This works for models whose parameters do not depend on the lattice size
(convolutional conditioners). The pretrained flow is stored once per results folder under
``pretrain/<key>/`` and shared by every task that asks for the same pretraining. The training
summary's ``steps`` are those on the entry's lattice; its ``seconds`` and ``cpu_seconds`` include the
pretraining, which is also given on its own under ``pretrain``. Flows run in float32 by default.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from suite.errors import UsageError

HMC_DEFAULTS = {
    "chains": 16,
    "n_therm": 500,
    "n_traj": 1000,
    "integrator": "leapfrog",
    "n_steps": 10,
    "trajectory_length": 1.0,
    "target_acceptance": 0.8,
    "adapt": True,
}
FLOW_DEFAULTS = {
    "model": "affine",
    "hparams": {},
    "objective": "reverse-kl",
    "batch_size": 64,
    "lr": 1e-3,
    "schedule": "cosine",
    "weight_decay": 0.0,
    "clip_grad": 0.0,
    "budget_steps": 1000,
    "budget_seconds": 0.0,
    "target_ess": 0.0,
    "checkpoint_every": 100,
    "n_samples": 16384,
    "sample_batch": 1024,
    "ensemble": {"n_configs": 8192, "chains": 64, "n_therm": 500, "separation": 4},
    "pretrain": {},
}
PRETRAIN_FIELDS = {"L": 2, "budget_steps": 1}  # field -> smallest allowed value
SAMPLER_DEFAULTS = {"hmc": HMC_DEFAULTS, "flow": FLOW_DEFAULTS, "flow-mh": FLOW_DEFAULTS}
DEFAULT_DTYPE = {"hmc": "float64", "flow": "float32", "flow-mh": "float32"}
MINIMA = {  # option -> smallest allowed value
    "hmc": {"chains": 1, "n_therm": 0, "n_traj": 1},
    "flow": {"batch_size": 2, "budget_steps": 0, "budget_seconds": 0, "target_ess": 0, "checkpoint_every": 1,
             "n_samples": 2, "sample_batch": 1, "clip_grad": 0, "weight_decay": 0},
}
MINIMA["flow-mh"] = MINIMA["flow"]


def _has_type_of(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def normalise_spec(spec: dict) -> dict:
    """The full spec with defaults filled in; a UsageError for an unknown sampler, option or bad number."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in SAMPLER_DEFAULTS:
        raise UsageError(f"unknown sampler {name!r}; available: {', '.join(SAMPLER_DEFAULTS)}")
    defaults = SAMPLER_DEFAULTS[name]
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        raise UsageError(f"sampler {name!r} has no option {unknown[0]!r}; options: {', '.join(defaults)}")
    full = {"name": name, **defaults, **spec}
    for key, default in defaults.items():
        if not _has_type_of(full[key], default):
            raise UsageError(f"sampler option {key!r} must be {type(default).__name__}, got {full[key]!r}")
    for key, smallest in MINIMA[name].items():
        if full[key] < smallest:
            raise UsageError(f"sampler option {key!r} must be >= {smallest}, got {full[key]}")
    if name == "hmc":
        _hmc_settings(full)
    else:
        _check_flow_spec(full)
    return full


def _hmc_settings(spec: dict):
    from reference.hmc import HMCSettings

    try:
        return HMCSettings(**{k: spec[k] for k in ("trajectory_length", "n_steps", "integrator", "adapt",
                                                   "target_acceptance")})
    except ValueError as err:
        raise UsageError(f"sampler option: {err}") from None


def _check_flow_spec(spec: dict) -> None:
    from suite.training import OBJECTIVES

    if spec["objective"] not in OBJECTIVES:
        raise UsageError(f"unknown objective {spec['objective']!r}; expected one of {', '.join(OBJECTIVES)}")
    if not spec["lr"] > 0:
        raise UsageError(f"sampler option 'lr' must be > 0, got {spec['lr']}")
    if not spec["target_ess"] <= 1:
        raise UsageError(f"sampler option 'target_ess' must be <= 1, got {spec['target_ess']}")
    if spec["pretrain"]:
        _check_pretrain(spec["pretrain"])
    elif not _has_target_budget(spec):
        raise UsageError("a flow needs a training budget: budget_steps, budget_seconds or target_ess (or a pretrain)")
    ensemble = {**FLOW_DEFAULTS["ensemble"], **spec["ensemble"]}
    unknown = sorted(set(ensemble) - set(FLOW_DEFAULTS["ensemble"]))
    if unknown:
        raise UsageError(f"sampler option 'ensemble' has no field {unknown[0]!r}")
    if any(not isinstance(v, int) or v < (0 if k == "n_therm" else 1) for k, v in ensemble.items()):
        raise UsageError(f"sampler option 'ensemble' needs positive integers, got {ensemble}")
    spec["ensemble"] = ensemble


def _has_target_budget(spec: dict) -> bool:
    return bool(spec["budget_steps"] or spec["budget_seconds"] or spec["target_ess"])


def _check_pretrain(pretrain: dict) -> None:
    unknown = sorted(set(pretrain) - set(PRETRAIN_FIELDS))
    if unknown:
        raise UsageError(f"sampler option 'pretrain' has no field {unknown[0]!r}; fields: {', '.join(PRETRAIN_FIELDS)}")
    for key, smallest in PRETRAIN_FIELDS.items():
        value = pretrain.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
            raise UsageError(f"sampler option 'pretrain' needs {key} = an integer >= {smallest}, got {value!r}")


def pretrain_key(spec: dict, entry, *, seed: int, dtype: str, device: str, catalogue: str) -> str:
    """A stable name for the pretraining a flow spec asks for: what it trains, not the task's own budget."""
    trained = {k: spec[k] for k in ("model", "hparams", "objective", "batch_size", "lr", "schedule", "weight_decay",
                                    "clip_grad", "ensemble", "pretrain")}
    payload = json.dumps({"theory": entry.theory, "convention": entry.convention, "params": entry.params,
                          "spec": trained, "seed": seed, "dtype": dtype, "device": device.split(":")[0],
                          "catalogue": catalogue}, sort_keys=True)
    return f"{entry.theory}-L{spec['pretrain']['L']}-{spec['model']}-s{seed}-{hashlib.sha1(payload.encode()).hexdigest()[:10]}"


def run_sampler(spec: dict, theory, *, seed: int, device: str, dtype, run_dir: Path, resume: bool = False,
                progress=None, pretrain=None):
    """Run a normalised spec on a theory; returns (Chain, training summary or None).

    Flow runs write ``training.csv`` (when they train on the entry's lattice), ``checkpoint.pt`` and
    ``model.pt`` into ``run_dir``. ``pretrain``: (theory on the pretraining lattice, its folder) when
    the spec has a ``pretrain``.
    """
    if spec["name"] == "hmc":
        from reference.hmc import run_hmc

        chain = run_hmc(theory, chains=spec["chains"], n_therm=spec["n_therm"], n_traj=spec["n_traj"], seed=seed,
                        settings=_hmc_settings(spec), dtype=dtype, device=device, progress=progress)
        return chain, None
    return _run_flow(spec, theory, seed=seed, device=device, dtype=dtype, run_dir=run_dir, resume=resume,
                     progress=progress, pretrain=pretrain)


def _objective(spec, theory, *, seed, device, dtype, progress):
    from suite.training import OBJECTIVES

    if spec["objective"] != "forward-kl":
        return OBJECTIVES[spec["objective"]](theory)

    from reference.hmc import hmc_ensemble

    ens = spec["ensemble"]
    configs = hmc_ensemble(theory, n_configs=ens["n_configs"], chains=ens["chains"], n_therm=ens["n_therm"],
                           separation=ens["separation"], seed=seed + 1, device=device, progress=progress)
    return OBJECTIVES["forward-kl"](configs.to(dtype), theory=theory, seed=seed)


def _train(spec, model, theory, budget, *, seed, device, dtype, folder: Path, resume, progress):
    """Train ``model`` on ``theory`` with the spec's options and ``budget``; checkpoints in ``folder``."""
    from suite.training import train

    objective = _objective(spec, theory, seed=seed, device=device, dtype=dtype, progress=progress)
    return train(model, objective, batch_size=spec["batch_size"], lr=spec["lr"], budget=budget,
                 weight_decay=spec["weight_decay"], schedule=spec["schedule"], clip_grad=spec["clip_grad"] or None,
                 checkpoint_path=folder / "checkpoint.pt", checkpoint_every=spec["checkpoint_every"],
                 resume=resume, seed=seed, progress=progress)


def _pretrained(spec, model, pretrain, *, seed, device, dtype, progress) -> dict:
    """Train the spec's model on the pretraining lattice (or resume/reuse it) and load it into ``model``.

    Returns the pretraining's totals. A finished pretraining is reused: its checkpoint is at its budget.
    """
    from suite.models import build_model
    from suite.training import Budget, atomic_save

    theory, folder = pretrain
    small = build_model(spec["model"], theory, spec["hparams"]).to(device=device, dtype=dtype)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    source = {k: tuple(v.shape) for k, v in small.state_dict().items()}
    if target != source:
        differ = sorted(k for k in target.keys() | source.keys() if target.get(k) != source.get(k))
        raise UsageError(f"model {spec['model']!r} cannot be pretrained on another lattice: its parameter "
                         f"{differ[0]!r} depends on the lattice size")
    log = _train(spec, small, theory, Budget(steps=spec["pretrain"]["budget_steps"]), seed=seed, device=device,
                 dtype=dtype, folder=folder, resume=True, progress=progress)
    log.to_csv(folder / "training.csv")
    atomic_save(small.state_dict(), folder / "model.pt")
    model.load_state_dict(small.state_dict())
    return {"L": spec["pretrain"]["L"], **log.totals()}


def _run_flow(spec, theory, *, seed, device, dtype, run_dir, resume, progress, pretrain):
    import torch

    from suite.flow_sampling import direct_sampling_chain, independence_metropolis_chain
    from suite.models import build_model
    from suite.training import Budget, TrainingLog, atomic_save

    torch.manual_seed(seed)
    model = build_model(spec["model"], theory, spec["hparams"]).to(device=device, dtype=dtype)
    pretrained = None
    if spec["pretrain"]:
        if pretrain is None:
            raise UsageError("a flow spec with 'pretrain' needs the pretraining lattice's theory and folder")
        pretrained = _pretrained(spec, model, pretrain, seed=seed, device=device, dtype=dtype, progress=progress)
    log = TrainingLog()
    if _has_target_budget(spec):
        budget = Budget(steps=spec["budget_steps"] or None, seconds=spec["budget_seconds"] or None,
                        target_ess=spec["target_ess"] or None)
        log = _train(spec, model, theory, budget, seed=seed, device=device, dtype=dtype, folder=run_dir,
                     resume=resume, progress=progress)
        log.to_csv(run_dir / "training.csv")
    atomic_save(model.state_dict(), run_dir / "model.pt")
    model.eval()
    if spec["name"] == "flow":
        chain = direct_sampling_chain(model, theory, spec["n_samples"], spec["sample_batch"])
    else:
        chain = independence_metropolis_chain(model, theory, spec["n_samples"], spec["sample_batch"], seed)
    training = {
        "objective": spec["objective"],
        **log.totals(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "final_batch_ess": _final_batch_ess(log),
    }
    if pretrained is not None:
        training["pretrain"] = pretrained
        training["seconds"] += pretrained["seconds"]
        training["cpu_seconds"] += pretrained["cpu_seconds"]
    chain.info = {"n_samples": spec["n_samples"], "seed": seed, "dtype": str(dtype).removeprefix("torch.")}
    if callable(getattr(model, "log_q_integration_error", None)):  # continuous flows: log q has a solver error
        chain.info["log_q_integration_error"] = model.log_q_integration_error(min(spec["n_samples"], 1024))
    return chain, training


def _final_batch_ess(log) -> float | None:
    """Mean batch ESS over the last tenth of training (None where the objective logs none)."""
    import numpy as np

    ess = log.column("ess") if log.rows else np.array([])
    ess = ess[np.isfinite(ess)]
    return float(ess[-max(1, len(ess) // 10):].mean()) if len(ess) else None
