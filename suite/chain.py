"""A sampler run's output: per-configuration observables, weights, accept flags and timings.

Arrays are shaped (R, N): R independent replica (HMC chains; one replicum for independent
flow samples), N measurements each, in Monte Carlo order.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Chain:
    observables: dict[str, np.ndarray]
    accepted: np.ndarray | None = None       # (R, N) bool: Metropolis decisions
    delta_h: np.ndarray | None = None        # (R, N) HMC energy violation H_new − H_old
    log_weights: np.ndarray | None = None    # (R, N) −S − log q of importance samples (flow, ais), q normalised
    target_log_weights: np.ndarray | None = None  # (M,) −S − log q at samples of the target (forward ESS, EUBO)
    timings: dict[str, float] = field(default_factory=dict)   # seconds
    info: dict = field(default_factory=dict)  # sampler settings actually used (step size, ...)
    metrics: dict = field(default_factory=dict)  # what the sampler measured beyond its chain, into the row's metrics

    @property
    def shape(self) -> tuple[int, int]:
        """(replica, measurements) of the most often measured observable (HMC may measure costly ones
        less often: `reference.hmc.run_hmc`'s ``costly_every``)."""
        return max((v.shape for v in self.observables.values()), key=lambda shape: shape[1])

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (.npz) atomically: a crash never leaves a half-written file."""
        path = Path(path)
        arrays = {f"obs/{k}": v for k, v in self.observables.items()}
        for name in ("accepted", "delta_h", "log_weights", "target_log_weights"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        arrays["meta"] = np.array(json.dumps({"timings": self.timings, "info": self.info, "metrics": self.metrics}))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")  # unique per writer
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def load(cls, path: str | Path) -> "Chain":
        """Read a chains file; a ValueError naming the file if it is missing, truncated or not one."""
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                return cls(
                    observables={k[4:]: data[k] for k in data.files if k.startswith("obs/")},
                    accepted=data["accepted"] if "accepted" in data.files else None,
                    delta_h=data["delta_h"] if "delta_h" in data.files else None,
                    log_weights=data["log_weights"] if "log_weights" in data.files else None,
                    target_log_weights=data["target_log_weights"] if "target_log_weights" in data.files else None,
                    timings=meta["timings"],
                    info=meta["info"],
                    metrics=meta.get("metrics", {}),
                )
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"chains file {path} cannot be read ({type(err).__name__}: {err})") from None
