"""`lftbench throughput`: rows written, read by the report, memory guard, one-line errors."""

import pytest
import torch

from suite import throughput
from suite.cli import main
from suite.harness.rows import read_records
from suite.report import build_report

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
