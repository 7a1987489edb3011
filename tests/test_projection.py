"""The masked MAC projection solver: exact solutions, conservation, operator order, forces, errors."""
import math

import numpy as np
import pytest

from pde_lab.errors import UserError
from pde_lab.grids import CartesianGrid
from pde_lab.solvers import projection as proj


def channel(nx=32, ny=16, length=2.0, height=1.0, u_max=1.0):
    grid = CartesianGrid(((0.0, length), (0.0, height)), (nx, ny), (False, False))
    y = grid.axis(1)
    bcs = {"x_lo": proj.velocity_inlet(proj.parabolic_profile(y, 0.0, height, u_max)), "x_hi": proj.outflow(),
           "y_lo": proj.no_slip_wall(), "y_hi": proj.no_slip_wall()}
    return grid, bcs


def cavity_bcs(lid=1.0):
    return {"x_lo": proj.no_slip_wall(), "x_hi": proj.no_slip_wall(), "y_lo": proj.no_slip_wall(),
            "y_hi": proj.no_slip_wall(lid)}


@pytest.mark.parametrize("times", [[float("inf")], [0.5, float("inf")], [float("nan"), 1.0]])
def test_run_refuses_non_finite_output_times(times):
    """NaN and inf pass every ordering test: an infinite output time ended the stepping loop at once
    (``inf − t > 1e-12 · inf`` is false), so ``run`` returned the current state for it, 0 steps taken."""
    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (8, 8), (False, False))
    solver = proj.ProjectionSolver(grid, 0.01, cavity_bcs())
    solver.set_state()
    with pytest.raises(ValueError, match="output_times must be finite"):
        solver.run(times)


def test_poiseuille_develops_with_exact_flux_balance_and_pressure_gradient():
    """From the impulsive start the channel relaxes to plane Poiseuille flow; the pressure gradient
    approaches −8 ν u_max / H², the discrete divergence stays at round-off after every step and the
    outflow equals the inflow to round-off."""
    nu = 0.1
    grid, bcs = channel()
    solver = proj.ProjectionSolver(grid, nu, bcs)
    assert solver.set_state() < 1e-13
    res = solver.run(np.linspace(0.0, 4.0, 5))
    assert res.max_divergence < 1e-12
    assert res.times[-1] == 4.0 and solver.t == 4.0
    flux = solver.boundary_fluxes()
    assert flux["x_lo"] == pytest.approx(-2.0 / 3.0, rel=2e-3)  # ∫ parabola = 2/3 u_max H (midpoint rule)
    assert abs(flux["x_lo"] + flux["x_hi"]) < 1e-13
    assert flux["y_lo"] == flux["y_hi"] == 0.0
    y = grid.axis(1)
    profile = res.u[-1][-1]
    exact = proj.parabolic_profile(y, 0.0, 1.0, 1.0)
    assert np.abs(profile - exact).max() < 5e-3
    assert np.abs(res.v[-1]).max() < 2e-3
    dpdx = np.diff(res.p[-1][:, 8]) / grid.spacing[0]
    assert np.allclose(dpdx[8:24], -8 * nu, rtol=1e-2)
    # Pressure is zero half a cell beyond the outlet: the last centre holds dp/dx · (−h/2).
    assert res.p[-1][-1, 8] == pytest.approx(-dpdx[20] * grid.spacing[0] / 2, rel=2e-2)


def test_every_step_is_divergence_free_and_conserves_volume_with_obstacles():
    grid, bcs = channel(48, 24)
    rng = np.random.default_rng(3)
    solid = np.zeros(grid.shape, dtype=bool)
    solid[10:14, 5:9] = True
    solid[20:23, 14:20] = True
    solid[30:32, 2:4] = True
    solver = proj.ProjectionSolver(grid, 2e-3, bcs, solid=solid)
    u0 = rng.normal(size=(49, 24)) * 0.3
    v0 = rng.normal(size=(48, 25)) * 0.3
    solver.set_state(u0, v0)

    divs, balance = [], []

    def check(s):
        divs.append(np.abs(s.divergence(s.u, s.v)).max())
        f = s.boundary_fluxes()
        balance.append(abs(f["x_lo"] + f["x_hi"]))
        # No-slip and no penetration on every obstacle face.
        assert not s.u[1:-1][solid[:-1] | solid[1:]].any()
        assert not s.v[:, 1:-1][solid[:, :-1] | solid[:, 1:]].any()

    res = solver.run([0.3], callback=check)
    assert res.steps == len(divs) > 10
    assert max(divs) < 1e-11
    assert max(balance) < 1e-13
    assert np.all(res.u[0][solid] == 0) and np.all(res.p[0][solid] == 0)


