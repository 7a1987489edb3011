"""Helmholtz ground truth: cost and accuracy of the sine-series solver beside the finite-volume scheme
it replaced in pde_lab 0.2.2.

For each resolution ``n`` and level, draws ``--samples`` sources (``default_rng([123, i])``) and solves
each with ``Helmholtz.solve`` (sine series, 2048+ modes) and with the 5-point finite-volume scheme
(``−Δ_h − k²``, SuperLU with partial pivoting). Prints per row the median CPU milliseconds per sample of
each, the finite-volume solution's relative L2 distance from the sine series (median and largest),
and the largest ``series_error`` the sine series records for itself. One thread.

    python benchmarks/helmholtz_solver.py [--n 64 128] [--levels easy medium hard] [--samples 12]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clock, machine_lines, median, pin_threads, table  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[64, 128])
    p.add_argument("--levels", nargs="+", default=["easy", "medium", "hard"])
    p.add_argument("--samples", type=int, default=12)
    a = p.parse_args(argv)
    pin_threads(1)

    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from pde_lab.pdes import get_pde
    from pde_lab.solvers import finite_volume as fv

    pde = get_pde("helmholtz")
    rows = []
    for n in a.n:
        grid = pde.grid(n)
        laplacian, _ = fv.assemble(np.ones(grid.shape), grid, f=0.0, g=0.0)
        eye = sp.identity(laplacian.shape[0], format="csc")
        pde.solve([pde.sample("easy", np.random.default_rng(0), grid)], grid)  # warm-up (matrix cache)
        for level in a.levels:
            t_series, t_fv, dist, series_error, ks = [], [], [], [], []
            for i in range(a.samples):
                inst = pde.sample(level, np.random.default_rng([123, i]), grid)
                k = inst.params["k"]
                clock = Clock()
                res = pde.solve([inst], grid)
                t_series.append(clock.lap()[1])
                u_fv = spla.splu((laplacian - k**2 * eye).tocsc()).solve(inst.inputs["f"].ravel()).reshape(grid.shape)
                t_fv.append(clock.lap()[1])
                u = res.fields["u"][0]
                dist.append(np.linalg.norm(u_fv - u) / np.linalg.norm(u))
                series_error.append(res.per_sample["series_error"][0])
                ks.append(k)
            rows.append([n, level, f"{min(ks):.2f}–{max(ks):.2f}", f"{1e3 * median(t_series):.0f}",
                         f"{1e3 * median(t_fv):.1f}", f"{median(dist):.2g}", f"{max(dist):.2g}",
                         f"{max(series_error):.1e}"])
    print("\n".join(machine_lines("cpu", [("samples", f"{a.samples} per row, default_rng([123, i]); medians")])))
    print()
    print(table(["n", "level", "k drawn", "sine series, CPU [ms]", "finite volumes, CPU [ms]",
                 "finite volumes vs series, median", "…, largest", "series_error, largest"], rows))


if __name__ == "__main__":
    main()
