"""Tests of the Burgers PDE module: exact solutions, convergence, determinism, levels, residual."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import pde_lab
from pde_lab.errors import UserError
from pde_lab.pdes import PDES, Instance, get_pde
from pde_lab.pdes.burgers import Burgers, burgers_etdrk4, cole_hopf_solution

# A Cole–Hopf solution with a front steep enough to exercise the nonlinearity: φ ≥ 0.1, Re = u_rms/ν ≈ 7.
CH = dict(nu=0.05, amplitudes=[0.6, 0.3], phases=[0.3, 1.0], a0=1.0)


def _params(nu, t_final=1.0):
    return {"nu": nu, "t_final": t_final, "ic_alpha": 2.0, "ic_tau": 5.0, "ic_sigma": 25.0}


def _cole_hopf_instance(pde, grid, ch=CH):
    x = grid.axis(0)
    u0 = cole_hopf_solution(x, 0.0, ch["nu"], ch["amplitudes"], ch["phases"], ch["a0"])
    return Instance(_params(ch["nu"]), {"u": u0})


# ---- registration ------------------------------------------------------------------------------
def test_registered_and_imports_cleanly_first():
    assert PDES.get("burgers") is Burgers and isinstance(get_pde("burgers"), Burgers)
    # Importing the module before the package must not trip over the registry import.
    code = "import pde_lab.pdes.burgers as b; from pde_lab.pdes import PDES; assert PDES.get('burgers') is b.Burgers"
    root = os.path.dirname(os.path.dirname(os.path.abspath(pde_lab.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)


def test_declared_specification():
    pde = Burgers()
    assert {p.name for p in pde.parameters} == {"nu", "t_final", "ic_alpha", "ic_tau", "ic_sigma"}
    assert [f.name for f in pde.fields] == ["u"] and pde.fields[0].time_varying
    assert pde.boundary_conditions[0].kind == "periodic"
    assert pde.default_resolution == 256 and pde.default_task.mode == "one_shot"
    g = pde.grid(8)
    assert g.periodic == (True,) and np.allclose(g.axis(0), np.arange(8) / 8)
    with pytest.raises(UserError, match="resolution"):
        pde.grid(2)
    from pde_lab.grids import CartesianGrid
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        pde.solve([], CartesianGrid(((0.0, 2.0),), (8,), (True,)))
    fno = pde.level("fno")
    assert {k: v for k, v in fno.ranges.items()} == {
        "nu": (0.1, 0.1), "t_final": (1.0, 1.0), "ic_alpha": (2.0, 2.0), "ic_tau": (5.0, 5.0), "ic_sigma": (25.0, 25.0)}


# ---- the exact solution ------------------------------------------------------------------------
def test_cole_hopf_solves_burgers():
    """The exact solution's discrete residual is small and shrinks like Δt² (at common times)."""
    pde = Burgers()
    g = pde.grid(128)
    res = []
    for frames in (21, 81):
        t = np.linspace(0.0, 0.5, frames)
        u = cole_hopf_solution(g.axis(0), t, CH["nu"], CH["amplitudes"], CH["phases"], CH["a0"])
        r = pde.residual({"u": u[None]}, {"nu": CH["nu"]}, g, times=t)[0]
        common = np.isin(np.round(t[1:-1], 9), np.round(np.linspace(0.0, 0.5, 21)[1:-1], 9))
        res.append(np.sqrt(np.mean(r[common] ** 2)))
    assert res[1] < res[0] / 12 and res[1] < 1e-3, res
    with pytest.raises(ValueError, match="positive"):
        cole_hopf_solution(g.axis(0), 0.0, 0.1, [0.6, 0.5])


def test_solver_matches_cole_hopf():
    pde = Burgers()
    g = pde.grid(64)
    r = pde.solve([_cole_hopf_instance(pde, g)], g)
    exact = cole_hopf_solution(g.axis(0), r.times, CH["nu"], CH["amplitudes"], CH["phases"], CH["a0"])
    err = np.linalg.norm(r.fields["u"][0, 1:] - exact[1:]) / np.linalg.norm(exact[1:])
    assert err < 1e-6, err
    assert np.array_equal(r.fields["u"][0, 0], _cole_hopf_instance(pde, g).inputs["u"])


