"""Poisson's equation ``−Δu = f`` on the unit cube ``[0, 1]^d`` with ``u = g`` on the boundary.

Two uses, one module:

* **Datasets** (the :class:`~pde_lab.pdes.base.PDE` interface): a random smooth source ``f``, a
  Gaussian random field ``N(0, σ² (−Δ + τ² I)^(−α))`` with the cosine (Neumann) basis of
  :func:`pde_lab.random_fields.gaussian_random_field` and its mean kept, mapped to the solution ``u``
  with ``u = 0`` on the boundary by the cell-centred finite-volume scheme of
  :mod:`pde_lab.solvers.finite_volume` with ``a = 1``. The amplitude is ``σ = forcing_scale ·
  τ^(α−1)``: the field's variance falls roughly like ``τ^(−2(α−1))`` as ``τ`` grows, so this keeps
  the rms of ``f`` within a factor of about three across the levels (measured on 64², 5 seeds: rms
  ``f`` between 0.10 and 0.31 × ``forcing_scale``, max ``|u|`` between 0.008 and 0.026 ×
  ``forcing_scale``). Harder levels have shorter correlation lengths (larger ``τ``) and rougher
  fields (smaller ``α``).
* **Physics-informed networks** (the pointwise-residual interface, see ``docs/pinns.md``): the strong
  form ``r(x) = −Δu(x) − f(x)`` at collocation points, differentiated exactly with ``torch.func``,
  and the boundary residual ``u(x) − g(x)``. Two manufactured problems, chosen by the constructor
  argument ``solution`` (a ``pde_args`` key):

  - ``sine_product`` (default): ``u*(x) = Π_i sin(k π x_i)``, ``f = d k² π² u*``, ``g = u*`` (zero
    on the boundary for integer ``k``); ``k = 1``, ``d = 2`` is the 2D benchmark of Müller &
    Zeinhofer (2023). In high dimension its mass sits in a small central region
    (``‖u*‖_L2 = 2^(−d/2)``) and the boundary data are zero.
  - ``sine_sum``: ``u*(x) = Σ_i sin(k π x_i)``, ``f = k² π² u*``, ``g = u*``; ``k = 1/2``, ``d = 5``
    is their 5D example. A sum of one-dimensional terms with non-zero boundary data, so its size does
    not shrink with ``d``.

The pointwise-residual interface is duck-typed (generic code checks for the methods), so other PDE
modules can add it without touching :mod:`pde_lab.pdes.base`:

``pinn_domain(params) -> ((lo, hi), ...)``
    the box the collocation points fill, one pair per input coordinate;
``pinn_fields`` (class attribute)
    names of the network outputs, e.g. ``("u",)``;
``pointwise_residual(u_fn, x, params) -> (N,)`` or ``(N, n_eq)``
    the strong-form residual at interior points ``x: (N, d)``;
``boundary_residual(u_fn, x, params) -> (N,)`` or ``(N, n_bc)``
    the boundary-condition residual at boundary points ``x: (N, d)``;
``exact_solution(x, params) -> (N, n_fields)`` (optional)
    a reference solution for metrics and tests;
``pinn_boundary_faces(params) -> [(axis, side), ...]`` (optional)
    the faces of the box that carry conditions (default: all; side 0 is ``lo``).

``u_fn`` maps points ``(N, d)`` to the fields ``(N, n_fields)`` (the network itself), row ``i``
depending on ``x[i]`` only; the residual methods take derivatives with ``torch.func``
(:func:`gradient`, :func:`laplacian`), so the same residual can be wrapped in ``vmap``/``jacrev``/
``jvp`` over the network parameters by the optimizers (which call it on one point at a time,
``x: (1, d)``, to form per-point Jacobian rows).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.func import jvp, vjp, vmap

from ..errors import UserError, check_choice
from ..grids import CartesianGrid
from ..random_fields import gaussian_random_field
from ..solvers import finite_volume as fv
# ``PDES`` is bound in ``pdes/__init__.py`` before that module imports this one, so importing it from
# the partially initialised package works whichever of the two is imported first.
from . import PDES
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task, check_resolution

#: A field evaluated at points: ``(N, d) -> (N, n_fields)``, row ``i`` depending on ``x[i]`` only (a
#: network without batch-coupling layers, or a closed form).
PointFunction = Callable[[torch.Tensor], torch.Tensor]


# ---- differential operators on point batches (torch.func) -----------------------------------------
def _sum_gradient(u_fn: PointFunction, component: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> ∇_x Σ_i u_c(x_i)``, which is every point's own gradient because the rows are independent."""
    def grad_fn(x: torch.Tensor) -> torch.Tensor:
        out, pullback = vjp(lambda y: u_fn(y)[:, component], x)
        return pullback(torch.ones_like(out))[0]
    return grad_fn


