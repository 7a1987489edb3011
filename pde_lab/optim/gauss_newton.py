"""Gauss–Newton and Levenberg–Marquardt for ``min_θ L(θ) = ½ ‖r(θ)‖²``.

Gauss–Newton linearises the residual, ``r(θ + s) ≈ r + J s``, and steps to the minimiser of that
model: ``s = −J⁺ r`` (one step solves a linear least-squares problem exactly).

Levenberg–Marquardt adds adaptive damping,

    (JᵀJ + μ D) s = −Jᵀ r,

with ``D = I`` or Marquardt's ``D = diag(JᵀJ)`` (scale invariant), and judges each trial step by the
gain ratio of the actual to the predicted reduction,

    ρ = (L(θ) − L(θ + s)) / (L(θ) − ½‖r + J s‖²).

A step with ``ρ > accept`` is taken and ``μ ← μ · max(1/3, 1 − (2ρ − 1)³)``, ``ν ← 2`` (Nielsen's
update: shrink the damping in proportion to how well the model predicted); otherwise it is rejected
and ``μ ← μ ν``, ``ν ← 2ν``, and a new step is tried with the same ``J`` (a rejection costs one
evaluation of ``r``, no new Jacobian). Both follow the residual-closure interface of
:mod:`pde_lab.optim.engd`: ``step(closure)`` with a ``ResidualFunction`` or a pure
``closure(theta) -> r``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Literal

import torch

from ..errors import UserError, check_choice
from .engd import ENGD
from .residual import (Params, ResidualFunction, as_residual_function, gauss_newton_direction, is_finite,
                       predicted_reduction)


class GaussNewton(ENGD):
    """Plain Gauss–Newton: ``θ ← θ − lr · J⁺ r`` (``lr = 1``: the full step, no line search).

    The same as :class:`~pde_lab.optim.engd.ENGD` with ``line_search="none"`` by default; pass
    ``line_search="grid"`` to get ENGD's step-size grid. Arguments as for ENGD.
    """

    def __init__(self, params: Iterable[torch.Tensor], solver: str = "lstsq", damping: float = 0.0,
                 rcond: float | None = None, line_search: str = "none", max_halvings: int = 30,
                 lr: float = 1.0, jacobian_mode: str = "auto"):
        super().__init__(params, solver=solver, damping=damping, rcond=rcond, line_search=line_search,
                         max_halvings=max_halvings, lr=lr, jacobian_mode=jacobian_mode)


class LevenbergMarquardt(torch.optim.Optimizer):
    """Levenberg–Marquardt with gain-ratio damping control (see the module docstring).

    Args:
        params: the parameter tensors (one group).
        damping: initial ``μ > 0``.
        scaling: ``identity`` (``D = I``) or ``marquardt`` (``D = diag(JᵀJ)``, floored at
            ``1e-12 · max diag`` so that no direction is undamped).
        accept: smallest gain ratio of an accepted step (``1e-4``: any real decrease that the model
            predicted the sign of).
        min_damping, max_damping: bounds of ``μ``; a step whose ``μ`` would exceed ``max_damping``
            is not taken (the problem is at a stationary point to working precision).
        max_tries: trial steps per ``step`` call before giving up (``last["accepted"]`` is then false).
        solver: ``lstsq`` (stacked QR, never forms ``JᵀJ``) or ``cholesky``.
        jacobian_mode: as in :meth:`ResidualFunction.jacobian`.

    ``last`` holds ``loss`` (before), ``new_loss``, ``damping`` (the ``μ`` of the taken step),
    ``gain`` (its ρ), ``tries`` and ``accepted``.
    """

    def __init__(self, params: Iterable[torch.Tensor], damping: float = 1e-3,
                 scaling: Literal["identity", "marquardt"] = "identity", accept: float = 1e-4,
                 min_damping: float = 1e-15, max_damping: float = 1e15, max_tries: int = 30,
                 solver: Literal["lstsq", "cholesky"] = "lstsq", jacobian_mode: str = "auto"):
        check_choice("LM scaling", scaling, ("identity", "marquardt"))
        check_choice("LM solver", solver, ("lstsq", "cholesky"))
        if not 0 < min_damping <= damping <= max_damping:
            raise UserError(f"LM needs 0 < min_damping <= damping <= max_damping, got {min_damping!r}, "
                            f"{damping!r}, {max_damping!r}")
        if not 0 <= accept < 1 or int(max_tries) < 1:
            raise UserError(f"LM needs 0 <= accept < 1 and max_tries >= 1, got {accept!r}, {max_tries!r}")
        defaults = dict(damping=float(damping), scaling=scaling, accept=float(accept),
                        min_damping=float(min_damping), max_damping=float(max_damping),
                        max_tries=int(max_tries), solver=solver, jacobian_mode=jacobian_mode)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise UserError("LevenbergMarquardt works on one parameter group (the whole θ)")
        self.last: dict[str, Any] = {}

    @property
    def _params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    @torch.no_grad()
    def step(self, closure: ResidualFunction | Callable[[Params], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """Trial steps with the same Jacobian until one is accepted; returns the loss before (0-d)."""
        res = as_residual_function(closure, self._params)
        g = self.param_groups[0]
        state = self.state[self._params[0]]
        mu = state.get("mu", g["damping"])
        nu = state.get("nu", 2.0)
        with torch.enable_grad():
            r, J = res.jacobian(mode=g["jacobian_mode"])
        loss = 0.5 * torch.dot(r, r)
        scaling = None
        if g["scaling"] == "marquardt":
            diag = (J * J).sum(0)
            scaling = diag.clamp_min(1e-12 * float(diag.max().clamp_min(torch.finfo(J.dtype).tiny)))
        theta = res.current()
        accepted, tries, new_loss, gain = False, 0, float(loss), 0.0
        while tries < g["max_tries"] and mu <= g["max_damping"]:
            tries += 1
            s = -gauss_newton_direction(J, r, damping=mu, solver=g["solver"], scaling=scaling)
            predicted = predicted_reduction(J, r, s)
            trial = res.loss(res.shifted(s, theta)) if is_finite(s) else torch.tensor(float("inf"))
            actual = float(loss - trial)
            gain = actual / predicted if predicted > 0 else -1.0
            if is_finite(trial) and gain > g["accept"]:
                res.assign(res.shifted(s, theta))
                accepted, new_loss = True, float(trial)
                taken = mu
                mu = max(g["min_damping"], mu * max(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3))
                nu = 2.0
                break
            mu, nu = mu * nu, nu * 2.0
        state.update(mu=mu, nu=nu, step=state.get("step", 0) + 1)
        self.last = dict(loss=float(loss), new_loss=new_loss, damping=taken if accepted else mu, gain=gain,
                         tries=tries, accepted=accepted)
        return loss