def test_observed_temporal_order_against_cole_hopf():
    """ETDRK4 on Burgers at fixed space resolution: error ∝ dt^p with p ≥ 3.8."""
    n, T, nu = 128, 0.5, 0.1
    ch = dict(nu=nu, amplitudes=[0.5, 0.3], phases=[0.3, 1.0], a0=1.0)
    x = np.arange(n) / n
    u0 = torch.from_numpy(cole_hopf_solution(x, 0.0, **{k: ch[k] for k in ("nu", "amplitudes", "phases", "a0")}))[None]
    exact = cole_hopf_solution(x, T, **ch)
    steps = np.array([16, 32, 64, 128, 256])
    errors = []
    for s in steps:
        u, _, taken = burgers_etdrk4(u0, [nu], T, 1, int(s))
        assert taken == s
        errors.append(np.linalg.norm(u[0, -1].numpy() - exact) / np.linalg.norm(exact))
    order = np.polyfit(np.log(T / steps), np.log(errors), 1)[0]
    assert order >= 3.8, (order, errors)


def test_float32_viscosity_is_refused():
    with pytest.raises(ValueError, match="float64"):
        burgers_etdrk4(torch.zeros(1, 16, dtype=torch.float64), torch.tensor([0.1]), 1.0, 1, 4)


def test_pure_diffusion_is_exact():
    """With u small the equation is the heat equation, which ETDRK4 integrates exactly."""
    pde = Burgers()
    g = pde.grid(32)
    x = g.axis(0)
    eps = 1e-150  # u² underflows to a negligible size: the nonlinear term vanishes
    u0 = eps * (np.sin(2 * np.pi * x) + 0.5 * np.cos(6 * np.pi * x))
    r = pde.solve([Instance(_params(0.07), {"u": u0})], g)
    t = r.times[:, None]
    exact = eps * (np.exp(-0.07 * (2 * np.pi) ** 2 * t) * np.sin(2 * np.pi * x)
                   + 0.5 * np.exp(-0.07 * (6 * np.pi) ** 2 * t) * np.cos(6 * np.pi * x))
    assert np.allclose(r.fields["u"][0], exact, rtol=0, atol=1e-13 * eps)


