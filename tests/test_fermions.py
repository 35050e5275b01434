"""Wilson–Dirac operator on 2D U(1) links (suite.fermions): the stencil against the dense matrix
(built from explicit site indices), γ_5-hermiticity, gauge covariance, the free field against
plane waves and the closed momentum-space forms (derived in the module docstring), CG against dense
solves, and log det(D†D)'s gradient against finite differences."""

import math

import pytest
import torch

from suite import fermions
from suite.theories.u1 import gauge_transform

LATTICES = [(4, 6), (6, 4), (2, 2), (3, 5)]


def random_links(batch, lattice, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.rand((batch, 2, *lattice), generator=g, dtype=dtype) - 1) * math.pi


def random_spinor(batch, lattice, seed=1, dtype=torch.complex128):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *lattice, 2), generator=g, dtype=dtype)


def matvec(matrix, psi):
    return (matrix @ psi.reshape(psi.shape[0], -1, 1)).reshape(psi.shape)


def spin_matrix(lattice, single):
    """kron(1_V, single) in the dense matrix's index order."""
    return torch.kron(torch.eye(lattice[0] * lattice[1], dtype=single.dtype), single)


def test_gamma_matrices_are_hermitian_and_anticommute():
    g0, g1, g5 = fermions.gamma_matrices()
    eye = torch.eye(2, dtype=torch.complex128)
    for a in (g0, g1, g5):
        assert torch.equal(a, a.mH) and torch.allclose(a @ a, eye)
    for a, b in ((g0, g1), (g0, g5), (g1, g5)):
        assert torch.allclose(a @ b + b @ a, torch.zeros_like(eye))
    assert torch.allclose(g5, -1j * g0 @ g1)


@pytest.mark.parametrize("lattice", LATTICES)
def test_stencil_and_its_adjoint_equal_the_dense_matrix(lattice):
    theta, psi = random_links(3, lattice), random_spinor(3, lattice)
    matrix = fermions.dense(theta, 0.23)
    assert matrix.shape == (3, 2 * lattice[0] * lattice[1], 2 * lattice[0] * lattice[1])
    assert (fermions.apply(theta, psi, 0.23) - matvec(matrix, psi)).abs().max() < 1e-13
    assert (fermions.apply_dagger(theta, psi, 0.23) - matvec(matrix.mH, psi)).abs().max() < 1e-13
    ddag = fermions.apply_ddag(theta, psi, 0.23)
    assert (ddag - matvec(matrix.mH @ matrix, psi)).abs().max() < 1e-12


@pytest.mark.parametrize("lattice", LATTICES[:2])
def test_gamma5_hermiticity(lattice):
    theta, psi = random_links(2, lattice), random_spinor(2, lattice)
    matrix = fermions.dense(theta, 0.31)
    gamma5 = spin_matrix(lattice, fermions.gamma_matrices()[2])
    assert (gamma5 @ matrix @ gamma5 - matrix.mH).abs().max() < 1e-14
    g5 = fermions.gamma_matrices()[2]
    via_stencil = fermions.apply(theta, psi @ g5.T, 0.31) @ g5.T
    assert (via_stencil - fermions.apply_dagger(theta, psi, 0.31)).abs().max() < 1e-14
    # det D is real (γ5-hermiticity), so det D†D = (det D)^2
    det = torch.linalg.det(matrix)
    assert det.imag.abs().max() < 1e-10 * det.abs().max()


@pytest.mark.parametrize("lattice", LATTICES[:2])
def test_gauge_covariance(lattice):
    theta, psi = random_links(2, lattice), random_spinor(2, lattice)
    g = torch.Generator().manual_seed(5)
    alpha = 2 * math.pi * torch.rand((2, *lattice), generator=g, dtype=torch.float64)
    transformed = gauge_transform(theta, alpha)  # θ_μ(x) + α(x) − α(x+μ̂)
    omega = torch.polar(torch.ones_like(alpha), alpha)  # e^{iα(x)}
    # stencil: D[U^Ω] (Ω ψ) = Ω (D[U] ψ)
    lhs = fermions.apply(transformed, omega[..., None] * psi, 0.2)
    assert (lhs - omega[..., None] * fermions.apply(theta, psi, 0.2)).abs().max() < 1e-13
    # dense: D[U^Ω] = Ω D[U] Ω†
    big_omega = torch.diag_embed(omega.reshape(2, -1).repeat_interleave(2, dim=1))
    expected = big_omega @ fermions.dense(theta, 0.2) @ big_omega.mH
    assert (fermions.dense(transformed, 0.2) - expected).abs().max() < 1e-14


