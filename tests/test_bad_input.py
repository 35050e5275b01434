"""The bad-input battery: every case a tester found (user mistakes, faults, lost or duplicated rows)
run through the CLI at tiny sizes. Each must end with the expected exit status, at most one line
``lftbench: error: ...`` (exactly one for a failure), no traceback, and ``results.jsonl`` intact.

What cannot be arranged on a CI machine (a full disk; an unreadable file when tests run as root)
is simulated by injecting the failure into the system call.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from suite.cli import main
from suite.harness import rows as rowio
from suite.harness.rows import RESULTS_FILE, read_rows

TINY = ["--chains", "4", "--therm", "20", "--n-traj", "50"]
ENTRY = ["--entry", "phi4/free/L8"]
FLOW = ["--entry", "phi4/free/L8", "--sampler", "flow", "--n-samples", "64", "--sample-batch", "32",
        "--batch-size", "8"]

USER_MODELS = textwrap.dedent('''
    import math
    import sys

    import torch
    from torch import nn


    class Gaussian(nn.Module):
        """x = σ z with a learnable σ; ``mode`` breaks it in one way."""

        def __init__(self, theory, mode=""):
            super().__init__()
            self.shape = tuple(theory.field.shape)
            self.log_sigma = nn.Parameter(torch.zeros(()))
            self.mode = mode

        def sample(self, n):
            z = torch.randn((n, *self.shape), dtype=self.log_sigma.dtype)
            x = z * self.log_sigma.exp()
            log_q = (-0.5 * z.pow(2) - self.log_sigma - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
            if self.mode == "nan-x":
                x = x * float("nan")
            if self.mode == "diverge" and torch.is_grad_enabled():
                log_q = log_q * float("nan")
            return x, log_q

        def log_prob(self, x):
            if self.mode == "broken-log-prob" and torch.is_grad_enabled():  # passes the check, fails in training
                raise RuntimeError("broken log_prob")
            z = x / self.log_sigma.exp()
            return (-0.5 * z.pow(2) - self.log_sigma - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


    class NoLogProb(nn.Module):
        def __init__(self, theory):
            super().__init__()
            self.inner = Gaussian(theory)

        def sample(self, n):
            return self.inner.sample(n)


    class Frozen(Gaussian):
        def __init__(self, theory):
            super().__init__(theory)
            self.log_sigma.requires_grad_(False)


    def build(theory, mode=""):
        return Gaussian(theory, mode)


    def no_log_prob(theory):
        return NoLogProb(theory)


    def frozen(theory):
        return Frozen(theory)


    class Mixed(Gaussian):
        def sample(self, n):  # half-precision x and bfloat16 log q whatever the harness cast it to
            x, log_q = super().sample(n)
            return x.half(), log_q.to(torch.bfloat16)


    def mixed(theory):
        return Mixed(theory)


    def leaves(theory):
        sys.exit(0)
''')


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A results folder with one finished tiny HMC row, and the user models' file."""
    folder = tmp_path_factory.mktemp("base")
    assert main(["run", *ENTRY, *TINY, "--out", str(folder / "results")]) == 0
    (folder / "models.py").write_text(USER_MODELS)
    return folder


