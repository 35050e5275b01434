"""The two-flavour Schwinger model: 2D compact U(1) with N_f = 2 degenerate Wilson fermions.

Links as in `suite.theories.u1` (angles θ_μ(x), ``(B, 2, L0, L1)``, the torus field space; lattice
axis 0 is time); the fermions are those of `suite.fermions` (Wilson–Dirac operator D in the
hopping-parameter normalisation D = 1 − κ H, bare mass m = 1/(2κ) − 2, γ_0 = σ_1, γ_1 = σ_2,
γ_5 = σ_3, antiperiodic in time and periodic in space). Integrating the two flavours out gives the
weight det(D†D) e^{−S_g}, with the gauge action of `u1`, S_g = −β Σ_P cos θ_P. Params ``beta``
(≥ 0) and ``kappa`` (> 0); the convention names the form of the fermion term, which shares the
operator:

* ``exact``: S_eff(U) = S_g(U) − log det(D†D) (`suite.fermions.log_det_ddag`, slogdet of the dense
  2V × 2V matrix; lattices up to about 16 × 16). Force (M = D⁻¹ dense, ∂U_μ(x)/∂θ_μ(x) = iU_μ(x))

      ∂S_f/∂θ_μ(x) = −2 Re Tr[M ∂D/∂θ_μ(x)]
                   = −2κ Im[U_μ(x) tr((1 − γ_μ) M_{x+μ̂,x}) − U_μ(x)* tr((1 + γ_μ) M_{x,x+μ̂})].

* ``pseudofermion``: S(U, φ) = S_g(U) + φ†(D†D)⁻¹φ with one complex pseudofermion φ of shape
  ``(B, L0, L1, 2)``, refreshed by the heat bath φ = D†χ, χ complex Gaussian with density
  ∝ exp(−χ†χ) (Re, Im of every component N(0, ½)), so that φ†(D†D)⁻¹φ = χ†χ and its expectation at
  fixed U is 2V (one per complex component). With X = (D†D)⁻¹φ (CG) and Y = D X, the force is
  −2 Re[Y† ∂D X], i.e. the formula above with the blocks of M replaced by those of X Y†. Optional
  param ``cg_tol`` (default 1e-10): CG stops at |r| ≤ cg_tol·|b| (batch-wide, ≤ 10⁴ iterations,
  else a one-line error); the catalogue states it, so rows record it.

**The joint configuration (U, φ)**, for samplers that draw φ themselves (a model of q(U, φ),
`reference.flows.pseudofermions`, and the sampler ``flow-pmmh``): ``joint_action(x, phi)`` is
S(U, φ) for given pseudofermions, without state; CG runs in float64 (complex128) whatever the
inputs' precision, the value comes back in x's dtype, and it is differentiable in both (backward:
the force above for the links, 2X for φ in torch's convention ∂/∂Re φ + i ∂/∂Im φ). Its weight
e^{−S(U, φ)} is a density in U and in φ w.r.t. d²φ = Π dRe φ dIm φ: integrating φ out gives
π^{2V} det(D†D) e^{−S_g}, the exact form's weight times π^{2V} (so log Z of this form is that of the
exact form plus 2V log π).

**How pseudofermions enter HMC.** φ is auxiliary state of the theory object, not of the field: the
field space stays the torus. Two optional `Theory` hooks, no-ops for every other theory, carry it:
``refresh(x, generator)``, which HMC calls at the start of every trajectory (before the momenta),
draws φ for the current links of every chain and returns True, so that HMC recomputes the action
and force of x with the new φ; and ``solver_work()``, cumulative CG iterations, which HMC turns
into ``cg_iterations_per_trajectory`` (mean) and ``cg_iterations_per_trajectory_max`` in the row's
``sampler_info``. The action of the pseudofermion form is defined only for the batch of links φ was
drawn for (other samplers: the ``exact`` form).

Per-configuration observables (shape (B,) each), V = L0·L1: those of `u1` (``plaquette``,
``action_density`` = S_g/V, the gauge part only, ``topological_charge``, ``q2``, ``chi_t``, Wilson
loops) and, in the κ normalisation of D (multiply S by 2κ for D_W's normalisation):

* ``chiral_condensate`` −(N_f/V) Re Tr D⁻¹ (N_f = 2): for V ≤ 256 (L ≤ 16) the exact trace of the
  dense inverse; above, the noisy estimator −(N_f/V) (1/16) Σ_n Re η_n†D⁻¹η_n with 16 Z₂ sources
  (±1 on every component), the same sources on every call (fixed seed), solved by CG;
* ``lambda_min`` the smallest eigenvalue of D†D (σ_min(D)² from the dense singular values; V ≤ 256
  only);
* ``pion_T`` for T = 0..L0/2: the connected (isovector) pion correlator from a point source at the
  origin, C(T) = Σ_{x_1} tr[S(x, 0) S(x, 0)†] with S = D⁻¹ (= −tr[γ_5 S(x,0) γ_5 S(0,x)] by
  γ_5-hermiticity, > 0), x = (T, x_1), folded per configuration as ½[C(T) + C(L0 − T)]. S from the
  dense inverse for V ≤ 256, by CG otherwise.

Derived: ``pion_meff_T`` = arccosh[(C(T−1) + C(T+1)) / (2 C(T))] for T = 1..L0/2 − 1 (exact for a
single cosh; NaN where the argument is below 1), and the Creutz ratios of `u1`.

No exact solver and no exact sectors (the character expansion's P(Q) of `u1` is that of the gauge
action alone, so mode coverage is not tested here). The free theory (unit links) is no sampling
target (at β = ∞ the torus' holonomies stay dynamical), so its closed forms
(`suite.fermions.free_log_det`, ...) are checked in tests/test_schwinger.py rather than as a
catalogue entry. Registered as theory ``schwinger``:
headline observable ``topological_charge``, history figures of Q, the condensate and the plaquette,
and two report sections: the topology section of U(1) and `suite.report.schwinger` (per lattice size,
the samplers along κ: acceptance, τ_int of Q and the condensate, CG iterations, costs).
"""

