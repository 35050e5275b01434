"""Independent SU(N) matrices with the single-plaquette weight: the first target of SU(N) flows.

K matrices U_k ∈ SU(N) (the "lattice" is ``[K]``; K = 1 is the single-matrix target of Boyda et al.,
PRD 103, 074504 (2021), arXiv:2008.05456) with

    S = −(β/N) Σ_k Re Tr U_k      (``wilson`` convention, params N and beta; no additive constant),

so p(U) = Π_k e^{(β/N) Re Tr U_k} / a_0(β)^K with respect to the Haar measure of mass 1 per matrix.
This is the distribution of every plaquette of the infinite 2D SU(N) lattice (in axial gauge the
plaquettes are independent), so the exact values below are those of `suite.exact.sun`:
log Z = K log a_0 (`single_matrix_log_z`, a Toeplitz determinant of Bessel functions) and the moments
⟨(1/N) Re Tr U^k⟩ by Weyl integration over the eigenphases (N ≤ 4).

Fields ``(B, K, N, N)`` (`suite.fields.SUN`, Haar prior). Force F_k = (β/2N) P[U_k] with P the
traceless anti-Hermitian part (the staple formula of `suite.theories.sun` with the staple 𝟙).
Observables, averaged over the K matrices, shape (B,): ``re_trace`` (1/N) Re Tr U (the 2D
infinite-volume plaquette), ``re_trace_2`` (1/N) Re Tr U², for N ≥ 3 ``im_trace`` (1/N) Im Tr U (0 by the
symmetry U → U†; for SU(2) the trace is real, so it is left out), ``action_density`` S/K.

Registered as theory ``sun-matrix``; exact solver ``sun-single-matrix``.
"""

from __future__ import annotations

import math

import torch

from suite.fields import SUN, traceless_antihermitian
from suite.theories.base import Theory, check_coupling, integer_parameter
from suite.theories.registry import ExactSolver, TheoryInfo, lazy, register_theory

CONVENTIONS = ("wilson",)


def _trace(m: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(m, dim1=-2, dim2=-1).sum(-1)


class SUNMatrices(Theory):
    """K independent SU(N) matrices, S = −(β/N) Σ_k Re Tr U_k; ``SUNMatrices(k, n, beta)`` or `from_convention`."""

    def __init__(self, k: int, n: int, beta: float, params: dict | None = None):
        self.lattice = (integer_parameter(k, "the number of matrices K", 1),)
        self.n = integer_parameter(n, "N", 2)
        self.beta = check_coupling(beta)
        self.params = params if params is not None else {"N": self.n, "beta": self.beta}
        self.field = SUN((self.lattice[0], self.n, self.n))

    @classmethod
    def from_convention(cls, convention: str, lattice, **params) -> "SUNMatrices":
        """Build from the ``wilson`` convention (module docstring): params N, beta; lattice ``[K]``."""
        if convention != "wilson":
            raise ValueError(f"unknown sun-matrix convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
        lattice = tuple(lattice)
        if len(lattice) != 1:
            raise ValueError(f"sun-matrix takes a lattice [K] (K independent matrices), got {list(lattice)}")
        unknown = sorted(set(params) - {"N", "beta"})
        if unknown or not {"N", "beta"} <= set(params):
            raise ValueError(f"sun-matrix needs params N and beta, got {sorted(params)}")
        return cls(lattice[0], params["N"], params["beta"],
                   params={"convention": "wilson", "N": int(params["N"]), "beta": float(params["beta"])})

    def action(self, x):
        return -(self.beta / self.n) * _trace(x).real.sum(-1)

    def force(self, x):
        """F_k = (β/2N) P[U_k] in su(N)."""
        return (self.beta / (2 * self.n)) * traceless_antihermitian(x)

    def observables(self, x):
        trace = _trace(x) / self.n
        obs = {
            "re_trace": trace.real.mean(-1),
            "re_trace_2": (_trace(x @ x) / self.n).real.mean(-1),
            "action_density": -self.beta * trace.real.mean(-1),
        }
        if self.n > 2:
            obs["im_trace"] = trace.imag.mean(-1)
        return obs


def single_matrix_exact(theory: SUNMatrices) -> dict[str, float]:
    """Exact ``re_trace``, ``re_trace_2``, ``im_trace``, ``action_density`` and ``log_z`` (module
    docstring), for β > 0 and N ≤ 4."""
    from suite.exact.sun import plaquette_moments_infinite_volume, single_matrix_log_z

    moments = plaquette_moments_infinite_volume(theory.n, theory.beta, powers=(1, 2))
    log_a0 = single_matrix_log_z(theory.n, theory.beta)
    exact = {"re_trace": moments[1], "re_trace_2": moments[2],
             "action_density": -theory.beta * moments[1], "log_z": theory.lattice[0] * log_a0}
    if theory.n > 2:
        exact["im_trace"] = 0.0
    return exact


register_theory(TheoryInfo(
    name="sun-matrix",
    build=SUNMatrices.from_convention,
    conventions=CONVENTIONS,
    headline_observable="re_trace",
    figure_observables=("re_trace", "re_trace_2"),
    exact={"sun-single-matrix": ExactSolver(lazy("suite.theories.sun_matrix:single_matrix_exact"),
                                            "exact: single-matrix integrals (Bessel determinant, Weyl quadrature)")},
    report_sections=(lazy("suite.report.sun_flows:sun_flow_section"),),
))
