"""Immersed curved walls on the MAC grid: interpolation rule, channel convergence order, DFG forces."""
import numpy as np
import pytest

from pde_lab.errors import UserError
from pde_lab.grids import CartesianGrid
from pde_lab.solvers import projection as proj
from pde_lab.solvers.immersed_boundary import ImmersedBoundary


def tilted_wall(x, y):
    """Signed distance to the line y = 0.3 + 0.2 (x − 0.5); the body lies below it."""
    return (y - 0.3 - 0.2 * (x - 0.5)) / np.hypot(1.0, 0.2)


@pytest.mark.parametrize("order", [1, 2])
def test_forced_nodes_reproduce_a_velocity_linear_in_the_wall_distance(order):
    """Near a straight, tilted wall a field growing linearly from zero at the wall is reproduced at
    every forced node (bilinear image interpolation and the Lagrange rule are exact for it), nodes
    inside are flagged, and only cells with four inside faces are solid."""
    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (24, 20), (False, False))
    ib = ImmersedBoundary.from_sdf(grid, tilted_wall, order=order)
    dx, dy = grid.spacing
    for rule, xs, ys in ((ib.u, np.arange(25) * dx, (np.arange(20) + 0.5) * dy),
                         (ib.v, (np.arange(24) + 0.5) * dx, np.arange(21) * dy)):
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        phi = tilted_wall(X, Y)
        field = 3.0 * np.where(phi > 0, phi, 0.0)
        target = np.full_like(field, np.nan)
        rule.apply(target, field)
        # The normal leans towards x = 0, so image points of nodes on that edge leave the lattice.
        assert rule.unresolved[1:].sum() == 0 and rule.unresolved[0].any()
        ok = rule.index[~rule.unresolved.ravel()[rule.index]]
        assert ok.size > 10
        assert np.allclose(target.ravel()[ok], field.ravel()[ok], rtol=1e-12, atol=1e-14)
        assert np.array_equal(rule.inside, phi <= 0)
        assert np.array_equal(rule.forced, (phi > 0) & (phi < max(dx, dy)))
    assert np.array_equal(ib.solid, ib.u.inside[:-1] & ib.u.inside[1:] & ib.v.inside[:, :-1] & ib.v.inside[:, 1:])


def slab_channel(ny, a=0.13, b=0.87, nu=0.05, u_max=1.0, order=2):
    """Plane Poiseuille flow between walls at y = a and y = b that cut through the cells."""
    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (ny, ny), (False, False))
    y = grid.axis(1)
    inflow = np.where((y > a) & (y < b), proj.parabolic_profile(y, a, b, u_max), 0.0)
    bcs = {"x_lo": proj.velocity_inlet(inflow), "x_hi": proj.outflow(),
           "y_lo": proj.no_slip_wall(), "y_hi": proj.no_slip_wall()}
    ib = ImmersedBoundary.from_sdf(grid, lambda x, y: np.minimum(y - a, b - y), order=order)
    return grid, proj.ProjectionSolver(grid, nu, bcs, immersed=ib)


def test_immersed_channel_walls_give_poiseuille_flow_at_second_order():
    """Walls off the grid lines, imposed by forcing: the steady outflow profile converges to the
    parabola at second order, every step is divergence-free, the outflow equals the inflow and the
    pressure gradient is Poiseuille's."""
    errors = []
    for ny in (16, 32):
        grid, solver = slab_channel(ny)
        y = grid.axis(1)
        exact = proj.parabolic_profile(y, 0.13, 0.87, 1.0)
        solver.set_state(np.broadcast_to(np.where((y > 0.13) & (y < 0.87), exact, 0.0), (ny + 1, ny)))
        res = solver.run([2.0])
        assert res.max_divergence < 1e-11
        flux = solver.boundary_fluxes()
        assert abs(flux["x_lo"] + flux["x_hi"]) < 1e-12
        # Face velocities on the last interior face line, where the flow is fully developed.
        u = solver.u[-2]
        fluid = (y > 0.13) & (y < 0.87)
        errors.append(np.abs(u[fluid] - exact[fluid]).max())
        # The incremental pressure is the flow's pressure: dp/dx = −8 ν u_max / (b − a)².
        dpdx = np.diff(res.p[-1][:, ny // 2]) / grid.spacing[0]
        assert np.allclose(dpdx[ny // 4: 3 * ny // 4], -8 * 0.05 / 0.74**2, rtol=0.02)
    assert errors[0] < 0.005  # 0.3 % of the peak on 16 cells
    assert errors[0] / errors[1] > 3.6  # order > 1.85: 4.4 measured (7.3 from 32 to 64 cells)


def test_immersed_force_on_a_centred_cylinder_has_drag_and_no_lift():
    """A circle centred in a symmetric channel: positive drag, lift zero to round-off."""
    grid = CartesianGrid(((0.0, 2.0), (0.0, 1.0)), (64, 32), (False, False))
    y = grid.axis(1)
    bcs = {"x_lo": proj.velocity_inlet(proj.parabolic_profile(y, 0.0, 1.0, 1.0)), "x_hi": proj.outflow(),
           "y_lo": proj.no_slip_wall(), "y_hi": proj.no_slip_wall()}
    ib = ImmersedBoundary.from_sdf(grid, lambda x, y: np.hypot(x - 0.6, y - 0.5) - 0.17, order=2)
    solver = proj.ProjectionSolver(grid, 0.05, bcs, immersed=ib)
    solver.set_state()
    solver.run([3.0])
    fx, fy = solver.force()
    assert fx > 0
    assert abs(fy) < 1e-9 * fx
    assert solver.settings()["immersed_boundary"].startswith("direct forcing")


def test_immersed_body_input_errors():
    grid = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (16, 16), (False, False))
    ib = ImmersedBoundary.from_sdf(grid, lambda x, y: np.hypot(x - 0.5, y - 0.5) - 0.2)
    bcs = {s: proj.no_slip_wall() for s in proj.SIDES}
    other = CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (8, 8), (False, False))
    with pytest.raises(ValueError, match="built for cells"):
        proj.ProjectionSolver(other, 0.1, bcs, immersed=ib)
    solver = proj.ProjectionSolver(grid, 0.1, bcs, immersed=ib)
    with pytest.raises(ValueError, match="immersed body only"):
        solver.force(np.ones((16, 16), dtype=bool))
    with pytest.raises(ValueError, match="order"):
        ImmersedBoundary.from_sdf(grid, lambda x, y: x - 0.5, order=3)
    close = ImmersedBoundary.from_sdf(grid, lambda x, y: np.hypot(x - 0.5, y - 0.5) - 0.45)
    with pytest.raises(UserError, match="no image point"):  # less than a cell between body and edge
        proj.ProjectionSolver(grid, 0.1, bcs, immersed=close)
