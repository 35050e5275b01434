"""Complex fields end to end: a toy complex theory with its own complex field space, registered in
this file alone, runs through HMC and a flow with a user's model. ``--dtype`` names the real
precision; the field's points get the matching complex type, and reweighting is done in complex128.

The toy: independent complex sites with S = m² Σ_x |z_x|², so ⟨|z|²⟩ = 1/m² exactly. A momentum
per real component, K = ½ Σ |p|², and the force ∂S/∂Re z + i ∂S/∂Im z = 2 m² z.
"""

import math
import textwrap

import pytest
import torch
from torch import nn

from suite.catalogue import catalogue_version, extra_catalogue_file
from suite.cli import main
from suite.fields import FieldSpace
from suite.harness.rows import read_rows
from suite.theories import ExactSolver, Theory, TheoryInfo, register_theory, unregister_theory

M2 = 2.0


class ComplexSpace(FieldSpace):
    """C^shape: prior standard complex normal (E|z|² = 1), update z + ε p."""

    is_complex = True

    def prior_sample(self, batch, *, generator=None, dtype=torch.float64, device=None):
        return torch.randn((batch, *self.shape), generator=generator, dtype=self.field_dtype(dtype), device=device)

    def prior_log_prob(self, x):
        return -(x.real.pow(2) + x.imag.pow(2)).flatten(1).sum(1) - math.prod(self.shape) * math.log(math.pi)

    def momenta(self, x, *, generator=None):
        real = torch.randn((2, *x.shape), generator=generator, dtype=x.real.dtype, device=x.device)
        return torch.complex(real[0], real[1])

    def kinetic_energy(self, p):
        return 0.5 * (p.real.pow(2) + p.imag.pow(2)).flatten(1).sum(1)

    def update(self, x, p, eps):
        return x + eps * p


class ComplexGaussian(Theory):
    def __init__(self, lattice, m2):
        self.lattice, self.m2 = tuple(lattice), float(m2)
        self.params = {"m2": self.m2}
        self.field = ComplexSpace(self.lattice)

    @classmethod
    def from_convention(cls, convention, lattice, **params):
        return cls(lattice, **params)

    def action(self, x):
        return self.m2 * (x.real.pow(2) + x.imag.pow(2)).flatten(1).sum(1)

    def force(self, x):
        return 2 * self.m2 * x

    def observables(self, x):
        assert x.dtype in (torch.complex64, torch.complex128)
        abs2 = (x.real.pow(2) + x.imag.pow(2)).flatten(1).mean(1)
        return {"abs2": abs2, "re_mean": x.real.flatten(1).mean(1)}


class ComplexNormalFlow(nn.Module):
    """z = σ ε with ε standard complex normal and a learnable real σ: the exact target at σ² = 1/m²."""

    def __init__(self, theory):
        super().__init__()
        self.shape = tuple(theory.field.shape)
        self.log_sigma = nn.Parameter(torch.tensor(0.3))

    def _complex(self):
        return torch.complex64 if self.log_sigma.dtype == torch.float32 else torch.complex128

    def sample(self, n):
        eps = torch.randn((n, *self.shape), dtype=self._complex())
        z = eps * self.log_sigma.exp()
        return z, self.log_prob(z)

    def log_prob(self, z):
        sigma2 = (2 * self.log_sigma).exp()
        abs2 = (z.real.pow(2) + z.imag.pow(2)).flatten(1).sum(1)
        return -abs2 / sigma2 - math.prod(self.shape) * torch.log(math.pi * sigma2)


def build(theory):
    return ComplexNormalFlow(theory)


TOY = TheoryInfo(name="toy-complex", build=ComplexGaussian.from_convention, conventions=("standard",),
                 headline_observable="abs2", figure_observables=("abs2",),
                 exact={"toy-complex": ExactSolver(lambda t: {"abs2": 1 / t.m2, "re_mean": 0.0},
                                                   "exact: independent complex Gaussians")})
CATALOGUE = """
catalogue_version = {version}

[[entry]]
id = "toy-complex/m2/L4"
theory = "toy-complex"
convention = "standard"
params = {{ m2 = {m2} }}
lattice = [4, 4]
tier = "quick"
description = "independent complex Gaussian sites"
source = "this test"
exact = "toy-complex"
"""


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(textwrap.dedent(CATALOGUE.format(version=catalogue_version(), m2=M2)))
    register_theory(TOY)
    try:
        with extra_catalogue_file(path):
            yield
    finally:
        unregister_theory("toy-complex")


def test_complex_field_through_hmc_and_a_flow(toy, tmp_path):
    out = tmp_path / "results"
    assert main(["run", "--entry", "toy-complex/m2/L4", "--chains", "8", "--therm", "50", "--n-traj", "200",
                 "--out", str(out)]) == 0
    assert main(["run", "--entry", "toy-complex/m2/L4", "--sampler", "flow", "--model", f"{__file__}:build",
                 "--budget-steps", "150", "--lr", "0.02", "--batch-size", "64", "--n-samples", "4096",
                 "--dtype", "float32", "--out", str(out)]) == 0
    rows = {r.sampler["name"]: r for r in read_rows(out)}
    hmc, flow = rows["hmc"], rows["flow"]
    assert hmc.dtype == "float64" and flow.dtype == "float32"  # the real precision, as given
    assert 0.5 < hmc.metrics["acceptance"] <= 1
    assert abs(hmc.metrics["exp_minus_delta_h"]["value"] - 1) < 5 * hmc.metrics["exp_minus_delta_h"]["error"] + 1e-3
    for row in (hmc, flow):
        assert row.reference["abs2"]["value"] == pytest.approx(1 / M2)
        assert abs(row.reference["abs2"]["pull"]) < 4, row.reference
    assert flow.metrics["ess"]["value"] > 0.9  # the model family contains the target
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0


def test_a_real_sample_for_a_complex_field_is_a_one_line_error(toy, tmp_path, capsys):
    models = tmp_path / "real.py"
    models.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Real(nn.Module):
            def __init__(self, theory):
                super().__init__()
                self.shape, self.w = tuple(theory.field.shape), nn.Parameter(torch.zeros(()))

            def sample(self, n):
                return torch.randn((n, *self.shape)) + self.w, torch.zeros(n) + self.w

        def build(theory):
            return Real(theory)
        """))
    assert main(["run", "--entry", "toy-complex/m2/L4", "--sampler", "flow", "--model", f"{models}:build",
                 "--budget-steps", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "but the field is complex" in err and "Traceback" not in err
