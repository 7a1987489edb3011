"""Allen–Cahn 1D and heat 2D data generation: cost per trajectory of pde_lab against py-pde at equal accuracy.

The method is that of ``burgers_vs_pypde.py`` (see its docstring and benchmarks/README.md): the same
initial states for both tools (pde_lab's sampler on the stored grid; on a finer grid the
trigonometric interpolant of the stored values), errors of the final stored frame ``u(·, T)`` on the
stored points against a fine reference, a sweep of each tool's settings, and for each target error
the cheapest setting of each tool whose **worst** error over the trajectories meets it.

Cases (the physical parameter is fixed per case so that py-pde compiles one right-hand side per grid):

* ``ac_nu1e-3``: ``allen_cahn_1d``, level ``easy`` initial states, ``ν = 1e-3`` (the level's lower end),
  ``u_t = ν u_xx + u − u³`` on the periodic ``[0, 1)``, ``T = 10``, 256 stored points;
* ``ac_nu2e-4``: level ``medium`` initial states, ``ν = 2e-4`` (its lower end, interfaces ``√(2ν) = 0.02`` wide);
* ``heat_k5e-3``: ``heat_2d``, level ``medium`` initial states, ``κ = 5e-3``, ``u_t = κ Δu`` on the
  periodic unit square, ``T = 1``, 64² stored points.

References: Allen–Cahn, pde_lab's ETDRK4 forced onto 2048 points with ``dt = 1/512``, checked against
4096 points and ``dt = 1/1024`` on a subset (difference printed); heat, the exact solution
(:func:`pde_lab.pdes.heat.heat_solution`, each Fourier mode times ``exp(−κ|k|²T)``).

* pde_lab: ``get_pde(...).solve(instances, grid)``, batched; for Allen–Cahn also looser step settings
  (``AllenCahn1D(reaction_number, stability_number, min_steps_per_interval)``). Heat is exact at its
  default (one exponential step per stored interval), so it has no looser setting.
* py-pde: ``PDE({"u": "nu * laplace(u) + u - u**3"})`` (the expression of py-pde's ``AllenCahnPDE``
  with ``interface_width = ν``) and ``DiffusionPDE(diffusivity=κ)``, second-order central differences
  on N (or N²) cells placed so that cell centres fall on the stored points, numba backend, one
  trajectory per call of a stepper built once per grid (``make_stepper``; see :class:`PyPDE`); steppers ``scipy`` (``solve_ivp`` BDF with the periodic stencil's
  ``jac_sparsity``) and ``runge-kutta`` (adaptive explicit RK45, limited by diffusive stability).

Sub-commands::

    python benchmarks/semilinear_vs_pypde.py compare [--cases ac_nu1e-3 heat_k5e-3] [--n-traj 64] [--sweep-traj 8]
    python benchmarks/semilinear_vs_pypde.py pypde-set --case ac_nu1e-3 --stepper bdf --N 1024 --tol 1e-7 --out F.npz
    python benchmarks/semilinear_vs_pypde.py pdelab-set --case ac_nu1e-3 --out F.npz

``compare`` re-times the cheapest py-pde setting per target on all ``--n-traj`` trajectories with
``pypde-set`` in a **fresh process**, so that the whole-set figure includes py-pde's numba
compilation as a new user pays it (imports are reported separately), and ``pdelab-set`` likewise.

Needs py-pde (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clock, check_refines, machine_lines, median, pin_threads, ratio_txt, table  # noqa: E402
from burgers_vs_pypde import _extrapolate, rel_err, trig_upsample  # noqa: E402


@dataclass(frozen=True)
class Case:
    pde: str                     # pde_lab registry name
    level: str                   # initial states drawn from this level
    param: str                   # the fixed physical parameter
    value: float
    n_stored: int
    label: str
    pdelab_settings: tuple = ()  # constructor kwargs of the looser pde_lab settings (first = default)
    pypde_settings: tuple = ()   # (stepper, N, tolerance)

    @property
    def dim(self) -> int:
        return 1 if self.pde.endswith("_1d") else 2


# ETDRK4 step dt = 1/2^p per time unit: reaction_number bounds 3 dt, stability_number bounds 3 dt max|u0|^2
# (max|u0| ~ 1.5 for these initial states), min_steps the steps per stored interval (Δt_out = 1).
AC_PDELAB = ({}, dict(reaction_number=0.2, stability_number=2.0, min_steps_per_interval=4),
             dict(reaction_number=0.4, stability_number=4.0, min_steps_per_interval=2),
             dict(reaction_number=0.8, stability_number=8.0, min_steps_per_interval=1),
             dict(reaction_number=1.6, stability_number=16.0, min_steps_per_interval=1),
             dict(reaction_number=3.2, stability_number=32.0, min_steps_per_interval=1))
AC_PYPDE = (("bdf", 256, 1e-6), ("bdf", 512, 1e-7), ("bdf", 1024, 1e-8), ("bdf", 2048, 1e-9),
            ("bdf", 4096, 1e-10), ("rk", 256, 1e-6), ("rk", 512, 1e-7), ("rk", 1024, 1e-8), ("rk", 2048, 1e-9),
            ("rk", 4096, 1e-10))
# BDF's sparse LU of the 2D Laplacian costs 6.5 s per trajectory at N = 128 already, RK45 is far cheaper.
HEAT_PYPDE = (("bdf", 64, 1e-6), ("bdf", 128, 1e-7), ("rk", 64, 1e-6), ("rk", 128, 1e-7), ("rk", 256, 1e-8),
              ("rk", 512, 1e-9))
CASES = {
    "ac_nu1e-3": Case("allen_cahn_1d", "easy", "nu", 1e-3, 256, "allen_cahn_1d, level easy initial states, nu = 1e-3",
                      AC_PDELAB, AC_PYPDE),
    "ac_nu2e-4": Case("allen_cahn_1d", "medium", "nu", 2e-4, 256,
                      "allen_cahn_1d, level medium initial states, nu = 2e-4", AC_PDELAB, AC_PYPDE),
    "heat_k5e-3": Case("heat_2d", "medium", "kappa", 5e-3, 64, "heat_2d, level medium initial states, kappa = 5e-3",
                       ({},), HEAT_PYPDE),
}
AC_REF_N, AC_REF_SPI = 2048, 512       # reference: points, steps per unit time
AC_CHECK_N, AC_CHECK_SPI = 4096, 1024  # the reference's own check
TARGETS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


# ---- problem -----------------------------------------------------------------------------------
def instances(case: Case, n_traj: int, seed: int = 2026):
    """``n_traj`` instances of ``case``; sample ``i`` uses ``SeedSequence([seed, i])``."""
    from pde_lab.pdes import get_pde

    pde = get_pde(case.pde)
    grid = pde.grid(case.n_stored)
    out = []
    for i in range(n_traj):
        inst = pde.sample(case.level, np.random.default_rng(np.random.SeedSequence([seed, i])), grid)
        inst.params[case.param] = case.value
        out.append(inst)
    return out


def upsample(u: np.ndarray, n_fine: int, dim: int) -> np.ndarray:
    """Tensor-product trigonometric interpolant of ``(..., *[n]*dim)`` periodic samples on ``n_fine`` points per axis."""
    for ax in range(-dim, 0):
        u = np.moveaxis(trig_upsample(np.moveaxis(u, ax, -1), n_fine), -1, ax)
    return u


def final_rel_err(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Relative L2 error per trajectory of ``(B, *space)`` arrays."""
    b = a.shape[0]
    return rel_err(a.reshape(b, -1), ref.reshape(b, -1))


