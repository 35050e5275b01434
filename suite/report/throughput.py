"""The report's throughput section: rows of ``lftbench throughput`` (``kind = "throughput"``) as
figures of site-updates/s and training steps/s against the volume, one per device and compile
setting, and a table (also written to ``throughput.csv``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report.figures import markdown_image, throughput_vs_volume
from suite.report.tables import to_markdown

KIND = "throughput"  # the rows' ``kind``


def label(row: dict) -> str:
    """'hmc', 'sampling affine', 'training spline path-gradient'."""
    return " ".join(str(row[k]) for k in ("workload", "flow", "objective") if row.get(k))


def _setup(row: dict) -> str:
    return f"{row['device_name']} ({row['device']}{', torch.compile' if row['compile'] else ''})"


def throughput_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records([{
        "workload": label(r), "L": r["L"], "volume": r["volume"], "batch": r["batch"], "dtype": r["dtype"],
        "setup": _setup(r), "configs_per_s": r.get("configs_per_second"),
        "site_updates_per_s": r.get("site_updates_per_second"), "steps_per_s": r.get("steps_per_second"),
        "spread": r.get("spread"),
        "peak_MiB": r["peak_memory_bytes"] / 2**20 if r.get("peak_memory_bytes") is not None else None,
        "status": r["status"],
    } for r in rows])


def throughput_section(rows: list[dict], out: Path) -> list[str]:
    """Markdown lines (figures written under ``out/figures``); empty without throughput rows."""
    if not rows:
        return []
    table = throughput_table(rows)
    table.to_csv(out / "throughput.csv", index=False)
    lines = ["## Throughput against volume", "",
             "Medians of repeated timings after warm-up (`lftbench throughput`); site updates = "
             "configurations × V; HMC: one trajectory of 10 leapfrog steps per configuration; spread = "
             "(max − min)/median; peak memory on CUDA only.", ""]
    for index, setup in enumerate(dict.fromkeys(_setup(r) for r in rows)):
        sampling, training = {}, {}
        for r in rows:
            if _setup(r) == setup and r["status"] == "ok":
                if r["steps_per_second"] is None:
                    sampling.setdefault(label(r), []).append((r["volume"], r["site_updates_per_second"]))
                else:
                    training.setdefault(label(r), []).append((r["volume"], r["steps_per_second"]))
        if sampling or training:
            figure = out / "figures" / f"throughput-{index}.png"
            throughput_vs_volume(sampling, training, f"throughput on {setup}", figure)
            lines += markdown_image(f"throughput against volume on {setup}", figure)
    return lines + [to_markdown(table), ""]
