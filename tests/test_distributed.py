"""Under torchrun (`suite.distributed`), gloo on CPU, two processes: data-parallel flow training, HMC chains
split over the ranks, data-parallel training throughput."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suite.chain import Chain
from suite.cli import main
from suite.harness.rows import read_records
from suite.report.throughput import throughput_table

ROOT = Path(__file__).resolve().parents[1]
TASK = ["run", "--entry", "phi4/free/L8", "--sampler", "flow", "--model", "affine", "--hparams", '{"n_layers": 2}',
        "--batch-size", "16", "--budget-steps", "20", "--n-samples", "256", "--sample-batch", "64"]
TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def torchrun(*args, n=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]
    return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def training_csv(folder: Path) -> pd.DataFrame:
    (path,) = folder.glob("runs/*/training.csv")
    return pd.read_csv(path)


def test_two_processes_train_as_one(tmp_path, monkeypatch):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    assert main([*TASK, "--out", str(tmp_path / "one")]) == 0
    two = torchrun("-m", "suite.cli", *TASK, "--distributed", "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("phi4/free/L8 flow seed 0: ESS") == 1  # rank 0 alone prints
    a, b = training_csv(tmp_path / "one"), training_csv(tmp_path / "two")
    assert list(a["step"]) == list(b["step"]) == list(range(1, 21))
    # float32: the mean of the ranks' means against the mean of the whole batch, and what follows from it
    # (absolute too: per-sample terms are O(10), so a loss near zero carries ~1e-6 of float32 round-off)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-4)
    np.testing.assert_allclose(b["ess"], a["ess"], rtol=1e-4)
    rows = rows_of(tmp_path / "two")
    assert len(rows) == 1
    assert rows[0]["sampler_info"]["distributed"] == {"world_size": 2, "backend": "gloo", "noise": "sliced"}
    assert rows[0]["metrics"]["ess"]["n_samples"] == 256  # both ranks' samples, gathered
    assert rows[0]["run_id"] == json.loads((tmp_path / "one" / "results.jsonl").read_text())["run_id"]
    files = sorted(str(p.relative_to(tmp_path / "two")) for p in (tmp_path / "two").rglob("*") if p.is_file())
    run = f"runs/{rows[0]['run_id']}"
    assert [f for f in files if not f.startswith(".locks/")] == [
        "results.jsonl", *(f"{run}/{name}" for name in ("chains.npz", "checkpoint.pt", "model.pt", "row.json",
                                                         "training.csv"))]


def test_resume_after_a_signal_to_one_rank_is_bit_for_bit(tmp_path):
    """float64 through `train`: 2 processes equal 1 to round-off; a SIGTERM to rank 1 alone stops both
    ranks at the same step, and the resumed run's curve equals the uninterrupted one exactly."""
    out = tmp_path / "summary.json"
    done = torchrun(str(ROOT / "tests" / "distributed_worker.py"), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.read_text())
    single, straight, resumed = (np.array(summary[k]) for k in ("single", "straight", "resumed"))
    assert single.shape == straight.shape == (12, 5)
    np.testing.assert_allclose(straight, single, rtol=1e-12, atol=1e-12)
    assert summary["stopped"] == "SIGTERM" and summary["checkpoint_steps"] == 5
    assert np.array_equal(resumed, straight)


HMC_STUDY = """name = "hmc-split"
[[task]]
entries = ["phi4/free/L8", "u1/beta1/L8", "sun/su2-2d-beta2/L8", "on/o3-beta1.0/L8"]
sampler = { name = "hmc", chains = 4, n_therm = 12, n_traj = 5, measure_every = 2, n_steps = 4 }
seeds = [3]
"""


def untimed(record):
    """A row's part without its seconds (recursively)."""
    if isinstance(record, dict):
        return {k: untimed(v) for k, v in record.items() if "second" not in k}
    return record


