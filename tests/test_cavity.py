"""Lid-driven cavity: declarations, solve, residual, determinism and Ghia et al.'s centreline minima."""
import json
import re

import numpy as np
import pytest

import pde_lab.pdes.cavity as cav
from pde_lab.errors import UserError
from pde_lab.pdes import PDES, get_pde
from pde_lab.pdes.base import Instance
from pde_lab.solvers import projection as proj


@pytest.fixture(scope="module")
def pde():
    return cav.LidDrivenCavity(n_snapshots=3)


def test_declarations():
    pde = get_pde("lid_driven_cavity")
    assert type(pde) is cav.LidDrivenCavity and PDES.get("lid_driven_cavity") is cav.LidDrivenCavity
    fields = {f.name: (f.role, f.time_varying, f.rank) for f in pde.fields}
    assert fields == {"velocity": ("solution", True, 1), "pressure": ("solution", True, 0)}
    assert {k: v.ranges["reynolds"] for k, v in pde.levels.items()} == {
        "easy": (100.0, 1000.0), "medium": (2000.0, 4000.0), "hard": (8000.0, 10000.0)}
    assert pde.grid(128).shape == (128, 128) and pde.grid(8).bounds == ((0.0, 1.0), (0.0, 1.0))
    assert pde.n_snapshots >= 21


def test_sampling_is_deterministic(pde):
    grid = pde.grid(16)
    a = pde.sample("hard", np.random.default_rng(7), grid)
    b = pde.sample("hard", np.random.default_rng(7), grid)
    assert a.params == b.params and a.inputs == {}
    assert 8000 <= a.params["reynolds"] <= 10000
    assert pde.dimensionless(a.params, a.inputs) == {"reynolds": a.params["reynolds"]}


def test_solve_shapes_and_physics(pde):
    grid = pde.grid(24)
    insts = [pde.sample(lv, np.random.default_rng(1), grid) for lv in ("easy", "hard")]
    for inst in insts:
        inst.params["t_final"] = 0.5
    res = pde.solve(insts, grid)
    vel, p = res.fields["velocity"], res.fields["pressure"]
    assert vel.shape == (2, 3, 24, 24, 2) and p.shape == (2, 3, 24, 24)
    assert np.all(np.isfinite(vel)) and np.all(np.isfinite(p))
    np.testing.assert_array_equal(vel[:, 0], 0.0)  # at rest: the lid is tangential, the start stays at rest
    assert np.abs(p.mean(axis=(2, 3))).max() < 1e-12  # zero-mean pressure
    # The lid drags the top layer along +x; the return flow below runs against it.
    assert vel[0, -1, :, -1, 0].mean() > 0.3 and vel[:, -1, :, -1, 0].min() > 0
    assert vel[0, -1, 12, 6, 0] < 0
    # Low Re diffuses the lid's momentum deeper: more kinetic energy after the same time.
    energy = (vel[:, -1] ** 2).sum(axis=(1, 2, 3))
    assert energy[0] > 2 * energy[1]
    assert np.all(res.per_sample["max_divergence"] < 1e-12)
    json.dumps(res.settings)
    alone = pde.solve([insts[1]], grid)
    assert alone.fields["velocity"][0].tobytes() == vel[1].tobytes()


def test_first_step_from_rest_respects_the_cfl_bound():
    """At rest only the lid moves, through ghost values: its speed must bound the first step too."""
    pde = cav.LidDrivenCavity(n_snapshots=2)
    grid = pde.grid(32)
    inst = pde.sample("hard", np.random.default_rng(0), grid)
    inst.params["t_final"] = 0.05
    res = pde.solve([inst], grid)
    assert res.per_sample["max_courant"][0] <= 0.5 + 1e-9
    assert res.per_sample["dt_max"][0] <= 0.5 / 32 + 1e-12


def test_residual_small_on_the_steady_flow_and_large_with_wrong_viscosity():
    pde = cav.LidDrivenCavity(n_snapshots=5)
    grid = pde.grid(32)
    inst = pde.sample("easy", np.random.default_rng(0), grid)
    inst.params.update(reynolds=100.0, t_final=8.0)
    res = pde.solve([inst], grid)
    sol = {k: v[:, -3:] for k, v in res.fields.items()}
    times = res.times[-3:]
    norm = lambda r: float(np.sqrt((r[..., :2] ** 2).mean()))  # noqa: E731
    good = norm(pde.residual(sol, {"reynolds": np.array([100.0])}, grid, times))
    wrong = norm(pde.residual(sol, {"reynolds": np.array([400.0])}, grid, times))
    assert good < 0.3 * wrong


