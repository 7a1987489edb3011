"""Allen–Cahn equation, periodic: ``u_t = ν Δu + u − u³`` (``allen_cahn_1d``, ``allen_cahn_2d``).

A random initial state separates into the phases ``u = ±1`` within a few time units; the phases are
joined by interfaces of width ``~√(2ν)`` (the stationary kink is ``tanh(x/√(2ν))``), which then move
by curvature in 2D (coarsening) and interact only exponentially weakly in 1D. Difficulty grows as
``ν`` falls (thinner interfaces, more and smaller domains; the Cahn number ``Cn = √ν / L`` is stored)
and as the initial state roughens. The default task is ``u0 ↦ u(t_final)``, as in the Allen–Cahn
benchmark of the convolutional neural operator paper (Raonić et al. 2023).

Solver (:mod:`pde_lab.solvers.semilinear`): ``L = νΔ + 1`` exactly, ``N(u) = −u³`` explicit and
2/3-dealiased (the 2/3 rule is alias-free for quadratic terms only; for the cubic term the aliasing
error is of the size of the solution's Fourier tail at the cut, which the resolution rule keeps below
``spectral_tol``). Per instance:

* solver resolution ``n_s = n · m``, ``m ∈ {2, 3, 4, 6, 8, …}``, the smallest with
  ``n_s ≥ 3 ln(1/tol) L / (π² w)``, ``w = √(2ν)``: the kink ``tanh(x/w)`` has Fourier coefficients
  decaying like ``exp(−π w |κ| / 2)``, at most ``tol`` at the largest retained wavenumber
  ``κ_max = 2π n_s/(3L)``. ``m ≥ 2`` keeps every stored mode of the initial state.
* step ``dt = Δt_out / 2^p``, the largest with ``3 dt ≤ reaction_number`` (accuracy: ``3 = |d(u³)/du|``
  for ``|u| ≤ 1``, where the solution spends its time), ``dt · 3 max(1, max|u0|)² ≤
  stability_number`` (the explicit term's largest rate, bounded by the maximum principle, matters
  while values above 1 decay) and ``dt ≤ Δt_out / min_steps_per_interval``.

See ``docs/pdes/allen_cahn.md`` for the verification numbers.

PINNs (``allen_cahn_1d`` only) see the initial-value problem in space-time
(:mod:`pde_lab.pdes.space_time_pinn`): residual ``u_t − ν u_xx − u + u³`` from
:meth:`AllenCahn.pointwise_rhs`, the fixed initial state :data:`PINN_INITIAL_STATE` (no closed-form
solution), and as reference the ETDRK4 solver run from it on a fine grid.
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
from .poisson import PointFunction, laplacian
from .space_time_pinn import SpaceTimePINN

__all__ = ["AllenCahn", "AllenCahn1D", "AllenCahn2D", "kink_pair", "PINN_INITIAL_STATE"]

#: The initial state of the 1D space-time PINN problem, ``u₀(x) = Σ_k a_k sin(2π k x + φ_k)`` with
#: these amplitudes ``a_k`` and phases ``φ_k`` (``k = 1, 2, …``): a positive region on about
#: ``(−0.04, 0.59)`` with a shallow dip near ``x = 0.33`` and a negative one on ``(0.59, 0.96)``; within
#: ``t ≈ 3`` they saturate at ``±1`` and are joined by two fronts of width ``√(2ν)``.
PINN_INITIAL_STATE = dict(amplitudes=(0.5, 0.3), phases=(0.0, 1.0))


def kink_pair(x: np.ndarray, nu: float, a: float, b: float) -> np.ndarray:
    """Two opposite stationary kinks: ``u = tanh((x − a)/w) · tanh((b − x)/w)``, ``w = √(2ν)``.

    ``u ≈ +1`` on ``(a, b)`` and ``−1`` outside. Each factor is the exact kink ``tanh(x/√(2ν))`` of
    ``u_t = ν u_xx + u − u³``; the product is a steady state up to the kinks' interaction, of order
    ``exp(−2d/w)`` for a distance ``d`` between an interface and the other kink or the wrap-around.
    On the periodic unit interval take ``a = 1 − b`` so that the two ends match to that order.

    Args:
        x: points, shape ``(n,)``.
        nu: the diffusion coefficient ``ν``.
        a, b: interface positions, ``a < b``.

    Returns:
        ``(n,)`` float64.
    """
    w = math.sqrt(2.0 * nu)
    x = np.asarray(x, dtype=np.float64)
    return np.tanh((x - a) / w) * np.tanh((b - x) / w)


class AllenCahn(PeriodicSemilinearPDE):
    """Allen–Cahn ``u_t = ν Δu + u − u³`` on the periodic unit interval/square, random initial state.

    Args: see :class:`pde_lab.pdes.periodic_semilinear.PeriodicSemilinearPDE`, plus
        reaction_number: bound on ``3 dt`` (accuracy).
        stability_number: bound on ``dt · 3 max(1, max|u0|)²``.
    """

    description = "Allen-Cahn phase separation, periodic, random Gaussian initial state"
    parameters = (
        Parameter("nu", 1e-3, "L^2/T", "diffusion coefficient (squared interface width / 2; domain length L = 1)"),
        Parameter("t_final", 10.0, "T", "final time; snapshots at n_snapshots equally spaced times in [0, t_final]"),
        Parameter("ic_alpha", 2.0, "1", "initial state GRF smoothness exponent: covariance (-Laplacian + tau^2 I)^(-alpha)"),
        Parameter("ic_tau", 10.0, "1/L", "initial state GRF inverse length scale: spectrum flat up to |k| ~ tau"),
        Parameter("ic_amplitude", 0.5, "1", "RMS of the initial state (each draw is rescaled to it)"),
    )
    fields = (FieldSpec("u", "solution", time_varying=True, units="1",
                        description="order parameter (phase field), -1 and +1 in the pure phases; frame 0 is the initial state"),)
    solver = "pseudo-spectral ETDRK4"
    default_task = Task("one_shot", 1, 1)
    n_snapshots = 11
    default_min_steps = 8
    positive_params = ("nu", "t_final")
    default_max_solver_resolution = 4096

    def __init__(self, reaction_number: float = 0.1, stability_number: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.reaction_number = float(check_positive("reaction_number", reaction_number))
        self.stability_number = float(check_positive("stability_number", stability_number))

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Cahn number ``Cn = √ν / L`` (interface width over domain length, ``L = 1``)."""
        return {"Cn": float(math.sqrt(params["nu"]))}

    def solver_resolution(self, params: Mapping[str, float], u0: np.ndarray, n: int) -> int:
        w = math.sqrt(2.0 * params["nu"])
        return solver_size(n, 3.0 * math.log(1.0 / self.spectral_tol) / (math.pi**2 * w))

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return 1.0 - p["nu"] * box.k2

    def nonlinear(self) -> NonlinearTerm:
        def factory(box: PeriodicBox, cf):
            def term(v: torch.Tensor) -> torch.Tensor:
                u = box.to_physical(v)
                return box.to_spectral(-(u * u * u))
            return term
        return factory

    def step_limits(self, params: Sequence[Mapping[str, float]], u0: np.ndarray,
                    box: PeriodicBox) -> dict[str, tuple[np.ndarray, float]]:
        umax = np.maximum(1.0, np.abs(u0).reshape(len(params), -1).max(axis=1))
        return {"reaction_number": (np.full(len(params), 3.0), self.reaction_number),
                "stability_number": (3.0 * umax**2, self.stability_number)}

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return p["nu"] * box.to_physical(box.laplacian(box.to_spectral(u))) + u - u * u * u

    def pointwise_rhs(self, u_fn: PointFunction, x: torch.Tensor,
                      params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The right-hand side ``F[u] = ν Δu + u − u³`` of ``u_t = F[u]`` at points, for a field given as
        a function (a network): what sequential-in-time solvers such as :mod:`pde_lab.optim.teng` evolve.

        Args:
            u_fn: ``(N, dim) -> (N, 1)`` with independent rows (see :mod:`pde_lab.pdes.poisson`).
            x: ``(N, dim)`` points of the periodic unit box.
            params: ``nu`` (default: the family's default).

        Returns:
            ``(N,)``.
        """
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise UserError(f"{self.name} pointwise_rhs needs points of shape (N, {self.dim}), got {tuple(x.shape)}")
        nu = self.param(params, "nu")
        u = u_fn(x)[:, 0]
        return nu * laplacian(u_fn, x) + u - u * u * u

    def settings(self) -> dict[str, Any]:
        return {
            "reaction_number": self.reaction_number,
            "stability_number": self.stability_number,
            "resolution_rule": "n_solver = n m, m in {2, 3, 4, 6, 8, ...}, smallest >= 3 ln(1/spectral_tol) / (pi^2 sqrt(2 nu))",
            "step_limits": "reaction_number: 3 dt; stability_number: dt * 3 max(1, max|u0|)^2",
        }


@PDES.register("allen_cahn_1d")
class AllenCahn1D(SpaceTimePINN, AllenCahn):
    __doc__ = AllenCahn.__doc__
    name = "allen_cahn_1d"
    dim = 1
    equation = "u_t = nu u_xx + u - u^3,  x in [0, 1) periodic,  0 < t <= t_final"
    boundary_conditions = (BoundaryCondition("x_periodic", "periodic", ("x",), ("u",)),)
    default_resolution = 256
    levels = {
        "easy": Level("easy", {"nu": (1e-3, 3e-3), "ic_alpha": (2.0, 2.0), "ic_tau": (5.0, 10.0)},
                      log_uniform=frozenset({"nu"}), description="nu in [1e-3, 3e-3]: interfaces 0.045-0.08 wide, few domains"),
        "medium": Level("medium", {"nu": (2e-4, 1e-3), "ic_alpha": (2.0, 2.0), "ic_tau": (10.0, 20.0)},
                        log_uniform=frozenset({"nu"}), description="nu in [2e-4, 1e-3], tau 10-20"),
        "hard": Level("hard", {"nu": (3e-5, 2e-4), "ic_alpha": (1.5, 2.0), "ic_tau": (20.0, 40.0)},
                      log_uniform=frozenset({"nu"}), description="nu in [3e-5, 2e-4]: thin interfaces, many domains"),
    }

    def pinn_initial_state(self, x: torch.Tensor, params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The space-time PINN's initial state :data:`PINN_INITIAL_STATE` at points ``x: (N, 1)``;
        returns ``(N,)``. (Datasets draw random initial states instead.)"""
        if x.dim() != 2 or x.shape[1] != 1:
            raise UserError(f"allen_cahn_1d pinn_initial_state needs points of shape (N, 1), got {tuple(x.shape)}")
        u = torch.zeros_like(x[:, 0])
        for k, (a, phase) in enumerate(zip(PINN_INITIAL_STATE["amplitudes"], PINN_INITIAL_STATE["phases"]), start=1):
            u = u + a * torch.sin(2.0 * math.pi * k * x[:, 0] + phase)
        return u


@PDES.register("allen_cahn_2d")
class AllenCahn2D(AllenCahn):
    __doc__ = AllenCahn.__doc__
    name = "allen_cahn_2d"
    dim = 2
    equation = "u_t = nu (u_xx + u_yy) + u - u^3,  (x, y) in [0, 1)^2 periodic,  0 < t <= t_final"
    boundary_conditions = (BoundaryCondition("xy_periodic", "periodic", ("x", "y"), ("u",)),)
    default_resolution = 64
    default_max_solver_resolution = 1024
    levels = {
        "easy": Level("easy", {"nu": (1e-3, 3e-3), "ic_alpha": (2.0, 2.0), "ic_tau": (5.0, 10.0)},
                      log_uniform=frozenset({"nu"}), description="nu in [1e-3, 3e-3]: few large domains"),
        "medium": Level("medium", {"nu": (5e-4, 1e-3), "ic_alpha": (2.0, 2.0), "ic_tau": (10.0, 15.0)},
                        log_uniform=frozenset({"nu"}), description="nu in [5e-4, 1e-3], tau 10-15"),
        "hard": Level("hard", {"nu": (2e-4, 5e-4), "ic_alpha": (2.0, 2.0), "ic_tau": (15.0, 25.0)},
                      log_uniform=frozenset({"nu"}), description="nu in [2e-4, 5e-4]: thin interfaces, many domains"),
    }
