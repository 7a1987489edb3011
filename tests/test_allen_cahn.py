"""Allen–Cahn (1D/2D): stationary kinks, convergence in time and space, maximum principle, levels,
batch independence, residual."""
import math

import numpy as np
import pytest

from pde_lab.errors import UserError
from pde_lab.pdes import Instance
from pde_lab.pdes.allen_cahn import AllenCahn1D, AllenCahn2D, kink_pair


def _interfaces(u, x):
    """Zero crossings of a periodic profile by linear interpolation, sorted."""
    n = u.size
    out = []
    for i in range(n):
        a, b = u[i], u[(i + 1) % n]
        if (a < 0) != (b < 0):
            h = x[1] - x[0]
            out.append(x[i] + h * a / (a - b))
    return np.array(out)


def test_kink_is_an_exact_steady_state():
    """tanh(x/√(2ν)) zeroes ν u_xx + u − u³ (to round-off, spectral derivatives on a fine grid)."""
    pde = AllenCahn1D()
    g = pde.grid(1024)
    nu = 1e-4
    u = kink_pair(g.axis(0), nu, 0.25, 0.75)
    res = pde.residual({"u": np.stack([u, u, u])[None]}, {"nu": nu}, g, times=np.array([0.0, 1.0, 2.0]))
    assert np.abs(res).max() < 1e-9, np.abs(res).max()


@pytest.mark.parametrize("nu,spectral_tol,bound", [(1e-4, 1e-12, 1e-12), (1e-4, 1e-8, 1e-9)])
def test_kink_pair_stays_put(nu, spectral_tol, bound):
    """Two opposite kinks 1/2 apart: interaction ~exp(−2·(1/4)/√(2ν)) = e^{−35} ≈ 4e-16 for ν = 1e-4.

    With a solver grid resolving the kink to 1e-12 the profile stays within 1e-12 of its initial
    value over t = 50 and the interfaces do not move; with the default tolerance the discrete
    steady state differs from the exact kink by its spectral tail (~6e-11) and still does not drift.
    """
    pde = AllenCahn1D(spectral_tol=spectral_tol)
    g = pde.grid(256)  # the stored samples must pin down the kink: their interpolant is the solver's start
    x = g.axis(0)
    u0 = kink_pair(x, nu, 0.25, 0.75)
    p = {**pde.default_params(), "nu": nu, "t_final": 50.0}
    r = pde.solve([Instance(p, {"u": u0})], g)
    u = r.fields["u"][0]
    dev = np.abs(u - u0[None]).max(axis=1)
    interaction = math.exp(-2 * 0.25 / math.sqrt(2 * nu))
    assert dev.max() < max(bound, 10 * interaction), dev
    assert dev[-1] - dev[1] < 1e-13, dev                     # no drift after the first frame
    drift = np.abs(_interfaces(u[-1], x) - _interfaces(u0, x)).max()
    assert drift < bound, drift
    assert np.allclose(_interfaces(u0, x), [0.25, 0.75], atol=1e-12)


def test_close_kinks_interact_at_the_predicted_size():
    """ν = 1e-3: the interaction exp(−2 d/w) ≈ 1.4e-5 shows up, and only at that size."""
    pde = AllenCahn1D()
    g = pde.grid(128)
    nu = 1e-3
    u0 = kink_pair(g.axis(0), nu, 0.25, 0.75)
    r = pde.solve([Instance({**pde.default_params(), "nu": nu, "t_final": 50.0}, {"u": u0})], g)
    dev = np.abs(r.fields["u"][0, -1] - u0).max()
    interaction = math.exp(-2 * 0.25 / math.sqrt(2 * nu))
    assert 0.1 * interaction < dev < 10 * interaction, (dev, interaction)


