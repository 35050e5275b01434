"""Stochastic normalizing flows (SNF; Wu, Köhler & Noé, NeurIPS 2020, arXiv:2002.06707; for lattice
field theory Caselle, Cellini, Nada & Panero, JHEP 07 (2022) 015, arXiv:2201.08862): annealed
importance sampling (`reference.ais`) with a trainable flow layer before each stochastic step.

Path. With the prior q_0 of the field space, the schedule 0 = b_0 < b_1 < ... < b_K = 1
(`reference.ais.power_schedule`) and the annealed actions S_b = (1−b)(−log q_0) + b S
(`reference.ais.AnnealedTheory`, π_b ∝ e^{−S_b}), one sample is made by K blocks:

    x_0 ~ q_0;   for k = 1..K:  y_k = g_k(x_{k−1})      (block k's flow layers, ladj_k = log|det ∂y_k/∂x_{k−1}|)
                                x_k = T_k(y_k), k < K   (one HMC trajectory at b_k, `reference.ais.hmc_transition`)

and the sample is y_K. T_k is π_{b_k}-reversible: π_k(y) T_k(x|y) = π_k(x) T_k(y|x). Block K has no
stochastic step: one at b_K = 1 would change the sample but not its weight.

Weight (Wu et al., eq. 11; Caselle et al., eq. 2.13). The ratio of the reverse path measure
(y_K ~ e^{−S}, then T_k and g_k^{-1} backwards) to the forward one, per path,

    log w = −S(y_K) − log q_0(x_0) + Σ_{k=1}^{K} ladj_k + Σ_{k=1}^{K−1} [S_{b_k}(x_k) − S_{b_k}(y_k)],

the last sum being the heat of the stochastic steps (zero for a rejected proposal): detailed balance
turns each kernel ratio T_k(y_k|x_k) / T_k(x_k|y_k) into π_k(y_k) / π_k(x_k), and the change of
variables of g_k gives |det ∂g_k|. Hence E[w] = ∫ e^{−S} dx = Z and E[w O(y_K)] / E[w] = ⟨O⟩ exactly,
for any parameters of the flow layers: all it takes is that each g_k is a bijection with its exact
ladj and each T_k is π_{b_k}-reversible, whatever the layers have learned. Rearranged,
log w = Σ_k [S_{b_{k−1}}(x_{k−1}) − S_{b_k}(y_k) + ladj_k] (S_{b_0} = −log q_0): with identity layers
(y_k = x_{k−1}) it is AIS's Σ_k (b_k − b_{k−1}) [−S − log q_0](x_{k−1}) term by term.

Identity start. The blocks' conditioners start with their last convolution zeroed
(`reference.flows.couplings.ConvNet.zero_output`), so every g_k is the identity and an untrained SNF
of K blocks is AIS with K temperatures: the same random numbers in the same order (the prior sample,
then each trajectory's momenta and Metropolis uniforms), the same log w to round-off.

Training minimises the dissipated work. With P_f and P_r the forward and reverse path measures,
E_f[−log w] = KL(P_f ‖ P_r) − log Z ≥ −log Z, so W_diss = E[−log w] + log Z = KL(P_f ‖ P_r) ≥ 0, zero
only for a perfect sampler (`DissipatedWork`, the loss mean(−log w) over a batch of paths; `suite.training`
trains). The gradient is reparameterised: with the noise ξ — x_0, every trajectory's momenta and
uniforms — fixed, each path is a differentiable function of the parameters θ through the flow layers
and the leapfrog integration of each proposal (its forces differentiated too), with x_k = y_k or the
proposal as the Metropolis decision says, the decision held constant. The gradient is the pathwise
derivative ∇_θ mean(−log w(ξ, θ)) at fixed ξ and decisions; it omits how the acceptance probabilities
move with θ, so it is a biased estimate of ∇_θ E[−log w] (Caselle et al. do the same). That affects how
well the training converges, never the weights: sampling draws fresh noise, independent of the
training's, and the weight above is exact for whatever θ training ends at.

Blocks come from a registered coupling flow with ``n_layers`` (`reference.flows`: ``affine`` and
``spline`` for scalar fields, ``u1-equivariant`` for U(1) links, ``sun-equivariant`` for SU(N) links):
one flow of K·m layers is cut into K blocks of m consecutive layers, so masks alternate across blocks
as they do in the flow. Field spaces without such a flow (the spheres of O(N) and CP(N−1)) are refused
in one line when the model is built.

Cost per sample: 2K − 1 action evaluations (S(y_k) after each block's layers, one per HMC proposal),
(K − 1)(n_leapfrog + 1) force evaluations (as AIS) and K·m flow layers. A training step costs twice
the action + force evaluations per path (`DissipatedWork.evaluations`, as `suite.training` counts):
backpropagation through each action is a gradient, through each force a Hessian-vector product.
"""