def test_hmc_chains_split_over_two_ranks_are_one_process_chains(tmp_path, monkeypatch):
    """Flat, torus, SU(2) and sphere fields: the merged chains of 2 ranks equal 1 process's bit for bit."""
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    study = tmp_path / "hmc.toml"
    study.write_text(HMC_STUDY)
    assert main(["run", str(study), "--out", str(tmp_path / "one")]) == 0
    two = torchrun("-m", "suite.cli", "run", str(study), "--distributed", "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one_rows, two_rows = ({r["run_id"]: r for r in rows_of(tmp_path / k)} for k in ("one", "two"))
    assert len(two_rows) == 4 and two_rows.keys() == one_rows.keys()
    for run_id, row in two_rows.items():
        assert row["sampler_info"].pop("distributed") == {"world_size": 2, "backend": "gloo", "noise": "sliced"}
        assert row["sampler_info"] == one_rows[run_id]["sampler_info"]  # step size, n_steps, chains = 4
        for part in ("observables", "metrics"):  # the estimates and errors; seconds differ
            assert untimed(row[part]) == untimed(one_rows[run_id][part])
        a, b = (Chain.load(tmp_path / k / "runs" / run_id / "chains.npz") for k in ("one", "two"))
        assert a.accepted.shape == b.accepted.shape == (4, 10) and b.observables.keys() == a.observables.keys()
        assert np.array_equal(a.accepted, b.accepted) and np.array_equal(a.delta_h, b.delta_h)
        for name, values in a.observables.items():
            assert values.shape == (4, 5) and np.array_equal(values, b.observables[name]), (row["entry"], name)


def test_throughput_over_two_ranks_scales_against_one(tmp_path, monkeypatch):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    cell = ["throughput", "--out", str(tmp_path), "--sizes", "4", "--batch", "8", "--flows", "affine",
            "--objectives", "reverse-kl", "--repeats", "2", "--warmup", "1", "--min-seconds", "0"]
    assert main([*cell, "--workloads", "training"]) == 0
    two = torchrun("-m", "suite.cli", *cell, "--distributed")
    assert two.returncode == 0, two.stderr[-3000:]
    one, both = read_records(tmp_path, "throughput")
    assert (one["world_size"], one["backend"], both["world_size"], both["backend"]) == (1, None, 2, "gloo")
    assert both["workload"] == "training" and both["batch"] == 8 and both["steps_per_second"] > 0
    (line,) = [line for line in two.stdout.splitlines() if "speedup" in line]  # rank 0 alone prints
    assert line.startswith("training affine reverse-kl (2 ranks)") and "efficiency" in line
    table = throughput_table([one, both])
    speedup = both["steps_per_second"] / one["steps_per_second"]
    assert list(table["ranks"]) == [1, 2] and table["speedup"][1] == pytest.approx(speedup)
    assert table["efficiency"][1] == pytest.approx(speedup / 2) and pd.isna(table["efficiency"][0])


def test_distributed_without_torchrun_is_a_usage_error(tmp_path, monkeypatch, capsys):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    assert main([*TASK, "--distributed", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lftbench: error: --distributed needs the environment torchrun sets" in err


@pytest.mark.parametrize("args, message", [
    ([*TASK, "--batch-size", "15"], "the world size 2 must divide batch_size, got 15"),
    ([*TASK, "--n-samples", "255"], "the world size 2 must divide n_samples, got 255"),
    ([*TASK[:3], "--sampler", "hmc", "--chains", "15"], "the world size 2 must divide chains, got 15"),
    (["run", "--entry", "on/o3-beta1.0/L8", "--sampler", "cluster"], "sampler 'cluster'"),
])
def test_bad_distributed_runs_are_usage_errors(tmp_path, monkeypatch, capsys, args, message):
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main([*args, "--distributed", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_torchrun_without_distributed_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*TASK, "--out", str(tmp_path)]) == 2
    assert "started by torchrun with WORLD_SIZE=2: add --distributed" in capsys.readouterr().err
