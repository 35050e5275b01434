"""Result rows: schema-1 folders (the committed reports) load; writes are complete or absent, and unique."""

import json
from pathlib import Path

import pytest

from conftest import result_row
from suite.harness import rows as rowio
from suite.harness.rows import RESULTS_FILE, SCHEMA_VERSION, ResultRow, read_rows, write_row

REPORTS = Path(__file__).resolve().parents[1] / "reports"
COMMITTED = sorted(REPORTS.glob("*/results.jsonl"))
SCHEMA_1 = Path(__file__).resolve().parent / "data" / "schema1" / RESULTS_FILE  # two rows of an old topology report


def _load_every_row(path: Path) -> list:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    skipped = []
    rows = read_rows(path.parent, on_skip=lambda *args: skipped.append(args))
    assert not skipped and len(rows) == len(lines)
    for row in rows:
        assert row.schema_version == SCHEMA_VERSION and row.ok and row.folder == path.parent
        assert row.plugin.name == row.sampler["name"]
        if row.sampler.get("pretrain"):  # the path the harness stored the pretraining under, recorded
            assert row.artifacts["pretrain_training"].startswith("pretrain/")
    return rows


@pytest.mark.parametrize("path", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_results_load(path):
    _load_every_row(path)


def test_schema_1_rows_are_upgraded_on_reading():
    lines = [json.loads(line) for line in SCHEMA_1.read_text().splitlines() if line.strip()]
    assert all("schema_version" not in line for line in lines)  # written before typed rows
    rows = _load_every_row(SCHEMA_1)
    assert {row.sampler["name"] for row in rows} == {"hmc", "flow-mh"} and any(r.sampler.get("pretrain") for r in rows)


def test_a_row_round_trips_and_a_rewrite_replaces_it(tmp_path):
    row = result_row(run_id="a", observables={"x": {"value": float("nan"), "error": float("-inf")}})
    write_row(tmp_path, row)
    write_row(tmp_path, result_row(run_id="b"))
    with open(tmp_path / RESULTS_FILE, "a") as f:
        f.write('{"run_id": "torn')  # a crash mid-write
    write_row(tmp_path, result_row(run_id="a", seed=7))  # replaces row a; the torn line is not a row
    found = {r.run_id: r for r in read_rows(tmp_path, on_skip=None)}
    assert set(found) == {"a", "b"} and found["a"].seed == 7
    write_row(tmp_path, row)
    back = {r.run_id: r for r in read_rows(tmp_path, on_skip=None)}["a"]
    assert back.observables["x"]["error"] == float("-inf") and back.observables["x"]["value"] != 0


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    write_row(tmp_path, result_row(run_id="a"))
    before = (tmp_path / RESULTS_FILE).read_bytes()
    monkeypatch.setattr(rowio.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(rowio.RowWriteError, match="No space left on device"):
        write_row(tmp_path, result_row(run_id="b"))
    monkeypatch.undo()
    assert (tmp_path / RESULTS_FILE).read_bytes() == before
    assert not (tmp_path / "runs" / "b" / "row.json").exists()
    real_write = rowio.os.write
    monkeypatch.setattr(rowio.os, "write", lambda fd, data: real_write(fd, data[:3]))  # the index's append fails
    with pytest.raises(rowio.RowWriteError, match="only 3 of"):
        write_row(tmp_path, result_row(run_id="b"))
    monkeypatch.undo()
    assert (tmp_path / RESULTS_FILE).read_bytes() == before and not (tmp_path / "runs" / "b" / "row.json").exists()
    assert [r.run_id for r in read_rows(tmp_path)] == ["a"]


def test_rows_from_many_hosts_are_read_from_their_run_folders_when_the_index_lost_them(tmp_path, capsys):
    """results.jsonl is the merged index, runs/<run_id>/row.json the record (what NFS keeps atomic)."""
    for run_id in ("a", "b", "c"):
        write_row(tmp_path, result_row(run_id=run_id, seed=1))
    assert all((tmp_path / "runs" / k / "row.json").is_file() for k in "abc")
    lines = (tmp_path / RESULTS_FILE).read_text().splitlines()
    (tmp_path / RESULTS_FILE).write_text(lines[0] + "\n" + lines[1][:40] + lines[2][30:] + "\n")  # torn by two hosts
    found = read_rows(tmp_path)
    assert [r.run_id for r in found] == ["a", "b", "c"] and "line 2: not valid JSON" in capsys.readouterr().err
    rowio._replace_file(tmp_path / "runs" / "a" / "row.json", rowio.encode(result_row(run_id="a", seed=5).to_dict()))
    assert read_rows(tmp_path)[0].seed == 5  # the run folder's copy wins
    (tmp_path / "runs" / "c" / "row.json").write_text(rowio.encode(result_row(run_id="x").to_dict()))
    assert [r.run_id for r in read_rows(tmp_path)] == ["a", "b"] and "not of its folder" in capsys.readouterr().err
    assert rowio.done_run_ids(tmp_path) == {"a", "b"}


@pytest.mark.parametrize("line, reason", [
    ("{}", "no 'run_id'"), ("null", "NoneType"), ("[1, 2]", "list"), ('{"run_id": "x"}', "no 'entry'"),
    ('{"run_id": "x", "entry": "e", "theory": "t", "lattice": [2], "sampler": 3, "seed": 0, "device": "cpu", '
     '"dtype": "float64"}', "no name"),
    ('{"schema_version": 9, "run_id": "x"}', "schema_version 9"),
])
def test_lines_that_are_not_rows_are_named(tmp_path, line, reason):
    write_row(tmp_path, result_row(run_id="a"))
    with open(tmp_path / RESULTS_FILE, "a") as f:
        f.write(line + "\n")
    skipped = []
    assert [r.run_id for r in read_rows(tmp_path, on_skip=lambda *a: skipped.append(a))] == ["a"]
    ((_, number, why),) = skipped
    assert number == 2 and reason in why


def test_from_dict_refuses_what_is_not_a_row():
    with pytest.raises(ValueError):
        ResultRow.from_dict({"run_id": "x"})
