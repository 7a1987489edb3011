"""Fourier pseudo-spectral building blocks and the ETDRK4 exponential integrator.

Everything here is PDE-agnostic, batched over a leading axis and device-agnostic (it runs wherever
its input tensors live). Arithmetic is float64 / complex128.

* :func:`wavenumbers` and :func:`dealias_mask` describe one periodic axis.
* :func:`etdrk4_coefficients`, :func:`etdrk4_step` and :func:`etdrk4_solve` integrate a semilinear
  system ``v_t = L v + N(v)`` whose linear operator ``L`` is diagonal (in Fourier space, say), with
  the fourth-order exponential time-differencing Runge–Kutta scheme of Cox & Matthews (J. Comput.
  Phys. 176, 2002). The scheme's coefficients are ``φ``-functions of ``z = L dt`` that suffer
  catastrophic cancellation when evaluated directly for small ``|z|``; following Kassam & Trefethen
  (SIAM J. Sci. Comput. 26, 2005) they are computed, for ``|z| < 1``, as means over ``M`` points of a
  circle centred on each ``z`` (radius 2 here, so no point comes near 0), which by Cauchy's integral
  formula equals the value at the centre and never divides by a small number.

Batch independence: a member's result never depends on its batch-mates, bit for bit, on CPU. torch's
complex kernels (and ``exp``) round differently in their vectorised and scalar code paths, and which
path an element takes depends on its position in the flattened batch and on how the work is split
between threads. So the coefficients are computed row by row, and the complex products in a step are
ones whose rounding cannot depend on the code path: a product with a factor whose imaginary (or
real) part is exactly zero rounds each component once, as the real product would, in every path
(``(c + 0i)(a + ib) = ca + i cb``, ``(0 + ig)(a + ib) = −gb + i ga``: the other terms are exact
zeros, so neither a fused multiply–add nor the order of the sums can change a bit). Products with
general complex coefficients are done with real multiplications.

Why hand-written: neither torch nor scipy has an exponential integrator, and integrators from other
ecosystems do not work on batched torch tensors on the GPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import torch

from ..errors import SolverFailure

__all__ = [
    "wavenumbers",
    "dealias_mask",
    "ETDRK4Coefficients",
    "etdrk4_coefficients",
    "etdrk4_step",
    "etdrk4_solve",
    "NonFiniteError",
    "imaginary_factor",
    "multiply_imaginary",
]


def wavenumbers(
    n: int,
    length: float = 2.0 * math.pi,
    *,
    real: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Angular wavenumbers ``2π m / length`` of a periodic axis with ``n`` points.

    Args:
        n: number of grid points.
        length: period of the axis.
        real: the half spectrum of ``torch.fft.rfft`` (``m = 0 … n//2``) when true, the full
            spectrum in ``torch.fft.fft`` order (``m = 0 … n/2−1, −n/2 … −1``) otherwise.
        device: where to put the result.

    Returns:
        float64 tensor of shape ``(n//2 + 1,)`` if ``real`` else ``(n,)``.
    """
    if n < 2:
        raise ValueError(f"a periodic axis needs at least 2 points, got {n}")
    if real:
        m = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
    else:
        m = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
    return (2.0 * math.pi / length) * m


def dealias_mask(n: int, *, real: bool = True, device: torch.device | str | None = None) -> torch.Tensor:
    """Orszag's 2/3 rule: keep the modes ``m`` with ``3|m| < n``, zero the rest.

    With modes limited to ``|m| ≤ K`` a quadratic product has modes up to ``2K``; on ``n`` points
    mode ``k`` aliases onto ``k − n``, which lands outside ``|m| ≤ K`` exactly when ``n − 2K > K``.
    So products of masked fields are alias-free on the retained modes. The Nyquist mode of an even
    ``n`` is always dropped, which also keeps odd derivatives real.

    Returns:
        bool tensor of shape ``(n//2 + 1,)`` if ``real`` else ``(n,)``, in the order of
        :func:`wavenumbers`.
    """
    if real:
        m = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
    else:
        m = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
    return 3.0 * m.abs() < n


def imaginary_factor(g: torch.Tensor) -> torch.Tensor:
    """The purely imaginary multiplier ``i g`` (``g`` real, shape ``(..., K)``) for
    :func:`multiply_imaginary`; complex128 of the same shape, real part exactly zero."""
    g = g.to(torch.float64)
    return torch.complex(torch.zeros_like(g), g)