from __future__ import annotations

import math

import torch

from suite import fermions
from suite.errors import UsageError
from suite.lattice import shift
from suite.theories.base import DerivedQuantity, check_coupling
from suite.theories.registry import TheoryInfo, lazy, register_theory
from suite.theories.u1 import U1

N_FLAVOURS = 2
DENSE_MAX_SITES = 256  # exact trace, dense propagator and λ_min up to V = 256 (16 × 16)
NOISE_SOURCES = 16  # Z₂ sources of the noisy condensate above DENSE_MAX_SITES
NOISE_SEED = 20240616
CG_TOLERANCE = 1e-10
CG_MAX_ITER = 10_000


def _check_kappa(kappa) -> float:
    kappa = float(kappa)
    if not (math.isfinite(kappa) and kappa > 0):
        raise UsageError(f"kappa must be finite and > 0, got {kappa}")
    return kappa


def hopping_force(theta: torch.Tensor, kappa: float, forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """−2 Re Σ_ij A_ji ∂D_ij/∂θ_μ(x) for a matrix A given by its hop traces, shape (B, 2, L0, L1):
    ``forward[:, μ, x]`` = tr((1 − γ_μ) A_{x+μ̂,x}), ``backward[:, μ, x]`` = tr((1 + γ_μ) A_{x,x+μ̂})
    (2 × 2 spin blocks). A = D⁻¹ gives the force of −log det D†D, A = X Y† that of φ†(D†D)⁻¹φ."""
    u = fermions.links(theta).to(forward.dtype)
    return -2 * kappa * (u * forward - u.conj() * backward).imag


class _PseudofermionTerm(torch.autograd.Function):
    """φ†(D†D)⁻¹φ per configuration, (B,), by the theory's CG in float64 (complex128); backward by the
    force formula (links) and 2X (φ), X = (D†D)⁻¹φ (module docstring)."""

    @staticmethod
    def forward(ctx, x, phi, theory):
        links, pseudofermions = x.detach().to(torch.float64), phi.detach().to(torch.complex128)
        solution = theory.solve_counted(links, pseudofermions)
        ctx.save_for_backward(links, solution)
        ctx.theory, ctx.dtypes = theory, (x.dtype, phi.dtype)
        return (pseudofermions.conj() * solution).real.sum((1, 2, 3)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        links, solution = ctx.saved_tensors
        grad = grad.to(torch.float64).view(-1, 1, 1, 1)
        grad_x = grad_phi = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad * ctx.theory.fermion_force(links, solution)).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            grad_phi = (2 * grad * solution).to(ctx.dtypes[1])
        return grad_x, grad_phi, None


class Schwinger(U1):
    """The gauge part (`U1`) and the operator; the forms below add the fermion term."""

    def __init__(self, lattice, beta: float, kappa: float, params: dict | None = None):
        super().__init__(lattice, check_coupling(beta), params)
        self.kappa = _check_kappa(kappa)
        self.cg_tol = CG_TOLERANCE
        self.params = params if params is not None else {"beta": self.beta, "kappa": self.kappa}

    # -- solves --------------------------------------------------------------------------------

    def solve_ddag(self, theta: torch.Tensor, b: torch.Tensor) -> fermions.CGResult:
        """(D†D)⁻¹ b by CG (tolerance ``cg_tol``), b of shape (B, L0, L1, 2)."""
        return fermions.cg(fermions.Stencil(theta, self.kappa, b.dtype).ddag, b, self.cg_tol, CG_MAX_ITER)

    def solve_d(self, theta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """D⁻¹ b = (D†D)⁻¹ D† b for sources b of shape (B, K, L0, L1, 2) (K sources per configuration)."""
        batch, k = b.shape[:2]
        repeated = theta.repeat_interleave(k, 0)
        flat = b.reshape(batch * k, *b.shape[2:])
        return self.solve_ddag(repeated, fermions.apply_dagger(repeated, flat, self.kappa)).x.view(b.shape)

    # -- observables ---------------------------------------------------------------------------

    def observables(self, x):
        obs = super().observables(x)
        if self.volume <= DENSE_MAX_SITES:
            matrix = fermions.dense(x, self.kappa)
            inverse = torch.linalg.inv(matrix)
            obs["chiral_condensate"] = fermions.condensate_of_inverse(inverse, N_FLAVOURS)
            obs["lambda_min"] = torch.linalg.svdvals(matrix)[:, -1] ** 2
            propagator = inverse[..., :2].reshape(x.shape[0], *self.lattice, 2, 2).movedim(-1, 1)
        else:
            obs["chiral_condensate"] = self.noisy_condensate(x)
            source = torch.zeros((x.shape[0], 2, *self.lattice, 2), dtype=fermions.complex_dtype(x.dtype),
                                 device=x.device)
            source[:, 0, 0, 0, 0] = source[:, 1, 0, 0, 1] = 1
            propagator = self.solve_d(x, source)
        for t, c in enumerate(self.pion_correlator(propagator).unbind(1)):
            obs[f"pion_{t}"] = c
        return obs

    def pion_correlator(self, propagator: torch.Tensor) -> torch.Tensor:
        """Folded C(T), T = 0..L0/2, shape (B, L0//2 + 1), from S(x, 0) of shape (B, 2 source spins, L0, L1, 2)."""
        c = propagator.abs().pow(2).sum((1, 3, 4))  # Σ_{x_1, spins} |S|², (B, L0)
        return 0.5 * (c + torch.roll(c.flip(1), 1, 1))[:, : self.lattice[0] // 2 + 1]

    def noisy_condensate(self, x: torch.Tensor) -> torch.Tensor:
        """−(N_f/V) (1/N) Σ_n Re η_n†D⁻¹η_n with N = NOISE_SOURCES Z₂ sources (fixed seed), shape (B,)."""
        generator = torch.Generator(device=x.device).manual_seed(NOISE_SEED)
        shape = (x.shape[0], NOISE_SOURCES, *self.lattice, 2)
        signs = 2 * torch.randint(0, 2, shape, generator=generator, device=x.device) - 1
        eta = signs.to(fermions.complex_dtype(x.dtype))
        estimate = (eta.conj() * self.solve_d(x, eta)).real.sum((2, 3, 4)).mean(1)
        return -N_FLAVOURS * estimate / self.volume

    def sectors(self):
        """None: the character expansion's P(Q) is that of the gauge action alone, which the fermions change."""
        return None

    def derived_quantities(self):
        derived = super().derived_quantities()
        for t in range(1, self.lattice[0] // 2):
            derived[f"pion_meff_{t}"] = DerivedQuantity(
                function=effective_mass, inputs=(f"pion_{t - 1}", f"pion_{t}", f"pion_{t + 1}"),
                description=f"pion effective mass arccosh[(C({t - 1}) + C({t + 1})) / 2C({t})]")
        return derived


def effective_mass(c_before: float, c: float, c_after: float) -> float:
    """arccosh[(C(T−1) + C(T+1)) / 2C(T)]; NaN where the argument is not ≥ 1."""
    ratio = (c_before + c_after) / (2 * c) if c != 0 else float("nan")
    return math.acosh(ratio) if ratio >= 1 else float("nan")


class SchwingerExact(Schwinger):
    """S_eff = S_g − log det(D†D) by dense slogdet (module docstring)."""

    def action(self, x):
        return super().action(x) - fermions.log_det_ddag(x, self.kappa)

    def force(self, x):
        inverse = torch.linalg.inv(fermions.dense(x, self.kappa))
        blocks = inverse.view(x.shape[0], self.volume, 2, self.volume, 2)
        sites = torch.arange(self.volume, device=x.device).view(self.lattice)
        gammas = fermions.gamma_matrices(inverse.dtype, x.device)[:2]
        eye = torch.eye(2, dtype=inverse.dtype, device=x.device)
        forward, backward = [], []
        for mu, gamma in enumerate(gammas):
            here, there = sites.flatten(), shift(sites, mu, first=0).flatten()
            # tr(P M_{ab}) = Σ_{s s'} P_{s s'} M[a s', b s]; advanced indices put the sites first
            block_forward = blocks[:, there, :, here, :]  # M_{x+μ̂, x}, (V, B, 2, 2)
            block_backward = blocks[:, here, :, there, :]  # M_{x, x+μ̂}
            forward.append((block_forward * (eye - gamma).T).sum((-2, -1)).T.reshape(-1, *self.lattice))
            backward.append((block_backward * (eye + gamma).T).sum((-2, -1)).T.reshape(-1, *self.lattice))
        fermion = hopping_force(x, self.kappa, torch.stack(forward, 1), torch.stack(backward, 1))
        return super().force(x) + fermion


class SchwingerPseudofermion(Schwinger):
    """S = S_g + φ†(D†D)⁻¹φ with the heat-bath pseudofermion φ as state (module docstring)."""

    def __init__(self, lattice, beta: float, kappa: float, cg_tol: float = CG_TOLERANCE, params: dict | None = None):
        super().__init__(lattice, beta, kappa, params)
        cg_tol = float(cg_tol)
        if not 0 < cg_tol < 1:
            raise UsageError(f"cg_tol must be in (0, 1), got {cg_tol}")
        self.cg_tol = cg_tol
        self.pseudofermions: torch.Tensor | None = None
        self.cg_iterations = 0
        self._last = (None, None, None)  # (links, pseudofermions, solution) of the last solve

    def refresh(self, x, generator=None):
        """Heat bath φ = D†χ, χ ~ exp(−χ†χ), for the links x of every chain; returns True."""
        chi = torch.randn((x.shape[0], *self.lattice, 2), generator=generator,
                          dtype=fermions.complex_dtype(x.dtype), device=x.device)
        self.pseudofermions = fermions.apply_dagger(x, chi, self.kappa)
        return True

    def solver_work(self):
        return {"cg_iterations": self.cg_iterations}

    def solve_counted(self, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """X = (D†D)⁻¹φ by CG, its iterations added to ``cg_iterations``."""
        result = self.solve_ddag(x, phi)
        self.cg_iterations += result.iterations
        return result.x

    def _solution(self, x: torch.Tensor) -> torch.Tensor:
        """X = (D†D)⁻¹φ for the current pseudofermions, counting the CG iterations. The action and the
        force of the same links (the same tensor x, which HMC never modifies in place) share one solve."""
        phi = self.pseudofermions
        if phi is None or phi.shape[0] != x.shape[0]:
            raise UsageError("the pseudofermion form's action needs pseudofermions drawn for these links "
                             "(refresh, as HMC does every trajectory); sample other ways with the exact form")
        links, pseudofermions, solution = self._last
        if links is x and pseudofermions is phi:
            return solution
        solution = self.solve_counted(x, phi)
        self._last = (x, phi, solution)
        return solution

    def action(self, x):
        solution = self._solution(x)
        return super().action(x) + (self.pseudofermions.conj() * solution).real.sum((1, 2, 3))

    def joint_action(self, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """S(U, φ) = S_g + φ†(D†D)⁻¹φ, (B,), for links x (B, 2, L0, L1) and pseudofermions φ (B, L0, L1, 2)
        given (not the state); differentiable in both (module docstring)."""
        return super().action(x) + _PseudofermionTerm.apply(x, phi, self)

    def force(self, x):
        return super().force(x) + self.fermion_force(x, self._solution(x))

    def fermion_force(self, x: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """∂/∂θ of φ†(D†D)⁻¹φ from X = (D†D)⁻¹φ (``right``), (B, 2, L0, L1)."""
        left = fermions.apply(x, right, self.kappa)  # Y = D X
        eye = torch.eye(2, dtype=right.dtype, device=x.device)
        forward, backward = [], []
        for mu, gamma in enumerate(fermions.gamma_matrices(right.dtype, x.device)[:2]):
            # tr((1 ∓ γ) (X Y†)_{ab}) = ⟨Y(b), (1 ∓ γ) X(a)⟩
            forward.append((left.conj() * (shift(right, mu) @ (eye - gamma).T)).sum(-1))
            backward.append((shift(left, mu).conj() * (right @ (eye + gamma).T)).sum(-1))
        return hopping_force(x, self.kappa, torch.stack(forward, 1), torch.stack(backward, 1))


FORMS = {"exact": SchwingerExact, "pseudofermion": SchwingerPseudofermion}
FORM_PARAMS = {"exact": ("beta", "kappa"), "pseudofermion": ("beta", "kappa", "cg_tol")}


def build(convention: str, lattice, **params) -> Schwinger:
    """The form ``convention`` (``exact`` or ``pseudofermion``, checked by the registry) with params
    beta, kappa (and cg_tol); a one-line UsageError for bad ones."""
    allowed = FORM_PARAMS[convention]
    unknown = sorted(set(params) - set(allowed))
    if unknown or "beta" not in params or "kappa" not in params:
        raise UsageError(f"the schwinger form {convention!r} takes {', '.join(allowed)} "
                         f"(beta and kappa required), got {', '.join(sorted(params)) or 'none'}")
    try:
        return FORMS[convention](lattice, **params, params={"convention": convention, **params})
    except UsageError:
        raise
    except ValueError as err:
        raise UsageError(str(err)) from None


register_theory(TheoryInfo(
    name="schwinger",
    build=build,
    conventions=tuple(FORMS),
    headline_observable="topological_charge",
    figure_observables=("topological_charge", "chiral_condensate", "plaquette"),
    report_sections=(lazy("suite.report.topology:topology_section"), lazy("suite.report.schwinger:schwinger_section")),
))
