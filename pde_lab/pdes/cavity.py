"""Lid-driven cavity: 2D incompressible Navier–Stokes on the unit square, fluid set in motion by the lid.

``u_t + (u·∇)u = −∇p + ν Δu``, ``∇·u = 0`` on ``[0, 1]²``, no-slip on the left, right and bottom walls,
the top wall (the lid) sliding at ``u = U`` (``v = 0``). The fluid starts at rest and the lid starts
impulsively. ``Re = U L / ν`` with ``L = 1``. Levels vary Re (easy 100–1000, medium 2000–4000, hard
8000–10000, the Reynolds ranges of the obstacle-flow levels): at low Re the flow settles to the steady
primary vortex within the stored window, at high Re thin shear layers and secondary corner vortices
develop and the grid-scale dynamics need the solver's convection blend.

The classical solver is :mod:`pde_lab.solvers.projection` (no obstacle, all walls; the pressure is
fixed by its mean, stored as zero mean). Validation against Ghia, Ghia & Shin (1982):
:func:`run_ghia`, ``docs/pdes/cavity.md``.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import UserError, check_positive
from ..grids import CartesianGrid
from ..solvers import projection as proj
from . import PDES
from .projection_flow import ProjectionFlowPDE
from .base import BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task, check_resolution

if TYPE_CHECKING:
    import torch

__all__ = ["LidDrivenCavity", "GHIA_U_MIN", "centreline_minimum", "run_ghia"]

#: Ghia, Ghia & Shin (1982), Table I: minimum of u on the vertical centreline and where it lies.
GHIA_U_MIN = {100: (-0.21090, 0.4531), 400: (-0.32726, 0.2813), 1000: (-0.38289, 0.1719)}


@PDES.register("lid_driven_cavity")
class LidDrivenCavity(ProjectionFlowPDE):
    """Lid-driven cavity on ``[0, 1]²``, fluid at rest at ``t = 0``.

    Fields on the ``(n, n)`` cell centres: ``velocity`` ``(T, n, n, 2)`` and ``pressure`` ``(T, n, n)``
    (zero mean) at ``n_snapshots`` equally spaced times in ``[0, t_final]``. There is no input field:
    an instance is its Reynolds number.

    Args (solver controls; the defaults are what data sets use):
        n_snapshots: stored frames including ``t = 0``.
        cfl, diffusion_number, pe_max, max_courant: see :class:`~pde_lab.solvers.projection.ProjectionSolver`.
    """

    name = "lid_driven_cavity"
    description = "2D lid-driven cavity from rest, Re 100-10000"
    equation = ("u_t + (u.grad)u = -grad p + nu lap u, div u = 0 on [0,1]^2; u = (U, 0) on y = 1, "
                "u = 0 on the other walls; nu = |U| / Re; fluid at rest at t = 0")
    parameters = (
        Parameter("reynolds", 1000.0, "1", "Re = U L / nu with L = 1"),
        Parameter("lid_velocity", 1.0, "L/T", "speed U of the lid (moving in +x)"),
        Parameter("t_final", 10.0, "T", "final time; snapshots at n_snapshots equal steps in [0, t_final]"),
    )
    fields = (
        FieldSpec("velocity", "solution", time_varying=True, rank=1, units="L/T",
                  description="(u, v) averaged from the MAC faces to the cell centres"),
        FieldSpec("pressure", "solution", time_varying=True, units="L^2/T^2",
                  description="kinematic pressure, zero mean; frame 0 holds the pressure after the first step"),
    )
    boundary_conditions = (
        BoundaryCondition("x_no_slip", "dirichlet", ("x",), ("velocity",), 0.0),
        BoundaryCondition("y_lo_no_slip", "dirichlet", ("y",), ("velocity",), 0.0),
        BoundaryCondition("y_hi_lid", "dirichlet", ("y",), ("velocity",), 1.0),
    )
    levels = {
        "easy": Level("easy", {"reynolds": (100.0, 1000.0)}, description="Re 100-1000: steady primary vortex"),
        "medium": Level("medium", {"reynolds": (2000.0, 4000.0)},
                        description="Re 2000-4000: thin lid shear layer, secondary corner vortices"),
        "hard": Level("hard", {"reynolds": (8000.0, 10000.0)},
                      description="Re 8000-10000: near the onset of unsteadiness, under-resolved at 128^2"),
    }
    solver = "MAC projection"
    default_resolution = 128
    default_task = Task("window", 1, 1)

    def grid(self, resolution: int) -> CartesianGrid:
        """Bounded grid on ``[0, 1]²`` with ``resolution × resolution`` cells (``resolution ≥ 4``)."""
        n = check_resolution(self.name, resolution)
        return CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (n, n), (False, False))

    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Draw Re from ``level`` using only ``rng``; there are no input fields."""
        _check_grid(grid)
        return Instance(params=self.draw_params(level, rng), inputs={})

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``reynolds``."""
        return {"reynolds": float(params["reynolds"])}

    @staticmethod
    def viscosity(params: Mapping[str, float]) -> float:
        """``ν = |U| L / Re``: a lid moving in ``−x`` (``U < 0``) gives the mirrored flow at the same Re."""
        re, lid = float(params["reynolds"]), float(params["lid_velocity"])
        check_positive("reynolds", re)
        if not (lid != 0 and math.isfinite(lid)):
            raise UserError(f"lid_velocity must be non-zero and finite (Re = |U| L / nu), got {lid!r}")
        return abs(lid) / re

    @staticmethod
    def boundary_conditions_for(lid_velocity: float) -> dict[str, proj.SideBC]:
        """The solver's boundary conditions."""
        return {"x_lo": proj.no_slip_wall(), "x_hi": proj.no_slip_wall(), "y_lo": proj.no_slip_wall(),
                "y_hi": proj.no_slip_wall(float(lid_velocity))}

    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """One :class:`ProjectionSolver` run per instance (CPU; SuperLU has no GPU path).

        Returns:
            ``SolveResult`` with ``velocity`` ``(B, T, n, n, 2)``, ``pressure`` ``(B, T, n, n)`` float64,
            ``times`` ``(T,)``, ``steps`` ``(B,)`` and per-sample ``dt_min``, ``dt_max``,
            ``max_courant``, ``max_divergence``.

        Raises:
            FlowBlowUpError: a sample blew up; the message names its parameters.
        """
        _check_grid(grid)
        times = self.snapshot_times(instances)
        vel, pres, steps, per, settings = self.run_samples(
            instances, grid, times,
            lambda params, inst: proj.ProjectionSolver(grid, self.viscosity(params),
                                                       self.boundary_conditions_for(params["lid_velocity"]),
                                                       **self.solver_options))
        settings.update({"n_snapshots": self.n_snapshots, "initial_state": "rest, impulsively started lid",
                         "pressure": "zero mean; frame 0 after the first step",
                         "solve_device": "cpu", "requested_device": str(device)})
        return SolveResult(fields={"velocity": vel, "pressure": pres}, times=times, steps=steps,
                           settings=settings, per_sample=per)

    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Collocated Navier–Stokes residual on the snapshots
        (:func:`pde_lab.solvers.projection.snapshot_residual`).

        Args:
            solution: ``velocity`` ``(B, T, n, n, 2)`` and ``pressure`` ``(B, T, n, n)``, NumPy arrays or
                torch tensors (then the result is a differentiable tensor).
            params: ``reynolds`` (and ``lid_velocity``), numbers or ``(B,)`` arrays; ``ν = |U| / Re``.
            grid: the grid of the fields.
            times: ``(T,)`` snapshot times (required: ``ValueError`` when ``None``).

        Returns:
            ``(B, T − 2, n, n, 3)``: momentum (x, y) and continuity residuals, zero on the boundary cells.
        """
        _check_grid(grid)
        if times is None:
            raise ValueError("the residual of a time-dependent flow needs the snapshot times")
        re = np.asarray(params["reynolds"], dtype=np.float64)
        lid = np.asarray(params.get("lid_velocity", self.default_params()["lid_velocity"]), dtype=np.float64)
        return proj.snapshot_residual(solution["velocity"], solution["pressure"], np.abs(lid) / re, grid, times)


def _check_grid(grid: CartesianGrid) -> None:
    if grid.dim != 2 or any(grid.periodic):
        raise ValueError(f"the cavity needs a bounded 2D grid, got shape {grid.shape}, periodic {grid.periodic}")


def centreline_minimum(u_centre: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Minimum of a sampled profile and its position, refined by the parabola through the smallest
    sample and its two neighbours.

    Args:
        u_centre: ``(ny,)`` values of ``u`` at heights ``y`` ``(ny,)`` (equally spaced).

    Returns:
        ``(u_min, y_min)``.
    """
    u_centre, y = np.asarray(u_centre, dtype=np.float64), np.asarray(y, dtype=np.float64)
    k = int(np.argmin(u_centre))
    if k == 0 or k == u_centre.size - 1:
        return float(u_centre[k]), float(y[k])
    a, b, c = u_centre[k - 1 : k + 2]
    off = 0.5 * (a - c) / (a - 2 * b + c)
    return float(b - 0.25 * (a - c) * off), float(y[k] + off * (y[1] - y[0]))