def multiply_imaginary(factor: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``i g · w`` for a complex128 ``w`` of shape ``(..., K)`` and ``factor = imaginary_factor(g)``.

    ``i g (a + i b) = −g b + i g a``: with the real part of the factor exactly zero, each component of
    the complex product is one rounded real product, so every element is rounded the same way whatever
    its position in a batch (a spectral derivative is ``g = κ``).
    """
    return factor * w


@dataclass(frozen=True)
class ETDRK4Coefficients:
    """The diagonal coefficients of one ETDRK4 step of size ``dt``, all complex128 of ``linear``'s shape.

    With ``z = L dt``: ``E = e^z``, ``E2 = e^{z/2}``, ``Q = dt (e^{z/2} − 1)/z`` and the
    Cox–Matthews weights ``f1 = dt (−4 − z + e^z (4 − 3z + z²))/z³``,
    ``f2 = dt (2 + z + e^z (z − 2))/z³``, ``f3 = dt (−4 − 3z − z² + e^z (4 − z))/z³``.
    ``real`` says whether ``L`` was real, in which case every coefficient has a zero imaginary part.
    """

    dt: float
    E: torch.Tensor
    E2: torch.Tensor
    Q: torch.Tensor
    f1: torch.Tensor
    f2: torch.Tensor
    f3: torch.Tensor
    real: bool = False

    @cached_property
    def multipliers(self) -> dict[str, torch.Tensor]:
        """The coefficients prepared for :func:`_scale` (``Q`` and ``f2`` also doubled, exactly): the
        complex coefficients themselves for a real ``L`` (imaginary parts exactly zero), real
        ``(..., K, 2)`` tensors ``[Re c, Im c]`` otherwise."""
        named = {"E": self.E, "E2": self.E2, "Q": self.Q, "Q2": 2.0 * self.Q, "f1": self.f1,
                 "f2x2": 2.0 * self.f2, "f3": self.f3}
        if self.real:
            return named
        return {k: torch.view_as_real(v.contiguous()).clone() for k, v in named.items()}

    def dealiased(self, keep: torch.Tensor) -> "ETDRK4Coefficients":
        """The same step with the nonlinear term projected onto the modes where ``keep`` is true.

        ``N`` enters a step only through ``Q``, ``f1``, ``f2`` and ``f3``, so zeroing them outside the
        retained modes applies the dealiasing projection to every stage without a masking pass per
        evaluation; a state that starts on the retained modes stays there (``E`` and ``E2`` are diagonal).

        Args:
            keep: bool, broadcastable to the coefficients' shape ``(..., K)``.
        """
        zero = torch.zeros((), dtype=self.Q.dtype, device=self.Q.device)
        cut = lambda t: torch.where(keep, t, zero)  # noqa: E731
        return ETDRK4Coefficients(self.dt, self.E, self.E2, cut(self.Q), cut(self.f1), cut(self.f2), cut(self.f3),
                                  real=self.real)

    def forcing_terms(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What a constant term ``f`` of ``N(v) = N₀(v) + f`` adds to a step: ``(Q f, (f1 + 4 f2 + f3) f)``.

        Because a step is linear in the values of ``N``, ``f`` enters stages ``a``, ``b`` and ``c``
        as ``Q f`` and the result as ``(f1 + 4 f2 + f3) f``; precomputing both saves adding ``f`` to
        each of the four evaluations of ``N``. Pass the pair to :func:`etdrk4_step` as ``forcing``.

        Args:
            f: constant term, shape broadcastable with the state ``(B, K)``, complex128.
        """
        m = self.multipliers
        cf = _scale_add(_scale_add(_scale(m["f1"], f, self.real), m["f2x2"], f + f, self.real), m["f3"], f, self.real)
        return _scale(m["Q"], f, self.real), cf


def _multiply(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``c · v`` for a general complex coefficient prepared as ``m = [Re c, Im c]`` (``(..., K, 2)``).

    Only real multiplications and additions are used: torch's complex kernels round a general
    complex product differently in their vectorised and scalar code paths, and which path an element
    takes depends on its position in the whole batch; real ``*``/``+`` are single IEEE operations in
    either path, so each batch member's result is the same whatever its batch-mates.
    """
    vr = torch.view_as_real(v)
    a, b = vr[..., 0], vr[..., 1]
    c, d = m[..., 0], m[..., 1]
    return torch.complex(a * c - b * d, a * d + b * c)


def _scale(m: torch.Tensor, v: torch.Tensor, real: bool) -> torch.Tensor:
    """``c · v`` for a prepared coefficient ``m`` (see :attr:`ETDRK4Coefficients.multipliers`)."""
    return m * v if real else _multiply(m, v)


def _scale_add(acc: torch.Tensor, m: torch.Tensor, v: torch.Tensor, real: bool) -> torch.Tensor:
    """``acc + c · v``; one fused kernel for a real ``L``, whose coefficients have zero imaginary part
    (so the product rounds as the real one would, see the module docstring)."""
    return torch.addcmul(acc, m, v) if real else acc + _multiply(m, v)


def _phi_terms(r: torch.Tensor) -> list[torch.Tensor]:
    """The four φ-type functions of the scheme evaluated directly at ``r`` (cancellation for small ``|r|``)."""
    er = torch.exp(r)
    r3 = r * r * r
    return [torch.expm1(r / 2) / r,
            (-4.0 - r + er * (4.0 - 3.0 * r + r * r)) / r3,
            (2.0 + r + er * (r - 2.0)) / r3,
            (-4.0 - 3.0 * r - r * r + er * (4.0 - r)) / r3]


def _coefficients_row(z: torch.Tensor, dt: float, n_contour: int) -> list[torch.Tensor]:
    """``[E, E2, Q, f1, f2, f3]`` for one row ``z = L dt`` of shape ``(K,)``, complex128.

    ``|z| ≥ 1``: the direct formulas, whose cancellation costs at most a few ulps there. ``|z| < 1``:
    the mean over a circle of radius 2 around ``z``, whose points stay at least 1 away from the
    removable singularity at 0. (Kassam & Trefethen's radius-1 circle around every ``z`` passes
    arbitrarily close to 0 when ``|z|`` is near 1: at ``z = −0.99 − 0.15i`` it cost 1e-8 relative
    error.) 64 points make the trapezoid rule exact to round-off on radius 2.
    """
    # Points at half-integer angles: none on the real axis, closed under conjugation.
    theta = (torch.arange(n_contour, dtype=torch.float64, device=z.device) + 0.5) * (2.0 * math.pi / n_contour)
    r = z[None, :] + torch.polar(torch.full_like(theta, 2.0), theta)[:, None]          # (M, K)
    contour = [t.mean(dim=0) for t in _phi_terms(r)]
    small = z.abs() < 1.0
    safe = torch.where(small, torch.ones_like(z), z)  # the direct branch is discarded there; keep it finite
    direct = _phi_terms(safe)
    q, f1, f2, f3 = (torch.where(small, c, d) for c, d in zip(contour, direct))
    return [torch.exp(z), torch.exp(z / 2), dt * q, dt * f1, dt * f2, dt * f3]


def etdrk4_coefficients(linear: torch.Tensor, dt: float, n_contour: int = 64) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for the diagonal linear operator ``linear`` and step ``dt``.

    Args:
        linear: diagonal of ``L``, real or complex, shape ``(K,)`` shared by the batch or ``(B, K)``
            with one operator per batch member (broadcast against the state ``(B, K)``).
        dt: time step.
        n_contour: number ``M`` of points on the contour ``z + 2e^{iθ}`` (used for ``|z| < 1``). The
            trapezoid rule on a circle converges geometrically for these entire functions; 64
            points give round-off accuracy on radius 2.

    Returns:
        the coefficients, complex128 of ``linear``'s shape. For real ``linear`` they are exactly
        real (imaginary part set to zero; the contour points come in conjugate pairs).

    Rows (``linear[b]``) are computed one at a time, with identical shapes, because vectorised and
    scalar code paths of ``exp`` and complex division round differently: this way a member's
    coefficients do not depend on the other rows.
    """
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    if n_contour < 8:
        raise ValueError(f"n_contour must be at least 8, got {n_contour}")
    if linear.dim() not in (1, 2):
        raise ValueError(f"linear must have shape (K,) or (B, K), got {tuple(linear.shape)}")
    is_real = not torch.is_complex(linear)
    z = linear.to(torch.complex128) * dt
    rows = [_coefficients_row(row, dt, n_contour) for row in z.reshape(-1, z.shape[-1])]
    coeffs = [torch.stack(parts).reshape(z.shape) for parts in zip(*rows)]
    if is_real:
        coeffs = [torch.complex(c.real, torch.zeros_like(c.real)) for c in coeffs]
    return ETDRK4Coefficients(float(dt), *coeffs, real=is_real)


def etdrk4_step(
    v: torch.Tensor,
    nonlinear: Callable[[torch.Tensor], torch.Tensor],
    c: ETDRK4Coefficients,
    nv: torch.Tensor | None = None,
    forcing: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One Cox–Matthews ETDRK4 step of ``v_t = L v + N(v)``.

    Args:
        v: state, complex128 of shape ``(B, K)`` (the coefficients broadcast against it).
        nonlinear: ``N``, mapping a state to a complex128 tensor of the same shape.
        c: coefficients from :func:`etdrk4_coefficients`.
        nv: ``N(v)`` if the caller already has it.
        forcing: ``c.forcing_terms(f)`` when ``N(v) = nonlinear(v) + f`` with a constant ``f``.

    Returns:
        the state after one step, same shape as ``v``.

    The stages are the scheme's, regrouped to reuse ``Q N(v)``:
    ``a = E2 v + Q N(v)``, ``b = E2 v + Q N(a)``, ``c = E2 a + 2Q N(b) − Q N(v)`` and
    ``v⁺ = E v + f1 N(v) + 2 f2 (N(a) + N(b)) + f3 N(c)``.
    """
    m, real = c.multipliers, c.real
    if nv is None:
        nv = nonlinear(v)
    qnv = _scale(m["Q"], nv, real)
    ev = _scale(m["E2"], v, real) if forcing is None else _scale_add(forcing[0], m["E2"], v, real)
    a = ev + qnv
    na = nonlinear(a)
    b = _scale_add(ev, m["Q"], na, real)
    nb = nonlinear(b)
    ea = _scale(m["E2"], a, real) if forcing is None else _scale_add(forcing[0], m["E2"], a, real)
    cc = _scale_add(ea - qnv, m["Q2"], nb, real)
    nc = nonlinear(cc)
    out = _scale(m["E"], v, real) if forcing is None else _scale_add(forcing[1], m["E"], v, real)
    out = _scale_add(out, m["f1"], nv, real)
    out = _scale_add(out, m["f2x2"], na + nb, real)
    return _scale_add(out, m["f3"], nc, real)


class NonFiniteError(SolverFailure):
    """The state became NaN or infinite.

    Attributes:
        members: indices along the leading (batch) axis of the members that are not finite.
        step: the step after which this was detected (a snapshot step or the last step).
    """

    def __init__(self, members: list[int], step: int):
        self.members = members
        self.step = step
        super().__init__(f"non-finite state in batch members {members} detected after step {step}")


def etdrk4_solve(
    v0: torch.Tensor,
    linear: torch.Tensor,
    nonlinear: Callable[[torch.Tensor], torch.Tensor],
    dt: float,
    n_steps: int,
    save_steps: Sequence[int],
    *,
    n_contour: int = 64,
    coefficients: ETDRK4Coefficients | None = None,
    forcing: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, int]:
    """Advance a batch ``n_steps`` ETDRK4 steps and record the state at the given step indices.

    Args:
        v0: initial state, shape ``(B, K)``, cast to complex128.
        linear: diagonal of ``L``, shape ``(K,)`` or ``(B, K)``.
        nonlinear: ``N``, maps a ``(B, K)`` complex128 state to a tensor of the same shape. For a
            member's result not to depend on its batch-mates it must treat members independently
            and avoid complex-by-complex products (see the module docstring); FFTs along the last
            axis are fine.
        dt: time step.
        n_steps: number of steps.
        save_steps: increasing step indices in ``[0, n_steps]`` at which to record the state
            (``0`` is the initial state).
        n_contour: contour points for the coefficients (see :func:`etdrk4_coefficients`).
        coefficients: precomputed coefficients for ``(linear, dt)``, to reuse across calls.
        forcing: ``coefficients.forcing_terms(f)`` for a constant term ``f`` added to ``nonlinear``.

    Returns:
        ``(snapshots, steps)``: snapshots of shape ``(B, S, K)`` complex128 with ``S = len(save_steps)``,
        and the number of steps taken (``n_steps``).

    Raises:
        NonFiniteError: a member turned NaN/inf; checked at every saved step and at the end.
    """
    save = [int(s) for s in save_steps]
    if any(b <= a for a, b in zip(save, save[1:])) or (save and (save[0] < 0 or save[-1] > n_steps)):
        raise ValueError(f"save_steps must increase within [0, {n_steps}], got {save}")
    v = v0.to(torch.complex128)
    c = coefficients if coefficients is not None else etdrk4_coefficients(linear.to(v.device), dt, n_contour)
    out = torch.empty((v.shape[0], len(save)) + tuple(v.shape[1:]), dtype=torch.complex128, device=v.device)
    slot = 0

    def record(step: int) -> None:
        nonlocal slot
        # One host sync per snapshot: cheap, and it stops a blown-up run early.
        bad = ~torch.isfinite(v.reshape(v.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            raise NonFiniteError(torch.nonzero(bad).flatten().tolist(), step)
        while slot < len(save) and save[slot] == step:
            out[:, slot] = v
            slot += 1

    saves = set(save)
    if 0 in saves:
        record(0)
    for step in range(1, n_steps + 1):
        v = etdrk4_step(v, nonlinear, c, forcing=forcing)
        if step in saves or step == n_steps:
            record(step)
    return out, n_steps