def _ac_fixed(n_solver: int, steps_per_unit: int):
    """AllenCahn1D forced onto ``n_solver`` points and ``steps_per_unit`` steps per stored interval."""
    from pde_lab.pdes.allen_cahn import AllenCahn1D

    class Fixed(AllenCahn1D):
        def solver_resolution(self, params, u0, n):
            return n_solver

    return Fixed(min_steps_per_interval=steps_per_unit, max_solver_resolution=n_solver)


def reference(case: Case, insts, fine: bool = False, chunk: int = 16) -> np.ndarray:
    """``u(·, T)`` on the stored grid, ``(B, *space)``: exact for heat, fine ETDRK4 for Allen–Cahn."""
    if case.pde.startswith("heat"):
        from pde_lab.pdes.heat import heat_solution

        return np.stack([heat_solution(i.inputs["u"], i.params["kappa"], i.params["t_final"]) for i in insts])
    n, spi = (AC_CHECK_N, AC_CHECK_SPI) if fine else (AC_REF_N, AC_REF_SPI)
    pde = _ac_fixed(n, spi)
    grid = pde.grid(case.n_stored)
    return np.concatenate([pde.solve(insts[s:s + chunk], grid).fields["u"][:, -1]
                           for s in range(0, len(insts), chunk)])