@pytest.mark.parametrize("lattice", [(4, 6), (3, 5)])
def test_free_operator_on_plane_waves(lattice):
    """At θ = 0, D e^{ip·x} u = e^{ip·x} D(p) u with D(p) = 1 − 2κ Σ cos p_μ + 2iκ Σ γ_μ sin p_μ, for
    p_0 = 2π(n_0 + ½)/L0 (antiperiodic time) and p_1 = 2π n_1/L1: this fixes the sign of the γ term
    and the boundary conditions, which the determinant alone does not."""
    kappa = 0.19
    g0, g1, _ = fermions.gamma_matrices()
    x0, x1 = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in lattice), indexing="ij")
    theta = torch.zeros((1, 2, *lattice), dtype=torch.float64)
    u = torch.tensor([0.3 - 0.2j, 1.1 + 0.4j], dtype=torch.complex128)
    worst = 0.0
    for n0 in range(lattice[0]):
        for n1 in range(lattice[1]):
            p0, p1 = 2 * math.pi * (n0 + 0.5) / lattice[0], 2 * math.pi * n1 / lattice[1]
            wave = torch.exp(1j * (p0 * x0 + p1 * x1).to(torch.complex128))
            d_p = ((1 - 2 * kappa * (math.cos(p0) + math.cos(p1))) * torch.eye(2, dtype=torch.complex128)
                   + 2j * kappa * (g0 * math.sin(p0) + g1 * math.sin(p1)))
            psi = (wave[..., None] * u)[None]
            expected = (wave[..., None] * (d_p @ u))[None]
            worst = max(worst, float((fermions.apply(theta, psi, kappa) - expected).abs().max()))
    assert worst < 1e-13


@pytest.mark.parametrize("lattice", [(4, 6), (6, 4), (8, 8), (2, 2)])
@pytest.mark.parametrize("kappa", [0.1, 0.24, 0.3])
def test_free_log_det_and_trace_inverse_closed_forms(lattice, kappa):
    matrix = fermions.dense(torch.zeros((1, 2, *lattice), dtype=torch.float64), kappa)
    sign, logabsdet = torch.linalg.slogdet(matrix)
    assert abs(complex(sign[0]) - 1) < 1e-12  # det D = Π_p det D(p) > 0 at unit links
    assert abs(float(logabsdet[0]) - fermions.free_log_det(lattice, kappa)) < 1e-12
    trace = complex(torch.linalg.inv(matrix)[0].diagonal().sum())
    assert abs(trace - fermions.free_trace_inverse(lattice, kappa)) < 1e-12
    volume = lattice[0] * lattice[1]
    condensate = fermions.chiral_condensate(torch.zeros((1, 2, *lattice), dtype=torch.float64), kappa, 2)
    assert abs(float(condensate[0]) + 2 * fermions.free_trace_inverse(lattice, kappa) / volume) < 1e-12


def test_log_det_ddag_and_its_gradient_against_finite_differences():
    lattice, kappa = (4, 4), 0.22
    theta = random_links(2, lattice, seed=3).requires_grad_(True)
    value = fermions.log_det_ddag(theta, kappa)
    dense_value = torch.log(torch.linalg.det(fermions.dense(theta, kappa)).abs() ** 2)
    assert (value - dense_value).abs().max() < 1e-11
    (grad,) = torch.autograd.grad(value.sum(), theta)
    h = 1e-5
    for index in [(0, 0, 0, 0), (0, 1, 3, 2), (1, 0, 3, 1), (1, 1, 2, 3)]:  # includes a wrapping time link
        plus, minus = theta.detach().clone(), theta.detach().clone()
        plus[index] += h
        minus[index] -= h
        b = index[0]
        finite = (fermions.log_det_ddag(plus, kappa)[b] - fermions.log_det_ddag(minus, kappa)[b]) / (2 * h)
        assert abs(float(finite) - float(grad[index])) < 1e-7 * max(1.0, abs(float(grad[index])))


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_cg_against_dense_solves(tol):
    lattice, kappa = (8, 8), 0.22
    theta, b = random_links(3, lattice, seed=7), random_spinor(3, lattice, seed=8)
    matrix = fermions.dense(theta, kappa)
    exact = torch.linalg.solve(matrix.mH @ matrix, b.reshape(3, -1, 1)).reshape(b.shape)
    result = fermions.cg(lambda v: fermions.apply_ddag(theta, v, kappa), b, tol=tol, max_iter=500)
    error = (result.x - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
    assert (error <= 10 * tol).all(), error
    assert (result.residual <= 1.01 * tol).all()
    assert 1 < result.iterations < 500


def test_cg_flags_non_convergence_and_handles_a_zero_source():
    lattice, kappa = (4, 4), 0.22
    theta, b = random_links(2, lattice, seed=9), random_spinor(2, lattice, seed=10)
    apply_a = lambda v: fermions.apply_ddag(theta, v, kappa)  # noqa: E731
    with pytest.raises(fermions.NotConverged, match=r"^cg did not converge in 3 iterations: relative residual \S+ > tol 1e-10$"):
        fermions.cg(apply_a, b, tol=1e-10, max_iter=3)
    result = fermions.cg(apply_a, b, tol=1e-10, max_iter=3, raise_on_failure=False)
    assert result.iterations == 3 and (result.residual > 1e-10).all()
    b[1] = 0
    result = fermions.cg(apply_a, b, tol=1e-10, max_iter=200)
    assert torch.equal(result.x[1], torch.zeros_like(result.x[1])) and result.residual[1] == 0


def test_float32_links_give_complex64_and_bad_shapes_fail_in_one_line():
    theta = random_links(1, (4, 4), dtype=torch.float32)
    assert fermions.dense(theta, 0.2).dtype == torch.complex64
    psi = random_spinor(1, (4, 4), dtype=torch.complex64)
    assert fermions.apply(theta, psi, 0.2).dtype == torch.complex64
    with pytest.raises(ValueError, match=r"^fermion field must have shape \(B, L0, L1, 2\)"):
        fermions.apply(theta, psi[..., :1], 0.2)
    with pytest.raises(ValueError, match=r"^links must have shape \(B, 2, L0, L1\)"):
        fermions.dense(theta[:, :1], 0.2)
