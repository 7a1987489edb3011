"""Burgers data generation: cost per trajectory of pde_lab against py-pde at equal accuracy.

The problem is the dataset's: ``u_t + (u²/2)_x = ν u_xx`` on the periodic ``[0, 1)``, ``T = 1``,
initial states drawn with pde_lab's sampler (``Burgers().sample``) on the stored 256-point grid, with

* case ``nu0.1``: level ``fno`` (the FNO paper's data, ν = 0.1);
* case ``nu0.01``: the ``medium`` level's initial states with ν fixed at 0.01 (the level's lower end).

Accuracy is the relative L2 error of ``u(·, T=1)`` on the 256 stored points against a reference:
pde_lab's ETDRK4 pseudo-spectral solver (``burgers_etdrk4``) on 2048 points with 5120 steps
(dt = 1.95e-4), checked against 4096 points and dt/2 on a subset (the difference is printed). The
initial state on every finer grid is the trigonometric interpolant of the 256 stored values.

* pde_lab: ``get_pde("burgers").solve(instances, grid)``, batched; its default settings, and looser
  ones (larger CFL, fewer minimum steps) to reach a given accuracy with less work.
* py-pde: ``pde.PDE({"u": "-0.5 * d_dx(u**2) + nu * laplace(u)"})`` (second-order central finite
  differences) on a periodic grid of N cells shifted so that cell centres fall on the stored points;
  stepper ``scipy`` (``solve_ivp``, BDF, with the periodic tridiagonal ``jac_sparsity`` so the
  Jacobian costs three right-hand sides) — the fastest of py-pde's steppers here by far: its
  adaptive explicit Runge–Kutta is limited by the diffusive stability bound ``dt ≲ h²/ν`` (34,635
  steps, 9 s per trajectory at N = 512, ν = 0.1, against 0.3 s for BDF). One trajectory per solve
  call, as py-pde solves one field at a time.

Sub-commands::

    python benchmarks/burgers_vs_pypde.py compare [--cases nu0.1 nu0.01] [--n-traj 64] [--sweep-traj 8]
    python benchmarks/burgers_vs_pypde.py pdelab-set --case nu0.1 [--n-traj 64]         # one process, for
    python benchmarks/burgers_vs_pypde.py pypde-set  --case nu0.1 --N 1024 --rtol 1e-8   # whole-process timing

``compare`` prints, per case: the reference check, a cost/accuracy sweep of both tools, and the
equal-accuracy table (for each target error, the cheapest setting of each tool whose worst error
over the trajectories meets it, and the ratio of per-trajectory times). py-pde's numba compilation
happens on the first solve on a new grid: its time is reported separately.

Needs py-pde (``pip install py-pde``; see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clock, check_refines, machine_lines, median, pin_threads, ratio_txt, table  # noqa: E402

N_STORED = 256
CASES = {
    "nu0.1": dict(level="fno", nu=0.1, label="level fno, nu = 0.1"),
    "nu0.01": dict(level="medium", nu=0.01, label="level medium initial states, nu = 0.01"),
}
REF_N, REF_SPI = 2048, 512          # reference: 2048 points, 512 steps per output interval (10 intervals)
CHECK_N, CHECK_SPI = 4096, 1024     # the reference's own check
# Settings swept (pde_lab: Burgers(cfl, min_steps_per_interval); py-pde: grid N, BDF rtol).
PDELAB_SETTINGS = [(1.0, 8), (2.0, 4), (4.0, 1), (8.0, 1), (16.0, 1), (32.0, 1)]
PYPDE_SETTINGS = [(256, 1e-6), (512, 1e-6), (1024, 1e-7), (2048, 1e-8), (4096, 1e-9), (8192, 1e-10)]
TARGETS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


# ---- problem -----------------------------------------------------------------------------------
def instances(case: str, n_traj: int, seed: int = 2026):
    """``n_traj`` Burgers instances of ``case``; sample ``i`` uses ``SeedSequence([seed, i])``."""
    from pde_lab.pdes import get_pde

    pde = get_pde("burgers")
    grid = pde.grid(N_STORED)
    c = CASES[case]
    out = []
    for i in range(n_traj):
        inst = pde.sample(c["level"], np.random.default_rng(np.random.SeedSequence([seed, i])), grid)
        inst.params["nu"] = c["nu"]
        out.append(inst)
    return out


def trig_upsample(u: np.ndarray, n_fine: int) -> np.ndarray:
    """Trigonometric interpolant of periodic samples ``(..., n)`` on ``n_fine`` points (Nyquist mode halved)."""
    n = u.shape[-1]
    c = np.fft.rfft(u, axis=-1) / n
    if n % 2 == 0:
        c[..., -1] *= 0.5
    fine = np.zeros(u.shape[:-1] + (n_fine // 2 + 1,), dtype=np.complex128)
    fine[..., : c.shape[-1]] = c
    return np.fft.irfft(fine * n_fine, n=n_fine, axis=-1)


def reference(insts, n_fine: int, spi: int, chunk: int = 16) -> np.ndarray:
    """``u(·, 1)`` on the stored grid from ETDRK4 on ``n_fine`` points, ``spi`` steps per interval."""
    import torch
    from pde_lab.pdes.burgers import burgers_etdrk4

    u0 = np.stack([i.inputs["u"] for i in insts])
    nu = [float(i.params["nu"]) for i in insts]
    out = []
    for s in range(0, len(insts), chunk):
        u, _, _ = burgers_etdrk4(torch.from_numpy(trig_upsample(u0[s:s + chunk], n_fine)), nu[s:s + chunk],
                                 1.0, 10, spi)
        out.append(u[:, -1, :: n_fine // N_STORED].numpy())
    return np.concatenate(out)


def rel_err(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - ref, axis=-1) / np.linalg.norm(ref, axis=-1)


# ---- pde_lab -----------------------------------------------------------------------------------
def pdelab_solve(insts, cfl: float = 1.0, min_steps: int = 8):
    """``(u(·,1) (B, 256), (wall, CPU) seconds, mean steps)`` of one batched solve."""
    from pde_lab.pdes.burgers import Burgers

    pde = Burgers(cfl=cfl, min_steps_per_interval=min_steps)
    grid = pde.grid(N_STORED)
    clock = Clock()
    res = pde.solve(insts, grid)
    return res.fields["u"][:, -1], clock.lap(), float(np.mean(res.steps))


# ---- py-pde ------------------------------------------------------------------------------------
class PyPDE:
    """py-pde's Burgers solver on N cells; ``solve(u0_256)`` -> ``u(·, 1)`` on the stored points."""

    def __init__(self, n: int, nu: float, rtol: float):
        import pde
        import scipy.sparse as sp

        self.pde, self.n, self.rtol = pde, n, rtol
        # Cell centres (i + 1/2) h + a with a = -h/2 fall on the stored points i/256.
        self.grid = pde.CartesianGrid([[-0.5 / n, 1.0 - 0.5 / n]], [n], periodic=True)
        self.eq = pde.PDE({"u": f"-0.5 * d_dx(u**2) + {nu!r} * laplace(u)"})
        band = sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], shape=(n, n), format="lil")
        band[0, n - 1] = band[n - 1, 0] = 1
        self.jac_sparsity = band.tocsr()

    def solve(self, u0: np.ndarray) -> np.ndarray:
        state = self.pde.ScalarField(self.grid, trig_upsample(u0, self.n))
        res = self.eq.solve(state, t_range=1.0, solver="scipy", method="BDF", rtol=self.rtol, atol=self.rtol * 1e-2,
                            jac_sparsity=self.jac_sparsity, tracker=None, backend="numba")
        return np.asarray(res.data)[:: self.n // N_STORED]


def pypde_run(insts, n: int, rtol: float):
    """``(u(·,1) (B, 256), [(wall, CPU) per solve], (wall, CPU) of the set-up)``.

    The first solve on a new grid includes numba's compilation of the right-hand side.
    """
    clock = Clock()
    solver = PyPDE(n, float(insts[0].params["nu"]), rtol)
    setup = clock.lap()
    outs, times = [], []
    for inst in insts:
        outs.append(solver.solve(inst.inputs["u"]))
        times.append(clock.lap())
    return np.stack(outs), times, setup


# ---- sub-commands ------------------------------------------------------------------------------
def fmt(x: float) -> str:
    return f"{x:.2e}"


def cmd_compare(a) -> None:
    import pde as pypde

    print("\n".join(machine_lines("cpu", [("py-pde", pypde.__version__),
                                          ("trajectories", f"{a.n_traj} per case for the equal-accuracy timings, "
                                                           f"first {a.sweep_traj} for the py-pde sweep")])))
    for case in a.cases:
        c = CASES[case]
        insts = instances(case, a.n_traj)
        t0 = time.perf_counter()
        cache = Path(a.cache) / f"burgers_ref_{case}_{a.n_traj}_{a.check_traj}.npz" if a.cache else None
        if cache is not None and cache.is_file():
            stored = np.load(cache)
            ref, check = stored["ref"], float(stored["check"])
        else:
            ref = reference(insts, REF_N, REF_SPI)
            k = min(a.check_traj, a.n_traj)
            check = rel_err(ref[:k], reference(insts[:k], CHECK_N, CHECK_SPI)).max()
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, ref=ref, check=check)
        ref_s = time.perf_counter() - t0
        k = min(a.check_traj, a.n_traj)
        print(f"\n## {case}: {c['label']}, {a.n_traj} trajectories")
        print(f"reference: ETDRK4 on {REF_N} points, dt = {1 / (10 * REF_SPI):.3g} ({ref_s:.0f} s); worst relative "
              f"difference to {CHECK_N} points, dt = {1 / (10 * CHECK_SPI):.3g} on {k} trajectories: {check:.1e}")

        # pde_lab sweep: all n_traj, batched; median of `repeat` solves. Times are CPU seconds.
        rows_pl, pl = [], []
        for cfl, ms in PDELAB_SETTINGS:
            setting = f"cfl={cfl:g}, min_steps={ms}"
            try:
                runs = [pdelab_solve(insts, cfl, ms) for _ in range(a.repeat)]
            except RuntimeError as err:
                rows_pl.append([setting, "-", "-", "-", "-", f"blew up: {str(err)[:40]}"])
                continue
            u, steps = runs[0][0], runs[0][2]
            wall = median([r[1][0] for r in runs]) / len(insts)
            cpu = median([r[1][1] for r in runs]) / len(insts)
            e = rel_err(u, ref)
            pl.append(dict(setting=setting, err=e.max(), sec=cpu, default=(cfl, ms) == (1.0, 8)))
            rows_pl.append([setting + (" (default)" if (cfl, ms) == (1.0, 8) else ""), f"{steps:.0f}",
                            fmt(np.median(e)), fmt(e.max()), f"{1e3 * cpu:.1f}", f"{1e3 * wall:.1f}"])
        print(f"\npde_lab, batched solve of {len(insts)} trajectories (median of {a.repeat} solves):")
        print(table(["setting", "mean steps", "median error", "max error", "CPU ms / trajectory",
                     "wall ms / trajectory"], rows_pl))

        # py-pde sweep on the first sweep_traj trajectories.
        rows_pp, pp = [], []
        sub = insts[: a.sweep_traj]
        for n, rtol in PYPDE_SETTINGS:
            if n > a.max_n:
                continue
            u, times, setup = pypde_run(sub, n, rtol)
            e = rel_err(u, ref[: len(sub)])
            rest = times[1:] or times
            cpu, wall = median([t[1] for t in rest]), median([t[0] for t in rest])
            pp.append(dict(setting=f"N={n}, BDF rtol={rtol:g}", n=n, rtol=rtol, err=e.max(), sec=cpu))
            rows_pp.append([f"N={n}, BDF rtol={rtol:g}", fmt(np.median(e)), fmt(e.max()), f"{1e3 * cpu:.0f}",
                            f"{1e3 * wall:.0f}", f"{times[0][1]:.1f}"])
        print(f"\npy-pde sweep, {len(sub)} trajectories, one solve each (times: median over all but the first):")
        print(table(["setting", "median error", "max error", "CPU ms / trajectory", "wall ms / trajectory",
                     "first solve incl. numba compile, CPU [s]"], rows_pp))

        # Equal accuracy: for each target, the cheapest setting of each tool meeting it (worst error).
        rows_eq = []
        default_err = next((p["err"] for p in pl if p["default"]), None)
        targets = sorted(set(TARGETS + ([default_err] if default_err else [])), reverse=True)
        for target in targets:
            best_pl = min((p for p in pl if p["err"] <= target), key=lambda p: p["sec"], default=None)
            best_pp = min((p for p in pp if p["err"] <= target), key=lambda p: p["sec"], default=None)
            est = _extrapolate(pp, target) if best_pp is None and len(pp) >= 2 else None
            if best_pp is not None and a.n_traj > len(sub):  # time the chosen py-pde setting on the full set
                key = (best_pp["n"], best_pp["rtol"])
                if key not in a._full:
                    u, times, setup = pypde_run(insts, *key)
                    a._full[key] = dict(err=rel_err(u, ref).max(), sec=median([t[1] for t in times[1:]]),
                                        first=times[0][1], total=sum(t[1] for t in times) + setup[1],
                                        ntraj=len(insts))
                full = a._full[key]
                pp_txt = (f"{best_pp['setting']}: {1e3 * full['sec']:.0f} ms (max error {full['err']:.1e} on "
                          f"{full['ntraj']}; whole set {full['total']:.1f} s, first solve with numba compile "
                          f"{full['first']:.1f} s)")
                pp_sec = full["sec"]
            elif best_pp is not None:
                pp_txt, pp_sec = f"{best_pp['setting']}: {1e3 * best_pp['sec']:.0f} ms", best_pp["sec"]
            else:
                pp_txt = "not reached" + (f" (extrapolated: N ≈ {est[0]:.0f}, ~{est[1]:.2g} s)" if est else "")
                pp_sec = est[1] if est else None
            pl_txt = (f"{best_pl['setting']}: {1e3 * best_pl['sec']:.1f} ms (max error {best_pl['err']:.1e})"
                      if best_pl else "not reached")
            ratio = (ratio_txt(pp_sec / best_pl['sec']) + (" (extrapolated)" if best_pp is None else "")
                     if best_pl and pp_sec else "-")
            rows_eq.append([f"{target:.2e}" + (" (pde_lab default)" if target == default_err else ""), pl_txt,
                            pp_txt, ratio])
        print(f"\nequal accuracy ({case}): for each target, the cheapest setting whose worst error over the "
              f"trajectories is <= target; CPU time per trajectory")
        print(table(["target", "pde_lab", "py-pde", "py-pde / pde_lab"], rows_eq))
        a._full.clear()


