"""Fisher–KPP equation on the periodic unit interval: ``u_t = D u_xx + r u (1 − u)`` (``fisher_kpp_1d``).

Logistic growth with diffusion: regions with ``u > 0`` grow to ``u = 1`` and invade ``u = 0`` behind
fronts of width ``~√(D/r)`` moving at ``2√(Dr)`` (the pulled-front speed; steeper-than-critical data
such as the Ablowitz–Zeppetella wave move at their own speed, ``5√(Dr/6)`` for that wave — used to
verify the solver). Difficulty is the Damköhler number ``Da = r L²/D`` (sharper, slower fronts as it
grows) and the patchiness of the initial population (GRF correlation length ``1/τ``). The default task
is autoregressive (``window`` 1 → 1), as for PDEBench's 1D reaction–diffusion data.

Initial state: ``u0 = (1 + tanh(s (g − θ)))/2`` with ``g`` a unit-RMS Gaussian random field, so
``0 < u0 < 1``: occupied patches where ``g > θ``, with transitions of steepness ``s``. The solver
grid gets that same formula with ``g`` interpolated, i.e. ``atanh(2u0 − 1)`` interpolated and mapped
back (:meth:`FisherKPP1D.solver_initial_state`): ``u0``'s own trigonometric interpolant undershoots 0
where the stored grid does not resolve a patch edge, and logistic growth amplifies a negative
population (to blow-up on 16 points).

Solver (:mod:`pde_lab.solvers.semilinear`): ``L = −D κ² + r`` exactly, ``N(u) = −r u²`` explicit and
2/3-dealiased. Per instance:

* solver resolution ``n_s = n · m``, ``m ∈ {2, 3, 4, 6, 8, …}``, the smallest with
  ``2π⌊(n_s − 1)/3⌋ ≥ ln(1/tol) / (π w)``, ``w = √(D/r)`` (a front's Fourier coefficients decay like
  ``exp(−c w|κ|)`` with ``c ≥ π`` for the waves of this equation: ``π√6`` for the
  Ablowitz–Zeppetella wave, whose nearest complex singularity is ``π√6 w`` off the real axis) and
  with the initial state's spectral tail on that grid at most ``tol`` (the initial transitions of
  the harder levels are sharper than their fronts);
* step ``dt = Δt_out / 2^p``, the largest with ``dt · r max(1, |1 − 2 max u0|, |1 − 2 min u0|) ≤
  reaction_number`` (the explicit term's rate ``|r (1 − 2u)|``; ``0 ≤ u ≤ max(1, max u0)`` by the
  maximum principle) and ``dt ≤ Δt_out / min_steps_per_interval``.

See ``docs/pdes/fisher_kpp.md`` for the verification numbers.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import check_positive
from ..grids import CartesianGrid
from ..solvers.semilinear import NonlinearTerm, PeriodicBox, fourier_resample, solver_size, spectral_tail
from . import PDES
from .base import BoundaryCondition, FieldSpec, Level, Parameter, Task
from .periodic_semilinear import PeriodicSemilinearPDE, normalized_grf, resample_tanh_profile

__all__ = ["FisherKPP1D", "ablowitz_zeppetella"]


def ablowitz_zeppetella(x: np.ndarray, t: float | np.ndarray, D: float = 1.0, r: float = 1.0,
                        C: float = 1.0) -> np.ndarray:
    """The Ablowitz–Zeppetella travelling wave of ``u_t = D u_xx + r u(1 − u)``.

    ``u = [1 + C exp(√(r/6D) (x − c t))]^(−2)`` with ``c = 5 √(rD/6)``; for ``D = r = 1`` this is
    ``[1 + C exp((x − 5t/√6)/√6)]^(−2)``, speed ``5/√6``. ``u → 1`` as ``x → −∞``, ``u → 0`` as
    ``x → +∞``.

    Args:
        x: points, any shape.
        t: time, scalar or ``(T,)``.

    Returns:
        ``x.shape`` for scalar ``t``, ``(T, *x.shape)`` otherwise, float64.
    """
    x = np.asarray(x, dtype=np.float64)
    tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
    c = 5.0 * math.sqrt(r * D / 6.0)
    z = math.sqrt(r / (6.0 * D)) * (x[None] - c * tt.reshape((-1,) + (1,) * x.ndim))
    # exp overflows far ahead of the front, where u = 0 to every digit anyway.
    with np.errstate(over="ignore"):
        u = 1.0 / (1.0 + C * np.exp(z)) ** 2
    return u[0] if np.ndim(t) == 0 else u


@PDES.register("fisher_kpp_1d")
class FisherKPP1D(PeriodicSemilinearPDE):
    """Fisher–KPP ``u_t = D u_xx + r u(1 − u)`` on ``[0, 1)`` periodic, random patchy initial population.

    Args: see :class:`pde_lab.pdes.periodic_semilinear.PeriodicSemilinearPDE`, plus
        reaction_number: bound on ``dt · r max|1 − 2u|``.
    """

    name = "fisher_kpp_1d"
    description = "Fisher-KPP reaction-diffusion (logistic growth and invasion fronts), 1D periodic"
    equation = "u_t = D u_xx + r u (1 - u),  x in [0, 1) periodic,  0 < t <= t_final"
    dim = 1
    parameters = (
        Parameter("D", 1e-3, "L^2/T", "diffusion coefficient (domain length L = 1)"),
        Parameter("r", 1.0, "1/T", "logistic growth rate"),
        Parameter("t_final", 5.0, "T", "final time; snapshots at n_snapshots equally spaced times in [0, t_final]"),
        Parameter("ic_alpha", 3.0, "1", "GRF smoothness exponent of the field g behind the initial state"),
        Parameter("ic_tau", 8.0, "1/L", "GRF inverse length scale of g (more, smaller patches as it grows)"),
        Parameter("ic_threshold", 0.5, "1", "theta: u0 = (1 + tanh(s (g - theta)))/2, g of unit RMS"),
        Parameter("ic_steepness", 2.0, "1", "s: steepness of the initial transitions"),
    )
    fields = (FieldSpec("u", "solution", time_varying=True, units="1",
                        description="population density relative to the carrying capacity; frame 0 is the initial state"),)
    boundary_conditions = (BoundaryCondition("x_periodic", "periodic", ("x",), ("u",)),)
    levels = {
        "easy": Level("easy", {"D": (3e-3, 1e-2), "ic_tau": (4.0, 8.0)}, log_uniform=frozenset({"D"}),
                      description="D in [3e-3, 1e-2] (log-uniform), r = 1: Da 100-330, wide fast fronts, few patches"),
        "medium": Level("medium", {"D": (5e-4, 3e-3), "ic_tau": (8.0, 16.0)}, log_uniform=frozenset({"D"}),
                        description="D in [5e-4, 3e-3], r = 1: Da 330-2000, tau 8-16"),
        "hard": Level("hard", {"D": (1e-4, 5e-4), "ic_tau": (16.0, 32.0)}, log_uniform=frozenset({"D"}),
                      description="D in [1e-4, 5e-4], r = 1: Da 2000-10000, thin slow fronts, many patches"),
    }
    solver = "pseudo-spectral ETDRK4"
    default_resolution = 256
    default_task = Task("window", 1, 1)
    n_snapshots = 51
    default_min_steps = 8
    positive_params = ("D", "r", "t_final")

    def __init__(self, reaction_number: float = 0.05, **kwargs: Any):
        super().__init__(**kwargs)
        self.reaction_number = float(check_positive("reaction_number", reaction_number))

    def initial_state(self, params: Mapping[str, float], rng: np.random.Generator,
                      grid: CartesianGrid) -> dict[str, np.ndarray]:
        g = normalized_grf(rng, grid, params["ic_alpha"], params["ic_tau"], 1.0)
        return {"u": 0.5 * (1.0 + np.tanh(params["ic_steepness"] * (g - params["ic_threshold"])))}

    def solver_initial_state(self, u0: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """``u0`` ``(1, n)`` on the solver grid ``(1, shape[0])``, in ``[0, 1]`` whenever ``u0`` is.

        A state in ``[0, 1]`` goes through :func:`resample_tanh_profile`: for the drawn states,
        ``(1 + tanh z)/2`` with ``z = s (g − θ)``, that is the defining formula on the finer grid (4e-11
        from it in the test); any other state in ``[0, 1]`` (a user's step, say) gets a smooth
        interpolant through the same points that stays in ``[0, 1]``, which a band-limited state's
        trigonometric interpolant would match only to ~1e-8. A state outside ``[0, 1]`` (a population
        above capacity) is interpolated as it is.
        """
        if u0.min() < 0.0 or u0.max() > 1.0:
            return fourier_resample(u0, shape)
        return resample_tanh_profile(u0, shape)

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Damköhler number ``Da = r L² / D`` (``L = 1``): reaction over diffusion rate at the domain scale."""
        return {"Da": float(params["r"] / params["D"])}

    def solver_resolution(self, params: Mapping[str, float], u0: np.ndarray, n: int) -> int:
        n_s = self.front_resolution(params, n)
        # The initial transitions can be sharper than the fronts (harder levels, coarse stored grids):
        # refine until the initial state's tail meets the same tolerance. A state no grid resolves
        # (a step) stops at max_solver_resolution: its tail is a diagnostic, as the solution's is.
        while n_s <= self.max_solver_resolution and self._initial_tail(u0, n_s) > self.spectral_tol:
            finer = solver_size(n, n_s + 1)
            if finer > self.max_solver_resolution:
                break
            n_s = finer
        return n_s

    def front_resolution(self, params: Mapping[str, float], n: int) -> int:
        """The front rule alone: the smallest solver size ``n_s = n · m`` with
        ``2π⌊(n_s − 1)/3⌋ ≥ ln(1/tol) / (π √(D/r))``."""
        w = math.sqrt(params["D"] / params["r"])
        kappa_needed = math.log(1.0 / self.spectral_tol) / (math.pi * w)
        # The retained modes |m| <= ⌊(n_s − 1)/3⌋ must reach the mode κ/2π: round it up first.
        mode = math.ceil(kappa_needed / (2.0 * math.pi) * (1.0 - 1e-12))
        return solver_size(n, 3.0 * mode + 1.0)

    def _initial_tail(self, u0: np.ndarray, n_s: int) -> float:
        box = PeriodicBox((n_s,), (1.0,))
        v = box.dealias(box.to_spectral(torch.from_numpy(self.solver_initial_state(u0, (n_s,)))[None]))
        return float(spectral_tail(v, box)[0])

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return p["r"] - p["D"] * box.k2

    def nonlinear(self) -> NonlinearTerm:
        def factory(box: PeriodicBox, cf):
            r = cf["r"]

            def term(v: torch.Tensor) -> torch.Tensor:
                u = box.to_physical(v)
                return box.to_spectral(-r * u * u)
            return term
        return factory

    def step_limits(self, params: Sequence[Mapping[str, float]], u0: np.ndarray,
                    box: PeriodicBox) -> dict[str, tuple[np.ndarray, float]]:
        flat = u0.reshape(len(params), -1)
        worst = np.maximum(1.0, np.maximum(np.abs(1.0 - 2.0 * flat.max(axis=1)), np.abs(1.0 - 2.0 * flat.min(axis=1))))
        r = np.array([p["r"] for p in params])
        return {"reaction_number": (r * worst, self.reaction_number)}

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return p["D"] * box.to_physical(box.laplacian(box.to_spectral(u))) + p["r"] * u * (1.0 - u)

    def settings(self) -> dict[str, Any]:
        return {
            "reaction_number": self.reaction_number,
            "resolution_rule": ("n_solver = n m, m in {2, 3, 4, 6, 8, ...}, smallest with "
                                "2 pi floor((n_solver-1)/3) >= ln(1/spectral_tol)/(pi sqrt(D/r)) and the "
                                "initial state's spectral tail <= spectral_tol"),
            "initial_state": ("in [0, 1]: (1 + tanh z)/2 with z = atanh(2 u0 - 1) interpolated onto the solver "
                              "grid; otherwise u0 interpolated"),
            "step_limits": "reaction_number: dt * r max(1, |1 - 2 max u0|, |1 - 2 min u0|)",
        }
