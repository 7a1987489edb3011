"""Helmholtz equation ``−Δu − k²u = f`` on the unit square with ``u = g`` on the boundary.

Two uses, as for :mod:`pde_lab.pdes.poisson` (whose grid, sampler and point-derivative tools this
module reuses):

* **Datasets**: a random smooth source ``f`` (the Poisson family's Gaussian random field, a cosine
  series) mapped to ``u`` (``u = 0`` on the boundary) by the exact sine-series solution of
  :mod:`pde_lab.solvers.sine_series`. Difficulty is the wave number: the solution oscillates on the
  scale ``1/k`` and, once ``k²`` passes the lowest Dirichlet eigenvalue ``2π²`` (``k ≈ 4.44``), the
  operator is indefinite and the response to a source grows near each resonance
  ``k² = π²(m² + n²)``. Levels: ``easy`` ``k ∈ [1, 4]`` (definite), ``medium`` ``[6, 12]``, ``hard``
  ``[15, 30]`` (log-uniform).
* **PINNs**: the strong-form residual ``−Δu − k²u − f`` and ``u − g`` on the boundary, with the
  manufactured solution of the PINN literature (Wang, Teng & Perdikaris 2021; MultiAdam's
  benchmark): ``u* = sin(a₁πx) sin(a₂πy)``, ``f = (a₁²π² + a₂²π² − k²) u*``, by default ``a₁ = 1``,
  ``a₂ = 4``, ``k = 1``.

Why not the Poisson family's finite volumes with ``−k²`` on the diagonal (the solver up to pde_lab
0.2.1): a second-order scheme's phase error accumulates over the ``k/π`` wavelengths across the domain
and shifts every resonance, so at the stored 64² its median error on the ``hard`` level was 26 %, and 35
times the solution next to the resonance ``k = π√41`` (relative L2, twelve draws). The sine series has neither
error: its resonances are the continuous problem's, and it agrees with the analytic solution for
``f = 1`` to 2e-8 at ``k = 30``. :meth:`Helmholtz.residual` is a five-point residual, a discrete
check and physics loss, not a measure of the ground truth's error (its value on the exact solution is
the stencil's truncation error).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import UserError, check_integer
from ..grids import CartesianGrid
from ..solvers import sine_series
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
    solver = "sine series of the exact solution (source read as its cosine interpolant), truncated at 2048+ modes"

    def __init__(self, sine_modes: int = 2048) -> None:
        """
        Args:
            sine_modes: sine modes per axis of the solution's series, at least ``8 n`` for a stored
                resolution ``n`` (more are taken when needed); the truncation error falls like
                ``sine_modes⁻³`` and is recorded per sample as ``series_error`` (2e-8 at ``k = 30``).
        """
        super().__init__(dim=2)
        self.sine_modes = check_integer("sine_modes", sine_modes, 16, even=True)

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``k L / π``, the wave number in units of the lowest mode's (``L = 1``): waves per two lengths."""
        return {"k_over_pi": float(params["k"]) / math.pi}

    # ---- solver ------------------------------------------------------------------------------
    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """The sine-series solution of each instance (CPU whatever ``device`` says; 0.09 s per sample
        at 64² on one core).

        Returns:
            ``SolveResult`` with ``fields = {"f": (B, n, n), "u": (B, n, n)}`` float64, ``times=None``
            and ``per_sample["series_error"]``, the estimated relative L2 truncation error.

        Raises:
            UserError: an instance's ``k`` is a resonance of the unit square (``k² = π²(p² + q²)``).
        """
        self._check_grid(grid)
        if len(instances) == 0:
            raise ValueError("Helmholtz.solve needs at least one instance")
        f = np.stack([inst.field("f", grid.shape, i) for i, inst in enumerate(instances)])
        modes = max(self.sine_modes, 8 * max(grid.shape))
        u = np.empty_like(f)
        error = np.empty(len(instances))
        for i, (inst, fi) in enumerate(zip(instances, f)):
            k = float(inst.params["k"])
            try:
                u[i], error[i] = sine_series.solve_dirichlet(fi, grid.lengths, -k**2, modes)
            except ValueError as err:
                raise UserError(f"instance {i}: k = {k!r} makes the Helmholtz problem singular ({err})") from None
        settings = {"scheme": "sine series of the exact solution; the source is read as its cosine interpolant",
                    "sine_modes": modes,
                    "boundary": "u = 0 on the walls (exactly, term by term)",
                    "dtype": "float64", "solve_device": "cpu", "requested_device": str(device)}
        return SolveResult(fields={"f": f, "u": u}, times=None, steps=np.ones(len(instances), dtype=np.int64),
                           settings=settings, per_sample={"series_error": error})

    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Five-point residual ``−Δ_h u − k² u − f`` with the wall value ``u = 0`` imposed by
        quadratic extrapolation (the ghost value beyond a wall cell is ``−2 u₀ + u₁ / 3``).

        Why not the finite-volume residual of the Poisson family: its linear ghost ``−u₀`` errs by a
        quarter of ``u''`` in every wall cell, an O(1) truncation error that put the residual of the
        exact solution at 7 % of ``‖f‖`` on every level. With the quadratic ghost the wall cells err by
        O(h). On the solver's (exact) solution the residual is still the stencil's truncation error, not
        zero: relative to ``‖f‖`` at 64², 0.6 % (``easy``), 1.6 % (``medium``) and 3.3 % (``hard``). It
        falls like ``h`` there, because a source that does not vanish at a corner gives the solution
        an ``r² log r`` singularity at that corner; on smooth solutions it falls at order 1.5 (the
        wall cells' ghost errs by O(h)), and at about 2 for a source that vanishes on the walls.

        Args:
            solution: ``{"f": (B, n, n), "u": (B, n, n)}`` NumPy or torch (then differentiable).
            params: ``k`` as a scalar or ``(B,)``.
            grid: the grid of the fields.
            times: unused (steady problem).

        Returns:
            ``(B, n, n)``.
        """
        self._check_grid(grid)
        u = solution["u"]
        k = params["k"]
        if isinstance(u, torch.Tensor):
            k2 = torch.as_tensor(k, dtype=u.dtype, device=u.device).reshape(-1, 1, 1) ** 2
        else:
            k2 = np.asarray(k, dtype=np.float64).reshape(-1, 1, 1) ** 2
        laplacian_h = sum(_second_difference_to_zero_wall(u, axis, h) for axis, h in ((-2, grid.spacing[0]),
                                                                                   (-1, grid.spacing[1])))
        return -laplacian_h - k2 * u - solution["f"]

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



def _take(x, axis: int, start: int | None, stop: int | None):
    """``x[..., start:stop, ...]`` on ``axis`` (NumPy or torch)."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _second_difference_to_zero_wall(u, axis: int, h: float):
    """Second difference of cell-centre values ``u (…, n, …)`` along ``axis`` with ``u = 0`` on both
    walls, half a cell beyond the outer centres, through the quadratic ghost ``−2 u₀ + u₁ / 3``."""
    cat = torch.cat if isinstance(u, torch.Tensor) else np.concatenate
    low = -2 * _take(u, axis, 0, 1) + _take(u, axis, 1, 2) / 3
    high = -2 * _take(u, axis, -1, None) + _take(u, axis, -2, -1) / 3
    padded = cat([low, u, high], axis)
    n = u.shape[axis]
    return (_take(padded, axis, 2, n + 2) - 2 * _take(padded, axis, 1, n + 1) + _take(padded, axis, 0, n)) / h**2