# ---- pde_lab -----------------------------------------------------------------------------------
def pdelab_solve(case: Case, insts, kwargs: dict):
    """``(u(·,T) (B, *space), (wall, CPU) seconds, mean steps)`` of one batched solve."""
    from pde_lab.pdes import PDES

    pde = PDES.get(case.pde)(**kwargs)
    grid = pde.grid(case.n_stored)
    clock = Clock()
    res = pde.solve(insts, grid)
    return res.fields["u"][:, -1], clock.lap(), float(np.mean(res.steps))


def pdelab_label(kwargs: dict) -> str:
    if not kwargs:
        return "default"
    short = {"reaction_number": "rn", "stability_number": "sn", "min_steps_per_interval": "min_steps"}
    return ", ".join(f"{short.get(k, k)}={v:g}" for k, v in kwargs.items())


# ---- py-pde ------------------------------------------------------------------------------------
def periodic_stencil_pattern(n: int, dim: int):
    """Sparsity of the periodic 3-point (1D) or 5-point (2D) Laplacian on ``n^dim`` cells, C order."""
    import scipy.sparse as sp

    band = sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], shape=(n, n), format="lil")
    band[0, n - 1] = band[n - 1, 0] = 1
    band = band.tocsr()
    if dim == 1:
        return band
    eye = sp.identity(n, format="csr")
    return (sp.kron(band, eye) + sp.kron(eye, band)).tocsr()


class PyPDE:
    """py-pde's solver of ``case`` on N cells per axis; ``solve(u0)`` -> ``u(·, T)`` on the stored points.

    The stepper is built once per grid with the public ``SolverBase.make_stepper`` and reused for
    every trajectory: ``PDEBase.solve`` builds (and, for the explicit steppers, numba-compiles) a new
    stepping loop on every call, which costs seconds per trajectory (e.g. 8 s of compilation against
    8 ms of stepping for 2D heat at N = 64 with RK45).
    """

    def __init__(self, case: Case, n: int, stepper: str, tol: float, t_final: float):
        import pde
        from pde.solvers import RungeKuttaSolver, ScipySolver

        self.pde, self.case, self.n, self.t_final = pde, case, n, t_final
        # Cell centres (i + 1/2) h + a with a = -h/2 fall on the stored points i/n_stored.
        self.grid = pde.CartesianGrid([[-0.5 / n, 1.0 - 0.5 / n]] * case.dim, [n] * case.dim, periodic=True)
        if case.pde.startswith("heat"):
            eq = pde.DiffusionPDE(diffusivity=case.value)
        else:
            eq = pde.PDE({"u": f"{case.value!r} * laplace(u) + u - u**3"})
        if stepper == "bdf":
            solver = ScipySolver(eq, backend="numba", method="BDF", rtol=tol, atol=tol * 1e-2,
                                 jac_sparsity=periodic_stencil_pattern(n, case.dim))
        else:
            solver = RungeKuttaSolver(eq, backend="numba", adaptive=True, tolerance=tol)
        self.solver = solver
        self.stepper = solver.make_stepper(pde.ScalarField(self.grid), dt=1e-3)

    def solve(self, u0: np.ndarray) -> np.ndarray:
        state = self.pde.ScalarField(self.grid, upsample(u0, self.n, self.case.dim))
        t = self.stepper(state, 0.0, self.t_final)
        if not abs(t - self.t_final) < 1e-9 * self.t_final:
            raise RuntimeError(f"py-pde stopped at t = {t}, not {self.t_final}")
        s = self.n // self.case.n_stored
        return np.asarray(state.data)[(slice(None, None, s),) * self.case.dim]


