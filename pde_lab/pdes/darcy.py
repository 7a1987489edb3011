"""Steady Darcy flow in a two-phase random medium: ``−∇·(a∇u) = f`` on the unit square, ``u = 0`` on
the boundary.

The coefficient is the FNO benchmark's (Li et al. 2021, "Fourier neural operator for parametric
PDEs"): a Gaussian random field ``ψ ~ N(0, (−Δ + τ² I)^(−α))`` with zero Neumann data, thresholded to
``a = a_high`` where ``ψ ≥ 0`` and ``a = a_low`` elsewhere (12 and 3, τ = 3, α = 2, ``f = 1`` in the
benchmark). Difficulty grows with the contrast ``a_high / a_low`` (sharper kinks of ``u`` at the phase
interfaces) and with τ (shorter correlation length: more, smaller inclusions).

Parametrisation: ``a_low`` and ``contrast`` (``a_high = contrast · a_low``). Levels vary ``contrast``
with ``a_low`` fixed at 3, so the compliance ``∫ f u`` (decreasing in ``a``) stays below that of the
uniform medium ``a = a_low``: harder levels change the structure of ``u``, not its overall scale.

The classical solver is the cell-centred finite-volume scheme of
:mod:`pde_lab.solvers.finite_volume` (harmonic face averages, sparse direct solve); see
``docs/pdes/darcy.md`` for the verification numbers.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..grids import CartesianGrid
from ..random_fields import gaussian_random_field
from ..solvers import finite_volume as fv
# ``PDES`` is bound in ``pdes/__init__.py`` before that module imports this one, so importing it from
# the partially initialised package works whichever of the two is imported first.
from . import PDES
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task, check_resolution

if TYPE_CHECKING:
    import torch


@PDES.register("darcy")
class Darcy(PDE):
    """Darcy flow ``−∇·(a∇u) = f`` on ``[0, 1]²`` with ``u = 0`` on the boundary and a two-valued
    coefficient ``a`` from a thresholded Gaussian random field.

    Fields are cell-centre values on a ``(n, n)`` bounded grid: input ``a`` and solution ``u``, both
    static (stored as ``(trajectory, n, n)``).
    """

    name = "darcy"
    description = "Steady Darcy flow in a two-phase random medium (FNO benchmark coefficient)"
    equation = ("-div(a grad u) = f in (0,1)^2, u = 0 on the boundary; "
                "a = a_low*contrast if psi >= 0 else a_low")
    parameters = (
        Parameter("a_low", 3.0, "1", "coefficient (permeability) of the low phase, where psi < 0"),
        Parameter("contrast", 4.0, "1", "a_high / a_low; the high phase is where psi >= 0"),
        Parameter("grf_tau", 3.0, "1", "inverse correlation length tau of psi ~ N(0, (-Lap + tau^2)^-alpha)"),
        Parameter("grf_alpha", 2.0, "1", "smoothness exponent alpha of the random field psi"),
        Parameter("forcing", 1.0, "1", "constant source term f"),
    )
    fields = (
        FieldSpec("a", "input", time_varying=False, units="1",
                  description="diffusion coefficient (permeability), two-valued, per cell"),
        FieldSpec("u", "solution", time_varying=False, units="1",
                  description="pressure / potential, cell averages"),
    )
    boundary_conditions = (
        BoundaryCondition("x_dirichlet", "dirichlet", ("x",), ("u",), 0.0),
        BoundaryCondition("y_dirichlet", "dirichlet", ("y",), ("u",), 0.0),
    )
    levels = {
        "fno": Level(
            "fno",
            {"a_low": (3.0, 3.0), "contrast": (4.0, 4.0), "grf_tau": (3.0, 3.0), "grf_alpha": (2.0, 2.0)},
            description="exactly the FNO benchmark: a in {3, 12}, tau = 3, alpha = 2, f = 1",
        ),
        "easy": Level(
            "easy",
            {"contrast": (2.0, 4.0), "grf_tau": (2.0, 4.0)},
            log_uniform=frozenset({"contrast", "grf_tau"}),
            description="low contrast, a few large inclusions",
        ),
        "medium": Level(
            "medium",
            {"contrast": (4.0, 20.0), "grf_tau": (4.0, 8.0)},
            log_uniform=frozenset({"contrast", "grf_tau"}),
            description="moderate contrast, tens of inclusions",
        ),
        "hard": Level(
            "hard",
            {"contrast": (20.0, 100.0), "grf_tau": (8.0, 16.0)},
            log_uniform=frozenset({"contrast", "grf_tau"}),
            description="high contrast, many small inclusions",
        ),
    }
    solver = "cell-centred finite volume"
    default_resolution = 64
    default_task = Task("one_shot", 1, 1)

    # ---- grid and sampling -------------------------------------------------------------------
    def grid(self, resolution: int) -> CartesianGrid:
        """Bounded grid on ``[0, 1]²`` with ``resolution × resolution`` cell centres (``resolution ≥ 4``)."""
        n = check_resolution(self.name, resolution)
        return CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (n, n), (False, False))

    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Draw parameters from ``level``, then ``ψ`` on ``grid`` and threshold it, using only ``rng``.

        Returns:
            ``Instance(params, inputs={"a": (n, n) float64})``.
        """
        self._check_grid(grid)
        params = self.draw_params(level, rng)
        psi = gaussian_random_field(rng, grid, alpha=params["grf_alpha"], tau=params["grf_tau"])
        a_low = params["a_low"]
        a = np.where(psi >= 0.0, a_low * params["contrast"], a_low)
        return Instance(params=params, inputs={"a": a})

    def dimensionless(
        self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]
    ) -> dict[str, float]:
        """``contrast = max(a) / min(a)`` of the realised field and ``high_fraction``, the share of
        cells in the high phase (``a`` nearer ``a_high`` than ``a_low`` in log scale)."""
        a = np.asarray(inputs["a"], dtype=np.float64)
        threshold = params["a_low"] * math.sqrt(params["contrast"])
        return {
            "contrast": float(a.max() / a.min()),
            "high_fraction": float(np.mean(a > threshold)) if params["contrast"] > 1 else 0.0,
        }

    # ---- solver ------------------------------------------------------------------------------
    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """One sparse direct solve per instance (on the CPU whatever ``device`` says: SuperLU has no
        GPU path, and a direct solve of ≤ 10⁵ unknowns is fast there).

        Returns:
            ``SolveResult`` with ``fields = {"a": (B, n, n), "u": (B, n, n)}`` float64, ``times=None``,
            ``steps = (B,)`` ones.
        """
        self._check_grid(grid)
        if len(instances) == 0:
            raise ValueError("Darcy.solve needs at least one instance")
        a = np.stack([inst.field("a", grid.shape, i) for i, inst in enumerate(instances)])
        u = np.empty_like(a)
        default_forcing = self.default_params()["forcing"]
        for i, inst in enumerate(instances):
            u[i] = fv.solve(a[i], grid, f=float(inst.params.get("forcing", default_forcing)), g=0.0)
        settings = {
            "scheme": fv.SCHEME,
            "face_averaging": "harmonic",
            "boundary": "Dirichlet u = 0 at half-cell distance, cell's own coefficient",
            "linear_solver": fv.LINEAR_SOLVER,
            "dtype": "float64",
            "solve_device": "cpu",
            "requested_device": str(device),
        }
        return SolveResult(fields={"a": a, "u": u}, times=None,
                           steps=np.ones(len(instances), dtype=np.int64), settings=settings)

    def residual(
        self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
        times: np.ndarray | Sequence[float] | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Finite-volume residual ``A(a) u − f`` of the solver's own discretisation.

        Args:
            solution: ``{"a": (B, n, n), "u": (B, n, n)}`` NumPy arrays or torch tensors (then the
                result is a differentiable tensor on the same device).
            params: needs ``forcing``, a number or ``(B,)`` per-sample values.
            grid: the grid of the fields.
            times: unused (steady problem).

        Returns:
            ``(B, n, n)`` residual in the units of ``f``; zero to round-off on a solver output.
        """
        self._check_grid(grid)
        u = solution["u"]
        forcing = params.get("forcing", self.default_params()["forcing"])
        if not hasattr(forcing, "reshape") and not np.isscalar(forcing):
            forcing = np.asarray(forcing, dtype=np.float64)
        if getattr(forcing, "ndim", 0) == 1:  # one value per sample: (B,) → (B, 1, 1)
            forcing = forcing.reshape(-1, 1, 1)
        return fv.residual(solution["a"], u, grid, f=forcing, g=0.0)

    @staticmethod
    def _check_grid(grid: CartesianGrid) -> None:
        if grid.dim != 2 or any(grid.periodic):
            raise ValueError(
                f"Darcy needs a bounded 2D grid, got shape {grid.shape}, periodic {grid.periodic}"
            )


# ---- manufactured solutions (tests, docs) ----------------------------------------------------

def _default_coefficient(x, y):
    import torch
    return 1.0 + 0.5 * torch.sin(2 * math.pi * x) * torch.cos(math.pi * y)


def _default_solution(x, y):
    import torch
    return torch.sin(math.pi * x) * torch.sin(math.pi * y)


def manufactured_problem(
    grid: CartesianGrid,
    a_fn: Callable | None = None,
    u_fn: Callable | None = None,
) -> dict[str, Any]:
    """A smooth coefficient, an exact solution and the matching source ``f = −∇·(a∇u)``.

    The source is differentiated exactly (torch autograd in float64) from the two functions, so any
    smooth pair can be checked. Defaults: ``a = 1 + 0.5 sin(2πx) cos(πy)`` (between 0.5 and 1.5) and
    ``u = sin(πx) sin(πy)``, which vanishes on the boundary of the unit square.

    Args:
        grid: bounded 2D grid.
        a_fn, u_fn: ``fn(x, y)`` on float64 torch tensors of equal shape, built from torch operations.

    Returns:
        ``{"a", "u", "f"}``: ``(nx, ny)`` float64 arrays at the cell centres, and ``"g"``: the Dirichlet
        data ``u`` at the boundary face centres, in :data:`pde_lab.solvers.finite_volume.DirichletData`
        form.
    """
    import torch

    a_fn = a_fn or _default_coefficient
    u_fn = u_fn or _default_solution
    x0, y0 = grid.mesh()
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(y0, dtype=torch.float64, requires_grad=True)
    a, u = a_fn(x, y), u_fn(x, y)
    # The functions act pointwise, so the gradient of a sum gives every point's derivative at once.
    u_x, u_y = torch.autograd.grad(u.sum(), (x, y), create_graph=True)
    flux_x, flux_y = a * u_x, a * u_y
    div = torch.autograd.grad(flux_x.sum(), x, retain_graph=True)[0] + torch.autograd.grad(flux_y.sum(), y)[0]

    def u_numpy(xs, ys):
        with torch.no_grad():
            xs, ys = (torch.as_tensor(c, dtype=torch.float64) for c in (xs, ys))
            return u_fn(xs, ys).numpy()

    return {
        "a": a.detach().numpy().copy(),
        "u": u.detach().numpy().copy(),
        "f": (-div).detach().numpy().copy(),
        "g": fv.dirichlet_values(grid, u_numpy),
    }