def test_output_times_hit_exactly_and_frame_zero_is_the_projected_start():
    grid, bcs = channel(24, 12)
    solver = proj.ProjectionSolver(grid, 0.05, bcs)
    solver.set_state()
    u_start = solver.cell_velocity()[0]
    res = solver.run([0.0, 0.05, 0.1])
    np.testing.assert_array_equal(res.u[0], u_start)
    assert res.times.tolist() == [0.0, 0.05, 0.1]
    assert solver.t == 0.1
    # Frame 0 carries the pressure of the first step (not zero, not the impulse of the start).
    assert np.abs(res.p[0]).max() > 0
    with pytest.raises(ValueError, match="increasing"):
        solver.run([0.05])
    # The potential-flow start is irrotational: the discrete vorticity at interior corners vanishes.
    solver.set_state()
    dx, dy = grid.spacing
    w = (solver.v[1:, 1:-1] - solver.v[:-1, 1:-1]) / dx - (solver.u[1:-1, 1:] - solver.u[1:-1, :-1]) / dy
    assert np.abs(w).max() < 1e-10


def _smooth_field(grid):
    """u = sin πx cos πy, v = −cos πx sin πy on the staggered positions, and the exact
    −(u·∇)u + ν Δu of both components at the same positions."""
    dx, dy = grid.spacing
    nx, ny = grid.shape
    xf = np.arange(nx + 1) * dx
    yc = (np.arange(ny) + 0.5) * dy
    xc = (np.arange(nx) + 0.5) * dx
    yf = np.arange(ny + 1) * dy
    pi = math.pi

    def exact(x, y, nu):
        u, v = np.sin(pi * x) * np.cos(pi * y), -np.cos(pi * x) * np.sin(pi * y)
        ux, uy = pi * np.cos(pi * x) * np.cos(pi * y), -pi * np.sin(pi * x) * np.sin(pi * y)
        vx, vy = pi * np.sin(pi * x) * np.sin(pi * y), -pi * np.cos(pi * x) * np.cos(pi * y)
        return u, v, -(u * ux + v * uy) - nu * 2 * pi**2 * u, -(u * vx + v * vy) - nu * 2 * pi**2 * v

    Xu, Yu = np.meshgrid(xf, yc, indexing="ij")
    Xv, Yv = np.meshgrid(xc, yf, indexing="ij")
    return Xu, Yu, Xv, Yv, exact


@pytest.mark.parametrize("pe_max", [math.inf, 10.0])
def test_momentum_operator_is_second_order_where_resolved(pe_max):
    """Away from the walls the flux-form operator converges at second order to −(u·∇)u + νΔu, and the
    convection blend stays off while the cell Péclet number is below Pe_max."""
    nu = 0.05
    errors = []
    for n in (16, 32, 64):
        grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (n, n), (False, False))
        solver = proj.ProjectionSolver(grid, nu, cavity_bcs(0.0), pe_max=pe_max)
        Xu, Yu, Xv, Yv, exact = _smooth_field(grid)
        u, _, ru_ex, _ = exact(Xu, Yu, nu)
        _, v, _, rv_ex = exact(Xv, Yv, nu)
        ru, rv = solver.momentum_rhs(u, v)
        k = n // 8  # stay clear of the wall ghosts
        err = max(np.abs(ru - ru_ex)[k:-k, k:-k].max(), np.abs(rv - rv_ex)[k:-k, k:-k].max())
        errors.append(err)
        assert max(np.abs(u).max(), np.abs(v).max()) * grid.spacing[0] / nu < 10.0  # resolved: Pe < Pe_max
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert orders.min() > 1.9, (errors, orders)


def test_blend_adds_upwind_diffusion_only_above_the_peclet_cap():
    """With ν tiny the blended flux equals central convection plus diffusion |U| h / Pe_max."""
    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (16, 16), (False, False))
    nu = 1e-13
    central = proj.ProjectionSolver(grid, nu, cavity_bcs(0.0), pe_max=1e12)
    blended = proj.ProjectionSolver(grid, nu, cavity_bcs(0.0), pe_max=4.0)
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(17, 16)), rng.normal(size=(16, 17))
    fc, fb = central.fluxes(u, v), blended.fluxes(u, v)
    h = 1 / 16
    uc = 0.5 * (u[1:] + u[:-1])
    np.testing.assert_allclose(fb[0] - fc[0], -np.abs(uc) * h / 4 * (u[1:] - u[:-1]) / h, atol=1e-12)
    # Pure upwind is the blend with Pe_max = 2.
    upwind = proj.ProjectionSolver(grid, nu, cavity_bcs(0.0), pe_max=2.0).fluxes(u, v)[0]
    np.testing.assert_allclose(upwind, uc * np.where(uc > 0, u[:-1], u[1:]), atol=1e-10)


def test_enclosed_pocket_and_closed_box_have_a_fixed_pressure_level():
    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (24, 24), (False, False))
    solid = np.zeros((24, 24), dtype=bool)
    solid[8:16, 8] = solid[8:16, 15] = solid[8, 8:16] = solid[15, 8:16] = True  # a hollow ring
    solver = proj.ProjectionSolver(grid, 0.01, cavity_bcs(1.0), solid=solid)
    assert solver.n_pinned == 2  # the cavity and the pocket inside the ring
    solver.set_state()
    res = solver.run([0.2, 0.4])
    assert res.max_divergence < 1e-12
    inside = np.zeros_like(solid)
    inside[9:15, 9:15] = True
    assert np.abs(res.u[-1][inside]).max() == 0.0  # nothing drives the pocket
    fluid = ~solid
    assert abs(res.p[-1][fluid].mean()) < 1e-12


