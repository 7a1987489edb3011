"""Gray–Scott reaction–diffusion on the periodic unit square (``gray_scott_2d``).

    u_t = D_u Δu − u v² + F (1 − u),        v_t = D_v Δv + u v² − (F + k) v

``u`` is fed at rate ``F`` and consumed by the autocatalytic reaction ``u + 2v → 3v``; ``v`` decays at
rate ``F + k``. Depending on ``(F, k)`` (Pearson 1993) a perturbation of the uniform state
``(u, v) = (1, 0)`` grows into self-replicating spots, labyrinthine stripes or spatio-temporal chaos.
The levels are those three regimes. The diffusivities keep Pearson's ratio ``D_u/D_v = 2`` but are
5× his (``D_u = 1e-4``, ``D_v = 5e-5`` on the unit square): the patterns are √5× larger (a few spots
or stripes across), so that a 128² solver grid resolves them to a Fourier tail of ~1e-6 (Pearson's
values need about 288², five times the cost). By ``t_final = 448`` the patterns are still
developing from the seeded patches — the dynamics a window task learns; raise ``t_final`` for
settled patterns. The default task is
autoregressive (``window`` 1 → 1), as for the Gray–Scott data of The Well (Ohana et al. 2024).

Initial state: the uniform state with patches of Pearson's perturbation ``(u, v) = (1/2, 1/4)``:
``s = (1 + tanh(σ (g − θ)))/2`` for a unit-RMS Gaussian random field ``g``, ``u0 = 1 − s/2``,
``v0 = s/4``.

Solver (:mod:`pde_lab.solvers.semilinear`), two components: ``L = diag(−D_u κ² − F, −D_v κ² − F − k)``
exactly, ``N = (−u v² + F, u v²)`` explicit and 2/3-dealiased. Per instance:

* solver resolution ``n_s = n · m``, ``m ∈ {2, 3, 4, 6, 8, …}``, the smallest with
  ``h_s = 1/n_s ≤ resolution_factor · √(D_v / (F + k))`` — the decay length of ``v`` away from a
  spot, the thinnest structure of the patterns (``resolution_factor = 0.35`` gives 128² for every
  level, with a Fourier tail at the 2/3 cut of 6e-7 … 6e-6 relative to the peak);
* step ``dt = Δt_out / 2^p``, the largest with ``dt · (F + k + v_b² + 2 u_b v_b) ≤ reaction_number``,
  ``u_b = max(1, max u0)``, ``v_b = max(0.5, max v0)`` (a bound on the reaction Jacobian's entries
  for the observed ranges of ``u, v``; ``reaction_number = 0.7`` gives ``dt = 0.4375``, see
  ``docs/pdes/gray_scott.md`` for the measured errors) and ``dt ≤ Δt_out / min_steps_per_interval``.

See ``docs/pdes/gray_scott.md`` for the regimes and the verification numbers.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import check_positive
from ..grids import CartesianGrid
from ..solvers.semilinear import NonlinearTerm, PeriodicBox, solver_size
from . import PDES
from .base import BoundaryCondition, FieldSpec, Level, Parameter, Task
from .periodic_semilinear import PeriodicSemilinearPDE, normalized_grf

__all__ = ["GrayScott2D", "uniform_steady_states"]


def uniform_steady_states(F: float, k: float) -> list[tuple[float, float]]:
    """The spatially uniform steady states ``(u, v)`` of Gray–Scott for feed ``F`` and kill ``k``.

    Always ``(1, 0)``; when ``F ≥ 4 (F + k)²`` also ``v = (F ± √(F² − 4F(F + k)²)) / (2(F + k))``,
    ``u = (F + k)/v`` (from ``u v² = (F + k) v`` and ``F(1 − u) = u v²``).
    """
    out = [(1.0, 0.0)]
    disc = F * F - 4.0 * F * (F + k) ** 2
    if disc >= 0 and F > 0:
        for sign in (1.0, -1.0):
            v = (F + sign * math.sqrt(disc)) / (2.0 * (F + k))
            out.append(((F + k) / v, v))
    return out


@PDES.register("gray_scott_2d")
class GrayScott2D(PeriodicSemilinearPDE):
    """Gray–Scott reaction–diffusion on ``[0, 1)²`` periodic; fields ``u`` (feed) and ``v`` (activator).

    Args: see :class:`pde_lab.pdes.periodic_semilinear.PeriodicSemilinearPDE`, plus
        reaction_number: bound on ``dt`` times the reaction rate estimate.
        resolution_factor: solver spacing over the ``v`` decay length ``√(D_v/(F + k))``.
    """

    name = "gray_scott_2d"
    description = "Gray-Scott reaction-diffusion patterns (spots, stripes, chaos), 2D periodic"
    equation = ("u_t = D_u Lap(u) - u v^2 + F (1 - u),  v_t = D_v Lap(v) + u v^2 - (F + k) v,  "
                "(x, y) in [0, 1)^2 periodic,  0 < t <= t_final")
    dim = 2
    components = ("u", "v")
    parameters = (
        Parameter("F", 0.03, "1/T", "feed rate"),
        Parameter("k", 0.062, "1/T", "kill rate (v decays at F + k)"),
        Parameter("D_u", 1e-4, "L^2/T", "diffusivity of u (domain length L = 1)"),
        Parameter("D_v", 5e-5, "L^2/T", "diffusivity of v"),
        Parameter("t_final", 448.0, "T", "final time; snapshots at n_snapshots equally spaced times in [0, t_final]"),
        Parameter("ic_alpha", 3.0, "1", "GRF smoothness exponent of the field g behind the initial patches"),
        Parameter("ic_tau", 30.0, "1/L", "GRF inverse length scale of g (patch size ~ 1/tau)"),
        Parameter("ic_threshold", 1.2, "1", "theta: patches where the unit-RMS field g exceeds theta"),
        Parameter("ic_steepness", 2.0, "1", "sigma: steepness of the patch edges, s = (1 + tanh(sigma (g - theta)))/2"),
    )
    fields = (
        FieldSpec("u", "solution", time_varying=True, units="1",
                  description="feed (substrate) concentration; frame 0 is the initial state"),
        FieldSpec("v", "solution", time_varying=True, units="1",
                  description="activator (autocatalyst) concentration; frame 0 is the initial state"),
    )
    boundary_conditions = (BoundaryCondition("xy_periodic", "periodic", ("x", "y"), ("u", "v")),)
    levels = {
        "easy": Level("easy", {"F": (0.028, 0.032), "k": (0.061, 0.063)},
                      description="spots: F 0.028-0.032, k 0.061-0.063 (Pearson's lambda/kappa region); "
                                  "isolated self-replicating spots that settle into a steady array"),
        "medium": Level("medium", {"F": (0.028, 0.031), "k": (0.056, 0.058)},
                        description="stripes: F 0.028-0.031, k 0.056-0.058; labyrinthine stripes (maze), slowly evolving"),
        "hard": Level("hard", {"F": (0.022, 0.026), "k": (0.050, 0.052)},
                      description="chaos: F 0.022-0.026, k 0.050-0.052; spatio-temporal chaos, waves and splitting spots"),
    }
    solver = "pseudo-spectral ETDRK4"
    default_resolution = 64
    default_task = Task("window", 1, 1)
    n_snapshots = 33
    default_min_steps = 8
    positive_params = ("D_u", "D_v", "t_final")
    default_max_solver_resolution = 1024

    def __init__(self, reaction_number: float = 0.7, resolution_factor: float = 0.35, **kwargs: Any):
        super().__init__(**kwargs)
        self.reaction_number = float(check_positive("reaction_number", reaction_number))
        self.resolution_factor = float(check_positive("resolution_factor", resolution_factor))

    def check_params(self, params: Mapping[str, float]) -> str | None:
        message = super().check_params(params)
        if message:
            return message
        for name in ("F", "k"):
            if not (params[name] >= 0 and np.isfinite(params[name])):
                return f"{name} must be non-negative and finite, got {params[name]!r}"
        return None

    def initial_state(self, params: Mapping[str, float], rng: np.random.Generator,
                      grid: CartesianGrid) -> dict[str, np.ndarray]:
        g = normalized_grf(rng, grid, params["ic_alpha"], params["ic_tau"], 1.0)
        s = 0.5 * (1.0 + np.tanh(params["ic_steepness"] * (g - params["ic_threshold"])))
        return {"u": 1.0 - 0.5 * s, "v": 0.25 * s}

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``Da = (F + k) L² / D_v`` (reaction over diffusion of ``v`` at the domain scale, ``L = 1``) and
        ``diffusivity_ratio = D_u / D_v``."""
        return {"Da": float((params["F"] + params["k"]) / params["D_v"]),
                "diffusivity_ratio": float(params["D_u"] / params["D_v"])}

    def solver_resolution(self, params: Mapping[str, float], u0: np.ndarray, n: int) -> int:
        ell = math.sqrt(params["D_v"] / max(params["F"] + params["k"], 1e-12))
        return solver_size(n, 1.0 / (self.resolution_factor * ell))

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        lu = -p["D_u"] * box.k2 - p["F"]
        lv = -p["D_v"] * box.k2 - (p["F"] + p["k"])
        return torch.cat([lu, lv], dim=1)

    def nonlinear(self) -> NonlinearTerm:
        def factory(box: PeriodicBox, cf):
            feed = cf["F"]

            def term(v: torch.Tensor) -> torch.Tensor:
                w = box.to_physical(v)
                a, b = w[:, 0:1], w[:, 1:2]
                r = a * b * b
                return box.to_spectral(torch.cat([feed - r, r], dim=1))
            return term
        return factory

    def step_limits(self, params: Sequence[Mapping[str, float]], u0: np.ndarray,
                    box: PeriodicBox) -> dict[str, tuple[np.ndarray, float]]:
        flat = u0.reshape(len(params), 2, -1)
        ub = np.maximum(1.0, flat[:, 0].max(axis=1))
        vb = np.maximum(0.5, flat[:, 1].max(axis=1))
        fk = np.array([p["F"] + p["k"] for p in params])
        return {"reaction_number": (fk + vb**2 + 2.0 * ub * vb, self.reaction_number)}

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        lap = box.to_physical(box.laplacian(box.to_spectral(u)))
        a, b = u[:, :, 0:1], u[:, :, 1:2]
        r = a * b * b
        ru = p["D_u"] * lap[:, :, 0:1] - r + p["F"] * (1.0 - a)
        rv = p["D_v"] * lap[:, :, 1:2] + r - (p["F"] + p["k"]) * b
        return torch.cat([ru, rv], dim=2)

    def settings(self) -> dict[str, Any]:
        return {
            "reaction_number": self.reaction_number,
            "resolution_factor": self.resolution_factor,
            "resolution_rule": ("n_solver = n m, m in {2, 3, 4, 6, 8, ...}, smallest with "
                                "1/n_solver <= resolution_factor sqrt(D_v/(F + k))"),
            "step_limits": ("reaction_number: dt (F + k + v_b^2 + 2 u_b v_b), u_b = max(1, max u0), "
                            "v_b = max(0.5, max v0)"),
        }
