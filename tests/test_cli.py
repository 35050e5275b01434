"""The CLI end to end: list, run, report, validate, and one-line errors for bad input."""

import json
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from suite.cli import main
from suite.harness.rows import RESULTS_FILE, read_rows

TINY = ["--chains", "4", "--therm", "30", "--n-traj", "60"]


def lftbench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_list_does_not_import_torch():
    code = "import sys; from suite.cli import main; main(['list']); assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "phi4/tutorial2021/L8" in proc.stdout


def test_list_json_and_tier(capsys):
    assert main(["list", "--tier", "quick", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed and all(e["tier"] == "quick" for e in listed)


@pytest.mark.parametrize("args,message", [
    (["run", "--entry", "phi4/nope/L8", "--out", "{tmp}"], "unknown entry id"),
    (["run", "--entry", "phi4/free/L8", "--sampler", "gibbs", "--out", "{tmp}"], "unknown sampler"),
    (["run", "--entry", "phi4/free/L8", "--n-traj", "-5", "--out", "{tmp}"], "'n_traj' must be >= 2"),
    (["run", "--entry", "phi4/free/L8", "--chains", "0", "--out", "{tmp}"], "'chains' must be >= 1"),
    (["run", "--entry", "phi4/free/L8", "--traj-length", "-1", "--out", "{tmp}"], "trajectory_length"),
    (["run", "--entry", "phi4/free/L8", "--out", "/proc/forbidden"], "not writable"),
    (["run", "{tmp}/bad.toml", "--out", "{tmp}"], "not valid TOML"),
    (["run", "{tmp}/nolattice.toml", "--out", "{tmp}"], "unknown entry id"),
    (["run", "no-such-study", "--out", "{tmp}"], "no study"),
    (["list", "--tier", "huge"], "unknown tier"),
    (["run", "--entry", "phi4/aks2019/L8", "--sampler", "flow", "--pretrain", '{"L": 4}', "--out", "{tmp}"],
     "needs budget_steps"),
    (["report", "{tmp}/empty", "--out", "{tmp}/r"], "does not exist"),
])
def test_bad_input_gives_one_line_error(tmp_path, args, message):
    (tmp_path / "bad.toml").write_text("[[task]\nentries = ")
    (tmp_path / "nolattice.toml").write_text('[[task]]\nentries = ["phi4/x/L1"]\nsampler = {name = "hmc"}\n')
    proc = lftbench(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_model_that_cannot_be_pretrained_stops_the_task_with_one_error_line(tmp_path):
    proc = lftbench("run", "--entry", "phi4/aks2019/L8", "--sampler", "flow", "--model", "cnf-equivariant",
                    "--budget-steps", "0", "--pretrain", '{"L": 4, "budget_steps": 2}', "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("depends on the lattice size")


def test_run_report_and_resume(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--entry", "phi4/free/L8", *TINY, "--seed", "3", "--out", str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 1
    row = rows[0]
    assert row.entry == "phi4/free/L8" and row.seed == 3 and row.catalogue_version >= 1
    assert row.sampler["chains"] == 4 and row.observables["chi2"]["n_samples"] == 4 * 60
    assert set(row.reference) >= {"chi2", "phi2", "xi2nd"}
    assert "git_commit" in row.provenance and row.provenance["packages"]["torch"]
    assert (out / row.artifacts["chains"]).exists()
    # The same task again is skipped; --force runs it again.
    assert main(["run", "--entry", "phi4/free/L8", *TINY, "--seed", "3", "--out", str(out)]) == 0
    assert len(read_rows(out)) == 1
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "phi4/free/L8" in report and "pull" in report
    assert (tmp_path / "report" / "figures" / f"{row.run_id}.png").stat().st_size > 1000
    assert (tmp_path / "report" / "observables.csv").exists()
    # Reference blocks printed from the rows parse as catalogue TOML and carry the row's numbers.
    capsys.readouterr()
    assert main(["references", str(out), "--study", "mine", "--observables", "chi2,phi2"]) == 0
    blocks = tomllib.loads(capsys.readouterr().out.replace("[entry.", "[e."))
    assert blocks["e"]["reference"]["chi2"]["value"] == row.observables["chi2"]["value"]
    assert blocks["e"]["reference"]["phi2"]["provenance"].startswith("computed: hmc, 4 chains x 60")


def test_rows_from_a_dirty_tree_are_named_loudly_in_the_report(tmp_path, monkeypatch):
    """Provenance records the changed files and a hash of the diff; the report warns about those rows."""
    from suite.harness import results

    real_git = results._git
    fake = {"status": " M suite/theories/phi4.py\n M README.md", "diff": "diff --git a/README.md b/README.md\n"}
    out, clean = tmp_path / "results", tmp_path / "clean"
    results.code_state.cache_clear()
    assert main(["run", "--entry", "phi4/free/L8", *TINY, "--seed", "1", "--out", str(clean)]) == 0
    monkeypatch.setattr(results, "_git", lambda *args: fake.get(args[0], real_git(*args)))
    results.code_state.cache_clear()  # the state is read once per process (next test)
    assert main(["run", "--entry", "phi4/free/L8", *TINY, "--seed", "2", "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert row.provenance["git_dirty"] is True
    assert row.provenance["git_changed_files"] == ["README.md", "suite/theories/phi4.py"]
    assert len(row.provenance["git_diff_sha256"]) == 64
    monkeypatch.setattr(results, "_git", real_git)
    results.code_state.cache_clear()
    (clean_row,) = read_rows(clean)
    if clean_row.provenance["git_dirty"] is False:  # a checkout with uncommitted changes makes both dirty
        assert main(["report", str(clean), "--out", str(tmp_path / "clean-report")]) == 0
        assert "uncommitted" not in (tmp_path / "clean-report" / "report.md").read_text()
    assert main(["report", str(clean), str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "run(s) were made from a working tree with uncommitted changes" in report
    assert "README.md, suite/theories/phi4.py" in report and row.provenance["git_diff_sha256"][:12] in report


def test_the_code_state_is_read_once_and_keeps_every_changed_file_name(monkeypatch):
    """Rows of a long run name the code it started with, not edits made meanwhile; `git status
    --porcelain` lines start with a space, which must not cost the first file name its first letter."""
    import subprocess

    from suite.harness import results

    outputs = {"status": " M suite/metrics.py\n M reference/hmc.py\n", "rev-parse": "abc\n", "diff": "x\n"}
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, outputs[cmd[1]], ""))
    results.code_state.cache_clear()
    try:
        state = results.code_state()
        assert state["git_changed_files"] == ["reference/hmc.py", "suite/metrics.py"] and state["git_commit"] == "abc"
        outputs.update(status="", **{"rev-parse": "def\n"})  # a commit made while the run goes on
        assert results.provenance()["git_commit"] == "abc" and results.provenance()["git_dirty"] is True
    finally:
        results.code_state.cache_clear()


def test_a_failed_task_keeps_earlier_rows_the_study_goes_on_and_torn_lines_are_ignored(tmp_path, monkeypatch,
                                                                                      capsys):
    from suite.samplers.hmc import HMC

    study = tmp_path / "three.toml"
    study.write_text('[[task]]\nentries = ["phi4/free/L8"]\nsampler = { name = "hmc", chains = 2, n_therm = 10, '
                     'n_traj = 20 }\nseeds = [0, 1, 2]\n')
    real = HMC.run
    calls = []

    def dies_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(HMC, "run", dies_on_second)
    out = tmp_path / "results"
    assert main(["run", str(study), "--out", str(out)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lftbench: error")]
    assert errors == ["lftbench: error: phi4/free/L8 hmc seed 1: failed during sampling: RuntimeError: simulated crash"]
    assert [r.seed for r in read_rows(out)] == [0, 2]
    (failed,) = (out / "runs").glob("*-s1-*")  # the failed task's folder keeps only its line, for lftbench status
    assert [p.name for p in failed.iterdir()] == ["failure.txt"]
    assert (failed / "failure.txt").read_text() == errors[0].removeprefix("lftbench: error: ") + "\n"
    with open(out / RESULTS_FILE, "a") as f:
        f.write('{"run_id": "torn')  # a crash in the middle of a write
    monkeypatch.setattr(HMC, "run", real)
    assert main(["run", str(study), "--out", str(out)]) == 0  # resumes: only seed 1 runs
    assert sorted(r.seed for r in read_rows(out)) == [0, 1, 2]
    assert not (failed / "failure.txt").exists()  # removed when the task ran again


def test_validate_passes_on_free_field(capsys):
    # --only keeps this to the free field at L=8; the full quick tier is `make validate`.
    assert main(["validate", "--only", "phi4/free/L8", "--chains", "16", "--therm", "100", "--n-traj", "300"]) == 0
    out = capsys.readouterr().out
    assert "phi4/free/L8" in out and "0 failed" in out and "phi4/free/L16" not in out
    assert main(["validate", "--only", "nothing/*"]) == 2
    assert "no quick entries matching nothing/* with reference values" in capsys.readouterr().err


def test_one_task_of_a_study_runs_alone_by_its_index(tmp_path, capsys):
    study = tmp_path / "two.toml"
    study.write_text('[[task]]\nentries = ["phi4/free/L8"]\nsampler = { name = "hmc", chains = 2, n_therm = 10, '
                     'n_traj = 20 }\nseeds = [4, 5]\n')
    out = tmp_path / "results"
    assert main(["run", str(study), "--task", "2", "--out", str(out)]) == 0
    assert "[2/2] phi4/free/L8 hmc seed 5: running" in capsys.readouterr().err
    assert [r.seed for r in read_rows(out)] == [5]
    assert main(["run", str(study), "--out", str(out)]) == 0  # the rest of the study: task 1 only
    assert sorted(r.seed for r in read_rows(out)) == [4, 5]
    assert main(["run", str(study), "--task", "3", "--out", str(out)]) == 2
    assert "--task must be in 1..2" in capsys.readouterr().err


def test_references_pool_the_seeds_of_one_spec_as_replicas(tmp_path, capsys):
    """Two seeds of the same HMC spec give one block whose value and error are the Γ-method over
    all their chains; the pooled path on a single run reproduces the run's own estimate."""
    from suite.chain import Chain
    from suite.harness.references import group_runs, pooled_references
    from suite.stats import gamma_method

    out = tmp_path / "res"
    for seed in ("1", "2"):
        assert main(["run", "--entry", "phi4/free/L8", *TINY, "--seed", seed, "--out", str(out)]) == 0
    rows = read_rows(out)
    (group,) = group_runs(rows)
    assert [r.seed for r in group] == [1, 2]
    capsys.readouterr()
    assert main(["references", str(out), "--study", "mine", "--observables", "chi2"]) == 0
    block = tomllib.loads(capsys.readouterr().out.replace("[entry.", "[e."))["e"]["reference"]["chi2"]
    replicas = [s for r in group for s in Chain.load(r.artifact("chains")).observables["chi2"]]
    expected = gamma_method(replicas)
    assert block["value"] == pytest.approx(expected.value, rel=1e-12)
    assert block["error"] == pytest.approx(expected.error, rel=1e-2)
    assert "2 runs (seeds 1, 2) of 4 chains x 60" in block["provenance"]
    single = gamma_method(list(Chain.load(group[0].artifact("chains")).observables["chi2"]))
    assert single.value == pytest.approx(group[0].observables["chi2"]["value"], rel=1e-12)
    assert single.error == pytest.approx(group[0].observables["chi2"]["error"], rel=1e-12)
    assert pooled_references(group[:1], ["chi2", "nope"])["nope"] is None


def test_reference_drift_flags_a_trend_through_the_run():
    from suite.harness.references import half_drift

    rng = np.random.default_rng(4)
    noise = [rng.normal(size=400) for _ in range(4)]
    assert abs(half_drift(noise)) < 3
    trend = [r + np.linspace(-1.0, 0.0, 400) for r in noise]  # thermalising from below
    assert half_drift(trend) < -5
