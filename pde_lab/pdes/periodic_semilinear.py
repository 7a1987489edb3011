"""Shared machinery of the periodic semilinear families (heat, advection, Allen–Cahn,
Kuramoto–Sivashinsky, Fisher–KPP, Gray–Scott): ``u_t = L u + N(u)`` on a periodic box.

:class:`PeriodicSemilinearPDE` holds the grid, input checks, the batched solve through
:mod:`pde_lab.solvers.semilinear` with per-instance solver resolution, the ``SolveResult``
bookkeeping and the snapshot residual. A family declares its operator (linear part, nonlinear term,
step limits, resolution rule) through a few hooks; see ``pdes/heat.py`` for the simplest one.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..errors import UserError, check_integer
from ..grids import CartesianGrid
from ..random_fields import gaussian_random_field
from ..solvers.semilinear import (BlowUpError, NonlinearTerm, PeriodicBox, fourier_resample, solve_semilinear,
                                  time_derivative)
from .base import PDE, Instance, SolveResult, check_resolution

__all__ = ["PeriodicSemilinearPDE", "normalized_grf", "resample_tanh_profile"]


def normalized_grf(rng: np.random.Generator, grid: CartesianGrid, alpha: float, tau: float,
                   amplitude: float = 1.0) -> np.ndarray:
    """A zero-mean Gaussian random field ``N(0, (−Δ + τ² I)^(−α))`` rescaled to RMS ``amplitude``.

    Rescaling each draw decouples the field's size from its roughness (``α``, ``τ``), so that a
    level's difficulty axis changes the structure of the data and not its scale.

    Returns:
        ``grid.shape`` float64 array.
    """
    g = gaussian_random_field(rng, grid, alpha=alpha, tau=tau, sigma=1.0)
    return amplitude * g / np.sqrt(np.mean(g**2))


def resample_tanh_profile(s: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A profile ``s = (1 + tanh z)/2`` in ``[0, 1]`` on another grid, through ``z`` interpolated.

    Initial patches drawn as ``(1 + tanh(σ (g − θ)))/2`` of a band-limited field ``g`` have ``z``
    affine in ``g``, so this evaluates their defining formula on the new grid (up to the digits
    ``atanh`` loses near saturation: ``z`` keeps ~7 at ``s = 1e-9``) and stays in ``[0, 1]``, where
    the trigonometric interpolant of ``s`` itself overshoots wherever the old grid does not resolve
    a patch edge. ``z`` is clipped where ``s`` rounds to 0 or 1 (``|z| ≳ 18.4``), and points where the
    interpolated ``z`` reaches the clip get exactly 0 or 1 (so ``s ≡ 0`` stays 0); the old points are
    reproduced either way.

    Args:
        s: ``(..., *old)`` values in ``[0, 1]`` over the last ``len(shape)`` axes.
        shape: new points per axis.

    Returns:
        ``(..., *shape)`` float64 in ``[0, 1]``.
    """
    edge = 1.0 - np.finfo(np.float64).eps
    z_max = float(np.arctanh(edge))
    z = fourier_resample(np.arctanh(np.clip(2.0 * np.asarray(s, dtype=np.float64) - 1.0, -edge, edge)), shape)
    out = 0.5 * (1.0 + np.tanh(z))
    # Clipped plateaus come back as exact 0 and 1, not 1e-16 (an empty region would grow from it).
    saturated = np.abs(z) >= z_max * (1.0 - 1e-12)
    return np.where(saturated, (z > 0).astype(np.float64), out)