# ---- solve: plan, result, determinism ----------------------------------------------------------
def test_solve_result_layout_and_settings():
    pde = Burgers()
    g = pde.grid(32)
    rng = np.random.default_rng(0)
    insts = [pde.sample("fno", rng, g) for _ in range(3)]
    r = pde.solve(insts, g)
    assert r.fields["u"].shape == (3, pde.n_snapshots, 32) and r.fields["u"].dtype == np.float64
    assert np.allclose(r.times, np.linspace(0, 1, pde.n_snapshots))
    spi = r.per_sample["steps_per_interval"].astype(np.int64)
    assert np.array_equal(r.steps, spi * (pde.n_snapshots - 1))
    assert all(s & (s - 1) == 0 for s in spi)  # powers of two
    for i, inst in enumerate(insts):
        n_s, s = pde.solver_plan(inst.inputs["u"], inst.params["nu"], 1.0, 32)
        assert r.per_sample["solver_resolution"][i] == n_s and spi[i] == s
        dt = r.per_sample["dt"][i]
        assert dt * np.abs(inst.inputs["u"]).max() * 2 * np.pi * ((n_s - 1) // 3) <= pde.cfl
        assert np.array_equal(r.fields["u"][i, 0], inst.inputs["u"])
    json.dumps(r.settings)


def test_solver_plan_refines_for_small_viscosity():
    pde = Burgers()
    x = np.arange(256) / 256
    u0 = 2.0 * np.sin(2 * np.pi * x)  # jump 4
    n_mild, _ = pde.solver_plan(u0, 0.1, 1.0, 256)
    n_thin, steps = pde.solver_plan(u0, 0.002, 1.0, 256)
    assert n_mild == 512
    assert n_thin >= 3 * np.log(1e7) * 4.0 / (4 * np.pi**2 * 0.002) and n_thin % 256 == 0
    assert n_thin // 256 & (n_thin // 256 - 1) == 0
    with pytest.raises(UserError, match="max_solver_resolution"):
        Burgers(max_solver_resolution=1024).solver_plan(u0, 0.002, 1.0, 256)


def test_same_seed_same_instance():
    pde = Burgers()
    g = pde.grid(64)
    a = pde.sample("medium", np.random.default_rng([5, 1]), g)
    b = pde.sample("medium", np.random.default_rng([5, 1]), g)
    c = pde.sample("medium", np.random.default_rng([5, 2]), g)
    assert a.params == b.params and np.array_equal(a.inputs["u"], b.inputs["u"])
    assert a.params != c.params and not np.array_equal(a.inputs["u"], c.inputs["u"])


def test_instance_alone_equals_instance_in_batch():
    """Bitwise: a solve of one instance equals its row in any batch, whatever its position."""
    pde = Burgers()
    g = pde.grid(32)
    rng = np.random.default_rng(11)
    insts = [pde.sample("easy", rng, g) for _ in range(7)]
    plans = [pde.solver_plan(i.inputs["u"], i.params["nu"], 1.0, 32) for i in insts]
    assert len(set(plans)) < len(plans)  # some instances share a batch
    together = pde.solve(insts, g).fields["u"]
    perm = [3, 6, 0, 5, 1, 4, 2]
    permuted = pde.solve([insts[i] for i in perm], g).fields["u"]
    assert np.array_equal(permuted, together[perm])
    for i in range(len(insts)):
        alone = pde.solve([insts[i]], g).fields["u"][0]
        assert np.array_equal(alone, together[i]), i


def test_blow_up_raises_with_parameters():
    # An absurd CFL number (one step per output interval) makes the explicit part unstable.
    pde = Burgers(cfl=1e4, min_steps_per_interval=1)
    g = pde.grid(64)
    x = g.axis(0)
    calm = Instance(_params(0.1), {"u": 0.01 * np.sin(2 * np.pi * x)})
    wild = Instance(_params(0.002), {"u": 3.0 * np.sin(2 * np.pi * x) + np.cos(6 * np.pi * x)})
    with pytest.raises(RuntimeError, match=r"blew up.*instance 1.*'nu': 0\.002"):
        pde.solve([calm, wild], g)


def test_bad_inputs_fail_early():
    pde = Burgers()
    g = pde.grid(16)
    good = np.sin(2 * np.pi * g.axis(0))
    with pytest.raises(UserError, match="shape"):
        pde.solve([Instance(_params(0.1), {"u": np.zeros(8)})], g)
    with pytest.raises(UserError, match="nu must be positive"):
        pde.solve([Instance(_params(0.0), {"u": good})], g)
    with pytest.raises(UserError, match="nu must be positive and finite, got inf"):  # was a NaN blow-up
        pde.solve([Instance(_params(math.inf), {"u": good})], g)
    with pytest.raises(UserError, match="not finite"):
        pde.solve([Instance(_params(0.1), {"u": good * np.nan})], g)
    with pytest.raises(UserError, match="t_final"):
        pde.solve([Instance(_params(0.1), {"u": good}), Instance(_params(0.1, 2.0), {"u": good})], g)
    with pytest.raises(UserError, match="level"):
        pde.sample("impossible", np.random.default_rng(0), g)


# ---- levels ------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["fno", "easy", "medium", "hard"])
def test_levels_sample_finite_resolved_fields(level):
    pde = Burgers()
    g = pde.grid(256)
    rng = np.random.default_rng([2, 7])
    lv = pde.level(level)
    # In expectation (covariance eigenvalues, at the level's largest tau) modes above n/4 carry < 1e-4.
    k = np.arange(1, 129)
    lam = ((2 * np.pi * k) ** 2 + lv.ranges["ic_tau"][1] ** 2) ** (-lv.ranges["ic_alpha"][1])
    assert lam[63:].sum() < 1e-4 * lam.sum()
    for _ in range(16):
        inst = pde.sample(level, rng, g)
        u0 = inst.inputs["u"]
        assert u0.shape == (256,) and np.all(np.isfinite(u0))
        for name, (lo, hi) in lv.ranges.items():
            assert lo <= inst.params[name] <= hi
        # The energy-carrying scales sit far below the grid scale: modes above n/4 carry < 1e-3.
        energy = np.abs(np.fft.rfft(u0)) ** 2
        assert energy[64:].sum() < 1e-3 * energy.sum()
        re = pde.dimensionless(inst.params, inst.inputs)["Re"]
        assert np.isclose(re, np.sqrt(np.mean(u0**2)) / inst.params["nu"])
        # Cost guard: no instance of these draws needs more than 4096 solver points.
        n_s, _ = pde.solver_plan(u0, inst.params["nu"], inst.params["t_final"], 256)
        assert n_s <= 4096


@pytest.mark.parametrize("level", ["fno", "easy", "medium"])
def test_solved_levels_are_resolved(level):
    """The solver's own spectra: the top 10 % of retained modes stay below ``spectral_tol`` (1e-7) of
    the peak, the target its resolution rule is built for."""
    pde = Burgers()
    g = pde.grid(64)
    rng = np.random.default_rng([3, 1])
    r = pde.solve([pde.sample(level, rng, g) for _ in range(3)], g)
    assert np.all(np.isfinite(r.fields["u"]))
    assert max(r.per_sample["spectral_tail"]) < pde.spectral_tol == 1e-7


@pytest.mark.slow
def test_solved_hard_level_is_resolved():
    pde = Burgers()
    g = pde.grid(256)
    rng = np.random.default_rng([3, 2])
    r = pde.solve([pde.sample("hard", rng, g) for _ in range(8)], g)
    assert np.all(np.isfinite(r.fields["u"]))
    assert max(r.per_sample["spectral_tail"]) < pde.spectral_tol


def test_dimensionless_reynolds_number():
    pde = Burgers()
    x = np.arange(64) / 64
    assert pde.dimensionless({"nu": 0.01}, {"u": np.sin(2 * np.pi * x)})["Re"] == pytest.approx(np.sqrt(0.5) / 0.01)


# ---- residual ----------------------------------------------------------------------------------
class _FineFrames(Burgers):
    n_snapshots = 41


def test_residual_small_on_solution_large_on_perturbation():
    """Compared at the common frames t = 0.5 … 0.9, after the rough initial state has been smoothed."""
    g = Burgers().grid(64)
    inst = Burgers().sample("fno", np.random.default_rng(4), g)
    norms = {}
    for cls in (Burgers, _FineFrames):
        pde = cls()
        r = pde.solve([inst], g)
        u = r.fields["u"]
        params = {"nu": np.array([inst.params["nu"]]), "t_final": 1.0}
        late = (r.times[1:-1] > 0.45) & np.isin(np.round(r.times[1:-1], 9), np.round(np.linspace(0, 1, 11), 9))
        res = pde.residual({"u": u}, params, g)[:, late]
        bump = 1e-2 * np.sin(4 * np.pi * g.axis(0))[None, None] * np.sin(np.pi * r.times)[None, :, None]
        res_bad = pde.residual({"u": u + bump}, params, g)[:, late]
        norms[cls.n_snapshots] = (np.sqrt(np.mean(res**2)), np.sqrt(np.mean(res_bad**2)))
    coarse, fine = norms[11], norms[41]
    assert coarse[0] < 0.1 * coarse[1] and fine[0] < 0.01 * fine[1], norms
    # Second order in time: 4x more frames → about 16x smaller residual.
    assert fine[0] < coarse[0] / 12, norms


def test_residual_torch_matches_numpy_and_is_differentiable():
    pde = Burgers()
    g = pde.grid(32)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 5, 32))
    params = {"nu": np.array([0.1, 0.05]), "t_final": 1.0}
    ref = pde.residual({"u": u}, params, g)
    ut = torch.tensor(u, requires_grad=True)
    out = pde.residual({"u": ut}, params, g)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 32)
    assert np.allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    out.pow(2).sum().backward()
    assert ut.grad is not None and torch.isfinite(ut.grad).all()


# ---- GPU ---------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pde = Burgers()
    g = pde.grid(64)
    rng = np.random.default_rng(9)
    insts = [pde.sample("medium", rng, g) for _ in range(4)]
    cpu = pde.solve(insts, g, device="cpu")
    gpu = pde.solve(insts, g, device="cuda")
    assert np.allclose(gpu.fields["u"], cpu.fields["u"], rtol=0, atol=1e-11 * np.abs(cpu.fields["u"]).max())
    assert np.array_equal(gpu.per_sample["solver_resolution"], cpu.per_sample["solver_resolution"])
