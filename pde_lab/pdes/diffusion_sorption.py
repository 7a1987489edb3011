"""Diffusion–sorption in 1D (PDEBench setting): a solute diffusing into a porous medium that sorbs it.

    u_t = D / R(u) · u_xx,   x ∈ [0, 1],  0 < t ≤ T,
    R(u) = 1 + ((1 − φ)/φ) ρ_s k n_f u^(n_f − 1)        (Freundlich isotherm  s = k u^(n_f)),
    u(0, t) = 1,   u(1, t) = −D u_x(1, t),   u(x, 0) = u_init.

``u`` is the dissolved concentration, ``φ`` the porosity, ``ρ_s`` the grain density, ``k`` and ``n_f``
the Freundlich parameters. PDEBench (Takamoto et al. 2022) uses ``D = 5e-4``, ``φ = 0.29``,
``ρ_s = 2880``, ``k = 3.5e-4``, ``n_f = 0.874``, ``T = 500`` with 101 snapshots on 1024 cells, and a
constant random initial concentration ``u_init ~ U(0, 0.2)`` (its generator; level ``pdebench``).

Two details follow PDEBench's generator rather than its paper:

* Regularisation. ``u^(n_f − 1)`` is singular at ``u = 0`` for ``n_f < 1``; PDEBench evaluates
  ``(u + 1e-6)^(n_f − 1)``. We do the same with ``u`` clipped at 0 first (so that an undershoot of the
  integrator cannot produce NaN): ``R(u) = 1 + β k n_f (max(u, 0) + ε)^(n_f − 1)``, ``β = (1 − φ)ρ_s/φ``,
  ``ε = 1e-6``. Then ``R = dm/du`` with the stored mass ``m(u) = u + β k ((u + ε)^(n_f) − ε^(n_f))``
  (``u ≥ 0``), and ``∫ m(u) dx`` changes by the inflow minus the outflow: the balance the tests check.
  (``∫ R(u) u dx`` is the conserved quantity only when ``R`` is constant, ``n_f = 1``.)
* Outflow condition. The paper writes ``u(1, t) = D ∂x u(1, t)``; the generator sets the ghost value
  to ``D (u_{N−2} − u_{N−1})/Δx``, i.e. ``u = −D ∂x u``, the Robin condition "diffusive flux out equals
  ``u``" that keeps the problem well posed (the paper's sign admits a boundary mode growing like
  ``exp(t/(R D))``). We implement ``u + D ∂x u = 0`` at ``x = 1``.

The discretisation is ours (:mod:`pde_lab.solvers.method_of_lines`): cell-centred finite volumes
with the boundary values at the faces (PDEBench places the Dirichlet value a whole cell outside,
first-order at the boundary) and SciPy's BDF with the exact sparse Jacobian and tight tolerances
(PDEBench used explicit RK45).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..errors import SolverFailure, UserError, check_positive
from ..grids import CartesianGrid
from ..solvers.method_of_lines import RobinBoundary, solve_diffusion_mol
from . import PDES
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task, check_resolution

__all__ = ["DiffusionSorption", "retardation", "retardation_derivative", "sorbed_mass", "EPSILON"]

#: Regularisation of ``u^(n_f − 1)`` at ``u = 0``, as in PDEBench's generator.
EPSILON = 1e-6


def _beta_k(params: Mapping[str, Any]):
    phi = params["porosity"]
    return (1.0 - phi) / phi * params["rho_s"] * params["k_f"]


def retardation(u: float | np.ndarray | torch.Tensor,
                 params: Mapping[str, Any]) -> float | np.ndarray | torch.Tensor:
    """``R(u) = 1 + β k n_f (max(u, 0) + ε)^(n_f − 1)``; numpy or torch ``u`` of any shape (parameters
    scalars or broadcastable arrays); returns the broadcast shape, torch for torch ``u``."""
    n_f = params["n_f"]
    if isinstance(u, torch.Tensor):
        return 1.0 + _beta_k(params) * n_f * (u.clamp_min(0.0) + EPSILON) ** (n_f - 1.0)
    return 1.0 + _beta_k(params) * n_f * (np.maximum(u, 0.0) + EPSILON) ** (n_f - 1.0)


def retardation_derivative(u: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """``R'(u)`` (zero where ``u < 0``, where ``R`` is constant), numpy."""
    n_f = params["n_f"]
    d = _beta_k(params) * n_f * (n_f - 1.0) * (np.maximum(u, 0.0) + EPSILON) ** (n_f - 2.0)
    return np.where(u > 0.0, d, 0.0)


