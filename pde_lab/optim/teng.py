"""Time-evolving natural gradient (TENG; Chen, McCarran, Vizcaino, Soljačić & Luo, ICML 2024).

A network ``u_θ(x)`` of the space coordinates represents the solution at one time; the parameters
are advanced in time for ``u_t = F[u]`` by refitting the network at every step to an explicit
time-stepping target, in function space:

    Euler:  û = u_θn + Δt F[u_θn],                       θ_{n+1} = argmin_θ ‖u_θ − û‖²
    Heun:   û₁ = u_θn + Δt F[u_θn],                      θ*      = argmin_θ ‖u_θ − û₁‖²
            û₂ = u_θn + Δt/2 (F[u_θn] + F[u_θ*]),        θ_{n+1} = argmin_θ ‖u_θ − û₂‖²

with ``‖·‖²`` the mean square over collocation points ``X``. Each fit is a nonlinear least-squares
problem whose residual ``r(θ) = (u_θ(X) − û) / √N`` has the Jacobian ``J = ∂u_θ(X)/∂θ / √N``; its
Gauss–Newton step ``θ ← θ − J⁺ r`` is the natural-gradient step for the L² (function-space) metric,
the projection of the wanted change ``û − u_θ`` onto the network's tangent space. Starting from the
previous parameters, the wanted change is ``O(Δt)`` and a few iterations reach the fitting floor.

TENG generalises the two older sequential-in-time schemes: the time-dependent variational principle
(TDVP: one linearised projection of ``F`` per step, ``θ̇ = J⁺ F``) and optimisation-based time
integration (OBTI: the same loss, minimised by first-order optimisers).

Linear algebra. ``J`` of a network is numerically rank deficient (its singular values fell to 5e-11
of the largest for the 2-16-16-1 network of ``experiments/teng``, and a network with more parameters
than points is rank deficient outright), so the direction is a minimum-norm least-squares solution with a cut-off
(``solver="lstsq"``: SVD of ``J``, default; ``"pinv"``: eigen-decomposition of ``JᵀJ``) or a damped
Cholesky solve of ``JᵀJ + λI`` (``solver="cholesky"``, ``damping > 0``); a full-rank QR would divide
by those tiny singular values. The linear algebra and the Jacobian are those of
:mod:`pde_lab.optim.residual`; an iteration is a Gauss–Newton step with backtracking (:func:`fit_values`).

The right-hand side comes from the PDE module (``pde.pointwise_rhs(u_fn, x, params)``, see
:func:`pde_rhs`), so this module never needs to know which equation it integrates. See
``docs/pinns.md`` (section TENG) and ``experiments/teng/``.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import UserError, check_choice
from .engd import ENGD
from .residual import SOLVERS, ModelField, TaylorField, gauss_newton_direction, is_finite, model_terms

#: ``rhs(u_fn, x) -> (N,)`` or ``(N, C)``: the right-hand side ``F[u]`` of ``u_t = F[u]`` at points
#: ``x: (N, d)`` for a field ``u_fn: (N, d) -> (N, C)``.
RightHandSide = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]
SCHEMES = ("euler", "heun")


def pde_rhs(pde: Any, params: Mapping[str, float] | None = None) -> RightHandSide:
    """``F[u]`` of a PDE family that declares ``pointwise_rhs(u_fn, x, params)`` (heat, Allen–Cahn,
    Burgers), with its parameters bound (the defaults, updated by ``params``); ``UserError`` for a
    family without one or a name in ``params`` that is not one of its parameters."""
    if not hasattr(pde, "pointwise_rhs"):
        from ..pdes import PDES

        have = ", ".join(n for n in PDES.names() if hasattr(PDES.get(n), "pointwise_rhs"))
        raise UserError(f"PDE {getattr(pde, 'name', type(pde).__name__)!r} has no pointwise_rhs, so TENG cannot "
                        f"evolve it; these families have one: {have}")
    bound = pde.with_params(params)
    return lambda u_fn, x: pde.pointwise_rhs(u_fn, x, bound)


def _field(model: nn.Module) -> TaylorField | ModelField:
    """The network at its current parameter values as a field; a network that propagates its own
    input derivatives (``forward(x, output=...)``, e.g. ``pinn_mlp``) answers ``laplacian``/``gradient``
    in closed form."""
    values = {name: p.detach() for name, p in model.named_parameters()}
    with_taylor = "output" in inspect.signature(model.forward).parameters
    return (TaylorField if with_taylor else ModelField)(model, values)


def _columns(a: torch.Tensor, n: int) -> torch.Tensor:
    """``(N,)`` or ``(N, C)`` -> ``(N, C)``."""
    return a.reshape(n, -1)


@torch.no_grad()
def field_values(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``u_θ(x)``: ``(N, C)`` for points ``x: (N, d)``, without autograd."""
    return _columns(model(x), x.shape[0])


