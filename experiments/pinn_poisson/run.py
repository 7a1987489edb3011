"""ENGD against Adam, L-BFGS and Levenberg-Marquardt on the 2D Poisson PINN of Müller & Zeinhofer (2023).

Usage (one process, one thread; 18 runs of about one CPU-minute each: about 20 minutes on an idle
core, 30 minutes wall time on the shared 2-core machine of the recorded run):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python experiments/pinn_poisson/run.py \\
        [--config experiments/pinn_poisson/config.yaml] [--out experiments_out/pinn_poisson] \\
        [--seeds 0,1,2] [--only engd,adam] [--minutes 1.0] [--report]

Each (optimizer, seed) pair is one ``train_pinn`` run directory under ``OUT/<optimizer>/seed<k>``;
the script then prints a Markdown table (median and range of the final relative L2 error over the
seeds, median optimisation time on the config's clock and in wall time, median steps, and the median
time until the logged error first fell to 1e-3 and to 1e-5) and writes it with every run's metrics
to ``OUT/table.md`` and ``OUT/results.json``. Times are optimisation time only (the periodic
evaluations of the error on the test grid are excluded); the config measures the budget in CPU time
of the single-threaded process (``clock: process``), which on an idle core equals wall time.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path

import torch
import yaml

from pde_lab.training.pinn import PINNConfig, train_pinn

HERE = Path(__file__).resolve().parent


TARGETS = (1e-3, 1e-5)


def time_to(log: Path, target: float) -> float:
    """Optimisation seconds until the logged relative L2 error first fell to ``target`` (inf if never)."""
    with log.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if float(row["rel_l2"]) <= target:
                return float(row["seconds"])
    return math.inf


def _fmt_time(values: list[float]) -> str:
    med = statistics.median(values)
    reached = sum(math.isfinite(v) for v in values)
    text = "not reached" if math.isinf(med) else f"{med:.0f}"
    return text if reached == len(values) else f"{text} ({reached}/{len(values)} seeds)"


def _row(name: str, metrics: list[dict]) -> str:
    errs = [m["rel_l2"] for m in metrics]
    secs = [m["seconds"] for m in metrics]
    wall = [m["wall_seconds"] for m in metrics]
    steps = [m["steps"] for m in metrics]
    reach = [_fmt_time([m[f"time_to_{t:.0e}"] for m in metrics]) for t in TARGETS]
    return (f"| {name} | {statistics.median(errs):.2e} | {min(errs):.1e} – {max(errs):.1e} | "
            f"{statistics.median(secs):.0f} | {statistics.median(wall):.0f} | {int(statistics.median(steps))} | "
            + " | ".join(reach) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(HERE / "config.yaml"))
    p.add_argument("--out", default="experiments_out/pinn_poisson")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's)")
    p.add_argument("--only", default=None, help="comma-separated optimizer entries of the config")
    p.add_argument("--minutes", type=float, default=None, help="time budget per run (default: the config's)")
    p.add_argument("--report", action="store_true",
                   help="do not train: rebuild the table from the run directories already in --out")
    a = p.parse_args(argv)
    torch.set_num_threads(1)

    if not Path(a.config).is_file():
        p.error(f"--config {a.config}: no such file")
    if a.minutes is not None and not a.minutes > 0:
        p.error(f"--minutes must be positive, got {a.minutes}")
    spec = yaml.safe_load(Path(a.config).read_text())
    try:
        seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else list(spec["seeds"])
    except ValueError:
        p.error(f"--seeds must be integers separated by commas, got {a.seeds!r}")
    names = a.only.split(",") if a.only else list(spec["optimizers"])
    unknown = [n for n in names if n not in spec["optimizers"]]
    if unknown:
        p.error(f"unknown optimizer entries {unknown}; the config has {list(spec['optimizers'])}")
    out = Path(a.out)
    results: dict[str, list[dict]] = {}
    for name in names:
        for seed in seeds:
            values = {**spec["base"], **spec["optimizers"][name], "seed": seed,
                      "out": str(out / name / f"seed{seed}"), "overwrite": True}
            if a.minutes is not None:
                values["time_limit_minutes"] = a.minutes
            run_dir = Path(values["out"])
            if not a.report:
                train_pinn(PINNConfig.from_dict(values))
            elif not (run_dir / "metrics.json").is_file():
                p.error(f"--report: no finished run at {run_dir}; run without --report first")
            metrics = json.loads((run_dir / "metrics.json").read_text())
            for target in TARGETS:
                metrics[f"time_to_{target:.0e}"] = time_to(run_dir / "log.csv", target)
            results.setdefault(name, []).append(metrics)
            print(f"{name:8s} seed {seed}: rel L2 {metrics['rel_l2']:.3e}, {metrics['steps']} steps, "
                  f"{metrics['seconds']:.1f} s ({metrics['stop_reason']})", flush=True)

    lines = ["| optimizer | median rel. L2 | range over seeds | median CPU time [s] | median wall time [s] | "
             "median steps | " + " | ".join(f"time to {t:.0e} [s]" for t in TARGETS) + " |",
             "| --- " * (6 + len(TARGETS)) + "|"]
    lines += [_row(name, results[name]) for name in names]
    table = "\n".join(lines)
    print()
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
