"""Calibration of a line-of-constant-physics point: the search finds the known root, the entry it
writes is a valid catalogue entry with computed references, and an interrupted run resumes from its
state without repeating finished HMC runs."""

import math

import pytest

from suite import calibrate as cal
from suite.catalogue import get_entry, parse_catalogue_files
from suite.catalogue.lines import parse_lines_file
from suite.errors import UsageError

# The free field in the lecture convention has ξ_2nd = 1/m exactly on any lattice: ξ = 2 at m² = 1/4.
LINES = """
[[line]]
theory = "phi4"
convention = "lecture"
fixed = { lam = 0.0 }
parameter = "m2"
tolerance = 0.1
step = 0.1
search = { chains = 32, n_therm = 100, n_traj = 300 }
reference = { chains = 32, n_therm = 100, n_traj = 300, segments = 2 }

[[line.point]]
id = "phi4/free-xi2/L6"
lattice = [6, 6]
target = { xi2nd = 2.0 }
guess = 0.5
tier = "quick"
description = "free field tuned to xi = 2"

[[line.point]]
id = "phi4/free-xi2-volume/L4"
lattice = [4, 4]
from = "phi4/free-xi2/L6"
tier = "quick"
description = "the same free field on L = 4"
"""


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    path = tmp_path_factory.mktemp("lines") / "free.toml"
    path.write_text(LINES)
    found = parse_lines_file(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cal, "points", lambda: found)
        yield found


@pytest.fixture(scope="module")
def calibrated(line, tmp_path_factory):
    """The free-field point calibrated once: (state folder, catalogue file, its entry)."""
    folder = tmp_path_factory.mktemp("calibration")
    catalogue = folder / "lcp.toml"
    entry = cal.calibrate("phi4/free-xi2/L6", folder / "state", catalogue_file=catalogue, log=lambda m: None,
                          progress=False)
    return folder / "state", catalogue, entry


def test_search_steps_towards_and_then_interpolates_the_root(line):
    point = line["phi4/free-xi2/L6"]

    def evaluation(m2):  # exact ξ = 1/m with a 1% error
        return {"value": m2, "observables": {"xi2nd": {"value": 1 / math.sqrt(m2), "error": 0.01 / math.sqrt(m2)}}}

    assert cal.next_value(point, [], monotone=-1) == 0.5
    # ξ(0.5) = 1.41 < 2: ξ falls with m², so step down.
    assert cal.next_value(point, [evaluation(0.5)], monotone=-1) == pytest.approx(0.4)
    # Bracketed: the straight line in ln ξ lands near the root 0.25, inside the evaluated range.
    guess = cal.next_value(point, [evaluation(0.5), evaluation(0.4), evaluation(0.2)], monotone=-1)
    assert 0.2 < guess < 0.3 and abs(guess - 0.25) < abs(0.2 - 0.25)


def test_calibrate_writes_an_entry_and_resumes(calibrated, tmp_path, monkeypatch):
    state, catalogue, entry = calibrated
    m2 = entry["params"]["m2"]
    xi = entry["reference"]["xi2nd"]
    assert abs(xi["value"] / 2 - 1) <= 0.1 and xi["error"] > 0
    assert abs(1 / math.sqrt(m2) / 2 - 1) < 0.15  # the exact ξ at the tuned m²
    assert xi["provenance"].startswith("computed: hmc, 2 x 32 chains") and "calibrate" in xi["command"]
    _, entries = parse_catalogue_files([catalogue])
    assert entries["phi4/free-xi2/L6"].params == {"lam": 0.0, "m2": m2}

    # Resume: every HMC run is in the state folder; none is repeated, and the entry is the same.
    def no_hmc(*args, **kwargs):
        raise AssertionError("an HMC run was repeated")

    monkeypatch.setattr(cal, "_run", no_hmc)
    fresh = tmp_path / "fresh.toml"
    again = cal.calibrate("phi4/free-xi2/L6", state, catalogue_file=fresh, log=lambda m: None)
    assert again == entry


def test_volume_point_takes_the_tuned_parameter(calibrated):
    state, catalogue, tuned = calibrated
    small = cal.calibrate("phi4/free-xi2-volume/L4", state, catalogue_file=catalogue, log=lambda m: None,
                          progress=False)
    assert small["params"] == tuned["params"] and small["lattice"] == [4, 4]
    assert "phi4/free-xi2/L6" in small["source"]
    assert set(cal.read_calibrated(catalogue)) == {"phi4/free-xi2/L6", "phi4/free-xi2-volume/L4"}


def test_unknown_point_and_uncalibrated_entry_are_one_line_errors(monkeypatch):
    with pytest.raises(UsageError, match="not a point"):
        cal.calibrate("phi4/nope/L8", "unused")
    from suite.catalogue import lines

    monkeypatch.setattr(lines, "points", lambda: {"phi4/pending/L64": None})
    with pytest.raises(UsageError, match="lftbench calibrate phi4/pending/L64"):
        get_entry("phi4/pending/L64")


