"""Peak memory of one training step of a continuous flow against the number of ODE steps, with
gradients by backpropagation through the solver ("direct") and by the adjoint method.

Each (mode, steps) cell runs in a fresh process: it builds ``cnf-equivariant`` (default
hyperparameters but ``n_steps``, float32) for 2-d φ⁴ on an L × L lattice, draws one batch without
gradient (so that the baseline holds the model, the allocator's arenas and one forward pass), reads
the peak resident set size (``ru_maxrss``; CUDA: ``max_memory_allocated``), takes one reverse-KL
step (sample, action, backward, AdamW step) and reports the growth of the peak over the baseline,
and the step's wall time. Direct backpropagation stores every stage of every step, so its memory
grows linearly with the steps; the adjoint stores one velocity evaluation, so it stays flat.

    OMP_NUM_THREADS=1 .venv/bin/python bench/cnf_memory.py --markdown      # the table in bench/README.md
    .venv/bin/python bench/cnf_memory.py --size 8 --steps 4 8 --batch 16   # smoke run

Importing the module runs nothing; `main(argv)` does the work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(size: int, steps: int, adjoint: bool, batch: int, device: str, seed: int) -> dict:
    """One cell, in this process: peak memory growth (bytes) and seconds of one training step."""
    import torch

    sys.path.insert(0, str(ROOT))
    from reference.flows import build
    from suite.theories.phi4 import Phi4
    from suite.throughput import max_rss_bytes, peak_memory
    from suite.training import ReverseKL

    torch.manual_seed(seed)
    theory = Phi4.from_albergo((size, size), m2=-4.0, lam=4.807)
    model = build("cnf-equivariant", theory, n_steps=steps, adjoint=adjoint).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.no_grad():
        model.sample(batch)

    def step():
        loss, _ = ReverseKL(theory).loss(model, batch, 1)
        loss.backward()
        optimizer.step()

    dev, start = torch.device(device), time.perf_counter()
    if dev.type == "cuda":
        growth = peak_memory(step, dev)  # the step's peak beyond what was allocated before
    else:
        before = max_rss_bytes()
        step()
        growth = max_rss_bytes() - before
    seconds = time.perf_counter() - start
    return {"size": size, "steps": steps, "mode": "adjoint" if adjoint else "direct", "batch": batch,
            "peak_growth_bytes": growth, "seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=16, help="lattice extent L (default 16)")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="RK4 steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell, print JSON
    args = parser.parse_args(argv)
    if args.cell:
        steps, mode = args.cell.split(":")
        print(json.dumps(measure(args.size, int(steps), mode == "adjoint", args.batch, args.device, args.seed)))
        return 0
    rows = []
    for steps in args.steps:
        for mode in ("direct", "adjoint"):
            out = subprocess.run([sys.executable, __file__, "--cell", f"{steps}:{mode}", "--size", str(args.size),
                                  "--batch", str(args.batch), "--device", args.device, "--seed", str(args.seed)],
                                 check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if not args.markdown:
                print(rows[-1], flush=True)
    if args.markdown:
        print(f"L = {args.size}, batch {args.batch}, device {args.device}, float32, one reverse-KL step\n")
        print("| RK4 steps | direct MiB | adjoint MiB | direct s | adjoint s |")
        print("|---:|---:|---:|---:|---:|")
        for steps in args.steps:
            cell = {r["mode"]: r for r in rows if r["steps"] == steps}
            print(f"| {steps} | {cell['direct']['peak_growth_bytes'] / 2**20:.1f} | "
                  f"{cell['adjoint']['peak_growth_bytes'] / 2**20:.1f} | {cell['direct']['seconds']:.2f} | "
                  f"{cell['adjoint']['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
