"""The quality-against-parameters section: groups by entry and budget, needs three sizes, marks k̂ ≥ 0.7."""

import pandas as pd

from conftest import markdown_tables, result_row

from suite.report.complexity import complexity_section


def flow_row(model, n_parameters, ess, pareto_k, *, entry="phi4/aks2019/L8", steps=1000):
    sampler = {"name": "flow", "model": model, "hparams": {"n_layers": n_parameters // 100},
               "budget_steps": steps, "batch_size": 64, "budget_seconds": 0.0, "pretrain": None}
    return result_row(run_id=f"{model}-{n_parameters}-{steps}", entry=entry, sampler=sampler,
                      training={"n_parameters": n_parameters, "cpu_seconds": 60.0, "steps": steps},
                      metrics={"ess": {"value": ess, "error": 0.01, "pareto_k": pareto_k}})


def test_one_figure_and_table_per_entry_and_budget(tmp_path):
    rows = [flow_row("affine", 3200, 0.20, 0.5), flow_row("affine", 6400, 0.35, 0.4),
            flow_row("spline", 4600, 0.05, 0.9), flow_row("spline", 9300, 0.30, 0.6),
            flow_row("affine", 12800, 0.45, 0.3, steps=2000),  # another budget: its own group, too small
            flow_row("affine", 9000, 0.5, 0.3, entry="u1/beta2/L8"),  # another entry, one size
            result_row(run_id="hmc", entry="phi4/aks2019/L8", sampler={"name": "hmc"})]
    (tmp_path / "figures").mkdir()  # as `build_report` makes it
    lines = complexity_section(rows, tmp_path)
    tables = markdown_tables(lines)
    assert list(tables) == ["## Quality against parameters: phi4/aks2019/L8"]
    table = tables["## Quality against parameters: phi4/aks2019/L8"]
    assert table["model"].tolist() == ["affine", "affine", "spline", "spline"]
    assert table["parameters"].tolist() == ["3200", "6400", "4600", "9300"]
    assert table["ESS"].tolist()[2] == "0.050(10)" and table["pareto_k"].tolist()[2] == "0.9"
    assert "1000 steps, batch 64" in "\n".join(lines)
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert len(figures) == 2 and figures[0].startswith("complexity-phi4_aks2019_L8-")  # PNG and PDF
    csv = next((tmp_path / "tables").glob("*.csv"))
    assert len(pd.read_csv(csv)) == 4


def test_fewer_than_three_sizes_give_no_section(tmp_path):
    rows = [flow_row("affine", 3200, 0.20, 0.5), flow_row("spline", 3200, 0.3, 0.5), flow_row("affine", 6400, 0.3, 0.5)]
    assert complexity_section(rows, tmp_path) == []
