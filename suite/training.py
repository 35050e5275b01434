"""Training of samplers with a learnable density (normalizing flows) for a `Theory`.

Conventions
-----------
Model protocol
    A ``torch.nn.Module`` with ``sample(n) -> (x, log_q)``: ``x`` of shape ``(n, *lattice)`` drawn by
    reparameterisation from the *global* torch RNG (so that checkpoints capture it), ``log_q`` of
    shape ``(n,)`` differentiable w.r.t. the parameters; and, where it can, ``log_prob(x) -> (n,)``
    (needed by ``forward-kl`` and ``path-gradient``).
Objectives
    ``loss(model, batch_size, step) -> (loss, log_w or None)`` with ``log_w = −S(x) − log q(x)``
    (detached) for ``x ~ q``; ``step`` is the 1-based index of the step being taken.

    * ``reverse-kl``: ``mean(log q(x) + S(x))``, ``x ~ q``; its expectation is ``KL(q‖p) − log Z ≥ −log Z``.
    * ``path-gradient``: the same value, but ``log q`` evaluated with detached parameters, so that
      the gradient is the reverse-KL gradient without the score term ``E_q[∂_θ log q_θ] = 0``
      (Vaitl, Nicoli, Nakajima, Kessel, arXiv:2207.08219): ``∇_θ = E_z[∂_x(log q_θ + S)(x) ∂_θ f_θ(z)]``,
      exactly zero at ``q = p``.  Needs ``log_prob`` (an inverse pass per step).
    * ``JointReverseKL`` (the ``reverse-kl`` of the sampler ``flow-pmmh``, not in ``OBJECTIVES``): the
      same on a joint space (x, a) with an auxiliary field a, e.g. pseudofermions,
      ``mean(log q(x, a) + S(x, a))`` with ``(x, a) ~ q``.
    * ``forward-kl``: ``−mean log q(x)`` over minibatches of an ensemble from ``p`` (e.g. HMC),
      drawn without replacement (reshuffled each epoch) by a seeded generator; its expectation is
      ``KL(p‖q) + H(p)``.  The ESS needs model samples and ``S``: with ``theory`` given, every
      ``ess_every`` steps ``batch_size`` extra samples are drawn without gradient (NaN otherwise).
Evaluations
    ``evaluations(batch_size, step)``: the action + force evaluations a step costs on the whole batch,
    summed in ``TrainingLog.evaluations``: ``2·batch_size`` for ``reverse-kl`` and ``path-gradient`` (S at
    each sample and its gradient, which backpropagation through S costs), ``batch_size`` on the ESS steps
    of ``forward-kl`` and 0 otherwise (the target ensemble's own cost is not counted here). An objective
    that does not count them returns None and makes the total None.
Log and budget
    One row per ``log_every`` steps (and every skipped and the last step): ``step``, ``loss``,
    ``ess`` (per-sample ESS of the batch, `suite.stats.effective_sample_size`; NaN where none),
    ``seconds`` (training wall time since the start, summed over resumes, *excluding* checkpoint
    writes), ``cpu_seconds`` (the process's CPU time over the same steps, all threads: the cost
    on a shared machine, where wall time depends on the load), ``peak_memory_bytes`` (CUDA: ``max_memory_allocated``; CPU: ``ru_maxrss`` of the process),
    ``lr`` (used in that step), ``grad_norm`` (before clipping), ``skipped``.
    `Budget` stops at the first limit reached; the target ESS is met when the mean of the last
    ``ess_window`` batch ESS values reaches it (batch ESS is noisy and, for poor models, biased high).
NaN policy
    A step whose loss or gradient norm is non-finite makes no optimizer update, is counted in
    ``TrainingLog.skipped`` (it still counts as a step and advances the schedule); after
    ``max_bad_steps`` *consecutive* bad steps `TrainingDiverged` is raised.
Checkpoints
    Written atomically (temporary file + ``os.replace``) every ``checkpoint_every`` steps and at the
    end: model, optimizer, scheduler, objective state, log, and the torch (CPU, CUDA), numpy and
    Python RNG states; ``resume=True`` continues bit-for-bit on CPU (a missing file starts afresh).
    A SIGINT or SIGTERM (under `suite.interrupts.handle_signals`) stops the loop at the next step
    boundary and writes a final checkpoint before `suite.errors.Interrupted` propagates.
Errors
    An exception escaping the loop carries ``training_step``, the step being taken, for the
    caller's one-line message (`suite.errors.model_phase`); `TrainingDiverged` carries the log.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import resource
import sys
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from suite import interrupts
from suite.errors import Diverged, Interrupted, UsageError
from suite.stats import effective_sample_size

__all__ = ["Budget", "ForwardKL", "JointReverseKL", "OBJECTIVES", "Objective", "PathGradient", "ReverseKL",
           "TrainingDiverged", "TrainingLog", "TransportKL", "frozen_log_prob", "train", "train_in_folder"]

COLUMNS = ("step", "loss", "ess", "seconds", "cpu_seconds", "peak_memory_bytes", "lr", "grad_norm", "skipped")
CHECKPOINT_FORMAT = "lftbench-training-1"


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient; ``log`` is the training log so far."""

    def __init__(self, message: str, log: "TrainingLog | None" = None):
        super().__init__(message)
        self.log = log