def gradient(u_fn: PointFunction, x: torch.Tensor, component: int = 0) -> torch.Tensor:
    """``∇u_c`` at each point: one reverse pass over the whole batch.

    Args:
        u_fn: field ``(N, d) -> (N, n_fields)`` with independent rows.
        x: ``(N, d)`` points.
        component: which field ``c``.

    Returns:
        ``(N, d)``.
    """
    fast = getattr(u_fn, "gradient", None)  # a field that knows its derivatives (TaylorField)
    if fast is not None:
        return fast(x)[..., component]
    return _sum_gradient(u_fn, component)(x)


def laplacian(u_fn: PointFunction, x: torch.Tensor, component: int = 0,
              axes: Sequence[int] | None = None) -> torch.Tensor:
    """``Δu_c = Σ_k ∂²u_c/∂x_k²`` at each point, over every coordinate or only ``axes``.

    Forward over reverse on the whole batch: the gradient of ``Σ_i u_c(x_i)`` by one reverse pass, then
    its derivative along the ``d`` coordinate directions by forward passes batched with ``vmap``.
    This treats all points in each pass instead of ``vmap``-ing a per-point Hessian, and measured
    about 1.5× faster for the 2-32-1 network at 1020 points; it relies on the rows being independent.
    A field with a ``laplacian`` method (a network that propagates derivatives itself, see
    :class:`pde_lab.optim.residual.TaylorField`) is asked directly, about twice as fast again.

    Args:
        u_fn: field ``(N, d) -> (N, n_fields)`` with independent rows, twice differentiable.
        x: ``(N, d)`` points.
        component: which field ``c``.
        axes: the coordinates ``k`` to sum over (e.g. the space axes of space-time points);
            ``None`` = all.

    Returns:
        ``(N,)``.
    """
    fast = getattr(u_fn, "laplacian", None)  # a field that knows its derivatives (TaylorField)
    if fast is not None and axes is None:
        return fast(x)[:, component]
    n, d = x.shape
    axes = list(range(d)) if axes is None else [int(a) for a in axes]
    directions = torch.eye(d, dtype=x.dtype, device=x.device)[axes][:, None, :].expand(len(axes), n, d)
    grad_fn = _sum_gradient(u_fn, component)
    second = vmap(lambda e: jvp(grad_fn, (x,), (e,))[1])(directions)  # (len(axes), N, d): ∂_k ∇u
    return second[torch.arange(len(axes)), :, axes].sum(0)


