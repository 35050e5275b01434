"""Runs that share a results folder, and runs stopped by a signal: nothing is lost or written twice.

* Two processes running one study into one folder share its tasks (each task's lock), and every
  task has exactly one row.
* SIGTERM (what Slurm sends before it kills a job) during training: a final checkpoint, one line
  saying how to resume, exit status 143; rerunning without ``--resume`` is refused; with it the
  run finishes bit-for-bit as if it had never stopped.
"""

import os
import signal
import subprocess
import sys
import time

import torch

from suite.harness.rows import read_rows

FLOW = ["--entry", "phi4/free/L8", "--sampler", "flow", "--model", "affine", "--hparams", '{"n_layers": 2}',
        "--batch-size", "8", "--n-samples", "64", "--checkpoint-every", "20", "--schedule", "constant"]


def lftbench(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "suite.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def test_two_processes_on_one_study_share_the_work(tmp_path):
    study = tmp_path / "shared.toml"
    study.write_text('[[task]]\nentries = ["phi4/free/L8"]\nsampler = { name = "hmc", chains = 2, n_therm = 20, '
                     'n_traj = 400 }\nseeds = [0, 1, 2, 3, 4, 5]\n')
    out = tmp_path / "results"
    procs = [lftbench("run", str(study), "--out", str(out)) for _ in range(2)]
    logs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    rows = read_rows(out)
    assert sorted(r.seed for r in rows) == [0, 1, 2, 3, 4, 5]
    assert len((out / "results.jsonl").read_text().splitlines()) == 6
    ran = [err.count(": running\n") for _, err in logs]
    assert sum(ran) == 6, logs  # no task ran twice
    assert not list(out.glob("**/*.tmp"))


def test_sigterm_checkpoints_and_resume_is_bit_for_bit(tmp_path):
    steps = ["--budget-steps", "300"]
    reference = lftbench("run", *FLOW, *steps, "--out", str(tmp_path / "straight"))
    assert reference.wait(timeout=300) == 0, reference.communicate()

    out = tmp_path / "stopped"
    proc = lftbench("run", *FLOW, *steps, "--out", str(out))
    deadline = time.time() + 120
    while not list(out.glob("runs/*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # a few steps after the first checkpoint
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "--resume" in err.splitlines()[-1]
    (run_dir,) = out.glob("runs/*")
    stopped_at = torch.load(run_dir / "checkpoint.pt", weights_only=True)["log"]["steps"]
    assert 20 <= stopped_at < 300 and not read_rows(out)

    again = lftbench("run", *FLOW, *steps, "--out", str(out))
    _, err = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in err and "--force" in err

    resumed = lftbench("run", *FLOW, *steps, "--resume", "--out", str(out))
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    (a,), (b,) = read_rows(tmp_path / "straight"), read_rows(out)
    model_a = torch.load(a.artifact("model"), weights_only=True)
    model_b = torch.load(b.artifact("model"), weights_only=True)
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    assert a.metrics["ess"]["value"] == b.metrics["ess"]["value"]
