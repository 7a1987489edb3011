"""Energy natural gradient descent (ENGD; Müller & Zeinhofer 2023, "Achieving high accuracy with PINNs
via energy natural gradient descent").

For a PINN of a linear PDE the loss is a quadratic energy of the network function,
``L(θ) = ½ ‖r(θ)‖²`` with ``r`` the weighted interior and boundary residuals (see
:mod:`pde_lab.optim.residual`). The energy natural gradient preconditions the gradient with the
Gramian of the energy's Hessian pulled back to the parameters,

    G(θ)_ij = (1/N_int) Σ_x  L[∂_i u_θ](x) L[∂_j u_θ](x)  +  (1/N_bd) Σ_y ∂_i u_θ(y) ∂_j u_θ(y),

which for these weights is exactly ``G = JᵀJ`` with ``J = ∂r/∂θ``; its update is

    d = G⁺ ∇L = G⁺ Jᵀ r,        θ ← θ − η* d,   η* = argmin_{η ∈ {2^−k : k = 0..K}} L(θ − η d),

i.e. a Gauss–Newton direction with a grid line search. The paper's result: for the 2D Poisson
problem with a 2-32-1 tanh network, relative L2 errors of 1e-6 to 1e-7, against 1e-3 to 1e-4 for Adam
and BFGS.

Solving for ``d`` (:func:`~pde_lab.optim.residual.gauss_newton_direction`): ``pinv`` (default, the
paper's) is the pseudo-inverse of ``G`` with eigenvalues below ``max(m, p)·eps`` relative cut off;
``lstsq`` solves ``min ‖J d − r‖`` on ``J`` itself (SVD with the equivalent cut-off, or QR of the
stacked system ``[J; √λ I]`` when damped) and never forms ``G``; ``cholesky`` is a Cholesky solve
of ``G + λI``; ``kernel`` the sample-space (Woodbury) form ``d = Jᵀ (J Jᵀ + λI)⁻¹ r``, for problems
with fewer residuals than parameters.

Adaptive damping (``adaptive_damping=True``; not in the paper). The undamped step can be huge along
directions where ``J`` is nearly singular, and then only a tiny ``η`` lowers the loss: from the
paper's initialisation, plain ENGD sat on its initial loss for 90–150 steps on 2 of 5 seeds of the
benchmark. With ``λ = μ · tr(G)/p`` and ``μ`` steered by the line search like a Levenberg–Marquardt
damping (÷10 after a step ``η ≥ 1/4``, ×10 after ``η ≤ 1/32``, within ``damping_range``), those
plateaus went away. Late in the run ``μ`` settles around 1e-11 to 1e-9, so the step is regularised by
a small damping instead of the pseudo-inverse's hard cut-off; with ``solver="lstsq"`` this reached
lower errors than the paper's variant (see ``experiments/pinn_poisson/README.md``), while the same
damping with ``solver="pinv"`` (cut-off kept) stopped at 4e-7 and 1.4e-6 on two seeds, like the
paper's variant.

Interface. ``ENGD`` is a :class:`torch.optim.Optimizer` (param groups, ``state_dict``) whose
``step(closure)`` takes a *residual closure* instead of a loss closure: a
:class:`~pde_lab.optim.residual.ResidualFunction` bound to the optimizer's parameters (build one with
``model_residual`` or ``model_terms``), or a pure function ``closure(theta) -> r`` of a tuple of
tensors shaped like the parameters. The optimizer computes ``r`` and ``J`` from it with
``torch.func`` and returns the loss ``½‖r‖²`` *before* the step; ``last`` holds what the step did.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Literal

import torch

from ..errors import UserError, check_choice
from .residual import (SOLVERS, DirectionSolver, Params, ResidualFunction, as_residual_function,
                       gauss_newton_direction, is_finite)

LineSearch = Literal["grid", "descending", "none"]
LINE_SEARCHES = ("grid", "descending", "none")
#: A step the line search cut to at most this: the Gauss-Newton model is not trusted there (the adaptive
#: damping grows; SPRING restarts its momentum).
SHORT_STEP = 2.0 ** -5


class ENGD(torch.optim.Optimizer):
    """Energy natural gradient descent with a grid line search.

    Args:
        params: the parameter tensors (one group; every tensor is part of ``θ``).
        solver: how ``d`` is computed: ``pinv`` (default, the paper's), ``lstsq``, ``cholesky`` or
            ``kernel`` (see the module docstring).
        damping: ``λ ≥ 0`` added to ``G``; with ``adaptive_damping`` the initial relative ``μ``
            (default ``1e-3`` when 0).
        rcond: relative cut-off of small singular (``lstsq``) or eigen (``pinv``, ``kernel``) values;
            default ``sqrt(max(m, p)·eps)`` and ``max(m, p)·eps``, which cut the same directions.
        line_search: ``grid`` (the paper's: evaluate ``L(θ − η d)`` at every ``η = 2^−k``,
            ``k = 0..max_halvings`` (:meth:`ResidualFunction.losses`), take the smallest), ``descending`` (the same
            grid from ``η = 1`` down, stopping at the first ``η`` whose loss is larger than the previous
            one's once the loss has fallen: 3–8 evaluations (mean 6 on the Poisson benchmark) instead of ``K + 1``, and the
            same choice whenever the loss along the grid has one minimum), or ``none`` (``η = lr``).
        max_halvings: ``K``, the smallest step tried is ``2^−K`` (30 in the paper).
        lr: the fixed step when ``line_search="none"`` (``1`` is the full Gauss–Newton step).
        adaptive_damping: steer ``λ`` by the line search (module docstring).
        damping_range: bounds ``(low, high)`` of the relative ``μ``.
        jacobian_mode: passed to :meth:`ResidualFunction.jacobian` for non-pointwise residuals.
        accept_worse: take the search's best step even when it raises the loss (the ENGD paper's grid
            search; default), or stay put (``False``, the KFAC paper's).

    After every step, ``last`` holds ``loss`` (before), ``new_loss``, ``eta`` (the step size taken),
    ``evaluations`` (loss evaluations of the line search), ``improved`` (whether the loss fell) and,
    with adaptive damping, ``mu`` (the relative damping the step used). The grid's best step is taken
    even when it does not lower the loss (as in the paper); its size is then at most ``2^−K``. With
    ``accept_worse=False`` such a step is not taken (``eta`` 0), as in the KFAC paper's grid search.
    """

    def __init__(self, params: Iterable[torch.Tensor], solver: DirectionSolver = "pinv", damping: float = 0.0,
                 rcond: float | None = None, line_search: LineSearch = "grid", max_halvings: int = 30,
                 lr: float = 1.0, adaptive_damping: bool = False, damping_range: tuple[float, float] = (1e-15, 1e3),
                 jacobian_mode: str = "auto", accept_worse: bool = True):
        check_choice("ENGD solver", solver, SOLVERS)
        line_search = "none" if line_search is None else line_search  # the override `line_search=none` reads None
        check_choice("ENGD line_search", line_search, LINE_SEARCHES)
        # NaN passes `damping < 0` and `lr <= 0`: test the allowed range, finite, so NaN and inf fail here
        if not (math.isfinite(damping) and damping >= 0 and math.isfinite(lr) and lr > 0) or int(max_halvings) < 0:
            raise UserError(f"ENGD needs a finite damping >= 0, a finite lr > 0 and max_halvings >= 0, got "
                            f"damping={damping!r}, lr={lr!r}, max_halvings={max_halvings!r}")
        low, high = (float(v) for v in damping_range)
        if adaptive_damping and not (0 < low <= high and math.isfinite(high)):  # inf is no ceiling for μ
            raise UserError(f"ENGD damping_range must be finite with 0 < low <= high, got {damping_range!r}")
        if adaptive_damping and line_search == "none":
            raise UserError("adaptive_damping is steered by the line search: use line_search grid or descending, "
                            "or line_search none with adaptive_damping false")
        defaults = dict(solver=solver, damping=float(damping), rcond=rcond, line_search=line_search,
                        max_halvings=int(max_halvings), lr=float(lr), adaptive_damping=bool(adaptive_damping),
                        damping_range=(low, high), jacobian_mode=jacobian_mode, accept_worse=bool(accept_worse))
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise UserError("ENGD works on one parameter group (the whole θ)")
        self.last: dict[str, Any] = {}

    @property
    def _params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def damping(self, J: torch.Tensor) -> float:
        """The ``λ`` of this step: ``damping``, or with ``adaptive_damping`` the current relative ``μ``
        times the mean eigenvalue ``tr(JᵀJ)/p`` of the Gramian (so ``μ`` does not depend on the scale
        of the residual)."""
        g = self.param_groups[0]
        if not g["adaptive_damping"]:
            return g["damping"]
        mu = self.state[self._params[0]].get("mu", g["damping"] or 1e-3)
        return mu * float((J * J).sum()) / J.shape[1]

    def direction(self, res: ResidualFunction) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, d)`` at the current parameters: the residual ``(m,)`` and the natural-gradient
        direction ``(p,)`` (descent is ``−d``)."""
        g = self.param_groups[0]
        r, J = res.jacobian(mode=g["jacobian_mode"])
        d = gauss_newton_direction(J, r, damping=self.damping(J), solver=g["solver"], rcond=g["rcond"])
        return r, d

    def _adapt(self, eta: float) -> None:
        """Levenberg-Marquardt-style control of ``μ`` by the step the line search chose: a long step
        (``η ≥ 1/4``) means the Gauss-Newton model is trusted, so damp less (÷10); a short one
        (``η ≤ 1/32``) means it is not, so damp more (×10)."""
        g = self.param_groups[0]
        state = self.state[self._params[0]]
        mu = state.get("mu", g["damping"] or 1e-3)
        if eta >= 0.25:
            mu /= 10.0
        elif eta <= SHORT_STEP:
            mu *= 10.0
        low, high = g["damping_range"]
        state["mu"] = min(max(mu, low), high)

    @torch.no_grad()
    def step(self, closure: ResidualFunction | Callable[[Params], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """One ENGD step; returns the loss ``½‖r‖²`` before it (0-d tensor).

        Args:
            closure: a residual closure over this optimizer's parameters (see the module docstring).
        """
        res = as_residual_function(closure, self._params)
        g = self.param_groups[0]
        with torch.enable_grad():
            try:
                r, d = self.direction(res)
            except FloatingPointError:  # a singular damped Gramian under Cholesky: treat as a failed step
                r = res().detach()
                d = torch.full((res.numel,), float("nan"), dtype=r.dtype, device=r.device)
        loss = 0.5 * torch.dot(r, r)
        theta = res.current()
        if not is_finite(d):
            self.last = dict(loss=float(loss), new_loss=float(loss), eta=0.0, evaluations=0, improved=False)
            if g["adaptive_damping"]:
                self._adapt(0.0)
            return loss
        etas, losses = self._search(res, theta, d, float(loss))
        losses = torch.nan_to_num(losses, nan=float("inf"))
        best = int(torch.argmin(losses))
        eta, new_loss = etas[best], float(losses[best])
        if not g.get("accept_worse", True) and not new_loss < float(loss):  # absent in older checkpoints
            eta, new_loss = 0.0, float(loss)
        res.assign(res.shifted(-eta * d, theta))
        state = self.state[self._params[0]]
        state["step"] = state.get("step", 0) + 1
        self.last = dict(loss=float(loss), new_loss=new_loss, eta=eta, evaluations=len(etas),
                         improved=new_loss < float(loss))
        if g["adaptive_damping"]:
            self.last["mu"] = state.get("mu", g["damping"] or 1e-3)
            self._adapt(eta)
        return loss

    def _search(self, res: ResidualFunction, theta: Params, d: torch.Tensor,
                loss: float) -> tuple[list[float], torch.Tensor]:
        """Step sizes tried and their losses ``(len(etas),)``."""
        g = self.param_groups[0]
        if g["line_search"] == "none":
            etas = [g["lr"]]
            return etas, res.loss(res.shifted(-etas[0] * d, theta)).reshape(1)
        etas = [0.5 ** k for k in range(g["max_halvings"] + 1)]
        if g["line_search"] == "grid":
            return etas, res.losses([res.shifted(-eta * d, theta) for eta in etas])
        tried, values = [], []
        for eta in etas:
            value = res.loss(res.shifted(-eta * d, theta))
            tried.append(eta)
            values.append(value)
            if len(values) > 1 and not bool(value < values[-2]) and values[-2] < loss:
                break  # past the minimum along the grid, and the previous step already improved
        return tried, torch.stack(values)
