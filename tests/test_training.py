"""Tests of suite.training on an exactly representable Gaussian target (free field, 4x4)."""

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from suite.theories.phi4 import Phi4
from suite.training import (OBJECTIVES, Budget, ForwardKL, PathGradient, ReverseKL, TrainingDiverged,
                            TrainingLog, train)

LATTICE = (4, 4)
VOLUME = 16


class LinearGaussian(nn.Module):
    """x = mu + L z with L lower-triangular (positive diagonal): exact sample and log_prob."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(VOLUME))
        self.log_diag = nn.Parameter(torch.zeros(VOLUME))
        self.lower = nn.Parameter(torch.zeros(VOLUME, VOLUME))

    def matrix(self):
        return torch.tril(self.lower, -1) + torch.diag(self.log_diag.exp())

    def _log_q(self, z):
        return -0.5 * (z * z).sum(1) - self.log_diag.sum() - 0.5 * VOLUME * math.log(2 * math.pi)

    def sample(self, n):
        z = torch.randn(n, VOLUME)
        x = self.mu + z @ self.matrix().T
        return x.view(n, *LATTICE), self._log_q(z)

    def log_prob(self, x):
        y = (x.reshape(len(x), VOLUME) - self.mu).T
        z = torch.linalg.solve_triangular(self.matrix(), y, upper=False).T
        return self._log_q(z)


class NoLogProb(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = LinearGaussian()

    def sample(self, n):
        return self.inner.sample(n)


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


class Faulty(LinearGaussian):
    """NaN loss on the sample calls in ``nan_calls``, infinite gradient on those in ``inf_calls``."""

    def __init__(self, nan_calls=(), inf_calls=(), always_nan_from=None):
        super().__init__()
        self.calls, self.nan_calls, self.inf_calls, self.always_nan_from = 0, set(nan_calls), set(inf_calls), always_nan_from

    def sample(self, n):
        self.calls += 1
        x, log_q = super().sample(n)
        if self.calls in self.nan_calls or (self.always_nan_from is not None and self.calls >= self.always_nan_from):
            x = x * math.nan
        if self.calls in self.inf_calls:
            x = _InfGrad.apply(x)
        return x, log_q


class Interrupted(Exception):
    pass


class CrashAt:
    """Delegates to an objective but raises at step ``at`` (a killed job)."""

    def __init__(self, inner, at):
        self.inner, self.at = inner, at
        self.name, self.reports_ess = inner.name, inner.reports_ess

    def loss(self, model, batch_size, step):
        if step == self.at:
            raise Interrupted
        return self.inner.loss(model, batch_size, step)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def theory():
    return Phi4.from_lecture(LATTICE, m2=1.0, lam=0.0)


@pytest.fixture(scope="module")
def kernel(theory):
    """K with S(x) = ½ xᵀKx, from the (linear) analytic force."""
    eye = torch.eye(VOLUME, dtype=torch.float64).view(VOLUME, *LATTICE)
    return theory.force(eye).reshape(VOLUME, VOLUME)


def exact_samples(kernel, n, seed=1):
    chol = torch.linalg.cholesky(torch.linalg.inv(kernel))
    z = torch.randn(n, VOLUME, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return (z @ chol.T).float().view(n, *LATTICE)


def model_ess(model, theory, n=4096, seed=123):
    from suite.stats import effective_sample_size
    torch.manual_seed(seed)
    with torch.no_grad():
        x, log_q = model.sample(n)
        return effective_sample_size((-(log_q + theory.action(x))).double().numpy())


def make_model(seed=0):
    torch.manual_seed(seed)
    return LinearGaussian()


def test_budget_validation():
    with pytest.raises(ValueError, match="at least one"):
        Budget()
    for bad in ({"steps": 0}, {"seconds": -1.0}, {"target_ess": 1.5}):
        with pytest.raises(ValueError):
            Budget(**bad)
    assert set(OBJECTIVES) == {"reverse-kl", "forward-kl", "path-gradient"}


def test_reverse_kl_reaches_high_ess_and_bounds_log_z(theory, kernel):
    model = make_model()
    ess_before = model_ess(model, theory)
    log = train(model, ReverseKL(theory), batch_size=256, lr=0.02, budget=Budget(steps=300), seed=0)
    ess_after = model_ess(model, theory)
    assert ess_before < 0.6 and ess_after > 0.95, (ess_before, ess_after)
    assert log.steps == 300 and log.skipped == 0 and log.stop_reason == "steps"
    assert log.column("ess")[-20:].mean() > 0.9
    # E_q[log q + S] = KL(q‖p) − log Z >= −log Z, with equality at q = p
    log_z = 0.5 * VOLUME * math.log(2 * math.pi) - 0.5 * torch.logdet(kernel).item()
    for m in (make_model(), model):
        torch.manual_seed(7)
        with torch.no_grad():
            x, log_q = m.sample(8192)
            bound = (log_q + theory.action(x)).double().mean().item()
        assert bound > -log_z - 0.02
    assert bound < -log_z + 0.05


def test_path_gradient_trains_and_sticks_the_landing(theory, kernel):
    model = make_model()
    train(model, PathGradient(theory), batch_size=256, lr=0.02, budget=Budget(steps=300), seed=0)
    assert model_ess(model, theory) > 0.95
    # at the exact optimum the path gradient vanishes for every batch; the reverse-KL one does not
    exact = LinearGaussian()
    with torch.no_grad():
        chol = torch.linalg.cholesky(torch.linalg.inv(kernel)).float()
        exact.log_diag.copy_(chol.diagonal().log())
        exact.lower.copy_(torch.tril(chol, -1))
    norms = {}
    for objective in (PathGradient(theory), ReverseKL(theory)):
        torch.manual_seed(3)
        exact.zero_grad()
        loss, _ = objective.loss(exact, 256, 1)
        loss.backward()
        norms[objective.name] = torch.cat([p.grad.flatten() for p in exact.parameters()]).norm().item()
    assert norms["path-gradient"] < 1e-4 < 0.1 < norms["reverse-kl"], norms


def test_path_gradient_matches_two_pass_construction(theory):
    """Same gradient as the explicit form G = ∂_x(log q_θ + S)(x) at x' = stop_grad(x), then G·∂_θ x."""
    model = make_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.manual_seed(4)
    model.zero_grad()
    PathGradient(theory).loss(model, 64, 1)[0].backward()
    ours = [p.grad.clone() for p in model.parameters()]
    torch.manual_seed(4)
    model.zero_grad()
    x, _ = model.sample(64)
    x_prime = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad((model.log_prob(x_prime) + theory.action(x_prime)).mean(), x_prime)
    (x * g).sum().backward()
    for a, p in zip(ours, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-6)


