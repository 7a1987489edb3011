"""Kuramoto–Sivashinsky equation, periodic: ``u_t + u u_x + u_xx + u_xxxx = 0`` on ``[0, L)``
(``kuramoto_sivashinsky_1d``).

Modes with ``|κ| < 1`` grow, ``u_xxxx`` damps the short ones and ``u u_x`` moves energy between them:
the dynamics is spatio-temporally chaotic for ``L ≳ 20``, with about ``L/2π`` unstable modes and a
dimension of the attractor growing linearly in ``L``. ``L`` is the difficulty axis (levels: 22–32,
32–64, 64–128). The default task is autoregressive (``window`` 1 → 1), as in the neural-solver
studies of KS (e.g. Brandstetter et al. 2022, Lippe et al. 2023).

Stored coordinate: the grid is ``ξ ∈ [0, 1)`` for every ``L`` (``x = L ξ``), so that samples of
different ``L`` share one grid; ``L`` is stored as a parameter. Each sample starts from a random
Gaussian state, runs through a burn-in to ``t_burn`` (not stored) that lands it on the attractor,
and stores ``n_snapshots`` frames from ``t_burn`` to ``t_final``.

Solver (:mod:`pde_lab.solvers.semilinear`): in ``ξ``, ``L = κ²/L² − κ⁴/L⁴`` exactly (``κ = 2πm``) and
``N(u) = −(1/2L) ∂_ξ(u²)`` explicit and 2/3-dealiased. Per instance:

* solver resolution: the smallest ``n_s`` from ``{…, n/2, 3n/4, n, 2n, 3n, 4n, …}`` (powers of two and
  three halves of them) with ``κ_max = 2π⌊(n_s−1)/3⌋/L ≥ kappa_resolved`` (8 by default). On the
  attractor the spectrum falls to 1e-10 of its peak near ``κ ≈ 8`` for every ``L`` tested (22–128),
  so the rule scales the grid with ``L``. Stored frames are the solver's band-limited solution
  evaluated on the stored grid (striding or spectral interpolation, both exact).
* step ``dt = Δt / 2^p`` per interval, the largest with ``dt · U ≤ advection_number`` (``U = max(3,
  max|u0|)``, the attractor's amplitude; ETDRK4 stayed stable with ``dt = 1`` for ``L = 22…128``), and
  on the stored intervals ``dt ≤ Δt_out / min_steps_per_interval`` (16: ``dt = 1/32``, relative error
  ~1e-7 per unit time on the attractor against a 16× finer step).

See ``docs/pdes/kuramoto_sivashinsky.md`` for the verification numbers (observed ETDRK4 order 3.9).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import check_positive
from ..solvers.semilinear import NonlinearTerm, PeriodicBox, solver_size
from ..solvers.spectral import imaginary_factor, multiply_imaginary
from . import PDES
from .base import BoundaryCondition, FieldSpec, Level, Parameter, Task
from .periodic_semilinear import PeriodicSemilinearPDE

__all__ = ["KuramotoSivashinsky1D"]


@PDES.register("kuramoto_sivashinsky_1d")
class KuramotoSivashinsky1D(PeriodicSemilinearPDE):
    """Kuramoto–Sivashinsky ``u_t + u u_x + u_xx + u_xxxx = 0`` on ``[0, L)``, stored on ``ξ = x/L``.

    Args: see :class:`pde_lab.pdes.periodic_semilinear.PeriodicSemilinearPDE`, plus
        advection_number: bound on ``dt · max(3, max|u0|)``.
        kappa_resolved: wavenumber (in ``x`` units) the solver grid must retain.
    """

    name = "kuramoto_sivashinsky_1d"
    description = "Kuramoto-Sivashinsky chaos, 1D periodic, on the attractor after a burn-in"
    equation = ("u_t + u u_x + u_xx + u_xxxx = 0,  x = L xi in [0, L) periodic, xi the stored coordinate; "
                "stored for t_burn <= t <= t_final")
    dim = 1
    parameters = (
        Parameter("L", 22.0, "X", "domain length in the equation's own units (the stored grid is xi = x/L)"),
        Parameter("t_burn", 100.0, "T", "burn-in: the first stored frame is at t_burn"),
        Parameter("t_final", 150.0, "T", "last stored frame; n_snapshots equally spaced frames in [t_burn, t_final]"),
        Parameter("ic_alpha", 2.0, "1", "initial state GRF smoothness exponent (in xi)"),
        Parameter("ic_tau", 10.0, "1", "initial state GRF inverse length scale (in xi)"),
        Parameter("ic_amplitude", 1.0, "U", "RMS of the initial state"),
    )
    fields = (FieldSpec("u", "solution", time_varying=True, units="U",
                        description="KS field on the attractor (frames from t_burn on)"),)
    boundary_conditions = (BoundaryCondition("x_periodic", "periodic", ("x",), ("u",)),)
    levels = {
        "easy": Level("easy", {"L": (22.0, 32.0)}, log_uniform=frozenset({"L"}),
                      description="L in [22, 32] (log-uniform): 3-5 unstable modes, low-dimensional chaos"),
        "medium": Level("medium", {"L": (32.0, 64.0)}, log_uniform=frozenset({"L"}),
                        description="L in [32, 64]: 5-10 unstable modes"),
        "hard": Level("hard", {"L": (64.0, 128.0)}, log_uniform=frozenset({"L"}),
                      description="L in [64, 128]: 10-20 unstable modes, extensive chaos"),
    }
    solver = "pseudo-spectral ETDRK4"
    default_resolution = 256
    default_task = Task("window", 1, 1)
    n_snapshots = 101
    shared_params = ("t_burn", "t_final")
    default_min_steps = 16
    positive_params = ("L",)

    def __init__(self, advection_number: float = 1.0, kappa_resolved: float = 8.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.advection_number = float(check_positive("advection_number", advection_number))
        self.kappa_resolved = float(check_positive("kappa_resolved", kappa_resolved))

    def check_params(self, params: Mapping[str, float]) -> str | None:
        message = super().check_params(params)
        if message:
            return message
        if not 0 <= params["t_burn"] < params["t_final"]:
            return f"need 0 <= t_burn < t_final, got t_burn={params['t_burn']!r}, t_final={params['t_final']!r}"
        return None

    def output_times(self, params: Mapping[str, float]) -> np.ndarray:
        return np.linspace(float(params["t_burn"]), float(params["t_final"]), self.n_snapshots)

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``L / 2π``: the number of linearly unstable Fourier modes (growth rate ``κ² − κ⁴ > 0``)."""
        return {"unstable_modes": float(params["L"] / (2.0 * math.pi))}

    def solver_resolution(self, params: Mapping[str, float], u0: np.ndarray, n: int) -> int:
        # Retained modes are |m| <= ⌊(n_s − 1)/3⌋: that integer must reach the mode κ_res L/2π, so round it
        # up first (3 x + 1 points would keep only ⌊x⌋ modes, κ_max down to 7.92 at L = 24.6 and 50).
        mode = math.ceil(self.kappa_resolved * params["L"] / (2.0 * math.pi) * (1.0 - 1e-12))
        return solver_size(n, 3.0 * mode + 1.0, keep_output_modes=False)

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        q = box.k2 / (p["L"] * p["L"])
        return q - q * q

    def nonlinear(self) -> NonlinearTerm:
        def factory(box: PeriodicBox, cf):
            # −u u_x = −(1/2L) ∂_ξ(u²), the per-instance 1/L folded into the derivative factor.
            g = torch.where(box.mask, -0.5 * box.kappa[0], torch.zeros_like(box.kappa[0])) / cf["L"]
            factor = imaginary_factor(g)

            def term(v: torch.Tensor) -> torch.Tensor:
                u = box.to_physical(v)
                return multiply_imaginary(factor, box.to_spectral(u * u))
            return term
        return factory

    def step_limits(self, params: Sequence[Mapping[str, float]], u0: np.ndarray,
                    box: PeriodicBox) -> dict[str, tuple[np.ndarray, float]]:
        umax = np.maximum(3.0, np.abs(u0).reshape(len(params), -1).max(axis=1))
        return {"advection_number": (umax, self.advection_number)}

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        v = box.to_spectral(u)
        inv_l = 1.0 / p["L"]
        u_x = inv_l * box.to_physical(box.derivative(v, 0, 1))
        u_xx = inv_l**2 * box.to_physical(box.derivative(v, 0, 2))
        u_xxxx = inv_l**4 * box.to_physical(box.derivative(v, 0, 4))
        return -u * u_x - u_xx - u_xxxx

    def settings(self) -> dict[str, Any]:
        return {
            "advection_number": self.advection_number,
            "kappa_resolved": self.kappa_resolved,
            "resolution_rule": ("smallest n_solver in {2^j, 3 2^(j-1)} multiples/divisors of n with "
                                "2 pi floor((n_solver-1)/3)/L >= kappa_resolved"),
            "step_limits": "advection_number: dt * max(3, max|u0|); burn-in interval exempt from min_steps_per_interval",
            "output_sampling": "solver's band-limited solution evaluated on the stored grid",
        }
