"""Batched pseudo-spectral solver for 2D incompressible Navier–Stokes in vorticity form.

On the periodic square ``[0, L)²``::

    ω_t + u·∇ω = ν Δω + f,    u = ∇^⊥ψ = (ψ_y, −ψ_x),    −Δψ = ω.

Space: Fourier pseudo-spectral (``rfft2`` layout, ``x`` along axis −2, ``y`` along axis −1), the
advection term ``u ω_x + v ω_y`` formed in physical space and dealiased with the 2/3 rule on both
axes (square truncation, the same as the FNO generator). The retained system is the Galerkin
truncation of the equations, so without viscosity and forcing it conserves energy and enstrophy.

Time: ETDRK4 (Cox–Matthews, :mod:`pde_lab.solvers.spectral`) for ``ω̂_t = −ν|κ|² ω̂ + N(ω̂)``. Why
ETDRK4 rather than the FNO generator's Crank–Nicolson/explicit-Euler or an IMEX Heun scheme: the
step is bounded by the advective CFL condition whatever the scheme (the viscous term is mild at
these viscosities), and at that step a fourth-order method is orders of magnitude more accurate for
twice the FFTs per step of a second-order one; the viscous term is integrated exactly, so the
Taylor–Green decay is reproduced to round-off; and the integrator is the project's tested one.

Step rule, per instance and per output interval ``Δt_out``: the number of steps is the smallest
value of the ladder 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, … (``m·2^p``, ``m ∈ {4…7}``: at most
25 % more steps than needed) with ``dt · κ_max · max_x(|u| + |v|) ≤ cfl`` at the start of the
interval (``κ_max`` the largest retained wavenumber) and at least ``min_steps_per_interval``. If the
speed at the end of the interval gives a Courant number above ``cfl_tolerance · cfl`` the interval
is recomputed with the step for the larger speed. Output times are hit exactly (steps are counted).

Batch independence: an instance's trajectory is the same bytes whatever its batch-mates, on CPU.
Members are regrouped each interval by their own step count; the ETDRK4 coefficients depend on the
member's viscosity only and are computed on the row of distinct values of ``|κ|²`` (a fixed row for
a grid, gathered afterwards); every complex product has a factor with a zero real or imaginary
part, so it rounds as real arithmetic would (see :mod:`pde_lab.solvers.spectral`); and on CPU each
member's FFTs are separate calls of fixed shape, because MKL's batched 2D transforms round a member
differently depending on the batch size (measured: ``rfft2`` of a 64² field alone vs in a batch of two differ by 6e-14). On
CUDA the transforms are batched; results agree with CPU to round-off but not bit for bit.

Why hand-written: no library offers a batched, GPU-capable vorticity solver on torch tensors; the
FNO reference generator is a first-order script with a fixed step.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import SolverFailure
from .spectral import (ETDRK4Coefficients, NonFiniteError, dealias_mask, etdrk4_coefficients, etdrk4_solve,
                       imaginary_factor, multiply_imaginary, wavenumbers)

__all__ = [
    "VorticityBox",
    "VorticitySolution",
    "BlowUpError",
    "solve_vorticity",
    "step_ladder",
    "spectral_upsample_2d",
    "velocity_from_vorticity",
]


class BlowUpError(SolverFailure):
    """A batch member's state became NaN/inf or needed more steps than allowed.

    Attributes:
        members: indices (into the batch given to :func:`solve_vorticity`) of the failed members.
        time: start of the output interval in which it happened.
        reason: what was detected.
    """

    def __init__(self, members: list[int], time: float, reason: str):
        self.members, self.time, self.reason = members, time, reason
        super().__init__(f"batch members {members}: {reason} in the interval starting at t = {time:g}")


def step_ladder(x: float) -> int:
    """The smallest value ``≥ x`` of the ladder 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, …"""
    if x <= 4:
        return max(1, math.ceil(x))
    p = 0
    while 7 * 2**p < x:
        p += 1
    return min(m * 2**p for m in (4, 5, 6, 7) if m * 2**p >= x)


class VorticityBox:
    """Wavenumbers, dealiasing, transforms and the advection term on an ``n × n`` periodic square.

    Spectral arrays have the ``rfft2`` shape ``(..., n, n//2 + 1)``; physical ones ``(..., n, n)`` with
    ``x`` along axis −2.

    Args:
        n: points per axis (even).
        length: side ``L`` of the square.
        device: where the tensors live.
    """

    def __init__(self, n: int, length: float = 1.0, device: torch.device | str = "cpu"):
        if n < 4 or n % 2:
            raise ValueError(f"VorticityBox needs an even n >= 4, got {n}")
        self.n, self.length = int(n), float(length)
        self.device = torch.device(device)
        self.m = self.n // 2 + 1
        kx = wavenumbers(n, length, real=False, device=self.device)[:, None]
        ky = wavenumbers(n, length, device=self.device)[None, :]
        self.kx, self.ky = kx.expand(n, self.m), ky.expand(n, self.m)
        self.k2 = kx**2 + ky**2                                                     # (n, m)
        inv_k2 = torch.where(self.k2 > 0, 1.0 / torch.where(self.k2 > 0, self.k2, 1.0), 0.0)
        self.mask = dealias_mask(n, real=False, device=self.device)[:, None] & dealias_mask(n, device=self.device)[None, :]
        # û = i κ_y ψ̂, v̂ = −i κ_x ψ̂ (ψ̂ = ω̂/|κ|²), ω̂_x = i κ_x ω̂, ω̂_y = i κ_y ω̂.
        self._grad_factors = imaginary_factor(torch.stack(
            (self.ky * inv_k2, -self.kx * inv_k2, self.kx, self.ky)))              # (4, n, m)
        # (−u, −v, ω_x, ω_y): their products give −(u·∇ω) with no negation pass.
        self._neg_advection_factors = self._grad_factors * torch.tensor([-1.0, -1.0, 1.0, 1.0],
                                                                        dtype=torch.float64, device=self.device)[:, None, None]
        self.kappa_max = 2.0 * math.pi / length * ((n - 1) // 3)
        # Weight of each rfft2 coefficient in a sum over the full spectrum (Parseval).
        w = torch.full((self.m,), 2.0, dtype=torch.float64, device=self.device)
        w[0] = 1.0
        w[-1] = 1.0  # the Nyquist column of an even n appears once
        self._parseval = w[None, :] / float(n) ** 4 * length**2
        self._inv_k2 = inv_k2
        self._loop = self.device.type == "cpu"
        self._work: tuple[torch.Tensor, ...] | None = None
        # Members stepped together on CPU: enough to amortise the per-call overhead of the pointwise
        # work, few enough for a group's arrays to stay in cache. Measured (32 members, one thread,
        # step / FFT floor): 64²: 1.67, 1.30, 1.29, 1.72 for groups of 1, 4, 8, 32; 128²: 1.40, 1.27,
        # 1.35–1.51, 1.73; 256²: 1.32, 1.36, 1.74, 1.61 (benchmarks/navier_stokes_step.py --group).
        self.cpu_group = max(1, min(8, (1 << 16) // (n * n)))
        # Distinct values of |κ|² (a fixed row for this grid) for the ETDRK4 coefficients.
        mx = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64, device=self.device)[:, None]
        my = torch.fft.rfftfreq(n, 1.0 / n, dtype=torch.float64, device=self.device)[None, :]
        index2 = (mx**2 + my**2).round().to(torch.int64).reshape(-1)
        self._k2_unique, self._k2_index = torch.unique(index2, return_inverse=True)

    # ---- transforms --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``rfft2`` over the last two axes: ``(B, *lead, n, n)`` float64 → ``(B, *lead, n, m)``."""
        if not self._loop:
            return torch.fft.rfft2(x)
        out = torch.empty(x.shape[:-1] + (self.m,), dtype=torch.complex128, device=x.device)
        for i in range(x.shape[0]):
            out[i] = torch.fft.rfft2(x[i].clone())
        return out

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """``irfft2`` over the last two axes: ``(B, *lead, n, m)`` → ``(B, *lead, n, n)`` float64."""
        s = (self.n, self.n)
        if not self._loop:
            return torch.fft.irfft2(x, s=s)
        out = torch.empty(x.shape[:-1] + (self.n,), dtype=torch.float64, device=x.device)
        for i in range(x.shape[0]):
            out[i] = torch.fft.irfft2(x[i].clone(), s=s)
        return out

    # ---- physics -----------------------------------------------------------------------------
    def velocity(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``(u, v)`` in physical space: ``(B, n, m)`` spectra → ``(B, 2, n, n)``."""
        return self.inverse(multiply_imaginary(self._grad_factors[:2], w_hat[:, None]))

    def tendency(self, w_hat: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``−F[u ω_x + v ω_y]`` for spectra ``(B, n, m)``, not dealiased; returns ``(B, n, m)``
        (written into ``out`` when given).

        The solver's nonlinear term: its dealiasing is applied by the ETDRK4 coefficients
        (:meth:`coefficients`), so no masking pass is spent on each of a step's four evaluations.
        """
        if not self._loop:
            g = torch.fft.irfft2(self._neg_advection_factors * w_hat[:, None], s=(self.n, self.n))
            return torch.fft.rfft2(torch.addcmul(g[:, 0] * g[:, 2], g[:, 1], g[:, 3]), out=out)
        # On CPU the transforms are per member (see the module docstring) and the pointwise work is
        # batched: every product in it rounds the same way whatever a member's position.
        batch = w_hat.shape[0]
        if self._work is None or self._work[0].shape[0] != batch:
            self._work = (torch.empty((batch, 4, self.n, self.m), dtype=torch.complex128),
                          torch.empty((batch, 4, self.n, self.n), dtype=torch.float64),
                          torch.empty((batch, self.n, self.n), dtype=torch.float64))
        spec, phys, prod = self._work
        out = torch.empty_like(w_hat) if out is None else out
        torch.mul(self._neg_advection_factors, w_hat[:, None], out=spec)
        for i in range(batch):
            torch.fft.irfft2(spec[i], s=(self.n, self.n), out=phys[i])
        torch.mul(phys[:, 0], phys[:, 2], out=prod)
        prod += phys[:, 1] * phys[:, 3]
        for i in range(batch):
            torch.fft.rfft2(prod[i], out=out[i])
        return out

    def step_term(self, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The nonlinear term for :func:`~pde_lab.solvers.spectral.etdrk4_step` on flat states
        ``(batch, n·m)``: :meth:`tendency`, written into four output arrays taken in turn.

        A step evaluates its nonlinear term four times and needs the values only within the step, so
        an output is not overwritten while in use; reusing them saves an allocation per evaluation.
        """
        outputs = [torch.empty((batch, self.n, self.m), dtype=torch.complex128, device=self.device) for _ in range(4)]
        calls = itertools.count()

        def term(v: torch.Tensor) -> torch.Tensor:
            out = outputs[next(calls) % 4]
            return self.tendency(v.view(batch, self.n, self.m), out=out).view(batch, -1)

        return term

    def advection(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``P F[u ω_x + v ω_y]``, dealiased, for spectra ``(B, n, m)``; returns ``(B, n, m)``."""
        zero = torch.zeros((), dtype=torch.complex128, device=w_hat.device)
        return torch.where(self.mask, -self.tendency(w_hat), zero)

    def coefficients(self, nu: float, dt: float, n_contour: int = 64) -> ETDRK4Coefficients:
        """ETDRK4 coefficients of ``−ν|κ|²`` for one member, shape ``(1, n·m)``, with the 2/3-rule
        dealiasing of the nonlinear term built in (:meth:`ETDRK4Coefficients.dealiased`).

        Computed once per distinct ``|κ|²`` and gathered: the row of distinct values is fixed by the
        grid, so the result depends on ``(ν, dt)`` alone, and costs a few ms instead of seconds.
        """
        scale = (2.0 * math.pi / self.length) ** 2
        z_row = -nu * scale * self._k2_unique.to(torch.float64)
        c = etdrk4_coefficients(z_row, dt, n_contour)
        take = lambda t: t[self._k2_index].reshape(1, -1)  # noqa: E731
        full = ETDRK4Coefficients(c.dt, take(c.E), take(c.E2), take(c.Q), take(c.f1), take(c.f2), take(c.f3), real=True)
        return full.dealiased(self.mask.reshape(1, -1))

    def energy_enstrophy(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``E = ½∫|u|²`` and ``Z = ½∫ω²`` over the square from spectra ``(..., n, m)``; each ``(...)``."""
        p = w_hat.real**2 + w_hat.imag**2
        z = 0.5 * (p * self._parseval).sum(dim=(-2, -1))
        e = 0.5 * (p * self._inv_k2 * self._parseval).sum(dim=(-2, -1))
        return e, z

    def spectral_tail(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Largest ``|ω̂|`` among the outer 10 % of retained modes (``max(|m_x|, |m_y|) > 0.9 K``) over
        the largest ``|ω̂|``, for spectra ``(B, S, n, m)``; max over ``S``, shape ``(B,)``."""
        k_max = (self.n - 1) // 3
        mx = torch.fft.fftfreq(self.n, 1.0 / self.n, device=w_hat.device).abs()[:, None]
        my = torch.fft.rfftfreq(self.n, 1.0 / self.n, device=w_hat.device)[None, :]
        top = self.mask & (torch.maximum(mx, my) > 0.9 * k_max)
        mag = w_hat.abs()
        peak = mag.amax(dim=(-2, -1)).clamp_min(torch.finfo(torch.float64).tiny)
        tail = torch.where(top, mag, torch.zeros((), dtype=mag.dtype, device=mag.device)).amax(dim=(-2, -1))
        return (tail / peak).amax(dim=-1)


@dataclass
class VorticitySolution:
    """Output of :func:`solve_vorticity` for a batch of ``B`` instances and ``S`` output times.

    Attributes:
        vorticity: ``(B, S, n/stride, n/stride)`` float64, every ``stride``-th solver point per axis.
        times: ``(S,)`` output times.
        energy, enstrophy: ``(B, S)`` ``½∫|u|²`` and ``½∫ω²`` from the solver-grid spectrum.
        steps: ``(B,)`` steps taken (recomputed intervals not counted).
        dt_min, dt_max: ``(B,)`` smallest and largest step used.
        cfl_max: ``(B,)`` largest Courant number ``dt κ_max max(|u|+|v|)`` seen at an interval's start
            or end with that interval's step.
        redone: ``(B,)`` intervals recomputed with a smaller step.
        spectral_tail: ``(B,)`` resolution diagnostic (:meth:`VorticityBox.spectral_tail`), max over
            output times after the first.
    """

    vorticity: torch.Tensor
    times: np.ndarray
    energy: torch.Tensor
    enstrophy: torch.Tensor
    steps: np.ndarray
    dt_min: np.ndarray
    dt_max: np.ndarray
    cfl_max: np.ndarray
    redone: np.ndarray
    spectral_tail: np.ndarray


def solve_vorticity(
    w0: torch.Tensor,
    nu: Sequence[float] | torch.Tensor,
    t_final: float,
    n_intervals: int,
    *,
    forcing: torch.Tensor | None = None,
    length: float = 1.0,
    cfl: float = 1.0,
    cfl_tolerance: float = 1.5,
    min_steps_per_interval: int = 1,
    max_steps_per_interval: int = 1 << 16,
    fixed_steps_per_interval: int | None = None,
    output_stride: int = 1,
    n_contour: int = 64,
) -> VorticitySolution:
    """Solve a batch of periodic vorticity problems with pseudo-spectral ETDRK4.

    Args:
        w0: initial vorticity, ``(B, n, n)`` on the solver grid (``x`` along axis −2), float64; it
            is dealiased (2/3 rule) before the first step. Its device is where the work happens.
        nu: viscosities, ``(B,)``, positive or zero.
        t_final: final time; output at ``n_intervals + 1`` equally spaced times from 0.
        n_intervals: number of output intervals.
        forcing: ``f``, ``(n, n)`` shared or ``(B, n, n)`` per instance; ``None`` for no forcing.
        length: side of the square.
        cfl: target Courant number ``dt κ_max max(|u| + |v|)`` (ETDRK4 is stable to about 2.8).
        cfl_tolerance: recompute an interval when its end-of-interval Courant number exceeds
            ``cfl_tolerance · cfl``.
        min_steps_per_interval, max_steps_per_interval: bounds on steps per interval; needing more
            than the maximum counts as a blow-up.
        fixed_steps_per_interval: use exactly this many steps everywhere (convergence studies).
        output_stride: keep every ``output_stride``-th point per axis in ``vorticity``.
        n_contour: contour points of the ETDRK4 coefficients.

    Returns:
        :class:`VorticitySolution`.

    Raises:
        BlowUpError: a member turned NaN/inf or needed more than ``max_steps_per_interval`` steps.
    """
    if w0.dim() != 3 or w0.shape[-1] != w0.shape[-2]:
        raise ValueError(f"w0 must have shape (B, n, n), got {tuple(w0.shape)}")
    B, n = w0.shape[0], w0.shape[-1]
    if n % output_stride:
        raise ValueError(f"output_stride {output_stride} must divide n = {n}")
    if not (t_final > 0 and n_intervals >= 1):
        raise ValueError(f"need t_final > 0 and n_intervals >= 1, got {t_final}, {n_intervals}")
    device = w0.device
    box = VorticityBox(n, length, device)
    nus = [float(v) for v in (nu.tolist() if isinstance(nu, torch.Tensor) else nu)]
    if len(nus) != B or any(not (v >= 0) for v in nus):
        raise ValueError(f"nu must hold {B} non-negative values, got {nus}")
    zero = torch.zeros((), dtype=torch.complex128, device=device)
    w_hat = torch.where(box.mask, box.forward(w0.to(torch.float64)), zero)
    if forcing is None:
        f_hat = None
    else:
        f = forcing.to(device=device, dtype=torch.float64)
        f = f.expand(B, n, n) if f.dim() == 2 else f
        f_hat = torch.where(box.mask, box.forward(f.contiguous()), zero)
    dt_out = t_final / n_intervals
    s_out = n // output_stride
    out = torch.empty((B, n_intervals + 1, s_out, s_out), dtype=torch.float64, device=device)
    energy = torch.empty((B, n_intervals + 1), dtype=torch.float64, device=device)
    enstrophy = torch.empty_like(energy)
    spectra_tail = np.zeros(B)
    steps_total = np.zeros(B, dtype=np.int64)
    dt_min, dt_max = np.full(B, np.inf), np.zeros(B)
    cfl_seen, redone = np.zeros(B), np.zeros(B, dtype=np.int64)
    cache: dict[tuple[int, int], tuple[ETDRK4Coefficients, tuple | None]] = {}

    def record(slot: int, state: torch.Tensor) -> None:
        out[:, slot] = box.inverse(state)[:, ::output_stride, ::output_stride]
        e, z = box.energy_enstrophy(state)
        energy[:, slot], enstrophy[:, slot] = e, z
        if slot > 0:
            tail = box.spectral_tail(state[:, None]).cpu().numpy()
            np.maximum(spectra_tail, tail, out=spectra_tail)

    def speeds(state: torch.Tensor) -> np.ndarray:
        uv = box.velocity(state)
        return (uv[:, 0].abs() + uv[:, 1].abs()).amax(dim=(-2, -1)).cpu().numpy()

    def steps_for(speed: float) -> int:
        if fixed_steps_per_interval is not None:
            return int(fixed_steps_per_interval)
        need = dt_out * box.kappa_max * speed / cfl
        return max(step_ladder(need), int(min_steps_per_interval))

    def coefficients(member: int, steps: int) -> tuple[ETDRK4Coefficients, tuple | None]:
        key = (member, steps)
        if key not in cache:
            c = box.coefficients(nus[member], dt_out / steps, n_contour)
            cache[key] = c, None if f_hat is None else c.forcing_terms(f_hat[member].reshape(1, -1))
        return cache[key]

    def advance_group(members: list[int], steps: int, state: torch.Tensor, t0: float) -> torch.Tensor:
        parts = [coefficients(i, steps) for i in members]
        if len(parts) == 1:
            c, forcing = parts[0]
        else:
            c = ETDRK4Coefficients(parts[0][0].dt, *(torch.cat([getattr(p, k) for p, _ in parts])
                                                     for k in ("E", "E2", "Q", "f1", "f2", "f3")), real=True)
            forcing = None if f_hat is None else tuple(torch.cat(t) for t in zip(*(f for _, f in parts)))
        shape = state.shape
        try:
            snap, _ = etdrk4_solve(state.reshape(shape[0], -1), c.E, box.step_term(shape[0]), c.dt, steps, [steps],
                                   coefficients=c, forcing=forcing)
        except NonFiniteError as err:
            raise BlowUpError([members[j] for j in err.members], t0, "non-finite vorticity") from err
        return snap[:, 0].reshape(shape)

    def advance(members: list[int], steps: int, state: torch.Tensor, t0: float) -> torch.Tensor:
        if device.type != "cpu":
            return advance_group(members, steps, state, t0)
        # On CPU in groups of box.cpu_group members: batching the pointwise work saves per-call
        # overhead, while a group's arrays still fit in cache.
        k = box.cpu_group
        return torch.cat([advance_group(members[j:j + k], steps, state[j:j + k], t0) for j in range(0, len(members), k)])

    record(0, w_hat)
    for interval in range(n_intervals):
        t0 = interval * dt_out
        start_speed = speeds(w_hat)
        plan = [steps_for(s) for s in start_speed]
        new = torch.empty_like(w_hat)
        pending = list(range(B))
        while pending:
            too_many = [i for i in pending if plan[i] > max_steps_per_interval]
            if too_many:
                raise BlowUpError(too_many, t0, f"more than max_steps_per_interval = {max_steps_per_interval} "
                                                 "steps needed (velocity too large)")
            retry = []
            for steps in sorted({plan[i] for i in pending}):
                members = [i for i in pending if plan[i] == steps]
                new[members] = advance(members, steps, w_hat[members], t0)
                end_speed = speeds(new[members])
                for j, i in enumerate(members):
                    dt = dt_out / steps
                    c_start, c_end = (dt * box.kappa_max * s for s in (start_speed[i], end_speed[j]))
                    if fixed_steps_per_interval is None and c_end > cfl_tolerance * cfl:
                        plan[i] = steps_for(max(start_speed[i], end_speed[j]))
                        if plan[i] <= steps:
                            plan[i] = step_ladder(steps + 1)
                        redone[i] += 1
                        retry.append(i)
                        continue
                    steps_total[i] += steps
                    dt_min[i], dt_max[i] = min(dt_min[i], dt), max(dt_max[i], dt)
                    cfl_seen[i] = max(cfl_seen[i], c_start, c_end)
            pending = retry
        # Keep only the coefficients of the steps just used: a member's step rarely changes.
        cache = {k: v for k, v in cache.items() if plan[k[0]] == k[1]}
        w_hat = new
        record(interval + 1, w_hat)
    return VorticitySolution(
        vorticity=out, times=np.linspace(0.0, t_final, n_intervals + 1), energy=energy, enstrophy=enstrophy,
        steps=steps_total, dt_min=dt_min, dt_max=dt_max, cfl_max=cfl_seen, redone=redone, spectral_tail=spectra_tail,
    )


def spectral_upsample_2d(w: np.ndarray, n_fine: int) -> np.ndarray:
    """Trigonometric interpolation of a periodic ``(n, n)`` field onto ``(n_fine, n_fine)``, ``n_fine ≥ n``.

    The Nyquist coefficients of an even ``n`` (``cos(π n x)`` on the coarse grid) are split evenly
    between ``±n/2`` on the fine grid so the interpolant is real; the fine field equals ``w`` at the
    coarse points to round-off. Returns float64 ``(n_fine, n_fine)``.
    """
    w = np.asarray(w, dtype=np.float64)
    n = w.shape[-1]
    if w.shape != (n, n) or n_fine < n:
        raise ValueError(f"need a square field and n_fine >= n, got {w.shape} and {n_fine}")
    c = np.fft.fft2(w) / n**2
    if n_fine == n:
        return w.copy()
    fine = np.zeros((n_fine, n_fine), dtype=np.complex128)
    h = n // 2
    idx = list(range(h)) + list(range(-h, 0)) if n % 2 == 0 else list(range(h + 1)) + list(range(-h, 0))
    idx = np.array(idx)
    fine[np.ix_(idx % n_fine, idx % n_fine)] = c
    if n % 2 == 0:
        # Mode −n/2 of the coarse grid stands for cos(π n x): half of it goes to +n/2.
        for axis in (0, 1):
            sl_src = [slice(None), slice(None)]
            sl_dst = [slice(None), slice(None)]
            sl_src[axis] = (-h) % n_fine
            sl_dst[axis] = h
            half = 0.5 * fine[tuple(sl_src)]
            fine[tuple(sl_src)] = half
            fine[tuple(sl_dst)] = half
    return np.real(np.fft.ifft2(fine)) * n_fine**2


def velocity_from_vorticity(w: np.ndarray | torch.Tensor, length: float = 1.0):
    """Velocity ``(u, v) = (ψ_y, −ψ_x)`` with ``−Δψ = ω`` (zero-mean ``ψ``), spectrally.

    Args:
        w: vorticity ``(..., n, n)``, ``x`` along axis −2, numpy or torch.
        length: side of the square.

    Returns:
        ``(..., n, n, 2)`` float64, same array type as ``w``.
    """
    as_numpy = not isinstance(w, torch.Tensor)
    t = torch.as_tensor(np.asarray(w, dtype=np.float64)) if as_numpy else w.to(torch.float64)
    n = t.shape[-1]
    kx = wavenumbers(n, length, real=False, device=t.device)[:, None]
    ky = wavenumbers(n, length, device=t.device)[None, :]
    if n % 2 == 0:  # odd derivatives of the Nyquist mode are not real: drop it
        # Found by the integer mode index: κ L / 2π rounds off n/2 for many lengths (e.g. 1.3, 11.1).
        mx = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64, device=t.device)[:, None]
        my = torch.fft.rfftfreq(n, 1.0 / n, dtype=torch.float64, device=t.device)[None, :]
        kx = torch.where(mx.abs() == n // 2, 0.0, kx)
        ky = torch.where(my == n // 2, 0.0, ky)
    k2 = kx**2 + ky**2
    inv = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
    wh = torch.fft.rfft2(t)
    u = torch.fft.irfft2(1j * ky * inv * wh, s=(n, n))
    v = torch.fft.irfft2(-1j * kx * inv * wh, s=(n, n))
    out = torch.stack((u, v), dim=-1)
    return out.numpy() if as_numpy else out
