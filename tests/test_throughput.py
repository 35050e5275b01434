"""`lftbench throughput`: rows written, read by the report, memory guard, one-line errors."""

import pytest
import torch

from suite import throughput
from suite.cli import main
from suite.harness.rows import read_records
from suite.report import build_report
from suite.report.throughput import label, scaling

TINY = ["--sizes", "4", "8", "--batch", "4", "--repeats", "1", "--warmup", "1", "--min-seconds", "0",
        "--flows", "affine", "--objectives", "reverse-kl"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("throughput")
    assert main(["throughput", "--out", str(out), *TINY]) == 0
    return out, read_records(out, "throughput")


def test_rows_are_sensible(rows):
    _, found = rows
    assert [(r["workload"], r["L"]) for r in found] == [("hmc", 4), ("hmc", 8), ("sampling", 4), ("sampling", 8),
                                                        ("training", 4), ("training", 8)]
    for r in found:
        assert r["kind"] == "throughput" and r["status"] == "ok" and r["device"] == "cpu"
        assert r["seconds_per_call"] > 0 and r["repeats"] == 1 and r["calls_per_repeat"] >= 1
        assert r["configs_per_second"] == pytest.approx(4 / r["seconds_per_call"])
        assert r["site_updates_per_second"] == pytest.approx(r["configs_per_second"] * r["volume"])
        assert r["volume"] == r["L"] ** 2 and r["device_name"] and r["provenance"]["torch_threads"] >= 1
        assert (r["steps_per_second"] is not None) == (r["workload"] == "training")
        assert (r["saved_tensor_bytes"] or 0) > 0 if r["workload"] == "training" else r["saved_tensor_bytes"] is None
        assert r["peak_memory_bytes"] is None and r["max_rss_bytes"] > 0  # CPU
    assert {r["dtype"] for r in found if r["workload"] == "hmc"} == {"float64"}
    assert {r["dtype"] for r in found if r["workload"] != "hmc"} == {"float32"}
    assert len({r["run_id"] for r in found}) == len(found)


def test_report_draws_throughput(rows, tmp_path):
    folder, _ = rows
    report = build_report([folder], tmp_path / "report").read_text()
    assert "## Throughput against volume" in report
    assert (tmp_path / "report" / "figures" / "throughput-0.png").stat().st_size > 0
    csv = (tmp_path / "report" / "throughput.csv").read_text().splitlines()
    assert len(csv) == 1 + 6 and "training affine reverse-kl" in report


def test_training_size_beyond_free_memory_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(throughput, "free_memory_bytes", lambda device: 1)
    settings = throughput.Settings(sizes=(4, 8), batch=4, workloads=("training",), flows=("affine",),
                                   objectives=("reverse-kl",), warmup=1, repeats=1, min_seconds=0)
    found = throughput.run_throughput(settings, tmp_path, log=lambda line: None)
    assert found[0]["status"] == "ok"  # the smallest size is always measured: it calibrates the projection
    assert found[1]["status"].startswith("skipped: needs about") and "configs_per_second" not in found[1]


@pytest.mark.parametrize("args,message", [
    (["--device", "cuda"], "no CUDA device is available"),
    (["--sizes", "5"], "sizes must be even"),
    (["--flows", "glow"], "flows must be some of"),
    (["--batch", "1"], "need batch >= 2"),
])
def test_bad_input_gives_one_line_error(tmp_path, capsys, args, message):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    assert main(["throughput", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results.jsonl").exists()


def test_opt_in_workloads_give_rows(tmp_path):
    settings = throughput.Settings(sizes=(4,), batch=2, workloads=("hmc", "hmc-uncarried", "hmc-unblocked", "hmc-unfused", "hmc-plain", "forward"),
                                   flows=("affine",), warmup=1, repeats=2, min_seconds=0)
    found = throughput.run_throughput(settings, tmp_path, log=lambda line: None)
    assert [r["workload"] for r in found] == ["hmc", "hmc-uncarried", "hmc-unblocked", "hmc-unfused", "hmc-plain", "forward"]
    assert read_records(tmp_path, "throughput") == found
    for r in found:
        assert r["status"] == "ok" and r["seconds_per_call"] > 0 and r["configs_per_second"] > 0
        assert r["batch"] == 2 and r["compile"] is False and r["repeats"] == 2
        assert r["background_cpus"] is None or r["background_cpus"] >= 0
    hmc_rows, forward = found[:5], found[5]
    assert all(0 <= r["acceptance"] <= 1 and r["dtype"] == "float64" for r in hmc_rows)
    assert forward["flow"] == "affine" and forward["parameters"] > 0 and forward["dtype"] == "float32"


def test_sun_hmc_rows_are_4d_su3(tmp_path):
    settings = throughput.Settings(sizes=(4,), batch=1, max_sites=300, workloads=("hmc-sun",), warmup=1, repeats=1,
                                   min_seconds=0)
    (row,) = throughput.run_throughput(settings, tmp_path, log=lambda line: None)
    assert row["workload"] == "hmc-sun" and row["status"] == "ok" and row["theory"] == "sun"
    assert row["params"] == {"convention": "wilson", "N": 3, "beta": 6.0}
    assert row["lattice"] == [4, 4, 4, 4] and row["volume"] == 256 and row["batch"] == 1
    assert row["site_updates_per_second"] == pytest.approx(256 * row["configs_per_second"])
    assert 0 <= row["acceptance"] <= 1 and row["dtype"] == "float64"
    assert throughput.Settings(workloads=("hmc-sun",)).lattice_sizes("hmc-sun") == throughput.SUN_SIZES["cpu"]


def test_max_sites_caps_the_batch_and_one_chain_is_hmc_only(tmp_path):
    settings = throughput.Settings(sizes=(4, 8), batch=16, max_sites=128, workloads=("sampling",), flows=("affine",),
                                   warmup=1, repeats=1, min_seconds=0)
    found = throughput.run_throughput(settings, tmp_path, log=lambda line: None)
    assert [(r["L"], r["batch"]) for r in found] == [(4, 8), (8, 2)]
    assert all(r["configs_per_second"] == pytest.approx(r["batch"] / r["seconds_per_call"]) for r in found)
    throughput.Settings(batch=1, workloads=("hmc", "hmc-plain"))
    with pytest.raises(ValueError, match="need batch >= 2"):
        throughput.Settings(batch=1, workloads=("hmc", "sampling"))


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hmc_benchmark_script_compares_implementations(tmp_path, capsys):
    rows = _script("hmc_throughput").main(["--sizes", "4", "--chains", "1", "2", "--impls", "batched", "uncarried",
                                           "plain", "--repeats", "1", "--warmup", "1", "--target-seconds", "0",
                                           "--markdown", "--out", str(tmp_path)])
    assert [(r["workload"], r["batch"]) for r in rows] == [("hmc", 1), ("hmc-uncarried", 1), ("hmc-plain", 1),
                                                           ("hmc", 2), ("hmc-uncarried", 2), ("hmc-plain", 2)]
    assert all(r["status"] == "ok" and r["seconds_per_call"] > 0 for r in rows) and len(read_records(tmp_path, "throughput")) == 6
    printed = capsys.readouterr().out
    assert "| batched/plain | uncarried/plain |" in printed and printed.count("| plain | 4 |") == 2


def test_flow_benchmark_script_gives_one_line_per_flow_and_size(tmp_path, capsys):
    rows = _script("flow_throughput").main(["--sizes", "4", "--flows", "affine", "--parts", "sample", "forward",
                                            "train", "--repeats", "1", "--train-repeats", "1", "--target-seconds",
                                            "0", "--max-batch", "4", "--train-batch", "2", "--out", str(tmp_path)])
    assert [(r["workload"], r["objective"], r["batch"]) for r in rows] == [
        ("sampling", None, 4), ("forward", None, 4), ("training", "reverse-kl", 2), ("training", "path-gradient", 2)]
    assert all(r["status"] == "ok" and r["seconds_per_call"] > 0 and r["parameters"] > 0 for r in rows)
    assert all(r["saved_tensor_bytes"] > 0 for r in rows if r["workload"] == "training")
    table = [line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("affine")]
    assert len(table) == 1 and "12960" in table[0]


def test_cli_takes_the_opt_in_workloads_and_max_sites(tmp_path):
    assert main(["throughput", "--out", str(tmp_path), "--sizes", "4", "--batch", "8", "--max-sites", "32",
                 "--workloads", "hmc-plain", "--repeats", "1", "--warmup", "1", "--min-seconds", "0"]) == 0
    (row,) = read_records(tmp_path, "throughput")
    assert row["workload"] == "hmc-plain" and row["batch"] == 2 and row["seconds_per_call"] > 0


def test_scaling_is_against_the_latest_one_rank_row_of_the_same_cell():
    cell = {"workload": "training", "flow": "affine", "objective": "reverse-kl", "L": 8, "batch": 64, "device": "cpu",
            "device_name": "x", "dtype": "float32", "compile": False, "status": "ok"}
    old = {**cell, "run_id": "a", "created": "1", "steps_per_second": 5.0}  # no world_size: one rank
    new = {**cell, "run_id": "b", "created": "2", "steps_per_second": 10.0, "world_size": 1}
    other = {**cell, "run_id": "c", "created": "3", "steps_per_second": 1.0, "batch": 32}
    two = {**cell, "run_id": "d", "created": "4", "steps_per_second": 15.0, "world_size": 2}
    assert scaling(two, [old, new, other, two]) == {"steps_per_second": 15.0, "baseline_steps_per_second": 10.0,
                                                   "baseline": "b", "speedup": 1.5, "efficiency": 0.75}
    assert scaling(two, [other, two]) is None and scaling(new, [old, new, two]) is None
    assert label(two) == "training affine reverse-kl (2 ranks)" and label(new) == "training affine reverse-kl"


@pytest.mark.parametrize("torchrun, args, message", [
    (False, [], "--distributed needs the environment torchrun sets"),
    (True, ["--workloads", "hmc"], "--distributed times data-parallel flow training: --workloads training, got hmc"),
    (True, ["--batch", "7"], "the world size 2 must divide the batch, got 7 at L = 4"),
])
def test_bad_distributed_throughput_is_a_usage_error(tmp_path, monkeypatch, capsys, torchrun, args, message):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    if torchrun:  # as torchrun sets them; the checks come before joining the other ranks
        for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": "1"}.items():
            monkeypatch.setenv(name, value)
    assert main(["throughput", "--out", str(tmp_path), "--sizes", "4", *args, "--distributed"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_unfused_baseline_is_the_same_phi4():
    """The ``hmc-unfused`` baseline's stencil gives φ⁴'s action, force and kick."""
    generator = torch.Generator().manual_seed(2)
    x, p = torch.randn(3, 6, 6, generator=generator, dtype=torch.float64), torch.randn(3, 6, 6, generator=generator,
                                                                                      dtype=torch.float64)
    fused, baseline = throughput.phi4(6), throughput.phi4(6, fused=False)
    assert isinstance(baseline, throughput.RollStencilPhi4)
    torch.testing.assert_close(baseline.action(x), fused.action(x), rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(baseline.force(x), fused.force(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(baseline.kick(x, p.clone(), 0.2), fused.kick(x, p.clone(), 0.2), rtol=1e-13, atol=1e-13)
