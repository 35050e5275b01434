"""Studies as job arrays through submitit, without a Slurm cluster.

* ``--executor submitit-local`` runs the submission path of ``--executor slurm`` (the same
  `TaskElement`s, pickled by submitit and run as processes by its local executor): rows equal to a
  local run's, a failing task shown by ``lftbench status`` with its line, and a rerun that submits
  only what is not done.
* A SIGTERM to a running element: the training writes its checkpoint, submitit's hook requeues the
  element with ``--resume`` (`TaskElement.checkpoint`), and it finishes bit-for-bit.
* ``--executor slurm`` against a stand-in ``sbatch`` (a script that keeps the batch file): the
  options reach the ``#SBATCH`` lines, the job ids are recorded, status shows the elements pending.
* A pretraining shared by two tasks running at once is trained once (the lock in its folder).

What needs a real cluster — sbatch accepting the script, Slurm delivering SIGUSR2/SIGTERM and
``scontrol requeue``, NFS locking — is not tested here.
"""

import json
import os
import signal
import textwrap
import threading
import time

import pytest
import torch

from suite.cli import main
from suite.harness.rows import read_rows
from suite.harness.runner import run_tasks
from suite.harness.slurm import TaskElement, task_states
from suite.harness.study import Task
from suite.samplers import spec_dict

MODEL = textwrap.dedent('''
    import math
    import os

    import torch
    from torch import nn


    class Gaussian(nn.Module):
        def __init__(self, theory):
            super().__init__()
            self.shape = tuple(theory.field.shape)
            self.log_sigma = nn.Parameter(torch.zeros(()))

        def sample(self, n):
            if os.environ.get("LFTBENCH_TEST_BREAK") and not torch.is_grad_enabled() and n > 2:  # not in the check
                raise RuntimeError("broken on purpose")
            z = torch.randn((n, *self.shape), dtype=self.log_sigma.dtype)
            log_q = (-0.5 * z.pow(2) - self.log_sigma - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
            return z * self.log_sigma.exp(), log_q


    def build(theory):
        return Gaussian(theory)
''')

STUDY = textwrap.dedent('''
    name = "tiny"
    [[task]]
    entries = ["phi4/free/L8"]
    sampler = { name = "hmc", chains = 2, n_therm = 10, n_traj = 20 }
    seeds = [0, 1]
    [[task]]
    entries = ["phi4/free/L8"]
    [task.sampler]
    name = "flow"
    model = "MODEL:build"
    budget_steps = 2
    batch_size = 8
    n_samples = 32
    sample_batch = 32
''')


def _measured(row) -> dict:
    """The row's observables without what depends on the machine's speed."""
    return {name: {k: v for k, v in est.items() if k != "seconds_per_independent_sample"}
            for name, est in row.observables.items()}


def _states(out):
    return [(s["index"], s["state"]) for s in task_states(out)]


def test_a_study_as_a_job_array_gives_the_local_rows_shows_a_failure_and_reruns_only_it(tmp_path, monkeypatch,
                                                                                       capsys):
    (tmp_path / "model.py").write_text(MODEL)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace("MODEL", str(tmp_path / "model.py")))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LFTBENCH_TEST_BREAK", "1")  # the elements inherit it: task 3 fails while sampling
    assert main(["run", str(study), "--out", str(tmp_path / "local")]) == 1
    cluster = tmp_path / "cluster"
    assert main(["run", str(study), "--out", str(cluster), "--executor", "submitit-local", "--wait"]) == 1
    out = capsys.readouterr().out
    assert "submitted job" in out and "3 tasks: 2 done, 1 failed" in out
    states = task_states(cluster)
    assert [(s["index"], s["state"]) for s in states] == [(1, "done"), (2, "done"), (3, "failed")]
    assert "failed during sampling: RuntimeError: broken on purpose" in states[2]["line"]
    assert all(s["job_id"] for s in states)

    local = {r.run_id: r for r in read_rows(tmp_path / "local")}
    ours = {r.run_id: r for r in read_rows(cluster)}
    assert set(ours) == set(local) and len(ours) == 2
    for key, row in ours.items():
        assert _measured(row) == _measured(local[key]) and row.metrics == local[key].metrics
        assert (cluster / "runs" / key / "row.json").is_file()

    monkeypatch.delenv("LFTBENCH_TEST_BREAK")  # fixed: the rerun submits task 3 alone
    assert main(["run", str(study), "--out", str(cluster), "--executor", "submitit-local", "--wait", "--resume"]) == 0
    records = sorted((cluster / "jobs").glob("*.json"), key=lambda p: json.loads(p.read_text())["submitted_ns"])
    assert [t["index"] for t in json.loads(records[-1].read_text())["tasks"]] == [3]
    assert _states(cluster) == [(1, "done"), (2, "done"), (3, "done")]
    assert main(["status", str(cluster)]) == 0
    assert "3 tasks: 3 done" in capsys.readouterr().out


FLOW = ("[[task]]\nentries = [\"phi4/free/L8\"]\nsampler = { name = \"flow\", model = \"affine\", hparams = { n_layers = 2 }, "
        "batch_size = 8, n_samples = 64, checkpoint_every = 20, schedule = \"constant\", budget_steps = 150 }\n")


