"""L-BFGS with a strong-Wolfe line search that says why it stopped.

``torch.optim.LBFGS`` is the algorithm; this wrapper only adds what it does not report: after each
``run`` it tells whether L-BFGS converged (gradient tolerance), stalled (loss change, step size or
directional derivative below ``tolerance_change``), or used up its iterations or evaluations. It
also lets a training loop call it in chunks (``run(closure, max_iter=k)`` repeatedly) to log
metrics; torch keeps the curvature pairs between calls, so the chunks continue one L-BFGS run
(each call re-evaluates the loss once at its start).

The closure is torch's: it zeroes the gradients, computes the loss, calls ``backward`` and returns
the loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

#: Reasons :meth:`LBFGS.run` reports.
REASONS = ("max_iter", "max_eval", "gradient", "loss_change", "step_size", "directional_derivative")


@dataclass
class LBFGSReport:
    """What one :meth:`LBFGS.run` did.

    Attributes:
        reason: one of :data:`REASONS`: ``max_iter`` / ``max_eval`` (budget used up: not converged),
            ``gradient`` (``max |∇L| ≤ tolerance_grad``: converged), ``loss_change``, ``step_size`` or
            ``directional_derivative`` (progress below ``tolerance_change``: stalled).
        iterations: L-BFGS iterations in this run; evaluations: closure calls in this run.
        loss: the loss at the final parameters.
    """

    reason: str
    iterations: int
    evaluations: int
    loss: float

    @property
    def stopped_early(self) -> bool:
        """True when L-BFGS stopped before its iteration/evaluation budget (converged or stalled)."""
        return self.reason not in ("max_iter", "max_eval")


class LBFGS:
    """``torch.optim.LBFGS`` with ``line_search_fn="strong_wolfe"`` and a stop reason.

    Args:
        params: parameters to optimise (float64 recommended: the tolerances below are for it).
        lr: initial step of the line search (1 is the quasi-Newton step).
        history_size: curvature pairs kept.
        tolerance_grad: stop when ``max |∇L| ≤ tolerance_grad``.
        tolerance_change: stop when the loss change, the step or the directional derivative is below it.
        max_eval_factor: evaluations allowed per run, as a multiple of its ``max_iter``.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1.0, history_size: int = 100,
                 tolerance_grad: float = 1e-14, tolerance_change: float = 1e-16, max_eval_factor: float = 5.0):
        self.params = list(params)
        self.tolerance_grad = float(tolerance_grad)
        self.tolerance_change = float(tolerance_change)
        self.max_eval_factor = float(max_eval_factor)
        self.optimizer = torch.optim.LBFGS(self.params, lr=lr, max_iter=1, history_size=int(history_size),
                                           tolerance_grad=self.tolerance_grad,
                                           tolerance_change=self.tolerance_change, line_search_fn="strong_wolfe")

    def _state(self) -> dict:
        return self.optimizer.state[self.optimizer._params[0]]

    def run(self, closure: Callable[[], torch.Tensor], max_iter: int) -> LBFGSReport:
        """Up to ``max_iter`` L-BFGS iterations; returns why it stopped."""
        group = self.optimizer.param_groups[0]
        group["max_iter"] = int(max_iter)
        group["max_eval"] = max(int(max_iter * self.max_eval_factor), int(max_iter) + 1)
        state = self._state()
        iter0, evals0 = state.get("n_iter", 0), state.get("func_evals", 0)
        self.optimizer.step(closure)
        state = self._state()
        iterations = state.get("n_iter", 0) - iter0
        evaluations = state.get("func_evals", 0) - evals0
        # torch does not record the loss and gradient at the final point, so evaluate once more.
        loss = float(closure().detach())
        grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])
        if iterations >= max_iter:
            reason = "max_iter"
        elif float(grad.abs().max()) <= self.tolerance_grad:
            reason = "gradient"
        elif evaluations >= group["max_eval"]:
            reason = "max_eval"
        elif iterations > 0 and float((state["d"] * state["t"]).abs().max()) <= self.tolerance_change:
            reason = "step_size"
        elif iterations > 0 and abs(loss - float(state["prev_loss"])) < self.tolerance_change:
            reason = "loss_change"
        else:
            reason = "directional_derivative"
        return LBFGSReport(reason=reason, iterations=int(iterations), evaluations=int(evaluations), loss=loss)