def rhs_values(model: nn.Module, rhs: RightHandSide, x: torch.Tensor) -> torch.Tensor:
    """``F[u_θ](x)``: ``(N, C)``, detached (the target of a step is a constant of the fit)."""
    with torch.enable_grad():  # the torch.func derivatives of a field without closed-form ones need it
        out = rhs(_field(model), x)
    out = _columns(out.detach(), x.shape[0])
    if not torch.isfinite(out).all():
        raise FloatingPointError("the right-hand side F[u] is not finite at some collocation point")
    return out


@dataclass
class FitReport:
    """One least-squares fit ``min_θ ½ mean |u_θ(X) − û|²``.

    Attributes:
        iterations: Gauss–Newton (or Levenberg–Marquardt) iterations taken.
        initial_rms, final_rms: root mean square of ``u_θ(X) − û`` before and after.
        losses: ``½ mean |u_θ − û|²`` after each iteration.
        stop: ``tolerance`` (rms ≤ tol), ``max_iterations``, or ``stalled`` (an iteration did not lower
            the loss; its step is then undone).
    """

    iterations: int
    initial_rms: float
    final_rms: float
    losses: list[float] = field(default_factory=list)
    stop: str = ""


def _snapshot(res) -> tuple[torch.Tensor, ...]:
    """A copy of the bound parameters (``current()`` shares their storage, which the step overwrites)."""
    return tuple(t.clone() for t in res.current())


def _target_residual(model: nn.Module, x: torch.Tensor, target: torch.Tensor, chunk_size: int | None):
    """The pointwise residual ``(u_θ(x) − û(x)) / √N`` as a :class:`PointwiseResidual`, in the network's
    precision; ``x: (N, d)``, ``target: (N,)`` or ``(N, C)``.

    Each row of the fit depends on its point *and* on its target value, and the Jacobian is formed
    one point at a time; carrying the target as extra input columns ``z = [x, û]`` keeps the rows
    independent functions of ``z``.
    """
    dtype = next(model.parameters()).dtype  # the network's precision, as TENG itself uses (float32 x stalls ~3e-7)
    n, d = x.shape
    z = torch.cat([x.to(dtype), _columns(target.to(dtype), n)], dim=1)

    def misfit(u_fn, zz: torch.Tensor) -> torch.Tensor:
        return _columns(u_fn(zz[:, :d]), zz.shape[0]) - zz[:, d:]

    return model_terms(model, [(misfit, z, 1.0 / math.sqrt(n), "fit")], chunk_size=chunk_size)


