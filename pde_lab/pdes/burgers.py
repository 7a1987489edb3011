"""Viscous Burgers equation in 1D, periodic: ``u_t + (u²/2)_x = ν u_xx`` on ``[0, 1)``.

This is the setting of the FNO Burgers benchmark (Li et al. 2021): ``u0 ~ N(0, 625(−Δ + 25 I)^(−2))``,
``ν = 0.1``, learn ``u0 ↦ u(·, 1)``. Level ``fno`` reproduces it; ``easy``/``medium``/``hard`` lower the
viscosity and widen the initial condition's spectrum (see ``docs/pdes/burgers.md``).

Solver: Fourier pseudo-spectral in space with the 2/3 rule, ETDRK4 in time
(:mod:`pde_lab.solvers.spectral`), the viscous term integrated exactly. Per instance the solver
picks

* a resolution ``n_s = n · 2^j`` (``n`` the stored resolution, ``j ≥ 1``) fine enough for the viscous
  shock: a shock of jump ``ΔU`` has the profile ``tanh(ΔU x / 4ν)``, whose Fourier coefficients decay
  like ``exp(−2πν|κ|/ΔU)``; requiring that factor to be below ``spectral_tol`` at the largest retained
  wavenumber ``κ_max = 2π n_s/3`` gives ``n_s ≥ 3 ln(1/tol) ΔU / (4π² ν)``, with ``ΔU ≤ max u0 − min u0``
  (maximum principle). ``j ≥ 1`` keeps every mode of the stored initial condition below the 2/3 cut.
* a step ``dt ≤ cfl / (max|u0| κ_max)`` (advective CFL of the explicitly treated nonlinearity;
  ``max|u|`` never grows) and ``dt ≤ Δt_out / min_steps_per_interval``, rounded down so that each output
  interval ``Δt_out`` takes a power-of-two number of steps.

Instances with the same (steps per interval, solver resolution) are solved together as one batch;
every operation acts on each batch member alone, so an instance's result does not depend on its
batch-mates (tested bit for bit). The stored trajectory is every ``n_s/n``-th point of the fine one,
as in the FNO data.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..errors import SolverFailure, UserError, check_integer, check_positive
from ..grids import CartesianGrid
from ..random_fields import gaussian_random_field
from ..solvers.spectral import (NonFiniteError, dealias_mask, etdrk4_solve, imaginary_factor, multiply_imaginary,
                                wavenumbers)
from . import PDES
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task, check_resolution
from .poisson import PointFunction, gradient, laplacian
from .space_time_pinn import SpaceTimePINN

__all__ = ["Burgers", "cole_hopf_solution", "burgers_etdrk4"]


def cole_hopf_solution(
    x: np.ndarray,
    t: float | np.ndarray,
    nu: float,
    amplitudes: Sequence[float],
    phases: Sequence[float] | None = None,
    a0: float = 1.0,
) -> np.ndarray:
    """Exact periodic solution of ``u_t + u u_x = ν u_xx`` on ``[0, 1)`` by the Cole–Hopf transform.

    ``u = −2ν φ_x / φ`` where ``φ = a0 + Σ_k a_k e^{−ν(2πk)² t} cos(2πk x + c_k)`` (``k = 1 … K``) solves
    the heat equation ``φ_t = ν φ_xx``; ``a0 > Σ|a_k|`` keeps ``φ`` positive.

    Args:
        x: points, shape ``(n,)``.
        t: a time or times, scalar or shape ``(T,)``.
        nu: viscosity.
        amplitudes: ``a_k`` for ``k = 1 … K``.
        phases: ``c_k``; zeros if omitted.
        a0: the constant term.

    Returns:
        float64 array of shape ``(n,)`` for scalar ``t``, ``(T, n)`` otherwise.
    """
    a = np.asarray(amplitudes, dtype=np.float64)
    c = np.zeros_like(a) if phases is None else np.asarray(phases, dtype=np.float64)
    if a.shape != c.shape or a.ndim != 1:
        raise ValueError("amplitudes and phases need the same 1D shape")
    if not a0 > np.abs(a).sum():
        raise ValueError(f"a0 = {a0} must exceed Σ|a_k| = {np.abs(a).sum()} for φ to stay positive")
    x = np.asarray(x, dtype=np.float64)
    tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
    kappa = 2.0 * np.pi * np.arange(1, a.size + 1)
    decay = a[None, :] * np.exp(-nu * kappa[None, :] ** 2 * tt[:, None])          # (T, K)
    arg = kappa[:, None] * x[None, :] + c[:, None]                                  # (K, n)
    phi = a0 + decay @ np.cos(arg)                                                  # (T, n)
    phi_x = -(decay * kappa[None, :]) @ np.sin(arg)
    u = -2.0 * nu * phi_x / phi
    return u[0] if np.ndim(t) == 0 else u


def burgers_etdrk4(
    u0: torch.Tensor,
    nu: torch.Tensor | Sequence[float],
    t_final: float,
    n_intervals: int,
    steps_per_interval: int,
    length: float = 1.0,
    n_contour: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Solve a batch of periodic Burgers problems with pseudo-spectral ETDRK4 on their own grid.

    ``û_t = −ν κ² û − (i κ/2) P F[(F⁻¹ û)²]`` with ``P`` the 2/3-rule mask (also applied to ``u0``).

    Args:
        u0: initial states, shape ``(B, n)``, on ``n`` equispaced points of ``[0, length)``.
        nu: viscosities, shape ``(B,)``; a tensor must be float64 (a float32 viscosity is off by
            ~1e-8 relative, which shows up as an error that no time step removes).
        t_final: final time.
        n_intervals: number of equal output intervals (``n_intervals + 1`` snapshots with ``t = 0``).
        steps_per_interval: ETDRK4 steps per output interval.
        length: period.
        n_contour: contour points of the ETDRK4 coefficients.

    Returns:
        ``(u, u_hat, steps)``: ``u`` of shape ``(B, n_intervals + 1, n)`` float64, its rfft ``u_hat`` of
        shape ``(B, n_intervals + 1, n//2 + 1)``, and the number of steps taken.

    Raises:
        NonFiniteError: with the batch indices of members that blew up.
    """
    n = u0.shape[-1]
    device = u0.device
    kappa = wavenumbers(n, length, device=device)
    mask = dealias_mask(n, device=device)
    # −(u²/2)_x = i·(−κ/2)·F[u²], with the 2/3 rule folded into the factor.
    grad_half = imaginary_factor(torch.where(mask, -0.5 * kappa, torch.zeros_like(kappa)))

    def nonlinear(v: torch.Tensor) -> torch.Tensor:
        u = torch.fft.irfft(v, n=n, dim=-1)
        return multiply_imaginary(grad_half, torch.fft.rfft(u * u, dim=-1))

    if isinstance(nu, torch.Tensor):
        if nu.dtype != torch.float64:
            raise ValueError(f"nu must be float64, got {nu.dtype}")
        nu = nu.to(device)
    else:
        nu = torch.as_tensor(np.asarray(nu, dtype=np.float64), device=device)
    linear = -nu.reshape(-1, 1) * kappa[None, :] ** 2
    v0 = torch.where(mask, torch.fft.rfft(u0.to(torch.float64), dim=-1), torch.zeros((), dtype=torch.complex128, device=device))
    dt = t_final / (n_intervals * steps_per_interval)
    save = [i * steps_per_interval for i in range(n_intervals + 1)]
    v_hat, steps = etdrk4_solve(v0, linear, nonlinear, dt, n_intervals * steps_per_interval, save, n_contour=n_contour)
    return torch.fft.irfft(v_hat, n=n, dim=-1), v_hat, steps


