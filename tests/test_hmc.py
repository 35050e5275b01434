"""HMC: reversibility, integrator error scaling, <exp(−ΔH)> = 1, the free field reproduced."""

import math

import numpy as np
import pytest
import torch

from reference.hmc import HMCSettings, hmc_ensemble, hmc_trajectory, integrate, run_hmc
from suite.exact.free_scalar import free_scalar_exact
from suite.stats import gamma_method
from suite.theories.phi4 import Phi4


def configuration(theory, seed=0, batch=1):
    return 0.7 * theory.field.prior_sample(batch, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_integrators_are_exactly_reversible(integrator):
    theory = Phi4.from_albergo((8, 8), m2=-4.0, lam=6.975)
    x0 = configuration(theory, batch=3)
    p0 = theory.field.momenta(x0, generator=torch.Generator().manual_seed(1))
    x1, p1 = integrate(theory, x0, p0, 0.05, 20, integrator)
    x2, p2 = integrate(theory, x1, -p1, 0.05, 20, integrator)
    torch.testing.assert_close(x2, x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(-p2, p0, rtol=0, atol=1e-12)


def delta_h(theory, integrator, n_steps, x, p):
    h0 = theory.field.kinetic_energy(p) + theory.action(x)
    x1, p1 = integrate(theory, x, p, 1.0 / n_steps, n_steps, integrator)
    return (theory.field.kinetic_energy(p1) + theory.action(x1) - h0).abs().item()


def test_energy_violation_falls_as_eps_squared():
    theory = Phi4.from_albergo((8, 8), m2=-4.0, lam=6.975)
    x = configuration(theory, seed=2)
    p = theory.field.momenta(x, generator=torch.Generator().manual_seed(3))
    slopes, constants = {}, {}
    for integrator in ("leapfrog", "omelyan"):
        steps = np.array([40, 80, 160, 320])
        dh = np.array([delta_h(theory, integrator, n, x, p) for n in steps])
        slope, intercept = np.polyfit(np.log(1.0 / steps), np.log(dh), 1)
        slopes[integrator], constants[integrator] = slope, math.exp(intercept)
    for integrator, slope in slopes.items():
        assert slope == pytest.approx(2.0, abs=0.15), (integrator, slopes)
    assert constants["omelyan"] < constants["leapfrog"] / 3, constants


def test_run_is_reproducible_and_adapts_step_size():
    theory = Phi4.from_albergo((6, 6), m2=-4.0, lam=6.975)
    settings = HMCSettings(n_steps=3, target_acceptance=0.9)
    a = run_hmc(theory, chains=4, n_therm=100, n_traj=20, seed=7, settings=settings, progress=False)
    b = run_hmc(theory, chains=4, n_therm=100, n_traj=20, seed=7, settings=settings, progress=False)
    np.testing.assert_array_equal(a.observables["chi2"], b.observables["chi2"])
    assert a.info["n_steps"] > 3  # 3 steps is too coarse for 90% acceptance here
    assert a.observables["chi2"].shape == (4, 20)


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_mean_exp_minus_delta_h_is_one(integrator):
    # Away from the leapfrog's instability of the quartic potential (target 0.7 diverges in a
    # few per cent of trajectories, and the heavy tail of exp(−ΔH) then biases its sample mean).
    theory = Phi4.from_albergo((8, 8), m2=-4.0, lam=6.975)
    chain = run_hmc(theory, chains=64, n_therm=50, n_traj=100, seed=11,
                    settings=HMCSettings(integrator=integrator, target_acceptance=0.8), progress=False)
    result = gamma_method(np.exp(-chain.delta_h))
    assert abs(result.value - 1) < 4 * result.error, (result.value, result.error)
    assert 0.7 < chain.accepted.mean() < 0.995  # the stability guard may shorten the step


def free_field_pulls(length, chains, n_traj, seed):
    theory = Phi4.from_lecture((length, length), m2=(4 / length) ** 2, lam=0.0)
    exact = free_scalar_exact(theory)
    chain = run_hmc(theory, chains=chains, n_therm=100, n_traj=n_traj, seed=seed, progress=False)
    pulls = {}
    for name in ("phi2", "chi2", "e_ising", "abs_mag", "action_density"):
        r = gamma_method(chain.observables[name])
        pulls[name] = (r.value - exact[name]) / r.error
    return pulls


def test_free_field_reproduced_small():
    pulls = free_field_pulls(8, chains=32, n_traj=300, seed=5)
    assert max(abs(p) for p in pulls.values()) < 4, pulls


@pytest.mark.slow
def test_free_field_reproduced_within_3_sigma_at_L16():
    pulls = free_field_pulls(16, chains=64, n_traj=2000, seed=6)
    assert max(abs(p) for p in pulls.values()) < 3, pulls


def test_ensemble_for_forward_kl_has_the_free_field_variance():
    theory = Phi4.from_lecture((4, 4), m2=1.0, lam=0.0)
    configs = hmc_ensemble(theory, n_configs=3000, chains=100, n_therm=300, separation=3, seed=0)
    assert configs.shape == (3000, 4, 4)
    phi2 = gamma_method((configs**2).mean((1, 2)).reshape(30, 100).T.numpy())
    assert abs(phi2.value - free_scalar_exact(theory)["phi2"]) < 4 * phi2.error


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_carried_action_and_force_change_nothing(integrator):
    theory = Phi4.from_albergo((6, 6), m2=-4.0, lam=6.975)
    start = configuration(theory, batch=8)
    runs = []
    for cache in (None, {}):
        generator, x, history = torch.Generator().manual_seed(5), start, []
        for _ in range(6):
            x, accepted, delta_h = hmc_trajectory(theory, x, 0.1, 4, integrator, generator, cache)
            history.append((x, accepted, delta_h))
        runs.append(history)
    assert not all(a.all() for _, a, _ in runs[0]) and any(a.any() for _, a, _ in runs[0])  # both kinds happen
    for (x1, a1, d1), (x2, a2, d2) in zip(*runs):
        assert torch.equal(x1, x2) and torch.equal(a1, a2) and torch.equal(d1, d2)


def test_measuring_every_kth_trajectory_thins_the_same_chain():
    """measure_every = 3 runs the same trajectories as measuring each one and keeps every third
    measurement, while the Metropolis record keeps all of them."""
    theory = Phi4.from_albergo((4, 4), m2=-4.0, lam=8.0)
    every = run_hmc(theory, chains=2, n_therm=5, n_traj=6, seed=3)
    thinned = run_hmc(theory, chains=2, n_therm=5, n_traj=2, seed=3, measure_every=3)
    assert thinned.observables["chi2"].shape == (2, 2) and thinned.accepted.shape == (2, 6)
    np.testing.assert_array_equal(thinned.observables["chi2"], every.observables["chi2"][:, 2::3])
    np.testing.assert_array_equal(thinned.delta_h, every.delta_h)
    assert thinned.info["measure_every"] == 3


class CostlyMagnetisation(Phi4):
    """φ⁴ whose |M| counts as a costly observable (left out of its cheap observables)."""

    def cheap_observables(self, x):
        return {k: v for k, v in self.observables(x).items() if k != "abs_mag"}


def test_costly_observables_are_measured_at_every_kth_measurement():
    """costly_every = 3: the same chain; cheap observables at every measurement, the costly one at
    every third (its records those of measuring it always, thinned), and its cost per independent
    sample counts three measurements per record."""
    from suite.metrics import estimate_observables

    theory = CostlyMagnetisation.from_albergo((4, 4), m2=-4.0, lam=8.0)
    every = run_hmc(theory, chains=2, n_therm=5, n_traj=6, seed=3)
    thinned = run_hmc(theory, chains=2, n_therm=5, n_traj=6, seed=3, costly_every=3)
    np.testing.assert_array_equal(thinned.observables["chi2"], every.observables["chi2"])
    np.testing.assert_array_equal(thinned.observables["abs_mag"], every.observables["abs_mag"][:, 2::3])
    assert thinned.shape == (2, 6) and thinned.info["costly_every"] == 3
    est = estimate_observables(thinned, theory, seconds_per_config=1.0)
    for name, records_per_measurement in (("chi2", 1), ("abs_mag", 3)):
        assert est[name]["seconds_per_independent_sample"] == pytest.approx(
            records_per_measurement * 2 * est[name]["tau_int"])
    with pytest.raises(ValueError, match="costly_every"):
        run_hmc(theory, chains=2, n_therm=1, n_traj=2, seed=3, costly_every=3)


class CountingTheory:
    """A theory that counts the calls of its action and force (outside measurements)."""

    def __init__(self, theory):
        self.theory, self.calls, self.measuring = theory, {"action": 0, "force": 0}, False
        self.field, self.lattice = theory.field, theory.lattice

    def action(self, x):
        self.calls["action"] += not self.measuring
        return self.theory.action(x)

    def force(self, x):
        self.calls["force"] += 1
        return self.theory.force(x)

    def kick(self, x, p, eps):
        self.calls["force"] += 1  # a fused kick evaluates the force without keeping it
        return self.theory.kick(x, p, eps)

    def refresh(self, x, generator=None):
        return False

    def solver_work(self):
        return {}

    def observables(self, x):
        self.measuring = True
        try:
            return self.theory.observables(x)
        finally:
            self.measuring = False


@pytest.mark.parametrize("integrator, measure_every", [("leapfrog", 1), ("omelyan", 2)])
def test_evaluation_counts_are_the_calls_made(integrator, measure_every):
    """The info's evaluations per trajectory match the action and force calls actually made: one of
    each to start (no state carried yet), then per trajectory one action and the integrator's forces."""
    counting = CountingTheory(Phi4.from_albergo((4, 4), m2=-4.0, lam=8.0))
    settings = HMCSettings(n_steps=5, integrator=integrator, adapt=False)
    chain = run_hmc(counting, chains=2, n_therm=3, n_traj=4, seed=1, settings=settings, measure_every=measure_every)
    trajectories = 3 + 4 * measure_every
    info = chain.info
    assert counting.calls["action"] == 1 + trajectories * info["action_evaluations_per_trajectory"]
    assert counting.calls["force"] == 1 + trajectories * info["force_evaluations_per_trajectory"]
    assert info["force_evaluations_per_trajectory"] == 5 * (2 if integrator == "omelyan" else 1)
    assert info["evaluations_per_sample"] == measure_every * (1 + info["force_evaluations_per_trajectory"])


def _first_quick_entry_of_each_theory():
    from suite.catalogue import entries

    found = {}
    for entry in entries("quick"):
        found.setdefault(entry.theory, entry)
    return sorted(found.values(), key=lambda e: e.id)


@pytest.mark.parametrize("entry", _first_quick_entry_of_each_theory(), ids=lambda e: e.id)
def test_blocks_of_chains_integrate_bit_for_bit_like_the_whole_batch(entry):
    """A trajectory integrated over blocks of two chains (`chains_per_block`) gives the same fields,
    decisions and ΔH as the whole batch at once, for every theory that says it is chainwise; the
    others are integrated whole."""
    from reference.hmc import chains_per_block

    theory = entry.build_theory()
    x = theory.field.prior_sample(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    two_chains = 2 * x[0].numel() * x.element_size()
    if not theory.chainwise:
        assert chains_per_block(theory, x, two_chains) == 5
        return
    assert chains_per_block(theory, x, two_chains) == 2 and chains_per_block(theory, x, two_chains // 2) == 5
    runs = []
    for block_bytes in (None, two_chains):
        generator, y, history = torch.Generator().manual_seed(7), x, []
        for _ in range(3):
            y, accepted, delta_h = hmc_trajectory(theory, y, 0.05, 3, "leapfrog", generator, {},
                                                  block_bytes=block_bytes)
            history.append((y, accepted, delta_h))
        runs.append(history)
    for (x1, a1, d1), (x2, a2, d2) in zip(*runs):
        assert torch.equal(x1, x2) and torch.equal(a1, a2) and torch.equal(d1, d2)