from __future__ import annotations

import torch
from torch import nn

from reference.ais import AnnealedTheory, hmc_transition, power_schedule, weighted_chain
from reference.flows.couplings import ConvNet
from reference.flows.transforms import Sequential
from suite.chain import Chain
from suite.errors import UsageError
from suite.training import Objective


def check_block_model(model: str, hparams: dict) -> dict:
    """``hparams`` of the coupling flow ``model`` checked for use as SNF blocks (normalised); a one-line
    UsageError unless ``model`` is a registered flow with ``n_layers`` and ``hparams`` leave that out."""
    from reference.flows import REGISTRY, hparams as model_hparams, validate_hparams

    layered = [name for name in REGISTRY if "n_layers" in model_hparams(name)]
    if model not in layered:
        raise UsageError(f"snf builds its blocks from a registered coupling flow with n_layers "
                         f"({', '.join(layered)}), got model {model!r}")
    if "n_layers" in hparams:
        raise UsageError("snf sets the model's n_layers to n_blocks × layers_per_block; leave it out of hparams")
    return validate_hparams(model, hparams)


class StochasticNormalizingFlow(nn.Module):
    """K blocks of flow layers with an HMC trajectory at b_k after block k < K (module docstring).

    ``blocks``: K bijections (`reference.flows.transforms`); ``schedule``: b_0 = 0 .. b_K = 1; the HMC
    trajectories have ``n_leapfrog`` steps of size ``step_size`` (1 step: MALA)."""

    def __init__(self, theory, blocks, schedule, *, step_size: float, n_leapfrog: int):
        super().__init__()
        if len(schedule) != len(blocks) + 1:
            raise ValueError(f"{len(blocks)} blocks need a schedule of {len(blocks) + 1} values, got {len(schedule)}")
        if n_leapfrog < 1 or not step_size > 0:
            raise ValueError(f"need n_leapfrog >= 1 and step_size > 0, got {n_leapfrog}, {step_size}")
        self.theory, self.blocks = theory, nn.ModuleList(blocks)
        self.schedule = [float(b) for b in schedule]
        self.step_size, self.n_leapfrog = float(step_size), int(n_leapfrog)

    def evaluations_per_path(self) -> tuple[int, int]:
        """(action, force) evaluations of one path: 2K − 1 and (K − 1)(n_leapfrog + 1)."""
        transitions = len(self.blocks) - 1
        return len(self.blocks) + transitions, transitions * (self.n_leapfrog + 1)

    def sample_with_weights(self, n: int, generator=None):
        """n paths: (y_K (n, *field shape), log w (n,), acceptance of each of the K − 1 trajectories).
        Randomness from ``generator`` or torch's global RNG; differentiable in the parameters under grad
        mode (the gradient of the module docstring)."""
        theory, space = self.theory, self.theory.field
        ref = next(self.parameters())
        x = space.prior_sample(n, generator=generator, dtype=ref.dtype, device=ref.device)
        log_w = -space.prior_log_prob(x)
        acceptance = []
        for k, block in enumerate(self.blocks, 1):
            x, ladj = block(x)
            log_w = log_w + ladj
            action = theory.action(x)
            if k == len(self.blocks):
                break
            annealed, log_q0 = AnnealedTheory(theory, self.schedule[k]), space.prior_log_prob(x)
            before = annealed.combine(action, log_q0)
            x, action, log_q0, accepted = hmc_transition(theory, annealed, x, action, log_q0, self.step_size,
                                                         self.n_leapfrog, generator)
            log_w = log_w + annealed.combine(action, log_q0) - before
            acceptance.append(accepted.to(log_w.dtype).mean())
        acceptance = torch.stack(acceptance) if acceptance else log_w.new_zeros(0)
        return x, log_w - action, acceptance

    def reverse_log_weights(self, y: torch.Tensor, generator=None) -> torch.Tensor:
        """log w (n,) of paths run backwards from configurations y (n, *field shape) of the target: y_K = y,
        then x_{k−1} = g_k^{-1}(y_k) and, for k < K, y_k = T_k(x_k) (π_{b_k}-reversible, its own reversal),
        with the forward weight of the module docstring evaluated on the path. For y ~ e^{−S}/Z the paths
        follow the reverse path measure P_r and P_r/P_f = w/Z, so these are the SNF's log-weights at target
        samples (forward ESS; EUBO = E_r[log w] = log Z + KL(P_r ‖ P_f)); E_r[1/w] = 1/Z."""
        theory, space = self.theory, self.theory.field
        log_w = -theory.action(y)
        for k in range(len(self.blocks), 0, -1):
            if k < len(self.blocks):
                annealed = AnnealedTheory(theory, self.schedule[k])
                action, log_q0 = theory.action(y), space.prior_log_prob(y)
                before = annealed.combine(action, log_q0)  # S_{b_k}(x_k)
                y, action, log_q0, _ = hmc_transition(theory, annealed, y, action, log_q0, self.step_size,
                                                      self.n_leapfrog, generator)
                log_w = log_w + before - annealed.combine(action, log_q0)  # S_{b_k}(x_k) − S_{b_k}(y_k)
            y, inverse_ladj = self.blocks[k - 1].inverse(y)
            log_w = log_w - inverse_ladj
        return log_w - space.prior_log_prob(y)