def test_path_gradient_needs_log_prob(theory):
    with pytest.raises(TypeError, match="log_prob"):
        train(NoLogProb(), PathGradient(theory), batch_size=8, lr=0.01, budget=Budget(steps=1))


def test_forward_kl_converges_on_exact_samples(theory, kernel):
    samples = exact_samples(kernel, 4096)
    model = make_model()
    objective = ForwardKL(samples, theory=theory, ess_every=5)
    log = train(model, objective, batch_size=256, lr=0.02, budget=Budget(steps=300), seed=0)
    ess = log.column("ess")
    assert all(math.isnan(e) == (s % 5 != 0) for s, e in zip(log.column("step"), ess))
    assert model_ess(model, theory) > 0.9
    with pytest.raises(ValueError, match="target_ess"):
        train(model, ForwardKL(samples), batch_size=8, lr=0.01, budget=Budget(target_ess=0.5))


class CountingTheory:
    """A theory that counts the configurations its action is evaluated on and those whose
    action gradient backpropagation computes (a force evaluation each)."""

    def __init__(self, theory):
        self.theory, self.actions, self.forces = theory, 0, 0

    def action(self, x):
        self.actions += len(x)
        if x.requires_grad:
            x.register_hook(lambda grad: setattr(self, "forces", self.forces + len(grad)) or grad)
        return self.theory.action(x)


@pytest.mark.parametrize("name", ["reverse-kl", "path-gradient", "forward-kl"])
def test_training_evaluations_are_counted(theory, kernel, name):
    """The log's action + force evaluations equal those the objective's theory was asked for."""
    counting = CountingTheory(theory)
    objective = (ForwardKL(exact_samples(kernel, 256), theory=counting, ess_every=3) if name == "forward-kl"
                 else OBJECTIVES[name](counting))
    log = train(make_model(), objective, batch_size=16, lr=0.01, budget=Budget(steps=10), seed=0)
    assert log.evaluations == counting.actions + counting.forces
    assert log.evaluations == {"forward-kl": 3 * 16}.get(name, 10 * 2 * 16)


