"""Helmholtz equation ``−Δu − k²u = f`` on the unit square with ``u = g`` on the boundary.

Two uses, as for :mod:`pde_lab.pdes.poisson` (whose grid, sampler and point-derivative tools this
module reuses):

* **Datasets**: a random smooth source ``f`` (the Poisson family's Gaussian random field) mapped to
  ``u`` (``u = 0`` on the boundary) by the same cell-centred finite-volume scheme with the mass term
  ``−k² u`` added to the diagonal. Difficulty is the wave number: the solution oscillates on the
  scale ``1/k`` and, once ``k²`` passes the lowest Dirichlet eigenvalue ``2π²`` (``k ≈ 4.44``), the
  operator is indefinite and the response to a source grows near each resonance
  ``k² = π²(m² + n²)``. Levels: ``easy`` ``k ∈ [1, 4]`` (definite), ``medium`` ``[6, 12]``, ``hard``
  ``[15, 30]`` (log-uniform).
* **PINNs**: the strong-form residual ``−Δu − k²u − f`` and ``u − g`` on the boundary, with the
  manufactured solution of the PINN literature (Wang, Teng & Perdikaris 2021; MultiAdam's
  benchmark): ``u* = sin(a₁πx) sin(a₂πy)``, ``f = (a₁²π² + a₂²π² − k²) u*``, by default ``a₁ = 1``,
  ``a₂ = 4``, ``k = 1``.

The indefinite matrix needs pivoting, so the sparse LU here keeps SciPy's partial pivoting rather
than the symmetric no-pivot mode the Poisson solver uses for its SPD matrix.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..grids import CartesianGrid
from ..solvers import finite_volume as fv
from . import PDES
from .base import Instance, Level, Parameter, SolveResult
from .poisson import PointFunction, Poisson, laplacian


@PDES.register("helmholtz")
class Helmholtz(Poisson):
    """Helmholtz ``−Δu − k²u = f`` on ``[0, 1]²``, ``u = g`` on the boundary (see the module docstring).

    Dataset fields as for Poisson: input ``f`` and solution ``u``, static, cell centres of an
    ``(n, n)`` grid.
    """

    name = "helmholtz"
    description = "Helmholtz equation -Lap u - k^2 u = f on the unit square, Dirichlet data (random smooth f)"
    equation = "-Lap u - k^2 u = f in (0,1)^2, u = g on the boundary (datasets: g = 0, f a Gaussian random field)"
    parameters = (
        Parameter("k", 1.0, "1/L", "wave number"),
        Parameter("grf_tau", 3.0, "1", "inverse correlation length tau of f ~ N(0, s^2 (-Lap + tau^2)^-alpha)"),
        Parameter("grf_alpha", 3.0, "1", "smoothness exponent alpha of the source field"),
        Parameter("forcing_scale", 40.0, "1", "amplitude: s = forcing_scale * tau^(alpha - 1)"),
        Parameter("a1", 1.0, "1", "PINN manufactured solution sin(a1 pi x) sin(a2 pi y): x frequency"),
        Parameter("a2", 4.0, "1", "PINN manufactured solution: y frequency"),
    )
    levels = {
        "easy": Level("easy", {"k": (1.0, 4.0), "grf_tau": (3.0, 3.0)},
                      description="k 1-4: below the first resonance, a definite operator"),
        "medium": Level("medium", {"k": (6.0, 12.0), "grf_tau": (3.0, 3.0)}, log_uniform=frozenset({"k"}),
                        description="k 6-12: indefinite, a few wavelengths across the domain"),
        "hard": Level("hard", {"k": (15.0, 30.0), "grf_tau": (3.0, 3.0)}, log_uniform=frozenset({"k"}),
                      description="k 15-30: 2.5-5 wavelengths per unit length, many resonances below k^2"),
    }
    solver = "cell-centred finite volume, sparse LU with partial pivoting"

    def __init__(self) -> None:
        super().__init__(dim=2)

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``k L / π``, the wave number in units of the lowest mode's (``L = 1``): waves per two lengths."""
        return {"k_over_pi": float(params["k"]) / math.pi}

    # ---- solver ------------------------------------------------------------------------------
    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """One sparse LU solve per instance (CPU whatever ``device`` says).

        Returns:
            ``SolveResult`` with ``fields = {"f": (B, n, n), "u": (B, n, n)}`` float64, ``times=None``.
        """
        self._check_grid(grid)
        if len(instances) == 0:
            raise ValueError("Helmholtz.solve needs at least one instance")
        f = np.stack([inst.field("f", grid.shape, i) for i, inst in enumerate(instances)])
        A0, _ = fv.assemble(np.ones(grid.shape), grid, f=0.0, g=0.0)
        eye = sp.identity(A0.shape[0], format="csc")
        u = np.stack([spla.splu((A0 - inst.params["k"] ** 2 * eye).tocsc()).solve(fi.ravel()).reshape(grid.shape)
                      for inst, fi in zip(instances, f)])
        settings = {"scheme": fv.SCHEME + " with the mass term -k^2 u per cell",
                    "boundary": "Dirichlet u = 0 at half-cell distance",
                    "linear_solver": "scipy splu (SuperLU, COLAMD, partial pivoting)",
                    "dtype": "float64", "solve_device": "cpu", "requested_device": str(device)}
        return SolveResult(fields={"f": f, "u": u}, times=None, steps=np.ones(len(instances), dtype=np.int64),
                           settings=settings)

    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Finite-volume residual ``A u − k² u − f`` of the solver's discretisation.

        Args:
            solution: ``{"f": (B, n, n), "u": (B, n, n)}`` NumPy or torch.
            params: ``k`` as a scalar or ``(B,)``.
            grid: the grid of the fields.
            times: unused (steady problem).

        Returns:
            ``(B, n, n)``; zero to round-off on a solver output.
        """
        self._check_grid(grid)
        u = solution["u"]
        k = params["k"]
        if isinstance(u, torch.Tensor):
            k2 = torch.as_tensor(k, dtype=u.dtype, device=u.device).reshape(-1, 1, 1) ** 2
        else:
            k2 = np.asarray(k, dtype=np.float64).reshape(-1, 1, 1) ** 2
        return fv.residual(np.ones(grid.shape), u, grid, f=solution["f"], g=0.0) - k2 * u

    # ---- pointwise residual interface (PINNs) ------------------------------------------------
    def _pinn_params(self, params: Mapping[str, Any] | None) -> tuple[float, float, float]:
        return self.param(params, "a1"), self.param(params, "a2"), self.param(params, "k")

    def exact_solution(self, x: torch.Tensor, params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """``u* = sin(a₁πx) sin(a₂πy)`` at ``x: (N, 2)``; returns ``(N, 1)``."""
        a1, a2, _ = self._pinn_params(params)
        return (torch.sin(a1 * math.pi * x[:, :1]) * torch.sin(a2 * math.pi * x[:, 1:2]))

    def source(self, x: torch.Tensor, params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """``f = (a₁²π² + a₂²π² − k²) u*`` at ``x: (N, 2)``; returns ``(N,)``."""
        a1, a2, k = self._pinn_params(params)
        return ((a1**2 + a2**2) * math.pi**2 - k**2) * self.exact_solution(x, params)[:, 0]

    def pointwise_residual(self, u_fn: PointFunction, x: torch.Tensor,
                           params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Strong-form residual ``−Δu − k²u − f`` at interior points ``x: (N, 2)``; returns ``(N,)``."""
        self._check_points(x)
        _, _, k = self._pinn_params(params)
        return -laplacian(u_fn, x) - k**2 * u_fn(x)[:, 0] - self.source(x, params)
