"""The report's transport-versus-quality section: on each entry where importance samplers of more
than one arm (`suite.samplers.base.TRANSPORT_ARMS`, each plugin's ``transport_arm``) ran — (a) a
trained flow alone, (b) a learned transport corrected by Monte Carlo steps (``flow-ais``, ``snf``,
``nets``), (c) Monte Carlo from the prior (``ais``) — which one gives the most effective samples
for its total cost.

Per run: total seconds = training + sampling (wall seconds: ``training.seconds``, pretraining
included, and ``timings.sampling``; the target ensemble of the forward ESS is a measurement, not
counted), ESS per sample (Σw)²/(N Σw²) with the Pareto k̂ of the weights (> 0.7: the ESS is not to
be trusted), ESS per second of total cost N·ESS/(train + sampling s)
(error from the ESS's bootstrap error, the cost taken as exact), |log Z − exact| with the error of
the estimate (`suite.compare.protocol_record`), the forward ESS where the run measured it, and the
evaluations per sample (``sampler_info.evaluations_per_sample``). One table per entry, best first,
and one figure of the ESS per second of all entries.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from suite.report.figures import markdown_image, transport_bars
from suite.report.tables import format_value, to_markdown
from suite.samplers.base import TRANSPORT_ARMS

FIGURE = "transport-vs-quality"


def transport_record(row) -> dict:
    """The numbers of one importance-sampling run (module docstring); NaN where it has none."""
    from suite.compare import protocol_record  # suite.compare imports suite.report

    ess = row.metrics["ess"]
    n_samples, train = ess["n_samples"], (row.training or {}).get("seconds") or 0.0
    total = train + row.timings["sampling"]
    protocol = protocol_record(row, ess["value"], ess["error"])
    evaluations = row.sampler_info.get("evaluations_per_sample")
    return {"entry": row.entry, "arm": row.plugin.transport_arm, "sampler": row.plugin.label(row.sampler),
            "name": row.plugin.name, "seed": row.seed, "train_seconds": train,
            "sampling_seconds": row.timings["sampling"], "total_seconds": total, "n_samples": n_samples,
            "ess": ess["value"], "ess_error": ess["error"], "pareto_k": ess.get("pareto_k", math.nan),
            "ess_per_second": n_samples * ess["value"] / total,
            "ess_per_second_error": n_samples * ess["error"] / total,
            **{name: protocol[name] for name in ("log_z_error", "log_z_error_error", "forward_ess",
                                                 "forward_ess_error")},
            "evaluations_per_sample": math.nan if evaluations is None else evaluations}


def transport_records(rows) -> pd.DataFrame:
    """The records of the entries where runs of more than one arm have weights, by entry, each
    entry's best (most ESS per second of total cost) first; empty if there is no such entry."""
    records = [transport_record(r) for r in rows if r.plugin.transport_arm and "ess" in r.metrics]
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records(records)
    compared = frame.groupby("entry").arm.transform("nunique") > 1
    return frame[compared].sort_values(["entry", "ess_per_second"], ascending=[True, False],
                                       kind="stable").reset_index(drop=True)


def _fmt(value, error) -> str:
    """value(error); a value below its error (a forward ESS of a flow missing the target's bulk) as value ± error."""
    if math.isnan(value):
        return "—"
    return f"{value:.2g} ± {error:.2g}" if abs(value) < error else format_value(value, error)


def _table(part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "arm": part.arm.map(lambda a: TRANSPORT_ARMS[a].split(" ", 1)[0]),
        "sampler": part.sampler,
        "seed": part.seed,
        "train s": part.train_seconds.round(1),
        "sampling s": part.sampling_seconds.round(1),
        "total s": part.total_seconds.round(1),
        "N": part.n_samples,
        "ESS/sample": [_fmt(v, e) for v, e in zip(part.ess, part.ess_error)],
        "Pareto k̂": part.pareto_k.round(2),
        "ESS/s (total cost)": [_fmt(v, e) for v, e in zip(part.ess_per_second, part.ess_per_second_error)],
        "|log Z − exact|": [_fmt(v, e) for v, e in zip(part.log_z_error, part.log_z_error_error)],
        "forward ESS": [_fmt(v, e) for v, e in zip(part.forward_ess, part.forward_ess_error)],
        "evaluations/sample": part.evaluations_per_sample,
    })


def transport_section(rows, out: Path) -> list[str]:
    """Markdown lines (and the figure) of the section, for the entries with more than one arm; [] if none."""
    frame = transport_records(rows)
    if frame.empty:
        return []
    figure = transport_bars({entry: list(zip(part.name, part.arm, part.ess_per_second, part.ess_per_second_error))
                             for entry, part in frame.groupby("entry", sort=False)},
                            "effective samples per second of total cost (training + sampling)",
                            out / "figures" / f"{FIGURE}.png")
    lines = ["## Transport versus quality", "",
             "Importance samplers on the same entry at their total cost: "
             + "; ".join(TRANSPORT_ARMS.values()) + ". Total seconds = training + sampling (wall, "
             "pretraining included; the forward ESS's target ensemble is not counted); ESS/s = N·ESS/(total s), "
             "its error from the ESS's bootstrap error (Pareto k̂ > 0.7: not to be trusted); |log Z − exact| where "
             "the entry has an exact log Z; "
             "forward ESS where the run measured it (flows with target_samples). Best first.", "",
             *markdown_image("ESS per second of total cost per arm and entry", figure)]
    for entry, part in frame.groupby("entry", sort=False):
        lines += [f"### {entry}", "", to_markdown(_table(part)), ""]
    return lines
