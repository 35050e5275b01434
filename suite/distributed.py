"""One task over the processes launched by ``torchrun``: data-parallel flow training, HMC chains split.

``torchrun --nproc-per-node N -m suite.cli run ... --distributed`` starts N processes (ranks); each
runs the same task. The samplers that run so name the spec counts they divide among the ranks
(`suite.samplers.base.Sampler.split_over_ranks`). For the flows, what is divided, and how the result
stays that of one process:

Seed streams
    Every rank seeds torch's global RNG alike, so every rank draws the *whole* batch's latent
    noise (B configurations) and keeps its own slice, rows ``r·B/N … (r+1)·B/N − 1``
    (`SlicedPrior`: the model's prior draws ``N·n`` and returns slice r of them). Drawing the
    noise is cheap beside the flow's pass, and every rank's RNG stays in the same state as a
    single process's. So rank r pushes exactly the configurations a one-process run gives to
    those rows of its batch, and the N ranks' losses and gradients, averaged, are the one-process
    ones up to floating-point summation order. A forward-kl minibatch is drawn whole and sliced
    the same way. A model without a ``prior`` (a user's factory) cannot be sliced: each rank then
    draws its B/N configurations from its own stream (seed, rank) — valid training, but not equal to a
    one-process run (the row's ``sampler_info.distributed.noise`` says which: ``sliced`` or ``per-rank``).
Gradients
    Not `DistributedDataParallel` (the models are driven through their own ``sample`` method):
    after ``backward`` the gradients are flattened, summed with one ``all_reduce`` and divided by N
    — the gradient of the mean over the whole batch, as every rank's loss is the mean over its
    equal-size slice. Every rank then holds the same gradients and takes the same optimizer step,
    so the parameters stay equal without being broadcast.
Who writes what
    Rank 0 alone writes into the results folder: checkpoints (with every rank's RNG states),
    ``training.csv``, ``model.pt``, ``chains.npz`` and the row; it also holds the task's lock and
    prints. The others compute and write nothing. After training, each rank draws
    ``n_samples / N`` evaluation samples from its own stream (seed, rank); rank 0 gathers them (in
    rank order) for the ESS and the estimates.
Agreement
    Everything that decides the loop is made the same on every rank: the logged loss is the mean
    of the ranks' losses, the batch ESS is that of the gathered log-weights, the wall seconds are
    rank 0's (the CPU seconds the sum over ranks), and a SIGINT/SIGTERM seen by any rank stops all
    of them at the same step boundary, with a checkpoint.

HMC (``hmc``) splits its chains: rank r runs chains r·C/N … (r+1)·C/N − 1, drawing the whole batch's
random numbers and keeping its rows as above; rank 0 gathers the chains, bit for bit those of one
process (`reference.hmc`). ``lftbench throughput --distributed`` times the flows' data-parallel
training step (`suite.throughput`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from suite.errors import UsageError

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_current: "Group | None" = None


@dataclass(frozen=True)
class Group:
    """This process's place among the ranks of a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def info(self, noise: str) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "noise": noise}


def launched() -> bool:
    """Whether this process was started by torchrun (its environment variables are set)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE"))


def current() -> "Group | None":
    """The group set up by `initialize`, or None (a single process)."""
    return _current


def is_writer() -> bool:
    return _current is None or _current.writer


def initialize(device: str, command: str = "run") -> Group:
    """Join the torchrun launch (gloo on CPU, nccl on CUDA); UsageError outside torchrun, naming how to
    launch ``lftbench command``."""
    global _current
    missing = [name for name in ENVIRONMENT if name not in os.environ]
    if missing:
        raise UsageError(f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing); "
                         f"launch with: torchrun --nproc-per-node N -m suite.cli {command} ... --distributed")
    import torch
    import torch.distributed as dist

    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    _current = Group(rank=rank, world_size=world, local_rank=local, backend=backend)
    return _current


def shutdown() -> None:
    global _current
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _current = None


def rank_device(device: str, group: "Group | None") -> str:
    """A CUDA rank's own GPU (``cuda:LOCAL_RANK``); other devices unchanged."""
    if group is not None and device.startswith("cuda"):
        return f"cuda:{group.local_rank}"
    return device


def split(total: int, group: Group, what: str) -> int:
    """``total / N``; UsageError unless N divides it."""
    if total % group.world_size:
        raise UsageError(f"the world size {group.world_size} must divide the {what}, got {total}")
    return total // group.world_size


TRAINING, SAMPLING = 0, 1  # the streams of `rank_seed`


def rank_seed(seed: int, rank: int, stream: int = TRAINING) -> int:
    """A seed of its own for rank ``rank``'s ``stream`` (training, sampling), derived from ``seed``."""
    import numpy as np

    words = np.random.SeedSequence([int(seed), int(rank), int(stream), 0x1F7B]).generate_state(2)
    return int(words[0]) << 31 | int(words[1]) >> 1


class SlicedPrior:
    """A prior that draws ``world_size·n`` configurations from the global RNG and returns slice ``rank``."""

    def __init__(self, prior, rank: int, world_size: int):
        self.inner, self.rank, self.world_size = prior, rank, world_size

    def sample(self, n: int, *args, **kwargs):
        z = self.inner.sample(n * self.world_size, *args, **kwargs)
        return z[self.rank * n:(self.rank + 1) * n]

    def __getattr__(self, name):
        return getattr(self.inner, name)


def can_slice(model) -> bool:
    return callable(getattr(getattr(model, "prior", None), "sample", None))


class sliced_noise:
    """Inside the block, ``model.sample(n)`` on rank r gives slice r of what ``model.sample(N·n)`` gives."""

    def __init__(self, model, group: Group):
        self.model, self.group, self.prior = model, group, None

    def __enter__(self):
        if can_slice(self.model):
            self.prior = self.model.prior
            self.model.prior = SlicedPrior(self.prior, self.group.rank, self.group.world_size)
        return self

    def __exit__(self, *exc):
        if self.prior is not None:
            self.model.prior = self.prior
        return False


def all_gather_tensor(tensor):
    """The ranks' equal-shape tensors concatenated along dimension 0, in rank order."""
    import torch
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def all_gather_object(obj) -> list:
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0's file is on disk before the others read it)."""
    import torch.distributed as dist

    dist.barrier()


def average_gradients(params) -> None:
    """Sum the gradients over the ranks with one all_reduce and divide by the world size."""
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
        offset += g.numel()
