"""TENG (time-evolving natural gradient, Chen et al. 2024) on the periodic heat, Allen–Cahn and Burgers
(1D and 2D) equations: accuracy against exact and spectral ground truth, and the temporal order of TENG-Euler and
TENG-Heun.

Usage (one process, one thread; see README.md for the run times):

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python experiments/teng/run.py \\
        [--out experiments_out/teng] [--seeds 0,1,2] \\
        [--only heat,sweep,allen_cahn,burgers,burgers_2d]

Parts (each over the seeds, which draw the network's initialisation and the offset of the
collocation grid; medians are over the seeds):

* ``heat``: ``u_t = κ Δu`` on the periodic unit square with ``κ = 0.1/(2π)²`` (the paper's
  ``ν = 1/10`` on ``[0, 2π)²``, rescaled to the unit square: the same equation in the coordinate
  ``x/(2π)``, same time scale), a four-mode initial state, a 2-16-16-1 network (periodic embedding,
  tanh, 369 parameters) on a 24×24 collocation grid, TENG-Heun and TENG-Euler (3 Gauss–Newton
  iterations per stage) with ``Δt = 0.005`` to ``T = 0.8``; relative L2 error against the exact Fourier solution on a 37×37
  grid of points that are not collocation points.
* ``sweep``: the same problem with ``Δt = 0.2, 0.1, 0.05, 0.025`` (Euler and Heun), starting from the
  same fitted initial network; prints the observed order (least-squares slope of log error against
  log Δt).
* ``allen_cahn``: ``u_t = ν Δu + u − u³`` on the unit square, ``ν = 0.0025``, to ``T = 0.5``, a smooth
  initial state (wave numbers ``|k_i| ≤ 1``, RMS 0.5), TENG-Heun with ``Δt = 0.01``, a 2-16-16-1
  network on 24×24 points; reference: ``get_pde("allen_cahn_2d").solve`` (pseudo-spectral ETDRK4)
  from the same initial state on a 64×64 grid, where the error is measured.
* ``burgers``: ``u_t + u u_x = ν u_xx`` on the unit interval, ``ν = 0.02``, to ``T = 0.5``, initial
  state with wave numbers ``≤ 2`` (RMS 0.5), TENG-Heun with ``Δt = 0.005`` and ``0.0025``, a
  1-12-12-1 network on 256 points; reference: ``get_pde("burgers").solve`` on 256 points.
* ``burgers_2d``: ``u_t + u (u_x + u_y) = ν Δu`` on the unit square, ``ν = 0.02``, to ``T = 0.5``, a
  smooth initial state (wave numbers ``|k_i| ≤ 1``, RMS 0.5), TENG-Heun with ``Δt = 0.005`` and
  ``0.0025``, a 2-16-16-1 network on 24×24 points; reference: ``get_pde("burgers_2d").solve`` on a 64×64 grid.

Prints Markdown tables and writes them with all numbers to ``OUT/results.json`` and ``OUT/tables.md``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pde_lab.operators import build_model
from pde_lab.optim.teng import TENG, field_values, fit_initial_state, pde_rhs
from pde_lab.pdes import Instance, get_pde

D = torch.float64
HEAT_KAPPA = 0.1 / (2 * math.pi) ** 2
#: (wave vector (a, b), amplitude, phase): u0 = Σ amp sin(2π(a x + b y) + phase)
HEAT_MODES = (((1, 0), 1.0, 0.0), ((0, 1), 0.7, 0.3), ((1, 1), 0.5, 1.0), ((2, 1), 0.3, 2.0))
PARTS = ("heat", "sweep", "allen_cahn", "burgers", "burgers_2d")


# ---- problem pieces ------------------------------------------------------------------------------
def grid_points(n: int, dim: int, offset: np.ndarray | float = 0.0) -> torch.Tensor:
    """``n^dim`` points of the uniform periodic grid on ``[0, 1)^dim`` shifted by ``offset``, as
    ``(n^dim, dim)`` in C order (the layout of a ``(n,)*dim`` array)."""
    axes = [(torch.arange(n, dtype=D) + float(np.broadcast_to(offset, (dim,))[i])) / n % 1.0 for i in range(dim)]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


def heat_exact(x: torch.Tensor, t: float) -> torch.Tensor:
    """Exact solution of the heat problem at points ``(N, 2)``: each mode decays as ``exp(−κ|k|²t)``."""
    out = torch.zeros(x.shape[0], dtype=D)
    for (a, b), amp, phase in HEAT_MODES:
        k2 = (2 * math.pi) ** 2 * (a * a + b * b)
        out += amp * math.exp(-HEAT_KAPPA * k2 * t) * torch.sin(2 * math.pi * (a * x[:, 0] + b * x[:, 1]) + phase)
    return out


def periodic_net(dim: int, widths: list[int], seed: int) -> torch.nn.Module:
    """The periodic-embedding tanh MLP (``pinn_mlp`` with every axis periodic, period 1)."""
    torch.manual_seed(seed)
    return build_model("pinn_mlp", in_dim=dim, out_dim=1, widths=widths, periodic=list(range(dim)),
                       periods=[1.0] * dim)


def rel_l2(u: torch.Tensor, ref: torch.Tensor) -> float:
    return float((u - ref).norm() / ref.norm())


def fitted_network(dim: int, widths: list[int], seed: int, x: torch.Tensor, u0: torch.Tensor) -> tuple:
    net = periodic_net(dim, widths, seed)
    start = time.perf_counter()
    report = fit_initial_state(net, x, u0, max_iterations=600)
    return net, report, time.perf_counter() - start


def integrate(net, rhs, x, dt, scheme, t_final, iterations, checkpoints=(), evaluate=None, tol=0.0):
    """Run TENG to ``t_final``; ``evaluate(net, t)`` at each checkpoint time. Returns (results, teng)."""
    teng = TENG(net, rhs, x, dt=dt, scheme=scheme, max_iterations=iterations, tol=tol)
    n_steps = round(t_final / dt)
    if abs(n_steps * dt - t_final) > 1e-9 * t_final:
        raise ValueError(f"dt = {dt} does not divide T = {t_final}")
    marks = {round(c / dt): c for c in checkpoints}
    off_grid = [c for k, c in marks.items() if abs(k * dt - c) > 1e-9 * t_final]
    if off_grid or len(marks) < len(checkpoints):  # an error would be filed under a time it was not taken at
        raise ValueError(f"dt = {dt} does not step onto every checkpoint time {list(map(float, checkpoints))}")
    out = {}
    for k in range(1, n_steps + 1):
        teng.step()
        if k in marks and evaluate is not None:
            out[marks[k]] = evaluate(net, marks[k])
    return out, teng


def _stats(teng: TENG) -> dict:
    rms = [r.final_rms for r in teng.reports]
    return {"steps": len(teng.reports), "seconds": sum(r.seconds for r in teng.reports),
            "iterations_per_step": statistics.mean(r.iterations for r in teng.reports),
            "max_misfit_rms": max(rms), "median_misfit_rms": statistics.median(rms)}


# ---- parts -----------------------------------------------------------------------------------------
def run_heat(seeds, sweep: bool, heat: bool, log) -> dict:
    widths, n_col, t_final = [16, 16], 24, 0.8
    x_eval = grid_points(37, 2, 0.5)
    u_eval = {t: heat_exact(x_eval, t) for t in (0.0, 0.2, 0.4, 0.6, 0.8)}
    evaluate = lambda net, t: rel_l2(field_values(net, x_eval)[:, 0], heat_exact(x_eval, t))  # noqa: E731
    rhs = pde_rhs(get_pde("heat_2d"), {"kappa": HEAT_KAPPA})
    out = {"heat": [], "sweep": []}
    for seed in seeds:
        offset = np.random.default_rng(seed).random(2)
        x = grid_points(n_col, 2, offset)
        net0, fit, fit_s = fitted_network(2, widths, seed, x, heat_exact(x, 0.0))
        e0 = rel_l2(field_values(net0, x_eval)[:, 0], u_eval[0.0])
        log(f"heat seed {seed}: initial fit rms {fit.final_rms:.2e} ({fit.iterations} it, {fit.stop}, {fit_s:.0f} s), "
            f"rel L2 at t=0 {e0:.2e}")
        if heat:
            for scheme in ("heun", "euler"):
                errs, teng = integrate(copy.deepcopy(net0), rhs, x, 0.005, scheme, t_final, 3,
                                       checkpoints=(0.2, 0.4, 0.6, 0.8), evaluate=evaluate)
                row = {"seed": seed, "scheme": scheme, "dt": 0.005, "fit_rms": fit.final_rms, "error_t0": e0,
                       "errors": errs, **_stats(teng)}
                out["heat"].append(row)
                log(f"  {scheme} dt=0.005: rel L2 at T {errs[t_final]:.2e}  ({row['seconds']:.0f} s, "
                    f"max misfit {row['max_misfit_rms']:.1e})")
        if sweep:
            for scheme in ("euler", "heun"):
                for dt in (0.2, 0.1, 0.05, 0.025):
                    errs, teng = integrate(copy.deepcopy(net0), rhs, x, dt, scheme, t_final, 5,
                                           checkpoints=(t_final,), evaluate=evaluate)
                    out["sweep"].append({"seed": seed, "scheme": scheme, "dt": dt, "error": errs[t_final], **_stats(teng)})
                    log(f"  sweep {scheme} dt={dt}: rel L2 at T {errs[t_final]:.3e}")
    return out


def _smooth_field(rng: np.random.Generator, x: torch.Tensor, modes: int, amplitude: float) -> torch.Tensor:
    """A random trigonometric polynomial with wave numbers ``|k_i| ≤ modes``, RMS ``amplitude`` on ``x``."""
    dim = x.shape[1]
    u = torch.zeros(x.shape[0], dtype=D)
    ks = [k for k in np.ndindex(*(2 * modes + 1,) * dim)]
    for k in ks:
        k = np.array(k) - modes
        if not k.any():
            continue
        w = float(rng.normal()) / (1.0 + float(k @ k))
        u += w * torch.sin(2 * math.pi * (x @ torch.tensor(k, dtype=D)) + float(rng.uniform(0, 2 * math.pi)))
    return u


def run_spectral_reference(name: str, params: dict, dim: int, n_grid: int, widths: list[int], n_col: int,
                           dts: tuple[float, ...], seeds, log, modes: int, amplitude: float) -> list[dict]:
    """TENG-Heun (at each ``Δt`` of ``dts``) against the PDE's spectral solver from the same smooth
    initial state."""
    pde = get_pde(name)
    grid = pde.grid(n_grid)
    x_grid = grid_points(n_grid, dim)
    # The initial state is the same for every seed: the same coefficient draw, evaluated anywhere.
    scale = amplitude / float(_smooth_field(np.random.default_rng(1234), x_grid, modes, 1.0).pow(2).mean().sqrt())

    def u0_at(x: torch.Tensor) -> torch.Tensor:
        return scale * _smooth_field(np.random.default_rng(1234), x, modes, 1.0)

    u0 = u0_at(x_grid)
    shape = (n_grid,) * dim
    start = time.perf_counter()
    ref = pde.solve([Instance(params=dict(params), inputs={"u": u0.numpy().reshape(shape)})], grid)
    ref_s = time.perf_counter() - start
    times = ref.times
    u_ref = ref.fields["u"][0]  # (T, *space)
    rhs = pde_rhs(pde, params)
    rows = []
    for seed in seeds:
        offset = np.random.default_rng(seed).random(dim)
        x = grid_points(n_col, dim, offset)
        net, fit, fit_s = fitted_network(dim, widths, seed, x, u0_at(x))

        def evaluate(net_, t):
            i = int(np.argmin(np.abs(times - t)))
            ref_t = torch.from_numpy(np.ascontiguousarray(u_ref[i])).reshape(-1)
            return rel_l2(field_values(net_, x_grid)[:, 0], ref_t)

        e0 = evaluate(net, 0.0)
        for dt in dts:
            errs, teng = integrate(copy.deepcopy(net), rhs, x, dt, "heun", float(times[-1]), 6,
                                   checkpoints=tuple(times[1:]), evaluate=evaluate, tol=1e-9)
            row = {"seed": seed, "dt": dt, "fit_rms": fit.final_rms, "error_t0": e0,
                   "errors": {float(t): e for t, e in errs.items()}, "reference_seconds": ref_s, **_stats(teng)}
            rows.append(row)
            log(f"{name} seed {seed} dt={dt}: fit rms {fit.final_rms:.1e}, rel L2 t=0 {e0:.1e}, "
                f"t=T/2 {errs[times[len(times) // 2]]:.2e}, t=T {errs[times[-1]]:.2e} ({row['seconds']:.0f} s)")
    return rows


# ---- reporting --------------------------------------------------------------------------------------
def _median(values):
    return statistics.median(values)


def slope(dts, errs) -> float:
    lx, ly = np.log(np.asarray(dts)), np.log(np.asarray(errs))
    return float(np.polyfit(lx, ly, 1)[0])


def tables(results: dict) -> str:
    lines = []
    if results.get("heat"):
        lines += ["### Heat, 2D periodic, Δt = 0.005, T = 0.8 (median [min, max] over seeds)", "",
                  "| scheme | rel L2 t=0 (fit) | t=0.2 | t=0.4 | t=0.8 | max step misfit (rms) | GN it./step | seconds |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for scheme in ("heun", "euler"):
            rows = [r for r in results["heat"] if r["scheme"] == scheme]
            if not rows:
                continue
            def cell(key, t=None):
                vals = [r["errors"][t] if t is not None else r[key] for r in rows]
                return f"{_median(vals):.2e} [{min(vals):.1e}, {max(vals):.1e}]"
            lines.append(f"| TENG-{scheme.capitalize()} | {cell('error_t0')} | {cell(None, 0.2)} | {cell(None, 0.4)} | "
                         f"{cell(None, 0.8)} | {_median([r['max_misfit_rms'] for r in rows]):.1e} | "
                         f"{_median([r['iterations_per_step'] for r in rows]):.1f} | "
                         f"{_median([r['seconds'] for r in rows]):.0f} |")
        lines.append("")
    if results.get("sweep"):
        lines += ["### Δt sweep, heat, T = 0.8: median rel L2 at T over seeds", "",
                  "| scheme | " + " | ".join(f"Δt={dt}" for dt in (0.2, 0.1, 0.05, 0.025)) + " | observed order |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for scheme in ("euler", "heun"):
            meds = []
            for dt in (0.2, 0.1, 0.05, 0.025):
                vals = [r["error"] for r in results["sweep"] if r["scheme"] == scheme and r["dt"] == dt]
                meds.append(_median(vals))
            lines.append(f"| TENG-{scheme.capitalize()} | " + " | ".join(f"{m:.3e}" for m in meds)
                         + f" | {slope([0.2, 0.1, 0.05, 0.025], meds):.2f} |")
        lines.append("")
    for name in ("allen_cahn", "burgers", "burgers_2d"):
        rows = results.get(name)
        if not rows:
            continue
        ts = sorted(rows[0]["errors"])
        pick = [ts[len(ts) // 2 - 1], ts[-1]]
        lines += [f"### {name}: TENG-Heun against the spectral solver (median [min, max] over seeds)", "",
                  f"| Δt | rel L2 t=0 (fit) | t={pick[0]:g} | t={pick[1]:g} | max step misfit | GN it./step | seconds |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]

        def cell(vals):
            return f"{_median(vals):.2e} [{min(vals):.1e}, {max(vals):.1e}]"
        for dt in sorted({r["dt"] for r in rows}, reverse=True):
            sub = [r for r in rows if r["dt"] == dt]
            lines.append(f"| {dt:g} | {cell([r['error_t0'] for r in sub])} | {cell([r['errors'][pick[0]] for r in sub])} | "
                         f"{cell([r['errors'][pick[1]] for r in sub])} | {_median([r['max_misfit_rms'] for r in sub]):.1e} | "
                         f"{_median([r['iterations_per_step'] for r in sub]):.1f} | {_median([r['seconds'] for r in sub]):.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="experiments_out/teng")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default=",".join(PARTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        print(f"--seeds must be non-negative integers separated by commas, got {args.seeds!r}", file=sys.stderr)
        return 2
    parts = [p for p in args.only.split(",") if p]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        print(f"unknown part(s) {bad}; choose from {list(PARTS)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    results: dict = {}
    start = time.perf_counter()
    if "heat" in parts or "sweep" in parts:
        results.update(run_heat(seeds, "sweep" in parts, "heat" in parts, log))
    if "allen_cahn" in parts:
        results["allen_cahn"] = run_spectral_reference(
            "allen_cahn_2d", {**get_pde("allen_cahn_2d").default_params(), "nu": 0.0025, "t_final": 0.5},
            dim=2, n_grid=64, widths=[16, 16], n_col=24, dts=(0.01,), seeds=seeds, log=log, modes=1, amplitude=0.5)
    if "burgers" in parts:
        results["burgers"] = run_spectral_reference(
            "burgers", {**get_pde("burgers").default_params(), "nu": 0.02, "t_final": 0.5},
            dim=1, n_grid=256, widths=[12, 12], n_col=256, dts=(0.005, 0.0025), seeds=seeds, log=log, modes=2,
            amplitude=0.5)
    if "burgers_2d" in parts:
        results["burgers_2d"] = run_spectral_reference(
            "burgers_2d", {**get_pde("burgers_2d").default_params(), "nu": 0.02, "t_final": 0.5},
            dim=2, n_grid=64, widths=[16, 16], n_col=24, dts=(0.005, 0.0025), seeds=seeds, log=log, modes=1,
            amplitude=0.5)
    text = tables(results)
    print(text)
    (out / "tables.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - start, **results},
                                                 indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
