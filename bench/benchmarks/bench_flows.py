"""Reference flows against L (batch BATCH, float32, under ``torch.no_grad`` as the harness samples;
continuous U(1) flows take autograd inside): the forward map with its log-determinant, and
``Flow.sample`` (prior draw, forward map, log q); one SU(N) gauge-equivariant layer against N and d."""

import torch

from .common import BATCH, FLOWS, SEED, flow, sun_theory


class ForwardLogDet:
    params = (list(FLOWS), [8, 32])
    param_names = ["flow", "L"]

    def setup(self, name, L):
        self.flow, _ = flow(name, L)
        torch.manual_seed(0)
        self.z = self.flow.prior.sample(BATCH)

    def time_forward_logdet(self, name, L):
        with torch.no_grad():
            self.flow.transform(self.z)

    def peakmem_forward_logdet(self, name, L):
        self.time_forward_logdet(name, L)


class Sampling:
    params = (list(FLOWS), [8, 32])
    param_names = ["flow", "L"]

    def setup(self, name, L):
        self.flow, _ = flow(name, L)

    def time_sample(self, name, L):
        with torch.no_grad():
            self.flow.sample(BATCH)


class SUNLayer:
    """One step of each SU(N) gauge-equivariant flow — a ``sun-equivariant`` coupling (default
    conditioner) and a ``sun-cnf`` integration step (cf4, default loops) — the forward map with its
    log-determinant on SU(2), SU(3) links, 16² in 2D and 4⁴ in 4D (float32, Haar links, parameters
    moved off the identity start)."""

    params = (["sun-equivariant", "sun-cnf"], [2, 3], [2, 4])
    param_names = ["flow", "N", "d"]
    ONE_STEP = {"sun-equivariant": {"n_layers": 1}, "sun-cnf": {"n_steps": 1}}

    def setup(self, name, n, d):
        from reference.flows import build

        torch.manual_seed(SEED)
        self.flow = build(name, sun_theory(n, d), **self.ONE_STEP[name])
        with torch.no_grad():
            for p in self.flow.parameters():
                p.add_(0.1 * torch.randn_like(p))
        self.x = self.flow.prior.sample(BATCH)

    def time_forward_logdet(self, name, n, d):
        with torch.no_grad():
            self.flow.transform(self.x)
