"""Heat equation on the periodic unit interval or square: ``u_t = κ Δu`` (``heat_1d``, ``heat_2d``).

Each Fourier mode decays as ``exp(−κ|k|²t)``, and ETDRK4 with ``N = 0`` is the exact propagator
``v ← e^{L dt} v``: the solver takes one step per output interval and is exact to round-off for any
step (tested). Difficulty grows as ``κ`` falls (less smoothing before ``t_final``: the Fourier number
``Fo = κ t_final / L²`` is stored) and as the initial state roughens (smaller GRF exponent ``α``,
larger ``τ``). See ``docs/pdes/heat.md``.

PINNs see the initial-value problem in space-time (:mod:`pde_lab.pdes.space_time_pinn`): residual
``u_t − κ Δ_x u`` from :meth:`Heat.pointwise_rhs`, initial state ``Π_i sin(2π x_i)``, exact solution
``e^{−4π² d κ t} Π_i sin(2π x_i)``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ..errors import UserError
from ..solvers.semilinear import PeriodicBox
from . import PDES
from .base import BoundaryCondition, FieldSpec, Level, Parameter, Task
from .periodic_semilinear import PeriodicSemilinearPDE
from .poisson import PointFunction, laplacian
from .space_time_pinn import SpaceTimePINN

__all__ = ["Heat", "Heat1D", "Heat2D", "heat_solution"]


def heat_solution(u0: np.ndarray, kappa: float, t: float | np.ndarray, length: float = 1.0) -> np.ndarray:
    """Exact periodic heat solution of the trigonometric interpolant of ``u0``: mode ``k`` times
    ``exp(−κ|k|²t)``.

    Args:
        u0: ``(*space)`` samples on the periodic grid of period ``length`` per axis.
        kappa: diffusivity.
        t: time, scalar or ``(T,)``.

    Returns:
        ``(*space)`` for scalar ``t``, ``(T, *space)`` otherwise, float64.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    c = np.fft.fftn(u0)
    k2 = np.zeros(u0.shape)
    for i, n in enumerate(u0.shape):
        k = 2.0 * np.pi * np.fft.fftfreq(n, d=1.0 / n) / length
        shape = [1] * u0.ndim
        shape[i] = n
        k2 = k2 + (k**2).reshape(shape)
    tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
    out = np.stack([np.real(np.fft.ifftn(c * np.exp(-kappa * k2 * s))) for s in tt])
    return out[0] if np.ndim(t) == 0 else out


_IC_PARAMS = (
    Parameter("ic_alpha", 2.5, "1", "initial state GRF smoothness exponent: covariance (-Laplacian + tau^2 I)^(-alpha)"),
    Parameter("ic_tau", 5.0, "1/L", "initial state GRF inverse length scale: spectrum flat up to |k| ~ tau"),
    Parameter("ic_amplitude", 1.0, "U", "RMS of the initial state (each draw is rescaled to it)"),
)