def test_a_sigterm_checkpoints_and_the_element_is_requeued_with_resume_bit_for_bit(tmp_path, monkeypatch):
    study = tmp_path / "flow.toml"
    study.write_text(FLOW)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["run", str(study), "--out", str(tmp_path / "straight")]) == 0
    out = tmp_path / "stopped"
    assert main(["run", str(study), "--out", str(out), "--executor", "submitit-local"]) == 0
    (record,) = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    deadline = time.time() + 120
    while not list(out.glob("runs/*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(int(record["job_id"]), signal.SIGTERM)  # submitit's local controller passes it to the element
    while _states(out) != [(1, "done")] and time.time() < deadline:
        time.sleep(0.2)
    log = (out / record["tasks"][0]["log"]).read_text()
    assert "interrupted by SIGTERM" in log and log.count(": running\n") == 2, log  # requeued once
    (a,), (b,) = read_rows(tmp_path / "straight"), read_rows(out)
    model_a = torch.load(a.artifact("model"), weights_only=True)
    model_b = torch.load(b.artifact("model"), weights_only=True)
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)
    assert a.metrics["ess"]["value"] == b.metrics["ess"]["value"] and b.training["steps"] == 150


def test_the_requeued_element_resumes_and_does_not_force():
    element = TaskElement(["run", "s.toml", "--task", "2", "--out", "o", "--executor", "local", "--force"])
    requeued = element.checkpoint()
    assert requeued.function.argv == ["run", "s.toml", "--task", "2", "--out", "o", "--executor", "local", "--resume"]
    assert requeued.function.checkpoint().function.argv == requeued.function.argv


def test_slurm_submission_writes_the_options_into_the_batch_file_and_records_the_array(tmp_path, monkeypatch, capsys):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text('#!/bin/sh\nfor last; do :; done\ncp "$last" "$(dirname "$0")/batch.sh"\n'
                                 'echo "Submitted batch job 4242"\n')
    (bin_ / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    study = tmp_path / "study.toml"
    study.write_text(STUDY.split("[[task]]")[0] + '[executor]\nname = "slurm"\npartition = "gpu"\ntime = "01:30:00"\n'
                     "[[task]]" + STUDY.split("[[task]]")[1])
    out = tmp_path / "results"
    assert main(["run", str(study), "--out", str(out), "--gpus-per-task", "1", "--cpus-per-task", "8",
                 "--array-parallelism", "2", "--device", "cuda"]) == 0  # a login node need not have the GPU
    assert "submitted job 4242 (slurm): 2 tasks (1, 2)" in capsys.readouterr().out
    batch = (bin_ / "batch.sh").read_text()
    for line in ("--array=0-1%2", "--partition=gpu", "--time=90", "--gpus-per-task=1", "--cpus-per-task=8",
                 "--signal=USR2@90", "export OMP_NUM_THREADS=8"):
        assert line in batch, batch
    assert [(s["state"], s["job_id"]) for s in task_states(out)] == [("pending", "4242_0"), ("pending", "4242_1")]
    (record,) = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    assert record["study"] == str(study) and record["options"]["time"] == "01:30:00"
    assert record["run_args"] == ["--device", "cuda"]


def test_a_pretraining_asked_for_by_two_tasks_at_once_is_trained_once(tmp_path):
    sampler = spec_dict({"name": "flow", "model": "u1-equivariant", "hparams": {"n_layers": 2}, "batch_size": 8,
                         "n_samples": 32, "sample_batch": 32, "budget_steps": 0,
                         "pretrain": {"L": 4, "budget_steps": 40}})
    threads = [threading.Thread(target=run_tasks, args=([Task(entry, sampler, 0)], tmp_path),
                                kwargs={"log": lambda *_: None}) for entry in ("u1/beta2/L8", "u1/beta2/L16")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = read_rows(tmp_path)
    assert len(rows) == 2 and rows[0].training["pretrain"]["steps"] == 40
    assert rows[0].training["pretrain"] == rows[1].training["pretrain"]  # the second reused the first's


@pytest.mark.parametrize("name", ["slurm", "submitit-local"])
def test_executor_table_is_validated_with_the_study(tmp_path, name):
    from suite.errors import UsageError
    from suite.harness.study import load_study

    study = tmp_path / "study.toml"
    study.write_text(f'[executor]\nname = "{name}"\ntime = "00:10:00"\ncpus_per_task = 2\n' + FLOW)
    loaded = load_study(str(study))
    assert loaded.executor.name == name and loaded.executor.seconds == 600
    study.write_text(f'[executor]\nname = "{name}"\ncpus_per_task = 0\n' + FLOW)
    with pytest.raises(UsageError, match="cpus_per_task must be an integer >= 1"):
        load_study(str(study))


def test_the_command_line_completes_and_overrides_the_executor_table(tmp_path):
    from suite.harness.executors import executor_settings
    from suite.harness.study import load_study

    study = tmp_path / "study.toml"
    study.write_text('[executor]\nname = "slurm"\npartition = "gpu"\ngpus_per_task = 1\n' + FLOW)
    table = load_study(str(study)).executor
    settings = executor_settings(table, None, time="02:00:00", partition="debug")
    assert (settings.name, settings.partition, settings.gpus_per_task, settings.seconds) == ("slurm", "debug", 1, 7200)
    assert executor_settings(table, "local").cluster_options == {}  # what an array element runs with