class PeriodicSemilinearPDE(PDE):
    """Base of the periodic families solved by :func:`pde_lab.solvers.semilinear.solve_semilinear`.

    Subclasses set the class attributes below and implement the hooks :meth:`initial_state`,
    :meth:`linear_operator`, :meth:`rhs` and, for nonlinear problems, :meth:`nonlinear`,
    :meth:`step_limits` and :meth:`solver_resolution`; :meth:`solver_initial_state` when the
    initial state is a nonlinear map of a band-limited field.

    Class attributes:
        dim: number of space dimensions (1 or 2).
        components: solution field names, in the order of the solver's component axis.
        n_snapshots: stored frames per trajectory.
        shared_params: parameters that fix the output times, so must agree within one ``solve``.
        linear: the problem is linear (no nonlinear term, no dealiasing, one step per interval).

    Args (solver controls; the defaults are what datasets use):
        min_steps_per_interval: accuracy floor on steps per output interval (see each family).
        spectral_tol: target size of the solution's Fourier tail at the 2/3 cut; sets the solver
            resolution of nonlinear families.
        max_solver_resolution: refuse (``UserError``) instances that would need more points per axis.
        n_contour: contour points of the ETDRK4 coefficients.
    """

    dim: ClassVar[int] = 1
    components: ClassVar[tuple[str, ...]] = ("u",)
    n_snapshots: ClassVar[int] = 11
    shared_params: ClassVar[tuple[str, ...]] = ("t_final",)
    linear: ClassVar[bool] = False
    default_min_steps: ClassVar[int] = 1
    default_spectral_tol: ClassVar[float] = 1e-8
    default_max_solver_resolution: ClassVar[int] = 4096

    def __init__(self, min_steps_per_interval: int | None = None, spectral_tol: float | None = None,
                 max_solver_resolution: int | None = None, n_contour: int = 64):
        # Whole numbers: int() of a positive 0.5 would be a silent 0 (2.5 a silent 2).
        m = self.default_min_steps if min_steps_per_interval is None else min_steps_per_interval
        self.min_steps_per_interval = check_integer("min_steps_per_interval", m, 1)
        tol = self.default_spectral_tol if spectral_tol is None else spectral_tol
        if not 0.0 < tol < 1.0:
            raise UserError(f"spectral_tol must lie in (0, 1), got {tol!r}")
        self.spectral_tol = float(tol)
        mr = self.default_max_solver_resolution if max_solver_resolution is None else max_solver_resolution
        self.max_solver_resolution = check_integer("max_solver_resolution", mr, 4)
        self.n_contour = check_integer("n_contour", n_contour, 8)  # etdrk4_coefficients' least

    # ---- grid ------------------------------------------------------------------------------------
    def grid(self, resolution: int) -> CartesianGrid:
        """Periodic grid of ``resolution`` points per axis, ``x_i = i/resolution`` on ``[0, 1)^dim``."""
        n = check_resolution(self.name, resolution)
        return CartesianGrid(((0.0, 1.0),) * self.dim, (n,) * self.dim, (True,) * self.dim)

    def _check_grid(self, grid: CartesianGrid) -> None:
        ok = (grid.dim == self.dim and all(grid.periodic) and all(tuple(b) == (0.0, 1.0) for b in grid.bounds)
              and len(set(grid.shape)) == 1)
        if not ok:
            raise UserError(f"{self.name} is posed on the periodic unit {'interval' if self.dim == 1 else 'square'} "
                            f"with equal points per axis: use {type(self).__name__}().grid(n), got {grid}")

    # ---- hooks -------------------------------------------------------------------------------------
    def initial_state(self, params: Mapping[str, float], rng: np.random.Generator,
                      grid: CartesianGrid) -> dict[str, np.ndarray]:
        """The input fields of an instance (one per component, ``grid.shape``), drawn from ``rng``.

        Default, for one-component families with the parameters ``ic_alpha``, ``ic_tau`` and
        ``ic_amplitude``: a :func:`normalized_grf` of that smoothness and RMS.
        """
        if len(self.components) != 1:
            raise NotImplementedError(f"{self.name} has {len(self.components)} components: define initial_state")
        return {self.components[0]: normalized_grf(rng, grid, params["ic_alpha"], params["ic_tau"],
                                                   params["ic_amplitude"])}

    #: Parameters that must be positive and finite; the default :meth:`check_params` checks them in this order.
    positive_params: tuple[str, ...] = ()

    def check_params(self, params: Mapping[str, float]) -> str | None:
        """A message naming the first invalid parameter value, or ``None``. An infinite value is invalid
        too: it passes ``> 0`` and then makes a resolution rule loop forever (``L = inf`` for
        Kuramoto–Sivashinsky) or divide by zero (``r = inf`` for Fisher–KPP)."""
        for name in self.positive_params:
            if not (params[name] > 0 and np.isfinite(params[name])):
                return f"{name} must be positive and finite, got {params[name]!r}"
        return None

    def output_times(self, params: Mapping[str, float]) -> np.ndarray:
        """``(n_snapshots,)`` stored times; default ``linspace(0, t_final, n_snapshots)``."""
        return np.linspace(0.0, float(params["t_final"]), self.n_snapshots)

    def domain_lengths(self, params: Mapping[str, float]) -> tuple[float, ...]:
        """Physical period per axis of the solver box (the stored grid is always the unit box)."""
        return (1.0,) * self.dim

    def solver_resolution(self, params: Mapping[str, float], u0: np.ndarray, n: int) -> int:
        """Points per axis of the solver grid for one instance (``u0``: ``(C, *space)``)."""
        return n

    def solver_initial_state(self, u0: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """The initial state on the solver grid from the stored one: ``(C, *space)`` → ``(C, *shape)``.

        Default: trigonometric interpolation (:func:`fourier_resample`), exact for a state drawn on
        the stored grid as a band-limited field. A family whose initial state is a nonlinear map of
        such a field overrides this to interpolate the field instead (:func:`resample_tanh_profile`,
        used by ``fisher_kpp.py``); either way the stored points are reproduced."""
        return fourier_resample(u0, shape)

    def linear_operator(self, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Diagonal of ``L``: ``(b, C, *box.spectral_shape)`` from parameter tensors ``p[name]`` of
        shape ``(b, 1, *[1]*dim)``; real (float64) or complex128."""
        raise NotImplementedError

    def nonlinear(self) -> NonlinearTerm | None:
        """The nonlinear term's factory (see :data:`pde_lab.solvers.semilinear.NonlinearTerm`)."""
        return None

    def step_limits(self, params: Sequence[Mapping[str, float]], u0: np.ndarray,
                    box: PeriodicBox) -> dict[str, tuple[np.ndarray, float]]:
        """``name → (rates (b,), number)``: each instance's step obeys ``dt · rate ≤ number``.

        ``params`` holds the ``b`` instances solved together, ``u0`` their ``(b, C, *box.shape)``
        initial states resampled to the solver grid ``box``."""
        return {}

    def rhs(self, u: torch.Tensor, box: PeriodicBox, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The right-hand side ``L u + N(u)`` in physical space for stored fields ``u`` of shape
        ``(B, T, C, *space)`` (no dealiasing), ``p[name]`` of shape ``(B, 1, 1, *[1]*dim)``; returns
        ``(B, T, C, *space)``."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Solver settings shared by every batch (JSON-serialisable)."""
        return {}

    # ---- sampling ----------------------------------------------------------------------------------
    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Parameters drawn from ``level``, then the initial state, both from ``rng`` (in that order).

        Returns:
            ``Instance(params, inputs)`` with one ``grid.shape`` float64 array per component.
        """
        self._check_grid(grid)
        params = self.draw_params(level, rng)
        return Instance(params=params, inputs=self.initial_state(params, rng, grid))

    # ---- solve -------------------------------------------------------------------------------------
    def _initial_states(self, instances: Sequence[Instance], grid: CartesianGrid) -> list[np.ndarray]:
        if len(instances) == 0:
            raise UserError(f"{self.name}.solve needs at least one instance")
        first = instances[0].params
        out = []
        for i, inst in enumerate(instances):
            fields = [inst.field(c, grid.shape, i) for c in self.components]
            missing = [p.name for p in self.parameters if p.name not in inst.params]
            if missing:
                raise UserError(f"instance {i}: missing parameters {missing}")
            msg = self.check_params(inst.params)
            if msg:
                raise UserError(f"instance {i}: {msg}")
            for name in self.shared_params:
                if float(inst.params[name]) != float(first[name]):
                    raise UserError(f"instances of one solve must share {name}: instance {i} has "
                                    f"{inst.params[name]!r}, instance 0 has {first[name]!r}")
            out.append(np.stack(fields))
        return out

    def _param_tensors(self, params: Sequence[Mapping[str, float]], ndim: int,
                       device: torch.device | str) -> dict[str, torch.Tensor]:
        shape = (-1,) + (1,) * (ndim - 1)
        return {p.name: torch.tensor([float(q[p.name]) for q in params], dtype=torch.float64,
                                     device=device).reshape(shape) for p in self.parameters}

    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """Solve a batch with pseudo-spectral ETDRK4, instances grouped by solver resolution and step plan.

        Args:
            instances: each with one ``grid.shape`` input field per component; all sharing the
                parameters in ``shared_params`` (they fix the stored times).
            grid: the stored grid, ``grid(n)``.
            device: torch device for the arithmetic.

        Returns:
            ``SolveResult`` with one ``(B, n_snapshots, *space)`` float64 field per component (when the
            first stored time is 0, frame 0 is the given initial state bit for bit), ``times``,
            ``steps`` ``(B,)`` and per instance ``dt``, ``steps_per_interval``, ``solver_resolution``,
            each step limit's achieved number and (nonlinear families) ``spectral_tail``.

        Raises:
            UserError: bad inputs (shape, non-finite, invalid parameter, mixed shared parameters).
            BlowUpError: an instance blew up; the message names its index and parameters.
        """
        self._check_grid(grid)
        u0s = self._initial_states(instances, grid)
        n = grid.shape[0]
        B, C = len(instances), len(self.components)
        params = [dict(inst.params) for inst in instances]
        times = self.output_times(params[0])
        lengths = self.domain_lengths(params[0])
        n_solver = [self.solver_resolution(p, u, n) for p, u in zip(params, u0s)]
        for i, ns in enumerate(n_solver):
            if ns > self.max_solver_resolution:
                raise UserError(f"{self.name} instance {i} with parameters {params[i]} needs solver resolution "
                                f"{ns} > max_solver_resolution={self.max_solver_resolution}; raise it or pick "
                                "an easier instance")
        out = np.empty((B, times.size, C) + grid.shape, dtype=np.float64)
        per: dict[str, np.ndarray] = {}
        steps = np.zeros(B, dtype=np.int64)
        dev = torch.device(device)
        for ns in sorted(set(n_solver)):
            members = [i for i in range(B) if n_solver[i] == ns]
            box = PeriodicBox((ns,) * self.dim, lengths, dev)
            # Instance by instance: a resampled state must not depend on its batch-mates.
            u0 = np.stack([self.solver_initial_state(u0s[i], box.shape) for i in members])
            mp = [params[i] for i in members]
            p = self._param_tensors(mp, 2 + self.dim, dev)
            lin = self.linear_operator(box, p)
            names = [f"instance {i} with parameters {params[i]}" for i in members]
            try:
                sol = solve_semilinear(
                    box, u0, lin, self.nonlinear(), times,
                    step_limits=self.step_limits(mp, u0, box),
                    min_steps_per_interval=self.min_steps_per_interval,
                    coefficients={q.name: [float(x[q.name]) for x in mp] for q in self.parameters},
                    dealias=not self.linear, output_shape=grid.shape, instance_names=names,
                    n_contour=self.n_contour)
            except BlowUpError as err:
                raise BlowUpError([members[j] for j in err.members], err.step, err.time, str(err)) from err
            out[members] = sol.u.cpu().numpy()
            steps[members] = sol.steps
            record = {
                "dt": sol.dt[:, -1],
                "steps_per_interval": sol.steps_per_interval[:, -1].astype(np.float64),
                "solver_resolution": np.full(len(members), float(ns)),
                **sol.numbers,
            }
            if not self.linear:
                record["spectral_tail"] = sol.spectral_tail
            for k, v in record.items():
                per.setdefault(k, np.zeros(B))[members] = v
        if times[0] == 0.0:
            out[:, 0] = np.stack(u0s)
        fields = {c: out[:, :, j] for j, c in enumerate(self.components)}
        settings = {
            "scheme": "Fourier pseudo-spectral, ETDRK4 (Cox-Matthews), Kassam-Trefethen contour coefficients",
            "dealiasing": "none (linear problem)" if self.linear else
            "2/3 rule on the nonlinear term and the initial state",
            "precision": "float64",
            "n_contour": self.n_contour,
            "min_steps_per_interval": self.min_steps_per_interval,
            "time_step_rule": ("dt = dt_out / 2^p, the largest with dt <= dt_out/min_steps_per_interval and "
                               "dt * rate <= number for each step limit"),
            **({} if self.linear else {"spectral_tol": self.spectral_tol}),
            **self.settings(),
        }
        return SolveResult(fields=fields, times=times, steps=steps, settings=settings, per_sample=per)

    # ---- residual ----------------------------------------------------------------------------------
    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Discrete residual ``D_t u − (L u + N(u))`` at the interior stored times.

        ``D_t`` is the second-order three-point difference in time (unequal spacing allowed), space
        derivatives are exact Fourier derivatives of the grid data (no dealiasing; the Nyquist mode
        dropped from odd derivatives). It measures the time-discretisation error of the stored frames,
        ``O(Δt² ∂_t³u)``, plus any spatial under-resolution of the stored grid; for a true solution it
        tends to zero like ``Δt²`` as frames are added.

        Args:
            solution: one ``(B, T, *space)`` array per component, numpy or torch (torch stays torch and
                differentiable).
            params: each parameter a scalar or ``(B,)``; the shared time parameters if ``times`` is
                omitted.
            grid: the stored grid.
            times: ``(T,)`` snapshot times; default :meth:`output_times` of ``params``.

        Returns:
            ``(B, T − 2, *space)`` for one component, ``(B, T − 2, *space, C)`` for several; same array
            type as the input.
        """
        self._check_grid(grid)
        first = solution[self.components[0]]
        as_numpy = not isinstance(first, torch.Tensor)
        parts = [torch.as_tensor(np.asarray(solution[c], dtype=np.float64)) if as_numpy else solution[c]
                 for c in self.components]
        u = torch.stack(parts, dim=2)                                        # (B, T, C, *space)
        if u.dim() != 3 + self.dim or u.shape[1] < 3:
            raise UserError(f"{self.name} residual needs fields of shape (B, T >= 3, *space), got {tuple(first.shape)}")
        if times is None:
            scalar = {k: float(np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v).reshape(-1)[0])
                      for k, v in params.items()}
            times = self.output_times({**self.default_params(), **scalar})
        t = np.asarray(times, dtype=np.float64)
        if t.size != u.shape[1]:
            raise UserError(f"{self.name} residual: {t.size} times for {u.shape[1]} frames")
        B = u.shape[0]
        p = {}
        for name in {q.name for q in self.parameters}:
            v = params.get(name, self.default_params()[name])
            v = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=np.float64))
            v = v.to(dtype=u.dtype, device=u.device).reshape(-1)
            p[name] = v.expand(B).reshape((B,) + (1,) * (2 + self.dim))
        box = PeriodicBox(grid.shape, self.domain_lengths({k: float(v.reshape(-1)[0]) for k, v in p.items()}),
                          u.device)
        r = time_derivative(u, t) - self.rhs(u[:, 1:-1], box, p)
        r = r[:, :, 0] if len(self.components) == 1 else torch.movedim(r, 2, -1)
        return r.detach().numpy() if as_numpy else r
