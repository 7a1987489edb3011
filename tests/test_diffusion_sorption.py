"""Tests of the diffusion–sorption module: erfc solution, steady state, mass balance, convergence."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.special import erfc

import pde_lab
from pde_lab.errors import UserError
from pde_lab.pdes import PDES, Instance, get_pde
from pde_lab.pdes.diffusion_sorption import (DiffusionSorption, retardation, retardation_derivative,
                                             sorbed_mass)
from pde_lab.solvers.method_of_lines import RobinBoundary, flux_divergence, solve_diffusion_mol

PDEBENCH = {"D": 5e-4, "porosity": 0.29, "rho_s": 2880.0, "k_f": 3.5e-4, "n_f": 0.874, "u_init": 0.0,
            "t_final": 500.0}


def _instance(n, **over):
    p = {**PDEBENCH, **over}
    return Instance(p, {"u": np.full(n, p["u_init"])})


def _average_to(u, n):
    """Cell averages of fine cell values onto ``n`` coarse cells (last axis)."""
    return u.reshape(*u.shape[:-1], n, -1).mean(axis=-1)


# ---- registration and declarations -------------------------------------------------------------
def test_registered_and_imports_cleanly_first():
    assert PDES.get("diffusion_sorption") is DiffusionSorption
    assert isinstance(get_pde("diffusion_sorption"), DiffusionSorption)
    code = ("import pde_lab.pdes.diffusion_sorption as m; from pde_lab.pdes import PDES; "
            "assert PDES.get('diffusion_sorption') is m.DiffusionSorption")
    root = os.path.dirname(os.path.dirname(os.path.abspath(pde_lab.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)


def test_declared_specification_and_pdebench_level():
    pde = DiffusionSorption()
    assert pde.default_resolution == 1024 and pde.n_snapshots == 101 and pde.default_task.mode == "window"
    r = pde.level("pdebench").ranges
    for name in ("D", "porosity", "rho_s", "k_f", "n_f", "t_final"):
        assert r[name] == (PDEBENCH[name], PDEBENCH[name]), name
    assert r["u_init"] == (0.0, 0.2)
    g = pde.grid(8)
    assert g.periodic == (False,) and np.allclose(g.axis(0), (np.arange(8) + 0.5) / 8)
    # Harder levels: stronger nonlinearity (R(0.01)/R(1)) at the level's centre.
    ratio = []
    for name in ("easy", "medium", "hard"):
        lv = pde.level(name)
        centre = {**PDEBENCH, **{k: float(np.sqrt(a * b)) if k in lv.log_uniform else 0.5 * (a + b)
                                 for k, (a, b) in lv.ranges.items()}}
        ratio.append(pde.dimensionless(centre, {})["R_ratio"])
    assert ratio[0] < ratio[1] < ratio[2], ratio
    with pytest.raises(UserError, match="porosity"):
        pde.solve([_instance(8, porosity=1.5)], g)
    with pytest.raises(UserError, match="t_final"):
        pde.solve([_instance(8), _instance(8, t_final=100.0)], g)


def test_retardation_regularisation_and_stored_mass():
    p = PDEBENCH
    beta_k = (1 - 0.29) / 0.29 * 2880 * 3.5e-4
    u = np.array([-1e-3, 0.0, 1e-4, 0.3, 1.0])
    assert np.allclose(retardation(u, p), 1 + beta_k * 0.874 * (np.maximum(u, 0) + 1e-6) ** (0.874 - 1))
    assert np.isfinite(retardation(u, p)).all() and retardation(0.0, p) == retardation(-1.0, p)
    # m' = R and R' by central differences, away from the kink at 0.
    v = np.array([1e-3, 0.05, 0.3, 0.9])
    d = 1e-7 * v
    assert np.allclose((sorbed_mass(v + d, p) - sorbed_mass(v - d, p)) / (2 * d), retardation(v, p), rtol=1e-7)
    assert np.allclose((retardation(v + d, p) - retardation(v - d, p)) / (2 * d), retardation_derivative(v, p),
                       rtol=1e-6)
    t = torch.tensor(u)
    assert torch.allclose(retardation(t, p), torch.from_numpy(retardation(u, p)))


# ---- exact solutions ---------------------------------------------------------------------------
def test_linear_case_matches_erfc_with_second_order():
    """n_f = 1: R = 1 + ((1 − φ)/φ)ρ_s k is constant and u = erfc(x / (2 sqrt(D t/R))) on the half line;
    at t ≤ 100 the front is ~0.3 from the outflow (erfc < 1e-8 there), so the error is the scheme's."""
    pde = DiffusionSorption()
    R = 1 + (1 - 0.29) / 0.29 * 2880 * 3.5e-4
    sizes = [64, 128, 256, 512]
    errors = []
    for n in sizes:
        g = pde.grid(n)
        r = pde.solve([_instance(n, n_f=1.0, t_final=100.0)], g)
        x = g.axis(0)
        e = []
        for k in (50, 100):  # t = 50 and 100
            exact = erfc(x / (2 * np.sqrt(5e-4 * r.times[k] / R)))
            e.append(np.sqrt(np.mean((r.fields["u"][0, k] - exact) ** 2)))
        errors.append(max(e))
    order = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert order < -1.95 and errors[-1] < 6e-6, (order, errors)