def test_budget_by_target_ess_and_seconds(theory):
    model = make_model()
    budget = Budget(steps=2000, target_ess=0.8, ess_window=5)
    log = train(model, ReverseKL(theory), batch_size=128, lr=0.02, budget=budget, schedule="constant")
    assert log.stop_reason == "target_ess" and log.steps < 2000
    assert log.column("ess")[-5:].mean() >= 0.8 > log.column("ess")[-6:-1].mean()
    with pytest.raises(ValueError, match="cosine"):
        train(model, ReverseKL(theory), batch_size=8, lr=0.01, budget=Budget(seconds=1.0))
    log = train(make_model(), ReverseKL(theory), batch_size=8, lr=0.01, budget=Budget(seconds=0.2),
                schedule="constant", log_every=1000)
    assert log.stop_reason == "seconds" and 0.2 <= log.seconds < 2.0 and len(log.rows) == 1


def test_nan_guard_skips_and_counts(theory):
    torch.manual_seed(0)
    model = Faulty(nan_calls={3, 5}, inf_calls={7})
    log = train(model, ReverseKL(theory), batch_size=32, lr=0.01, budget=Budget(steps=10), seed=0)
    assert log.steps == 10 and log.skipped == 3
    assert [r["step"] for r in log.rows if r["skipped"]] == [3, 5, 7]
    assert math.isnan(log.rows[2]["loss"]) and math.isfinite(log.rows[6]["loss"])
    # skipped steps make no update: all-bad runs leave the parameters untouched
    torch.manual_seed(0)
    model = Faulty(always_nan_from=1)
    before = [p.detach().clone() for p in model.parameters()]
    log = train(model, ReverseKL(theory), batch_size=32, lr=0.01, budget=Budget(steps=4), max_bad_steps=5)
    assert log.skipped == 4 and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(TrainingDiverged, match="3 consecutive steps") as err:
        train(Faulty(always_nan_from=4), ReverseKL(theory), batch_size=32, lr=0.01,
              budget=Budget(steps=20), max_bad_steps=3)
    assert "\n" not in str(err.value) and "at step 6" in str(err.value)


@pytest.mark.parametrize("name", ["reverse-kl", "forward-kl"])
def test_checkpoint_resume_is_bit_for_bit(theory, kernel, tmp_path, name):
    def objective():
        if name == "forward-kl":
            return ForwardKL(exact_samples(kernel, 100), theory=theory, ess_every=3)
        return ReverseKL(theory)

    kwargs = dict(batch_size=32, lr=0.05, budget=Budget(steps=20), seed=5, weight_decay=0.01, clip_grad=1.0)
    full_model = make_model(1)
    full = train(full_model, objective(), **kwargs)
    path = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupted):
        train(make_model(1), CrashAt(objective(), 14), checkpoint_path=path, checkpoint_every=5, **kwargs)
    torch.manual_seed(999)  # the resumed run must not depend on the RNG state it starts in
    resumed_model = make_model(2)
    resumed = train(resumed_model, objective(), checkpoint_path=path, checkpoint_every=5, resume=True, **kwargs)
    assert resumed.steps == 20 and len(resumed.rows) == 20
    assert all(torch.equal(a, b) for a, b in zip(full_model.parameters(), resumed_model.parameters()))
    for column in ("step", "loss", "ess", "lr", "grad_norm", "skipped"):
        np.testing.assert_array_equal(full.column(column), resumed.column(column))
    assert torch.load(path, weights_only=True)["log"]["steps"] == 20
    assert resumed.evaluations == full.evaluations > 0
    # resuming a finished run returns at once
    again = train(make_model(3), objective(), checkpoint_path=path, resume=True, **kwargs)
    assert again.steps == 20 and again.stop_reason == "steps"


def test_log_to_csv(theory, tmp_path):
    log = train(make_model(), ReverseKL(theory), batch_size=16, lr=0.01, budget=Budget(steps=6), log_every=2)
    assert [r["step"] for r in log.rows] == [2, 4, 6]
    assert log.column("lr").tolist() == pytest.approx([0.01 * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in (1, 3, 5)])
    assert log.totals()["steps"] == 6 and all(r["peak_memory_bytes"] > 2**20 for r in log.rows)
    cpu = log.column("cpu_seconds")  # one thread (conftest): CPU time grows and stays below wall time
    assert 0 < cpu[0] < cpu[-1] == log.totals()["cpu_seconds"] and cpu[-1] <= log.seconds * 1.05 + 0.01
    path = tmp_path / "out" / "training.csv"
    log.to_csv(path)
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["step", "loss", "ess", "seconds", "cpu_seconds", "peak_memory_bytes", "lr", "grad_norm",
                             "skipped"]
    assert [int(r["step"]) for r in rows] == [2, 4, 6] and rows[0]["skipped"] == "0"
    assert float(rows[-1]["loss"]) == log.rows[-1]["loss"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["training.csv"]
    assert isinstance(TrainingLog(), TrainingLog)
