"""HMC: one trajectory (leapfrog, 10 steps of 0.1) of BATCH chains against L, and the
integrated autocorrelation time of χ₂ on a quick catalogue entry."""

import tempfile
from pathlib import Path

import torch

from reference.hmc import HMCSettings, thermalise

from .common import BATCH, SEED, configurations, theory


class Trajectory:
    params = (["phi4", "u1"], [16, 64])
    param_names = ["theory", "L"]

    def setup(self, name, L):
        self.theory = theory(name, L)
        self.chains = thermalise(self.theory, chains=BATCH, n_therm=0, seed=SEED, progress=False,
                                 settings=HMCSettings(n_steps=10, adapt=False))
        self.chains.x = configurations(self.theory)
        self.time_trajectory(name, L)  # a running chain: what the harness carries from one trajectory to the next

    def time_trajectory(self, name, L):
        self.chains.trajectory(self.theory, "leapfrog")

    def peakmem_trajectory(self, name, L):
        self.time_trajectory(name, L)


class AutocorrelationTime:
    """τ_int of χ₂ (the slowest of the standard observables) on phi4/tutorial2021/L8, from a
    seeded run with the default HMC settings: 16 chains, 200 + 1000 trajectories."""

    timeout = 300

    def track_tau_int_chi2(self):
        from suite.catalogue import get_entry
        from suite.samplers import run_sampler, spec_dict
        from suite.metrics import estimate_observables

        target = get_entry("phi4/tutorial2021/L8").build_theory()
        spec = spec_dict({"name": "hmc", "n_therm": 200, "n_traj": 1000})
        with tempfile.TemporaryDirectory() as run_dir:
            chain, _ = run_sampler(spec, target, seed=SEED, device="cpu", dtype=torch.float64, run_dir=Path(run_dir),
                                   progress=False)
        return estimate_observables(chain, target)["chi2"]["tau_int"]

    track_tau_int_chi2.unit = "trajectories"