def build_snf(theory, *, n_blocks: int, model: str = "affine", hparams: dict | None = None,
              layers_per_block: int = 1, schedule_power: float = 2.0, step_size: float = 0.2,
              n_leapfrog: int = 5) -> StochasticNormalizingFlow:
    """An SNF of ``n_blocks`` blocks of ``layers_per_block`` layers of the coupling flow ``model``
    (its ``hparams``), schedule b_k = (k/K)^``schedule_power``, starting as the identity (module
    docstring); float32 like the flows (``.to(dtype)`` moves it). One-line UsageError for a model that
    cannot make blocks or does not fit the theory's field."""
    from suite.models import build_model

    hparams = check_block_model(model, hparams or {})
    schedule = power_schedule(n_blocks, schedule_power)
    flow = build_model(model, theory, {**hparams, "n_layers": n_blocks * layers_per_block})
    for module in flow.modules():
        if isinstance(module, ConvNet):
            module.zero_output()
    layers = list(flow.transform.bijections)
    blocks = [Sequential(*layers[k * layers_per_block:(k + 1) * layers_per_block]) for k in range(n_blocks)]
    return StochasticNormalizingFlow(theory, blocks, schedule, step_size=step_size, n_leapfrog=n_leapfrog)


class DissipatedWork(Objective):
    """mean(−log w) over a batch of paths of ``snf``: its expectation is W_diss − log Z (module docstring)."""

    name = "dissipated-work"

    def __init__(self, snf: StochasticNormalizingFlow):
        self.per_path = sum(snf.evaluations_per_path())

    def evaluations(self, batch_size, step):
        return 2 * self.per_path * batch_size

    def loss(self, model: StochasticNormalizingFlow, batch_size: int, step: int):
        _, log_w, _ = model.sample_with_weights(batch_size)
        return -log_w.mean(), log_w.detach()


def snf_chain(snf: StochasticNormalizingFlow, *, n_samples: int, batch: int, seed: int,
              progress: bool | None = None, target: torch.Tensor | None = None) -> Chain:
    """``n_samples`` independent SNF samples, ``batch`` paths at a time, from a generator seeded with
    ``seed`` (as `reference.ais.run_ais`, so identity blocks give AIS's log w): a `Chain` of one
    replicum with y_K's observables and the log-weights (1, N), the acceptance and evaluation counts.
    With ``target`` configurations (M, *field shape), also the log-weights of the reverse paths from
    them (`StochasticNormalizingFlow.reverse_log_weights`, their own stream, seeded ``seed`` + 1 as
    `reference.ais.run_ais` does) as ``target_log_weights`` (M,)."""
    ref = next(snf.parameters())
    generator = torch.Generator(device=ref.device).manual_seed(seed)
    layers, n_blocks = sum(len(block.bijections) for block in snf.blocks), len(snf.blocks)
    actions, forces = snf.evaluations_per_path()

    @torch.no_grad()
    def draw(n):
        return snf.sample_with_weights(n, generator)

    chain = weighted_chain(
        draw, snf.theory, n_samples=n_samples, batch=batch, name="SNF", progress=progress,
        info={"n_samples": n_samples, "n_blocks": n_blocks, "layers_per_block": layers // n_blocks,
              "n_leapfrog": snf.n_leapfrog, "step_size": snf.step_size, "batch": batch, "seed": seed,
              "dtype": str(ref.dtype).removeprefix("torch."), "flow_layers_per_sample": layers},
        action_evaluations=actions, force_evaluations=forces)
    if target is not None:
        reverse = torch.Generator(device=ref.device).manual_seed(seed + 1)
        target = target.to(device=ref.device, dtype=snf.theory.field.field_dtype(ref.dtype))
        with torch.no_grad():
            chain.target_log_weights = torch.cat([snf.reverse_log_weights(part, reverse)
                                                  for part in target.split(batch)]).cpu().numpy()
    return chain