def test_centreline_minimum_refines_between_samples():
    y = np.linspace(0, 1, 11)
    u = (y - 0.43) ** 2 - 0.2
    assert cav.centreline_minimum(u, y) == pytest.approx((-0.2, 0.43), abs=1e-12)


def test_coarse_cavity_is_close_to_ghia():
    """On 32² cells the Re = 100 minimum is already within 3 % of Ghia et al."""
    r = cav.run_ghia(100, resolution=32, t_max=15.0)
    assert abs(r["rel_error"]) < 0.03, r
    assert r["y_min"] == pytest.approx(0.4531, abs=0.03)
    with pytest.raises(UserError, match="Ghia"):
        cav.run_ghia(200)


def test_blow_up_names_the_sample():
    pde = cav.LidDrivenCavity(n_snapshots=2, cfl=30.0, diffusion_number=30.0, max_courant=3.0)
    grid = pde.grid(16)
    inst = pde.sample("hard", np.random.default_rng(0), grid)
    with pytest.raises(proj.FlowBlowUpError, match="reynolds"):
        pde.solve([inst], grid)


@pytest.mark.slow
@pytest.mark.parametrize("reynolds", [100, 400, 1000])
def test_ghia_centreline_minimum_within_two_percent(reynolds):
    """Numbers in docs/pdes/cavity.md (128² cells, purely central convection at these Re)."""
    r = cav.run_ghia(reynolds, resolution=128, t_max=80.0)
    print(f"\nGhia Re {reynolds}: {r}")  # the numbers quoted in the docs (pytest -s)
    assert abs(r["rel_error"]) < 0.02, r
    assert r["y_min"] == pytest.approx(r["y_ref"], abs=0.01)


def test_a_lid_moving_backwards_gives_the_mirrored_flow_and_a_still_lid_is_refused(pde):
    """``ν = |U| L / Re``: with ``U = −1`` the flow is the mirror image ``x → 1 − x`` of ``U = 1`` (used to
    crash with a negative viscosity), and its residual is as small as the forward flow's."""
    grid = pde.grid(16)
    fwd = pde.sample("easy", np.random.default_rng(3), grid)
    fwd.params["t_final"] = 0.3
    back = Instance({**fwd.params, "lid_velocity": -1.0}, {})
    a, b = (pde.solve([inst], grid) for inst in (fwd, back))
    ua, ub = a.fields["velocity"][0], b.fields["velocity"][0]
    np.testing.assert_allclose(ub[..., 0], -ua[:, ::-1, :, 0], atol=1e-10)
    np.testing.assert_allclose(ub[..., 1], ua[:, ::-1, :, 1], atol=1e-10)
    r = [float(np.abs(pde.residual(res.fields, inst.params, grid, res.times)).max())
         for res, inst in ((a, fwd), (b, back))]
    assert abs(r[1] - r[0]) < 1e-8 * r[0]
    with pytest.raises(UserError, match="lid_velocity must be non-zero and finite.*got 0.0"):
        pde.solve([Instance({**fwd.params, "lid_velocity": 0.0}, {})], grid)


@pytest.mark.parametrize("options, message", [
    ({"n_snapshots": 2.5}, "n_snapshots must be an integer >= 2, got 2.5"),
    ({"n_snapshots": 1}, "n_snapshots must be an integer >= 2, got 1"),
    ({"cfl": -0.5}, "cfl must be positive, got -0.5"),
    ({"pe_max": 1.0}, "pe_max must be >= 2 (2: pure upwinding; inf allowed), got 1.0"),
    ({"max_courant": "x"}, "max_courant must be positive and finite, got 'x'"),
])
def test_bad_solver_options_fail_at_construction(options, message):
    """Through ``get_pde`` (the CLI's ``--solver-option``), before any sample is drawn or solved."""
    for name in ("lid_driven_cavity", "navier_stokes_obstacles"):
        with pytest.raises(UserError, match=re.escape(message)):
            get_pde(name, **options)
    assert get_pde("lid_driven_cavity", n_snapshots=5.0).n_snapshots == 5


@pytest.mark.parametrize("name", ["lid_driven_cavity", "navier_stokes_obstacles", "heat_fem"])
def test_an_infinite_t_final_is_refused_naming_it(name):
    """``t_final = inf`` passed ``> 0``: the flow families then stored the state at rest for every frame
    (times ``[nan, inf, …]``, 0 steps) without a word, and heat_fem's message did not name t_final."""
    pde = get_pde(name)
    level = next(iter(pde.levels))
    grid = pde.level_grid(level, 8)
    inst = pde.sample(level, np.random.default_rng(0), grid)
    with pytest.raises(UserError, match="t_final must be positive and finite, got inf"):
        pde.solve([Instance({**inst.params, "t_final": float("inf")}, inst.inputs)], grid)
