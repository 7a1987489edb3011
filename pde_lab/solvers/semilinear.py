"""A PDE-agnostic driver for semilinear periodic problems ``u_t = L u + N(u)`` in 1D and 2D.

The state is ``C`` scalar components (one for heat or Allen–Cahn, two for Gray–Scott) on a periodic
box, held in Fourier space (``rfftn`` layout). ``L`` is diagonal there — one operator per instance,
e.g. ``−ν|κ|²`` or ``−i a κ`` — and is integrated exactly by the ETDRK4 scheme of
:mod:`pde_lab.solvers.spectral`; ``N`` is a callback, evaluated pseudo-spectrally and dealiased with
the 2/3 rule. This module adds what every PDE family would otherwise restate:

* :class:`PeriodicBox`: wavenumbers, the dealiasing mask, transforms and batch-safe spectral
  derivatives of one box;
* :func:`plan_steps`: the time-step rule. Each output interval of length ``h`` gets ``2^p`` steps,
  the fewest with ``h / 2^p ≤ dt_max`` and ``2^p ≥ min_steps_per_interval``, so every output time is
  hit exactly (steps are counted, time is never accumulated). ``dt_max`` is the smallest of the
  stability/accuracy bounds ``number / rate`` the PDE states per instance — an advective CFL bound
  ``dt · max|u| · κ_max ≤ cfl`` for an explicit transport term, ``dt · rate ≤ number`` for a
  reaction. A linear problem (``N = None``) needs no bound: ETDRK4 is then ``v ← e^{L dt} v``, exact
  for any step, and takes one step per interval.
* :func:`solve_semilinear`: groups the instances by step plan, solves each group as one batch,
  samples the snapshots onto the output grid on the fly (striding a finer solver grid, or evaluating
  the band-limited solution of a coarser one), checks for NaN/inf and raises naming the instance's
  parameters, and records per instance the steps, step sizes, the stability numbers actually used
  and a resolution diagnostic (:func:`spectral_tail`). A first output time ``> 0`` makes the first
  interval a burn-in that is not stored.
* :func:`solver_size` (solver grids ``n · {2, 3, 4, 6, 8, …}``) and :func:`fourier_resample`
  (trigonometric interpolation of stored initial states onto the solver grid).

Batch independence: an instance's result is the same bytes whatever its batch-mates, on CPU. Groups
are formed from the instance's own data only (its step plan); the ETDRK4 coefficients of an instance
are computed from its own operator alone (see :func:`_group_coefficients`); every product in a step
is real arithmetic (see :mod:`pde_lab.solvers.spectral`); 2D transforms are done as 1D transforms
along the last axis (torch's 2D real transform is not batch-independent, see
:meth:`PeriodicBox.to_spectral`). Callbacks must keep to the same rules: act on each member alone,
multiply complex arrays only through :meth:`PeriodicBox.derivative`, :func:`scale_real` or real
arithmetic in physical space.

Why hand-written: no library offers batched, GPU-capable exponential integrators for torch tensors
(see :mod:`pde_lab.solvers.spectral`); the grouping and bookkeeping are specific to this project.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .spectral import (ETDRK4Coefficients, NonFiniteError, dealias_mask, etdrk4_coefficients, etdrk4_step,
                       imaginary_factor, multiply_imaginary, wavenumbers)

__all__ = [
    "PeriodicBox",
    "NonlinearTerm",
    "SemilinearSolution",
    "BlowUpError",
    "plan_steps",
    "solve_semilinear",
    "scale_real",
    "fourier_resample",
    "spectral_tail",
    "time_derivative",
    "solver_size",
]


def scale_real(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g · v`` for complex128 ``v`` and real ``g`` broadcastable to ``v``, in real arithmetic only.

    torch would promote ``g`` to complex and use its complex kernels, whose rounding may depend on an
    element's position in the batch; two real products cannot.
    """
    if g.dtype != torch.float64:
        g = g.to(torch.float64)
    return torch.view_as_complex(torch.view_as_real(v) * g.unsqueeze(-1))


