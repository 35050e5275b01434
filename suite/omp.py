"""OpenMP's wait policy for benchmark scripts, set before torch is imported (torch-free module).

OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it. With the default policy, on a machine
whose cores are also busy with other processes, every parallel torch op waits for a descheduled
worker thread (the batched HMC at L >= 32 with 64 chains took ~1.8 s per trajectory instead of
~10 ms on a shared 2-core machine; bench/README.md). PASSIVE lets idle OpenMP threads sleep.
"""

from __future__ import annotations

import os

OMP_POLICIES = ("passive", "active", "unset")


def apply_omp_wait_policy(argv: list[str]) -> None:
    """``--omp-wait-policy passive|active|unset`` in argv, else the environment's value, else PASSIVE."""
    policy = None
    for i, arg in enumerate(argv):
        if arg.startswith("--omp-wait-policy="):
            policy = arg.split("=", 1)[1]
        elif arg == "--omp-wait-policy" and i + 1 < len(argv):
            policy = argv[i + 1]
    if policy in ("passive", "active"):
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
    elif policy == "unset":
        os.environ.pop("OMP_WAIT_POLICY", None)
    elif policy is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
