"""Scalar viscous Burgers equation on the periodic unit square: ``u_t + u (u_x + u_y) = ν Δu``
(``burgers_2d``), in conservative form ``u_t = ν Δu − ½ ∂_x(u²) − ½ ∂_y(u²)``.

The 2D scalar Burgers problem of the TENG paper (Chen et al. 2024) and of PDEBench-style scalar
benchmarks. The velocity of the transport is ``(u, u)``: the solution steepens along the diagonal
``(1, 1)`` only and diffuses in every direction. A state that depends on ``ξ = x + y`` alone stays so,
``u = w(x + y, t)`` with ``w_t + 2 w w_ξ = 2ν w_ξξ`` (so ``W = 2w`` solves the 1D Burgers equation with
viscosity ``2ν``); a state that depends on ``x`` alone solves the 1D Burgers equation with viscosity
``ν``. Both are tested against the 1D ``burgers`` family. Difficulty grows as ``ν`` falls (thinner
fronts, ``Re = u_rms/ν`` stored) and as the initial state roughens. The default task is
``u0 ↦ u(t_final)``.

Solver (:mod:`pde_lab.solvers.semilinear`): ``L = νΔ`` exactly, ``N(u) = −½ (∂_x + ∂_y)(u²)``
explicit and 2/3-dealiased (alias-free for this quadratic term). Per instance:

* solver resolution ``n_s = n · m``, ``m ∈ {2, 3, 4, 6, 8, …}``, the smallest with
  ``n_s ≥ 3 ln(1/tol) ΔU / (4π² ν)``, ``ΔU = max u0 − min u0`` (the maximum principle bounds every
  later jump by it). Why the 1D rule holds per axis: a front with unit normal ``n`` obeys the 1D
  equation ``u_t + (n·e) u u_s = ν u_ss`` in ``s = n·x`` (``e = (1, 1)``), the steepest for
  ``n = e/√2``: its profile is ``tanh(√2 ΔU s / 4ν) = tanh(ΔU (x + y) / 4ν)``, i.e. the 1D shock
  profile in each of ``x`` and ``y``, whose Fourier coefficients decay like ``exp(−2πν|κ_i|/ΔU)`` in
  the per-axis wavenumber ``κ_i``. The 2/3 mask is a square (a mode is kept when kept on each axis),
  so the per-axis cut ``κ_max = 2π n_s/3`` must see a decay below ``tol`` — the 1D Burgers condition.
* step ``dt = Δt_out / 2^p``, the largest with ``dt · 2 max|u0| κ_max ≤ cfl`` (advective CFL: the
  velocity ``(u, u)`` moves the mode ``(κ_max, κ_max)`` at frequency ``2 u κ_max``; ``max|u|`` never
  grows) and ``dt ≤ Δt_out / min_steps_per_interval``.

See ``docs/pdes/burgers_2d.md`` for the verification numbers.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import UserError, check_positive
from ..solvers.semilinear import NonlinearTerm, PeriodicBox, solver_size
from . import PDES
from .base import BoundaryCondition, FieldSpec, Level, Parameter, Task
from .periodic_semilinear import PeriodicSemilinearPDE
from .poisson import PointFunction, gradient, laplacian

__all__ = ["Burgers2D"]


@PDES.register("burgers_2d")
class Burgers2D(PeriodicSemilinearPDE):
    """Scalar viscous Burgers ``u_t + u (u_x + u_y) = ν Δu`` on the periodic unit square, random
    Gaussian initial state.

    Args: see :class:`pde_lab.pdes.periodic_semilinear.PeriodicSemilinearPDE`, plus
        cfl: bound on the advective Courant number ``dt · 2 max|u0| κ_max``.
    """

    name = "burgers_2d"
    description = ("Scalar viscous Burgers equation, 2D periodic, transport along (1, 1), "
                   "random Gaussian initial state")
    equation = ("u_t + u (u_x + u_y) = nu (u_xx + u_yy),  i.e. u_t = nu Laplacian(u) - (u^2/2)_x - (u^2/2)_y,  "
                "(x, y) in [0, 1)^2 periodic,  0 < t <= t_final")
    dim = 2
    parameters = (
        Parameter("nu", 0.02, "L^2/T", "viscosity (domain length L = 1)"),
        Parameter("t_final", 1.0, "T", "final time; snapshots at n_snapshots equally spaced times in [0, t_final]"),
        Parameter("ic_alpha", 2.0, "1",
                  "initial state GRF smoothness exponent: covariance (-Laplacian + tau^2 I)^(-alpha)"),
        Parameter("ic_tau", 5.0, "1/L", "initial state GRF inverse length scale: spectrum flat up to |k| ~ tau"),
        Parameter("ic_amplitude", 0.5, "L/T", "RMS of the initial state (each draw is rescaled to it)"),
    )
    fields = (FieldSpec("u", "solution", time_varying=True, units="L/T",
                        description="transported scalar (velocity along (1, 1)); frame 0 is the initial state"),)
    boundary_conditions = (BoundaryCondition("xy_periodic", "periodic", ("x", "y"), ("u",)),)
    levels = {
        "easy": Level("easy", {"nu": (0.04, 0.08), "ic_alpha": (2.0, 2.0), "ic_tau": (4.0, 6.0)},
                      log_uniform=frozenset({"nu"}), description="nu in [0.04, 0.08]: smooth fronts, Re ~ 6-12"),
        "medium": Level("medium", {"nu": (0.025, 0.04), "ic_alpha": (2.0, 2.0), "ic_tau": (5.0, 8.0)},
                        log_uniform=frozenset({"nu"}),
                        description="nu in [0.025, 0.04], tau 5-8: steep fronts, Re ~ 12-20"),
        "hard": Level("hard", {"nu": (0.018, 0.025), "ic_alpha": (2.0, 2.0), "ic_tau": (6.0, 10.0)},
                      log_uniform=frozenset({"nu"}),
                      description="nu in [0.018, 0.025], tau 6-10: thin fronts that merge, Re ~ 20-28"),
    }
    solver = "pseudo-spectral ETDRK4"
    default_resolution = 64
    default_task = Task("one_shot", 1, 1)
    n_snapshots = 11
    default_min_steps = 8
    positive_params = ("nu", "t_final")
    default_max_solver_resolution = 1024

    def __init__(self, cfl: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfl = float(check_positive("cfl", cfl))

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``Re = U L / ν`` with ``U`` the RMS of ``u0`` and ``L = 1``."""
        u0 = np.asarray(inputs["u"], dtype=np.float64)
        return {"Re": float(np.sqrt(np.mean(u0**2)) / params["nu"])}

    def solver_resolution(self, params: Mapping[str, float], u0: np.ndarray, n: int) -> int:
        jump = float(np.max(u0) - np.min(u0))
        return solver_size(n, 3.0 * math.log(1.0 / self.spectral_tol) * jump / (4.0 * math.pi**2 * params["nu"]))

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return -p["nu"] * box.k2

    def nonlinear(self) -> NonlinearTerm:
        def factory(box: PeriodicBox, cf):
            def term(v: torch.Tensor) -> torch.Tensor:
                u = box.to_physical(v)
                w = box.to_spectral(-0.5 * (u * u))
                return box.derivative(w, 0) + box.derivative(w, 1)
            return term
        return factory

    def step_limits(self, params: Sequence[Mapping[str, float]], u0: np.ndarray,
                    box: PeriodicBox) -> dict[str, tuple[np.ndarray, float]]:
        umax = np.abs(u0).reshape(len(params), -1).max(axis=1)
        return {"cfl": (2.0 * umax * max(box.kappa_max), self.cfl)}

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        w = box.to_spectral(0.5 * (u * u))
        flux_div = box.to_physical(box.derivative(w, 0) + box.derivative(w, 1))
        return p["nu"] * box.to_physical(box.laplacian(box.to_spectral(u))) - flux_div

    def pointwise_rhs(self, u_fn: PointFunction, x: torch.Tensor,
                      params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The right-hand side ``F[u] = ν Δu − u (u_x + u_y)`` of ``u_t = F[u]`` at points, for a field
        given as a function (a network): what sequential-in-time solvers such as
        :mod:`pde_lab.optim.teng` evolve. (The conservative and advective forms agree for a
        differentiable field.)

        Args:
            u_fn: ``(N, 2) -> (N, 1)`` with independent rows (see :mod:`pde_lab.pdes.poisson`).
            x: ``(N, 2)`` points of the periodic unit square.
            params: ``nu`` (default: the family's default).

        Returns:
            ``(N,)``.
        """
        if x.dim() != 2 or x.shape[1] != 2:
            raise UserError(f"burgers_2d pointwise_rhs needs points of shape (N, 2), got {tuple(x.shape)}")
        nu = self.param(params, "nu")
        u = u_fn(x)[:, 0]
        g = gradient(u_fn, x)
        return nu * laplacian(u_fn, x) - u * (g[:, 0] + g[:, 1])

    def settings(self) -> dict[str, Any]:
        return {
            "cfl": self.cfl,
            "resolution_rule": ("n_solver = n m, m in {2, 3, 4, 6, 8, ...}, smallest >= "
                                "3 ln(1/spectral_tol) (max u0 - min u0) / (4 pi^2 nu)"),
            "step_limits": "cfl: dt * 2 max|u0| kappa_max",
        }
