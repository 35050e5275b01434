"""Run tasks: sample, measure, write artifacts atomically, then append one result row.

A task already present in ``results.jsonl`` (same entry, sampler spec, seed, dtype, device
kind, catalogue version) is skipped, so an interrupted study resumes where it stopped; a run
that dies leaves earlier rows and artifacts intact.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from suite import __version__
from suite.catalogue import catalogue_version, get_entry
from suite.harness.results import append_row, device_name, now, prepare_output_folder, provenance, read_rows
from suite.harness.samplers import DEFAULT_DTYPE, pretrain_key, run_sampler
from suite.harness.study import Task
from suite.metrics import estimate_observables, pulls, sampler_metrics


# Options added after results were first written, left out of the task key at their default so that
# existing results keep their keys.
LATER_OPTIONS = {"pretrain": {}}
ARTIFACTS = {"chains": "chains.npz", "training": "training.csv", "model": "model.pt"}


def task_key(task: Task, dtype: str, device: str) -> str:
    """A stable identifier of what a task computes (not of when it ran)."""
    sampler = {k: v for k, v in task.sampler.items() if LATER_OPTIONS.get(k, ...) != v}
    payload = json.dumps({"entry": task.entry_id, "sampler": sampler, "seed": task.seed, "dtype": dtype,
                          "device": device.split(":")[0], "catalogue": catalogue_version()}, sort_keys=True)
    digest = hashlib.sha1(payload.encode()).hexdigest()[:10]
    return f"{task.entry_id.replace('/', '_')}-{task.sampler['name']}-s{task.seed}-{digest}"


def run_task(task: Task, out: Path, *, device: str = "cpu", dtype: str | None = None, resume: bool = False,
             progress=None) -> dict:
    """Run one task, save its artifacts under ``runs/<key>/`` and append its row; returns the row.

    ``dtype`` None means the sampler's default (HMC float64, flows float32).
    """
    import torch

    dtype = dtype or DEFAULT_DTYPE[task.sampler["name"]]
    entry = get_entry(task.entry_id)
    theory = entry.build_theory()
    key = task_key(task, dtype, device)
    run_dir = out / "runs" / key
    run_dir.mkdir(parents=True, exist_ok=True)
    pretrain = None
    if task.sampler.get("pretrain"):
        size = task.sampler["pretrain"]["L"]
        folder = out / "pretrain" / pretrain_key(task.sampler, entry, seed=task.seed, dtype=dtype, device=device,
                                                 catalogue=catalogue_version())
        pretrain = (entry.build_theory(lattice=(size,) * len(entry.lattice)), folder)
    started = now()
    wall = time.perf_counter()
    chain, training = run_sampler(task.sampler, theory, seed=task.seed, device=device, dtype=getattr(torch, dtype),
                                  run_dir=run_dir, resume=resume, progress=progress, pretrain=pretrain)
    configs = chain.shape[0] * chain.shape[1]
    sampling = chain.timings["sampling"]
    estimates = estimate_observables(chain, theory, seconds_per_config=sampling / configs)
    chain.save(run_dir / "chains.npz")
    artifacts = {kind: str(Path("runs") / key / name) for kind, name in ARTIFACTS.items() if (run_dir / name).exists()}
    row = {
        "run_id": key,
        "suite_version": __version__,
        "catalogue_version": catalogue_version(),
        "entry": entry.id,
        "theory": entry.theory,
        "lattice": list(entry.lattice),
        "volume": entry.volume,
        "params": {"convention": entry.convention, **entry.params},
        "sampler": task.sampler,
        "seed": task.seed,
        "device": device,
        "device_name": device_name(device),
        "dtype": dtype,
        "sampler_info": chain.info,
        "training": training,
        "timings": {**chain.timings, "total": time.perf_counter() - wall},
        "throughput": {
            "configs_per_second": configs / sampling,
            "site_updates_per_second": configs * entry.volume / sampling,
        },
        "metrics": sampler_metrics(chain),
        "observables": estimates,
        "reference": pulls(estimates, entry.reference_values()),
        "artifacts": artifacts,
        "provenance": {**provenance(), "start_time": started, "end_time": now()},
    }
    append_row(out, row)
    return row


def run_tasks(tasks, out, *, device="cpu", dtype=None, force=False, resume=False, progress=None,
              log=print) -> list[dict]:
    """Run tasks in order into folder ``out``, skipping those already done unless ``force``."""
    for entry_id in dict.fromkeys(task.entry_id for task in tasks):  # an unregistered theory or exact solver
        get_entry(entry_id).theory_info()                          # fails before the first task runs
    out = prepare_output_folder(out)
    done = {row["run_id"] for row in read_rows(out)}
    rows = []
    for i, task in enumerate(tasks, 1):
        key = task_key(task, dtype or DEFAULT_DTYPE[task.sampler["name"]], device)
        if key in done and not force:
            log(f"[{i}/{len(tasks)}] {task.entry_id} {task.sampler['name']} seed {task.seed}: already done, skipped")
            continue
        log(f"[{i}/{len(tasks)}] {task.entry_id} {task.sampler['name']} seed {task.seed}: running")
        rows.append(run_task(task, out, device=device, dtype=dtype, resume=resume, progress=progress))
    return rows
