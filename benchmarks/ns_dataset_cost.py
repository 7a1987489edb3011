"""Cost per sample of the FNO Navier–Stokes dataset (ν = 1e-3, T = 50, solved at 256², stored at 64²).

The samples are ``NavierStokes2D().sample("fno_nu1e-3", ...)`` on the stored 64² grid (sample ``i``
from ``SeedSequence([seed, i])``), solved by ``NavierStokes2D().solve`` with its dataset defaults
(``solver_factor = 4``: 256² pseudo-spectral ETDRK4, CFL step chosen per sample and stored interval,
frames kept at every 4th point), exactly what ``pde-lab generate --pde navier_stokes_2d --levels
fno_nu1e-3 --resolution 64`` runs.

A whole T = 50 trajectory takes minutes of CPU, so the batch-size sweep solves a shortened horizon
(``--t-short`` time units, same samples, ``t_final`` overridden) and reports CPU seconds per
member-step; the steps differ per sample and per interval (CFL rule), so the per-sample cost of a
full trajectory is that per-step cost times the mean steps of a full trajectory, measured once by
solving ``--full-batch`` samples to T = 50 (which also checks the extrapolation at that batch size).
The FNO paper's data set (1000 training + 200 test trajectories) is then priced on this machine,
as one single-threaded process per core.

    python benchmarks/ns_dataset_cost.py [--batches 1 4 16] [--t-short 3] [--full-batch 4] [--full-t 50]

Needs only pde_lab (the project venv works).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clock, machine_lines, pin_threads, table  # noqa: E402

LEVEL, STORED = "fno_nu1e-3", 64
FNO_TRAJECTORIES = 1200  # Li et al. (2021): 1000 training + 200 test trajectories at nu = 1e-3


def instances(n: int, seed: int, t_final: float):
    """``n`` samples of the FNO ν = 1e-3 level on the 64² grid, ``t_final`` overridden."""
    from pde_lab.pdes.navier_stokes_2d import NavierStokes2D

    pde = NavierStokes2D()
    grid = pde.grid(STORED)
    out = []
    for i in range(n):
        inst = pde.sample(LEVEL, np.random.default_rng(np.random.SeedSequence([seed, i])), grid)
        inst.params["t_final"] = float(t_final)
        out.append(inst)
    return pde, grid, out


def solve(batch: int, seed: int, t_final: float) -> dict:
    """Solve samples ``0 .. batch-1`` to ``t_final`` in one batch; CPU/wall seconds and steps."""
    pde, grid, insts = instances(batch, seed, t_final)
    clock = Clock()
    res = pde.solve(insts, grid)
    wall, cpu = clock.lap()
    steps = np.asarray(res.steps, dtype=np.int64)
    if res.fields["vorticity"].shape != (batch, int(t_final) + 1, STORED, STORED):
        raise RuntimeError(f"unexpected output shape {res.fields['vorticity'].shape}")
    return dict(batch=batch, t=t_final, wall=wall, cpu=cpu, steps=steps,
                per_step=cpu / steps.sum(), resolution=int(res.per_sample["solver_resolution"][0]),
                cfl_max=float(np.max(res.per_sample["cfl_max"])),
                redone=int(np.sum(res.per_sample["redone_intervals"])))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--t-short", type=int, default=3, help="time units solved in the batch-size sweep")
    p.add_argument("--full-batch", type=int, default=4, help="samples solved to --full-t (0: skip)")
    p.add_argument("--full-t", type=int, default=50)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    pin_threads(a.threads)
    print("\n".join(machine_lines("cpu", [("problem", f"navier_stokes_2d level {LEVEL}: nu = 1e-3, stored "
                                                     f"{STORED}^2, solver_factor 4 (256^2)")])), flush=True)

    short = []
    for b in a.batches:
        r = solve(b, a.seed, a.t_short)
        short.append(r)
        print(f"  batch {b}, T = {a.t_short}: CPU {r['cpu']:.1f} s, wall {r['wall']:.1f} s, "
              f"steps {r['steps'].tolist()}", flush=True)
    full = solve(a.full_batch, a.seed, a.full_t) if a.full_batch else None
    if full is not None:
        print(f"  batch {a.full_batch}, T = {a.full_t}: CPU {full['cpu']:.1f} s, wall {full['wall']:.1f} s, "
              f"steps {full['steps'].tolist()}", flush=True)

    print(f"\nbatch sweep, T = {a.t_short} (samples 0..B-1; CPU = process CPU seconds, {a.threads} thread):")
    rows = [[r["batch"], f"{r['cpu']:.1f}", f"{r['wall']:.1f}", f"{r['cpu'] / r['batch']:.2f}",
             f"{r['steps'].mean():.0f}", f"{1e3 * r['per_step']:.1f}", r["redone"], f"{r['cfl_max']:.2f}"]
            for r in short]
    print(table(["batch", "CPU s (batch)", "wall s (batch)", "CPU s / sample", "steps / sample (mean)",
                 "CPU ms / member-step", "redone intervals", "max CFL"], rows))

    if full is None:
        return
    steps_full = full["steps"].mean()
    short_same = next((r for r in short if r["batch"] == a.full_batch), None)
    print(f"\nfull horizon T = {a.full_t}, batch {a.full_batch}: CPU {full['cpu']:.1f} s "
          f"({full['cpu'] / a.full_batch:.1f} s / sample), wall {full['wall']:.1f} s, steps per sample "
          f"{full['steps'].tolist()} (mean {steps_full:.0f}, {steps_full / a.full_t:.0f} per time unit; "
          f"first {a.t_short} units: {short[0]['steps'].mean() / a.t_short:.0f} per unit), "
          f"{1e3 * full['per_step']:.1f} CPU ms / member-step")
    if short_same is not None:
        pred = short_same["per_step"] * steps_full
        print(f"check: the T = {a.t_short} per-step cost at batch {a.full_batch} predicts "
              f"{pred:.1f} s / sample for T = {a.full_t}; measured {full['cpu'] / a.full_batch:.1f} s "
              f"({pred / (full['cpu'] / a.full_batch) - 1:+.0%})")

    cores = os.cpu_count() or 1
    rows = []
    for r in short:
        per_sample = r["per_step"] * steps_full
        total_h = per_sample * FNO_TRAJECTORIES / 3600
        rows.append([r["batch"], f"{1e3 * r['per_step']:.1f}", f"{steps_full:.0f}", f"{per_sample:.0f}",
                     f"{total_h:.1f}", f"{total_h / cores:.1f}"])
    rows.append([f"{a.full_batch} (measured to T = {a.full_t})", f"{1e3 * full['per_step']:.1f}", f"{steps_full:.0f}",
                 f"{full['cpu'] / a.full_batch:.0f}", f"{full['cpu'] / a.full_batch * FNO_TRAJECTORIES / 3600:.1f}",
                 f"{full['cpu'] / a.full_batch * FNO_TRAJECTORIES / 3600 / cores:.1f}"])
    print(f"\nper sample to T = {a.full_t} (per-step cost x mean full-trajectory steps) and the FNO paper's "
          f"{FNO_TRAJECTORIES} trajectories on this machine ({cores} cores, one single-threaded process per core):")
    print(table(["batch", "CPU ms / member-step", "steps / sample", "CPU s / sample",
                 f"{FNO_TRAJECTORIES} samples, CPU h", f"wall h on {cores} cores"], rows))


if __name__ == "__main__":
    main()