def _extrapolate(pp, target):
    """N and seconds per trajectory py-pde would need for ``target``, from its two finest grids:
    error ~ N^-p and time ~ N^q fitted through them."""
    p1, p2 = sorted(pp, key=lambda p: p["n"])[-2:]
    if not (p2["err"] < p1["err"]):
        return None
    order = math.log(p1["err"] / p2["err"]) / math.log(p2["n"] / p1["n"])
    n = p2["n"] * (p2["err"] / target) ** (1 / order)
    growth = math.log(p2["sec"] / p1["sec"]) / math.log(p2["n"] / p1["n"])
    return n, p2["sec"] * (n / p2["n"]) ** growth


def cmd_pdelab_set(a) -> None:
    insts = instances(a.case, a.n_traj)
    u, (wall, cpu), steps = pdelab_solve(insts, a.cfl, a.min_steps)
    print(f"pde_lab {a.case}: {a.n_traj} trajectories: wall {wall:.2f} s, CPU {cpu:.2f} s "
          f"({1e3 * cpu / a.n_traj:.1f} ms each), mean steps {steps:.0f}")


def cmd_pypde_set(a) -> None:
    insts = instances(a.case, a.n_traj)
    u, times, setup = pypde_run(insts, a.N, a.rtol)
    cpu = [t[1] for t in times]
    print(f"py-pde {a.case}: {a.n_traj} trajectories, N={a.N}, rtol={a.rtol:g}: CPU total {sum(cpu) + setup[1]:.2f} s; "
          f"first solve {cpu[0]:.2f} s; median of the others {1e3 * median(cpu[1:] or cpu):.0f} ms")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    c.add_argument("--n-traj", type=int, default=64)
    c.add_argument("--sweep-traj", type=int, default=8, help="trajectories per py-pde sweep setting")
    c.add_argument("--check-traj", type=int, default=8, help="trajectories for the reference's own check")
    c.add_argument("--repeat", type=int, default=3, help="pde_lab solves per setting (median)")
    c.add_argument("--max-n", type=int, default=8192, help="finest py-pde grid in the sweep")
    c.add_argument("--cache", help="directory to keep the reference solutions in between runs")
    s = sub.add_parser("pdelab-set")
    s.add_argument("--case", choices=list(CASES), default="nu0.1")
    s.add_argument("--n-traj", type=int, default=64)
    s.add_argument("--cfl", type=float, default=1.0)
    s.add_argument("--min-steps", type=int, default=8)
    q = sub.add_parser("pypde-set")
    q.add_argument("--case", choices=list(CASES), default="nu0.1")
    q.add_argument("--n-traj", type=int, default=64)
    q.add_argument("--N", type=int, default=1024)
    q.add_argument("--rtol", type=float, default=1e-8)
    for x in (c, s, q):
        x.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.cmd == "pypde-set":
        check_refines(p, a.N, N_STORED, a.case)
    a._full = {}
    pin_threads(a.threads)
    {"compare": cmd_compare, "pdelab-set": cmd_pdelab_set, "pypde-set": cmd_pypde_set}[a.cmd](a)


if __name__ == "__main__":
    main()
