"""The ``hmc`` sampler: Hybrid Monte Carlo (`reference.hmc`) on the theory's field space, float64 by default.

``chains`` independent chains run as one batch: ``n_therm`` thermalisation trajectories (the step
size adapted towards ``target_acceptance`` when ``adapt``), then ``n_traj`` measurements, one after
every ``measure_every`` trajectories of length ``trajectory_length`` with ``n_steps`` integrator steps
(leapfrog or Omelyan); the theory's costly observables (`Theory.cheap_observables` leaves them out,
e.g. SU(N)'s after gradient flow) only at every ``costly_every``-th measurement, their τ_int in
units of their own measurements. Under ``--distributed`` the chains are split over the ranks, bit for bit
the chains of one process (`reference.hmc`); rank 0 writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import UsageError
from suite.samplers import register
from suite.samplers.base import RunContext, Sampler
from suite.samplers.spec import option

INTEGRATORS = ("leapfrog", "omelyan")


@dataclass(frozen=True)
class HMCSpec:
    chains: int = option(16, min=1, help="independent HMC chains (one batch)")
    n_therm: int = option(500, min=0, flag="--therm", help="thermalisation trajectories (step size adapted)")
    n_traj: int = option(1000, min=2, flag="--n-traj", help="measurements per chain")
    measure_every: int = option(1, min=1, help="trajectories per measurement (for costly observables)")
    costly_every: int = option(1, min=1, help="measurements per measurement of the theory's costly observables "
                                              "(e.g. after gradient flow); the others at every measurement")
    integrator: str = option("leapfrog", choices=INTEGRATORS, help="molecular-dynamics integrator")
    n_steps: int = option(10, min=1, help="integrator steps per trajectory (initial value when adapting)")
    trajectory_length: float = option(1.0, above=0, flag="--traj-length", help="trajectory length (default 1)")
    target_acceptance: float = option(0.8, above=0, below=1, help="acceptance the step size adapts to")
    adapt: bool = option(True, help="adapt the step size during thermalisation")

    def check(self) -> None:
        if self.costly_every > self.n_traj:
            raise UsageError(f"costly_every = {self.costly_every} exceeds n_traj = {self.n_traj}: the costly "
                             "observables would never be measured")

    def settings(self):
        """The `reference.hmc.HMCSettings` of this spec."""
        from reference.hmc import HMCSettings

        try:
            return HMCSettings(trajectory_length=self.trajectory_length, n_steps=self.n_steps,
                               integrator=self.integrator, adapt=self.adapt,
                               target_acceptance=self.target_acceptance)
        except ValueError as err:
            raise UsageError(str(err)) from None


class HMC(Sampler):
    name = "hmc"
    spec = HMCSpec
    default_dtype = "float64"
    markov = True
    baseline = True
    runs_table = "HMC runs"
    description = "Hybrid Monte Carlo"
    split_over_ranks = ("chains",)

    def run(self, spec: HMCSpec, theory, context: RunContext):
        from reference.hmc import run_hmc
        from suite import distributed

        group = distributed.current()
        chain = run_hmc(theory, chains=spec.chains, n_therm=spec.n_therm, n_traj=spec.n_traj, seed=context.seed,
                        settings=spec.settings(), dtype=context.dtype, device=context.device,
                        progress=context.progress if distributed.is_writer() else False,
                        measure_every=spec.measure_every, costly_every=spec.costly_every, group=group)
        if group is not None:
            chain.info["distributed"] = group.info("sliced")
        return chain, None

    def budget_label(self, spec: dict) -> str:
        every = spec.get("measure_every", 1)
        measured = "trajectories" if every == 1 else f"measurements (every {every})"
        return f"{spec['chains']} chains × {spec['n_traj']} {measured}"

    def statistics(self, info: dict) -> str:
        every, costly = info.get("measure_every", 1), info.get("costly_every", 1)
        measured = f"{info['n_traj']} trajectories" if every == 1 else f"{info['n_traj']} measurements every {every} trajectories"
        costly = f" (costly observables at every {costly}th)" if costly > 1 else ""
        return f"{info['chains']} chains x {measured}{costly} after {info['n_therm']}"

    def columns(self, row) -> dict:
        from suite.report.tables import format_value

        info, metrics = row.sampler_info, row.metrics
        exp_dh = metrics.get("exp_minus_delta_h")
        return {
            "chains": info.get("chains"),
            "n_traj": info.get("n_traj"),
            "integrator": info.get("integrator"),
            "n_steps": info.get("n_steps"),
            "step_size": info.get("step_size"),
            "acceptance": metrics.get("acceptance"),
            "exp_minus_delta_h": format_value(exp_dh["value"], exp_dh["error"]) if exp_dh else None,
            "diverged": metrics.get("diverged_fraction"),
            # the theory's solver work (`Theory.solver_work`, e.g. CG iterations), where it reports any
            **{name: value for name, value in info.items() if name.endswith("_per_trajectory")},
        }


register(HMC())
