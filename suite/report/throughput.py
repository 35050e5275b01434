"""The report's throughput section: rows of ``lftbench throughput`` (``kind = "throughput"``) as
figures of site-updates/s and training steps/s against the volume, one per device and compile
setting, and a table (also written to ``throughput.csv``). Rows of data-parallel training over N
ranks (``world_size`` N > 1) are their own lines ("… (N ranks)"), and the table then gives their
speedup and efficiency against the one-rank row of the same cell (`scaling`).

Cell: workload, flow, objective, L, batch (the total over the ranks), device and its name, dtype,
compile. A row without ``world_size`` (written before it was recorded) is one rank.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from suite.report.figures import markdown_image, throughput_vs_volume
from suite.report.tables import to_markdown

KIND = "throughput"  # the rows' ``kind``


CELL = ("workload", "flow", "objective", "L", "batch", "device", "device_name", "dtype", "compile")


def label(row: dict) -> str:
    """'hmc', 'sampling affine', 'training spline path-gradient', 'training affine reverse-kl (2 ranks)'."""
    text = " ".join(str(row[k]) for k in ("workload", "flow", "objective") if row.get(k))
    return text + (f" ({ranks(row)} ranks)" if ranks(row) > 1 else "")


def ranks(row: dict) -> int:
    return row.get("world_size") or 1


def scaling(row: dict, rows: list[dict]) -> dict | None:
    """Strong scaling of a row of N > 1 ranks against the latest one-rank row of its cell among ``rows``:
    its steps/s, the baseline's, speedup (their ratio) and efficiency (speedup / N); None without both."""
    if ranks(row) == 1 or row.get("status") != "ok" or row.get("steps_per_second") is None:
        return None
    cell = [r for r in rows if ranks(r) == 1 and r.get("status") == "ok" and r.get("steps_per_second")
            and all(r.get(k) == row.get(k) for k in CELL)]
    if not cell:
        return None
    baseline = max(cell, key=lambda r: r["created"])
    speedup = row["steps_per_second"] / baseline["steps_per_second"]
    return {"steps_per_second": row["steps_per_second"], "baseline_steps_per_second": baseline["steps_per_second"],
            "baseline": baseline["run_id"], "speedup": speedup, "efficiency": speedup / ranks(row)}


def _setup(row: dict) -> str:
    return f"{row['device_name']} ({row['device']}{', torch.compile' if row['compile'] else ''})"


def throughput_table(rows: list[dict]) -> pd.DataFrame:
    """One line per row; with rows of several ranks, also ranks, speedup and efficiency (`scaling`)."""
    table = pd.DataFrame.from_records([{
        "workload": label(r), "L": r["L"], "volume": r["volume"], "batch": r["batch"], "dtype": r["dtype"],
        "setup": _setup(r), "configs_per_s": r.get("configs_per_second"),
        "site_updates_per_s": r.get("site_updates_per_second"), "steps_per_s": r.get("steps_per_second"),
        "spread": r.get("spread"),
        "peak_MiB": r["peak_memory_bytes"] / 2**20 if r.get("peak_memory_bytes") is not None else None,
        "status": r["status"],
    } for r in rows])
    if any(ranks(r) > 1 for r in rows):
        found = [scaling(r, rows) or {} for r in rows]
        table.insert(4, "ranks", [ranks(r) for r in rows])
        table.insert(table.columns.get_loc("spread"), "speedup", [f.get("speedup") for f in found])
        table.insert(table.columns.get_loc("spread"), "efficiency", [f.get("efficiency") for f in found])
    return table


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