class Heat(SpaceTimePINN, PeriodicSemilinearPDE):
    """Heat equation ``u_t = κ Δu`` on the periodic unit interval/square, random GRF initial state.

    Linear: the solver is exact (one exponential step per output interval). Registered as
    ``heat_1d`` (:class:`Heat1D`) and ``heat_2d`` (:class:`Heat2D`).
    """

    description = "Heat equation, periodic, random Gaussian initial state"
    parameters = (
        Parameter("kappa", 0.01, "L^2/T", "diffusivity (domain length L = 1, time unit T)"),
        Parameter("t_final", 1.0, "T", "final time; snapshots at n_snapshots equally spaced times in [0, t_final]"),
        *_IC_PARAMS,
    )
    fields = (FieldSpec("u", "solution", time_varying=True, units="U",
                        description="temperature (or concentration); frame 0 is the initial state"),)
    levels = {
        "easy": Level("easy", {"kappa": (0.01, 0.05), "ic_alpha": (2.5, 3.0), "ic_tau": (3.0, 6.0)},
                      log_uniform=frozenset({"kappa"}),
                      description="kappa in [0.01, 0.05] (log-uniform), smooth initial state: alpha 2.5-3, tau 3-6; Fo 0.01-0.05"),
        "medium": Level("medium", {"kappa": (0.002, 0.01), "ic_alpha": (2.0, 2.5), "ic_tau": (6.0, 12.0)},
                        log_uniform=frozenset({"kappa"}),
                        description="kappa in [0.002, 0.01] (log-uniform), alpha 2-2.5, tau 6-12; Fo 0.002-0.01"),
        "hard": Level("hard", {"kappa": (2e-4, 2e-3), "ic_alpha": (1.5, 2.0), "ic_tau": (12.0, 24.0)},
                      log_uniform=frozenset({"kappa"}),
                      description="kappa in [2e-4, 2e-3] (log-uniform), rough initial state: alpha 1.5-2, tau 12-24; Fo 2e-4-2e-3"),
    }
    solver = "Fourier spectral, exact exponential propagator (ETDRK4 with N = 0)"
    default_task = Task("one_shot", 1, 1)
    n_snapshots = 11
    linear = True
    positive_params = ("kappa", "t_final")

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Fourier number ``Fo = κ t_final / L²`` (``L = 1``) and ``Fo_ic = κ τ² t_final``, the decay
        exponent of the initial state's correlation scale ``1/τ``."""
        fo = params["kappa"] * params["t_final"]
        return {"Fo": float(fo), "Fo_ic": float(fo * params["ic_tau"] ** 2)}

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return -p["kappa"] * box.k2

    # ---- space-time PINNs (pde_lab.pdes.space_time_pinn) -----------------------------------------
    def exact_solution(self, x: torch.Tensor, params: Mapping[str, float] | None = None) -> torch.Tensor:
        """``e^{−4π² d κ t} Π_i sin(2π x_i)`` at space-time points ``(N, d + 1)``; returns ``(N, 1)``."""
        kappa = self.param(params, "kappa")
        space = torch.sin(2.0 * np.pi * x[:, : self.dim]).prod(dim=1)
        return (torch.exp(-4.0 * np.pi**2 * self.dim * kappa * x[:, self.dim]) * space)[:, None]

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return p["kappa"] * box.to_physical(box.laplacian(box.to_spectral(u)))

    def settings(self) -> dict[str, Any]:
        return {"time_step_rule": "one exact exponential step e^{-kappa |k|^2 dt_out} per output interval"}

    def pointwise_rhs(self, u_fn: PointFunction, x: torch.Tensor,
                      params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The right-hand side ``F[u] = κ Δu`` of ``u_t = F[u]`` at points, for a field given as a function
        (a network): what sequential-in-time solvers such as :mod:`pde_lab.optim.teng` evolve.

        Args:
            u_fn: ``(N, dim) -> (N, 1)`` with independent rows (see :mod:`pde_lab.pdes.poisson`).
            x: ``(N, dim)`` points of the periodic unit box.
            params: ``kappa`` (default: the family's default).

        Returns:
            ``(N,)``.
        """
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise UserError(f"{self.name} pointwise_rhs needs points of shape (N, {self.dim}), got {tuple(x.shape)}")
        kappa = self.param(params, "kappa")
        return kappa * laplacian(u_fn, x)


@PDES.register("heat_1d")
class Heat1D(Heat):
    __doc__ = Heat.__doc__
    name = "heat_1d"
    dim = 1
    equation = "u_t = kappa u_xx,  x in [0, 1) periodic,  0 < t <= t_final"
    boundary_conditions = (BoundaryCondition("x_periodic", "periodic", ("x",), ("u",)),)
    default_resolution = 256


@PDES.register("heat_2d")
class Heat2D(Heat):
    __doc__ = Heat.__doc__
    name = "heat_2d"
    dim = 2
    equation = "u_t = kappa (u_xx + u_yy),  (x, y) in [0, 1)^2 periodic,  0 < t <= t_final"
    boundary_conditions = (BoundaryCondition("xy_periodic", "periodic", ("x", "y"), ("u",)),)
    default_resolution = 64