# ---- the PDE family -----------------------------------------------------------------------------
@PDES.register("poisson")
class Poisson(PDE):
    """Poisson's equation ``−Δu = f`` on ``[0, 1]^d``, ``u = g`` on the boundary.

    Args:
        dim: number of space dimensions ``d`` (2 by default). Datasets use a ``resolution^d`` grid and
            need ``d ≤ 3``; PINNs work in any ``d`` (5D is a standard test).
        solution: the PINN manufactured solution, one of :attr:`SOLUTIONS`: ``sine_product``
            ``Π_i sin(k π x_i)`` (default) or ``sine_sum`` ``Σ_i sin(k π x_i)``, ``k`` the parameter
            ``wave_number``. Datasets do not use it.

    Dataset fields are cell-centre values on a bounded ``(n,)*d`` grid: input ``f`` and solution
    ``u``, both static (stored as ``(trajectory, *space)``), with ``u = 0`` on the boundary.
    """

    name = "poisson"
    description = "Poisson's equation -Lap u = f on the unit cube with Dirichlet data (random smooth f)"
    equation = "-Lap u = f in (0,1)^d, u = g on the boundary (datasets: g = 0, f a Gaussian random field)"
    parameters = (
        Parameter("grf_tau", 3.0, "1", "inverse correlation length tau of f ~ N(0, s^2 (-Lap + tau^2)^-alpha)"),
        Parameter("grf_alpha", 3.0, "1", "smoothness exponent alpha of the source field"),
        Parameter("forcing_scale", 40.0, "1", "amplitude: s = forcing_scale * tau^(alpha - 1)"),
        Parameter("wave_number", 1.0, "1",
                  "PINN manufactured solution (prod_i or sum_i of sin(k pi x_i)): the wave number k"),
    )
    fields = (
        FieldSpec("f", "input", time_varying=False, units="1", description="source term, per cell"),
        FieldSpec("u", "solution", time_varying=False, units="1", description="potential, cell averages"),
    )
    boundary_conditions = (
        BoundaryCondition("x_dirichlet", "dirichlet", ("x",), ("u",), 0.0),
        BoundaryCondition("y_dirichlet", "dirichlet", ("y",), ("u",), 0.0),
    )
    levels = {
        "easy": Level(
            "easy", {"grf_tau": (2.0, 3.0), "grf_alpha": (3.0, 3.0)},
            description="smooth sources, one or two bumps (tau 2-3, alpha 3)",
        ),
        "medium": Level(
            "medium", {"grf_tau": (4.0, 8.0), "grf_alpha": (2.5, 2.5)},
            log_uniform=frozenset({"grf_tau"}),
            description="a few bumps (tau 4-8, alpha 2.5)",
        ),
        "hard": Level(
            "hard", {"grf_tau": (8.0, 16.0), "grf_alpha": (2.0, 2.0)},
            log_uniform=frozenset({"grf_tau"}),
            description="many small, rougher bumps (tau 8-16, alpha 2)",
        ),
    }
    solver = "cell-centred finite volume"
    default_resolution = 64
    default_task = Task("one_shot", 1, 1)
    pinn_fields = ("u",)
    #: the manufactured solutions of the PINN problem, with the factor ``c`` in ``−Δu* = c k² π² u*``
    #: as a function of the dimension.
    SOLUTIONS = {"sine_product": lambda d: float(d), "sine_sum": lambda d: 1.0}

    def __init__(self, dim: int = 2, solution: str = "sine_product"):
        if isinstance(dim, bool) or int(dim) != dim or int(dim) < 1:
            raise UserError(f"Poisson dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.solution = check_choice("Poisson solution", solution, self.SOLUTIONS)
        # Per instance, so the declared conditions name this dimension's axes.
        axes = ("x", "y", "z")[: self.dim] if self.dim <= 3 else tuple(f"x{i}" for i in range(self.dim))
        self.boundary_conditions = tuple(
            BoundaryCondition(f"{ax}_dirichlet", "dirichlet", (ax,), ("u",), 0.0) for ax in axes)

    # ---- grid and sampling -------------------------------------------------------------------
    def grid(self, resolution: int) -> CartesianGrid:
        """Bounded grid on ``[0, 1]^d`` with ``resolution`` cell centres per axis."""
        n = check_resolution(self.name, resolution, minimum=2)
        if self.dim > 3:
            raise UserError(f"Poisson datasets need dim <= 3 (grids name the axes x, y, z), got dim={self.dim}; "
                            f"higher dimensions are for PINNs")
        return CartesianGrid(((0.0, 1.0),) * self.dim, (n,) * self.dim, (False,) * self.dim)

    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Parameters from ``level``, then the source ``f`` on ``grid``, using only ``rng``.

        Returns:
            ``Instance(params, inputs={"f": (*grid.shape) float64})``.
        """
        self._check_grid(grid)
        params = self.draw_params(level, rng)
        tau, alpha = params["grf_tau"], params["grf_alpha"]
        sigma = params["forcing_scale"] * tau ** (alpha - 1.0)
        f = gaussian_random_field(rng, grid, alpha=alpha, tau=tau, sigma=sigma, zero_mean=False)
        return Instance(params=params, inputs={"f": f})

    # ---- solver ------------------------------------------------------------------------------
    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """One sparse direct solve per instance (on the CPU whatever ``device`` says, as for Darcy).

        Returns:
            ``SolveResult`` with ``fields = {"f": (B, *space), "u": (B, *space)}`` float64,
            ``times=None``, ``steps = (B,)`` ones.
        """
        self._check_grid(grid)
        if len(instances) == 0:
            raise ValueError("Poisson.solve needs at least one instance")
        f = np.stack([inst.field("f", grid.shape, i) for i, inst in enumerate(instances)])
        ones = np.ones(grid.shape)
        u = np.stack([fv.solve(ones, grid, f=fi, g=0.0) for fi in f])
        settings = {
            "scheme": fv.SCHEME,
            "coefficient": "a = 1",
            "boundary": "Dirichlet u = 0 at half-cell distance",
            "linear_solver": fv.LINEAR_SOLVER,
            "dtype": "float64",
            "solve_device": "cpu",
            "requested_device": str(device),
        }
        return SolveResult(fields={"f": f, "u": u}, times=None,
                           steps=np.ones(len(instances), dtype=np.int64), settings=settings)

    def residual(
        self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
        times: np.ndarray | Sequence[float] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Finite-volume residual ``A u − f`` of the solver's own discretisation (``a = 1``).

        Args:
            solution: ``{"f": (B, *space), "u": (B, *space)}`` NumPy arrays or torch tensors (then the
                result is a differentiable tensor on the same device).
            params, times: unused (the source is a field).

        Returns:
            ``(B, *space)``; zero to round-off on a solver output.
        """
        self._check_grid(grid)
        return fv.residual(np.ones(grid.shape), solution["u"], grid, f=solution["f"], g=0.0)

    def _check_grid(self, grid: CartesianGrid) -> None:
        if grid.dim != self.dim or any(grid.periodic):
            raise UserError(f"Poisson(dim={self.dim}) needs a bounded {self.dim}D grid, got shape "
                            f"{grid.shape}, periodic {grid.periodic}")

    # ---- pointwise residual interface (PINNs) ------------------------------------------------
    def pinn_domain(self, params: Mapping[str, Any] | None = None) -> tuple[tuple[float, float], ...]:
        """The unit cube: ``((0, 1),) * d``."""
        return ((0.0, 1.0),) * self.dim

    def _wave_number(self, params: Mapping[str, Any] | None) -> float:
        return self.param(params, "wave_number")

    def exact_solution(self, x: torch.Tensor, params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """``u*(x) = Π_i sin(k π x_i)`` (``sine_product``) or ``Σ_i sin(k π x_i)`` (``sine_sum``).

        Args:
            x: ``(N, d)`` points.
            params: ``wave_number`` ``k`` (default 1).

        Returns:
            ``(N, 1)``.
        """
        k = self._wave_number(params)
        waves = torch.sin(k * math.pi * x)
        if self.solution == "sine_sum":
            return waves.sum(dim=-1, keepdim=True)
        return waves.prod(dim=-1, keepdim=True)

    def source(self, x: torch.Tensor, params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """``f = −Δu* = c k² π² u*`` at ``x: (N, d)`` (``c = d`` for ``sine_product``, ``1`` for
        ``sine_sum``: each term of the sum depends on one coordinate); returns ``(N,)``."""
        k = self._wave_number(params)
        c = self.SOLUTIONS[self.solution](self.dim)
        return c * (k * math.pi) ** 2 * self.exact_solution(x, params)[..., 0]

    def boundary_value(self, x: torch.Tensor, params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Dirichlet data ``g = u*`` at ``x: (N, d)``; returns ``(N,)``."""
        return self.exact_solution(x, params)[..., 0]

    def pointwise_residual(self, u_fn: PointFunction, x: torch.Tensor,
                           params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Strong-form residual ``r(x) = −Δu(x) − f(x)``.

        Args:
            u_fn: the candidate solution ``(N, d) -> (N, 1)`` with independent rows, built from torch
                operations (a network, possibly through ``torch.func.functional_call``).
            x: ``(N, d)`` interior points.
            params: ``wave_number`` of the manufactured source (default 1).

        Returns:
            ``(N,)``, zero for the exact solution.
        """
        self._check_points(x)
        return -laplacian(u_fn, x) - self.source(x, params)

    def boundary_residual(self, u_fn: PointFunction, x: torch.Tensor,
                          params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Dirichlet residual ``u(x) − g(x)`` at boundary points ``x: (N, d)``; returns ``(N,)``."""
        self._check_points(x)
        return u_fn(x)[:, 0] - self.boundary_value(x, params)

    def _check_points(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise UserError(f"Poisson(dim={self.dim}) needs points of shape (N, {self.dim}), "
                            f"got {tuple(x.shape)}")