def _spectral_upsample(u: np.ndarray, n_fine: int) -> np.ndarray:
    """Trigonometric interpolation of ``(n,)`` periodic samples onto ``n_fine ≥ n`` points, ``(n_fine,)``.

    The Nyquist coefficient of an even ``n`` stands for ``cos(π n x)``, which on the finer grid is the
    sum of the modes ``±n/2``: it is halved so the interpolant is real and symmetric.
    """
    n = u.shape[-1]
    c = np.fft.rfft(u, axis=-1) / n
    if n % 2 == 0:
        c[..., -1] *= 0.5
    fine = np.zeros(u.shape[:-1] + (n_fine // 2 + 1,), dtype=np.complex128)
    fine[..., : c.shape[-1]] = c
    return np.fft.irfft(fine * n_fine, n=n_fine, axis=-1)


#: The Cole–Hopf solution of the space-time PINN problem: φ = 1 + 0.6 cos(2πx + 0.3) + 0.3 cos(4πx + 1),
#: a front steep enough to exercise the nonlinearity at ν = 0.05 (Re = u_rms/ν ≈ 7).
PINN_COLE_HOPF = dict(amplitudes=(0.6, 0.3), phases=(0.3, 1.0), a0=1.0)


@PDES.register("burgers")
class Burgers(SpaceTimePINN, PDE):
    """Viscous Burgers equation on the periodic unit interval (FNO benchmark setting).

    Args (all solver controls; the defaults are what datasets use):
        cfl: advective Courant number ``dt · max|u0| · κ_max``.
        min_steps_per_interval: lower bound on steps per output interval (accuracy for mild data).
        spectral_tol: target size of the shock's Fourier tail at the 2/3 cut, sets the resolution.
        max_solver_resolution: refuse (``UserError``) instances that would need more points.
        n_contour: contour points for the ETDRK4 coefficients.
    """

    name = "burgers"
    description = "Viscous Burgers equation, 1D periodic, random Gaussian initial state (FNO benchmark)"
    equation = "u_t + (u^2/2)_x = nu u_xx,  x in [0, 1) periodic,  0 < t <= t_final"
    parameters = (
        Parameter("nu", 0.1, "L^2/T", "kinematic viscosity (domain length L = 1, time unit T)"),
        Parameter("t_final", 1.0, "T", "final time; snapshots are stored at n_snapshots equally spaced times in [0, t_final]"),
        Parameter("ic_alpha", 2.0, "1", "initial state GRF smoothness exponent: covariance sigma^2 (-Laplacian + tau^2 I)^(-alpha)"),
        Parameter("ic_tau", 5.0, "1/L", "initial state GRF inverse length scale: spectrum flat up to |k| ~ tau"),
        Parameter("ic_sigma", 25.0, "L/T", "initial state GRF amplitude factor sigma"),
    )
    fields = (
        FieldSpec("u", "solution", time_varying=True, units="L/T", description="velocity; frame 0 is the initial state"),
    )
    boundary_conditions = (BoundaryCondition("x_periodic", "periodic", ("x",), ("u",)),)
    levels = {
        "fno": Level(
            "fno",
            {"nu": (0.1, 0.1), "t_final": (1.0, 1.0), "ic_alpha": (2.0, 2.0), "ic_tau": (5.0, 5.0), "ic_sigma": (25.0, 25.0)},
            description="exactly the FNO paper's data: nu = 0.1, u0 ~ N(0, 625(-Laplacian + 25 I)^(-2))",
        ),
        "easy": Level(
            "easy",
            {"nu": (0.05, 0.1), "ic_alpha": (2.0, 2.0), "ic_tau": (4.0, 6.0), "ic_sigma": (25.0, 25.0)},
            log_uniform=frozenset({"nu"}),
            description="FNO-like: nu in [0.05, 0.1] (log-uniform), tau in [4, 6]; smooth fronts, Re ~ 2-20",
        ),
        "medium": Level(
            "medium",
            {"nu": (0.01, 0.05), "ic_alpha": (2.0, 2.0), "ic_tau": (5.0, 8.0), "ic_sigma": (36.0, 36.0)},
            log_uniform=frozenset({"nu"}),
            description="nu in [0.01, 0.05] (log-uniform), tau in [5, 8]; steep fronts that merge, Re ~ 5-120",
        ),
        "hard": Level(
            "hard",
            {"nu": (0.002, 0.01), "ic_alpha": (2.0, 2.0), "ic_tau": (6.0, 10.0), "ic_sigma": (49.0, 49.0)},
            log_uniform=frozenset({"nu"}),
            description="nu in [0.002, 0.01] (log-uniform), tau in [6, 10]; several thin shocks, Re ~ 30-650",
        ),
    }
    solver = "pseudo-spectral ETDRK4"
    default_resolution = 256
    default_task = Task("one_shot", 1, 1)
    n_snapshots: ClassVar[int] = 11

    def __init__(
        self,
        cfl: float = 1.0,
        min_steps_per_interval: int = 8,
        spectral_tol: float = 1e-7,
        max_solver_resolution: int = 16384,
        n_contour: int = 64,
    ):
        self.cfl = float(check_positive("cfl", cfl))
        # Whole numbers, checked here: int() would make 0.5 a silent 0, and a negative resolution bound
        # or n_contour < 8 only failed later, inside solve.
        self.min_steps_per_interval = check_integer("min_steps_per_interval", min_steps_per_interval, 1)
        if not 0.0 < spectral_tol < 1.0:
            raise UserError(f"spectral_tol must lie in (0, 1), got {spectral_tol!r}")
        self.spectral_tol = float(spectral_tol)
        self.max_solver_resolution = check_integer("max_solver_resolution", max_solver_resolution, 4)
        self.n_contour = check_integer("n_contour", n_contour, 8)

    # ---- grid, sampling, dimensionless numbers -----------------------------------------------
    def grid(self, resolution: int) -> CartesianGrid:
        """Periodic grid of ``resolution`` points ``x_i = i/resolution`` on ``[0, 1)``."""
        return CartesianGrid(((0.0, 1.0),), (check_resolution(self.name, resolution),), (True,))

    def _check_grid(self, grid: CartesianGrid) -> None:
        if grid.dim != 1 or not grid.periodic[0] or tuple(grid.bounds[0]) != (0.0, 1.0):
            raise UserError(f"Burgers is posed on the periodic interval [0, 1): use Burgers().grid(n), got {grid}")

    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Parameters drawn from ``level``, then ``u0`` from the Gaussian random field, both from ``rng``.

        Returns:
            ``Instance(params, inputs={"u": u0})`` with ``u0`` of shape ``(n,)`` float64.
        """
        self._check_grid(grid)
        params = self.draw_params(level, rng)
        u0 = gaussian_random_field(rng, grid, alpha=params["ic_alpha"], tau=params["ic_tau"], sigma=params["ic_sigma"])
        return Instance(params=params, inputs={"u": u0})

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``Re = U L / ν`` with ``U`` the RMS of ``u0`` and ``L = 1`` the domain length."""
        u0 = np.asarray(inputs["u"], dtype=np.float64)
        return {"Re": float(np.sqrt(np.mean(u0**2)) / params["nu"])}

    # ---- solver ------------------------------------------------------------------------------
    def solver_plan(self, u0: np.ndarray, nu: float, t_final: float, n: int) -> tuple[int, int]:
        """Solver resolution and steps per output interval for one instance (see the module docstring).

        Args:
            u0: initial state, shape ``(n,)``.
            nu: viscosity.
            t_final: final time.
            n: stored resolution.

        Returns:
            ``(n_solver, steps_per_interval)``; ``n_solver = n · 2^j`` with ``j ≥ 1``.
        """
        jump = float(np.max(u0) - np.min(u0))
        needed = 3.0 * math.log(1.0 / self.spectral_tol) * jump / (4.0 * math.pi**2 * nu)
        n_solver = 2 * n
        while n_solver < needed:
            n_solver *= 2
        if n_solver > self.max_solver_resolution:
            raise UserError(
                f"Burgers instance with nu={nu:g} and u0 range {jump:.3g} needs solver resolution {n_solver} "
                f"> max_solver_resolution={self.max_solver_resolution}; raise it or use a larger nu"
            )
        kappa_max = 2.0 * math.pi * ((n_solver - 1) // 3)
        dt_out = t_final / (self.n_snapshots - 1)
        umax = float(np.max(np.abs(u0)))
        dt_max = dt_out / self.min_steps_per_interval
        if umax > 0:
            dt_max = min(dt_max, self.cfl / (umax * kappa_max))
        steps = 1
        while dt_out / steps > dt_max:
            steps *= 2
        return n_solver, steps

    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """Solve a batch with pseudo-spectral ETDRK4 (instances grouped by step count and resolution).

        Args:
            instances: each with ``inputs["u"]`` of shape ``(n,)``; all with the same ``t_final``.
            grid: the stored grid (``n`` points).
            device: torch device for the arithmetic.

        Returns:
            ``SolveResult`` with ``fields["u"]`` of shape ``(B, n_snapshots, n)`` float64 (frame 0 is the
            given ``u0``, bit for bit), ``times`` ``(n_snapshots,)``, ``steps`` ``(B,)`` and per-instance
            ``dt``, ``steps_per_interval``, ``solver_resolution``, ``spectral_tail`` in ``per_sample``.

        Raises:
            UserError: bad inputs (shape, non-finite, ``nu ≤ 0``, mixed ``t_final``).
            RuntimeError: an instance blew up; the message names its index and parameters.
        """
        self._check_grid(grid)
        if len(instances) == 0:
            raise UserError("Burgers.solve needs at least one instance")
        n = grid.shape[0]
        t_final = float(instances[0].params["t_final"])
        u0s, plans = [], []
        for i, inst in enumerate(instances):
            u0 = inst.field("u", (n,), i)
            nu = float(inst.params["nu"])
            check_positive(f"instance {i}: nu", nu)
            if float(inst.params["t_final"]) != t_final:
                raise UserError(f"instances of one solve must share t_final: instance {i} has "
                                f"{inst.params['t_final']!r}, instance 0 has {t_final!r}")
            check_positive("t_final", t_final)
            u0s.append(u0)
            plans.append(self.solver_plan(u0, nu, t_final, n))

        n_int = self.n_snapshots - 1
        out = np.empty((len(instances), self.n_snapshots, n), dtype=np.float64)
        tail = np.zeros(len(instances))
        dev = torch.device(device)
        for plan in sorted(set(plans)):
            n_solver, spi = plan
            members = [i for i, p in enumerate(plans) if p == plan]
            # Row by row: numpy's and torch's batched kernels may round an element differently
            # depending on its position in the batch.
            fine0 = np.stack([_spectral_upsample(u0s[i], n_solver) for i in members])
            nu = torch.tensor([float(instances[i].params["nu"]) for i in members], dtype=torch.float64, device=dev)
            try:
                u, u_hat, _ = burgers_etdrk4(torch.from_numpy(fine0).to(dev), nu, t_final, n_int, spi, 1.0, self.n_contour)
            except NonFiniteError as err:
                i = members[err.members[0]]
                raise SolverFailure(
                    f"Burgers solve blew up (NaN/inf by step {err.step}) for instance {i} with parameters "
                    f"{instances[i].params}; solver resolution {n_solver}, dt = {t_final / (n_int * spi):.3e}"
                ) from err
            out[members] = u[:, :, :: n_solver // n].cpu().numpy()
            tail[members] = [_spectral_tail(u_hat[j, 1:]) for j in range(len(members))]
        out[:, 0] = np.stack(u0s)
        steps = np.array([spi * n_int for _, spi in plans], dtype=np.int64)
        settings: dict[str, Any] = {
            "scheme": "Fourier pseudo-spectral, ETDRK4 (Cox-Matthews), Kassam-Trefethen contour coefficients",
            "dealiasing": "2/3 rule (modes 3|m| < n_solver kept), also applied to u0",
            "precision": "float64",
            "n_contour": self.n_contour,
            "time_step_rule": (
                "dt = dt_out / 2^p, the largest with dt <= cfl/(max|u0| kappa_max) and "
                "dt <= dt_out/min_steps_per_interval"
            ),
            "resolution_rule": "n_solver = n 2^j >= max(2n, 3 ln(1/spectral_tol) (max u0 - min u0)/(4 pi^2 nu))",
            "cfl": self.cfl,
            "min_steps_per_interval": self.min_steps_per_interval,
            "spectral_tol": self.spectral_tol,
            "output_sampling": "every (n_solver/n)-th point of the solver grid",
        }
        per_sample = {
            "dt": np.array([t_final / (n_int * spi) for _, spi in plans]),
            "steps_per_interval": np.array([spi for _, spi in plans], dtype=np.float64),
            "solver_resolution": np.array([ns for ns, _ in plans], dtype=np.float64),
            "spectral_tail": tail,
        }
        times = np.linspace(0.0, t_final, self.n_snapshots)
        return SolveResult(fields={"u": out}, times=times, steps=steps, settings=settings, per_sample=per_sample)

    dim = 1

    def exact_solution(self, x: torch.Tensor, params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The Cole–Hopf solution of :data:`PINN_COLE_HOPF` (see :func:`cole_hopf_solution`) at space-time
        points ``(N, 2)``: the space-time PINN problem's reference. Returns ``(N, 1)``."""
        nu = self.param(params, "nu")
        a = torch.tensor(PINN_COLE_HOPF["amplitudes"], dtype=x.dtype, device=x.device)
        c = torch.tensor(PINN_COLE_HOPF["phases"], dtype=x.dtype, device=x.device)
        kappa = 2.0 * math.pi * torch.arange(1, len(a) + 1, dtype=x.dtype, device=x.device)
        decay = a * torch.exp(-nu * kappa**2 * x[:, 1:2])                       # (N, K)
        arg = kappa * x[:, 0:1] + c                                              # (N, K)
        phi = PINN_COLE_HOPF["a0"] + (decay * torch.cos(arg)).sum(1)
        phi_x = -(decay * kappa * torch.sin(arg)).sum(1)
        return (-2.0 * nu * phi_x / phi)[:, None]

    def pointwise_rhs(self, u_fn: PointFunction, x: torch.Tensor,
                      params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The right-hand side ``F[u] = −u u_x + ν u_xx`` of ``u_t = F[u]`` at points, for a field given
        as a function (a network): what sequential-in-time solvers such as :mod:`pde_lab.optim.teng`
        evolve. (The conservative ``−(u²/2)_x`` and ``−u u_x`` agree for a differentiable field.)

        Args:
            u_fn: ``(N, 1) -> (N, 1)`` with independent rows (see :mod:`pde_lab.pdes.poisson`).
            x: ``(N, 1)`` points of the periodic interval ``[0, 1)``.
            params: ``nu`` (default: the family's default).

        Returns:
            ``(N,)``.
        """
        if x.dim() != 2 or x.shape[1] != 1:
            raise UserError(f"burgers pointwise_rhs needs points of shape (N, 1), got {tuple(x.shape)}")
        nu = self.param(params, "nu")
        u = u_fn(x)[:, 0]
        return -u * gradient(u_fn, x)[:, 0] + nu * laplacian(u_fn, x)

    # ---- residual ----------------------------------------------------------------------------
    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Discrete residual ``u_t + (u²/2)_x − ν u_xx`` at the interior stored times.

        ``u_t`` is the second-order three-point difference in time (valid for unequal spacing), the
        ``x``-derivatives are exact Fourier derivatives of the grid data (no dealiasing, Nyquist mode
        dropped from the first derivative). So the residual measures the time-discretisation error
        of the stored frames, ``O(Δt² u_ttt)`` (with 11 frames over ``t ∈ [0, 1]`` it dominates for
        smooth data), plus the spatial under-resolution of the stored grid (large where a shock is
        thinner than the grid spacing). A perfect stored solution gives a residual that tends to zero
        as frames are added.

        Args:
            solution: ``{"u": (B, T, n)}``, numpy or torch (torch stays torch and differentiable).
            params: ``"nu"`` a scalar or ``(B,)``; ``"t_final"`` (scalar) if ``times`` is omitted.
            grid: the stored grid.
            times: ``(T,)`` snapshot times; default ``linspace(0, t_final, T)``.

        Returns:
            ``(B, T − 2, n)`` residual, same array type as ``solution["u"]``.
        """
        self._check_grid(grid)
        u_in = solution["u"]
        as_numpy = not isinstance(u_in, torch.Tensor)
        u = torch.as_tensor(np.asarray(u_in, dtype=np.float64)) if as_numpy else u_in
        if u.dim() != 3 or u.shape[1] < 3:
            raise UserError(f"Burgers residual needs u of shape (B, T >= 3, n), got {tuple(u.shape)}")
        B, T, n = u.shape
        if times is None:
            t_final = float(np.asarray(params["t_final"]).reshape(-1)[0])
            times = np.linspace(0.0, t_final, T)
        t = np.asarray(times, dtype=np.float64)
        h1, h2 = t[1:-1] - t[:-2], t[2:] - t[1:-1]
        w = lambda a: torch.as_tensor(a, dtype=u.dtype, device=u.device)[None, :, None]  # noqa: E731
        u_t = (w(-h2 / (h1 * (h1 + h2))) * u[:, :-2] + w((h2 - h1) / (h1 * h2)) * u[:, 1:-1]
               + w(h1 / (h2 * (h1 + h2))) * u[:, 2:])
        nu = torch.as_tensor(np.asarray(params["nu"], dtype=np.float64) if not isinstance(params["nu"], torch.Tensor)
                             else params["nu"], dtype=u.dtype, device=u.device).reshape(-1, 1, 1)
        kappa = wavenumbers(n, grid.lengths[0], device=u.device).to(u.dtype)
        ik = 1j * kappa
        if n % 2 == 0:
            ik = ik.clone()
            ik[-1] = 0.0
        um = u[:, 1:-1]
        flux_x = torch.fft.irfft(ik * torch.fft.rfft(0.5 * um * um, dim=-1), n=n, dim=-1)
        u_xx = torch.fft.irfft(-(kappa**2) * torch.fft.rfft(um, dim=-1), n=n, dim=-1)
        r = u_t + flux_x - nu * u_xx
        return r.numpy() if as_numpy else r


def _spectral_tail(u_hat: torch.Tensor) -> float:
    """Resolution diagnostic of one trajectory: max over snapshots of (largest ``|û_m|`` among the top
    10 % of retained modes) / (largest ``|û_m|``, ``m ≥ 1``).

    Args:
        u_hat: rfft coefficients, shape ``(S, n//2 + 1)``, on an even ``n``-point grid (2/3-rule masked).
    """
    n_half = u_hat.shape[-1]
    k_max = (2 * (n_half - 1) - 1) // 3
    mag = u_hat.abs()
    top = mag[..., int(0.9 * k_max) + 1 : k_max + 1].amax(dim=-1)
    peak = mag[..., 1:].amax(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
    return float((top / peak).amax())
