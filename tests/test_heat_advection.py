"""Heat (1D/2D) and advection (1D): exact in Fourier space for any step, declarations, levels,
batch independence, residual, bad inputs; plus registration of every family of this suite."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pde_lab
from pde_lab.errors import UserError
from pde_lab.pdes import PDES, Instance
from pde_lab.pdes.advection import Advection1D, advection_solution
from pde_lab.pdes.heat import Heat1D, Heat2D, heat_solution
from pde_lab.pdes.periodic_semilinear import PeriodicSemilinearPDE

SUITE = {"heat_1d", "heat_2d", "advection_1d", "allen_cahn_1d", "allen_cahn_2d", "kuramoto_sivashinsky_1d",
         "fisher_kpp_1d", "gray_scott_2d"}


def test_every_family_registers_and_imports_cleanly_first():
    code = ("import pde_lab.pdes.gray_scott, pde_lab.pdes.kuramoto_sivashinsky, pde_lab.pdes.fisher_kpp, "
            "pde_lab.pdes.allen_cahn, pde_lab.pdes.advection, pde_lab.pdes.heat\n"
            "from pde_lab.pdes import PDES\n"
            f"missing = {sorted(SUITE)!r}\n"
            "assert all(n in PDES for n in missing), [n for n in missing if n not in PDES]\n"
            "assert PDES.get('heat_2d').dim == 2 and PDES.get('heat_1d').dim == 1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(pde_lab.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)


# ---- exactness -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,n", [(Heat1D, 48), (Heat2D, 24)])
def test_heat_is_exact_in_fourier_space_for_any_step(cls, n):
    """Each mode equals exp(−κ|k|²t) times its initial value, to round-off, whatever the step."""
    g = cls().grid(n)
    rng = np.random.default_rng(1)
    insts = [cls().sample(level, rng, g) for level in ("easy", "medium", "hard")]
    axes = tuple(range(-cls.dim, 0))
    k2 = sum(np.meshgrid(*[(2 * np.pi * np.fft.fftfreq(n, 1.0 / n)) ** 2] * cls.dim, indexing="ij"))
    for min_steps in (1, 3, 64):
        r = cls(min_steps_per_interval=min_steps).solve(insts, g)
        assert np.all(r.per_sample["steps_per_interval"] == {1: 1, 3: 4, 64: 64}[min_steps])
        for i, inst in enumerate(insts):
            c0 = np.fft.fftn(inst.inputs["u"], axes=axes)
            c = np.fft.fftn(r.fields["u"][i], axes=axes)
            exact = np.exp(-inst.params["kappa"] * k2[None] * r.times.reshape((-1,) + (1,) * cls.dim)) * c0[None]
            assert np.abs(c - exact).max() < 1e-13 * np.abs(c0).max(), (min_steps, i)
            assert np.allclose(r.fields["u"][i], heat_solution(inst.inputs["u"], inst.params["kappa"], r.times),
                               rtol=0, atol=1e-14 * np.abs(inst.inputs["u"]).max() * 10)


def test_advection_is_exact_in_fourier_space_for_any_step():
    """Each mode turns by exp(−i a κ t) (the Nyquist mode by its cosine), to round-off."""
    n = 64
    g = Advection1D().grid(n)
    rng = np.random.default_rng(2)
    insts = [Advection1D().sample(level, rng, g) for level in ("easy", "medium", "hard")]
    kappa = 2 * np.pi * np.arange(n // 2 + 1)
    for min_steps in (1, 3, 8):
        r = Advection1D(min_steps_per_interval=min_steps).solve(insts, g)
        for i, inst in enumerate(insts):
            a = inst.params["speed"]
            c0 = np.fft.rfft(inst.inputs["u"])
            c = np.fft.rfft(r.fields["u"][i], axis=-1)
            exact = np.exp(-1j * a * kappa[None, :] * r.times[:, None]) * c0[None]
            exact[:, -1] = np.cos(a * kappa[-1] * r.times) * c0[-1]
            assert np.abs(c - exact).max() < 1e-12 * np.abs(c0).max(), (min_steps, i)
            assert np.allclose(r.fields["u"][i], advection_solution(inst.inputs["u"], a, r.times), rtol=0, atol=1e-12)


def test_advection_translates_a_band_limited_profile():
    pde = Advection1D()
    g = pde.grid(32)
    x = g.axis(0)
    f = lambda z: np.sin(2 * np.pi * z) + 0.3 * np.cos(10 * np.pi * z + 1)  # noqa: E731
    p = {**pde.default_params(), "speed": 0.37}
    r = pde.solve([Instance(p, {"u": f(x)})], g)
    assert np.allclose(r.fields["u"][0], f(x[None] - 0.37 * r.times[:, None]), rtol=0, atol=1e-13)
    # after a whole number of periods the profile is back, bit-near
    p1 = {**p, "speed": 0.5}  # t_final = 2: exactly one traversal
    r1 = pde.solve([Instance(p1, {"u": f(x)})], g)
    assert np.allclose(r1.fields["u"][0, -1], f(x), atol=1e-13)


# ---- declarations, sampling, levels --------------------------------------------------------------
@pytest.mark.parametrize("cls", [Heat1D, Heat2D, Advection1D])
def test_declared_specification(cls):
    pde = cls()
    assert isinstance(pde, PeriodicSemilinearPDE) and PDES.get(pde.name) is cls
    assert [f.name for f in pde.fields] == ["u"] and pde.fields[0].time_varying
    assert pde.boundary_conditions[0].kind == "periodic" and len(pde.boundary_conditions[0].axes) == cls.dim
    g = pde.grid(8)
    assert g.shape == (8,) * cls.dim and all(g.periodic) and np.allclose(g.axis(0), np.arange(8) / 8)
    assert pde.default_task.mode == ("one_shot" if cls is not Advection1D else "window")
    with pytest.raises(UserError, match="resolution"):
        pde.grid(2)
    from pde_lab.grids import CartesianGrid
    with pytest.raises(UserError, match="periodic unit"):
        pde.solve([], CartesianGrid(((0.0, 2.0),) * cls.dim, (8,) * cls.dim, (True,) * cls.dim))


@pytest.mark.parametrize("cls", [Heat1D, Heat2D, Advection1D])
def test_levels_sample_within_ranges(cls):
    pde = cls()
    g = pde.grid(pde.default_resolution)
    rng = np.random.default_rng([3, 1])
    for name, level in pde.levels.items():
        for _ in range(4):
            inst = pde.sample(name, rng, g)
            u0 = inst.inputs["u"]
            assert u0.shape == g.shape and np.isfinite(u0).all()
            assert np.isclose(np.sqrt(np.mean(u0**2)), inst.params["ic_amplitude"])
            for p, (lo, hi) in level.ranges.items():
                assert lo <= inst.params[p] <= hi
            d = pde.dimensionless(inst.params, inst.inputs)
            if cls is Advection1D:
                n = g.shape[0]
                assert np.isclose(d["cfl"], inst.params["speed"] * inst.params["t_final"] / (pde.n_snapshots - 1) * n)
            else:
                assert np.isclose(d["Fo"], inst.params["kappa"] * inst.params["t_final"])
    # difficulty grows along the levels: less smoothing / more cells per frame
    key, num = ("cfl", "speed") if cls is Advection1D else ("Fo", "kappa")
    mids = [np.sqrt(np.prod(pde.level(lv).ranges[num])) for lv in ("easy", "medium", "hard")]
    assert (mids[0] < mids[1] < mids[2]) if cls is Advection1D else (mids[0] > mids[1] > mids[2])


def test_same_seed_same_instance():
    pde = Heat2D()
    g = pde.grid(16)
    a, b = (pde.sample("hard", np.random.default_rng([9, 1]), g) for _ in range(2))
    c = pde.sample("hard", np.random.default_rng([9, 2]), g)
    assert a.params == b.params and np.array_equal(a.inputs["u"], b.inputs["u"])
    assert a.params != c.params and not np.array_equal(a.inputs["u"], c.inputs["u"])


# ---- solve: layout, batch independence, residual, errors -----------------------------------------
@pytest.mark.parametrize("cls", [Heat2D, Advection1D])
def test_instance_alone_equals_instance_in_batch(cls):
    pde = cls()
    g = pde.grid(16)
    rng = np.random.default_rng(11)
    insts = [pde.sample(lv, rng, g) for lv in ("easy", "hard", "medium", "easy", "hard")]
    together = pde.solve(insts, g)
    perm = [2, 4, 0, 3, 1]
    permuted = pde.solve([insts[i] for i in perm], g)
    assert np.array_equal(permuted.fields["u"], together.fields["u"][perm])
    for i in range(len(insts)):
        assert np.array_equal(pde.solve([insts[i]], g).fields["u"][0], together.fields["u"][i])
    json.dumps(together.settings)
    assert np.array_equal(together.fields["u"][:, 0], np.stack([i.inputs["u"] for i in insts]))
    assert together.fields["u"].shape == (5, pde.n_snapshots) + g.shape
    assert set(together.per_sample) == {"dt", "steps_per_interval", "solver_resolution"}


@pytest.mark.parametrize("cls", [Heat1D, Advection1D])
def test_residual_small_on_solution_large_on_perturbation(cls):
    pde = cls()
    g = pde.grid(64)
    x = g.axis(0)
    u0 = np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x)
    p = {**pde.default_params(), **({"kappa": 0.01} if cls is Heat1D else {"speed": 0.3})}
    r = pde.solve([Instance(p, {"u": u0})], g)
    res = pde.residual(r.fields, {k: np.array([v]) for k, v in p.items()}, g)
    pert = r.fields["u"] + 0.01 * np.sin(6 * np.pi * x)
    res_p = pde.residual({"u": pert}, p, g, times=r.times)
    assert res.shape == (1, pde.n_snapshots - 2, 64)
    rms = lambda a: np.sqrt(np.mean(a**2))  # noqa: E731
    assert rms(res) < 0.1 * rms(res_p), (rms(res), rms(res_p))
    # the residual of the exact solution is the O(Δt²) time-difference error: 4× frames, ~16× less
    exact = heat_solution if cls is Heat1D else (lambda u, a, t: advection_solution(u, a, t))
    coeff = p["kappa"] if cls is Heat1D else p["speed"]
    t_fine = np.linspace(0.0, p["t_final"], 4 * (pde.n_snapshots - 1) + 1)
    r_fine = pde.residual({"u": exact(u0, coeff, t_fine)[None]}, p, g, times=t_fine)
    common = r_fine[:, 3::4]
    assert rms(common) < rms(res) / 12, (rms(common), rms(res))
    # torch in, torch out, differentiable
    import torch
    ut = torch.tensor(r.fields["u"], requires_grad=True)
    rt = pde.residual({"u": ut}, p, g)
    rt.pow(2).sum().backward()
    assert ut.grad is not None and np.allclose(rt.detach().numpy(), res)


def test_bad_inputs_fail_early():
    pde = Heat1D()
    g = pde.grid(16)
    good = np.sin(2 * np.pi * g.axis(0))
    p = pde.default_params()
    with pytest.raises(UserError, match="shape"):
        pde.solve([Instance(p, {"u": np.zeros(8)})], g)
    with pytest.raises(UserError, match="kappa must be positive"):
        pde.solve([Instance({**p, "kappa": 0.0}, {"u": good})], g)
    with pytest.raises(UserError, match="not finite"):
        pde.solve([Instance(p, {"u": good * np.nan})], g)
    with pytest.raises(UserError, match="share t_final"):
        pde.solve([Instance(p, {"u": good}), Instance({**p, "t_final": 2.0}, {"u": good})], g)
    with pytest.raises(UserError, match="missing input"):
        pde.solve([Instance(p, {"v": good})], g)
    with pytest.raises(UserError, match="level"):
        pde.sample("impossible", np.random.default_rng(0), g)
    with pytest.raises(UserError, match="speed must be finite"):
        Advection1D().solve([Instance({**Advection1D().default_params(), "speed": np.inf}, {"u": good})], g)