def test_a_target_the_theory_does_not_measure_is_a_one_line_error(tmp_path, monkeypatch):
    """Before any HMC run: the target must be one of the theory's reference observables."""
    path = tmp_path / "bad.toml"
    path.write_text(LINES.replace("target = { xi2nd = 2.0 }", "target = { xi3rd = 2.0 }"))
    monkeypatch.setattr(cal, "points", lambda: parse_lines_file(path))
    monkeypatch.setattr(cal, "_run", lambda *args: pytest.fail("ran HMC for a target it cannot measure"))
    with pytest.raises(UsageError, match="phi4/free-xi2/L6: the target 'xi3rd' is not a reference observable of "
                                         "theory 'phi4' \\(it has .*xi2nd"):
        cal.calibrate("phi4/free-xi2/L6", tmp_path / "state", catalogue_file=tmp_path / "lcp.toml", log=lambda m: None)
    assert not (tmp_path / "lcp.toml").exists()


def test_every_shipped_line_targets_an_observable_its_theory_measures():
    from suite.catalogue.lines import points

    for point in points().values():
        cal._check_target(point)  # raises for a target the calibration cannot measure


def test_lines_file_is_validated(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(LINES.replace('target = { xi2nd = 2.0 }\n', ''))
    with pytest.raises(UsageError, match="either a 'target'"):
        parse_lines_file(path)
    # the search and reference tables are the line's sampler's options, checked against its spec
    path.write_text(LINES.replace("n_traj = 300 }", "n_trajectories = 300 }", 1))
    with pytest.raises(UsageError, match="free-xi2/L6.*n_trajectories"):
        parse_lines_file(path)
    path.write_text(LINES.replace('step = 0.1', 'step = 0.1\nsampler = "cluster"'))
    with pytest.raises(UsageError, match="sampler 'cluster'"):  # no n_traj option: the cluster sampler's are others
        parse_lines_file(path)
    path.write_text(LINES.replace('step = 0.1', 'step = 0.1\nmonotone = 0'))
    with pytest.raises(UsageError, match="monotone must be -1 or 1"):
        parse_lines_file(path)


O3_LINE = """
[[line]]
theory = "on"
convention = "standard"
fixed = { n = 3 }
parameter = "beta"
sampler = "cluster"
monotone = 1
tolerance = 0.1
step = 0.1
search = { chains = 8, n_therm = 20, n_meas = 100, n_clusters = 4 }
reference = { chains = 8, n_therm = 20, n_meas = 200, n_clusters = 4 }

[[line.point]]
id = "on/test-xi1/L6"
lattice = [6, 6]
target = { xi2nd = 1.0 }
guess = 0.6
tier = "quick"
description = "O(3) at xi = 1"
"""


def test_a_line_measured_with_the_cluster_algorithm(tmp_path, monkeypatch):
    """A sigma-model line: ξ grows with β (monotone = +1), the cluster sampler measures it, and the
    entry's provenance names it. The tuned β reproduces ξ in an independent HMC run."""
    path = tmp_path / "o3.toml"
    path.write_text(O3_LINE)
    found = parse_lines_file(path)
    assert found["on/test-xi1/L6"].catalogue_file.name == "o3-lcp.toml"
    monkeypatch.setattr(cal, "points", lambda: found)
    entry = cal.calibrate("on/test-xi1/L6", tmp_path / "state", catalogue_file=tmp_path / "lcp.toml",
                          log=lambda m: None, progress=False)
    xi = entry["reference"]["xi2nd"]
    assert abs(xi["value"] - 1) <= 0.1 and entry["params"]["n"] == 3
    assert xi["provenance"].startswith("computed: cluster, 1 x 8 chains x 200 measurements")
    from reference.hmc import run_hmc
    from suite.metrics import estimate_observables
    from suite.theories import build_theory

    theory = build_theory("on", (6, 6), "standard", entry["params"])
    est = estimate_observables(run_hmc(theory, chains=16, n_therm=100, n_traj=300, seed=3, progress=False),
                               theory)["xi2nd"]
    assert abs(est["value"] - xi["value"]) < 4 * math.hypot(est["error"], xi["error"])


def test_shipped_lines_are_valid_and_calibrated_entries_match_them():
    from suite.catalogue.lines import points

    shipped = points()
    assert {"phi4/xi2/L8", "phi4/xi8/L64", "phi4/xi4-volume/L64"} <= set(shipped)
    for entry_id, raw in cal.read_calibrated().items():
        point = shipped[entry_id]
        assert raw["lattice"] == list(point.lattice) and raw["tier"] == point.tier
        if point.tuned:
            (name, target), = point.target.items()
            assert abs(raw["reference"][name]["value"] / target - 1) <= point.tolerance, entry_id
        assert all(r["provenance"].startswith("computed:") for r in raw["reference"].values())


def test_recording_an_entry_keeps_those_written_meanwhile(tmp_path):
    from suite.calibrate import read_calibrated, record_calibrated, write_calibrated

    shipped = read_calibrated()
    first, second = shipped["phi4/xi2/L8"], shipped["phi4/xi3/L12"]
    path = tmp_path / "lcp.toml"
    write_calibrated({first["id"]: first}, path)  # another calibration wrote its entry meanwhile
    record_calibrated(second, path)
    assert set(read_calibrated(path)) == {first["id"], second["id"]}
    record_calibrated({**second, "tier": "standard"}, path)  # a recalibration replaces its own entry
    assert read_calibrated(path)[second["id"]]["tier"] == "standard" and len(read_calibrated(path)) == 2
