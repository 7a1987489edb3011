"""MultiAdam (Yao et al., ICML 2023): Adam with one pair of moment estimates per loss term.

A PINN's loss is a sum of terms (interior residual, boundary, initial condition) whose gradients can
differ by orders of magnitude; plain Adam's shared second moment is then set by the largest term and
the others barely move. MultiAdam keeps Adam's moments ``m_i, v_i`` for each term's gradient
``g_i = ∇L_i`` and averages the normalised steps,

    θ ← θ − (η / n) Σ_i  m̂_i / (sqrt(v̂_i) + ε),

so each term contributes a step of comparable size whatever its scale: multiplying ``L_i`` by
``c > 0`` multiplies ``m̂_i`` and ``sqrt(v̂_i)`` by ``c`` and leaves the trajectory unchanged up to
``ε`` (tested). ``m̂, v̂`` are the bias-corrected moments, as in Adam.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch

from ..errors import UserError


class MultiAdam(torch.optim.Optimizer):
    """Adam with per-loss-term moments (see the module docstring).

    Args:
        params: parameter tensors or groups.
        n_terms: number of loss terms ``n``.
        lr, betas, eps: as for :class:`torch.optim.Adam`.

    ``step(closure)`` takes a closure returning the ``n`` loss terms (0-d tensors, each a function
    of the parameters) and returns their sum, before the step.
    """

    def __init__(self, params: Iterable[torch.Tensor], n_terms: int, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if int(n_terms) < 1:
            raise UserError(f"MultiAdam needs n_terms >= 1, got {n_terms!r}")
        if not (math.isfinite(lr) and lr > 0 and math.isfinite(eps) and eps >= 0) or not all(0.0 <= b < 1.0 for b in betas):
            raise UserError(f"MultiAdam needs a finite lr > 0, a finite eps >= 0 and betas in [0, 1), got lr={lr!r}, "
                            f"eps={eps!r}, betas={betas!r}")
        super().__init__(params, dict(lr=float(lr), betas=tuple(betas), eps=float(eps)))
        self.n_terms = int(n_terms)

    def step(self, closure: Callable[[], Sequence[torch.Tensor]]) -> torch.Tensor:  # type: ignore[override]
        """One step; ``closure()`` returns the ``n_terms`` losses. Returns their sum before the step."""
        with torch.enable_grad():
            terms = list(closure())
        if len(terms) != self.n_terms:
            raise UserError(f"MultiAdam was built for {self.n_terms} loss terms, the closure returned {len(terms)}")
        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        grads = [torch.autograd.grad(t, params, retain_graph=i < len(terms) - 1, allow_unused=True)
                 for i, t in enumerate(terms)]
        with torch.no_grad():
            k = 0
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    if not p.requires_grad:
                        continue
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        state["m"] = torch.zeros((self.n_terms, *p.shape), dtype=p.dtype, device=p.device)
                        state["v"] = torch.zeros_like(state["m"])
                    state["step"] += 1
                    t = state["step"]
                    g = torch.stack([gr[k] if gr[k] is not None else torch.zeros_like(p) for gr in grads])
                    state["m"].mul_(b1).add_(g, alpha=1 - b1)
                    state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                    m_hat = state["m"] / (1 - b1 ** t)
                    v_hat = state["v"] / (1 - b2 ** t)
                    p.sub_(group["lr"] * (m_hat / (v_hat.sqrt() + group["eps"])).mean(dim=0))
                    k += 1
        return sum(t.detach() for t in terms)
