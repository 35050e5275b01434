"""ODE integration for continuous flows: fixed-step RK4, adaptive Dormand–Prince 5(4), and the
adjoint method for gradients in memory that does not grow with the number of steps.

Conventions. A state is a tuple of tensors; ``f(t, state) -> tuple`` of the same shapes gives its
time derivative, t a Python float. `integrate` goes from ``t0`` to ``t1`` (either order: t1 < t0
integrates backward). Options (`Solver`): ``method`` "rk4" (``n_steps`` equal steps) or "dopri5"
(adaptive; ``n_steps`` sets the first step, the error per step is kept below
``atol + rtol·|y|`` in the RMS norm over all components of the state, hence over the batch too).

`odeint_adjoint` integrates ``dx/dt = v(t, x)``, ``dℓ/dt = d(t, x)`` from ℓ = 0 without recording
a graph and returns (x(t1), ℓ(t1)); its backward integrates the adjoint system (Chen et al. 2018,
arXiv:1806.07366) back from t1 to t0 with the same solver, reconstructing x(t) on the way:
``da/dt = −aᵀ∂v/∂x − a_ℓ ∂d/∂x``, ``da_θ/dt = −aᵀ∂v/∂θ − a_ℓ ∂d/∂θ`` (a_ℓ is constant). Its gradients
equal those of direct backpropagation up to the integration error (tested), and its memory is that
of one velocity evaluation, whatever the number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

METHODS = ("rk4", "dopri5")

# Dormand–Prince 5(4) tableau: nodes c, stages a, 5th-order weights b, b − b̂ (the error estimate)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


@dataclass(frozen=True)
class Solver:
    """How to integrate: ``method`` in `METHODS`, ``n_steps`` (RK4: the steps; dopri5: 1/first step),
    tolerances for dopri5, and ``max_steps`` after which dopri5 gives up (RuntimeError)."""

    method: str = "rk4"
    n_steps: int = 20
    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = 10_000

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown ODE method {self.method!r}; expected one of {', '.join(METHODS)}")
        if int(self.n_steps) != self.n_steps or self.n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {self.n_steps}")
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError(f"rtol and atol must be positive, got {self.rtol}, {self.atol}")


def _axpy(y, h, terms):
    """y + h Σ_k c_k k-th stage, for states (tuples) y and ``terms`` = [(c, stage), ...]."""
    out = []
    for i, yi in enumerate(y):
        acc = yi
        for c, k in terms:
            if c != 0.0:
                acc = acc + (h * c) * k[i]
        out.append(acc)
    return tuple(out)


def _rk4_step(f, t, y, h):
    k1 = f(t, y)
    k2 = f(t + h / 2, _axpy(y, h, [(0.5, k1)]))
    k3 = f(t + h / 2, _axpy(y, h, [(0.5, k2)]))
    k4 = f(t + h, _axpy(y, h, [(1.0, k3)]))
    return _axpy(y, h, [(1 / 6, k1), (1 / 3, k2), (1 / 3, k3), (1 / 6, k4)])


def _dopri5_step(f, t, y, h, k1):
    """One Dormand–Prince step: (5th-order solution, error estimate, derivative at the end)."""
    stages = [k1]
    for c, a in zip(_C[1:], _A[1:]):
        stages.append(f(t + c * h, _axpy(y, h, list(zip(a, stages)))))
    y_new = _axpy(y, h, list(zip(_A[6], stages)))
    error = _axpy(tuple(torch.zeros_like(yi) for yi in y), h, list(zip(_E, stages)))
    return y_new, error, stages[-1]


def _error_ratio(error, y0, y1, solver):
    """RMS over all components of error / (atol + rtol·max(|y0|, |y1|)); a step is accepted at ≤ 1."""
    total, count = 0.0, 0
    for e, a, b in zip(error, y0, y1):
        scale = solver.atol + solver.rtol * torch.maximum(a.detach().abs(), b.detach().abs())
        total = total + (e.detach() / scale).pow(2).sum()
        count += e.numel()
    return float((total / max(count, 1)).sqrt())


def integrate(f, y0: tuple, t0: float, t1: float, solver: Solver) -> tuple:
    """The state at t1 of ``dy/dt = f(t, y)``, y(t0) = y0 (module docstring); differentiable where f is."""
    if solver.method == "rk4":
        h, y = (t1 - t0) / solver.n_steps, y0
        for i in range(solver.n_steps):
            y = _rk4_step(f, t0 + i * h, y, h)
        return y
    t, y, h = t0, y0, (t1 - t0) / solver.n_steps
    k1, direction = f(t0, y0), 1.0 if t1 > t0 else -1.0
    for _ in range(solver.max_steps):
        if direction * (t1 - t) <= 1e-12 * abs(t1 - t0):
            return y
        if direction * (t + h - t1) > 0:
            h = t1 - t
        y_new, error, k_end = _dopri5_step(f, t, y, h, k1)
        ratio = _error_ratio(error, y, y_new, solver)
        if ratio <= 1.0:
            t, y, k1 = t + h, y_new, k_end
        h = h * min(5.0, max(0.2, 0.9 * max(ratio, 1e-10) ** -0.2))
    raise RuntimeError(f"dopri5 did not reach t = {t1} in {solver.max_steps} steps (rtol {solver.rtol}, "
                       f"atol {solver.atol}); the dynamics are too stiff for these tolerances")


class _Adjoint(torch.autograd.Function):
    """(x(t1), ℓ(t1)) with gradients by the adjoint method; see `odeint_adjoint`."""

    @staticmethod
    def forward(ctx, dynamics, solver, t0, t1, x0, *params):
        with torch.no_grad():
            x1, ell = _integrate_with_divergence(dynamics, x0, t0, t1, solver)
        ctx.dynamics, ctx.solver, ctx.times = dynamics, solver, (t0, t1)
        ctx.save_for_backward(x1, *params)
        return x1, ell

    @staticmethod
    def backward(ctx, grad_x, grad_ell):
        x1, *params = ctx.saved_tensors
        t0, t1 = ctx.times
        wrt = [p for p in params if p.requires_grad]
        grad_ell = torch.zeros(x1.shape[0], dtype=x1.dtype, device=x1.device) if grad_ell is None else grad_ell
        grad_x = torch.zeros_like(x1) if grad_x is None else grad_x

        def adjoint_dynamics(t, state):
            x, a = state[0], state[1]
            with torch.enable_grad():
                x = x.detach().requires_grad_()
                v, d = ctx.dynamics(t, x)
                vjp = torch.autograd.grad((v, d), (x, *wrt), (a, grad_ell), allow_unused=True)
            vjp = [torch.zeros_like(u) if g is None else g for g, u in zip(vjp, (x, *wrt))]
            return (v.detach(), *(-g for g in vjp))

        state = (x1, grad_x, *(torch.zeros_like(p) for p in wrt))
        _, grad_x0, *grad_wrt = integrate(adjoint_dynamics, state, t1, t0, ctx.solver)
        grads = iter(grad_wrt)
        return (None, None, None, None, grad_x0, *(next(grads) if p.requires_grad else None for p in params))


def odeint_adjoint(dynamics, x0: torch.Tensor, params, t0: float, t1: float, solver: Solver):
    """(x(t1), ℓ(t1)) for ``dynamics(t, x) -> (dx/dt (B, ...), dℓ/dt (B,))`` with ℓ(t0) = 0; ``params``
    are the tensors the dynamics depend on (gradients flow to them and to x0 by the adjoint method)."""
    return _Adjoint.apply(dynamics, solver, t0, t1, x0, *params)


def odeint(dynamics, x0: torch.Tensor, t0: float, t1: float, solver: Solver):
    """(x(t1), ℓ(t1)) as `odeint_adjoint`, differentiated by backpropagation through the solver."""
    return _integrate_with_divergence(dynamics, x0, t0, t1, solver)


def _integrate_with_divergence(dynamics, x0, t0, t1, solver):
    return integrate(lambda t, y: dynamics(t, y[0]), (x0, x0.new_zeros(x0.shape[0])), t0, t1, solver)
