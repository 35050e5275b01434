"""Using a trained model's samples: direct sampling with reweighting (``flow``), the
independence Metropolis-Hastings chain with the model as proposal (``flow-mh``), and its
pseudo-marginal form for theories with pseudofermions (``flow-pmmh``).

Log-weights are log w = −S(x) − log q(x), with log q the model's normalised log density, so that
their mean estimates Z = ∫ e^{−S} (log Z in `suite.metrics`); the action and the observables are
evaluated in float64 (complex128 for complex fields) whatever the model's dtype.

**Pseudo-marginal weights** (`pseudo_marginal_log_weights`, Andrieu & Roberts, Ann. Stat. 37, 697
(2009)). For a target p(U, φ) = e^{−S(U, φ)} on links and pseudofermions (``theory.joint_action``)
and a joint model q(U, φ) = q(U) q(φ | U) (``model.sample`` and ``model.sample_pseudofermions``),
each proposal U ~ q(U) gets n = ``n_pf`` draws φ_k ~ q(φ | U) and the estimate

    ŵ(U) = (1/n) Σ_k p(U, φ_k) / (q(U) q(φ_k | U)),

non-negative and unbiased for the marginal weight w(U) = p(U)/q(U), p(U) = ∫ d²φ p(U, φ) (which is
π^{2V} det(D†D) e^{−S_g} for the Schwinger model). The independence chain accepts proposal i with
probability min(1, ŵ_i / ŵ_j), j the current state, and keeps each state's estimate until the state
is replaced (`independence_metropolis_indices` on log ŵ). That is an exact independence MH chain on
the extended space (U, φ_1..n) with target q(U) Π_k q(φ_k | U) ŵ(U) / Z, whose U-marginal is
q(U) E[ŵ | U] / Z = p(U) / Z: the chain leaves the marginal target invariant for every n ≥ 1 (n only
trades cost for acceptance). Re-estimating the current state's ŵ at each step would not.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from suite.chain import Chain
from suite.fermions import complex_dtype
from suite.models import check_finite_log_q, check_samples


def direct_log_weights(model, theory, x: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """log w = −S(x) − log q(x), (B,), x in float64 (complex128)."""
    return -theory.action(x) - log_q.to(torch.float64)


def pseudo_marginal_log_weights(n_pf: int):
    """The weigher of `draw` giving log ŵ(U) from ``n_pf`` pseudofermion draws per proposal (module docstring)."""
    if n_pf < 1:
        raise ValueError(f"n_pf must be >= 1, got {n_pf}")

    def weigh(model, theory, x, log_q):
        phi, log_q_phi = model.sample_pseudofermions(x.to(log_q.dtype), n_pf)
        repeated = x.repeat_interleave(n_pf, 0)
        action = theory.joint_action(repeated, phi.flatten(0, 1).to(complex_dtype(x.dtype))).view(len(x), n_pf)
        log_w = -action - log_q_phi.to(torch.float64) - log_q.to(torch.float64)[:, None]
        return torch.logsumexp(log_w, 1) - math.log(n_pf)

    return weigh


@torch.no_grad()
def draw(model, theory, n_samples: int, batch_size: int,
         weigh=direct_log_weights) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """``n_samples`` independent draws: (observables (N,) each, log-weights (N,), wall seconds);
    ``weigh(model, theory, x, log_q)`` gives the log-weights of a batch (x in float64)."""
    observables, log_q, log_w = [], [], []
    precise = theory.field.field_dtype(torch.float64)  # float64, or complex128 for complex fields
    start = time.perf_counter()
    for first in range(0, n_samples, batch_size):  # no host-device synchronisation in the loop
        n = min(batch_size, n_samples - first)
        x, batch_log_q = check_samples(model.sample(n), n, theory, finite=False)
        log_q.append(batch_log_q)
        x = x.to(precise)
        log_w.append(weigh(model, theory, x, batch_log_q))
        observables.append(theory.observables(x))
    check_finite_log_q(torch.cat(log_q), n_samples)
    log_w = torch.cat(log_w)
    if not torch.isfinite(log_w).all():
        raise ValueError("the model sampled configurations whose action is not finite (NaN or inf in x?)")
    if log_w.is_cuda:
        torch.cuda.synchronize(log_w.device)
    seconds = time.perf_counter() - start
    names = observables[0].keys()
    return ({k: torch.cat([o[k] for o in observables]).cpu().numpy() for k in names},
            log_w.cpu().numpy(), seconds)


@torch.no_grad()
def target_log_weights(model, theory, configs: torch.Tensor, batch_size: int, dtype: torch.dtype) -> np.ndarray:
    """log w = −S − log q, shape (M,), at configurations ``configs`` (M, *field shape) drawn from the
    target (for the forward ESS and the EUBO, `suite.metrics`); S in float64, log q in the model's
    real ``dtype``. The model needs ``log_prob``."""
    log_w = []
    for first in range(0, len(configs), batch_size):
        x = configs[first:first + batch_size]
        log_q = model.log_prob(x.to(theory.field.field_dtype(dtype)))
        log_w.append(-theory.action(x) - log_q.to(torch.float64))
    log_w = torch.cat(log_w)
    if not torch.isfinite(log_w).all():
        raise ValueError("the model's log_prob is not finite on some target configurations")
    return log_w.cpu().numpy()


def distributed_draw(model, theory, n_samples: int, batch_size: int, group, weigh=direct_log_weights):
    """`draw` spread over the ranks of ``group`` (`suite.distributed`): each draws ``n_samples / N``
    from its own stream; every rank gets them all, in rank order (seconds: the slowest rank's)."""
    from suite import distributed

    n = distributed.split(n_samples, group, "n_samples")
    observables, log_w, seconds = draw(model, theory, n, batch_size, weigh)
    parts = distributed.all_gather_object((observables, log_w, seconds))
    names = parts[0][0].keys()
    return ({k: np.concatenate([p[0][k] for p in parts]) for k in names},
            np.concatenate([p[1] for p in parts]), max(p[2] for p in parts))


def direct_sampling_chain(model, theory, n_samples: int, batch_size: int) -> Chain:
    """Independent samples with their log-weights, one replicum: arrays of shape (1, N)."""
    return direct_sampling_of(*draw(model, theory, n_samples, batch_size))


def direct_sampling_of(observables: dict, log_w: np.ndarray, seconds: float) -> Chain:
    """The chain of `draw`'s independent samples."""
    return Chain(observables={k: v[None] for k, v in observables.items()}, log_weights=log_w[None],
                 timings={"sampling": seconds})


def independence_metropolis_indices(log_w: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The states of an independence MH chain over proposals with log-weights ``log_w``.

    Proposal i replaces the current state j with probability min(1, w_i / w_j); the chain starts
    at proposal 0. Returns (index of the state after each step (N,), accepted (N,) bool).
    """
    n = len(log_w)
    log_u = np.log(rng.random(n))
    index = np.empty(n, dtype=np.int64)
    accepted = np.zeros(n, dtype=bool)
    current = 0
    accepted[0] = True
    index[0] = 0
    for i in range(1, n):
        if log_u[i] < log_w[i] - log_w[current]:
            current = i
            accepted[i] = True
        index[i] = current
    return index, accepted


def independence_metropolis_chain(model, theory, n_samples: int, batch_size: int, seed: int) -> Chain:
    """An independence Metropolis-Hastings chain of length N: observables of the chain's states
    (1, N), accept flags (1, N) and the proposals' log-weights (1, N)."""
    return independence_metropolis_of(*draw(model, theory, n_samples, batch_size), seed)


def independence_metropolis_of(observables: dict, log_w: np.ndarray, seconds: float, seed: int) -> Chain:
    """The independence MH chain over `draw`'s proposals."""
    index, accepted = independence_metropolis_indices(log_w, np.random.default_rng(seed))
    return Chain(observables={k: v[index][None] for k, v in observables.items()}, accepted=accepted[None],
                 log_weights=log_w[None], timings={"sampling": seconds})
