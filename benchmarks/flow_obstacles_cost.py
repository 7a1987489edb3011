"""Cost per difficulty level of the obstacle-flow generator, beside the reference's OpenFOAM costs.

Solves ``--n`` samples per level (seeds 0, 1, ...) at ``--resolution`` (default 128²) with the data-set
defaults (21 snapshots over t = 0 … 10) on one thread and prints a Markdown table: wall and CPU
seconds per sample, time steps, and the reference's seconds per sample (Choudhary et al., OpenFOAM).
CPU time is reported because the machine may be shared: on an idle core the two agree.

    python benchmarks/flow_obstacles_cost.py --n 2 [--levels none-low,many-high] [--json out.json]

(pde_lab's own virtual environment suffices: no comparison package is involved.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_lines, pin_threads  # noqa: E402

pin_threads(1)  # before NumPy/SciPy start their thread pools

import numpy as np  # noqa: E402

from pde_lab.pdes.flow_obstacles import FlowObstacles  # noqa: E402

#: Seconds per sample of the reference generator (REFERENCES.md), by geometry and Re band.
REFERENCE = {
    ("none", "low"): 171, ("none", "medium"): 263, ("none", "high"): 350,
    ("one", "low"): 610, ("one", "medium"): 731, ("one", "high"): 943,
    ("many", "low"): 1551, ("many", "medium"): 1599, ("many", "high"): 1653,
}
DEFAULT_LEVELS = [f"{g}-{r}" for g in ("none", "one", "many") for r in ("low", "medium", "high")] + \
                 [f"{g}-{r}" for g in ("one-round", "many-round") for r in ("low", "medium", "high")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2, help="samples per level")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--levels", default=",".join(DEFAULT_LEVELS))
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    args = ap.parse_args()
    pde = FlowObstacles()
    unknown = [lv for lv in args.levels.split(",") if lv not in pde.levels]
    if unknown or args.n < 1 or args.resolution < 8:
        ap.error(f"need known --levels (unknown: {', '.join(unknown) or 'none'}; allowed: {', '.join(pde.levels)}), "
                 f"--n >= 1 and --resolution >= 8, got --n {args.n}, --resolution {args.resolution}")
    grid = pde.grid(args.resolution)
    rows, raw = [], {}
    for level in args.levels.split(","):
        walls, cpus, steps, res = [], [], [], []
        for seed in range(args.n):
            inst = pde.sample(level, np.random.default_rng(seed), grid)
            w0, c0 = time.perf_counter(), time.process_time()
            out = pde.solve([inst], grid)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            steps.append(int(out.steps[0]))
            res.append(inst.params["reynolds"])
            print(f"{level} seed {seed}: Re {inst.params['reynolds']:.0f}, "
                  f"{int(inst.params['n_obstacles'])} obstacles, {steps[-1]} steps, "
                  f"wall {walls[-1]:.1f} s, cpu {cpus[-1]:.1f} s", flush=True)
        geom, band = level.rsplit("-", 1)
        ref = REFERENCE.get((geom, band))
        raw[level] = {"wall": walls, "cpu": cpus, "steps": steps, "reynolds": res}
        ratio = f"{ref / np.mean(cpus):.0f}×" if ref else "–"
        rows.append(f"| `{level}` | {np.mean(walls):.1f} | {np.mean(cpus):.1f} | {max(cpus):.1f} | "
                    f"{np.mean(steps):.0f} | {ref if ref is not None else '–'} | {ratio} |")
    print()
    print("\n".join(machine_lines()))
    print(f"\n{args.resolution}² cells, {pde.n_snapshots} snapshots over t = 0 … "
          f"{pde.default_params()['t_final']:g}, {args.n} samples per level, one thread\n")
    print("| level | wall s / sample | CPU s / sample | CPU s, worst | steps | reference s / sample | ratio |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
