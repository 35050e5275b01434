"""Run under torchrun by tests/test_distributed.py: data-parallel `suite.training.train` with gloo.

Rank 0 writes a JSON summary to argv[1]: the training curves of a one-process run, an
uninterrupted distributed run, and a distributed run stopped by a SIGTERM sent to rank 1 alone at
step 5 and then resumed; and the files each rank found in its checkpoint folder.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch

from suite import distributed, interrupts
from suite.catalogue import get_entry
from suite.errors import Interrupted
from suite.models import build_model
from suite.training import Budget, ReverseKL, train

STEPS, STOP_AT = 12, 5


class SignalAt(ReverseKL):
    """Reverse KL whose rank ``rank`` sends itself SIGTERM while taking step ``at``."""

    def __init__(self, theory, rank, at):
        super().__init__(theory)
        self.rank, self.at = rank, at

    def loss(self, model, batch_size, step):
        if step == self.at and self.shard[0] == self.rank:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().loss(model, batch_size, step)


def fresh(theory):
    torch.manual_seed(0)
    return build_model("affine", theory, {"n_layers": 2}).double()


def curve(log):
    return [[row["step"], row["loss"], row["ess"], row["grad_norm"], row["lr"]] for row in log.rows]


def main(out: str) -> None:
    group = distributed.initialize("cpu")
    theory = get_entry("phi4/free/L8").build_theory()
    folder = Path(out).parent
    options = dict(batch_size=16, lr=1e-2, schedule="constant", seed=3, progress=False, checkpoint_every=4)
    summary = {"world_size": group.world_size}
    if group.writer:  # the same training in one process, for comparison
        summary["single"] = curve(train(fresh(theory), ReverseKL(theory), budget=Budget(steps=STEPS), **options))
    straight = train(fresh(theory), ReverseKL(theory), budget=Budget(steps=STEPS), group=group,
                     checkpoint_path=folder / "straight.pt", **options)
    summary["straight"] = curve(straight)
    summary["straight_cpu_seconds"] = straight.cpu_seconds
    stopped = None
    with interrupts.handle_signals():
        try:
            train(fresh(theory), SignalAt(theory, 1, STOP_AT), budget=Budget(steps=STEPS), group=group,
                  checkpoint_path=folder / "resumed.pt", **options)
        except Interrupted as err:
            stopped = str(err)
    summary["stopped"] = stopped
    summary["checkpoint_steps"] = torch.load(folder / "resumed.pt", weights_only=True)["log"]["steps"]
    resumed = train(fresh(theory), ReverseKL(theory), budget=Budget(steps=STEPS), group=group,
                    checkpoint_path=folder / "resumed.pt", resume=True, **options)
    summary["resumed"] = curve(resumed)
    if group.writer:
        Path(out).write_text(json.dumps(summary))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