def _setup(case: str, tmp: Path, monkeypatch) -> None:
    out = tmp / "results"
    if case == "results-is-folder":
        (out / RESULTS_FILE).unlink()
        (out / RESULTS_FILE).mkdir()
    elif case == "runs-is-file":
        shutil.rmtree(out / "runs")
        (out / "runs").write_text("")
    elif case == "state-is-file":
        (tmp / "state").write_text("")
    elif case == "not-utf8":
        (tmp / "study.toml").write_bytes(b'name = "\xff\xfe"\n[[task]]\nentries = ["phi4/free/L8"]\n')
    elif case == "bool-seed":
        (tmp / "study.toml").write_text('[[task]]\nentries = ["phi4/free/L8"]\nsampler = {name = "hmc"}\n'
                                        'seeds = [true]\n')
    elif case == "bad-last-task":  # must fail before the first task runs
        (tmp / "study.toml").write_text('[[task]]\nentries = ["phi4/free/L8"]\nsampler = {name = "hmc", chains = 2, '
                                        'n_traj = 10, n_therm = 5}\nseeds = [7]\n[[task]]\nentries = ["phi4/free/L8"]'
                                        '\nsampler = {name = "flow", model = "affine", hparams = {n_layres = 2}}\n')
    elif case in ("study", "executor-table", "executor-table-key", "executor-table-name", "executor-table-local"):
        table = {"study": "", "executor-table": '[executor]\nname = "slurm"\ntime = "90 minutes"\n',
                 "executor-table-key": '[executor]\nname = "slurm"\nqueue = "gpu"\n',
                 "executor-table-name": '[executor]\nname = "pbs"\n',
                 "executor-table-local": '[executor]\npartition = "gpu"\n'}[case]
        (tmp / "study.toml").write_text(table + '[[task]]\nentries = ["phi4/free/L8"]\n'
                                        'sampler = {name = "hmc", chains = 2, n_traj = 10, n_therm = 5}\n')
    elif case == "no-submitit":
        _setup("study", tmp, monkeypatch)
        monkeypatch.setitem(sys.modules, "submitit", None)  # what an environment without it gives: ImportError
    elif case == "no-sbatch":
        _setup("study", tmp, monkeypatch)
        monkeypatch.setenv("PATH", str(tmp / "empty"))
    elif case == "unknown-study-key":
        (tmp / "study.toml").write_text('nmae = "typo"\n[[task]]\nentries = ["phi4/free/L8"]\n'
                                        'sampler = {name = "hmc"}\n')
    elif case == "unreadable-results":
        real_open = os.open

        def refuse(path, flags, *args, **kwargs):
            if str(path).endswith(RESULTS_FILE):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(rowio.os, "open", refuse)
        monkeypatch.setattr("builtins.open", _refusing_builtin_open())
    elif case == "full-disk":
        real_write = os.write

        def short_write(fd, data):  # what a full disk does: fewer bytes than asked for
            return real_write(fd, data[: len(data) // 2])

        monkeypatch.setattr(rowio.os, "write", short_write)
    elif case == "full-disk-chains":
        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(np, "savez_compressed", no_space)
    elif case == "corrupt-checkpoint":
        from suite.harness.runner import task_key
        from suite.harness.study import make_task

        task = make_task("phi4/free/L8", {"name": "flow", "n_samples": 64, "sample_batch": 32, "batch_size": 8,
                                          "budget_steps": 5}, 0)
        run_dir = out / "runs" / task_key(task, "float32", "cpu")
        run_dir.mkdir(parents=True)
        (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    elif case == "corrupt-chains":
        (row,) = read_rows(out)
        row.artifact("chains").write_bytes(b"PK\x03\x04 not a zip archive")
    elif case == "garbage-lines":
        with open(out / RESULTS_FILE, "a") as f:
            f.write("{}\nnull\n[1, 2]\n{\"run_id\": \"x\"}\n")
    elif case == "throughput-row":
        rowio.append_record(out, {"kind": "throughput", "workload": "hmc", "L": 8})


def _refusing_builtin_open():
    import builtins

    real = builtins.open

    def refusing(file, mode="r", *args, **kwargs):
        if str(file).endswith(RESULTS_FILE) and ("a" in mode or "w" in mode):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, mode, *args, **kwargs)

    return refusing


MODELS = "{tmp}/models.py"
CASES = [
    # case id, arguments, exit status, fragment of the error line (None: success), setup
    ("n-traj-1", ["run", *ENTRY, *TINY, "--n-traj", "1"], 2, "'n_traj' must be >= 2", None),
    ("validate-n-traj-1", ["validate", "--n-traj", "1"], 2, "'n_traj' must be >= 2", None),
    ("traj-length-inf", ["run", *ENTRY, *TINY, "--traj-length", "inf"], 2, "finite", None),
    ("seed-too-large", ["run", *ENTRY, *TINY, "--seed", str(2**63)], 2, "seed must be an integer", None),
    ("bool-seed", ["run", "{tmp}/study.toml"], 2, "seed must be an integer", "bool-seed"),
    ("not-utf8", ["run", "{tmp}/study.toml"], 2, "not a UTF-8 text file", "not-utf8"),
    ("unknown-study-key", ["run", "{tmp}/study.toml"], 2, "unknown field 'nmae'", "unknown-study-key"),
    ("device-mps", ["run", *ENTRY, *TINY, "--device", "mps"], 2, "not supported", None),
    ("device-meta", ["run", *ENTRY, *TINY, "--device", "meta"], 2, "not supported", None),
    ("device-nonsense", ["run", *ENTRY, *TINY, "--device", "gpu7"], 2, "unknown device", None),
    ("state-is-file", ["calibrate", "phi4/xi2/L8", "--state", "{tmp}/state"], 2, "is a file", "state-is-file"),
    ("results-is-folder", ["run", *ENTRY, *TINY], 2, "is not a file", "results-is-folder"),
    ("runs-is-file", ["run", *ENTRY, *TINY], 2, "is not a folder", "runs-is-file"),
    ("unreadable-results", ["run", *ENTRY, *TINY, "--seed", "1"], 2, "not writable", "unreadable-results"),
    ("empty-out", ["run", *ENTRY, *TINY, "--out", ""], 2, "--out must name a folder", None),
    ("lr-inf", ["run", *FLOW, "--lr", "inf"], 2, "'lr' must be a finite number", None),
    ("budget-seconds-inf", ["run", *FLOW, "--budget-seconds", "inf"], 2, "finite", None),
    ("pretrain-larger", ["run", *FLOW, "--pretrain", '{"L": 16, "budget_steps": 2}'], 2,
     "larger than the entry's lattice", None),
    ("argparse-type", ["run", *ENTRY, "--chains", "many"], 2, "invalid int value", None),
    ("argparse-missing", ["run", *ENTRY, *TINY, "--out"], 2, "expected one argument", None),
    ("foreign-option", ["run", *ENTRY, *TINY, "--model", "affine"], 2, "--model is not an option of sampler 'hmc'",
     None),
    ("no-log-prob", ["run", *FLOW, "--model", f"{MODELS}:no_log_prob", "--objective", "forward-kl",
                     "--ensemble", '{"n_configs": 64, "chains": 4, "n_therm": 10}'], 2, "has no log_prob", None),
    ("no-parameters", ["run", *FLOW, "--model", f"{MODELS}:frozen", "--budget-steps", "3"], 2,
     "no trainable parameters", None),
    ("corrupt-checkpoint", ["run", *FLOW, "--budget-steps", "5", "--resume"], 2, "cannot be read",
     "corrupt-checkpoint"),
    ("interrupted-without-resume", ["run", *FLOW, "--budget-steps", "5"], 2, "rerun with --resume",
     "corrupt-checkpoint"),
    ("hparam-string-bool", ["run", *FLOW, "--hparams", '{"z2": "false"}'], 2, "z2 must be true or false", None),
    ("hparam-bound-nan", ["run", *FLOW, "--model", "spline", "--hparams", '{"bound": NaN}'], 2, "bound", None),
    ("hparam-bound-negative", ["run", *FLOW, "--model", "spline", "--hparams", '{"bound": -1}'], 2, "bound", None),
    ("hparam-hidden-negative", ["run", *FLOW, "--hparams", '{"hidden": [-1]}'], 2, "hidden", None),
    ("bad-last-task", ["run", "{tmp}/study.toml"], 2, "task 2", "bad-last-task"),
    ("executor-unknown", ["run", "{tmp}/study.toml", "--executor", "pbs"], 2, "invalid choice: 'pbs'", "study"),
    ("executor-bad-time", ["run", "{tmp}/study.toml", "--executor", "slurm", "--time", "1h"], 2,
     "--time: time must be HH:MM:SS", "study"),
    ("executor-bad-seconds", ["run", "{tmp}/study.toml", "--executor", "slurm", "--time", "00:00:61"], 2,
     "time must be HH:MM:SS", "study"),
    ("executor-zero-time", ["run", "{tmp}/study.toml", "--executor", "slurm", "--time", "00:00:00"], 2,
     "more than 00:00:00", "study"),
    ("executor-no-time", ["run", "{tmp}/study.toml", "--executor", "slurm"], 2, "needs --time", "study"),
    ("partition-without-slurm", ["run", "{tmp}/study.toml", "--partition", "gpu"], 2,
     "--partition is an option of a cluster executor", "study"),
    ("gpus-negative", ["run", "{tmp}/study.toml", "--executor", "submitit-local", "--gpus-per-task", "-1"], 2,
     "gpus_per_task must be an integer >= 0", "study"),
    ("parallelism-zero", ["run", "{tmp}/study.toml", "--executor", "submitit-local", "--array-parallelism", "0"], 2,
     "array_parallelism must be an integer >= 1", "study"),
    ("wait-local", ["run", "{tmp}/study.toml", "--wait"], 2, "--wait is for a cluster executor", "study"),
    ("executor-with-entry", ["run", *ENTRY, *TINY, "--executor", "submitit-local"], 2, "give a study, not --entry",
     None),
    ("no-submitit", ["run", "{tmp}/study.toml", "--executor", "submitit-local"], 2, "need submitit", "no-submitit"),
    ("no-sbatch", ["run", "{tmp}/study.toml", "--executor", "slurm", "--time", "01:00:00"], 2,
     "sbatch, which is not on this machine's PATH", "no-sbatch"),
    ("executor-table-time", ["run", "{tmp}/study.toml"], 2, "[executor]: time must be HH:MM:SS", "executor-table"),
    ("executor-table-key", ["run", "{tmp}/study.toml"], 2, "[executor]: unknown field 'queue'", "executor-table-key"),
    ("executor-table-name", ["run", "{tmp}/study.toml"], 2, "unknown executor 'pbs'", "executor-table-name"),
    ("executor-table-local", ["run", "{tmp}/study.toml"], 2, "[executor]: partition is an option", "executor-table-local"),
    ("status-no-jobs", ["status", "{tmp}/results"], 2, "no submissions are recorded", None),
    ("status-no-folder", ["status", "{tmp}/nowhere"], 2, "does not exist", None),
    ("task-after-only", ["run", "{tmp}/study.toml", "--only", "phi4/*", "--task", "2"], 2,
     "the study has 1 tasks after --only/--tier", "study"),
    # faults: one line naming the task and the phase, exit status 1
    ("full-disk", ["run", *ENTRY, *TINY, "--seed", "1"], 1, "could not write a row", "full-disk"),
    ("full-disk-chains", ["run", *ENTRY, *TINY, "--seed", "1"], 1, "failed while writing chains.npz",
     "full-disk-chains"),
    ("too-large-to-allocate", ["run", *ENTRY, "--chains", str(10**12), "--therm", "1", "--n-traj", "2"], 1,
     "out of memory", None),
    ("broken-log-prob", ["run", *FLOW, "--model", f"{MODELS}:build", "--hparams", '{"mode": "broken-log-prob"}',
                         "--objective", "path-gradient", "--budget-steps", "3"], 1,
     f"model '{MODELS}:build' failed during training at step 1: RuntimeError: broken log_prob", None),
    ("nan-configurations", ["run", *FLOW, "--model", f"{MODELS}:build", "--hparams", '{"mode": "nan-x"}',
                            "--budget-steps", "3"], 1, "failed during sampling", None),
    ("model-exits", ["run", *FLOW, "--model", f"{MODELS}:leaves"], 1, "called sys.exit(0)", None),
    # no error: warnings for lines that are not rows; diverged runs recorded; throughput rows ignored
    ("garbage-lines-run", ["run", *ENTRY, *TINY], 0, None, "garbage-lines"),
    ("garbage-lines-report", ["report", "{tmp}/results", "--out", "{tmp}/report"], 0, None, "garbage-lines"),
    ("garbage-lines-compare", ["compare", "{tmp}/results"], 0, None, "garbage-lines"),
    ("short-hmc-report", ["run", *ENTRY, "--chains", "2", "--therm", "5", "--n-traj", "5", "--seed", "5"], 0, None,
     None),
    ("corrupt-chains-report", ["report", "{tmp}/results", "--out", "{tmp}/report"], 0, None, "corrupt-chains"),
    ("mixed-dtypes", ["run", *FLOW, "--model", f"{MODELS}:mixed", "--budget-steps", "3"], 0, None, None),
    ("compare-with-throughput", ["compare", "{tmp}/results"], 0, None, "throughput-row"),
    ("diverged", ["run", *FLOW, "--model", f"{MODELS}:build", "--hparams", '{"mode": "diverge"}',
                  "--budget-steps", "40"], 0, None, None),
]


@pytest.mark.parametrize("case, args, status, message, setup", CASES, ids=[c[0] for c in CASES])
def test_bad_input(base, tmp_path, monkeypatch, capsys, case, args, status, message, setup):
    shutil.copytree(base / "results", tmp_path / "results")
    shutil.copy(base / "models.py", tmp_path / "models.py")
    before = (tmp_path / "results" / RESULTS_FILE).read_bytes()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if argv[0] in ("run", "validate") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "results")]
    if setup:
        _setup(setup, tmp_path, monkeypatch)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    monkeypatch.undo()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("lftbench: error:")]
    assert "Traceback" not in err
    assert code == status, err
    if message is None:
        assert not errors, err
    else:
        assert len(errors) == 1 and message.replace("{tmp}", str(tmp_path)) in errors[0], err
    results = tmp_path / "results" / RESULTS_FILE
    if results.is_file():
        after = results.read_bytes()
        assert after.startswith(before) or case == "garbage-lines-run", "earlier rows were changed"
        rows = read_rows(tmp_path / "results", on_skip=None)
        assert len({r.run_id for r in rows}) == len(rows)
        if status:
            assert after == before or setup in ("garbage-lines", "throughput-row"), "a failed run added a row"
    if case == "diverged":
        (row,) = [r for r in read_rows(tmp_path / "results") if not r.ok]
        assert row.status == "diverged" and "diverged" in row.message and row.artifact("training").is_file()
    if case == "corrupt-chains-report":
        assert "cannot be read" in (tmp_path / "report" / "report.md").read_text()
    if case.startswith("garbage-lines"):
        assert "line 3: not a result row" in err and "skipped" in err