def test_linear_steady_state_is_exact():
    """u_xx = 0, u(0) = 1, u(1) + D u_x(1) = 0 gives u = 1 − x/(1 + D); the scheme is exact on linear
    functions and the transient has decayed by t = 400, so the solution equals it to round-off
    (2.2e-16 measured; checks both ends)."""
    pde = DiffusionSorption()
    g = pde.grid(32)
    D = 0.2
    r = pde.solve([_instance(32, n_f=1.0, D=D, k_f=1e-5, t_final=400.0, u_init=0.5)], g)
    exact = 1 - g.axis(0) / (1 + D)
    assert np.abs(r.fields["u"][0, -1] - exact).max() < 1e-12


# ---- invariants --------------------------------------------------------------------------------
@pytest.mark.parametrize("over", [{}, {"n_f": 0.7, "k_f": 1e-3, "u_init": 0.1}, {"D": 5e-3, "n_f": 0.9}])
def test_mass_balance(over):
    """Δ∫m(u) = ∫(q_in − q_out) dt at every stored time, m' = R (to the BDF tolerance); the last case
    has a front that reaches the outflow, so both fluxes matter."""
    p = {**PDEBENCH, **over}
    n = 128
    times = np.linspace(0, 500, 51)
    sol = solve_diffusion_mol(np.full(n, p["u_init"]), times, 1.0, p["D"], lambda u: retardation(u, p),
                              lambda u: retardation_derivative(u, p), RobinBoundary(1.0), RobinBoundary(0.0, p["D"]))
    mass = sorbed_mass(sol.u, p).mean(axis=-1)
    err = np.abs(mass - mass[0] - (sol.inflow - sol.outflow)).max() / sol.inflow[-1]
    assert err < 1e-6, err
    if "D" in over:
        assert sol.outflow[-1] > 0.05 * sol.inflow[-1]
    if p["n_f"] != 1:  # ∫R(u)u is not what is conserved
        wrong = (retardation(sol.u, p) * sol.u).mean(axis=-1)
        assert np.abs(wrong - wrong[0] - (sol.inflow - sol.outflow)).max() / sol.inflow[-1] > 1e3 * err


def test_pdebench_problem_converges_with_resolution():
    """Self-convergence of the nonlinear PDEBench problem (cell averages against 1024 cells)."""
    pde = DiffusionSorption()
    ref_n = 1024
    ref = pde.solve([_instance(ref_n, u_init=0.1, t_final=100.0)], pde.grid(ref_n)).fields["u"][0, 1:]
    errs = []
    for n in (64, 128, 256):
        u = pde.solve([_instance(n, u_init=0.1, t_final=100.0)], pde.grid(n)).fields["u"][0, 1:]
        errs.append(np.sqrt(np.mean((u - _average_to(ref, n)) ** 2)))
    order = np.log2(errs[0] / errs[1]), np.log2(errs[1] / errs[2])
    assert min(order) > 1.8, (order, errs)


