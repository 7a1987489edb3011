"""Step time of the 2D Navier–Stokes vorticity solver against its FFT floor.

    python benchmarks/navier_stokes_step.py [--sizes 64 128 256] [--batches 1 8 32] [--device cpu|cuda]
                                            [--threads 1] [--repeats 5] [--trajectory]

One ETDRK4 step of :mod:`pde_lab.solvers.vorticity` evaluates the advection term four times; each
evaluation makes four inverse real 2D FFTs (u, v, ω_x, ω_y) and one forward, so a step is 20 FFTs
of ``n × n`` per batch member. The three timings are interleaved call by call. The table gives, per grid size ``n`` and batch ``B``, the median wall
time of one step of the whole batch, the same per member, and two FFT floors timed alone with the
same shapes: the solver's own FFT calls (on CPU one call per member, which keeps a member's result
independent of the batch; batched on CUDA) and one batched call per transform. ``step / floor`` is
the step time over the solver's FFT floor: what the pointwise work and the Python around it cost.

``--trajectory`` also times one whole trajectory of the FNO ``ν = 1e-3`` setting (T = 50, stored 64²,
solved 256²) through ``NavierStokes2D.solve`` and prints its steps, wall and CPU (process) seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import iqr, machine_lines, median, pin_threads, table, time_calls  # noqa: E402


def _fields(n: int, batch: int, device: str):
    import numpy as np
    import torch

    from pde_lab.grids import CartesianGrid
    from pde_lab.pdes.navier_stokes_2d import FNO_SIGMA
    from pde_lab.random_fields import gaussian_random_field

    g = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (n, n), (True, True))
    w = np.stack([gaussian_random_field(np.random.default_rng(i), g, 2.5, 7.0, FNO_SIGMA) for i in range(batch)])
    return torch.from_numpy(w).to(device)


def bench_step(n: int, batch: int, device: str, repeats: int) -> dict:
    import torch

    from pde_lab.solvers.spectral import etdrk4_step
    from pde_lab.solvers.vorticity import VorticityBox

    box = VorticityBox(n, 1.0, device)
    w = _fields(n, batch, device)
    zero = torch.zeros((), dtype=torch.complex128, device=device)
    w_hat = torch.where(box.mask, box.forward(w), zero)
    dt = 1e-3
    c = box.coefficients(1e-3, dt)
    from pde_lab.solvers.spectral import ETDRK4Coefficients
    coeffs = ETDRK4Coefficients(c.dt, *(getattr(c, k).expand(batch, -1).contiguous()
                                        for k in ("E", "E2", "Q", "f1", "f2", "f3")), real=True)
    shape = w_hat.shape

    def nonlinear(v):
        return (-box.advection(v.reshape(shape))).reshape(batch, -1)

    state = w_hat.reshape(batch, -1)

    def step():
        etdrk4_step(state, nonlinear, coeffs)

    spec4 = torch.zeros((batch, 4, n, n // 2 + 1), dtype=torch.complex128, device=device)
    phys = torch.zeros((batch, n, n), dtype=torch.float64, device=device)

    def floor_solver():
        for _ in range(4):
            box.inverse(spec4)
            box.forward(phys)

    def floor_batched():
        for _ in range(4):
            torch.fft.irfft2(spec4, s=(n, n))
            torch.fft.rfft2(phys)

    fns = {"step": step, "floor": floor_solver, "floor_batched": floor_batched}
    for fn in fns.values():
        fn()  # warm-up (plans, allocator)
    out = {name: [] for name in fns}
    # Interleaved, so that a change of the machine's speed hits all three alike.
    for _ in range(repeats):
        for name, fn in fns.items():
            out[name] += time_calls(fn, 1, device)
    return out


def bench_trajectory(device: str) -> tuple[float, dict]:
    import numpy as np

    from pde_lab.pdes.navier_stokes_2d import NavierStokes2D

    pde = NavierStokes2D()
    grid = pde.grid(64)
    inst = pde.sample("fno_nu1e-3", np.random.default_rng(0), grid)
    t0, c0 = time.perf_counter(), time.process_time()
    r = pde.solve([inst], grid, device=device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, {"cpu_s": round(cpu, 1), "steps": int(r.steps[0]),
                  **{k: float(v[0]) for k, v in r.per_sample.items()}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--trajectory", action="store_true")
    a = p.parse_args(argv)
    pin_threads(a.threads)
    print("\n".join(machine_lines(a.device)))
    rows = []
    for n in a.sizes:
        for b in a.batches:
            r = bench_step(n, b, a.device, a.repeats)
            s, f, fb = (median(r[k]) for k in ("step", "floor", "floor_batched"))
            lo, hi = iqr(r["step"])
            rows.append([n, b, f"{s * 1e3:.2f} ({lo * 1e3:.2f}-{hi * 1e3:.2f})", f"{s / b * 1e3:.3f}",
                         f"{f * 1e3:.2f}", f"{fb * 1e3:.2f}", f"{s / f:.2f}"])
            print(f"  n={n} B={b}: step {s * 1e3:.2f} ms", flush=True)
    print()
    print(table(["n", "B", "step ms (IQR)", "ms / member", "FFT floor ms (solver calls)",
                 "FFT floor ms (batched)", "step / floor"], rows))
    if a.trajectory:
        secs, info = bench_trajectory(a.device)
        print(f"\nFNO nu=1e-3 trajectory (T = 50, stored 64^2, solver 256^2): {secs:.1f} s wall, {info}")


if __name__ == "__main__":
    main()