def fit_values(model: nn.Module, x: torch.Tensor, target: torch.Tensor, max_iterations: int = 5,
               tol: float = 0.0, solver: str = "lstsq", damping: float = 0.0, rcond: float | None = None,
               max_halvings: int = 10, chunk_size: int | None = None) -> FitReport:
    """Fit ``u_θ(x) ≈ target`` by Gauss–Newton iterations from the current parameters (in place).

    Each iteration takes the Gauss–Newton direction ``d`` (:func:`gauss_newton_direction`) and the
    first of the steps ``θ − d, θ − d/2, …, θ − 2^−K d`` that lowers the misfit (backtracking). The
    full step is tried first and nearly always taken within a time step; the halvings rescue the
    iterations where the linearisation is poor (on the Burgers problem of ``experiments/teng`` full
    steps alone stalled on a rising misfit within the first steps, and ENGD's ``descending`` search,
    which prefers a shorter step whenever it is better, converged several times slower).

    Args:
        model: the network ``(N, d) -> (N, C)``; its trainable parameters are updated.
        x: ``(N, d)`` collocation points; target: ``(N,)`` or ``(N, C)`` values.
        max_iterations: at most this many iterations.
        tol: stop once the root mean square misfit is at most ``tol``.
        solver, damping, rcond: the direction solver (``lstsq``, ``pinv``, ``cholesky``, ``kernel``) and
            its damping and cut-off, as in :func:`~pde_lab.optim.residual.gauss_newton_direction`.
        max_halvings: ``K``; 0 takes the full step or none.
        chunk_size: points per ``vmap`` chunk of the Jacobian.

    Returns:
        a :class:`FitReport`; ``stop`` is ``stalled`` when no step of an iteration lowered the misfit
        (the parameters then stay at the best point found).
    """
    check_choice("fit solver", solver, SOLVERS)
    if int(max_iterations) < 1 or not tol >= 0 or int(max_halvings) < 0:
        raise UserError(f"fit needs max_iterations >= 1, tol >= 0 and max_halvings >= 0, got {max_iterations!r}, "
                        f"{tol!r} and {max_halvings!r}")
    res = _target_residual(model, x, target, chunk_size)
    loss = float(res.loss())
    report = FitReport(0, math.sqrt(2 * loss), math.sqrt(2 * loss), stop="max_iterations")
    for _ in range(int(max_iterations)):
        if math.sqrt(2 * loss) <= tol:
            report.stop = "tolerance"
            break
        with torch.enable_grad():
            r, J = res.jacobian()
        try:
            d = gauss_newton_direction(J, r, damping=damping, solver=solver, rcond=rcond)
        except FloatingPointError:  # a singular undamped Gramian under Cholesky
            report.stop = "stalled"
            break
        theta = res.current()
        accepted = None
        if is_finite(d):
            for k in range(int(max_halvings) + 1):
                trial = res.shifted(-(0.5 ** k) * d, theta)
                value = float(res.loss(trial))
                if value < loss:
                    accepted = (trial, value)
                    break
        if accepted is None:
            report.stop = "stalled"
            break
        res.assign(accepted[0])
        loss = accepted[1]
        report.iterations += 1
        report.losses.append(loss)
    else:
        if math.sqrt(2 * loss) <= tol:
            report.stop = "tolerance"
    report.final_rms = math.sqrt(2 * loss)
    return report


def fit_initial_state(model: nn.Module, x: torch.Tensor, target: torch.Tensor, max_iterations: int = 500,
                      tol: float = 1e-12, patience: int = 30, chunk_size: int | None = None) -> FitReport:
    """Fit a freshly initialised network to the initial state by ENGD with adaptive damping, least
    squares on ``J`` and the descending step-size search (:class:`~pde_lab.optim.engd.ENGD`).

    A random network is far from the target, where full Gauss–Newton steps are unreliable; the damping
    steered by the step search handles that phase and fades to ~1e-10 near the optimum. (Measured on
    the 2D heat initial state of ``experiments/teng``, 2-16-16-1 periodic network, 576 points: rms
    misfit 1.7e-8 after 180 iterations, where Levenberg–Marquardt was at 6.8e-6 after 400.)

    Args:
        model: the network; x: ``(N, d)`` points; target: ``(N,)`` or ``(N, C)`` values of ``u0``.
        max_iterations: iteration cap; tol: stop at this rms misfit.
        patience: stop when the best misfit has not fallen by 1 % within this many iterations.

    Returns:
        a :class:`FitReport` (``stop``: ``tolerance``, ``max_iterations`` or ``stalled``).
    """
    if int(max_iterations) < 1 or not tol >= 0 or int(patience) < 1:
        raise UserError(f"fit_initial_state needs max_iterations >= 1, tol >= 0 and patience >= 1, got "
                        f"{max_iterations!r}, {tol!r}, {patience!r}")
    res = _target_residual(model, x, target, chunk_size)
    opt = ENGD(res.params, solver="lstsq", adaptive_damping=True, line_search="descending")
    loss = float(res.loss())
    report = FitReport(0, math.sqrt(2 * loss), math.sqrt(2 * loss), stop="max_iterations")
    best, best_at, best_theta = loss, 0, _snapshot(res)
    for k in range(1, int(max_iterations) + 1):
        if math.sqrt(2 * best) <= tol:
            report.stop = "tolerance"
            break
        opt.step(res)
        loss = opt.last["new_loss"]
        report.iterations += 1
        report.losses.append(loss)
        if loss < 0.99 * best:
            best_at = k
        if loss < best:
            best, best_theta = loss, _snapshot(res)
        if k - best_at >= int(patience):
            report.stop = "stalled"
            break
    res.assign(best_theta)
    report.final_rms = math.sqrt(2 * best)
    return report