def sorbed_mass(u: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """Stored mass per volume of water ``m(u) = u + β k ((u⁺ + ε)^(n_f) − ε^(n_f))``, with ``m' = R``."""
    n_f = params["n_f"]
    up = np.maximum(u, 0.0)
    return u + _beta_k(params) * ((up + EPSILON) ** n_f - EPSILON**n_f)


def _level(name, d, k, n_f, description):
    fixed = {"porosity": (0.29, 0.29), "rho_s": (2880.0, 2880.0), "t_final": (500.0, 500.0)}
    return Level(name, {**fixed, "D": d, "k_f": k, "n_f": n_f, "u_init": (0.0, 0.2)},
                 log_uniform=frozenset({"D", "k_f"}) if d[0] < d[1] else frozenset(), description=description)


@PDES.register("diffusion_sorption")
class DiffusionSorption(PDE):
    """1D diffusion–sorption with a Freundlich isotherm (PDEBench setting) on ``[0, 1]``.

    Args (solver controls; the defaults are what datasets use):
        rtol, atol: BDF tolerances.
    """

    name = "diffusion_sorption"
    description = "1D diffusion-sorption with a Freundlich isotherm, Dirichlet inflow, Robin outflow (PDEBench)"
    equation = ("u_t = D/R(u) u_xx, R(u) = 1 + ((1-phi)/phi) rho_s k_f n_f u^(n_f-1), x in [0, 1]; "
                "u(0,t) = 1, u(1,t) = -D u_x(1,t), u(x,0) = u_init")
    parameters = (
        Parameter("D", 5e-4, "L^2/T", "effective diffusion coefficient"),
        Parameter("porosity", 0.29, "1", "porosity phi"),
        Parameter("rho_s", 2880.0, "M/L^3", "bulk (grain) density rho_s"),
        Parameter("k_f", 3.5e-4, "(L^3/M)^n_f", "Freundlich coefficient k"),
        Parameter("n_f", 0.874, "1", "Freundlich exponent"),
        Parameter("u_init", 0.0, "M/L^3", "initial concentration (uniform)"),
        Parameter("t_final", 500.0, "T", "final time; n_snapshots equally spaced snapshots in [0, t_final]"),
    )
    fields = (
        FieldSpec("u", "solution", time_varying=True, units="M/L^3",
                  description="dissolved concentration (cell values); frame 0 is the initial state"),
    )
    boundary_conditions = (
        BoundaryCondition("x_inflow", "dirichlet", ("x",), ("u",), 1.0),
        BoundaryCondition("x_outflow", "open", ("x",), ("u",), 0.0),
    )
    levels = {
        "pdebench": _level("pdebench", (5e-4, 5e-4), (3.5e-4, 3.5e-4), (0.874, 0.874),
                           "PDEBench: D = 5e-4, phi = 0.29, rho_s = 2880, k = 3.5e-4, n_f = 0.874, T = 500, "
                           "u_init ~ U(0, 0.2)"),
        "easy": _level("easy", (5e-4, 1e-3), (1.5e-4, 3.5e-4), (0.9, 1.0),
                       "weak, nearly linear sorption: n_f in [0.9, 1], k in [1.5e-4, 3.5e-4], D in [5e-4, 1e-3]"),
        "medium": _level("medium", (2.5e-4, 1e-3), (3.5e-4, 7e-4), (0.75, 0.9),
                         "PDEBench-like: n_f in [0.75, 0.9], k in [3.5e-4, 7e-4], D in [2.5e-4, 1e-3]"),
        "hard": _level("hard", (1e-4, 5e-4), (7e-4, 1.4e-3), (0.6, 0.75),
                       "strong, nonlinear sorption: n_f in [0.6, 0.75], k in [7e-4, 1.4e-3], D in [1e-4, 5e-4]"),
    }
    solver = "cell-centred finite volume + BDF (scipy)"
    default_resolution = 1024
    default_task = Task("window", 10, 1)
    n_snapshots: ClassVar[int] = 101

    def __init__(self, rtol: float = 1e-8, atol: float = 1e-10):
        self.rtol = float(check_positive("rtol", rtol))
        self.atol = float(check_positive("atol", atol))

    # ---- grid, sampling, dimensionless numbers -----------------------------------------------
    def grid(self, resolution: int) -> CartesianGrid:
        """``resolution`` cells on ``[0, 1]``, points at the cell centres."""
        return CartesianGrid(((0.0, 1.0),), (check_resolution(self.name, resolution),), (False,))

    def _check_grid(self, grid: CartesianGrid) -> None:
        if grid.dim != 1 or grid.periodic[0] or tuple(grid.bounds[0]) != (0.0, 1.0):
            raise UserError(f"diffusion-sorption is posed on [0, 1] (bounded): use DiffusionSorption().grid(n), got {grid}")

    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Parameters drawn from ``level`` using only ``rng``; the initial state is ``u_init`` everywhere.

        Returns:
            ``Instance(params, inputs={"u": (n,) float64})``.
        """
        self._check_grid(grid)
        params = self.draw_params(level, rng)
        return Instance(params=params, inputs={"u": np.full(grid.shape[0], params["u_init"])})

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``Fo = D T / (R(1) L²)``: Fourier number of the front at the inflow concentration (how far
        it penetrates, ``~ sqrt(Fo)``); ``R_inflow = R(1)``; ``R_ratio = R(0.01)/R(1)``: how much slower
        the dilute tip of the front moves than its body (1 for linear sorption)."""
        r1 = float(retardation(1.0, params))
        return {"Fo": params["D"] * params["t_final"] / r1, "R_inflow": r1,
                "R_ratio": float(retardation(0.01, params)) / r1}

    # ---- solver ------------------------------------------------------------------------------
    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """One BDF solve per instance on the CPU (``device`` is ignored: SciPy works on NumPy arrays).

        Returns:
            ``SolveResult`` with ``fields["u"]`` of shape ``(B, n_snapshots, n)`` float64 (frame 0 is
            ``u_init``), ``times`` ``(n_snapshots,)``, ``steps`` (BDF steps) and per instance
            ``nfev``, ``nlu`` and ``mass_balance_error`` = ``|Δ∫m(u) − (Q_in − Q_out)| / Q_in`` in
            ``per_sample``.

        Raises:
            UserError: bad parameters (non-positive ``D``, ``porosity`` outside (0, 1], ``n_f ≤ 0``,
                mixed ``t_final``).
            RuntimeError: the integrator failed; the message names the instance and its parameters.
        """
        self._check_grid(grid)
        if len(instances) == 0:
            raise UserError("DiffusionSorption.solve needs at least one instance")
        n = grid.shape[0]
        t_final = float(instances[0].params["t_final"])
        times = np.linspace(0.0, t_final, self.n_snapshots)
        out = np.empty((len(instances), self.n_snapshots, n))
        steps = np.zeros(len(instances), dtype=np.int64)
        nfev, nlu, balance = (np.zeros(len(instances)) for _ in range(3))
        h = 1.0 / n
        for i, inst in enumerate(instances):
            p = inst.params
            self._check_params(i, p, t_final)
            u0 = inst.field("u", (n,), i)
            try:
                sol = solve_diffusion_mol(
                    u0, times, 1.0, p["D"], lambda u, p=p: retardation(u, p),
                    lambda u, p=p: retardation_derivative(u, p), RobinBoundary(1.0), RobinBoundary(0.0, p["D"]),
                    rtol=self.rtol, atol=self.atol)
            except SolverFailure as err:
                raise SolverFailure(f"diffusion-sorption solve failed for instance {i} with parameters {p}: {err}") from err
            out[i] = sol.u
            steps[i], nfev[i], nlu[i] = sol.steps, sol.nfev, sol.nlu
            mass = h * sorbed_mass(sol.u, p).sum(axis=-1)
            flux = sol.inflow[-1] - sol.outflow[-1]
            balance[i] = abs(mass[-1] - mass[0] - flux) / max(abs(sol.inflow[-1]), 1e-300)
        settings: dict[str, Any] = {
            "scheme": "cell-centred finite volume (boundary values at the faces), method of lines",
            "time_integrator": "scipy.integrate.BDF (variable order 1-5), exact sparse Jacobian",
            "rtol": self.rtol,
            "atol": self.atol,
            "regularisation": f"R(u) = 1 + beta k n_f (max(u,0) + {EPSILON:g})^(n_f - 1)",
            "outflow": "u(1) = -D u_x(1) (PDEBench generator's sign)",
            "precision": "float64",
            "solve_device": "cpu",
        }
        per_sample = {"nfev": nfev, "nlu": nlu, "mass_balance_error": balance}
        return SolveResult(fields={"u": out}, times=times, steps=steps, settings=settings, per_sample=per_sample)

    @staticmethod
    def _check_params(i: int, p: Mapping[str, float], t_final: float) -> None:
        if float(p["t_final"]) != t_final:
            raise UserError(f"instances of one solve must share t_final: instance {i} has {p['t_final']!r}, "
                            f"instance 0 has {t_final!r}")
        check_positive("t_final", t_final)
        for name in ("D", "rho_s", "k_f", "n_f"):
            if not p[name] > 0:
                raise UserError(f"instance {i}: {name} must be positive, got {p[name]!r}")
        if not 0.0 < p["porosity"] <= 1.0:
            raise UserError(f"instance {i}: porosity must lie in (0, 1], got {p['porosity']!r}")

    # ---- residual ----------------------------------------------------------------------------
    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Residual ``R(u) u_t − ∂x(D ∂x u)`` of the solver's finite-volume scheme at the interior
        stored times.

        ``u_t`` is the second-order three-point difference of the stored frames (unequal spacing
        allowed); ``∂x(D ∂x u)`` is the scheme's flux divergence with its boundary conditions
        (the one of :func:`~pde_lab.solvers.method_of_lines.flux_divergence`). So on solver output it measures the
        time-difference error of the frames, and tends to zero as frames are added.

        Args:
            solution: ``{"u": (B, T, n)}`` numpy or torch (torch stays torch, differentiable).
            params: every parameter as a scalar or ``(B,)``; ``t_final`` is used if ``times`` is omitted.
            grid: the stored grid.
            times: ``(T,)``; default ``linspace(0, t_final, T)``.

        Returns:
            ``(B, T − 2, n)``, same array type as ``solution["u"]``.
        """
        self._check_grid(grid)
        u_in = solution["u"]
        as_numpy = not isinstance(u_in, torch.Tensor)
        u = torch.as_tensor(np.asarray(u_in, dtype=np.float64)) if as_numpy else u_in
        if u.dim() != 3 or u.shape[1] < 3:
            raise UserError(f"diffusion-sorption residual needs u of shape (B, T >= 3, n), got {tuple(u.shape)}")
        B, T, n = u.shape
        if times is None:
            times = np.linspace(0.0, float(np.asarray(params["t_final"]).reshape(-1)[0]), T)
        t = np.asarray(times, dtype=np.float64)
        h1, h2 = t[1:-1] - t[:-2], t[2:] - t[1:-1]
        w = lambda a: torch.as_tensor(a, dtype=u.dtype, device=u.device)[None, :, None]  # noqa: E731
        u_t = (w(-h2 / (h1 * (h1 + h2))) * u[:, :-2] + w((h2 - h1) / (h1 * h2)) * u[:, 1:-1]
               + w(h1 / (h2 * (h1 + h2))) * u[:, 2:])

        def per_sample(name):
            v = params.get(name, self.default_params()[name])
            v = v if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
            return torch.as_tensor(v, dtype=u.dtype, device=u.device).reshape(-1, 1, 1)

        p = {name: per_sample(name) for name in ("D", "porosity", "rho_s", "k_f", "n_f")}
        um = u[:, 1:-1]
        # The scheme of flux_divergence, written out because the Robin coefficient κ = D varies per
        # sample: D u_x on every face, the boundary faces through their half-cell conductances.
        h = 1.0 / n
        d = p["D"]
        grad = torch.cat([d * (2.0 / h) * (um[..., :1] - 1.0),
                          d * (um[..., 1:] - um[..., :-1]) / h,
                          d * (2.0 / (h + 2.0 * d)) * (0.0 - um[..., -1:])], dim=-1)
        r = retardation(um, p) * u_t - (grad[..., 1:] - grad[..., :-1]) / h
        return r.numpy() if as_numpy else r

    # ---- pointwise residual terms (physics-informed networks, hard constraints) --------------
    #: Network outputs, and the coordinates a network of ``(x, t)`` takes (in this order).
    pinn_fields: ClassVar[tuple[str, ...]] = ("u",)
    pinn_coordinates: ClassVar[tuple[str, ...]] = ("x", "t")

    def pinn_domain(self, params: Mapping[str, float]) -> tuple[tuple[float, float], ...]:
        """The space-time box ``((0, 1), (0, t_final))`` the collocation points fill."""
        return ((0.0, 1.0), (0.0, float(params["t_final"])))

    def hard_constraint_terms(self, params: Mapping[str, float]) -> list[tuple]:
        """The strong form of the problem as pointwise residual terms of the derivatives of ``u``.

        Each term is ``(name, face, jets, fn)``: ``face`` is ``None`` for interior points or
        ``(axis, side)`` for a face of :meth:`pinn_domain` (``side`` 0 = lower); ``jets`` names the
        values the term needs (``"u"``, ``"u_t"``, ``"u_x"``, ``"u_xx"``: derivatives with respect to
        the coordinates named by the letters); ``fn(jets, x, inputs) -> (P,)`` takes those values as
        ``(P,)`` tensors, the points ``x (P, 2)`` and the instance's input fields at the points
        (``inputs["u"]``: the initial concentration). The terms are, in physical units:

        * ``pde``: ``R(u) u_t − D u_xx`` (``R`` as in :func:`retardation`, with its clipping);
        * ``initial`` (``t = 0``): ``u − u_init``;
        * ``inflow`` (``x = 0``): ``u − 1``;
        * ``outflow`` (``x = 1``): ``u + D u_x`` (the solver's Robin condition).

        The PDE term scales like ``1/t_final`` against the others; callers weight it (e.g. by
        ``t_final``, i.e. time measured in units of ``t_final``).
        """
        d = float(params["D"])
        p = {k: float(params[k]) for k in ("porosity", "rho_s", "k_f", "n_f")}

        def pde(j, x, inputs):
            return retardation(j["u"], p) * j["u_t"] - d * j["u_xx"]

        def initial(j, x, inputs):
            return j["u"] - inputs["u"]

        def inflow(j, x, inputs):
            return j["u"] - 1.0

        def outflow(j, x, inputs):
            return j["u"] + d * j["u_x"]

        return [("pde", None, ("u", "u_t", "u_xx"), pde), ("initial", (1, 0), ("u",), initial),
                ("inflow", (0, 0), ("u",), inflow), ("outflow", (0, 1), ("u", "u_x"), outflow)]
