"""Step time of the 2D Navier–Stokes vorticity solver against its FFT floor.

    python benchmarks/navier_stokes_step.py [--sizes 64 128 256] [--batches 1 8 32] [--device cpu|cuda]
                                            [--threads 1] [--repeats 5] [--trajectory]

One ETDRK4 step of :mod:`pde_lab.solvers.vorticity` evaluates the advection term four times; each
evaluation makes four inverse real 2D FFTs (u, v, ω_x, ω_y) and one forward, so a step is 20 FFTs
of ``n × n`` per batch member. The three timings are interleaved call by call. The table gives, per grid size ``n`` and batch ``B``, the median wall
time of one step of the whole batch, the same per member, and two FFT floors timed alone with the
same shapes: the solver's own FFT calls (on CPU one call per member, which keeps a member's result
independent of the batch; batched on CUDA) and one batched call per transform. ``step / floor`` is
the step time over the solver's FFT floor (the median ratio of interleaved pairs, by wall time and by
process CPU time, the steadier one on a shared machine): what the pointwise work and the Python
around it cost. The step is the solver's own: ``ν = 1e-3``, the FNO forcing, dealiasing in the
coefficients (:meth:`VorticityBox.coefficients`).

``--trajectory`` also times one whole trajectory of the FNO ``ν = 1e-3`` setting (T = 50, stored 64²,
solved 256²) through ``NavierStokes2D.solve`` and prints its steps, wall and CPU (process) seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checked_device, iqr, machine_lines, median, pin_threads, table, time_calls  # noqa: E402


def _fields(n: int, batch: int, device: str):
    import numpy as np
    import torch

    from pde_lab.grids import CartesianGrid
    from pde_lab.pdes.navier_stokes_2d import FNO_SIGMA
    from pde_lab.random_fields import gaussian_random_field

    g = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (n, n), (True, True))
    w = np.stack([gaussian_random_field(np.random.default_rng(i), g, 2.5, 7.0, FNO_SIGMA) for i in range(batch)])
    return torch.from_numpy(w).to(device)


def bench_step(n: int, batch: int, device: str, repeats: int, group: int | None = None) -> dict:
    import numpy as np
    import torch

    from pde_lab.pdes.navier_stokes_2d import fno_forcing
    from pde_lab.solvers.spectral import ETDRK4Coefficients, etdrk4_step
    from pde_lab.solvers.vorticity import VorticityBox

    box = VorticityBox(n, 1.0, device)
    w = _fields(n, batch, device)
    zero = torch.zeros((), dtype=torch.complex128, device=device)
    w_hat = torch.where(box.mask, box.forward(w), zero)
    # The solver's own pieces, as solve_vorticity.advance assembles them: ν = 1e-3, the FNO forcing;
    # on CPU one member at a time, on CUDA the whole batch at once.
    c = box.coefficients(1e-3, 1e-3)
    x = np.arange(n) / n
    f = torch.from_numpy(fno_forcing(*np.meshgrid(x, x, indexing="ij"))).to(device)
    forcing = c.forcing_terms(torch.where(box.mask, box.forward(f[None]), zero).reshape(1, -1))
    k = (group or box.cpu_group) if device == "cpu" else batch
    groups = [slice(i, min(i + k, batch)) for i in range(0, batch, k)]
    plans = []
    for g in groups:
        k = g.stop - g.start
        cg = ETDRK4Coefficients(c.dt, *(getattr(c, name).expand(k, -1).contiguous()
                                        for name in ("E", "E2", "Q", "f1", "f2", "f3")), real=True)
        plans.append((w_hat[g].reshape(k, -1), box.step_term(k), cg, tuple(t.expand(k, -1).contiguous() for t in forcing)))

    def step():
        for state, term, cg, fg in plans:
            etdrk4_step(state, term, cg, forcing=fg)

    m, s = n // 2 + 1, (n, n)
    spec4 = torch.randn((batch, 4, n, m), dtype=torch.complex128, device=device)
    phys = torch.randn((batch, n, n), dtype=torch.float64, device=device)
    out = torch.empty((batch, n, m), dtype=torch.complex128, device=device)

    def floor_solver():
        # The transforms of the step's four evaluations of the nonlinear term, called exactly as
        # VorticityBox.tendency calls them: per member on CPU, batched on CUDA.
        for _ in range(4):
            if device == "cpu":
                for i in range(batch):
                    torch.fft.irfft2(spec4[i], s=s)
                    torch.fft.rfft2(phys[i], out=out[i])
            else:
                torch.fft.irfft2(spec4, s=s)
                torch.fft.rfft2(phys)

    def floor_batched():
        for _ in range(4):
            torch.fft.irfft2(spec4, s=s)
            torch.fft.rfft2(phys)

    fns = {"step": step, "floor": floor_solver, "floor_batched": floor_batched}
    for fn in fns.values():
        fn()  # warm-up (plans, allocator)
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    # Interleaved, so that a change of the machine's speed hits all three alike.
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name] += time_calls(fn, 1, device, cpu[name])
    return {**times, **{f"{k}_cpu": v for k, v in cpu.items()}}


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
    p.add_argument("--group", type=int, default=None, help="members stepped together on CPU (default: the solver's)")
    a = p.parse_args(argv)
    pin_threads(a.threads)
    a.device = checked_device(p, a.device)
    print("\n".join(machine_lines(a.device)))
    rows = []
    for n in a.sizes:
        for b in a.batches:
            r = bench_step(n, b, a.device, a.repeats, a.group)
            s, f, fb = (median(r[k]) for k in ("step", "floor", "floor_batched"))
            lo, hi = iqr(r["step"])
            # Ratios of interleaved pairs: a change of the machine's speed cancels within a pair.
            wall = median([x / y for x, y in zip(r["step"], r["floor"])])
            cpu = median([x / y for x, y in zip(r["step_cpu"], r["floor_cpu"])])
            rows.append([n, b, f"{s * 1e3:.2f} ({lo * 1e3:.2f}-{hi * 1e3:.2f})", f"{s / b * 1e3:.3f}",
                         f"{f * 1e3:.2f}", f"{fb * 1e3:.2f}", f"{wall:.2f}", f"{cpu:.2f}"])
            print(f"  n={n} B={b}: step {s * 1e3:.2f} ms, step / floor {wall:.2f} (CPU time {cpu:.2f})", flush=True)
    print()
    print(table(["n", "B", "step ms (IQR)", "ms / member", "FFT floor ms (solver calls)",
                 "FFT floor ms (batched)", "step / floor (wall)", "step / floor (CPU)"], rows))
    if a.trajectory:
        secs, info = bench_trajectory(a.device)
        print(f"\nFNO nu=1e-3 trajectory (T = 50, stored 64^2, solver 256^2): {secs:.1f} s wall, {info}")


if __name__ == "__main__":
    main()
