"""Reference flows against L (batch BATCH, float32, under ``torch.no_grad`` as the harness samples;
continuous U(1) flows take autograd inside): the forward map with its log-determinant, and
``Flow.sample`` (prior draw, forward map, log q)."""

import torch

from .common import BATCH, FLOWS, flow


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
