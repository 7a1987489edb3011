"""Incompressible Navier–Stokes on a staggered (MAC) grid by a projection method, with masked obstacles.

``u_t + (u·∇)u = −∇p + ν Δu``, ``∇·u = 0`` on a rectangle (the box of a bounded
:class:`~pde_lab.grids.CartesianGrid`, ``nx × ny`` cells), with solid cells given by a boolean mask and
one boundary condition per side of the rectangle (:class:`SideBC`: no-slip wall, moving wall, velocity
inlet, convective outflow). PDE-agnostic: channel flow past obstacles, the lid-driven cavity and
the DFG benchmark all use it.

Discretisation
--------------
* **Grid.** ``p`` at cell centres ``(nx, ny)``, ``u`` on the vertical faces ``(nx + 1, ny)``, ``v`` on
  the horizontal faces ``(nx, ny + 1)``; arrays indexed ``[i, j]`` with ``i`` along x (``indexing='ij'``,
  like :meth:`CartesianGrid.mesh`).
* **Obstacles** are whole solid cells. Every face touching a solid cell has zero velocity (no-slip and
  no penetration on the staircase boundary); a tangential neighbour inside a solid block is replaced by
  the mirror value ``−u`` so the wall sits half a cell away, as at the domain walls.
* **Immersed bodies** (``immersed=``, :mod:`pde_lab.solvers.immersed_boundary`): curved walls at their
  true position by direct forcing of the velocity nodes next to them. With one, the projection solves
  for the pressure *increment* (``u* = u + Δt(rhs − G p)``, ``p += φ``), so that at a steady state the
  forced nodes keep their interpolated values instead of slipping by ``Δt G p``.
* **Momentum** is written in flux form on the staggered control volumes, so the force on a body is the
  exact sum of the momentum fluxes that the scheme passes into it (:meth:`ProjectionSolver.force`).
  The flux of a quantity ``φ`` through an interface moving at ``U`` is

      F = U (φ_L + φ_R)/2 − max(ν, |U| h / Pe_max) (φ_R − φ_L)/h

  i.e. central convection and diffusion, plus just enough upwind-type diffusion to keep the *cell
  Péclet number* ``|U| h / ν_eff`` at or below ``Pe_max``. It is the blend ``(1 − γ)·central + γ·upwind``
  with ``γ = clip(2/Pe_max − 2ν/(|U| h), 0, 1)``: where the grid resolves the flow (``|U| h/ν ≤ Pe_max``)
  the scheme is purely central and second order; under-resolved it adds at most ``2/Pe_max`` upwind.
  The default ``Pe_max = 10`` was chosen by measurement (``docs/pdes/flow_obstacles.md``): it removes
  most of the two-cell wiggles that central differences leave around obstacles at Re 10⁴ on 128² cells,
  while Ghia's cavity up to Re 1000 on 128² cells stays purely central.
* **Time stepping.** Convection and diffusion explicit, second-order Adams–Bashforth with variable
  steps (forward Euler on the first step), then a Chorin projection: ``D G φ = D u*/Δt`` and
  ``u = u* − Δt G φ``; ``φ`` is the pressure. Outflow faces of ``u*`` follow the convective condition
  ``∂u_n/∂t + c ∂u_n/∂n = 0`` (``c`` the outward speed), which keeps the second order in time. The step is

      Δt = 1 / (C_rate / cfl + D_rate / diffusion_number),
      C_rate = max|u|/dx + max|v|/dy (boundary speeds included),  D_rate = 4 ν_eff,max (1/dx² + 1/dy²),

  and shrinks so output times are hit exactly. Why explicit diffusion: at the data sets' Reynolds
  numbers the diffusive limit is at most a factor 3–5 below the convective one (only near Re 100),
  whereas a semi-implicit viscous term would add two more sparse solves to every step and a
  refactorisation whenever the CFL-bounded step changes.
* **Pressure Poisson matrix** ``−D G`` on the fluid cells (Neumann at walls, inlets and obstacles,
  ``p = 0`` half a cell beyond an outflow face), assembled once per geometry and factorised once with
  SuperLU (``scipy.sparse.linalg.splu``); every step is one pair of triangular solves. A fluid region
  with no outflow (the cavity, an enclosed pocket) gets its constant pressure mode fixed by adding to
  one diagonal entry, which leaves compatible right-hand sides solved exactly.
* **Checks every step**: the discrete divergence after the projection (must stay at round-off), NaN or
  inf, and the Courant number reached with the new velocities; a violation raises
  :class:`FlowBlowUpError`.

Why by hand: no maintained Python package offers a masked MAC projection solver that runs in-process,
vectorised, with a factorisation reused across steps (OpenFOAM and friends are external programs);
the building blocks that exist (sparse LU, connected-component labelling) come from SciPy.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import ndimage

from ..errors import SolverFailure, UserError, check_positive
from ..grids import CartesianGrid
from .immersed_boundary import ImmersedBoundary

SIDES = ("x_lo", "x_hi", "y_lo", "y_hi")
BCKind = Literal["wall", "inflow", "outflow"]

#: Recorded with every sample that uses this solver.
SCHEME = ("MAC staggered grid, flux-form momentum, convection central + upwind blend keeping the cell "
          "Peclet number <= Pe_max, AB2 explicit convection and diffusion, Chorin projection")
LINEAR_SOLVER = ("scipy.sparse.linalg.splu (SuperLU), MMD_AT_PLUS_A ordering, symmetric mode; factorised "
                 "once per geometry, two triangular solves per step")


class FlowBlowUpError(SolverFailure):
    """The flow solution became non-finite or exceeded the allowed Courant number."""


@dataclass(frozen=True)
class SideBC:
    """Boundary condition on one side of the rectangle.

    Attributes:
        kind: ``"wall"`` (no penetration, tangential velocity ``tangential``: 0 for no-slip, non-zero for
            a moving lid), ``"inflow"`` (prescribed velocity), ``"outflow"`` (the normal velocity carried out
            by the convective condition, zero gradient where the flow comes back in; zero normal
            gradient of the tangential velocity; pressure 0 at the boundary).
        normal: for ``"inflow"``: the velocity component along the side's axis (``u`` on ``x_lo``/``x_hi``,
            ``v`` on ``y_lo``/``y_hi``; positive along the axis, so an inlet on ``x_hi`` is negative), a
            number or one value per boundary face centre (``(ny,)`` on x sides, ``(nx,)`` on y sides).
        tangential: for ``"wall"`` and ``"inflow"``: the tangential velocity on the side, a number or
            values at the points where the staggered tangential component meets the side (``(ny + 1,)``
            on x sides: the ``v`` face positions ``y_j``; ``(nx + 1,)`` on y sides: the ``u`` positions ``x_i``).
    """

    kind: BCKind
    normal: float | np.ndarray = 0.0
    tangential: float | np.ndarray = 0.0


def no_slip_wall(tangential: float | np.ndarray = 0.0) -> SideBC:
    """A wall; ``tangential ≠ 0`` makes it a moving wall (the lid of a cavity)."""
    return SideBC("wall", 0.0, tangential)


def velocity_inlet(normal: float | np.ndarray, tangential: float | np.ndarray = 0.0) -> SideBC:
    """A prescribed inflow velocity (see :class:`SideBC` for the sign and shape of ``normal``)."""
    return SideBC("inflow", normal, tangential)


def outflow() -> SideBC:
    """Outflow with pressure 0 at the boundary: faces carried out by the flow (convective condition),
    zero gradient where it flows back in."""
    return SideBC("outflow")


def parabolic_profile(coords: np.ndarray, lo: float, hi: float, u_max: float) -> np.ndarray:
    """Plane Poiseuille profile ``4 u_max (y − lo)(hi − y)/(hi − lo)²`` at ``coords`` (any shape)."""
    coords = np.asarray(coords, dtype=np.float64)
    return 4.0 * u_max * (coords - lo) * (hi - coords) / (hi - lo) ** 2


@dataclass
class FlowResult:
    """Output of :meth:`ProjectionSolver.run`.

    Attributes:
        times: ``(T,)`` output times.
        u, v, p: ``(T, nx, ny)`` cell-centre values (velocity averaged from the two faces of a cell;
            zero in solid cells, pressure zero there too).
        steps: time steps taken.
        dt_min, dt_max: smallest and largest step.
        max_divergence: largest ``max |D u|`` over fluid cells after any projection, in units of
            ``u_ref / h`` (``u_ref`` = largest boundary speed), i.e. a relative solver tolerance.
        max_courant: largest ``Δt (|u|/dx + |v|/dy)`` reached.
        wall_time: seconds spent in :meth:`ProjectionSolver.run` (factorisation excluded).
    """

    times: np.ndarray
    u: np.ndarray
    v: np.ndarray
    p: np.ndarray
    steps: int
    dt_min: float
    dt_max: float
    max_divergence: float
    max_courant: float
    wall_time: float


def _any_face(u_mask: np.ndarray, v_mask: np.ndarray) -> np.ndarray:
    """Cells ``(nx, ny)`` with at least one of their four faces set in ``u_mask`` / ``v_mask``."""
    return u_mask[:-1] | u_mask[1:] | v_mask[:, :-1] | v_mask[:, 1:]


def _as_profile(value, n: int, what: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) if np.ndim(value) == 0 else \
        np.asarray(value, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{what} needs a number or shape ({n},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite")
    return np.array(arr)


def check_step_options(**options: float) -> None:
    """Check :class:`ProjectionSolver`'s step controls given by name (``cfl``, ``diffusion_number``,
    ``pe_max``, ``max_courant``, ``max_speed``): each must be a number above its bound (``pe_max ≥ 2``,
    pure upwind, or ``inf``; the others ``> 0`` and finite); raises :class:`UserError` naming the first that is not."""
    for name, value in options.items():
        if name != "pe_max":
            check_positive(name, value)
        elif not (isinstance(value, (int, float)) and value > 2.0 - 1e-12):  # inf: central differences only
            raise UserError(f"pe_max must be >= 2 (2: pure upwinding; inf allowed), got {value!r}")


class ProjectionSolver:
    """Masked MAC projection solver for one geometry (its Poisson factorisation is built once).

    Args:
        grid: bounded 2D grid; its cells are the pressure cells.
        nu: kinematic viscosity (> 0).
        bcs: one :class:`SideBC` per side ``"x_lo"``, ``"x_hi"``, ``"y_lo"``, ``"y_hi"``.
        solid: ``(nx, ny)`` bool, ``True`` in obstacle cells (``None``: no obstacle).
        cfl: target Courant number ``Δt (max|u|/dx + max|v|/dy)``.
        diffusion_number: target ``Δt · 4 ν_eff (1/dx² + 1/dy²)`` (AB2 is stable up to 1).
        pe_max: largest cell Péclet number left to central differencing (``inf``: purely central).
        max_courant: a step whose new velocities give a Courant number above this raises
            :class:`FlowBlowUpError`.
        divergence_tol: relative divergence (see :attr:`FlowResult.max_divergence`) above which a step
            raises :class:`FlowBlowUpError`.
        max_speed: a step whose largest face velocity exceeds ``max_speed · u_ref`` raises
            :class:`FlowBlowUpError`: the CFL-bounded step shrinks with a growing velocity, so the
            Courant check alone would let a blowing-up flow crawl on until round-off broke the
            projection.
        immersed: a curved body imposed by direct forcing at its true wall
            (:class:`~pde_lab.solvers.immersed_boundary.ImmersedBoundary`), on top of ``solid``;
            :meth:`force` then returns the force on this body.
    """

    def __init__(
        self,
        grid: CartesianGrid,
        nu: float,
        bcs: Mapping[str, SideBC],
        solid: np.ndarray | None = None,
        *,
        cfl: float = 0.5,
        diffusion_number: float = 0.8,
        pe_max: float = 10.0,
        max_courant: float = 1.5,
        divergence_tol: float = 1e-8,
        max_speed: float = 100.0,
        immersed: ImmersedBoundary | None = None,
    ):
        if grid.dim != 2 or any(grid.periodic):
            raise ValueError(f"ProjectionSolver needs a bounded 2D grid, got shape {grid.shape}, "
                             f"periodic {grid.periodic}")
        if not (nu > 0 and math.isfinite(nu)):
            raise UserError(f"viscosity nu must be positive and finite, got {nu!r}")
        check_step_options(cfl=cfl, diffusion_number=diffusion_number, pe_max=pe_max, max_courant=max_courant,
                           max_speed=max_speed)
        missing = [s for s in SIDES if s not in bcs]
        unknown = [s for s in bcs if s not in SIDES]
        if missing or unknown:
            raise ValueError(f"bcs needs exactly the sides {SIDES}; missing {missing}, unknown {unknown}")
        self.grid = grid
        self.nx, self.ny = (int(n) for n in grid.shape)
        self.dx, self.dy = grid.spacing
        self.nu = float(nu)
        self.cfl, self.diffusion_number = float(cfl), float(diffusion_number)
        self.pe_max, self.max_courant = float(pe_max), float(max_courant)
        # a negative tolerance would fail every step as a "blow-up"
        self.divergence_tol = float(check_positive("divergence_tol", divergence_tol))
        self.max_speed = float(max_speed)
        self.bcs = dict(bcs)
        for side, bc in self.bcs.items():
            if bc.kind not in ("wall", "inflow", "outflow"):
                raise ValueError(f"unknown boundary kind {bc.kind!r} on {side}; allowed: wall, inflow, outflow")
        if solid is None:
            solid = np.zeros((self.nx, self.ny), dtype=bool)
        solid = np.asarray(solid, dtype=bool)
        if solid.shape != (self.nx, self.ny):
            raise ValueError(f"solid mask has shape {solid.shape}, the grid needs {(self.nx, self.ny)}")
        self.immersed = immersed
        if immersed is not None:
            if immersed.solid.shape != (self.nx, self.ny):
                raise ValueError(f"the immersed boundary was built for cells {immersed.solid.shape}, the grid "
                                 f"has {(self.nx, self.ny)}")
            solid = solid | immersed.solid
        if solid.all():
            raise UserError("the solid mask covers every cell; there is no fluid")
        self.solid = solid
        self._setup_faces()
        self._setup_poisson()
        self.t = 0.0
        self.steps = 0
        self.u = self.u_fixed.copy()
        self.v = self.v_fixed.copy()
        self.p = np.zeros((self.nx, self.ny))
        self._rhs_prev: tuple[np.ndarray, np.ndarray] | None = None
        self._dt_prev: float | None = None
        self._forced_rate = (0.0, 0.0)

    # ---- geometry of faces ------------------------------------------------------------------
    def _setup_faces(self) -> None:
        nx, ny, s = self.nx, self.ny, self.solid
        b = self.bcs
        # Outside the box counts as solid for the "deep" test: a boundary face is deep when the cell
        # inside is solid.
        s_px = np.pad(s, ((1, 1), (0, 0)), constant_values=True)
        s_py = np.pad(s, ((0, 0), (1, 1)), constant_values=True)
        self.u_deep = s_px[:-1] & s_px[1:]
        self.v_deep = s_py[:, :-1] & s_py[:, 1:]
        fluid = ~s
        u_free = np.zeros((nx + 1, ny), dtype=bool)
        u_free[1:-1] = fluid[:-1] & fluid[1:]
        v_free = np.zeros((nx, ny + 1), dtype=bool)
        v_free[:, 1:-1] = fluid[:, :-1] & fluid[:, 1:]
        u_fixed = np.zeros((nx + 1, ny))
        v_fixed = np.zeros((nx, ny + 1))
        # Boundary faces: outflow faces are free (extrapolated, then projected); inflow faces carry
        # their profile where the adjacent cell is fluid; walls carry zero normal velocity.
        for side, arr_free, arr_fixed, idx, cell in (
            ("x_lo", u_free, u_fixed, (0, slice(None)), fluid[0, :]),
            ("x_hi", u_free, u_fixed, (nx, slice(None)), fluid[-1, :]),
            ("y_lo", v_free, v_fixed, (slice(None), 0), fluid[:, 0]),
            ("y_hi", v_free, v_fixed, (slice(None), ny), fluid[:, -1]),
        ):
            bc = b[side]
            n_faces = ny if side[0] == "x" else nx
            if bc.kind == "outflow":
                arr_free[idx] = cell
            elif bc.kind == "inflow":
                arr_fixed[idx] = np.where(cell, _as_profile(bc.normal, n_faces, f"inflow profile on {side}"), 0.0)
        ib = self.immersed
        if ib is not None:
            # The body wins over the box: faces inside it are at rest, and only free faces are forced
            # (an inflow face keeps its profile).
            u_free &= ~ib.u.inside
            v_free &= ~ib.v.inside
            u_fixed[ib.u.inside] = 0.0
            v_fixed[ib.v.inside] = 0.0
            ib = self.immersed = ImmersedBoundary(ib.solid, ib.u.restricted(u_free), ib.v.restricted(v_free),
                                                  ib.order)
            if ib.u.unresolved.any() or ib.v.unresolved.any():
                raise UserError("a forced velocity node next to the immersed body has no image point outside the "
                                "body: the body is thinner than about three cells or too close to the domain edge")
            if np.any(fluid & ~_any_face(u_free, v_free)):
                raise UserError("a fluid cell next to the immersed body has no free face; move the body away "
                                "from the walls or refine the grid")
            # Regular faces solve the momentum equation; the force on the body is their flux into the rest.
            self._regular = (u_free & ~ib.u.forced, v_free & ~ib.v.forced)
            # Cut cells (every face forced or inside): their pressure only corrects forced faces so the
            # interpolated values conserve mass; it is no pressure of the flow and is not reported.
            self.cut = fluid & ~_any_face(*self._regular)
        else:
            self.cut = np.zeros_like(fluid)
        self.u_free, self.v_free = u_free, v_free
        self.u_fixed, self.v_fixed = u_fixed, v_fixed
        self.u_free_f = u_free.astype(np.float64)
        self.v_free_f = v_free.astype(np.float64)
        # Ghost rules for the tangential components outside the box: ghost = a · adjacent + c.
        self._ghost = {}
        for side in SIDES:
            bc = b[side]
            n_t = ny + 1 if side[0] == "x" else nx + 1
            if bc.kind == "outflow":
                a, c = 1.0, np.zeros(n_t)
            else:
                a, c = -1.0, 2.0 * _as_profile(bc.tangential, n_t, f"tangential velocity on {side}")
            self._ghost[side] = (a, c)
        # Deep-solid neighbours across the interfaces at the corners, as float masks: (nx+1, ny+1).
        f = np.float64
        self._u_deep_s = np.pad(self.u_deep, ((0, 0), (1, 0))).astype(f)   # face below the corner
        self._u_deep_n = np.pad(self.u_deep, ((0, 0), (0, 1))).astype(f)   # face above the corner
        self._v_deep_w = np.pad(self.v_deep, ((1, 0), (0, 0))).astype(f)
        self._v_deep_e = np.pad(self.v_deep, ((0, 1), (0, 0))).astype(f)
        # Boundary speeds bound the velocity the next step can create even from rest (a lid is only
        # seen through ghost values), so the step size respects them from the first step on.
        tangential = {side: float(np.abs(self._ghost[side][1]).max() / 2.0) for side in SIDES}
        self._u_bound = max(float(np.abs(u_fixed).max()), tangential["y_lo"], tangential["y_hi"])
        self._v_bound = max(float(np.abs(v_fixed).max()), tangential["x_lo"], tangential["x_hi"])
        self.u_ref = max(self._u_bound, self._v_bound, 1e-300)
        self._outflow = {s: self.bcs[s].kind == "outflow" for s in SIDES}

    def _setup_poisson(self) -> None:
        nx, ny, dx, dy = self.nx, self.ny, self.dx, self.dy
        fluid = ~self.solid
        index = -np.ones((nx, ny), dtype=np.int64)
        index[fluid] = np.arange(int(fluid.sum()))
        n = int(fluid.sum())
        rows, cols, vals = [], [], []
        diag = np.zeros(n)
        # Interior free faces couple their two cells.
        for free, h, lo, hi in ((self.u_free[1:-1], dx, index[:-1], index[1:]),
                                (self.v_free[:, 1:-1], dy, index[:, :-1], index[:, 1:])):
            a, b = lo[free], hi[free]
            w = np.full(a.size, 1.0 / h**2)
            rows += [a, b]
            cols += [b, a]
            vals += [-w, -w]
            diag += np.bincount(a, weights=w, minlength=n) + np.bincount(b, weights=w, minlength=n)
        # Outflow faces: p = 0 half a cell beyond the last centre.
        dirichlet = np.zeros((nx, ny), dtype=bool)
        for side, h, cells, sl in (("x_lo", dx, index[0, :], (0, slice(None))),
                                   ("x_hi", dx, index[-1, :], (-1, slice(None))),
                                   ("y_lo", dy, index[:, 0], (slice(None), 0)),
                                   ("y_hi", dy, index[:, -1], (slice(None), -1))):
            if self._outflow[side]:
                c = cells[cells >= 0]
                diag += np.bincount(c, weights=np.full(c.size, 2.0 / h**2), minlength=n)
                dirichlet[sl] |= fluid[sl]
        # Fix the constant mode of every fluid region that touches no outflow.
        labels, n_regions = ndimage.label(fluid)
        pinned = []
        for region in range(1, n_regions + 1):
            cells = labels == region
            if not (cells & dirichlet).any():
                first = index[cells][0]
                diag[first] += 1.0 / (dx * dy)
                pinned.append(int(first))
        self.n_pinned = len(pinned)
        rows.append(np.arange(n))
        cols.append(np.arange(n))
        vals.append(diag)
        A = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
        t0 = time.perf_counter()
        self._lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                             options={"SymmetricMode": True})
        self.factor_time = time.perf_counter() - t0
        self.poisson_matrix = A
        self._fluid = fluid
        self._fluid_f = fluid.astype(np.float64)
        self._reported_f = (fluid & ~self.cut).astype(np.float64)
        self.n_fluid = n

    # ---- operators ----------------------------------------------------------------------------
    def _tangential_ghosts(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``u`` with ghost rows below/above ``(nx+1, ny+2)``, ``v`` with ghost columns ``(nx+2, ny+1)``."""
        a, c = self._ghost["y_lo"]
        u_lo = a * u[:, :1] + c[:, None]
        a, c = self._ghost["y_hi"]
        u_hi = a * u[:, -1:] + c[:, None]
        a, c = self._ghost["x_lo"]
        v_lo = a * v[:1, :] + c[None, :]
        a, c = self._ghost["x_hi"]
        v_hi = a * v[-1:, :] + c[None, :]
        return np.concatenate([u_lo, u, u_hi], axis=1), np.concatenate([v_lo, v, v_hi], axis=0)

    def fluxes(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Momentum fluxes (convective + viscous, pressure excluded) through the control-volume faces.

        Returns:
            ``(fx, fy, gx, gy)``: x-momentum flux through the x-interfaces of the u-volumes (at cell
            centres, ``(nx, ny)``) and through their y-interfaces (at cell corners, ``(nx+1, ny+1)``);
            y-momentum flux through the x-interfaces of the v-volumes (corners ``(nx+1, ny+1)``) and
            their y-interfaces (cell centres ``(nx, ny)``).
        """
        dx, dy, nu, pe = self.dx, self.dy, self.nu, self.pe_max
        ue, ve = self._tangential_ghosts(u, v)
        us, un = ue[:, :-1], ue[:, 1:]
        # A tangential neighbour inside a solid block mirrors the face value: the wall is half-way.
        us, un = us - self._u_deep_s * un, un - self._u_deep_n * us
        vw, vE = ve[:-1, :], ve[1:, :]
        vw, vE = vw - self._v_deep_w * vE, vE - self._v_deep_e * vw
        u_corner = 0.5 * (us + un)
        v_corner = 0.5 * (vw + vE)
        # Cell centres.
        uw, uE = u[:-1], u[1:]
        u_cell = 0.5 * (uw + uE)
        vs, vn = v[:, :-1], v[:, 1:]
        v_cell = 0.5 * (vs + vn)
        # F = U φ̄ − max(ν, |U| h / Pe_max) Δφ / h   (see the module docstring).
        fx = u_cell * u_cell - np.maximum(nu, np.abs(u_cell) * (dx / pe)) * ((uE - uw) / dx)
        fy = v_corner * u_corner - np.maximum(nu, np.abs(v_corner) * (dy / pe)) * ((un - us) / dy)
        gx = u_corner * v_corner - np.maximum(nu, np.abs(u_corner) * (dx / pe)) * ((vE - vw) / dx)
        gy = v_cell * v_cell - np.maximum(nu, np.abs(v_cell) * (dy / pe)) * ((vn - vs) / dy)
        return fx, fy, gx, gy

    def momentum_rhs(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``−∇·(flux)`` on the free faces (zero elsewhere): ``(nx+1, ny)`` and ``(nx, ny+1)``."""
        fx, fy, gx, gy = self.fluxes(u, v)
        ru = np.zeros_like(u)
        ru[1:-1] = -(fx[1:] - fx[:-1]) / self.dx
        ru -= (fy[:, 1:] - fy[:, :-1]) / self.dy
        rv = np.zeros_like(v)
        rv[:, 1:-1] = -(gy[:, 1:] - gy[:, :-1]) / self.dy
        rv -= (gx[1:, :] - gx[:-1, :]) / self.dx
        return ru * self.u_free_f, rv * self.v_free_f

    def divergence(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Discrete divergence ``D u`` at the cell centres, ``(nx, ny)`` (zero in solid cells)."""
        return ((u[1:] - u[:-1]) / self.dx + (v[:, 1:] - v[:, :-1]) / self.dy) * self._fluid_f

    def _gradient(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx = np.zeros((self.nx + 1, self.ny))
        gx[1:-1] = (p[1:] - p[:-1]) / self.dx
        gy = np.zeros((self.nx, self.ny + 1))
        gy[:, 1:-1] = (p[:, 1:] - p[:, :-1]) / self.dy
        # p = 0 on an outflow boundary, half a cell from the last centre.
        if self._outflow["x_lo"]:
            gx[0] = 2.0 * p[0] / self.dx
        if self._outflow["x_hi"]:
            gx[-1] = -2.0 * p[-1] / self.dx
        if self._outflow["y_lo"]:
            gy[:, 0] = 2.0 * p[:, 0] / self.dy
        if self._outflow["y_hi"]:
            gy[:, -1] = -2.0 * p[:, -1] / self.dy
        return gx, gy

    def _extrapolate_outflow(self, u: np.ndarray, v: np.ndarray) -> None:
        """Zero normal gradient on outflow faces (in place); faces next to a solid cell stay zero."""
        if self._outflow["x_lo"]:
            u[0] = u[1] * self.u_free_f[0]
        if self._outflow["x_hi"]:
            u[-1] = u[-2] * self.u_free_f[-1]
        if self._outflow["y_lo"]:
            v[:, 0] = v[:, 1] * self.v_free_f[:, 0]
        if self._outflow["y_hi"]:
            v[:, -1] = v[:, -2] * self.v_free_f[:, -1]

    def _convect_outflow(self, u: np.ndarray, v: np.ndarray, dt: float) -> None:
        """Set the outflow faces of the predictor ``(u, v)`` (in place): the current face value carried
        by ``∂u_n/∂t + c ∂u_n/∂n = 0`` (``c`` the outward normal speed there, 0 where flow enters),
        plus the predictor's increment at the upstream face, which holds the ``Δt ∇p`` that the
        projection takes off again (the predictor carries no pressure gradient).

        Why not reset the faces to their upstream neighbour each step (zero gradient, as
        :meth:`set_state` does): that reset is a fixed jump per step, not per unit time, so the
        solution depended on the number of steps and converged in time at order 0.3–0.9 on channel
        flows (errors of 2–7 % at the default step on 32² cells); the convective condition restores
        order 2 where the flow leaves (about 1 while backflow faces fall back to zero gradient). At a
        steady state the two agree."""
        u0, v0 = self.u, self.v

        def advance(face, upstream, upstream_new, outward, h):
            # Backflow (outward speed < 0) has nothing to carry out: such faces take the upstream
            # predictor value, the zero-gradient rule, which keeps reversed flow at the outlet damped.
            carried = face + outward * dt / h * (upstream - face) + (upstream_new - upstream)
            return np.where(outward >= 0.0, carried, upstream_new)

        if self._outflow["x_lo"]:
            u[0] = advance(u0[0], u0[1], u[1], -u0[0], self.dx) * self.u_free_f[0]
        if self._outflow["x_hi"]:
            u[-1] = advance(u0[-1], u0[-2], u[-2], u0[-1], self.dx) * self.u_free_f[-1]
        if self._outflow["y_lo"]:
            v[:, 0] = advance(v0[:, 0], v0[:, 1], v[:, 1], -v0[:, 0], self.dy) * self.v_free_f[:, 0]
        if self._outflow["y_hi"]:
            v[:, -1] = advance(v0[:, -1], v0[:, -2], v[:, -2], v0[:, -1], self.dy) * self.v_free_f[:, -1]

    def project(self, u: np.ndarray, v: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Make ``(u, v)`` discretely divergence-free: solve ``D G φ = D u / Δt``, ``u −= Δt G φ``.

        Returns:
            ``(u, v, φ, div)``: the projected velocities, the pressure ``φ`` ``(nx, ny)`` (zero in solid
            cells) and the largest remaining ``|D u|`` relative to ``u_ref / h``.
        """
        div = self.divergence(u, v)
        phi = np.zeros((self.nx, self.ny))
        phi[self._fluid] = self._lu.solve(-div[self._fluid] / dt)
        gx, gy = self._gradient(phi)
        u = u - dt * gx * self.u_free_f
        v = v - dt * gy * self.v_free_f
        rel = float(np.abs(self.divergence(u, v)).max()) * min(self.dx, self.dy) / self.u_ref
        return u, v, phi, rel

    # ---- state ------------------------------------------------------------------------------
    def set_state(self, u: np.ndarray | None = None, v: np.ndarray | None = None, t: float = 0.0) -> float:
        """Start from face velocities ``u`` ``(nx+1, ny)``, ``v`` ``(nx, ny+1)`` (``None``: at rest).

        Boundary and solid faces are overwritten with their prescribed values, outflow faces are
        extrapolated, and the field is projected; with the default rest state this gives the potential
        flow that an impulsive start produces. Returns the relative divergence after the projection.
        """
        u = np.zeros((self.nx + 1, self.ny)) if u is None else np.array(u, dtype=np.float64)
        v = np.zeros((self.nx, self.ny + 1)) if v is None else np.array(v, dtype=np.float64)
        if u.shape != (self.nx + 1, self.ny) or v.shape != (self.nx, self.ny + 1):
            raise ValueError(f"u must be {(self.nx + 1, self.ny)} and v {(self.nx, self.ny + 1)}, "
                             f"got {u.shape} and {v.shape}")
        u = u * self.u_free_f + self.u_fixed
        v = v * self.v_free_f + self.v_fixed
        self._extrapolate_outflow(u, v)
        if self.immersed is not None:
            self.immersed.u.apply(u, u.copy())
            self.immersed.v.apply(v, v.copy())
        self.u, self.v, self.p, rel = self.project(u, v, 1.0)
        self._forced_rate = (0.0, 0.0)
        self.p[:] = 0.0  # the impulse of the start is not a pressure of the flow
        self.t, self.steps = float(t), 0
        self._rhs_prev, self._dt_prev = None, None
        return rel

    def stable_dt(self) -> float:
        """The largest step the CFL and diffusion limits allow for the current velocities."""
        umax = max(float(np.abs(self.u).max()), self._u_bound)
        vmax = max(float(np.abs(self.v).max()), self._v_bound)
        if not (math.isfinite(umax) and math.isfinite(vmax)):
            raise FlowBlowUpError("velocity is not finite")
        conv = umax / self.dx + vmax / self.dy
        nu_eff = max(self.nu, max(umax * self.dx, vmax * self.dy) / self.pe_max)
        diff = 4.0 * nu_eff * (1.0 / self.dx**2 + 1.0 / self.dy**2)
        return 1.0 / (conv / self.cfl + diff / self.diffusion_number)

    def step(self, dt: float) -> tuple[float, float]:
        """Advance by ``dt`` (AB2 predictor, convective outflow faces, projection).

        Returns:
            ``(relative divergence, Courant number of the new velocities)``.
        """
        ru, rv = self.momentum_rhs(self.u, self.v)
        if self._rhs_prev is None:
            ustar = self.u + dt * ru
            vstar = self.v + dt * rv
        else:
            r = dt / self._dt_prev
            a, b = dt * (1.0 + 0.5 * r), -dt * 0.5 * r
            ustar = self.u + a * ru + b * self._rhs_prev[0]
            vstar = self.v + a * rv + b * self._rhs_prev[1]
        if self.immersed is not None:
            # Incremental pressure correction: the projection solves for the change of pressure, which
            # vanishes at a steady state, so forced faces end on their interpolated values instead of
            # slipping by Δt ∇p (and only the cut cells' auxiliary pressure stays non-zero).
            gx, gy = self._gradient(self.p)
            ustar = ustar - dt * gx * self.u_free_f
            vstar = vstar - dt * gy * self.v_free_f
        self._convect_outflow(ustar, vstar, dt)
        if self.immersed is not None:
            self.immersed.u.apply(ustar, self.u)
            self.immersed.v.apply(vstar, self.v)
        u, v, p, rel = self.project(ustar, vstar, dt)
        if self.immersed is not None:
            p = (self.p + p) * self._reported_f
        umax, vmax = float(np.abs(u).max()), float(np.abs(v).max())
        courant = dt * (umax / self.dx + vmax / self.dy)
        if not (math.isfinite(courant) and math.isfinite(rel)):
            raise FlowBlowUpError(f"non-finite velocity at t = {self.t + dt:.6g} (step {self.steps + 1})")
        if max(umax, vmax) > self.max_speed * self.u_ref:
            raise FlowBlowUpError(f"velocity {max(umax, vmax):.3g} > {self.max_speed:g} × the reference speed "
                                  f"{self.u_ref:g} at t = {self.t + dt:.6g} (step {self.steps + 1}): the flow is "
                                  "blowing up")
        if courant > self.max_courant:
            raise FlowBlowUpError(f"Courant number {courant:.3g} > {self.max_courant:g} at t = {self.t + dt:.6g} "
                                  f"(step {self.steps + 1}): the flow is blowing up")
        if rel > self.divergence_tol:
            raise FlowBlowUpError(f"relative divergence {rel:.3g} > {self.divergence_tol:g} after the projection "
                                  f"at t = {self.t + dt:.6g}")
        if self.immersed is not None:  # momentum gained by the forced nodes, for force()
            self._forced_rate = (float((u - self.u).ravel()[self.immersed.u.index].sum()) * self.dx * self.dy / dt,
                                 float((v - self.v).ravel()[self.immersed.v.index].sum()) * self.dx * self.dy / dt)
        self.u, self.v, self.p = u, v, p
        self._rhs_prev, self._dt_prev = (ru, rv), dt
        self.t += dt
        self.steps += 1
        return rel, courant

    # ---- driver -----------------------------------------------------------------------------
    def run(
        self,
        output_times: Sequence[float],
        callback: Callable[["ProjectionSolver"], None] | None = None,
        max_steps: int | None = None,
    ) -> FlowResult:
        """Step from the current time through ``output_times`` and return cell-centre snapshots.

        Steps are shortened so that every output time is hit exactly (``Δt`` stays within a factor of
        the CFL-bounded step: an interval is cut into equal steps). An output time equal to the current
        time stores the current state; its pressure is then taken from the first step that follows.

        Args:
            output_times: increasing times ``≥`` the current time.
            callback: called as ``callback(solver)`` after every step (forces, monitoring).
            max_steps: raise :class:`FlowBlowUpError` beyond this many steps (a stalled run).

        Returns:
            :class:`FlowResult` with ``(T, nx, ny)`` fields.
        """
        times = np.asarray(output_times, dtype=np.float64)
        # Finite first: NaN and inf pass every comparison below (an infinite time ended the stepping
        # loop at once and stored the current state for every frame).
        if (times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0)
                or times[0] < self.t - 1e-12):
            raise ValueError(f"output_times must be finite, increasing and >= the current time {self.t}, got {times}")
        t0 = time.perf_counter()
        T = times.size
        out_u, out_v, out_p = (np.zeros((T, self.nx, self.ny)) for _ in range(3))
        pending_pressure = []
        dt_min, dt_max, max_div, max_cfl = math.inf, 0.0, 0.0, 0.0
        first_steps = self.steps
        for k, t_out in enumerate(times):
            while t_out - self.t > 1e-12 * max(1.0, abs(t_out)):
                remaining = t_out - self.t
                dt_lim = self.stable_dt()
                if self._dt_prev is not None:
                    dt_lim = min(dt_lim, 1.5 * self._dt_prev)  # AB2 wants slowly varying steps
                n_sub = max(1, math.ceil(remaining / dt_lim - 1e-9))
                dt = remaining / n_sub
                rel, cour = self.step(dt)
                if n_sub == 1:
                    self.t = float(t_out)  # no drift from summing steps
                dt_min, dt_max = min(dt_min, dt), max(dt_max, dt)
                max_div, max_cfl = max(max_div, rel), max(max_cfl, cour)
                for j in pending_pressure:
                    out_p[j] = self.p
                pending_pressure = []
                if callback is not None:
                    callback(self)
                if max_steps is not None and self.steps - first_steps > max_steps:
                    raise FlowBlowUpError(f"more than {max_steps} steps before t = {t_out:g}")
            uc, vc = self.cell_velocity()
            out_u[k], out_v[k] = uc, vc
            if self._dt_prev is None:  # no step since set_state: no pressure yet
                pending_pressure.append(k)
            else:
                out_p[k] = self.p
        if pending_pressure:  # nothing followed: one probe step gives the pressure
            saved = (self.u, self.v, self.p, self.t, self.steps, self._rhs_prev, self._dt_prev, self._forced_rate)
            self.step(self.stable_dt())
            for j in pending_pressure:
                out_p[j] = self.p
            self.u, self.v, self.p, self.t, self.steps, self._rhs_prev, self._dt_prev, self._forced_rate = saved
        if self.n_pinned:  # pressure defined up to a constant: zero mean over the fluid
            mean = (out_p * self._reported_f).sum(axis=(1, 2)) / self._reported_f.sum()
            out_p = (out_p - mean[:, None, None]) * self._reported_f
        return FlowResult(times=times, u=out_u, v=out_v, p=out_p, steps=self.steps - first_steps,
                          dt_min=dt_min if dt_min < math.inf else 0.0, dt_max=dt_max,
                          max_divergence=max_div, max_courant=max_cfl,
                          wall_time=time.perf_counter() - t0)

    # ---- diagnostics --------------------------------------------------------------------------
    def cell_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        """Velocity averaged to the cell centres: ``(nx, ny)`` each (zero in solid cells)."""
        return 0.5 * (self.u[1:] + self.u[:-1]), 0.5 * (self.v[:, 1:] + self.v[:, :-1])

    def boundary_fluxes(self) -> dict[str, float]:
        """Volume flux out of the box through each side (``∫ u·n``), per unit depth."""
        return {
            "x_lo": -float(self.u[0].sum() * self.dy),
            "x_hi": float(self.u[-1].sum() * self.dy),
            "y_lo": -float(self.v[:, 0].sum() * self.dx),
            "y_hi": float(self.v[:, -1].sum() * self.dx),
        }

    def force(self, body: np.ndarray | None = None) -> tuple[float, float]:
        """Force per unit depth (density 1) that the fluid exerts on the solid cells in ``body``.

        The sum of every momentum flux (convective, viscous, pressure) that the discrete momentum
        equations pass from free faces into the control volumes of the body's faces: at a steady state
        this balances the discrete momentum exactly, so it is the force the scheme actually applies.
        With an immersed boundary the body is the immersed one: its faces are those inside it and the
        forced ones, and the momentum the forced nodes gained over the last step is subtracted.

        Args:
            body: ``(nx, ny)`` bool, a subset of the solid mask (``None``: all solid cells); not
                accepted with an immersed boundary.

        Returns:
            ``(F_x, F_y)``.
        """
        ib = self.immersed
        if ib is not None:
            if body is not None:
                raise ValueError("with an immersed boundary, force() gives the force on the immersed body only")
            u_in, v_in = ib.u.inside | ib.u.forced, ib.v.inside | ib.v.forced
            Fx, Fy = self._flux_into(u_in, self._regular[0], v_in, self._regular[1])
            return Fx - self._forced_rate[0], Fy - self._forced_rate[1]
        body = self.solid if body is None else np.asarray(body, dtype=bool) & self.solid
        bx = np.pad(body, ((1, 1), (0, 0)))
        u_body = (bx[:-1] | bx[1:]) & ~self.u_free       # u faces held by this body
        by = np.pad(body, ((0, 0), (1, 1)))
        v_body = (by[:, :-1] | by[:, 1:]) & ~self.v_free
        return self._flux_into(u_body, self.u_free, v_body, self.v_free)

    def _flux_into(self, u_in: np.ndarray, u_out: np.ndarray, v_in: np.ndarray,
                   v_out: np.ndarray) -> tuple[float, float]:
        """Momentum flux (pressure included) from the ``out`` faces into the control volumes of ``in``."""
        fx, fy, gx, gy = self.fluxes(self.u, self.v)
        p = self.p
        # x-interfaces at cell centres between u[i] (west) and u[i+1] (east).
        flux = fx + p
        Fx = self.dy * (flux[u_out[:-1] & u_in[1:]].sum() - flux[u_out[1:] & u_in[:-1]].sum())
        # y-interfaces at corners between u[i, j-1] (south) and u[i, j] (north).
        fr = np.pad(u_out, ((0, 0), (1, 1)))
        bd = np.pad(u_in, ((0, 0), (1, 1)))
        Fx += self.dx * (fy[fr[:, :-1] & bd[:, 1:]].sum() - fy[fr[:, 1:] & bd[:, :-1]].sum())
        # v: y-interfaces at cell centres, x-interfaces at corners.
        flux = gy + p
        Fy = self.dx * (flux[v_out[:, :-1] & v_in[:, 1:]].sum() - flux[v_out[:, 1:] & v_in[:, :-1]].sum())
        fr = np.pad(v_out, ((1, 1), (0, 0)))
        bd = np.pad(v_in, ((1, 1), (0, 0)))
        Fy += self.dy * (gx[fr[:-1] & bd[1:]].sum() - gx[fr[1:] & bd[:-1]].sum())
        return float(Fx), float(Fy)

    def settings(self) -> dict[str, Any]:
        """Solver settings for provenance (JSON-serialisable)."""
        return {
            "scheme": SCHEME,
            "linear_solver": LINEAR_SOLVER,
            "cfl": self.cfl,
            "diffusion_number": self.diffusion_number,
            "pe_max": self.pe_max,
            "max_courant": self.max_courant,
            "max_speed": self.max_speed,
            "divergence_tol": self.divergence_tol,
            "dtype": "float64",
        } | ({"immersed_boundary": f"direct forcing, polynomial of degree {self.immersed.order} in the wall "
                                   "distance through the wall and bilinearly interpolated image points on the "
                                   "normal; incremental pressure correction"} if self.immersed is not None else {})


# ---- residual on stored snapshots ---------------------------------------------------------------

def snapshot_residual(
    velocity,
    pressure,
    nu: float | np.ndarray,
    grid: CartesianGrid,
    times: np.ndarray,
    fluid: np.ndarray | None = None,
):
    """Navier–Stokes residual of cell-centred snapshots with collocated central differences.

    ``r = (u_t + (u·∇)u + ∇p − ν Δu, ∇·u)`` with ``u_t`` the central difference between neighbouring
    snapshots and second-order central differences in space. It is not the solver's own (staggered)
    discretisation, so on solver output it is small but not zero: ``O(h²)`` in space plus the error of
    differencing snapshots ``Δt_out`` apart in time; it measures how far stored or predicted fields are
    from solving the equations (physics metrics, PINN-style losses).

    Args:
        velocity: ``(B, T, nx, ny, 2)`` NumPy array or torch tensor (then the result is a
            differentiable tensor on the same device).
        pressure: ``(B, T, nx, ny)``, same kind.
        nu: viscosity, a number or ``(B,)``.
        grid: bounded 2D grid of the cell centres.
        times: ``(T,)`` increasing, ``T ≥ 3``.
        fluid: ``(B, nx, ny)`` or ``(nx, ny)`` bool (``None``: all fluid).

    Returns:
        ``(B, T − 2, nx, ny, 3)``: x-momentum, y-momentum and continuity residuals at the interior
        times; zero in cells on the domain boundary or whose 5-point stencil touches a solid.
    """
    is_torch = type(velocity).__module__.startswith("torch")
    if is_torch:
        import torch

        vel, p = velocity, pressure

        def asarray(x):
            return torch.as_tensor(np.array(x, dtype=np.float64), dtype=vel.dtype, device=vel.device)

        zeros = lambda shape: torch.zeros(shape, dtype=vel.dtype, device=vel.device)  # noqa: E731
    else:
        vel = np.asarray(velocity, dtype=np.float64)
        p = np.asarray(pressure, dtype=np.float64)
        asarray = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
        zeros = np.zeros
    times_np = np.asarray(times, dtype=np.float64)
    if vel.ndim != 5 or vel.shape[-1] != 2 or tuple(p.shape) != tuple(vel.shape[:-1]):
        raise ValueError(f"need velocity (B, T, nx, ny, 2) and pressure (B, T, nx, ny), got "
                         f"{tuple(vel.shape)}, {tuple(p.shape)}")
    B, T, nx, ny = (int(k) for k in p.shape)
    if (nx, ny) != tuple(grid.shape):
        raise ValueError(f"fields are {(nx, ny)} but the grid is {tuple(grid.shape)}")
    if times_np.shape != (T,) or T < 3 or np.any(np.diff(times_np) <= 0):
        raise ValueError(f"need {T} >= 3 increasing times, got {times_np}")
    dx, dy = grid.spacing
    nu_b = asarray(np.broadcast_to(np.asarray(nu, dtype=np.float64), (B,)).reshape(B, 1, 1, 1))
    u, v = vel[..., 0], vel[..., 1]
    dt2 = asarray((times_np[2:] - times_np[:-2]).reshape(1, T - 2, 1, 1))
    u_t = (u[:, 2:] - u[:, :-2]) / dt2
    v_t = (v[:, 2:] - v[:, :-2]) / dt2
    u, v, p = u[:, 1:-1], v[:, 1:-1], p[:, 1:-1]
    c = (slice(None), slice(None), slice(1, -1), slice(1, -1))

    def ddx(f):
        return (f[:, :, 2:, 1:-1] - f[:, :, :-2, 1:-1]) / (2 * dx)

    def ddy(f):
        return (f[:, :, 1:-1, 2:] - f[:, :, 1:-1, :-2]) / (2 * dy)

    def lap(f):
        return ((f[:, :, 2:, 1:-1] - 2 * f[c] + f[:, :, :-2, 1:-1]) / dx**2
                + (f[:, :, 1:-1, 2:] - 2 * f[c] + f[:, :, 1:-1, :-2]) / dy**2)

    out = zeros((B, T - 2, nx, ny, 3))
    out[:, :, 1:-1, 1:-1, 0] = u_t[c] + u[c] * ddx(u) + v[c] * ddy(u) + ddx(p) - nu_b * lap(u)
    out[:, :, 1:-1, 1:-1, 1] = v_t[c] + u[c] * ddx(v) + v[c] * ddy(v) + ddy(p) - nu_b * lap(v)
    out[:, :, 1:-1, 1:-1, 2] = ddx(u) + ddy(v)
    fl = np.ones((B, nx, ny), dtype=bool) if fluid is None else \
        np.broadcast_to(np.asarray(fluid, dtype=bool), (B, nx, ny))
    valid = np.zeros((B, nx, ny))
    valid[:, 1:-1, 1:-1] = (fl[:, 1:-1, 1:-1] & fl[:, 2:, 1:-1] & fl[:, :-2, 1:-1]
                            & fl[:, 1:-1, 2:] & fl[:, 1:-1, :-2])
    return out * asarray(valid[:, None, :, :, None])
