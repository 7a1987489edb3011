"""SPRING: energy natural gradient with Kaczmarz-style momentum.

SPRING (Goldshlager, Abrahamsen & Lin 2024, for neural wave functions; carried over to PINNs by
Guzmán-Cordero, Dangel, Goldshlager & Zeinhofer 2025, "Improving energy natural gradient descent
through Woodbury, momentum, and randomization") replaces ENGD's direction ``d = argmin ‖J d − r‖²``
by a regularised one that stays close to the previous direction scaled by ``μ``:

    φ_k = argmin_φ ‖J φ − r‖² + λ ‖φ − μ φ_{k−1}‖²
        = μ φ_{k−1} + Jᵀ (J Jᵀ + λ I)⁻¹ (r − μ J φ_{k−1}),          θ ← θ − η φ_k.

The second line is the sample-space (Woodbury) form, an ``m × m`` solve, which is what makes SPRING
cheap when there are fewer residuals than parameters; with ``μ = 0`` the step is ENGD's damped one.
The optimality condition, which the tests check, is ``(JᵀJ + λ I) φ_k = Jᵀ r + λ μ φ_{k−1}``.

The step size comes from ENGD's line search (the grid of ``2^−k``), or is fixed with
``line_search="none"``; the stored ``φ`` is the direction, not the step ``η φ``, as in the papers.

Restart (ours, on by default with a line search): after a step the line search cut to ``η ≤ 2^−5``
or one that did not lower the loss, ``φ_{k−1}`` is dropped, so the next direction is damped ENGD's.
Without it a huge first direction can persist: a short step makes the adaptive damping raise ``λ``,
and a large ``λ`` pins ``φ_k`` to ``μ φ_{k−1}`` (the proximity term dominates), so the direction is
never shortened and the loss stays where it started (the restart test). This is the function-value
restart of accelerated methods (O'Donoghue & Candès 2015) applied to SPRING's momentum.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import UserError
from .engd import ENGD, SHORT_STEP, LineSearch
from .residual import DirectionSolver, Params, ResidualFunction, gauss_newton_direction


class SPRING(ENGD):
    """ENGD with SPRING momentum (see the module docstring).

    Args:
        params: the parameter tensors (one group).
        momentum: ``μ ∈ [0, 1)``; 0 gives damped ENGD.
        damping: ``λ > 0``, the proximity weight (with ``adaptive_damping``, the initial relative
            value, as in :class:`~pde_lab.optim.engd.ENGD`).
        solver: how the regularised least-squares problem is solved; ``kernel`` (default) is the
            Woodbury form above.
        restart: drop the momentum after a short (``η ≤ 2^−5``) or non-improving step; only with a
            line search (see the module docstring). ``False`` is the papers' SPRING.
        line_search, max_halvings, lr, adaptive_damping, damping_range, rcond, jacobian_mode: as for
            :class:`~pde_lab.optim.engd.ENGD`.

    ``last`` holds ENGD's entries plus ``momentum_norm``, ``‖μ φ_{k−1}‖``.
    """

    def __init__(self, params: Iterable[torch.Tensor], momentum: float = 0.9, damping: float = 1e-6,
                 solver: DirectionSolver = "kernel", line_search: LineSearch = "grid", max_halvings: int = 30,
                 lr: float = 1.0, adaptive_damping: bool = False, damping_range: tuple[float, float] = (1e-15, 1e3),
                 rcond: float | None = None, jacobian_mode: str = "auto", restart: bool = True):
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"SPRING momentum must be in [0, 1), got {momentum!r}")
        if damping <= 0:
            raise UserError(f"SPRING needs damping > 0 (the proximity weight λ), got {damping!r}")
        super().__init__(params, solver=solver, damping=damping, rcond=rcond, line_search=line_search,
                         max_halvings=max_halvings, lr=lr, adaptive_damping=adaptive_damping,
                         damping_range=damping_range, jacobian_mode=jacobian_mode)
        self.param_groups[0]["momentum"] = float(momentum)
        self.param_groups[0]["restart"] = bool(restart)

    def direction(self, res: ResidualFunction) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, φ)``: the residual ``(m,)`` and the SPRING direction ``(p,)`` (descent is ``−φ``)."""
        g = self.param_groups[0]
        r, J = res.jacobian(mode=g["jacobian_mode"])
        state = self.state[self._params[0]]
        prev = state.get("phi")
        mu = g["momentum"]
        carried = mu * prev if prev is not None else torch.zeros(J.shape[1], dtype=J.dtype, device=J.device)
        phi = carried + gauss_newton_direction(J, r - J @ carried, damping=self.damping(J), solver=g["solver"],
                                               rcond=g["rcond"])
        if torch.isfinite(phi).all():
            state["phi"] = phi.detach().clone()
        self.last_momentum_norm = float(carried.norm())
        return r, phi

    @torch.no_grad()
    def step(self, closure: ResidualFunction | Callable[[Params], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """One SPRING step; returns the loss ``½‖r‖²`` before it."""
        loss = super().step(closure)
        self.last["momentum_norm"] = getattr(self, "last_momentum_norm", 0.0)
        g = self.param_groups[0]
        short = self.last["eta"] <= SHORT_STEP or not self.last["improved"]
        # absent from checkpoints written before the option existed
        self.last["restarted"] = g.get("restart", True) and g["line_search"] != "none" and short
        if self.last["restarted"]:
            self.state[self._params[0]].pop("phi", None)
        return loss