def test_flux_divergence_matches_solver_and_torch():
    n, D = 16, 0.3
    u = np.random.default_rng(0).uniform(0, 1, (2, n))
    left, right = RobinBoundary(1.0), RobinBoundary(0.0, D)
    div = flux_divergence(u, 1 / n, D, left, right)
    assert np.allclose(flux_divergence(torch.from_numpy(u), 1 / n, D, left, right).numpy(), div)
    # Linear data: interior divergence zero; the solver's right-hand side with R = 1 is this divergence.
    x = (np.arange(n) + 0.5) / n
    lin = 1 - x / (1 + D)
    assert np.abs(flux_divergence(lin, 1 / n, D, left, right)).max() < 1e-11


# ---- dataset behaviour -------------------------------------------------------------------------
def test_sampling_levels_and_batch_independence():
    pde = DiffusionSorption()
    g = pde.grid(32)
    for level in pde.levels:
        a, b = (pde.sample(level, np.random.default_rng(3), g) for _ in range(2))
        assert a.params == b.params and np.array_equal(a.inputs["u"], b.inputs["u"])
        for name, (lo, hi) in pde.level(level).ranges.items():
            assert lo <= a.params[name] <= hi
        assert np.all(a.inputs["u"] == a.params["u_init"])
        d = pde.dimensionless(a.params, a.inputs)
        assert d["Fo"] == pytest.approx(a.params["D"] * 500 / float(retardation(1.0, a.params)))
    insts = [pde.sample("hard", np.random.default_rng(s), g) for s in range(3)]
    together = pde.solve(insts, g)
    alone = pde.solve([insts[1]], g)
    assert np.array_equal(alone.fields["u"][0], together.fields["u"][1])
    assert together.times.shape == (101,) and together.times[-1] == 500.0
    assert np.array_equal(together.fields["u"][:, 0], np.stack([i.inputs["u"] for i in insts]))
    assert (together.per_sample["mass_balance_error"] < 1e-6).all()
    u = together.fields["u"]
    assert u.min() > -1e-6 and u.max() < 1 + 1e-9  # maximum principle up to the tolerance


def test_residual_small_on_solution_and_shrinks_with_frames():
    pde = DiffusionSorption()
    n = 64
    g = pde.grid(n)
    p = {**PDEBENCH, "u_init": 0.1}
    rms = []
    for frames in (11, 21):
        times = np.linspace(50.0, 100.0, frames)
        sol = solve_diffusion_mol(np.full(n, 0.1), np.concatenate([[0.0], times]), 1.0, p["D"],
                                  lambda u: retardation(u, p), lambda u: retardation_derivative(u, p),
                                  RobinBoundary(1.0), RobinBoundary(0.0, p["D"]))
        u = sol.u[None, 1:]
        r = pde.residual({"u": u}, p, g, times=times)
        rms.append(np.sqrt(np.mean((r[0] if frames == 11 else r[0, 1::2]) ** 2)))
        if frames == 11:
            bad = u * (1 + 1e-3 * np.random.default_rng(0).standard_normal(u.shape))
            assert np.sqrt(np.mean(r**2)) < 0.1 * np.sqrt(np.mean(pde.residual({"u": bad}, p, g, times=times) ** 2))
            rt = pde.residual({"u": torch.from_numpy(u)}, {k: torch.tensor([v], dtype=torch.float64) for k, v in p.items()},
                              g, times=times)
            assert isinstance(rt, torch.Tensor) and np.allclose(rt.numpy(), r, rtol=0, atol=1e-14)
    assert 3.5 < rms[0] / rms[1] < 4.5, rms
