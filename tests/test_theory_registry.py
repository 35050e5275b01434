"""The theory registry: a toy theory defined and registered here alone runs through run, report and compare;
unknown theories and exact solvers fail with one line; every shipped entry resolves through the registry."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from suite.catalogue import (CatalogueError, catalogue_version, entries, extra_catalogue_file, get_entry,
                             parse_catalogue_files)
from suite.chain import Chain
from suite.cli import main
from suite.errors import UsageError
from suite.fields import EuclideanSpace
from suite.harness.rows import read_rows
from suite.theories import (ExactSolver, Theory, TheoryInfo, build_theory, register_theory, registered_theories,
                            theory_info, unregister_theory)


class Gaussian(Theory):
    """A free real field: S = ½ Σ_x [m² x_x² + c Σ_mu (x_{x+mu} − x_x)²]. With m² = 1, c = 1/4 every mode's
    frequency ω lies in [1, √3]: no mode near ω = π, where unit HMC trajectories would barely move it."""

    def __init__(self, lattice, m2: float, c: float):
        self.lattice, self.m2, self.c = tuple(lattice), float(m2), float(c)
        self.params = {"m2": self.m2, "c": self.c}
        self.field = EuclideanSpace(self.lattice)

    @classmethod
    def from_convention(cls, convention, lattice, **params):
        return cls(lattice, **params)

    def _laplacian(self, x):
        return sum(torch.roll(x, 1, mu + 1) + torch.roll(x, -1, mu + 1) - 2 * x for mu in range(len(self.lattice)))

    def action(self, x):
        dims = tuple(range(1, x.dim()))
        return 0.5 * (self.m2 * x * x - self.c * x * self._laplacian(x)).sum(dims)

    def force(self, x):
        return self.m2 * x - self.c * self._laplacian(x)

    def observables(self, x):
        dims = tuple(range(1, x.dim()))
        return {"x2": (x * x).sum(dims) / self.volume, "mag": x.sum(dims) / self.volume,
                "action_density": self.action(x) / self.volume}


def gaussian_exact(theory: Gaussian) -> dict[str, float]:
    """<x²> = (1/V) Σ_p 1/K(p), K(p) = m² + c Σ_mu 4 sin²(p_mu/2); <M/V> = 0; <S/V> = ½ (one half per mode)."""
    momenta = np.meshgrid(*[2 * np.pi * np.arange(n) / n for n in theory.lattice], indexing="ij")
    kernel = theory.m2 + theory.c * sum(4 * np.sin(p / 2) ** 2 for p in momenta)
    return {"x2": float(np.mean(1 / kernel)), "mag": 0.0, "action_density": 0.5}


def toy_section(rows, out):
    return ["## Toy section", "", f"{len(rows)} toy run(s) in {out.name}", ""]


TOY = TheoryInfo(name="toy", build=Gaussian.from_convention, conventions=("standard",), headline_observable="x2",
                 figure_observables=("x2", "mag"),
                 exact={"toy-gaussian": ExactSolver(gaussian_exact, "exact: toy Gaussian propagator")},
                 report_sections=(toy_section,))

TOY_CATALOGUE = """
catalogue_version = {version}