def test_converges_in_time_and_space():
    """Default plan vs 8× smaller steps and vs a 2× finer solver grid: differences below 1e-7."""
    pde = AllenCahn1D()
    g = pde.grid(128)
    inst = pde.sample("medium", np.random.default_rng(3), g)
    inst = Instance({**inst.params, "t_final": 5.0}, inst.inputs)
    base = pde.solve([inst], g)
    finer_t = AllenCahn1D(reaction_number=pde.reaction_number / 8, stability_number=pde.stability_number / 8).solve([inst], g)
    finer_x = AllenCahn1D(spectral_tol=1e-14).solve([inst], g)
    assert finer_x.per_sample["solver_resolution"][0] > base.per_sample["solver_resolution"][0]
    assert finer_t.per_sample["dt"][0] == base.per_sample["dt"][0] / 8
    assert np.abs(finer_t.fields["u"] - base.fields["u"]).max() < 1e-7
    assert np.abs(finer_x.fields["u"] - base.fields["u"]).max() < 1e-7
    assert base.per_sample["spectral_tail"][0] < 1e-8


def test_maximum_principle_and_phase_separation():
    pde = AllenCahn1D()
    g = pde.grid(128)
    rng = np.random.default_rng(8)
    insts = [pde.sample("easy", rng, g) for _ in range(3)]
    r = pde.solve(insts, g)
    for i, inst in enumerate(insts):
        bound = max(1.0, np.abs(inst.inputs["u"]).max())
        assert np.abs(r.fields["u"][i]).max() <= bound + 1e-9
        # by t_final the phases have separated: most of the domain near ±1, unlike the initial state
        assert np.mean(np.abs(r.fields["u"][i, -1]) > 0.9) > 0.5 > np.mean(np.abs(inst.inputs["u"]) > 0.9)


def test_solver_plan_follows_the_rules():
    pde = AllenCahn1D()
    for nu, n in ((1e-3, 64), (1e-4, 256), (3e-5, 256)):
        ns = pde.solver_resolution({"nu": nu}, None, n)
        needed = 3 * math.log(1e8) / (math.pi**2 * math.sqrt(2 * nu))
        assert ns >= needed and ns >= 2 * n and ns % n == 0
    g = pde.grid(32)
    inst = pde.sample("hard", np.random.default_rng(1), g)
    r = pde.solve([inst], g)
    umax = max(1.0, np.abs(inst.inputs["u"]).max())
    dt = r.per_sample["dt"][0]
    assert 3 * dt == r.per_sample["reaction_number"][0] <= pde.reaction_number < 6 * dt
    # the stability rate comes from the initial state on the (finer) solver grid, whose maximum is at
    # least the stored one
    assert dt * 3 * umax**2 <= r.per_sample["stability_number"][0] <= pde.stability_number
    assert dt <= 1.0 / pde.min_steps_per_interval
    with pytest.raises(UserError, match="max_solver_resolution"):
        AllenCahn1D(max_solver_resolution=256).solve([Instance({**inst.params, "nu": 1e-6}, inst.inputs)], g)


@pytest.mark.parametrize("cls", [AllenCahn1D, AllenCahn2D])
def test_levels(cls):
    pde = cls()
    g = pde.grid(pde.default_resolution)
    rng = np.random.default_rng([4, 2])
    widths = []
    for name, level in pde.levels.items():
        for _ in range(3):
            inst = pde.sample(name, rng, g)
            assert np.isfinite(inst.inputs["u"]).all() and inst.inputs["u"].shape == g.shape
            for p, (lo, hi) in level.ranges.items():
                assert lo <= inst.params[p] <= hi
            assert pde.dimensionless(inst.params, inst.inputs)["Cn"] == pytest.approx(math.sqrt(inst.params["nu"]))
        widths.append(math.sqrt(level.ranges["nu"][0]))
        # cost guard: the hardest instance of the level fits the solver-size limit
        assert pde.solver_resolution({"nu": level.ranges["nu"][0]}, None, pde.default_resolution) <= pde.max_solver_resolution
    assert widths[0] > widths[1] > widths[2]


@pytest.mark.parametrize("nu", [1e-3, 5e-4])
def test_2d_circle_shrinks_by_mean_curvature(nu):
    """A disc of the + phase (radius 0.3, the kink profile across its edge) moves by curvature: in the
    sharp-interface limit R² = R0² − 2νt, so its area falls at 2πν. Fitted over t = 2 … 10 at 64²
    the rate is 1.0083 × 2πν at ν = 1e-3 and 1.0038 × at 5e-4: the O(ν) correction of the limit."""
    pde = AllenCahn2D()
    g = pde.grid(64)
    x, y = np.meshgrid(g.axis(0), g.axis(1), indexing="ij")
    u0 = np.tanh((0.3 - np.hypot(x - 0.5, y - 0.5)) / np.sqrt(2 * nu))
    r = pde.solve([Instance({**pde.default_params(), "nu": nu, "t_final": 10.0}, {"u": u0})], g)
    area = ((1 + r.fields["u"][0]) / 2).mean(axis=(1, 2))
    rate = np.polyfit(r.times[2:], area[2:], 1)[0]
    excess = rate / (-2 * np.pi * nu) - 1
    assert 0 < excess < 0.02 * (nu / 1e-3), excess


