"""Linear advection on the periodic unit interval: ``u_t + a u_x = 0`` (``advection_1d``).

The exact solution translates the initial state, ``u(x, t) = u0(x − a t)``; in Fourier space mode
``κ`` turns by ``exp(−i a κ t)``. ETDRK4 with ``N = 0`` is that propagator, so the solver is exact to
round-off for any step and takes one step per output interval (tested). For the trigonometric
interpolant of grid data this is exact on the grid; the Nyquist mode of an even grid, which the
grid cannot move, is kept as ``cos(π n (x − a t))`` sampled on the grid (its ``sin`` part vanishes there).

Difficulty (as in PDEBench's advection data: speeds 0.1–4, 201 frames over ``t ∈ [0, 2]``): the speed, which sets
how far the profile moves between stored frames — the stored CFL-like number is
``cfl = |a| Δt_out / h`` (grid cells per frame) — and the roughness of the initial state. The
default task is autoregressive (``window`` 1 → 1). See ``docs/pdes/advection.md``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ..solvers.semilinear import PeriodicBox
from . import PDES
from .base import BoundaryCondition, FieldSpec, Level, Parameter, Task
from .periodic_semilinear import PeriodicSemilinearPDE

__all__ = ["Advection1D", "advection_solution"]


def advection_solution(u0: np.ndarray, speed: float, t: float | np.ndarray, length: float = 1.0) -> np.ndarray:
    """Exact translation of the trigonometric interpolant of ``u0`` by ``speed · t``.

    Mode ``m`` is multiplied by ``exp(−i 2π m speed t / length)``; an even grid's Nyquist coefficient
    by the cosine of that phase (the grid values of ``cos(π n (x − speed t))``).

    Args:
        u0: ``(n,)`` samples on ``x_i = i length / n``.
        t: scalar or ``(T,)``.

    Returns:
        ``(n,)`` for scalar ``t``, ``(T, n)`` otherwise, float64.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    n = u0.shape[-1]
    c = np.fft.rfft(u0)
    kappa = 2.0 * np.pi * np.arange(c.size) / length
    tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
    phase = np.exp(-1j * kappa[None, :] * speed * tt[:, None])
    if n % 2 == 0:
        phase[:, -1] = np.cos(kappa[-1] * speed * tt)
    out = np.fft.irfft(c[None, :] * phase, n=n, axis=-1)
    return out[0] if np.ndim(t) == 0 else out


@PDES.register("advection_1d")
class Advection1D(PeriodicSemilinearPDE):
    """Linear advection ``u_t + a u_x = 0`` on ``[0, 1)`` periodic, random GRF initial state."""

    name = "advection_1d"
    description = "Linear advection, 1D periodic, random Gaussian initial state (PDEBench-like speeds)"
    equation = "u_t + a u_x = 0,  x in [0, 1) periodic,  0 < t <= t_final"
    dim = 1
    parameters = (
        Parameter("speed", 0.5, "L/T", "advection speed a (domain length L = 1)"),
        Parameter("t_final", 2.0, "T", "final time; snapshots at n_snapshots equally spaced times in [0, t_final]"),
        Parameter("ic_alpha", 2.5, "1", "initial state GRF smoothness exponent: covariance (-Laplacian + tau^2 I)^(-alpha)"),
        Parameter("ic_tau", 5.0, "1/L", "initial state GRF inverse length scale: spectrum flat up to |k| ~ tau"),
        Parameter("ic_amplitude", 1.0, "U", "RMS of the initial state (each draw is rescaled to it)"),
    )
    fields = (FieldSpec("u", "solution", time_varying=True, units="U",
                        description="advected scalar; frame 0 is the initial state"),)
    boundary_conditions = (BoundaryCondition("x_periodic", "periodic", ("x",), ("u",)),)
    levels = {
        "easy": Level("easy", {"speed": (0.1, 0.4), "ic_alpha": (2.5, 3.0), "ic_tau": (3.0, 6.0)},
                      log_uniform=frozenset({"speed"}),
                      description="speed 0.1-0.4 (log-uniform), smooth initial state; 0.26-1 cells per frame at n = 256"),
        "medium": Level("medium", {"speed": (0.4, 1.5), "ic_alpha": (2.0, 2.5), "ic_tau": (6.0, 12.0)},
                        log_uniform=frozenset({"speed"}),
                        description="speed 0.4-1.5, alpha 2-2.5, tau 6-12; 1-3.8 cells per frame at n = 256"),
        "hard": Level("hard", {"speed": (1.5, 5.0), "ic_alpha": (1.5, 2.0), "ic_tau": (12.0, 24.0)},
                      log_uniform=frozenset({"speed"}),
                      description="speed 1.5-5, rough initial state: alpha 1.5-2, tau 12-24; 3.8-12.8 cells per frame at n = 256"),
    }
    solver = "Fourier spectral, exact exponential propagator (ETDRK4 with N = 0)"
    default_resolution = 256
    default_task = Task("window", 1, 1)
    n_snapshots = 201
    linear = True
    positive_params = ("t_final",)

    def check_params(self, params: Mapping[str, float]) -> str | None:
        if not np.isfinite(params["speed"]):
            return f"speed must be finite, got {params['speed']!r}"
        return super().check_params(params)

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``cfl = |a| Δt_out n / L``, grid cells travelled between stored frames, and
        ``traversals = |a| t_final / L``."""
        n = np.asarray(inputs["u"]).shape[-1]
        dt_out = params["t_final"] / (self.n_snapshots - 1)
        return {"cfl": float(abs(params["speed"]) * dt_out * n), "traversals": float(abs(params["speed"]) * params["t_final"])}

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # −a ∂_x: purely imaginary, −i a κ; the Nyquist mode keeps its phase, irfft takes its real part.
        g = -p["speed"] * box.kappa[0]
        return torch.complex(torch.zeros_like(g), g)

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return -p["speed"] * box.to_physical(box.derivative(box.to_spectral(u), 0, 1))

    def settings(self) -> dict[str, Any]:
        return {"time_step_rule": "one exact exponential step e^{-i a kappa dt_out} per output interval"}
