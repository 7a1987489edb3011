"""The space-time PINN view of a periodic evolution equation ``u_t = F[u]``.

A family that defines the pointwise right-hand side ``pointwise_rhs(u_fn, x, params)`` (the one
TENG evolves) gets the pointwise-residual interface of :mod:`pde_lab.pdes.poisson` by inheriting
:class:`SpaceTimePINN`:

* points ``(x, t)`` in ``[0, 1)^d × [0, t_final]``, time last;
* residual ``u_t − F[u]``, where ``F`` sees ``u`` as a function of ``x`` at each point's own ``t``
  (rows are independent, so freezing ``t`` per row gives exactly the spatial derivatives);
* the initial state as the only boundary face;
* periodicity in ``x`` carried by the network: ``pinn_periodic_axes`` tells the trainer which
  inputs get ``pinn_mlp``'s periodic embedding;
* a reference solution for the error metrics (``reference_solution``).

The initial state and the reference come from one of two sources:

* a closed-form ``exact_solution(x, params)`` on space-time points (heat, Burgers): the initial
  state is its value at ``t = 0`` and the reference is the closed form itself;
* otherwise (Allen–Cahn) the family names the initial state with ``pinn_initial_state(x, params)``
  on space points, and the reference is the family's own classical solver run from it on a fine grid
  (:class:`SpectralReference`): Fourier series in space, cubic Hermite interpolation in time with
  the time derivative ``F[u]`` of each snapshot. That reference is a smooth function of ``(x, t)``,
  so the same ``pointwise_residual`` measures how well it satisfies the equation.

One definition of each equation serves the solver's residual, TENG and the space-time PINN.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import UserError
from .base import Instance
from .poisson import PointFunction, gradient


class SpectralReference:
    """A solver trajectory of a 1D periodic problem as a smooth function of ``(x, t)``.

    Snapshots ``u(·, t_j)`` on a uniform grid of ``n`` points of ``[0, 1)`` at uniform times
    ``t_j = j h`` are held as Fourier coefficients, with those of their time derivatives
    ``u_t(·, t_j) = F[u(·, t_j)]``. Between ``t_j`` and ``t_{j+1}`` the coefficients follow the cubic
    Hermite interpolant of the values and derivatives (error ``≤ h⁴/384 max|∂_t⁴ u|``); in space the
    field is the trigonometric interpolant without the Nyquist mode. Everything is torch arithmetic
    in the point coordinates, so ``gradient``/``laplacian`` of :mod:`pde_lab.pdes.poisson` apply.

    Args:
        u: ``(S, n)`` snapshots at times ``t0 + j h``.
        u_t: ``(S, n)`` their time derivatives.
        h: time between snapshots.
        t0: time of the first snapshot.
    """

    def __init__(self, u: np.ndarray, u_t: np.ndarray, h: float, t0: float = 0.0):
        u, u_t = np.asarray(u, dtype=np.float64), np.asarray(u_t, dtype=np.float64)
        if u.ndim != 2 or u.shape != u_t.shape or u.shape[0] < 2:
            raise ValueError(f"SpectralReference needs (S >= 2, n) snapshots and derivatives, "
                             f"got {u.shape}, {u_t.shape}")
        n = u.shape[1]
        modes = (n - 1) // 2  # drop the Nyquist mode of an even n: its derivative is ambiguous
        weight = np.full(modes + 1, 2.0 / n)
        weight[0] = 1.0 / n
        self.coef = torch.from_numpy(np.fft.rfft(u, axis=1)[:, : modes + 1] * weight)      # (S, M) complex
        self.dcoef = torch.from_numpy(np.fft.rfft(u_t, axis=1)[:, : modes + 1] * weight)   # (S, M)
        self.wave = 2.0 * math.pi * torch.arange(modes + 1, dtype=torch.float64)
        self.h, self.t0, self.n_snapshots = float(h), float(t0), u.shape[0]

    @property
    def t_final(self) -> float:
        """Time of the last snapshot."""
        return self.t0 + self.h * (self.n_snapshots - 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``u(x, t)`` at space-time points ``x: (N, 2)`` (``x`` in ``[0, 1)``, ``t`` in the snapshot
        range; the end intervals extrapolate); returns ``(N, 1)`` in ``x``'s dtype."""
        if x.dim() != 2 or x.shape[1] != 2:
            raise UserError(f"SpectralReference needs space-time points of shape (N, 2), got {tuple(x.shape)}")
        dev = x.device
        s = (x[:, 1] - self.t0) / self.h
        j = torch.clamp(torch.floor(s.detach()).long(), 0, self.n_snapshots - 2).cpu()
        s = (s - j.to(dev, x.dtype))[:, None, None]              # local time in [0, 1], differentiable

        def rows(c: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # (N, M, 2): real and imaginary parts
            return torch.view_as_real(c[idx]).to(dev, x.dtype)

        coef = ((1 + 2 * s) * (1 - s) ** 2 * rows(self.coef, j) + s * s * (3 - 2 * s) * rows(self.coef, j + 1)
                + self.h * (s * (1 - s) ** 2 * rows(self.dcoef, j) + s * s * (s - 1) * rows(self.dcoef, j + 1)))
        phase = x[:, :1] * self.wave.to(dev, x.dtype)             # (N, M)
        return (coef[..., 0] * torch.cos(phase) - coef[..., 1] * torch.sin(phase)).sum(dim=1, keepdim=True)


class SpaceTimePINN:
    """Mixin: the space-time pointwise-residual interface from ``pointwise_rhs`` and either a closed-form
    ``exact_solution`` or an initial state ``pinn_initial_state`` plus the family's solver.

    Class attributes (solver reference only):
        pinn_reference_resolution: grid points of the reference's snapshots (and of the solve).
        pinn_reference_intervals: time intervals between stored snapshots over ``[0, t_final]``
            (rounded up to a multiple of the family's ``n_snapshots − 1``).
    """

    dim: int
    pinn_fields = ("u",)
    pinn_reference_resolution: int = 256
    pinn_reference_intervals: int = 200

    def _t_final(self, params: Mapping[str, float] | None) -> float:
        return self.param(params, "t_final")

    def _closed_form(self):
        return getattr(self, "exact_solution", None)

    def pinn_domain(self, params: Mapping[str, float] | None = None) -> tuple[tuple[float, float], ...]:
        """``[0, 1]^d × [0, t_final]``: space first, time last."""
        return ((0.0, 1.0),) * self.dim + ((0.0, self._t_final(params)),)

    def pinn_periodic_axes(self, params: Mapping[str, float] | None = None) -> list[int]:
        """The space coordinates (period 1)."""
        return list(range(self.dim))

    def pinn_boundary_faces(self, params: Mapping[str, float] | None = None) -> list[tuple[int, int]]:
        """Only ``t = 0`` carries a condition: the initial state."""
        return [(self.dim, 0)]

    def pinn_initial_state(self, x: torch.Tensor, params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The initial state ``u₀`` at space points ``x: (N, d)``; returns ``(N,)``. This default reads
        it off the closed-form ``exact_solution``; a family without one overrides it."""
        exact = self._closed_form()
        if exact is None:
            raise NotImplementedError(f"{self.name} defines neither exact_solution nor pinn_initial_state")
        return exact(torch.cat([x, torch.zeros_like(x[:, :1])], dim=1), params)[:, 0]

    def boundary_value(self, x: torch.Tensor, params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The initial state at ``t = 0``, extended into the domain by the exact solution where there is
        one and as constant in time otherwise (what ``hard_bc`` needs); ``x: (N, d + 1)``, returns ``(N,)``."""
        exact = self._closed_form()
        if exact is not None:
            return exact(x, params)[:, 0]
        return self.pinn_initial_state(x[:, : self.dim], params)

    def reference_solution(self, x: torch.Tensor, params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The solution the PINN is measured against at space-time points ``x: (N, d + 1)``: the closed
        form if there is one, else the solver reference (:meth:`spectral_reference`); ``(N, 1)``."""
        exact = self._closed_form()
        if exact is not None:
            return exact(x, params)
        self._check_space_time(x)
        return self.spectral_reference(params)(x)

    def spectral_reference(self, params: Mapping[str, float] | None = None) -> SpectralReference:
        """The family's classical solver run from ``pinn_initial_state`` to ``t_final``, as a function
        of ``(x, t)`` (cached per parameter set).

        The solve goes through the family's own ``solve`` on ``grid(pinn_reference_resolution)``, in
        consecutive windows whose stored snapshots are spaced ``h = t_final / intervals``; each window
        starts from the last snapshot of the previous one, which loses nothing because the solver grid
        is finer than the stored one and keeps all its modes. ``u_t`` at each snapshot is
        ``pointwise_rhs`` of its trigonometric interpolant.
        """
        if self.dim != 1:
            raise UserError(f"{self.name}: the solver reference of the space-time PINN is implemented for one "
                            f"space dimension, this family has {self.dim}")
        full = {**self.default_params(), **(params or {})}
        key = (int(self.pinn_reference_resolution), int(self.pinn_reference_intervals),
               *sorted((k, float(v)) for k, v in full.items()))
        cache = self.__dict__.setdefault("_spectral_references", {})
        if key not in cache:
            cache[key] = self._solve_reference(full)
        return cache[key]

    def _solve_reference(self, params: dict[str, Any]) -> SpectralReference:
        n = int(self.pinn_reference_resolution)
        grid = self.grid(n)
        per_window = int(self.n_snapshots) - 1
        windows = max(1, math.ceil(self.pinn_reference_intervals / per_window))
        t_final = float(params["t_final"])
        window = {**params, "t_final": t_final / windows}
        x = torch.from_numpy(np.asarray(grid.axis(0), dtype=np.float64))[:, None]   # (n, 1): i / n
        u = self.pinn_initial_state(x, params).detach().numpy()
        frames = [u]
        for _ in range(windows):
            result = self.solve([Instance(params=dict(window), inputs={self.pinn_fields[0]: u})], grid)
            block = result.fields[self.pinn_fields[0]][0]        # (n_snapshots, n), frame 0 = u
            frames.extend(block[1:])
            u = block[-1]
        frames = np.stack(frames)
        h = t_final / (windows * per_window)
        # u_t = F[u] of each snapshot, through the family's own pointwise right-hand side, a few
        # snapshots at a time (each point carries all its snapshot's modes).
        still = SpectralReference(frames, np.zeros_like(frames), h)
        u_t = np.empty_like(frames)
        for start in range(0, len(frames), 8):
            stop = min(start + 8, len(frames))
            t = (h * torch.arange(start, stop, dtype=torch.float64)).repeat_interleave(n)[:, None]
            at_snapshots = lambda y: still(torch.cat([y, t], dim=1))  # noqa: E731
            u_t[start:stop] = self.pointwise_rhs(at_snapshots, x.repeat(stop - start, 1), params).detach().numpy() \
                .reshape(stop - start, n)
        return SpectralReference(frames, u_t, h)

    def pointwise_residual(self, u_fn: PointFunction, x: torch.Tensor,
                           params: Mapping[str, float] | None = None) -> torch.Tensor:
        """``u_t − F[u]`` at space-time points ``x: (N, d + 1)``; returns ``(N,)``."""
        self._check_space_time(x)
        t = x[:, self.dim:]

        def at_own_time(y: torch.Tensor) -> torch.Tensor:
            return u_fn(torch.cat([y, t], dim=1))

        u_t = gradient(u_fn, x)[:, self.dim]
        return u_t - self.pointwise_rhs(at_own_time, x[:, : self.dim], params)

    def boundary_residual(self, u_fn: PointFunction, x: torch.Tensor,
                          params: Mapping[str, float] | None = None) -> torch.Tensor:
        """``u(x, 0) − u₀(x)`` at initial points ``(N, d + 1)``; returns ``(N,)``."""
        self._check_space_time(x)
        return u_fn(x)[:, 0] - self.boundary_value(x, params)

    def _check_space_time(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim + 1:
            raise UserError(f"{self.name} PINN points are (x, t): shape (N, {self.dim + 1}), got {tuple(x.shape)}")