@dataclass
class StepReport:
    """What one TENG time step did.

    Attributes:
        step: index of the step (1 for the first); t: the time reached.
        fits: one :class:`FitReport` per stage (one for Euler, two for Heun).
        seconds: wall time of the step.
    """

    step: int
    t: float
    fits: list[FitReport]
    seconds: float

    @property
    def iterations(self) -> int:
        """Gauss–Newton iterations over all stages."""
        return sum(f.iterations for f in self.fits)

    @property
    def final_rms(self) -> float:
        """Misfit of the last stage's fit (the state the step ends in)."""
        return self.fits[-1].final_rms


class TENG:
    """Time-evolving natural gradient integrator of ``u_t = F[u]`` for a network ``u_θ(x)``.

    Args:
        model: the network ``(N, d) -> (N, C)`` of the space coordinates, already fitted to the initial
            state (:func:`fit_initial_state`); its parameters are advanced in place.
        rhs: ``F``, e.g. ``pde_rhs(get_pde("heat_2d"), {"kappa": 0.01})``.
        points: ``(N, d)`` collocation points (for a periodic problem, e.g. a uniform grid).
        dt: the time step ``Δt``.
        scheme: ``euler`` (first order) or ``heun`` (second order).
        max_iterations: Gauss–Newton iterations per stage.
        tol: stop a stage's iterations once the rms misfit is at most ``tol`` (0: always run
            ``max_iterations`` unless an iteration stops lowering the misfit).
        solver, damping, rcond, max_halvings, chunk_size: see :func:`fit_values`.
        t0: the time of the initial state.

    ``reports`` collects a :class:`StepReport` per step.
    """

    def __init__(self, model: nn.Module, rhs: RightHandSide, points: torch.Tensor, dt: float,
                 scheme: str = "heun", max_iterations: int = 5, tol: float = 0.0, solver: str = "lstsq",
                 damping: float = 0.0, rcond: float | None = None, max_halvings: int = 10,
                 chunk_size: int | None = None, t0: float = 0.0):
        check_choice("TENG scheme", scheme, SCHEMES)
        check_choice("TENG solver", solver, SOLVERS)
        if not dt > 0 or not math.isfinite(dt):
            raise UserError(f"TENG time step dt must be positive and finite, got {dt!r}")
        if points.dim() != 2:
            raise UserError(f"TENG collocation points must have shape (N, d), got {tuple(points.shape)}")
        if int(max_iterations) < 1 or not tol >= 0:
            raise UserError(f"TENG needs max_iterations >= 1 and tol >= 0, got {max_iterations!r} and {tol!r}")
        dtype = next(model.parameters()).dtype
        self.model, self.rhs, self.points = model, rhs, points.to(dtype)
        self.dt, self.scheme, self.t = float(dt), scheme, float(t0)
        self.fit_args = dict(max_iterations=int(max_iterations), tol=float(tol), solver=solver,
                             damping=float(damping), rcond=rcond, max_halvings=int(max_halvings),
                             chunk_size=chunk_size)
        self.reports: list[StepReport] = []

    def step(self) -> StepReport:
        """Advance the network by one ``Δt``; returns (and records) the step's report."""
        start = time.perf_counter()
        x, dt = self.points, self.dt
        u_n = field_values(self.model, x)
        f_n = rhs_values(self.model, self.rhs, x)
        fits = [fit_values(self.model, x, u_n + dt * f_n, **self.fit_args)]
        if self.scheme == "heun":
            # The second stage starts from θ*, whose target differs from û₂ by O(Δt²) only.
            f_star = rhs_values(self.model, self.rhs, x)
            fits.append(fit_values(self.model, x, u_n + 0.5 * dt * (f_n + f_star), **self.fit_args))
        self.t += dt
        report = StepReport(len(self.reports) + 1, self.t, fits, time.perf_counter() - start)
        self.reports.append(report)
        return report

    def run(self, n_steps: int, callback: Callable[[StepReport], None] | None = None) -> list[StepReport]:
        """Take ``n_steps`` steps, calling ``callback(report)`` after each; returns their reports."""
        if int(n_steps) < 0:
            raise UserError(f"TENG n_steps must be non-negative, got {n_steps!r}")
        out = []
        for _ in range(int(n_steps)):
            out.append(self.step())
            if callback is not None:
                callback(out[-1])
        return out