def test_force_is_symmetric_and_additive():
    """A square centred in a symmetric channel feels drag but no lift; the force on two bodies is the
    sum of the forces on each."""
    grid, bcs = channel(48, 24, length=2.0, height=1.0)
    solid = np.zeros(grid.shape, dtype=bool)
    solid[10:14, 10:14] = True
    solver = proj.ProjectionSolver(grid, 0.02, bcs, solid=solid)
    solver.set_state()
    solver.run([1.0])
    fx, fy = solver.force()
    assert fx > 0 and abs(fy) < 1e-10 * fx
    second = np.zeros_like(solid)
    second[30:33, 4:7] = True
    two = proj.ProjectionSolver(grid, 0.02, bcs, solid=solid | second)
    two.set_state()
    two.run([0.5])
    total = np.array(two.force())
    parts = np.array(two.force(solid)) + np.array(two.force(second))
    np.testing.assert_allclose(total, parts, rtol=1e-12)
    assert two.force(np.zeros_like(solid)) == (0.0, 0.0)


def test_blow_up_is_detected():
    grid, bcs = channel(32, 16)
    solid = np.zeros(grid.shape, dtype=bool)
    solid[8:11, 6:9] = True
    solver = proj.ProjectionSolver(grid, 1e-4, bcs, solid=solid, cfl=20.0, diffusion_number=20.0, max_courant=30.0)
    solver.set_state()
    with pytest.raises(proj.FlowBlowUpError, match="Courant|finite"):
        solver.run([5.0])


def test_bad_input_fails_early():
    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (8, 8), (False, False))
    with pytest.raises(UserError, match="viscosity"):
        proj.ProjectionSolver(grid, 0.0, cavity_bcs())
    with pytest.raises(ValueError, match="missing"):
        proj.ProjectionSolver(grid, 0.1, {"x_lo": proj.outflow()})
    with pytest.raises(ValueError, match="solid mask"):
        proj.ProjectionSolver(grid, 0.1, cavity_bcs(), solid=np.zeros((4, 4), bool))
    with pytest.raises(UserError, match="no fluid"):
        proj.ProjectionSolver(grid, 0.1, cavity_bcs(), solid=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="inflow profile"):
        proj.ProjectionSolver(grid, 0.1, {**cavity_bcs(), "x_lo": proj.velocity_inlet(np.ones(5))})
    with pytest.raises(UserError, match="pe_max"):
        proj.ProjectionSolver(grid, 0.1, cavity_bcs(), pe_max=1.0)
    with pytest.raises(UserError, match="divergence_tol must be"):  # else every step failed as a blow-up
        proj.ProjectionSolver(grid, 0.1, cavity_bcs(), divergence_tol=-1e-8)
    with pytest.raises(ValueError, match="bounded 2D"):
        proj.ProjectionSolver(CartesianGrid(((0.0, 1.0),), (8,), (False,)), 0.1, cavity_bcs())


def test_snapshot_residual_vanishes_on_an_exact_unsteady_solution():
    """Decaying Taylor–Green vortex ``u = sin x cos y e^{−2νt}``: the collocated residual converges at
    second order in space (time differences of the exact exponential are refined alongside)."""
    nu = 0.1
    errs = []
    for n in (32, 64, 128):
        grid = CartesianGrid(((0.0, 2 * math.pi), (0.0, 2 * math.pi)), (n, n), (False, False))
        x, y = grid.mesh()
        times = np.array([0.0, 0.5 / n, 1.0 / n]) * 16
        decay = np.exp(-2 * nu * times)[None, :, None, None]
        u = np.sin(x) * np.cos(y) * decay
        v = -np.cos(x) * np.sin(y) * decay
        p = 0.25 * (np.cos(2 * x) + np.cos(2 * y)) * decay**2
        r = proj.snapshot_residual(np.stack([u, v], -1), p, nu, grid, times)
        assert r.shape == (1, 1, n, n, 3)
        assert np.all(r[:, :, 0] == 0) and np.all(r[:, :, :, -1] == 0)
        errs.append(np.abs(r).max())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert orders.min() > 1.85, (errs, orders)


def test_snapshot_residual_accepts_torch_and_is_differentiable():
    import torch

    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (8, 8), (False, False))
    rng = np.random.default_rng(0)
    vel, p = rng.normal(size=(2, 4, 8, 8, 2)), rng.normal(size=(2, 4, 8, 8))
    fluid = rng.uniform(size=(2, 8, 8)) > 0.2
    times = np.array([0.0, 0.1, 0.3, 0.4])
    ref = proj.snapshot_residual(vel, p, np.array([0.1, 0.2]), grid, times, fluid)
    vt = torch.tensor(vel, requires_grad=True)
    out = proj.snapshot_residual(vt, torch.tensor(p), np.array([0.1, 0.2]), grid, times, fluid)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    (out**2).sum().backward()
    assert vt.grad is not None and torch.isfinite(vt.grad).all() and vt.grad.abs().sum() > 0
