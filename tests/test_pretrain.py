"""Pretraining a flow on a smaller lattice and transferring it (the ``pretrain`` sampler option)."""

import pytest
import torch

from suite.errors import UsageError
from suite.harness.rows import read_rows
from suite.harness.runner import run_tasks, task_key
from suite.samplers import spec_dict
from suite.harness.study import Task

SPEC = {"name": "flow-mh", "model": "u1-equivariant", "hparams": {"n_layers": 2}, "batch_size": 8,
        "n_samples": 64, "sample_batch": 32, "pretrain": {"L": 4, "budget_steps": 6}}


def _run(tmp_path, entries, **spec):
    sampler = spec_dict({**SPEC, **spec})
    run_tasks([Task(e, sampler, 0) for e in entries], tmp_path, log=lambda *_: None)
    return read_rows(tmp_path)


def test_the_pretrained_flow_is_shared_and_used_as_is_on_a_larger_lattice(tmp_path):
    rows = _run(tmp_path, ["u1/beta2/L8", "u1/beta2/L16"], budget_steps=0)
    folders = list((tmp_path / "pretrain").iterdir())
    assert len(folders) == 1  # one pretraining for both lattices
    pretrained = torch.load(folders[0] / "model.pt", weights_only=True)
    for row in rows:
        used = torch.load(tmp_path / row.artifacts["model"], weights_only=True)
        assert used.keys() == pretrained.keys()
        assert all(torch.equal(used[k], pretrained[k]) for k in used)
        training = row.training
        assert training["steps"] == 0 and training["pretrain"]["steps"] == 6 and training["pretrain"]["L"] == 4
        assert training["seconds"] == training["pretrain"]["seconds"] > 0
        assert "training" not in row.artifacts  # no steps on the entry's lattice, no curve
    assert rows[0].training["pretrain"] == rows[1].training["pretrain"]  # reused, not trained again


def test_training_on_after_pretraining_moves_the_parameters_and_counts_both_costs(tmp_path):
    rows = _run(tmp_path, ["u1/beta2/L8"], budget_steps=3)
    (folder,) = (tmp_path / "pretrain").iterdir()
    pretrained = torch.load(folder / "model.pt", weights_only=True)
    trained = torch.load(tmp_path / rows[0].artifacts["model"], weights_only=True)
    assert any(not torch.equal(trained[k], pretrained[k]) for k in trained)
    training = rows[0].training
    assert training["steps"] == 3
    assert training["seconds"] > training["pretrain"]["seconds"] > 0
    assert training["evaluations"] > training["pretrain"]["evaluations"] > 0


def test_pretraining_keeps_the_keys_of_runs_without_it():
    spec = spec_dict({"name": "flow", "budget_steps": 5})
    without = {k: v for k, v in spec.items() if k != "pretrain"}
    assert task_key(Task("phi4/aks2019/L8", spec, 0), "float32", "cpu") == \
        task_key(Task("phi4/aks2019/L8", without, 0), "float32", "cpu")
    assert task_key(Task("phi4/aks2019/L8", spec, 0), "float32", "cpu") != \
        task_key(Task("phi4/aks2019/L8", {**spec, "pretrain": {"L": 4, "budget_steps": 2}}, 0), "float32", "cpu")


@pytest.mark.parametrize("pretrain, message", [
    ({"L": 4}, "budget_steps"),
    ({"L": 1, "budget_steps": 3}, "'L' must be >= 2"),
    ({"L": 4, "budget_steps": 3, "lr": 0.1}, "no option 'lr'"),
])
def test_bad_pretrain_options_are_one_line_errors(pretrain, message):
    with pytest.raises(UsageError, match=message):
        spec_dict({**SPEC, "pretrain": pretrain})


def test_a_flow_without_any_budget_is_refused():
    with pytest.raises(UsageError, match="needs a training budget"):
        spec_dict({"name": "flow", "budget_steps": 0})


def test_a_model_whose_parameters_depend_on_the_lattice_cannot_be_pretrained(tmp_path):
    with pytest.raises(UsageError, match="depends on the lattice size"):
        _run(tmp_path, ["phi4/aks2019/L8"], name="flow", model="cnf-equivariant", hparams={}, budget_steps=0)


def test_the_equivariant_continuous_flow_with_a_finite_kernel_range_transfers(tmp_path):
    rows = _run(tmp_path, ["phi4/aks2019/L8"], name="flow", model="cnf-equivariant",
                hparams={"n_freq": 2, "n_time": 3, "n_steps": 2, "radius": 2}, budget_steps=0)
    (folder,) = (tmp_path / "pretrain").iterdir()
    pretrained = torch.load(folder / "model.pt", weights_only=True)
    assert pretrained["transform.velocity.weight"].abs().sum() > 0  # trained at L = 4, used as is at L = 8
    assert rows[0].ok and rows[0].training["pretrain"]["steps"] == 6 and 0 < rows[0].metrics["ess"]["value"] <= 1