def _require_log_prob(model: nn.Module, who: str) -> None:
    if not callable(getattr(model, "log_prob", None)):
        raise TypeError(f"{who} needs a model with log_prob(x); {type(model).__name__} has none")


class Objective:
    """Base class: a training objective (see the module docstring)."""

    name = ""
    shard = (0, 1)  # (rank, world size): data-parallel training draws whole batches and keeps slice rank
    reports_ess = True  # whether loss() returns log-weights (on some steps at least)
    needs_log_prob = False  # whether the model must have log_prob(x)

    def check(self, model: nn.Module) -> None:
        """Raise TypeError if ``model`` lacks what the objective needs."""

    def loss(self, model: nn.Module, batch_size: int, step: int):
        raise NotImplementedError

    def evaluations(self, batch_size: int, step: int) -> int | None:
        """Action + force evaluations of step ``step`` on a batch of ``batch_size`` (None: not counted)."""
        return None

    def reseed(self, seed: int) -> None:
        """Reset any private randomness (called at the start of a fresh run)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ReverseKL(Objective):
    """``mean(log q + S)`` over model samples, reparameterisation gradient."""

    name = "reverse-kl"

    def __init__(self, theory):
        self.theory = theory

    def evaluations(self, batch_size, step):
        return 2 * batch_size

    def loss(self, model, batch_size, step):
        x, log_q = model.sample(batch_size)
        neg_log_w = log_q + self.theory.action(x)
        return neg_log_w.mean(), -neg_log_w.detach()


class JointReverseKL(ReverseKL):
    """``mean(log q(x, a) + S(x, a))`` over a joint model's samples of the field x and an auxiliary
    field a (pseudofermions): ``model.sample_joint(n) -> (x, a, log q(x, a))`` and
    ``theory.joint_action(x, a)``. Its expectation is ``KL(q‖p) − log Z`` on the joint space."""

    name = "reverse-kl"

    def check(self, model):
        if not callable(getattr(model, "sample_joint", None)):
            raise TypeError(f"the joint reverse-kl objective needs a model with sample_joint(n); "
                            f"{type(model).__name__} has none")

    def loss(self, model, batch_size, step):
        x, auxiliary, log_q = model.sample_joint(batch_size)
        neg_log_w = log_q + self.theory.joint_action(x, auxiliary)
        return neg_log_w.mean(), -neg_log_w.detach()


class _LogProb(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.log_prob(x)


def frozen_log_prob(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``log q_θ'(x)`` with ``θ' = θ`` detached: gradients flow through ``x`` only."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    frozen = {f"model.{name}": t.detach() for name, t in tensors}
    return torch.func.functional_call(_LogProb(model), frozen, (x,))


class PathGradient(ReverseKL):
    """Reverse KL with the path-gradient ("sticking the landing") estimator, arXiv:2207.08219."""

    name = "path-gradient"
    needs_log_prob = True

    def check(self, model):
        _require_log_prob(model, "the path-gradient objective")

    def loss(self, model, batch_size, step):
        self.check(model)
        x, _ = model.sample(batch_size)  # x = f_θ(z), differentiable in θ
        neg_log_w = frozen_log_prob(model, x) + self.theory.action(x)
        return neg_log_w.mean(), -neg_log_w.detach()


class ForwardKL(Objective):
    """``−mean log q`` over minibatches of ``samples`` (N, *lattice) from the target, e.g. HMC."""

    name = "forward-kl"
    needs_log_prob = True

    def __init__(self, samples, theory=None, ess_every: int = 10, seed: int = 0):
        self.samples = torch.as_tensor(samples)
        if self.samples.dim() < 2 or len(self.samples) < 2:
            raise UsageError(f"samples must have shape (N >= 2, *lattice), got {tuple(self.samples.shape)}")
        if ess_every < 1:
            raise UsageError(f"ess_every must be >= 1, got {ess_every}")
        self.theory, self.ess_every = theory, int(ess_every)
        self.reports_ess = theory is not None
        self.reseed(seed)

    def check(self, model):
        _require_log_prob(model, "the forward-kl objective")

    def evaluations(self, batch_size, step):
        return batch_size if self.theory is not None and step % self.ess_every == 0 else 0

    def reseed(self, seed):
        self.generator = torch.Generator().manual_seed(int(seed))
        self._perm, self._pos = torch.zeros(0, dtype=torch.long), 0

    def _minibatch(self, n: int) -> torch.Tensor:
        if n > len(self.samples):
            raise UsageError(f"batch_size {n} exceeds the {len(self.samples)} training samples")
        if self._pos + n > len(self._perm):
            self._perm, self._pos = torch.randperm(len(self.samples), generator=self.generator), 0
        index = self._perm[self._pos:self._pos + n]
        self._pos += n
        return self.samples[index]

    def _batch(self, model, batch_size: int) -> torch.Tensor:
        """This rank's slice of the next minibatch, on the model's device and in its dtype."""
        ref = next(model.parameters())
        rank, world = self.shard
        x = self._minibatch(batch_size * world)[rank * batch_size:(rank + 1) * batch_size]
        return x.to(device=ref.device, dtype=ref.dtype)

    def loss(self, model, batch_size, step):
        x = self._batch(model, batch_size)
        loss = -model.log_prob(x).mean()
        log_w = None
        if self.theory is not None and step % self.ess_every == 0:
            with torch.no_grad():
                y, log_q = model.sample(batch_size)
                log_w = -(log_q + self.theory.action(y))
        return loss, log_w

    def state_dict(self):
        return {"generator": self.generator.get_state(), "perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self._perm, self._pos = state["perm"], int(state["pos"])


class TransportKL(ForwardKL):
    """``mean(S_2(f(x)) − log|det ∂f/∂x|)`` over minibatches of ``samples`` from p_1 ∝ e^{−S_1}, for an
    invertible map ``f`` (a `reference.flows.transforms.Bijection`: ``f(x) -> (y, ladj)``) from the
    couplings of ``source`` to those of ``target`` (correlated ensembles, `suite.samplers.correlated`).

    Its expectation is ``KL(f_* p_1 ‖ p_2) + ⟨S_1⟩_1 − log(Z_2/Z_1)``: the KL divergence of the
    pushed-forward ensemble from p_2 ∝ e^{−S_2} up to terms that do not depend on f, so it is at least
    ``⟨S_1⟩_1 − log(Z_2/Z_1)``, with equality iff f carries p_1 into p_2. The log-weights it returns
    are those of the correlated estimator, log w = −S_2(f(x)) + ladj + S_1(x) (their batch ESS is logged).
    """

    name = "transport-kl"
    needs_log_prob = False

    def __init__(self, samples, source, target, seed: int = 0):
        super().__init__(samples, seed=seed)
        self.source, self.target = source, target
        self.reports_ess = True

    def check(self, model):
        pass  # any bijection

    def loss(self, model, batch_size, step):
        x = self._batch(model, batch_size)
        y, ladj = model(x)
        neg_log_w = self.target.action(y) - ladj
        return neg_log_w.mean(), (self.source.action(x) - neg_log_w).detach()


OBJECTIVES = {"reverse-kl": ReverseKL, "forward-kl": ForwardKL, "path-gradient": PathGradient}


@dataclass(frozen=True)
class Budget:
    """Stop at whichever limit comes first; at least one of steps, seconds, target_ess is required."""

    steps: int | None = None
    seconds: float | None = None
    target_ess: float | None = None
    ess_window: int = 10

    def __post_init__(self):
        if self.steps is None and self.seconds is None and self.target_ess is None:
            raise UsageError("Budget needs at least one of steps, seconds, target_ess")
        if self.steps is not None and (int(self.steps) != self.steps or self.steps < 1):
            raise UsageError(f"Budget steps must be a positive integer, got {self.steps}")
        if self.seconds is not None and not self.seconds > 0:
            raise UsageError(f"Budget seconds must be positive, got {self.seconds}")
        if self.target_ess is not None and not 0 < self.target_ess <= 1:
            raise UsageError(f"Budget target_ess must be in (0, 1], got {self.target_ess}")
        if self.ess_window < 1:
            raise UsageError(f"Budget ess_window must be >= 1, got {self.ess_window}")

    def reached(self, steps: int, seconds: float, ess_window: deque) -> str | None:
        """The name of the first limit reached, else None."""
        if self.steps is not None and steps >= self.steps:
            return "steps"
        if (self.target_ess is not None and len(ess_window) >= self.ess_window
                and float(np.mean(ess_window)) >= self.target_ess):
            return "target_ess"
        if self.seconds is not None and seconds >= self.seconds:
            return "seconds"
        return None


@dataclass
class TrainingLog:
    """Logged rows (see `COLUMNS`) and totals; ``stop_reason`` is the budget limit reached."""

    rows: list = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    skipped: int = 0
    evaluations: int | None = 0
    stop_reason: str | None = None

    def column(self, name: str) -> np.ndarray:
        return np.array([row[name] for row in self.rows])

    def totals(self) -> dict:
        return {"steps": self.steps, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "skipped": self.skipped,
                "evaluations": self.evaluations, "stop_reason": self.stop_reason}

    def to_csv(self, path) -> None:
        """Write the rows as CSV, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: (int(v) if k == "skipped" else v) for k, v in row.items()} for row in self.rows)
        os.replace(tmp, path)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _rng_state() -> dict:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda, "python": random.getstate(),
            "numpy": (torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(model: nn.Module, objective: Objective, *, batch_size: int, lr: float, budget: Budget,
          weight_decay: float = 0.0, schedule: str = "cosine", clip_grad: float | None = None,
          max_bad_steps: int = 10, checkpoint_path=None, checkpoint_every: int = 100,
          resume: bool = False, seed: int = 0, log_every: int = 1, progress: bool | None = None,
          group=None) -> TrainingLog:
    """Train ``model`` on ``objective`` with AdamW until ``budget`` is spent; return the log.

    ``schedule``: ``"cosine"`` (lr·½(1 + cos(π k/budget.steps)) at step k = 0, 1, ...; needs
    ``budget.steps``) or ``"constant"``.  ``clip_grad``: max gradient norm (None: no clipping).
    A fresh run seeds the global torch RNG and the objective with ``seed``.  ``progress``: tqdm
    bar on (True), off (False) or only on a terminal (None).  The schedule is a function of the step
    and the *current* ``budget.steps`` (a resumed run with a longer budget re-stretches it).
    Bad arguments raise `UsageError` (a ValueError); persistent NaN/Inf raises `TrainingDiverged`.
    ``group``: a `suite.distributed.Group` for data-parallel training over its ranks (``batch_size`` is the
    whole batch, which the world size must divide; `suite.distributed` says how the ranks share it).
    Conventions: module docstring.
    """
    if batch_size < 2 or lr <= 0 or log_every < 1 or checkpoint_every < 1 or max_bad_steps < 1:
        raise UsageError("batch_size must be >= 2, lr > 0, log_every, checkpoint_every and max_bad_steps >= 1")
    if budget.target_ess is not None and not objective.reports_ess:
        raise UsageError(f"{objective.name} reports no ESS here (give it a theory), so target_ess cannot be met")
    if schedule == "cosine":
        if budget.steps is None:
            raise UsageError("schedule 'cosine' anneals over Budget.steps; give steps or use 'constant'")
        horizon = budget.steps
        factor = lambda k: 0.5 * (1 + math.cos(math.pi * min(k, horizon) / horizon))  # noqa: E731
    elif schedule == "constant":
        factor = lambda k: 1.0  # noqa: E731
    else:
        raise UsageError(f"unknown schedule {schedule!r}; expected 'cosine' or 'constant'")
    if resume and checkpoint_path is None:
        raise UsageError("resume=True needs a checkpoint_path")
    local_batch, writer = batch_size, True
    if group is not None:
        from suite import distributed

        local_batch, writer = distributed.split(batch_size, group, "training batch"), group.writer
    objective.check(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError(f"{type(model).__name__} has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    log, window, bad_run = TrainingLog(), deque(maxlen=budget.ess_window), 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and ckpt.exists():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UsageError(f"{ckpt} cannot be read ({type(err).__name__}); rerun with --force to start the "
                             "training afresh") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT \
                or state.get("objective_name") != objective.name:
            raise UsageError(f"{ckpt} is not a {objective.name} training checkpoint; rerun with --force to start "
                             "the training afresh")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        objective.load_state_dict(state["objective"])
        log, bad_run = TrainingLog(**state["log"]), state["bad_run"]
        log.stop_reason = None
        window.extend(state["ess_window"])
        ranks = state.get("rng_ranks") or []
        _set_rng_state(ranks[group.rank] if group is not None and len(ranks) == group.world_size else state["rng"])
    else:
        sliced = group is None or distributed.can_slice(model)
        torch.manual_seed(seed if sliced else distributed.rank_seed(seed, group.rank))
        objective.reseed(seed)
    device = params[0].device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def save() -> tuple[float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        extra = {} if group is None else {"rng_ranks": distributed.all_gather_object(_rng_state()),
                                          "world_size": group.world_size}
        if writer:
            atomic_save({"format": CHECKPOINT_FORMAT, "objective_name": objective.name,
                          "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "objective": objective.state_dict(),
                          "log": asdict(log), "bad_run": bad_run, "ess_window": list(window),
                          "rng": _rng_state(), **extra}, ckpt)
        if group is not None:  # no rank goes on (and may resume from ckpt) before rank 0 has written it
            distributed.barrier()
        return time.perf_counter() - start, time.process_time() - cpu_start

    model.train()
    seconds_before, start, io_seconds, saved_at = log.seconds, time.perf_counter(), 0.0, log.steps
    cpu_before, cpu_start, io_cpu_seconds = log.cpu_seconds, time.process_time(), 0.0
    bar = tqdm(total=budget.steps, initial=log.steps, desc=objective.name, unit="step",
               disable=True if not writer else None if progress is None else not progress)
    stop = None  # distributed: a signal some rank received, acted on by all at the next step boundary
    noise = contextlib.nullcontext() if group is None else distributed.sliced_noise(model, group)
    objective.shard = (0, 1) if group is None else (group.rank, group.world_size)
    try:
        with interrupts.deferred(), noise:
            while stop is None and (reason := budget.reached(log.steps, log.seconds, window)) is None:
                if group is None:
                    interrupts.raise_if_pending()
                step, step_lr = log.steps + 1, optimizer.param_groups[0]["lr"]
                optimizer.zero_grad(set_to_none=True)
                loss, log_w = objective.loss(model, local_batch, step)
                loss_value, grad_norm = float(loss.detach()), math.nan
                if group is not None:  # the mean over the whole batch: the mean of the ranks' equal-size means
                    losses = distributed.all_gather_tensor(loss.detach().double().reshape(1))
                    loss_value = float(losses.mean())
                    if log_w is not None:
                        log_w = distributed.all_gather_tensor(log_w)
                ok = math.isfinite(loss_value)
                if ok:
                    loss.backward()
                    if group is not None:
                        distributed.average_gradients(params)
                    grad_norm = float(nn.utils.clip_grad_norm_(params, clip_grad if clip_grad else math.inf))
                    ok = math.isfinite(grad_norm)
                if ok:
                    optimizer.step()
                    bad_run = 0
                else:
                    log.skipped, bad_run = log.skipped + 1, bad_run + 1
                with warnings.catch_warnings():  # a skipped first step warns "scheduler before optimizer"
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                    scheduler.step()
                ess = math.nan
                if log_w is not None and bool(torch.isfinite(log_w).all()):
                    ess = effective_sample_size(log_w.double().cpu().numpy())
                    window.append(ess)
                log.steps, log.seconds = step, seconds_before + time.perf_counter() - start - io_seconds
                spent = objective.evaluations(batch_size, step)
                log.evaluations = None if spent is None or log.evaluations is None else log.evaluations + spent
                log.cpu_seconds = cpu_before + time.process_time() - cpu_start - io_cpu_seconds
                if group is not None:  # rank 0's wall time, all ranks' CPU time, any rank's signal
                    pending = interrupts.take_pending()
                    shared = distributed.all_gather_object((time.perf_counter() - start - io_seconds,
                                                            time.process_time() - cpu_start - io_cpu_seconds,
                                                            pending))
                    log.seconds = seconds_before + shared[0][0]
                    log.cpu_seconds = cpu_before + sum(part[1] for part in shared)
                    stop = next((part[2] for part in shared if part[2] is not None), None)
                last = budget.reached(log.steps, log.seconds, window) is not None
                if step % log_every == 0 or not ok or last:
                    log.rows.append({"step": step, "loss": loss_value, "ess": ess, "seconds": log.seconds,
                                     "cpu_seconds": log.cpu_seconds,
                                     "peak_memory_bytes": _peak_memory(device), "lr": step_lr,
                                     "grad_norm": grad_norm, "skipped": not ok})
                    bar.set_postfix(loss=f"{loss_value:.4g}", ess=f"{ess:.3f}", refresh=False)
                bar.update(1)
                if bad_run >= max_bad_steps:
                    log.stop_reason = "diverged"
                    raise TrainingDiverged(
                        f"training diverged: {bad_run} consecutive steps with non-finite loss or gradients "
                        f"(at step {step}, {log.skipped} skipped in total)", log)
                if ckpt is not None and step % checkpoint_every == 0:
                    wall, cpu = save()
                    io_seconds, io_cpu_seconds = io_seconds + wall, io_cpu_seconds + cpu
                    saved_at = step
            if stop is not None:
                raise Interrupted(stop)
    except Interrupted:  # SIGINT/SIGTERM held to a step boundary (`suite.interrupts`): keep the steps taken
        if ckpt is not None and saved_at != log.steps:
            if group is not None:
                interrupts.take_pending()  # a second signal must not stop the ranks' checkpoint collective
            save()
        raise
    except TrainingDiverged:
        raise
    except Exception as err:  # tell the caller where it happened
        err.training_step = log.steps + 1
        raise
    finally:
        bar.close()
        objective.shard = (0, 1)
    log.stop_reason = reason
    if ckpt is not None and saved_at != log.steps:
        save()
    return log


def train_in_folder(model: nn.Module, objective: Objective, folder, *, writer: bool = True, **options) -> TrainingLog:
    """`train` (``options``: its keyword arguments) with its checkpoint ``folder/checkpoint.pt`` and its log
    written to ``folder/training.csv`` (by the ``writer`` alone), also when the training diverges: then
    `suite.errors.Diverged` carries the summary a result row records."""
    folder = Path(folder)
    try:
        log = train(model, objective, checkpoint_path=folder / "checkpoint.pt", **options)
    except TrainingDiverged as err:
        if writer:
            err.log.to_csv(folder / "training.csv")
        raise Diverged(str(err), training={"objective": objective.name, **err.log.totals()}) from None
    if writer:
        log.to_csv(folder / "training.csv")
    return log
