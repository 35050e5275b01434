"""The leaderboard of `lftbench compare` on hand-made result rows with known numbers."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from suite.cli import main
from suite.compare import leaderboard
from suite.metrics import time_to_target
from conftest import result_row
from suite.harness.rows import encode


def hmc_row(entry="phi4/xi2/L8", tau=5.0, seconds_per_config=1e-3):
    est = {"value": 1.0, "error": 0.01, "tau_int": tau, "tau_int_error": 0.1 * tau,
           "seconds_per_independent_sample": seconds_per_config * 2 * tau}
    return result_row(run_id=f"hmc-{entry}", entry=entry, theory="phi4", sampler={"name": "hmc"}, seed=0,
                      metrics={"acceptance": 0.8}, observables={"chi2": est}, training=None, artifacts={})


def flow_row(folder, model="hybrid", entry="phi4/xi2/L8", ess=0.2, seed=0, train_seconds=100.0,
             seconds_per_sample=1e-4, reach_step=None):
    steps = np.arange(1, 1001)
    batch_ess = np.full(1000, 0.05)
    if reach_step is not None:
        batch_ess[reach_step - 1:] = 0.8
    run_id = f"flow-{model}-{entry.replace('/', '_')}-{seed}"
    (folder / "runs" / run_id).mkdir(parents=True)
    pd.DataFrame({"step": steps, "loss": 0.0, "ess": batch_ess, "seconds": steps * 0.1}).to_csv(
        folder / "runs" / run_id / "training.csv", index=False)
    est = {"value": 1.0, "error": 0.01, "tau_int": 0.5, "tau_int_error": 0.0,
           "seconds_per_independent_sample": seconds_per_sample / ess}
    return result_row(run_id=run_id, entry=entry, theory="phi4",
                      sampler={"name": "flow", "model": model, "objective": "reverse-kl"}, seed=seed,
                      metrics={"ess": {"value": ess, "error": 0.1 * ess, "n_samples": 16384}},
                      observables={"chi2": est}, training={"steps": 1000, "seconds": train_seconds},
                      artifacts={"training": f"runs/{run_id}/training.csv"}, folder=folder)


def test_time_to_target_finds_the_crossing():
    log = pd.DataFrame({"step": np.arange(1, 401), "seconds": np.arange(1, 401) * 0.5,
                        "ess": np.where(np.arange(1, 401) >= 200, 0.9, 0.1)})
    crossing = time_to_target(log, 0.5)
    assert crossing["reached"]
    # The running mean over 20 steps passes 0.5 half-way into the jump.
    assert 200 <= crossing["steps"] <= 220 and crossing["seconds"] == pytest.approx(crossing["steps"] * 0.5)
    assert not time_to_target(log, 0.95)["reached"]


def test_leaderboard_costs_ratios_and_break_even(tmp_path):
    rows = [hmc_row(tau=5.0), flow_row(tmp_path, "hybrid", ess=0.2, reach_step=300),
            flow_row(tmp_path, "mine.py:build", ess=0.01, train_seconds=10.0)]
    board = leaderboard(rows, target_ess=0.5, n_independent=1000)
    by = board.set_index("contender")
    assert by.loc["hmc", "ess"] == pytest.approx(0.1) and by.loc["hmc", "vs_hmc"] == 1
    hmc_cost = 1e-3 * 2 * 5.0
    flow_cost = 1e-4 / 0.2
    assert by.loc["hybrid", "cost"] == pytest.approx(flow_cost)
    assert by.loc["hybrid", "cost_amortised"] == pytest.approx(100.0 / 1000 + flow_cost)
    assert by.loc["hybrid", "vs_hmc"] == pytest.approx((100.0 / 1000 + flow_cost) / hmc_cost)
    assert by.loc["hybrid", "break_even_n"] == pytest.approx(100.0 / (hmc_cost - flow_cost))
    assert 300 <= by.loc["hybrid", "steps_to_target"] <= 360
    assert math.isnan(by.loc["mine.py:build", "steps_to_target"])      # never reached 0.5
    assert by.loc["hybrid", "reference"] and not by.loc["mine.py:build", "reference"]
    assert by.loc["hybrid", "vs_best_reference_flow"] == 1
    assert by.loc["mine.py:build", "vs_best_reference_flow"] == pytest.approx(
        by.loc["mine.py:build", "cost_amortised"] / by.loc["hybrid", "cost_amortised"])
    assert list(board.contender) == sorted(board.contender, key=lambda c: by.loc[c, "cost_amortised"])


def test_seeds_are_pooled_with_their_spread(tmp_path):
    rows = [flow_row(tmp_path, ess=0.2, seed=0), flow_row(tmp_path, ess=0.3, seed=1)]
    board = leaderboard(rows)
    assert len(board) == 1 and board.runs[0] == 2
    assert board.ess[0] == pytest.approx(0.25)
    assert board.ess_error[0] >= 0.05 / math.sqrt(2)  # at least the seed-to-seed spread


def test_compare_cli_reads_folders_and_prints_every_format(tmp_path, capsys):
    rows = [hmc_row(), flow_row(tmp_path, "affine"), flow_row(tmp_path, "spline")]
    (tmp_path / "results.jsonl").write_text("".join(encode(r.to_dict()) for r in rows))
    assert main(["compare", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "### phi4/xi2/L8" in text and "| hmc |" in text and "break-even N" in text
    assert main(["compare", str(tmp_path), "--format", "json"]) == 0
    assert {r["contender"] for r in json.loads(capsys.readouterr().out)} == {"hmc", "affine", "spline"}
    assert main(["compare", str(tmp_path), "--target-ess", "2"]) == 2
    assert "target-ess" in capsys.readouterr().err


def test_recipes_of_one_model_are_not_pooled_as_seeds(tmp_path):
    short, long = flow_row(tmp_path, ess=0.1, seed=0), flow_row(tmp_path, ess=0.4, seed=1)
    short.sampler.update(budget_steps=1000, batch_size=64)
    long.sampler.update(budget_steps=0, batch_size=128, pretrain={"L": 4, "budget_steps": 6000})
    board = leaderboard([short, long, hmc_row()])
    flows = board[board.contender != "hmc"].set_index("contender")
    assert set(flows.index) == {"hybrid [1000 steps × batch 64]",
                                "hybrid [6000 steps at L = 4, used as is, batch 128]"}
    assert (flows.runs == 1).all()
    assert flows.ess["hybrid [1000 steps × batch 64]"] == pytest.approx(0.1)


def test_the_best_reference_flow_is_a_trained_flow_not_another_reference_sampler(tmp_path):
    est = {"value": 1.0, "error": 0.01, "tau_int": 0.5, "tau_int_error": 0.0, "seconds_per_independent_sample": 1e-6}
    ais = result_row(run_id="ais", entry="phi4/xi2/L8", sampler={"name": "ais"}, observables={"chi2": est},
                     metrics={"ess": {"value": 0.5, "error": 0.05, "n_samples": 4096}})
    board = leaderboard([ais, flow_row(tmp_path, "hybrid", ess=0.2), hmc_row()]).set_index("contender")
    assert board.loc["hybrid", "vs_best_reference_flow"] == 1  # the cheaper AIS does not set the scale
    assert board.loc["ais", "reference"] and board.loc["ais", "vs_best_reference_flow"] < 1


def test_protocol_metrics_and_ranking_by_them(tmp_path, capsys):
    """log Z error against the exact log Z, forward ESS, EUBO, mode-coverage p and evaluations per
    independent sample are pooled per contender, and --rank-by orders each entry by them."""
    good, bad = flow_row(tmp_path, "affine", ess=0.1), flow_row(tmp_path, "spline", ess=0.4)
    for row, log_z, forward, p in ((good, 10.02, 0.3, 0.5), (bad, 9.5, 0.01, 1e-8)):
        row.metrics.update(log_z={"value": log_z, "error": 0.01}, forward_ess={"value": forward, "error": 0.01},
                           eubo={"value": 10 + 1 / forward, "error": 0.1},
                           mode_coverage={"unweighted": {"p_value": 0.9}, "reweighted": {"p_value": p}})
        row.reference = {"log_z": {"value": 10.0, "error": 0.0, "provenance": "exact", "pull": 0.0}}
        row.sampler_info = {"evaluations_per_sample": 1}
    by_cost = leaderboard([good, bad, hmc_row()]).set_index("contender")
    assert by_cost.loc["affine", "log_z_error"] == pytest.approx(0.02)
    assert by_cost.loc["spline", "log_z_error"] == pytest.approx(0.5)
    assert by_cost.loc["spline", "evaluations_per_independent_sample"] == pytest.approx(2.5)
    assert by_cost.loc["affine", "modes_p"] == 0.5 and math.isnan(by_cost.loc["hmc", "modes_p"])
    assert list(leaderboard([good, bad, hmc_row()], rank_by="ess").contender)[:2] == ["spline", "affine"]
    for rank_by in ("forward-ess", "log-z-error", "eubo", "modes"):
        assert list(leaderboard([good, bad, hmc_row()], rank_by=rank_by).contender)[:2] == ["affine", "spline"]
    (tmp_path / "results.jsonl").write_text("".join(encode(r.to_dict()) for r in (good, bad)))
    assert main(["compare", str(tmp_path), "--rank-by", "forward-ess"]) == 0
    assert "forward ESS" in capsys.readouterr().out
    assert main(["compare", str(tmp_path), "--rank-by", "speed"]) == 2
    assert "--rank-by must be one of" in capsys.readouterr().err


def test_evaluations_amortise_the_training(tmp_path):
    """The training's action + force evaluations are spread over N independent samples; with a cheap
    training the flow that is worse per sample can rank first."""
    cheap, costly = flow_row(tmp_path, "affine", ess=0.1), flow_row(tmp_path, "spline", ess=0.4)
    for row, evaluations in ((cheap, 1000), (costly, 10**6)):
        row.sampler_info = {"evaluations_per_sample": 1}
        row.training["evaluations"] = evaluations
    board = leaderboard([cheap, costly], n_independent=1000, rank_by="evaluations-amortised").set_index("contender")
    assert board.loc["affine", "evaluations_amortised"] == pytest.approx(1 / 0.1 + 1000 / 1000)
    assert board.loc["spline", "evaluations_amortised"] == pytest.approx(1 / 0.4 + 10**6 / 1000)
    assert list(board.index) == ["affine", "spline"]
