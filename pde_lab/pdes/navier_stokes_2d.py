"""2D incompressible Navier–Stokes in vorticity form on the periodic unit square (FNO benchmark).

    ω_t + u·∇ω = ν Δω + f,   u = ∇^⊥ψ = (ψ_y, −ψ_x),   −Δψ = ω,   (x, y) ∈ [0, 1)²,

with ``f = A (sin 2π(x + y) + cos 2π(x + y))``, ``A = 0.1``, and a Gaussian random initial vorticity
``ω0 ~ N(0, σ²(−Δ + τ² I)^(−α))``. This is the setting of Li et al. (2021), "Fourier neural operator
for parametric PDEs": ``τ = 7``, ``α = 2.5``, ``ν ∈ {1e-3, 1e-4, 1e-5}`` up to ``T = 50, 30, 20``,
snapshots every time unit, stored at 64², solved on a finer grid. Levels ``fno_nu1e-3``,
``fno_nu1e-4``, ``fno_nu1e-5`` reproduce it; ``easy``/``medium``/``hard`` lower ``ν`` (log-uniform)
and widen the initial spectrum (see ``docs/pdes/navier_stokes_2d.md``).

On ``σ``: the FNO paper writes the covariance as ``7^{3/2}(−Δ + 49 I)^{−2.5}``; its generator sets the
amplitude factor ``σ = τ^{α−1} = 7^{1.5}`` (``τ^{α − d/2}``, which keeps the variance of ``ω0`` roughly
independent of ``τ`` and ``α``), and it draws the real and the imaginary part of each Fourier
coefficient with unit variance before taking the real part of the inverse FFT, which doubles the
variance of the nominal covariance. :func:`~pde_lab.random_fields.gaussian_random_field` has the
nominal covariance, so this module draws with ``σ = ic_scale · √2 · τ^{α−1}``: ``ic_scale = 1`` is
the distribution of the published data (tested: the sampled spectrum matches
``2 · 7³ (4π²|k|² + 49)^{−2.5}``), and levels that vary ``τ`` and ``α`` keep the FNO normalisation.

Solver: :mod:`pde_lab.solvers.vorticity` (pseudo-spectral, 2/3 dealiasing, ETDRK4, CFL step per
instance and output interval) on ``solver_factor`` times the stored resolution (256² for 64²); the
stored frames are every ``solver_factor``-th solver point, as the FNO data were subsampled. The
initial state is drawn on the stored grid and interpolated trigonometrically onto the solver grid
(all its modes lie below the 2/3 cut when ``solver_factor ≥ 2``), so frame 0 is the drawn field.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..errors import SolverFailure, UserError, check_integer, check_positive
from ..grids import CartesianGrid
from ..random_fields import gaussian_random_field
from ..solvers.spectral import wavenumbers
from ..solvers.vorticity import BlowUpError, solve_vorticity, spectral_upsample_2d, velocity_from_vorticity
# ``PDES`` is bound in ``pdes/__init__.py`` before that module imports this one.
from . import PDES
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task, check_resolution

__all__ = ["NavierStokes2D", "fno_forcing", "taylor_green_vorticity", "ic_sigma", "FNO_SIGMA"]


def ic_sigma(tau: float, alpha: float, scale: float = 1.0) -> float:
    """GRF amplitude ``σ = scale · √2 · τ^{α−1}`` of the initial vorticity (module docstring)."""
    return scale * math.sqrt(2.0) * tau ** (alpha - 1.0)


#: GRF amplitude that reproduces the FNO generator's initial-vorticity distribution (τ = 7, α = 2.5).
FNO_SIGMA = ic_sigma(7.0, 2.5)


def fno_forcing(x: np.ndarray, y: np.ndarray, amplitude: float = 0.1) -> np.ndarray:
    """The FNO forcing ``A (sin 2π(x + y) + cos 2π(x + y))`` at points ``x, y`` (any equal shapes)."""
    s = 2.0 * np.pi * (np.asarray(x, dtype=np.float64) + np.asarray(y, dtype=np.float64))
    return amplitude * (np.sin(s) + np.cos(s))


def taylor_green_vorticity(x: np.ndarray, y: np.ndarray, t: float | np.ndarray, nu: float, k: int = 1) -> np.ndarray:
    """Taylor–Green vortex ``ω = 2κ cos(κx) cos(κy) e^{−2νκ²t}``, ``κ = 2πk``: an exact unforced solution.

    ``ψ = cos(κx) cos(κy)/κ`` is an eigenfunction of the Laplacian, so ``u·∇ω = 0`` and each mode decays
    at its viscous rate ``ν|κ|² = 2νκ²``.

    Args:
        x, y: points, equal shapes ``(*s)``.
        t: a time (result ``(*s)``) or times ``(T,)`` (result ``(T, *s)``).
        nu: viscosity.
        k: integer wavenumber (periodic on the unit square).
    """
    kappa = 2.0 * np.pi * k
    shape = np.cos(kappa * np.asarray(x)) * np.cos(kappa * np.asarray(y)) * 2.0 * kappa
    decay = np.exp(-2.0 * nu * kappa**2 * np.asarray(t, dtype=np.float64))
    return decay * shape if np.ndim(t) == 0 else decay.reshape(-1, *([1] * shape.ndim)) * shape


def _level(name, nu, t_final, tau, alpha, scale=(1.0, 1.0), log_uniform=(), description=""):
    return Level(name, {"nu": nu, "t_final": (t_final, t_final), "ic_tau": tau, "ic_alpha": alpha,
                        "ic_scale": scale, "forcing_amplitude": (0.1, 0.1)},
                 log_uniform=frozenset(log_uniform), description=description)


@PDES.register("navier_stokes_2d")
class NavierStokes2D(PDE):
    """Forced 2D incompressible Navier–Stokes, vorticity form, periodic unit square (FNO benchmark).

    Args (solver controls; the defaults are what datasets use):
        solver_factor: solver points per stored point and axis (≥ 2; 4 gives 256² for 64²).
        cfl: Courant number ``dt κ_max max(|u| + |v|)`` the step aims for.
        cfl_tolerance: an interval whose end-of-interval Courant number exceeds ``cfl_tolerance · cfl``
            is recomputed with a smaller step.
        min_steps_per_interval: lower bound on steps per stored interval.
        max_steps_per_interval: more needed counts as a blow-up.
        n_contour: contour points of the ETDRK4 coefficients.
    """

    name = "navier_stokes_2d"
    description = "2D incompressible Navier-Stokes, vorticity form, periodic, forced (FNO benchmark)"
    equation = ("w_t + u.grad(w) = nu lap(w) + f, u = (psi_y, -psi_x), -lap(psi) = w, (x, y) in [0, 1)^2 periodic; "
                "f = A (sin 2pi(x+y) + cos 2pi(x+y))")
    parameters = (
        Parameter("nu", 1e-3, "L^2/T", "kinematic viscosity (domain side L = 1, time unit T)"),
        Parameter("t_final", 50.0, "T", "final time (an integer); a snapshot every time unit from t = 0"),
        Parameter("ic_alpha", 2.5, "1", "initial vorticity GRF smoothness: covariance sigma^2 (-Laplacian + tau^2 I)^(-alpha)"),
        Parameter("ic_tau", 7.0, "1/L", "initial vorticity GRF inverse length scale"),
        Parameter("ic_scale", 1.0, "1", "initial vorticity GRF amplitude relative to the FNO normalisation: "
                  "sigma = ic_scale sqrt(2) tau^(alpha - 1) (1 = FNO data)"),
        Parameter("forcing_amplitude", 0.1, "1/T^2", "A in f = A (sin 2pi(x+y) + cos 2pi(x+y))"),
    )
    fields = (
        FieldSpec("vorticity", "solution", time_varying=True, units="1/T",
                  description="vorticity w = v_x - u_y; frame 0 is the initial state"),
    )
    boundary_conditions = (
        BoundaryCondition("xy_periodic", "periodic", ("x", "y"), ("vorticity",)),
    )
    levels = {
        # Ordered cheapest first: generic tests use the first level.
        "easy": _level("easy", (5e-4, 2e-3), 20.0, (5.0, 8.0), (2.5, 2.5), log_uniform=("nu",),
                       description="nu in [5e-4, 2e-3] (log-uniform), FNO-like spectrum (tau 5-8, alpha 2.5), T = 20"),
        "medium": _level("medium", (1e-4, 5e-4), 20.0, (7.0, 10.0), (2.5, 2.5), log_uniform=("nu",),
                         description="nu in [1e-4, 5e-4] (log-uniform), tau 7-10, alpha 2.5, T = 20"),
        "hard": _level("hard", (1e-5, 1e-4), 20.0, (8.0, 12.0), (2.0, 2.5), log_uniform=("nu",),
                       description="nu in [1e-5, 1e-4] (log-uniform), tau 8-12, alpha 2-2.5, T = 20"),
        "fno_nu1e-3": _level("fno_nu1e-3", (1e-3, 1e-3), 50.0, (7.0, 7.0), (2.5, 2.5),
                             description="exactly the FNO data: nu = 1e-3, T = 50, w0 ~ GRF(tau 7, alpha 2.5), "
                                         "f = 0.1(sin 2pi(x+y) + cos 2pi(x+y))"),
        "fno_nu1e-4": _level("fno_nu1e-4", (1e-4, 1e-4), 30.0, (7.0, 7.0), (2.5, 2.5),
                             description="exactly the FNO data: nu = 1e-4, T = 30"),
        "fno_nu1e-5": _level("fno_nu1e-5", (1e-5, 1e-5), 20.0, (7.0, 7.0), (2.5, 2.5),
                             description="exactly the FNO data: nu = 1e-5, T = 20"),
    }
    solver = "pseudo-spectral ETDRK4 (vorticity form)"
    default_resolution = 64
    default_task = Task("window", 10, 1)
    snapshot_interval: ClassVar[float] = 1.0

    def __init__(
        self,
        solver_factor: int = 4,
        cfl: float = 1.0,
        cfl_tolerance: float = 1.5,
        min_steps_per_interval: int = 4,
        max_steps_per_interval: int = 1 << 15,
        n_contour: int = 64,
    ):
        self.solver_factor = check_integer("solver_factor", solver_factor, 2)
        self.cfl = float(check_positive("cfl", cfl))
        self.cfl_tolerance = float(check_positive("cfl_tolerance", cfl_tolerance))
        # Whole numbers: int() would make 0.5 a silent 0; n_contour < 8 only failed inside solve.
        self.min_steps_per_interval = check_integer("min_steps_per_interval", min_steps_per_interval, 1)
        self.max_steps_per_interval = check_integer("max_steps_per_interval", max_steps_per_interval, 1)
        self.n_contour = check_integer("n_contour", n_contour, 8)

    # ---- grid, sampling, dimensionless numbers -----------------------------------------------
    def grid(self, resolution: int) -> CartesianGrid:
        """Periodic ``resolution × resolution`` grid, points ``(i/n, j/n)`` on ``[0, 1)²``."""
        n = check_resolution(self.name, resolution, even=True)
        return CartesianGrid(((0.0, 1.0), (0.0, 1.0)), (n, n), (True, True))

    def _check_grid(self, grid: CartesianGrid) -> None:
        if (grid.dim != 2 or not all(grid.periodic) or tuple(map(tuple, grid.bounds)) != ((0.0, 1.0), (0.0, 1.0))
                or grid.shape[0] != grid.shape[1] or grid.shape[0] % 2):
            raise UserError(f"Navier-Stokes 2D is posed on the periodic square [0, 1)^2 with an even n x n grid: "
                            f"use NavierStokes2D().grid(n), got {grid}")

    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Parameters drawn from ``level``, then ``ω0`` from the Gaussian random field, both from ``rng``.

        Returns:
            ``Instance(params, inputs={"vorticity": ω0})`` with ``ω0`` of shape ``(n, n)`` float64.
        """
        self._check_grid(grid)
        params = self.draw_params(level, rng)
        sigma = ic_sigma(params["ic_tau"], params["ic_alpha"], params["ic_scale"])
        w0 = gaussian_random_field(rng, grid, alpha=params["ic_alpha"], tau=params["ic_tau"], sigma=sigma)
        return Instance(params=params, inputs={"vorticity": w0})

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``Re = U L / ν`` with ``U`` the RMS speed ``sqrt(⟨|u0|²⟩)`` of the initial state and ``L = 1``;
        ``Gr = F L³ / ν²`` (Grashof number of the forcing) with ``F`` the RMS of ``f`` (``= A``)."""
        uv = velocity_from_vorticity(np.asarray(inputs["vorticity"], dtype=np.float64))
        u_rms = float(np.sqrt(np.mean(np.sum(uv**2, axis=-1))))
        nu = params["nu"]
        return {"Re": u_rms / nu, "Gr": abs(params["forcing_amplitude"]) / nu**2}

    # ---- solver ------------------------------------------------------------------------------
    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """Solve a batch with :func:`~pde_lab.solvers.vorticity.solve_vorticity` on the solver grid.

        Args:
            instances: each with ``inputs["vorticity"]`` of shape ``(n, n)``; all with the same integer
                ``t_final``.
            grid: the stored grid.
            device: torch device for the arithmetic (float64 throughout).

        Returns:
            ``SolveResult`` with ``fields["vorticity"]`` of shape ``(B, t_final + 1, n, n)`` float64
            (frame 0 is the given ``ω0``, bit for bit), ``times = 0, 1, …, t_final``, ``steps`` ``(B,)``
            and per instance ``dt_min``, ``dt_max``, ``cfl_max``, ``redone_intervals``,
            ``solver_resolution`` and ``spectral_tail`` in ``per_sample``.

        Raises:
            UserError: bad inputs (shape, non-finite, ``nu ≤ 0``, non-integer or mixed ``t_final``).
            RuntimeError: an instance blew up; the message names its index and parameters.
        """
        self._check_grid(grid)
        if len(instances) == 0:
            raise UserError("NavierStokes2D.solve needs at least one instance")
        n = grid.shape[0]
        ns = n * self.solver_factor
        t_final = float(instances[0].params["t_final"])
        w0s = []
        for i, inst in enumerate(instances):
            w0 = inst.field("vorticity", (n, n), i)
            nu = float(inst.params["nu"])
            check_positive(f"instance {i}: nu", nu)
            t_i = float(inst.params["t_final"])
            if t_i != t_final:
                raise UserError(f"instances of one solve must share t_final: instance {i} has {t_i!r}, "
                                f"instance 0 has {t_final!r}")
            w0s.append(w0)
        if not (math.isfinite(t_final) and t_final >= 1 and t_final == round(t_final)):  # round(inf) raises
            raise UserError(f"t_final must be a positive integer (one snapshot per time unit), got {t_final!r}")
        n_int = int(round(t_final / self.snapshot_interval))
        dev = torch.device(device)
        # Row by row: batched numpy FFTs may round a member differently depending on the batch.
        fine0 = torch.from_numpy(np.stack([spectral_upsample_2d(w, ns) for w in w0s])).to(dev)
        xs = np.arange(ns) / ns
        base = fno_forcing(xs[:, None], xs[None, :], 1.0)
        amps = np.array([float(inst.params["forcing_amplitude"]) for inst in instances])
        forcing = torch.from_numpy(amps[:, None, None] * base[None]).to(dev)
        nus = [float(inst.params["nu"]) for inst in instances]
        try:
            sol = solve_vorticity(
                fine0, nus, t_final, n_int, forcing=forcing, cfl=self.cfl, cfl_tolerance=self.cfl_tolerance,
                min_steps_per_interval=self.min_steps_per_interval, max_steps_per_interval=self.max_steps_per_interval,
                output_stride=self.solver_factor, n_contour=self.n_contour)
        except BlowUpError as err:
            i = err.members[0]
            raise SolverFailure(
                f"Navier-Stokes solve blew up ({err.reason}) for instance {i} with parameters {instances[i].params} "
                f"in the interval starting at t = {err.time:g}; solver resolution {ns}, cfl = {self.cfl}"
            ) from err
        out = sol.vorticity.cpu().numpy()
        out[:, 0] = np.stack(w0s)
        settings: dict[str, Any] = {
            "scheme": "Fourier pseudo-spectral vorticity form, ETDRK4 (Cox-Matthews), Kassam-Trefethen contour "
                      "coefficients, advection u.grad(w) in physical space",
            "dealiasing": "2/3 rule on both axes (modes 3|m| < n_solver kept), also applied to w0",
            "precision": "float64",
            "n_contour": self.n_contour,
            "solver_factor": self.solver_factor,
            "time_step_rule": ("per instance and stored interval: fewest steps from the ladder 1..8, 10, 12, 14, 16, "
                               "20, ... with dt kappa_max max(|u|+|v|) <= cfl at the interval start and >= "
                               "min_steps_per_interval; recomputed if the end-of-interval Courant number exceeds "
                               "cfl_tolerance*cfl"),
            "cfl": self.cfl,
            "cfl_tolerance": self.cfl_tolerance,
            "min_steps_per_interval": self.min_steps_per_interval,
            "max_steps_per_interval": self.max_steps_per_interval,
            "output_sampling": "every solver_factor-th point of the solver grid per axis",
            "initial_state": "drawn on the stored grid, trigonometric interpolation onto the solver grid",
        }
        per_sample = {
            "dt_min": sol.dt_min,
            "dt_max": sol.dt_max,
            "cfl_max": sol.cfl_max,
            "redone_intervals": sol.redone.astype(np.float64),
            "solver_resolution": np.full(len(instances), float(ns)),
            "spectral_tail": sol.spectral_tail,
        }
        return SolveResult(fields={"vorticity": out}, times=sol.times, steps=sol.steps, settings=settings,
                           per_sample=per_sample)

    # ---- residual ----------------------------------------------------------------------------
    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Discrete residual ``ω_t + u·∇ω − νΔω − f`` at the interior stored times.

        ``ω_t`` is the second-order three-point difference of the stored frames (unequal spacing
        allowed). The space terms are exact for the trigonometric interpolant of each stored frame
        without its Nyquist modes (which the residual leaves out altogether): derivatives and velocity by Fourier multipliers, the product
        ``u·∇ω`` on a 3/2-padded grid and projected back onto the stored modes. With one frame per time
        unit the time difference dominates (``O(Δt² ω_ttt)``); the residual of a well-resolved solution
        tends to zero as frames are added, down to the stored grid's truncation of the solution.

        Args:
            solution: ``{"vorticity": (B, T, n, n)}``, numpy or torch (torch stays torch, differentiable).
            params: ``"nu"`` and ``"forcing_amplitude"`` scalars or ``(B,)`` (the latter defaults to 0.1);
                ``"t_final"`` if ``times`` is omitted.
            grid: the stored grid.
            times: ``(T,)`` snapshot times; default ``linspace(0, t_final, T)``.

        Returns:
            ``(B, T − 2, n, n)`` residual, same array type as the input.
        """
        self._check_grid(grid)
        w_in = solution["vorticity"]
        as_numpy = not isinstance(w_in, torch.Tensor)
        w = torch.as_tensor(np.asarray(w_in, dtype=np.float64)) if as_numpy else w_in
        if w.dim() != 4 or w.shape[1] < 3:
            raise UserError(f"Navier-Stokes residual needs vorticity of shape (B, T >= 3, n, n), got {tuple(w.shape)}")
        B, T, n, _ = w.shape
        if times is None:
            t_final = float(np.asarray(params["t_final"]).reshape(-1)[0])
            times = np.linspace(0.0, t_final, T)
        t = np.asarray(times, dtype=np.float64)
        h1, h2 = t[1:-1] - t[:-2], t[2:] - t[1:-1]
        cw = lambda a: torch.as_tensor(a, dtype=w.dtype, device=w.device)[None, :, None, None]  # noqa: E731
        w_t = (cw(-h2 / (h1 * (h1 + h2))) * w[:, :-2] + cw((h2 - h1) / (h1 * h2)) * w[:, 1:-1]
               + cw(h1 / (h2 * (h1 + h2))) * w[:, 2:])

        def per_sample(name, default=None):
            v = params.get(name, default)
            v = v if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
            return torch.as_tensor(v, dtype=w.dtype, device=w.device).reshape(-1, 1, 1, 1)

        nu = per_sample("nu")
        amp = per_sample("forcing_amplitude", 0.1)
        # The product u·∇ω is formed on a 3/2-padded grid and truncated back, so it is exact for the
        # band-limited interpolant of the stored frames (no aliasing error in the residual itself).
        big = 3 * n // 2 + (3 * n // 2) % 2
        kx = wavenumbers(big, 1.0, real=False, device=w.device).to(w.dtype)[:, None]
        ky = wavenumbers(big, 1.0, device=w.device).to(w.dtype)[None, :]
        k2 = kx**2 + ky**2
        inv = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        wh = _pad_spectrum(torch.fft.rfft2(w[:, 1:-1]), big) * (big / n) ** 2
        ir = lambda a: torch.fft.irfft2(a, s=(big, big))  # noqa: E731
        u, v = ir(1j * ky * inv * wh), ir(-1j * kx * inv * wh)
        w_x, w_y = ir(1j * kx * wh), ir(1j * ky * wh)
        adv_hat = _truncate_spectrum(torch.fft.rfft2(u * w_x + v * w_y), n) * (n / big) ** 2
        lap_hat = _truncate_spectrum(-k2 * wh, n) * (n / big) ** 2
        space = torch.fft.irfft2(adv_hat - nu * lap_hat, s=(n, n))
        xs = torch.arange(n, dtype=w.dtype, device=w.device) / n
        s = 2.0 * math.pi * (xs[:, None] + xs[None, :])
        f = amp * (torch.sin(s) + torch.cos(s))
        # Nyquist modes are dropped from every term: their derivatives are not defined by the samples.
        r = torch.fft.irfft2(_truncate_spectrum(torch.fft.rfft2(w_t - f), n), s=(n, n)) + space
        return r.numpy() if as_numpy else r

    # ---- pointwise residual terms on the grid (hard constraints, physics-informed operators) ---
    #: Network output, and the coordinates of a point ``(x, y, t)`` (in this order).
    pinn_fields: ClassVar[tuple[str, ...]] = ("vorticity",)
    pinn_coordinates: ClassVar[tuple[str, ...]] = ("x", "y", "t")

    def pinn_domain(self, params: Mapping[str, float]) -> tuple[tuple[float, float], ...]:
        """The space-time box ``((0, 1), (0, 1), (0, t_final))``."""
        return ((0.0, 1.0), (0.0, 1.0), (0.0, float(params["t_final"])))

    @staticmethod
    def grid_jets(w: torch.Tensor, times: np.ndarray | Sequence[float]) -> dict[str, torch.Tensor]:
        """The values :meth:`hard_constraint_terms` needs, for fields given on the periodic grid.

        Every output is linear in ``w``, so applied to basis functions it gives the basis of each
        quantity. Space: Fourier multipliers on each frame, Nyquist modes dropped as in
        :meth:`residual` (exact for the band-limited interpolant); velocity ``(ψ_y, −ψ_x)`` with
        ``−Δψ = w``. Time: second-order three-point differences over the frames (one-sided at the
        first and last frame; unequal spacing allowed).

        Args:
            w: ``(..., T, n, n)`` vorticity-like fields on ``T ≥ 3`` frames (torch, differentiable).
            times: ``(T,)`` frame times.

        Returns:
            ``{"w", "w_t", "w_x", "w_y", "lap_w", "vel_x", "vel_y"}``, each ``(..., T, n, n)``.
        """
        if w.dim() < 3 or w.shape[-3] < 3 or w.shape[-1] != w.shape[-2]:
            raise UserError(f"grid_jets needs fields (..., T >= 3, n, n), got {tuple(w.shape)}")
        n = w.shape[-1]
        t = torch.as_tensor(np.asarray(times, dtype=np.float64), dtype=w.dtype, device=w.device)
        if t.shape != (w.shape[-3],):
            raise UserError(f"grid_jets needs one time per frame ({w.shape[-3]}), got {tuple(t.shape)}")
        kx = wavenumbers(n, 1.0, real=False, device=w.device).to(w.dtype)[:, None]
        ky = wavenumbers(n, 1.0, device=w.device).to(w.dtype)[None, :]
        keep = torch.ones(n, n // 2 + 1, dtype=w.dtype, device=w.device)
        keep[n // 2, :] = 0.0
        keep[:, n // 2] = 0.0
        k2 = kx**2 + ky**2
        inv = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        wh = torch.fft.rfft2(w) * keep
        ir = lambda a: torch.fft.irfft2(a, s=(n, n))  # noqa: E731
        # Three-point weights for the derivative at frame i from frames (a, b, c) at offsets h1, h2.
        def weights(ta, tb, tc, at):
            return ((at - tb) + (at - tc)) / ((ta - tb) * (ta - tc)), ((at - ta) + (at - tc)) / ((tb - ta) * (tb - tc)), \
                ((at - ta) + (at - tb)) / ((tc - ta) * (tc - tb))
        frames = []
        T = t.shape[0]
        for i in range(T):
            a = min(max(i - 1, 0), T - 3)
            ca, cb, cc = weights(t[a], t[a + 1], t[a + 2], t[i])
            frames.append(ca * w[..., a, :, :] + cb * w[..., a + 1, :, :] + cc * w[..., a + 2, :, :])
        return {"w": ir(wh), "w_t": torch.stack(frames, dim=-3),
                "w_x": ir(1j * kx * wh), "w_y": ir(1j * ky * wh), "lap_w": ir(-k2 * wh),
                "vel_x": ir(1j * ky * inv * wh), "vel_y": ir(-1j * kx * inv * wh)}

    def hard_constraint_terms(self, params: Mapping[str, float]) -> list[tuple]:
        """The vorticity equation as pointwise residual terms of the values of :meth:`grid_jets`.

        Each term is ``(name, face, jets, fn)`` with ``fn(jets, x, inputs) -> (P,)`` (see
        :meth:`DiffusionSorption.hard_constraint_terms <pde_lab.pdes.diffusion_sorption.DiffusionSorption.hard_constraint_terms>`):

        * ``pde``: ``w_t + u w_x + v w_y − ν Δw − f(x, y)``;
        * ``initial`` (face ``t = 0``): ``w − ω0`` with ``inputs["vorticity"]`` the initial vorticity.
        """
        nu = float(params["nu"])
        amp = float(params.get("forcing_amplitude", 0.1))

        def pde(j, x, inputs):
            s = 2.0 * math.pi * (x[..., 0] + x[..., 1])
            f = amp * (torch.sin(s) + torch.cos(s))
            return j["w_t"] + j["vel_x"] * j["w_x"] + j["vel_y"] * j["w_y"] - nu * j["lap_w"] - f

        def initial(j, x, inputs):
            return j["w"] - inputs["vorticity"]

        return [("pde", None, ("w", "w_t", "w_x", "w_y", "lap_w", "vel_x", "vel_y"), pde),
                ("initial", (2, 0), ("w",), initial)]


def _pad_spectrum(c: torch.Tensor, big: int) -> torch.Tensor:
    """rfft2 coefficients ``(..., n, n//2 + 1)`` of an ``n``-grid placed into those of a ``big``-grid,
    ``(..., big, big//2 + 1)``; Nyquist row and column dropped (unscaled)."""
    n = c.shape[-2]
    h = n // 2
    out = torch.zeros(c.shape[:-2] + (big, big // 2 + 1), dtype=c.dtype, device=c.device)
    out[..., :h, :h] = c[..., :h, :h]
    out[..., big - h + 1:, :h] = c[..., h + 1:, :h]
    return out


def _truncate_spectrum(c: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`_pad_spectrum`: keep the modes of an ``n``-grid (Nyquist set to zero)."""
    big = c.shape[-2]
    h = n // 2
    out = torch.zeros(c.shape[:-2] + (n, n // 2 + 1), dtype=c.dtype, device=c.device)
    out[..., :h, :h] = c[..., :h, :h]
    out[..., h + 1:, :h] = c[..., big - h + 1:, :h]
    return out