def run_ghia(reynolds: int, resolution: int = 128, t_max: float = 80.0, tol: float = 1e-5,
             pe_max: float = 10.0, progress: bool = False) -> dict[str, Any]:
    """Run the cavity to its steady state and compare the centreline minimum of ``u`` with Ghia et al.

    The solver runs in chunks of 5 time units until the minimum changes by less than ``tol``
    (absolute) over a chunk, or ``t_max``. ``u`` on the vertical centreline is read directly from the
    MAC faces at ``x = 1/2`` (``resolution`` even).

    Returns:
        ``{"u_min", "y_min", "ref", "y_ref", "rel_error", "t", "steps", "wall_time"}``.
    """
    if reynolds not in GHIA_U_MIN:
        raise UserError(f"Ghia's table here has Re {sorted(GHIA_U_MIN)}, got {reynolds}")
    n = int(resolution)
    if n % 2:
        raise UserError(f"resolution must be even (the centreline is a face line), got {n}")
    pde = LidDrivenCavity(pe_max=pe_max)
    grid = pde.grid(n)
    solver = proj.ProjectionSolver(grid, 1.0 / reynolds, pde.boundary_conditions_for(1.0), pe_max=pe_max)
    solver.set_state()
    y = grid.axis(1)
    t0 = time.perf_counter()
    old, t = math.inf, 0.0
    while t < t_max:
        t += 5.0
        solver.run([t])
        u_min, y_min = centreline_minimum(solver.u[n // 2], y)
        if progress:
            print(f"Re {reynolds} n {n} t {t:g} u_min {u_min:.5f} at {y_min:.4f}", flush=True)
        if abs(u_min - old) < tol:
            break
        old = u_min
    ref, y_ref = GHIA_U_MIN[reynolds]
    return {"u_min": u_min, "y_min": y_min, "ref": ref, "y_ref": y_ref, "rel_error": u_min / ref - 1.0,
            "t": solver.t, "steps": solver.steps, "wall_time": time.perf_counter() - t0}