def pypde_run(case: Case, insts, stepper: str, n: int, tol: float):
    """``(u(·,T) (B, *space), [(wall, CPU) per solve], (wall, CPU) of the set-up)``.

    The set-up builds the stepper (numba compilation of the explicit stepping loop); the first solve
    on a new grid includes the compilation of the right-hand side.
    """
    clock = Clock()
    solver = PyPDE(case, n, stepper, tol, float(insts[0].params["t_final"]))
    setup = clock.lap()
    outs, times = [], []
    for inst in insts:
        outs.append(solver.solve(inst.inputs["u"]))
        times.append(clock.lap())
    return np.stack(outs), times, setup


def pypde_label(stepper: str, n: int, tol: float) -> str:
    return f"N={n}, " + (f"BDF rtol={tol:g}" if stepper == "bdf" else f"RK45 tol={tol:g}")


# ---- fresh-process sets ------------------------------------------------------------------------
def fresh_process(args: list[str]) -> dict:
    """Run a ``*-set`` sub-command of this script in a new interpreter; its recorded timings and output."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.npz"
        env = dict(os.environ)
        subprocess.run([sys.executable, str(Path(__file__).resolve())] + args + ["--out", str(out)], check=True, env=env)
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


def cmd_pypde_set(a) -> None:
    c0 = time.process_time()
    import pde  # noqa: F401  (timed: the import is part of what a new process pays)

    imports = time.process_time() - c0
    case = CASES[a.case]
    insts = instances(case, a.n_traj)
    u, times, setup = pypde_run(case, insts, a.stepper, a.N, a.tol)
    cpu = np.array([t[1] for t in times])
    np.savez(a.out, u=u, cpu=cpu, wall=np.array([t[0] for t in times]), setup_cpu=setup[1], import_cpu=imports)
    print(f"py-pde {a.case} {pypde_label(a.stepper, a.N, a.tol)}: {a.n_traj} trajectories, import {imports:.1f} s, "
          f"set-up {setup[1]:.2f} s, first solve {cpu[0]:.2f} s, median of the others {1e3 * np.median(cpu[1:]):.1f} ms, "
          f"total {setup[1] + cpu.sum():.1f} s CPU", flush=True)


def cmd_pdelab_set(a) -> None:
    c0 = time.process_time()
    import pde_lab.pdes  # noqa: F401

    imports = time.process_time() - c0
    case = CASES[a.case]
    kwargs = json.loads(a.kwargs)
    insts = instances(case, a.n_traj)
    u, (wall, cpu), steps = pdelab_solve(case, insts, kwargs)
    np.savez(a.out, u=u, cpu=np.array([cpu]), wall=np.array([wall]), import_cpu=imports, steps=steps)
    print(f"pde_lab {a.case} {pdelab_label(kwargs)}: {a.n_traj} trajectories in one batch: import {imports:.1f} s, "
          f"solve {cpu:.2f} s CPU ({1e3 * cpu / a.n_traj:.2f} ms each), mean steps {steps:.0f}", flush=True)


# ---- compare -----------------------------------------------------------------------------------
def fmt(x: float) -> str:
    return f"{x:.2e}"


def cmd_compare(a) -> None:
    import pde as pypde

    print("\n".join(machine_lines("cpu", [("py-pde", pypde.__version__),
                                          ("trajectories", f"{a.n_traj} per case; py-pde sweep on the first "
                                                           f"{a.sweep_traj}")])), flush=True)
    for name in a.cases:
        case = CASES[name]
        insts = instances(case, a.n_traj)
        clock = Clock()
        ref = reference(case, insts)
        k = min(a.check_traj, a.n_traj)
        if case.pde.startswith("heat"):
            ref_txt = "exact solution (each Fourier mode of the stored-grid interpolant times exp(-kappa |k|^2 T))"
        else:
            check = final_rel_err(ref[:k], reference(case, insts[:k], fine=True)).max()
            ref_txt = (f"pde_lab ETDRK4 on {AC_REF_N} points, dt = 1/{AC_REF_SPI}; worst relative difference to "
                       f"{AC_CHECK_N} points, dt = 1/{AC_CHECK_SPI} on {k} trajectories: {check:.1e}")
        print(f"\n## {name}: {case.label}, T = {insts[0].params['t_final']:g}, {a.n_traj} trajectories")
        print(f"reference: {ref_txt} ({clock.lap()[1]:.0f} s CPU)", flush=True)

        rows, pl = [], []
        for kw in case.pdelab_settings:
            label = pdelab_label(kw)
            try:
                runs = [pdelab_solve(case, insts, kw) for _ in range(a.repeat)]
            except (RuntimeError, ValueError) as err:
                rows.append([label, "-", "-", "-", "-", f"failed: {str(err)[:50]}"])
                continue
            e = final_rel_err(runs[0][0], ref)
            cpu = median([r[1][1] for r in runs]) / len(insts)
            wall = median([r[1][0] for r in runs]) / len(insts)
            pl.append(dict(setting=label, kwargs=kw, err=e.max(), sec=cpu))
            rows.append([label, f"{runs[0][2]:.0f}", fmt(np.median(e)), fmt(e.max()), f"{1e3 * cpu:.2f}",
                         f"{1e3 * wall:.2f}"])
        print(f"\npde_lab, batched solve of {len(insts)} trajectories (median of {a.repeat} solves):")
        print(table(["setting", "mean steps", "median error", "max error", "CPU ms / trajectory",
                     "wall ms / trajectory"], rows), flush=True)

        rows, pp = [], []
        sub = insts[: a.sweep_traj]
        for stepper, n, tol in case.pypde_settings:
            if n > a.max_n or (stepper == "rk" and n > a.max_n_rk):
                continue
            u, times, setup = pypde_run(case, sub, stepper, n, tol)
            e = final_rel_err(u, ref[: len(sub)])
            rest = times[1:] or times
            cpu, wall = median([t[1] for t in rest]), median([t[0] for t in rest])
            pp.append(dict(setting=pypde_label(stepper, n, tol), key=(stepper, n, tol), n=n, err=e.max(), sec=cpu,
                           stepper=stepper))
            rows.append([pypde_label(stepper, n, tol), fmt(np.median(e)), fmt(e.max()), f"{1e3 * cpu:.1f}",
                         f"{1e3 * wall:.1f}", f"{setup[1] + times[0][1] - cpu:.1f}"])
            print(f"  py-pde {pypde_label(stepper, n, tol)}: max error {e.max():.1e}, {1e3 * cpu:.1f} ms", flush=True)
        print(f"\npy-pde sweep, {len(sub)} trajectories, one solve each (times: median over all but the first):")
        print(table(["setting", "median error", "max error", "CPU ms / trajectory", "wall ms / trajectory",
                     "one-time: set-up + first solve - median solve, CPU [s]"], rows), flush=True)

        full, rows = {}, []
        default_err = pl[0]["err"] if pl and not pl[0]["kwargs"] else None
        targets = sorted(set(TARGETS + ([default_err] if default_err else [])), reverse=True)
        for target in targets:
            best_pl = min((p for p in pl if p["err"] <= target), key=lambda p: p["sec"], default=None)
            best_pp = min((p for p in pp if p["err"] <= target), key=lambda p: p["sec"], default=None)
            if best_pl is not None and ("pl", best_pl["setting"]) not in full and not a.no_fresh:
                z = fresh_process(["pdelab-set", "--case", name, "--n-traj", str(a.n_traj),
                                   "--kwargs", json.dumps(best_pl["kwargs"])])
                full["pl", best_pl["setting"]] = dict(err=final_rel_err(z["u"], ref).max(), total=float(z["cpu"][0]),
                                                      imports=float(z["import_cpu"]))
            if best_pp is not None and ("pp", best_pp["key"]) not in full and not a.no_fresh:
                st, n, tol = best_pp["key"]
                z = fresh_process(["pypde-set", "--case", name, "--n-traj", str(a.n_traj), "--stepper", st,
                                   "--N", str(n), "--tol", repr(tol)])
                cpu = z["cpu"]
                full["pp", best_pp["key"]] = dict(err=final_rel_err(z["u"], ref).max(), sec=float(np.median(cpu[1:])),
                                                  first=float(cpu[0] + z["setup_cpu"] - np.median(cpu[1:])),
                                                  total=float(cpu.sum() + z["setup_cpu"]),
                                                  imports=float(z["import_cpu"]))
            if best_pl is None:
                pl_txt, pl_total = "not reached", None
            else:
                f = full.get(("pl", best_pl["setting"]))
                pl_total = f["total"] if f else best_pl["sec"] * a.n_traj
                pl_txt = (f"{best_pl['setting']}: {1e3 * best_pl['sec']:.2f} ms (max {best_pl['err']:.1e}"
                          + (f"; whole set, fresh process: {f['total']:.2f} s + import {f['imports']:.1f} s" if f else "")
                          + ")")
            if best_pp is None:
                # Per stepper, error ~ N^-p and time ~ N^q through its two finest grids; the cheaper estimate.
                ests = [(e, st) for st in ("bdf", "rk")
                        for e in [_extrapolate([p for p in pp if p["stepper"] == st], target)
                                  if sum(p["stepper"] == st for p in pp) >= 2 else None] if e]
                est, est_st = min(ests, key=lambda x: x[0][1]) if ests else (None, "")
                pp_txt = "not reached" + (f" ({'BDF' if est_st == 'bdf' else 'RK45'} extrapolated: N ≈ {est[0]:.0f}, "
                                          f"~{est[1]:.2g} s)" if est else "")
                pp_sec, pp_total = (est[1] if est else None), None
            else:
                f = full.get(("pp", best_pp["key"]))
                pp_sec = f["sec"] if f else best_pp["sec"]
                pp_total = f["total"] if f else None
                pp_txt = (f"{best_pp['setting']}: {1e3 * pp_sec:.0f} ms"
                          + (f" (max {f['err']:.1e} on {a.n_traj}; whole set, fresh process: {f['total']:.1f} s, "
                             f"of which one-time set-up/numba compile {f['first']:.1f} s; import {f['imports']:.1f} s)"
                             if f else f" (max {best_pp['err']:.1e})"))
            ratio = "-"
            if best_pl is not None and pp_sec:
                ratio = ratio_txt(pp_sec / best_pl['sec']) + (" (extrapolated)" if best_pp is None else "")
            whole = ratio_txt(pp_total / pl_total) if pp_total and pl_total else "-"
            rows.append([f"{target:.2e}" + (" (pde_lab default)" if target == default_err else ""), pl_txt, pp_txt,
                         ratio, whole])
        print(f"\nequal accuracy ({name}): for each target, the cheapest setting whose worst error over the "
              f"trajectories is <= target; CPU per trajectory, and whole {a.n_traj}-trajectory set in a fresh process "
              f"(py-pde's numba compilation included, imports not)")
        print(table(["target", "pde_lab", "py-pde", "py-pde / pde_lab per trajectory", f"whole {a.n_traj}-set ratio"],
                    rows), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    c.add_argument("--n-traj", type=int, default=64)
    c.add_argument("--sweep-traj", type=int, default=8, help="trajectories per py-pde sweep setting")
    c.add_argument("--check-traj", type=int, default=8, help="trajectories for the reference's own check")
    c.add_argument("--repeat", type=int, default=3, help="pde_lab solves per setting (median)")
    c.add_argument("--max-n", type=int, default=4096, help="finest py-pde grid (per axis) in the sweep")
    c.add_argument("--max-n-rk", type=int, default=4096, help="finest py-pde grid for the explicit RK stepper")
    c.add_argument("--no-fresh", action="store_true", help="skip the fresh-process whole-set timings")
    s = sub.add_parser("pdelab-set")
    s.add_argument("--case", choices=list(CASES), required=True)
    s.add_argument("--n-traj", type=int, default=64)
    s.add_argument("--kwargs", default="{}", help="pde_lab constructor arguments, JSON")
    q = sub.add_parser("pypde-set")
    q.add_argument("--case", choices=list(CASES), required=True)
    q.add_argument("--n-traj", type=int, default=64)
    q.add_argument("--stepper", choices=["bdf", "rk"], default="bdf")
    q.add_argument("--N", type=int, required=True)
    q.add_argument("--tol", type=float, required=True)
    for x in (s, q):
        x.add_argument("--out", required=True, help="npz file for the outputs and timings")
    for x in (c, s, q):
        x.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.cmd == "pypde-set":
        check_refines(p, a.N, CASES[a.case].n_stored, a.case)
    pin_threads(a.threads)
    {"compare": cmd_compare, "pdelab-set": cmd_pdelab_set, "pypde-set": cmd_pypde_set}[a.cmd](a)


if __name__ == "__main__":
    main()
