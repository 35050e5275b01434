"""The scaling section of a report on synthetic rows with known laws: the fitted z and ESS law come
back, and every figure and table is written in each format."""

import numpy as np
import pandas as pd

from conftest import result_row
from suite.report.scaling import scaling_section

XI = {"phi4/xi2/L8": 2.0, "phi4/xi3/L12": 3.0, "phi4/xi4/L16": 4.0}
VOLUME_LINE = {"phi4/xi4-volume/L8": 8, "phi4/xi4-volume/L12": 12, "phi4/xi4/L16": 16, "phi4/xi4-volume/L24": 24}


def row(entry, lattice, sampler, folder, *, tau=0.5, ess=None, reach_step=None, xi=None):
    observables = {name: {"value": 1.0, "error": 0.01, "tau_int": tau, "tau_int_error": 0.05 * tau,
                          "seconds_per_independent_sample": 1e-3 * 2 * tau if ess is None else 1e-4 / ess}
                   for name in ("chi2", "abs_mag")}
    out = {"run_id": f"{entry}-{sampler}", "entry": entry, "theory": "phi4", "lattice": [lattice, lattice],
           "volume": lattice**2, "seed": 0, "device_name": "test CPU", "artifacts": {},
           "observables": observables, "metrics": {}, "training": None,
           "reference": {"xi2nd": {"value": xi, "error": 0.01}} if xi else {},
           "sampler": {"name": "hmc"} if sampler == "hmc" else
           {"name": "flow", "model": "hybrid", "objective": "reverse-kl", "budget_steps": 1000, "batch_size": 64}}
    if sampler == "flow":
        out["metrics"]["ess"] = {"value": ess, "error": 0.03 * ess, "n_samples": 16384}
        out["training"] = {"steps": 1000, "seconds": 50.0}
        path = folder / f"{entry.replace('/', '_')}.csv"
        steps = np.arange(1, 1001)
        pd.DataFrame({"step": steps, "seconds": 0.05 * steps, "loss": 0.0,
                      "ess": np.where(steps >= reach_step, 0.5, 0.01)}).to_csv(path, index=False)
        out["artifacts"]["training"] = path.name
    return result_row(folder, **out)


def test_scaling_section_fits_and_writes_every_format(tmp_path):
    rng = np.random.default_rng(0)
    rows = [row(e, int(e.rsplit("L", 1)[1]), "hmc", tmp_path, tau=1.5 * xi**2 * (1 + 0.05 * rng.normal()), xi=xi)
            for e, xi in XI.items()]
    rows += [row(e, L, "flow", tmp_path, ess=0.9 ** (L * L / 64) * (1 + 0.03 * rng.normal()), reach_step=10 * L,
                 xi=XI.get(e, 4.0)) for e, L in VOLUME_LINE.items()]
    rows += [row(e, int(e.rsplit("L", 1)[1]), "flow", tmp_path, ess=0.5, reach_step=100, xi=xi)
             for e, xi in XI.items() if e != "phi4/xi4/L16"]
    (tmp_path / "figures").mkdir()
    lines = scaling_section(rows, tmp_path, target_ess=0.1, n_independent=1e4)
    text = "\n".join(lines)
    for stem in ("scaling-tau-vs-xi", "scaling-ess-vs-volume", "scaling-training-cost", "scaling-cost-vs-xi"):
        assert (tmp_path / "figures" / f"{stem}.png").stat().st_size > 0
        assert (tmp_path / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        assert f"figures/{stem}.png" in text
    for stem in ("dynamic-exponent", "ess-vs-volume", "training-cost", "break-even"):
        for suffix in (".md", ".csv", ".tex"):
            assert (tmp_path / "tables" / f"{stem}{suffix}").exists()
    assert "\\toprule" in (tmp_path / "tables" / "dynamic-exponent.tex").read_text()

    z = pd.read_csv(tmp_path / "tables" / "dynamic-exponent.csv")
    z_chi2 = z[z.observable == "χ₂"].z.iloc[0]  # '2.0x(y)'
    value, error = float(z_chi2.split("(")[0]), float(z_chi2.split("(")[1].rstrip(")"))
    assert abs(value - 2) < 4 * max(error, 0.05)
    ess = pd.read_csv(tmp_path / "tables" / "ess-vs-volume.csv")
    assert ess.V0.iloc[0] == 64 and ess["ESS(V0)"].iloc[0].startswith("0.9")
    training = pd.read_csv(tmp_path / "tables" / "training-cost.csv")
    assert set(training.law) >= {"cost = c L^b", "cost = a e^(b L)"} and training.preferred.sum() >= 1
    assert "break-even N" in text


def test_no_line_rows_no_section(tmp_path):
    rows = [row("phi4/free/L8", 8, "hmc", tmp_path)]
    assert scaling_section(rows, tmp_path, target_ess=0.1, n_independent=1e4) == []


def test_ess_points_with_few_effective_samples_are_left_out_of_the_volume_fit(tmp_path):
    rng = np.random.default_rng(1)
    rows = [row(e, L, "flow", tmp_path, ess=0.9 ** (L * L / 64) * (1 + 0.03 * rng.normal()), reach_step=10 * L)
            for e, L in VOLUME_LINE.items()]
    rows[-1].metrics["ess"] = {"value": 0.5, "error": 0.01, "n_samples": 100}  # L = 24: 50 effective samples
    rows[-2].metrics["ess"]["pareto_k"] = 0.95  # L = 16: a tail too heavy for the ESS to converge
    (tmp_path / "figures").mkdir()
    scaling_section(rows, tmp_path, target_ess=0.1, n_independent=1e4)
    ess = pd.read_csv(tmp_path / "tables" / "ess-vs-volume.csv")
    assert ess["volumes fitted"].iloc[0] == "64, 144"
    assert ess["volumes not fitted"].iloc[0] == "256, 576"
    assert ess["Pareto k̂ by volume"].iloc[0] == "nan, nan, 0.95, nan"
    assert ess["ESS(V0)"].iloc[0].startswith("0.9") and ess["chi2/dof"].iloc[0] < 5  # the outlier did not pull it
