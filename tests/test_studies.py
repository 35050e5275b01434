"""The scaling studies: every task names a catalogue entry or a line point, and --only / --tier keep
part of a study (checking only that part)."""

import tomllib

import pytest

from suite.catalogue import load_catalogue
from suite.catalogue.lines import points
from suite.errors import UsageError
from suite.harness.study import STUDIES_DIR, entry_tier, load_study, shipped_studies


@pytest.mark.parametrize("name", ["continuum-scaling-phi4", "volume-scaling-phi4"])
def test_scaling_studies_name_known_points_and_have_a_quick_part(name):
    quick = load_study(name, tiers=["quick"])
    assert quick.tasks and all(entry_tier(t.entry_id) == "quick" for t in quick.tasks)
    assert {t.sampler["name"] for t in quick.tasks} == {"hmc", "flow"}
    # A quick task is CI-sized: small lattices and short runs.
    for task in quick.tasks:
        assert max(load_catalogue()[1][task.entry_id].lattice) <= 12
        assert task.sampler.get("n_traj", 0) * task.sampler.get("chains", 0) <= 100_000
        assert task.sampler.get("budget_steps", 0) <= 2000
    raw = tomllib.loads((STUDIES_DIR / f"{name}.toml").read_text())
    named = {e for task in raw["task"] for e in task["entries"]}
    assert named <= set(load_catalogue()[1]) | set(points())


def test_only_patterns_and_tiers_select_tasks():
    study = load_study("continuum-scaling-phi4", only=["phi4/xi2/*"], tiers=["quick"])
    assert {t.entry_id for t in study.tasks} == {"phi4/xi2/L8"}
    with pytest.raises(UsageError, match="no task left"):
        load_study("continuum-scaling-phi4", only=["phi4/nothing/*"])
    with pytest.raises(UsageError, match="unknown tier"):
        load_study("continuum-scaling-phi4", tiers=["huge"])


def test_an_uncalibrated_point_names_the_command(tmp_path, monkeypatch):
    from suite.catalogue import lines

    pending = {"phi4/pending/L64": lines.Point(id="phi4/pending/L64", theory="phi4", convention="albergo",
                                               fixed={"lam": 5.0}, parameter="m2", lattice=(64, 64), tier="large",
                                               description="", target={"xi2nd": 8.0}, guess=-4.2)}
    monkeypatch.setattr(lines, "points", lambda: pending)
    study = tmp_path / "s.toml"
    study.write_text('[[task]]\nentries = ["phi4/free/L8", "phi4/pending/L64"]\nsampler = { name = "hmc" }\n')
    with pytest.raises(UsageError, match="lftbench calibrate phi4/pending/L64"):
        load_study(str(study))
    assert [t.entry_id for t in load_study(str(study), tiers=["quick"]).tasks] == ["phi4/free/L8"]


def test_cli_run_part_of_a_study_and_calibrate_list(tmp_path, capsys):
    from suite.cli import main

    assert main(["run", "continuum-scaling-phi4", "--only", "phi4/none/*", "--out", str(tmp_path)]) == 2
    assert "no task left" in capsys.readouterr().err
    assert main(["run", "--entry", "phi4/free/L8", "--tier", "quick", "--out", str(tmp_path)]) == 2
    assert main(["calibrate", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(points()) and any("not calibrated" in line or "m2 = " in line for line in listed)


@pytest.mark.parametrize("name", shipped_studies())
def test_every_shipped_study_loads_with_registered_models(name):
    """A shipped study names catalogue entries (or line points still to calibrate) and reference models
    whose hyperparameters fit their schemas."""
    from reference.flows import is_reference_model, validate_hparams

    try:
        tasks = load_study(name).tasks
    except UsageError as err:  # an uncalibrated line point: the rest of the study must still load
        assert "lftbench calibrate" in str(err)
        tasks = load_study(name, tiers=["quick"]).tasks
    assert tasks
    flows = [t.sampler for t in tasks if "model" in t.sampler]  # the samplers that take a model
    assert all(is_reference_model(s["model"]) for s in flows), {s["model"] for s in flows}
    for spec in flows:
        validate_hparams(spec["model"], spec.get("hparams") or {})
