"""Darcy data generation: time per sample (drawing the coefficient, assembling, sparse LU solve).

For each resolution ``n`` (``n × n`` cells) and level, draws ``--samples`` instances with
``Darcy().sample`` and solves each with ``pde_lab.solvers.finite_volume``, timing the phases
separately; prints medians per sample. One thread (the solve is SuperLU, sequential anyway).

    python benchmarks/darcy_solver.py [--n 64 85 128 256] [--levels fno hard] [--samples 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clock, machine_lines, median, pin_threads, table  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[64, 85, 128, 256])
    p.add_argument("--levels", nargs="+", default=["fno", "hard"])
    p.add_argument("--samples", type=int, default=20, help="samples per (n, level); the first is a warm-up")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    pin_threads(a.threads)

    import scipy
    from pde_lab.pdes import get_pde
    from pde_lab.solvers import finite_volume as fv

    pde = get_pde("darcy")
    rows = []
    for n in a.n:
        grid = pde.grid(n)
        for level in a.levels:
            t_sample, t_asm, t_lu, t_solve, t_total, fill = [], [], [], [], [], []
            c_lu, c_total = [], []
            for i in range(a.samples + 1):
                rng = np.random.default_rng(np.random.SeedSequence([7, n, i]))
                clock = Clock()
                inst = pde.sample(level, rng, grid)
                w1, c1 = clock.lap()
                A, b = fv.assemble(inst.inputs["a"], grid, f=inst.params["forcing"], g=0.0)
                w2, c2 = clock.lap()
                lu = fv._factorize(A)
                w3, c3 = clock.lap()
                u = lu.solve(b)
                w4, c4 = clock.lap()
                if i == 0:
                    continue  # warm-up
                assert np.all(np.isfinite(u))
                t_sample.append(w1)
                t_asm.append(w2)
                t_lu.append(w3)
                t_solve.append(w4)
                t_total.append(w1 + w2 + w3 + w4)
                c_lu.append(c3)
                c_total.append(c1 + c2 + c3 + c4)
                fill.append(lu.L.nnz + lu.U.nnz)
            # The library entry point, batched over the same number of samples, for comparison.
            insts = [pde.sample(level, np.random.default_rng(np.random.SeedSequence([7, n, i])), grid)
                     for i in range(1, a.samples + 1)]
            clock = Clock()
            pde.solve(insts, grid)
            batched = clock.lap()[1] / len(insts)
            rows.append([n, level, f"{n * n:,}", f"{1e3 * median(t_sample):.2f}", f"{1e3 * median(t_asm):.2f}",
                         f"{1e3 * median(t_lu):.1f}", f"{1e3 * median(t_solve):.2f}", f"{1e3 * median(t_total):.1f}",
                         f"{1e3 * median(c_total):.1f}", f"{1e3 * batched:.1f}", f"{median(fill) / 1e6:.2f}"])
    print("\n".join(machine_lines("cpu", [("scipy", scipy.__version__),
                                          ("samples", f"{a.samples} per row after one warm-up; medians")])))
    print()
    print(table(["n", "level", "unknowns", "sample [ms]", "assemble [ms]", "LU [ms]", "triangular solves [ms]",
                 "total, wall [ms]", "total, CPU [ms]", "Darcy.solve per sample, CPU [ms]", "L+U entries [M]"], rows))
    print("\nWall times per phase; the CPU columns are process CPU time, steadier on a busy machine.")


if __name__ == "__main__":
    main()