def test_force_replaces_the_row_instead_of_adding_one(base, tmp_path, capsys):
    shutil.copytree(base / "results", tmp_path / "results")
    (old,) = read_rows(tmp_path / "results")
    assert main(["run", *ENTRY, *TINY, "--force", "--out", str(tmp_path / "results")]) == 0
    (new,) = read_rows(tmp_path / "results")
    assert new.run_id == old.run_id and new.provenance["start_time"] >= old.provenance["start_time"]
    lines = (tmp_path / "results" / RESULTS_FILE).read_text().splitlines()
    assert len(lines) == 1
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "results"), "--format", "json"]) == 0
    assert [r["runs"] for r in json.loads(capsys.readouterr().out)] == [1]


def test_rows_are_strict_json_with_their_non_finite_numbers_restored(base, tmp_path):
    shutil.copytree(base / "results", tmp_path / "results")
    (row,) = read_rows(tmp_path / "results")
    row.observables["m_pole"] = {**row.observables["m_pole"], "value": float("nan"), "error": float("inf")}
    rowio.write_row(tmp_path / "results", row)
    line = (tmp_path / "results" / RESULTS_FILE).read_text().splitlines()[0]
    json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    (back,) = read_rows(tmp_path / "results")
    assert np.isnan(back.observables["m_pole"]["value"]) and back.observables["m_pole"]["error"] == float("inf")