class PeriodicBox:
    """Spectral view of the periodic box ``∏ [0, L_i)`` sampled by ``shape`` points.

    Fields are ``(..., *shape)`` float64 in physical space and ``(..., *spectral_shape)`` complex128 in
    Fourier space, ``spectral_shape = (n_0, …, n_{d−2}, n_{d−1}//2 + 1)`` (the ``rfftn`` layout).

    Attributes:
        shape: points per axis (1 or 2 axes).
        lengths: period per axis.
        kappa: per axis, the angular wavenumbers ``2π m / L_i`` shaped to broadcast against
            ``spectral_shape`` (e.g. ``(n_0, 1)`` and ``(1, n_1//2 + 1)`` in 2D).
        k2: ``|κ|²``, float64 of ``spectral_shape``.
        mask: 2/3-rule mask, bool of ``spectral_shape`` (a mode is kept when kept on every axis).
        kappa_max: per axis, the largest retained ``|κ|`` under the mask.
    """

    def __init__(self, shape: Sequence[int], lengths: Sequence[float], device: torch.device | str = "cpu"):
        self.shape = tuple(int(n) for n in shape)
        self.lengths = tuple(float(x) for x in lengths)
        if len(self.shape) not in (1, 2) or len(self.lengths) != len(self.shape):
            raise ValueError(f"PeriodicBox needs 1 or 2 axes with one length each, got {shape} and {lengths}")
        if any(n < 4 for n in self.shape) or any(not x > 0 for x in self.lengths):
            raise ValueError(f"PeriodicBox needs >= 4 points and positive lengths per axis, got {shape}, {lengths}")
        self.device = torch.device(device)
        d = len(self.shape)
        self.dims = tuple(range(-d, 0))
        kappa, masks = [], []
        for i, (n, length) in enumerate(zip(self.shape, self.lengths)):
            last = i == d - 1
            k = wavenumbers(n, length, real=last, device=self.device)
            m = dealias_mask(n, real=last, device=self.device)
            view = [1] * d
            view[i] = k.numel()
            kappa.append(k.reshape(view))
            masks.append(m.reshape(view))
        self.kappa = tuple(kappa)
        self.k2 = sum(k * k for k in self.kappa).expand(self.spectral_shape).contiguous()
        mask = masks[0]
        for m in masks[1:]:
            mask = mask & m
        self.mask = mask.expand(self.spectral_shape).contiguous()
        self._factors: dict[tuple[int, int], torch.Tensor] = {}
        self.kappa_max = tuple(2.0 * math.pi * ((n - 1) // 3) / length for n, length in zip(self.shape, self.lengths))

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        return self.shape[:-1] + (self.shape[-1] // 2 + 1,)

    def to_spectral(self, u: torch.Tensor) -> torch.Tensor:
        """``rfftn`` over the spatial axes: ``(..., *shape)`` real → ``(..., *spectral_shape)`` complex128.

        In 2D as two passes of 1D transforms along the last, contiguous axis: torch's (MKL's) 2D
        real transform rounds a field differently depending on how many fields share the call
        (seen for ``n ≤ 64``), 1D transforms along the last axis do not.
        """
        if u.dtype != torch.float64:
            u = u.to(torch.float64)
        v = torch.fft.rfft(u, dim=-1)
        if self.dim == 2:
            v = torch.fft.fft(v.transpose(-1, -2).contiguous(), dim=-1).transpose(-1, -2).contiguous()
        return v

    def to_physical(self, v: torch.Tensor) -> torch.Tensor:
        """``irfftn`` over the spatial axes: ``(..., *spectral_shape)`` → ``(..., *shape)`` float64 (in 2D
        by 1D passes, see :meth:`to_spectral`)."""
        if self.dim == 2:
            # irfft along a strided axis takes another code path than along a contiguous one.
            v = torch.fft.ifft(v.transpose(-1, -2).contiguous(), dim=-1).transpose(-1, -2).contiguous()
        return torch.fft.irfft(v, n=self.shape[-1], dim=-1)

    def dealias(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` with the modes outside the 2/3-rule mask set to zero; shape unchanged."""
        return torch.where(self.mask, v, torch.zeros((), dtype=v.dtype, device=v.device))

    def derivative_factor(self, axis: int, order: int = 1) -> torch.Tensor:
        """The multiplier of ``∂^order/∂x_axis^order``, prepared for :meth:`apply_factor`.

        Even orders give the real ``(−1)^{order/2} κ^order`` (float64, broadcast shape of ``kappa[axis]``);
        odd orders give ``imaginary_factor(g)`` with ``g = (−1)^{(order−1)/2} κ^order`` and the Nyquist
        mode of an even axis dropped (its odd derivative is not real): complex128 ``i g``, same shape.
        Cached per ``(axis, order)``.
        """
        key = (axis, order)
        if key not in self._factors:
            if order < 0:
                raise ValueError(f"derivative order must be >= 0, got {order}")
            k = self.kappa[axis]
            if order % 2 == 0:
                self._factors[key] = (-1.0) ** (order // 2) * k**order
            else:
                n = self.shape[axis]
                m = torch.round(k * self.lengths[axis] / (2.0 * math.pi))
                g = torch.where(2 * m.abs() == n, torch.zeros_like(k), (-1.0) ** (order // 2) * k**order)
                self._factors[key] = imaginary_factor(g)
        return self._factors[key]

    @staticmethod
    def apply_factor(factor: torch.Tensor, v: torch.Tensor, odd: bool) -> torch.Tensor:
        """``factor · v`` for a factor from :meth:`derivative_factor` (``odd``: an odd order), or any
        real factor scaled by per-member numbers, in real arithmetic."""
        return multiply_imaginary(factor, v) if odd else scale_real(v, factor)

    def derivative(self, v: torch.Tensor, axis: int, order: int = 1) -> torch.Tensor:
        """``∂^order/∂x_axis^order`` of ``v`` (Fourier space, ``(..., *spectral_shape)``), batch-safe.

        Odd derivatives drop the Nyquist mode of an even axis (its derivative is not real).
        """
        return self.apply_factor(self.derivative_factor(axis, order), v, order % 2 == 1)

    def laplacian(self, v: torch.Tensor) -> torch.Tensor:
        """``Δv`` in Fourier space, same shape as ``v``."""
        return scale_real(v, -self.k2)

    def __repr__(self) -> str:
        return f"PeriodicBox(shape={self.shape}, lengths={self.lengths}, device={self.device})"


#: A factory of the nonlinear term, called once per group of instances solved together:
#: ``nonlinear(box, coefficients)`` returns ``N``, mapping the state ``v`` ``(b, C, *spectral_shape)``
#: complex128 to ``N(v)`` of the same shape (the driver applies the 2/3 rule). ``coefficients`` holds the
#: group's per-instance numbers, each ``(b, 1, *[1]*d)`` float64 so that they broadcast against physical
#: ``(b, C, *shape)`` and spectral fields alike. Precompute per-group factors in the factory, not in ``N``.
NonlinearTerm = Callable[[PeriodicBox, Mapping[str, torch.Tensor]], Callable[[torch.Tensor], torch.Tensor]]


class BlowUpError(NonFiniteError):
    """A member of a solve turned NaN/inf.

    Attributes:
        members: indices (in the caller's list of instances) of the members that blew up.
        step: steps taken by then; ``time``: the time reached.
    """

    def __init__(self, members: list[int], step: int, time: float, message: str):
        super().__init__(members, step)
        self.time = time
        self.args = (message,)

    def __str__(self) -> str:
        return self.args[0]


def plan_steps(
    intervals: Sequence[float],
    dt_max: float,
    min_steps_per_interval: int = 1,
    burn_in: bool = False,
) -> tuple[int, ...]:
    """Steps per interval: for each length ``h`` the fewest ``2^p`` with ``h / 2^p ≤ dt_max`` and
    ``2^p ≥ min_steps_per_interval``.

    Powers of two make halving ``dt`` refine the same time grid and let instances with similar bounds
    share a batch.

    Args:
        intervals: ``(I,)`` positive interval lengths.
        dt_max: the largest step allowed (``inf`` for none).
        min_steps_per_interval: accuracy floor for output intervals.
        burn_in: the first interval leads up to the first stored time and is not itself stored: it
            obeys ``dt_max`` (stability) but not the accuracy floor.

    Returns:
        ``(I,)`` tuple of ints.
    """
    if not dt_max > 0:
        raise ValueError(f"dt_max must be positive, got {dt_max!r}")
    out = []
    for j, h in enumerate(intervals):
        if not h > 0:
            raise ValueError(f"output intervals must be positive, got {h!r}")
        floor = 1 if (burn_in and j == 0) else min_steps_per_interval
        steps = 1
        # A relative slack of 1e-12 keeps a bound met exactly (up to rounding) from doubling the steps.
        while steps < floor or h / steps > dt_max * (1.0 + 1e-12):
            steps *= 2
            if steps > 2**40:
                raise ValueError(f"interval {h} with dt_max {dt_max} needs more than 2^40 steps")
        out.append(steps)
    return tuple(out)


@dataclass
class SemilinearSolution:
    """What :func:`solve_semilinear` returns for ``B`` instances.

    Attributes:
        u: ``(B, T, C, *output_shape)`` float64 tensor (on the solve's device): the snapshots, sampled
            from the solver grid (see ``output_shape`` of :func:`solve_semilinear`).
        times: ``(T,)`` output times.
        steps: ``(B,)`` total steps taken (including any interval before ``times[0]``).
        steps_per_interval: ``(B, I)`` steps in each interval (``I = T − 1``, or ``T`` when
            ``times[0] > 0``: the first interval then runs from 0 to ``times[0]``).
        dt: ``(B, I)`` step size in each interval.
        dt_max: ``(B,)`` the bound the plan respected.
        numbers: per step limit ``name``, ``(B,)`` the achieved ``max(dt) · rate`` (a CFL number, say).
        spectral_tail: ``(B,)`` resolution diagnostic, see :func:`spectral_tail` (``nan`` when the
            solve was not dealiased).
    """

    u: torch.Tensor
    times: np.ndarray
    steps: np.ndarray
    steps_per_interval: np.ndarray
    dt: np.ndarray
    dt_max: np.ndarray
    numbers: dict[str, np.ndarray] = field(default_factory=dict)
    spectral_tail: np.ndarray | None = None


def spectral_tail(v: torch.Tensor, box: PeriodicBox) -> torch.Tensor:
    """Resolution diagnostic per member: the largest ``|v̂|`` in the outer 10 % of the retained modes
    (``max_i |m_i| / m_max_i > 0.9``) relative to the largest ``|v̂|`` over nonzero modes, maximised
    over components.

    Args:
        v: ``(b, C, *spectral_shape)`` complex128, dealiased.
        box: its box.

    Returns:
        ``(b,)`` float64. Computed with real arithmetic only, so it is batch-independent too.
    """
    outer = torch.zeros(box.spectral_shape, dtype=torch.bool, device=v.device)
    nonzero = torch.zeros_like(outer)
    for k, n, length in zip(box.kappa, box.shape, box.lengths):
        m = torch.round(k.abs() * length / (2.0 * math.pi))
        m_max = (n - 1) // 3
        outer = outer | (m > 0.9 * m_max)
        nonzero = nonzero | (m > 0)
    outer = outer & box.mask
    vr = torch.view_as_real(v)
    mag = torch.sqrt(vr[..., 0] ** 2 + vr[..., 1] ** 2).flatten(1)          # (b, C·K)
    o = outer.expand(v.shape[1:]).flatten()
    nz = nonzero.expand(v.shape[1:]).flatten()
    top = mag[:, o].amax(dim=1) if bool(o.any()) else torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    peak = mag[:, nz].amax(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    return top / peak


def _group_coefficients(linear: torch.Tensor, dt: float, n_contour: int) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for the per-member operators ``linear`` ``(b, C, *spec)``, same shape.

    The coefficients are elementwise functions of ``z = L dt``, and an operator built from ``|κ|²``
    takes far fewer distinct values than it has entries (about a quarter in 2D), so each distinct
    row (instances sharing their parameters share a row) is reduced to its distinct values, their
    coefficients are computed as one row (see :func:`pde_lab.solvers.spectral.etdrk4_coefficients`)
    and gathered back. Every step here depends only on the member's own row, so a member's
    coefficients do not depend on its batch-mates.
    """
    b = linear.shape[0]
    rows = linear.reshape(b, -1)
    host = rows.detach().cpu()
    host_real = torch.view_as_real(host).reshape(b, -1) if torch.is_complex(host) else host
    keys: dict[bytes, int] = {}
    which = [keys.setdefault(host_real[r].numpy().tobytes(), len(keys)) for r in range(b)]
    parts: dict[str, list[torch.Tensor]] = {}
    real = True
    for j in range(len(keys)):
        row = rows[which.index(j)]
        flat = torch.view_as_real(row) if torch.is_complex(row) else row.unsqueeze(-1)
        values, inverse = torch.unique(flat, dim=0, return_inverse=True)
        distinct = torch.view_as_complex(values.contiguous()) if torch.is_complex(row) else values[:, 0]
        c = etdrk4_coefficients(distinct, dt, n_contour)
        real = c.real
        for f in dataclasses.fields(c):
            if f.name not in ("dt", "real"):
                parts.setdefault(f.name, []).append(getattr(c, f.name).index_select(0, inverse))
    idx = torch.tensor(which, device=linear.device)
    full = {k: torch.stack(v).index_select(0, idx).reshape(linear.shape) for k, v in parts.items()}
    return ETDRK4Coefficients(float(dt), real=real, **full)


class _Interpolator:
    """Evaluate a dealiased spectral state on a finer grid: ``(b, C, *spec)`` → ``(b, C, *out_shape)``.

    The retained modes are copied into the larger spectrum (an exact copy, batch-safe) and scaled by
    ``N_out / N_in`` for ``irfftn``'s normalisation; the Nyquist modes are zero after dealiasing, so no
    mode needs splitting.
    """

    def __init__(self, box: PeriodicBox, out_shape: tuple[int, ...]):
        self.box, self.out_shape = box, out_shape
        self.same = out_shape == box.shape
        d = box.dim
        self.src, self.dst = [], []
        for i, (n, m) in enumerate(zip(box.shape, out_shape)):
            if i == d - 1:
                self.src.append([slice(0, (n + 1) // 2)])
                self.dst.append([slice(0, (n + 1) // 2)])
            else:
                pos, neg = (n + 1) // 2, (n - 1) // 2
                self.src.append([slice(0, pos), slice(n - neg, n)])
                self.dst.append([slice(0, pos), slice(m - neg, m)])
        self.scale = torch.tensor(float(np.prod(out_shape)) / float(np.prod(box.shape)), dtype=torch.float64,
                                  device=box.device)
        self.spec_out = out_shape[:-1] + (out_shape[-1] // 2 + 1,)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if self.same:
            return self.box.to_physical(v)
        w = torch.zeros(v.shape[:2] + self.spec_out, dtype=v.dtype, device=v.device)
        for src, dst in zip(itertools.product(*self.src), itertools.product(*self.dst)):
            w[(Ellipsis,) + dst] = v[(Ellipsis,) + src]
        w = scale_real(w, self.scale)
        if len(self.out_shape) == 2:
            w = torch.fft.ifft(w.transpose(-1, -2).contiguous(), dim=-1).transpose(-1, -2).contiguous()
        return torch.fft.irfft(w, n=self.out_shape[-1], dim=-1)


def _exponential_step(c: ETDRK4Coefficients, v: torch.Tensor) -> torch.Tensor:
    """``e^{L dt} v``: ETDRK4 with ``N = 0``, without evaluating the zero nonlinear term; in real
    arithmetic (see :func:`scale_real`)."""
    if c.real:
        return scale_real(v, c.E.real)
    vr, er = torch.view_as_real(v), torch.view_as_real(c.E)
    a, b, x, y = vr[..., 0], vr[..., 1], er[..., 0], er[..., 1]
    return torch.complex(a * x - b * y, a * y + b * x)


def _describe(i: int, instance_names: Sequence[str] | None) -> str:
    return f"instance {i}" if instance_names is None else instance_names[i]


def solve_semilinear(
    box: PeriodicBox,
    u0: torch.Tensor | np.ndarray,
    linear: torch.Tensor,
    nonlinear: NonlinearTerm | None,
    times: Sequence[float],
    *,
    step_limits: Mapping[str, tuple[np.ndarray | Sequence[float], float]] | None = None,
    min_steps_per_interval: int = 1,
    dt_max: np.ndarray | Sequence[float] | float | None = None,
    coefficients: Mapping[str, np.ndarray | Sequence[float]] | None = None,
    dealias: bool = True,
    output_shape: Sequence[int] | None = None,
    instance_names: Sequence[str] | None = None,
    n_contour: int = 64,
    check_every: int = 256,
) -> SemilinearSolution:
    """Solve ``B`` instances of ``v_t = L v + P N(v)`` (Fourier space) with ETDRK4, grouped by step plan.

    Args:
        box: the solver grid; its device is where the arithmetic runs.
        u0: ``(B, C, *box.shape)`` initial states (physical space, cast to float64). With ``dealias``
            they are filtered by the 2/3 rule first (upsample stored states with
            :func:`fourier_resample` to a grid at least twice as fine to keep every stored mode).
        linear: ``(B, C, *box.spectral_shape)`` diagonal of ``L`` per instance, float64 (real ``L``) or
            complex128, on any device.
        nonlinear: ``N`` (see :data:`NonlinearTerm`), or ``None`` for a linear problem.
        times: ``(T,)`` increasing output times, ``times[0] ≥ 0``; the state at ``t = 0`` is ``u0``.
            With ``times[0] > 0`` the solve first runs from 0 to ``times[0]`` (a burn-in whose start
            is not stored).
        step_limits: ``name → (rates (B,), number)``: each instance's step obeys
            ``dt · rate ≤ number`` (``rate`` in 1/time; ``0`` means no bound), e.g.
            ``"cfl": (max|u| · κ_max, 1.0)``.
        min_steps_per_interval: accuracy floor on steps per output interval.
        dt_max: an extra per-instance (``(B,)``) or shared bound on the step.
        coefficients: ``name → (B,)`` per-instance numbers handed to ``nonlinear`` for its group.
        dealias: apply the 2/3 rule to ``u0`` and to every ``N(v)``.
        output_shape: points per axis of the snapshots. A divisor of ``box.shape``: every
            ``box.shape[i] // output_shape[i]``-th solver point is kept (exact point values). Finer on
            every axis: the solver's band-limited solution is evaluated there by zero-padding its
            spectrum (exact too, needs ``dealias``). Default: ``box.shape``.
        instance_names: per instance, how a blow-up message names it, e.g.
            ``"instance 3 with parameters {...}"``; default ``"instance i"``.
        n_contour: contour points of the ETDRK4 coefficients.
        check_every: also check for NaN/inf every this many steps inside an interval.

    Returns:
        a :class:`SemilinearSolution`.

    Raises:
        BlowUpError: a member turned NaN/inf; the message names it (``instance_names`` or its index
            in ``u0``), the time and its step size. Raised at the first check that sees it.
        ValueError: inconsistent shapes or times.
    """
    dev = box.device
    u0 = torch.as_tensor(u0).to(device=dev, dtype=torch.float64)
    d = box.dim
    if u0.dim() != 2 + d or tuple(u0.shape[2:]) != box.shape:
        raise ValueError(f"u0 must have shape (B, C, *{box.shape}), got {tuple(u0.shape)}")
    B, C = u0.shape[:2]
    spec = (B, C) + box.spectral_shape
    if tuple(linear.shape) != spec:
        raise ValueError(f"linear must have shape {spec}, got {tuple(linear.shape)}")
    linear = linear.to(dev)
    if not torch.is_complex(linear):
        linear = linear.to(torch.float64)
    else:
        linear = linear.to(torch.complex128)
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0 or t[0] < 0 or np.any(np.diff(t) <= 0) or not np.all(np.isfinite(t)):
        raise ValueError(f"times must be finite, increasing and >= 0, got {t}")
    starts_at_zero = t[0] == 0.0
    intervals = np.diff(t) if starts_at_zero else np.diff(np.concatenate([[0.0], t]))
    out_shape = box.shape if output_shape is None else tuple(int(n) for n in output_shape)
    if len(out_shape) != d:
        raise ValueError(f"output_shape {out_shape} needs {d} entries")
    if all(m >= n for n, m in zip(box.shape, out_shape)):
        if out_shape != box.shape and not dealias:
            raise ValueError("a finer output grid needs dealias=True (the interpolant drops the Nyquist modes)")
        sample = _Interpolator(box, out_shape)
    elif all(n % m == 0 for n, m in zip(box.shape, out_shape)):
        strided = (Ellipsis,) + tuple(slice(None, None, n // m) for n, m in zip(box.shape, out_shape))
        sample = lambda v: box.to_physical(v)[strided]  # noqa: E731
    else:
        raise ValueError(f"output_shape {out_shape} must divide the solver shape {box.shape} or be finer on every axis")

    # ---- per-instance step plans --------------------------------------------------------------
    limits = {name: (np.broadcast_to(np.asarray(r, dtype=np.float64), (B,)).copy(), float(num))
              for name, (r, num) in (step_limits or {}).items()}
    bound = np.full(B, np.inf)
    if dt_max is not None:
        bound = np.minimum(bound, np.broadcast_to(np.asarray(dt_max, dtype=np.float64), (B,)))
    for name, (rate, num) in limits.items():
        if not num > 0 or np.any(rate < 0) or not np.all(np.isfinite(rate)):
            raise ValueError(f"step limit {name!r} needs a positive number and finite rates >= 0")
        with np.errstate(divide="ignore"):
            bound = np.minimum(bound, np.where(rate > 0, num / np.where(rate > 0, rate, 1.0), np.inf))
    plans = [plan_steps(intervals, float(bound[i]), min_steps_per_interval, burn_in=not starts_at_zero)
             for i in range(B)]

    coeff_np = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (B,)) for k, v in (coefficients or {}).items()}
    u_out = torch.empty((B, t.size, C) + out_shape, dtype=torch.float64, device=dev)
    tails = np.full(B, np.nan)
    zero = torch.zeros((), dtype=torch.complex128, device=dev)

    for plan in sorted(set(plans)):
        members = [i for i, p in enumerate(plans) if p == plan]
        idx = torch.tensor(members, device=dev)
        lin = linear.index_select(0, idx)
        ones = (1,) * (1 + d)
        cf = {k: torch.tensor(v[members], dtype=torch.float64, device=dev).reshape((-1,) + ones)
              for k, v in coeff_np.items()}

        rhs = None
        if nonlinear is not None:
            term = nonlinear(box, cf)
            if dealias:
                def rhs(v: torch.Tensor) -> torch.Tensor:
                    return torch.where(box.mask, term(v), zero)
            else:
                rhs = term

        v = box.to_spectral(u0.index_select(0, idx))
        if dealias:
            v = box.dealias(v)
        slot = 0
        group_tail = torch.zeros(len(members), dtype=torch.float64, device=dev)

        def record(v: torch.Tensor) -> None:
            nonlocal slot, group_tail
            u_out[idx, slot] = sample(v)
            if dealias and (slot > 0 or not starts_at_zero):
                group_tail = torch.maximum(group_tail, spectral_tail(v, box))
            slot += 1

        def check(v: torch.Tensor, step: int, time: float, dt: float) -> None:
            bad = ~torch.isfinite(torch.view_as_real(v).reshape(v.shape[0], -1)).all(dim=1)
            if bool(bad.any()):
                which = [members[j] for j in torch.nonzero(bad).flatten().tolist()]
                raise BlowUpError(which, step, time, (
                    f"semilinear solve blew up (NaN/inf by t = {time:.6g}, step {step}) for "
                    f"{_describe(which[0], instance_names)}; dt = {dt:.3e}, solver grid {box.shape}"))

        if starts_at_zero:
            record(v)
        cache: dict[float, ETDRK4Coefficients] = {}
        step = 0
        t_now = 0.0
        for h, n_steps in zip(intervals, plan):
            dt = float(h) / n_steps
            if dt not in cache:
                cache[dt] = _group_coefficients(lin, dt, n_contour)
            c = cache[dt]
            for s in range(1, n_steps + 1):
                v = _exponential_step(c, v) if rhs is None else etdrk4_step(v, rhs, c)
                if s % check_every == 0 and s < n_steps:
                    check(v, step + s, t_now + s * dt, dt)
            step += n_steps
            t_now += float(h)
            check(v, step, t_now, dt)
            record(v)
        if dealias:
            tails[members] = group_tail.cpu().numpy()

    steps_pi = np.array(plans, dtype=np.int64).reshape(B, intervals.size)
    dts = intervals[None, :] / steps_pi
    numbers = {name: dts.max(axis=1) * rate for name, (rate, _) in limits.items()}
    return SemilinearSolution(u=u_out, times=t, steps=steps_pi.sum(axis=1), steps_per_interval=steps_pi, dt=dts,
                              dt_max=bound, numbers=numbers, spectral_tail=tails)


def fourier_resample(u: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trigonometric interpolation of periodic samples onto another grid.

    Onto a finer axis the spectrum is zero-padded; the Nyquist coefficient of an even old axis stands
    for ``cos(π n x/L)``, the sum of the modes ``±n/2`` on the finer grid, and is split evenly between
    them, so the interpolant is real and the old points are reproduced (to round-off). Onto a coarser
    axis the spectrum is truncated to the modes ``|m| < new/2`` (a low-pass filter, not sampling).

    Args:
        u: ``(..., *old)`` real samples over the last ``len(shape)`` axes.
        shape: new points per axis.

    Returns:
        ``(..., *shape)`` float64. Each leading index is transformed alone, so the result for one
        field does not depend on what else is in ``u``.
    """
    u = np.asarray(u, dtype=np.float64)
    d = len(shape)
    old = u.shape[-d:]
    shape = tuple(int(m) for m in shape)
    if shape == tuple(old):
        return u.copy()
    axes = tuple(range(-d, 0))
    lead = u.shape[:-d]
    flat = u.reshape((-1,) + old)
    out = np.empty((flat.shape[0],) + shape)
    for j in range(flat.shape[0]):
        c = np.fft.fftn(flat[j], axes=axes) / np.prod(old)
        for ax, (n, m) in enumerate(zip(old, shape)):
            if m > n:
                lo = c.take(np.arange(0, (n + 1) // 2), axis=ax)
                hi = c.take(np.arange(n - (n - 1) // 2, n), axis=ax)
                gap = list(c.shape)
                if n % 2 == 0:
                    nyq = 0.5 * c.take([n // 2], axis=ax)
                    gap[ax] = m - n - 1
                    # +n/2 follows the positive modes, −n/2 precedes the negative ones.
                    mid = np.concatenate([nyq, np.zeros(gap, dtype=np.complex128), nyq], axis=ax)
                else:
                    gap[ax] = m - n
                    mid = np.zeros(gap, dtype=np.complex128)
                c = np.concatenate([lo, mid, hi], axis=ax)
            elif m < n:
                keep = (m - 1) // 2  # modes |k| <= keep, strictly below the new Nyquist
                lo = c.take(np.arange(0, keep + 1), axis=ax)
                hi = c.take(np.arange(n - keep, n), axis=ax)
                gap = list(c.shape)
                gap[ax] = m - (2 * keep + 1)
                c = np.concatenate([lo, np.zeros(gap, dtype=np.complex128), hi], axis=ax)
        out[j] = np.real(np.fft.ifftn(c * np.prod(shape), axes=axes))
    return out.reshape(lead + shape)


def solver_size(n_out: int, needed: float, *, keep_output_modes: bool = True) -> int:
    """Points per axis of a solver grid for output on ``n_out`` points, at least ``needed``.

    Candidates are ``n_out · m`` with ``m ∈ {2, 3, 4, 6, 8, 12, …}`` (``2^j`` and ``3 · 2^j``: FFT-friendly,
    steps of at most 2× so a resolution rule is not overshot by much, and output by striding); with
    ``keep_output_modes`` false also ``n_out`` itself and the coarser sizes ``2^j``, ``3 · 2^j``
    (output by spectral interpolation). ``keep_output_modes`` (``m ≥ 2``) keeps every mode of a state
    given on the output grid below the 2/3 cut.

    Returns:
        the smallest candidate ``≥ needed``.
    """
    if n_out < 1:
        raise ValueError(f"n_out must be positive, got {n_out}")
    if not math.isfinite(needed):  # the candidate list would grow forever
        raise ValueError(f"needed must be finite, got {needed!r}")
    lowest = 2 if keep_output_modes else 1
    cands = []
    m = 1
    while not cands or cands[-1] < needed:
        cands += [n_out * f for f in (m, 3 * m // 2) if f >= lowest and (f == m or 3 * m % 2 == 0)]
        m *= 2
    if not keep_output_modes:
        j = 8
        while j < n_out:
            cands += [c for c in (j, 3 * j // 2) if c < n_out]
            j *= 2
    ok = sorted(c for c in set(cands) if c >= needed)
    return ok[0]


def time_derivative(u: Any, times: np.ndarray) -> Any:
    """Second-order three-point ``∂_t`` at the interior frames (unequal spacing allowed).

    Args:
        u: ``(B, T, ...)`` numpy or torch, ``T ≥ 3``.
        times: ``(T,)``.

    Returns:
        ``(B, T − 2, ...)``, same array type (torch stays differentiable).
    """
    t = np.asarray(times, dtype=np.float64)
    h1, h2 = t[1:-1] - t[:-2], t[2:] - t[1:-1]
    weights = (-h2 / (h1 * (h1 + h2)), (h2 - h1) / (h1 * h2), h1 / (h2 * (h1 + h2)))
    extra = (1,) * (u.dim() - 2 if isinstance(u, torch.Tensor) else u.ndim - 2)
    if isinstance(u, torch.Tensor):
        w = [torch.as_tensor(a, dtype=u.dtype, device=u.device).reshape((1, -1) + extra) for a in weights]
    else:
        w = [a.reshape((1, -1) + extra) for a in weights]
    return w[0] * u[:, :-2] + w[1] * u[:, 1:-1] + w[2] * u[:, 2:]