[[entry]]
id = "toy/gauss/L4"
theory = "toy"
convention = "standard"
params = {{ m2 = 1.0, c = 0.25 }}
lattice = [4, 4]
tier = "quick"
description = "toy Gaussian field"
source = "this test"
exact = "toy-gaussian"
"""


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(textwrap.dedent(TOY_CATALOGUE.format(version=catalogue_version())))
    register_theory(TOY)
    try:
        with extra_catalogue_file(path):
            yield path
    finally:
        unregister_theory("toy")


def test_toy_theory_runs_reports_and_compares(toy, tmp_path, capsys):
    out, report = tmp_path / "results", tmp_path / "report"
    assert main(["run", "--entry", "toy/gauss/L4", "--chains", "4", "--therm", "20", "--n-traj", "50",
                 "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert row.theory == "toy"
    exact = gaussian_exact(Gaussian((4, 4), 1.0, 0.25))
    ref = row.reference["x2"]
    assert ref["value"] == pytest.approx(exact["x2"]) and ref["provenance"] == "exact: toy Gaussian propagator"
    measured = row.observables["x2"]
    assert ref["pull"] == pytest.approx((measured["value"] - exact["x2"]) / measured["error"], rel=1e-6)
    assert abs(ref["pull"]) < 4, row.reference
    assert abs(row.reference["action_density"]["pull"]) < 4

    assert main(["report", str(out), "--out", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert "## Toy section" in text and "1 toy run(s) in report" in text
    assert "### toy/gauss/L4 — hmc" in text and "exact: toy Gaussian propagator" in text
    assert (report / "figures" / f"{row.run_id}.png").is_file()
    chain = Chain.load(out / row.artifacts["chains"])
    assert {"x2", "mag"} <= set(chain.observables)
    capsys.readouterr()

    assert main(["compare", str(out)]) == 0
    board = capsys.readouterr().out
    assert "### toy/gauss/L4 (observable x2)" in board and "| hmc" in board


def test_unknown_theory_is_one_line_error(tmp_path, capsys):
    with pytest.raises(UsageError, match="unknown theory 'phi6'; known theories: .*phi4.*u1"):
        theory_info("phi6")
    with pytest.raises(UsageError, match="unknown theory"):
        build_theory("phi6", (4, 4), "lecture", {})
    path = tmp_path / "other.toml"
    path.write_text(textwrap.dedent(TOY_CATALOGUE.format(version=catalogue_version())))
    with extra_catalogue_file(path):  # the toy entry without its theory registered
        entry = get_entry("toy/gauss/L4")  # parsing does not need the theory
        with pytest.raises(CatalogueError, match="entry 'toy/gauss/L4': unknown theory 'toy'"):
            entry.build_theory()
        assert main(["run", "--entry", "toy/gauss/L4", "--n-traj", "5", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown theory 'toy'" in err and len(err.strip().splitlines()) == 1, err


def test_unregistered_exact_solver_is_one_line_error_naming_it(tmp_path):
    text = textwrap.dedent(TOY_CATALOGUE.format(version=catalogue_version())).replace(
        'theory = "toy"\nconvention = "standard"\nparams = { m2 = 1.0, c = 0.25 }',
        'theory = "phi4"\nconvention = "lecture"\nparams = { m2 = 0.5, lam = 0.0 }').replace("toy/", "phi4/")
    path = tmp_path / "bad-exact.toml"
    path.write_text(text)
    _, by_id = parse_catalogue_files([path])  # parses: the name is checked when the theory is resolved
    entry = by_id["phi4/gauss/L4"]
    for use in (entry.reference_values, entry.build_theory):
        with pytest.raises(CatalogueError) as err:
            use()
        message = str(err.value)
        assert "'toy-gaussian'" in message and "phi4" in message and "free-scalar" in message
        assert "\n" not in message
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from suite.catalogue import add_catalogue_file
        from suite.cli import main
        add_catalogue_file({str(path)!r})
        raise SystemExit(main(["run", "--entry", "phi4/gauss/L4", "--n-traj", "5", "--out", {str(tmp_path / 'r')!r}]))
        """)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "exact solver 'toy-gaussian' is not registered" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_unknown_convention_names_the_known_ones():
    with pytest.raises(UsageError, match="unknown phi4 convention 'villain'; expected one of lecture, albergo, hopping"):
        build_theory("phi4", (4, 4), "villain", {"m2": 1.0, "lam": 0.0})


def test_every_shipped_entry_resolves_through_the_registry():
    shipped = entries()
    assert shipped and {e.theory for e in shipped} <= set(registered_theories())
    for entry in shipped:
        info = entry.theory_info()
        assert entry.convention in info.conventions, entry.id
        if entry.exact is not None:
            assert entry.exact in info.exact, entry.id
            assert info.exact[entry.exact].provenance.startswith("exact")
    assert {e.exact for e in shipped if e.exact} == {"free-scalar", "u1-character-expansion", "sun-character-expansion",
                                                      "sun-single-matrix"}


@pytest.mark.parametrize("entry_id", ["phi4/free/L8", "u1/beta2/L8"])
def test_registered_observables_exist_and_figures_are_as_before(entry_id):
    entry = get_entry(entry_id)
    info, theory = entry.theory_info(), entry.build_theory()
    names = set(theory.observables(theory.field.prior_sample(2, dtype=torch.float64))) | set(theory.derived_quantities())
    assert info.headline_observable in names
    assert set(info.figure_observables) <= names and set(info.reference_observables) <= names
    legacy = ("chi2", "abs_mag", "topological_charge", "plaquette", "action_density")  # the report's list before the registry
    assert [n for n in info.figure_observables if n in names][:3] == [n for n in legacy if n in names][:3]
    assert set(entry.reference_values()) and all(math.isfinite(r.value) for r in entry.reference_values().values())


def test_headlines_and_report_hooks():
    assert theory_info("phi4").headline_observable == "chi2"
    assert theory_info("u1").headline_observable == "topological_charge"
    assert theory_info("phi4").reference_observables and not theory_info("u1").reference_observables
    assert [s.__name__ for s in theory_info("u1").report_sections] == ["topology_section"]
    with pytest.raises(ValueError, match="already registered"):
        register_theory(TheoryInfo(name="phi4", build=Gaussian.from_convention, conventions=("standard",),
                                   headline_observable="x2", figure_observables=()))
    assert theory_info("phi4").build is not Gaussian.from_convention


def test_importing_the_theories_does_not_import_plotting_or_the_exact_solvers():
    code = ("import sys, suite.theories as t; assert set(t.registered_theories()) >= {'phi4', 'u1'}; "
            "bad = [m for m in ('matplotlib', 'pandas', 'scipy', 'suite.report', 'suite.exact.u1') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
