"""Flow training: one optimiser step (zero_grad, loss, backward, AdamW step) per objective
against L (batch BATCH, float32), and the ESS after a fixed, seeded training budget."""

import tempfile
from pathlib import Path

import torch

from .common import BATCH, SEED, configurations, flow

OBJECTIVES = ("reverse-kl", "path-gradient", "forward-kl")


class TrainingStep:
    """The default affine flow (the other flows' costs follow their forward maps)."""

    params = (list(OBJECTIVES), [8, 16])
    param_names = ["objective", "L"]
    timeout = 300

    def setup(self, objective, L):
        from suite.training import ForwardKL, PathGradient, ReverseKL

        self.flow, target = flow("affine", L)
        if objective == "forward-kl":
            self.objective = ForwardKL(configurations(target, 4 * BATCH, torch.float32), seed=SEED)
        else:
            self.objective = {"reverse-kl": ReverseKL, "path-gradient": PathGradient}[objective](target)
        self.optimizer = torch.optim.AdamW(self.flow.parameters(), lr=1e-3)
        self.time_step(objective, L)

    def time_step(self, objective, L):
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.objective.loss(self.flow, BATCH, 1)
        loss.backward()
        self.optimizer.step()

    def peakmem_step(self, objective, L):
        self.time_step(objective, L)


class TrainedQuality:
    """ESS per sample of an 8-layer affine flow (reverse KL, batch 64, lr 3e-3, cosine schedule)
    on phi4/free/L8 after 300 seeded training steps, measured on 4096 fresh samples (about 0.15,
    bootstrap error about 0.02)."""

    timeout = 600

    def track_ess_affine_300_steps(self):
        from suite.catalogue import get_entry
        from suite.samplers import run_sampler, spec_dict
        from suite.metrics import sampler_metrics

        target = get_entry("phi4/free/L8").build_theory()
        spec = spec_dict({"name": "flow", "model": "affine", "hparams": {"n_layers": 8}, "lr": 3e-3,
                               "budget_steps": 300, "n_samples": 4096})
        with tempfile.TemporaryDirectory() as run_dir:
            chain, _ = run_sampler(spec, target, seed=SEED, device="cpu", dtype=torch.float32, run_dir=Path(run_dir),
                                   progress=False)
        return sampler_metrics(chain)["ess"]["value"]

    track_ess_affine_300_steps.unit = "ESS per sample"