def test_2d_converges_in_time_and_space():
    """An ``easy`` 2D draw at 32², t = 0 … 10: against 8× smaller steps 5.2e-8 apart, against the
    solver grid of ``spectral_tol = 1e-14`` (256² instead of 128²) 6.3e-10."""
    pde = AllenCahn2D()
    g = pde.grid(32)
    inst = pde.sample("easy", np.random.default_rng(3), g)
    base = pde.solve([inst], g)
    finer_t = AllenCahn2D(reaction_number=pde.reaction_number / 8,
                          stability_number=pde.stability_number / 8).solve([inst], g)
    finer_x = AllenCahn2D(spectral_tol=1e-14).solve([inst], g)
    assert finer_x.per_sample["solver_resolution"][0] > base.per_sample["solver_resolution"][0]
    assert finer_t.per_sample["dt"][0] == base.per_sample["dt"][0] / 8
    assert np.abs(finer_t.fields["u"] - base.fields["u"]).max() < 1e-6
    assert np.abs(finer_x.fields["u"] - base.fields["u"]).max() < 1e-8


def test_2d_batch_independence_and_layout():
    pde = AllenCahn2D()
    g = pde.grid(16)
    rng = np.random.default_rng(5)
    insts = [pde.sample("easy", rng, g) for _ in range(3)]
    insts = [Instance({**i.params, "t_final": 1.0}, i.inputs) for i in insts]
    together = pde.solve(insts, g)
    assert together.fields["u"].shape == (3, pde.n_snapshots, 16, 16)
    assert np.array_equal(together.fields["u"][:, 0], np.stack([i.inputs["u"] for i in insts]))
    for i in (0, 2):
        assert np.array_equal(pde.solve([insts[i]], g).fields["u"][0], together.fields["u"][i])
    assert set(together.per_sample) == {"dt", "steps_per_interval", "solver_resolution", "reaction_number",
                                        "stability_number", "spectral_tail"}


def test_1d_batch_independence_mixed_plans():
    pde = AllenCahn1D()
    g = pde.grid(32)
    rng = np.random.default_rng(6)
    insts = [pde.sample(lv, rng, g) for lv in ("easy", "hard", "medium", "hard", "easy")]
    insts = [Instance({**i.params, "t_final": 2.0}, i.inputs) for i in insts]
    together = pde.solve(insts, g).fields["u"]
    for i in range(len(insts)):
        assert np.array_equal(pde.solve([insts[i]], g).fields["u"][0], together[i]), i


def test_residual_small_on_solution_large_on_perturbation():
    """On a solution the residual is the three-point time difference's error: at t = 0.1 … 0.4 it
    falls over 4x when the frame spacing halves (0.1 → 0.05), and is then far below the residual of
    the solution plus 0.2 sin 2πx."""
    pde = AllenCahn1D()
    g = pde.grid(128)
    inst = pde.sample("easy", np.random.default_rng(2), g)
    rms = lambda a: np.sqrt(np.mean(a**2))  # noqa: E731
    common = []
    for t_final, frames in ((1.0, slice(0, 4)), (0.5, slice(1, 8, 2))):  # interior frames at t = 0.1 … 0.4
        p = {**inst.params, "t_final": t_final}
        r = pde.solve([Instance(p, inst.inputs)], g)
        res = pde.residual(r.fields, p, g)
        assert res.shape == (1, pde.n_snapshots - 2, 128)
        common.append(rms(res[0, frames]))
    pert = pde.residual({"u": r.fields["u"] + 0.2 * np.sin(2 * np.pi * g.axis(0))}, p, g)
    assert common[0] > 4 * common[1], common
    assert common[1] < 0.1 * rms(pert[0, frames]), (common, rms(pert[0, frames]))
