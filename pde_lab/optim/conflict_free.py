"""ConFIG (Liu, Chu, Thuerey, ICLR 2025, "ConFIG: towards conflict-free training of physics informed
neural networks"): one update direction that lowers every loss term at once.

With the loss terms' gradients ``g_i`` and their unit vectors ``ĝ_i``, ConFIG takes the direction
``u`` that solves ``ĝ_iᵀ u = 1`` for every ``i`` (least squares, minimum norm), so it has the same
positive cosine with every term's gradient, and the length ``Σ_i g_iᵀ û`` (the sum of the gradients'
projections on it):

    g_ConFIG = (Σ_i g_iᵀ û) û,      û = u / ‖u‖.

No term's loss rises to first order, whatever their scales. The direction is computed by the
authors' package ``conflictfree`` (``ConFIG_update``, MIT licence); this module adapts it to
pde_lab's optimizers: :class:`ConFIG` computes per-term gradients, combines them and hands the
result to an inner first-order optimizer (Adam by default) as the gradient.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from conflictfree.grad_operator import ConFIG_update
from conflictfree.weight_model import EqualWeight

from ..errors import UserError


def config_direction(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ConFIG combination of loss-term gradients.

    Args:
        grads: ``n`` flat gradients ``(p,)`` (or one ``(n, p)`` tensor).

    Returns:
        ``(p,)``, with ``ĝ_iᵀ g`` the same positive value for every term ``i`` whenever the unit
        gradients are linearly independent.
    """
    g = torch.stack(list(grads)) if not isinstance(grads, torch.Tensor) else grads
    if g.dim() != 2 or g.shape[0] < 1:
        raise UserError(f"config_direction needs gradients of shape (n, p), got {tuple(g.shape)}")
    return ConFIG_update(g, weight_model=_EqualWeightLike())


class _EqualWeightLike(EqualWeight):
    """The package's equal weights, in the gradients' dtype (it makes them float32, which
    ``torch.linalg.lstsq`` refuses to combine with float64 gradients)."""

    def get_weights(self, gradients: torch.Tensor, losses=None, device=None) -> torch.Tensor:
        return torch.ones(gradients.shape[0], dtype=gradients.dtype, device=gradients.device)


class ConFIG(torch.optim.Optimizer):
    """A first-order optimizer whose gradient is the ConFIG combination of several loss terms.

    Args:
        params: parameter tensors (one group).
        inner: the optimizer class that takes the step (default :class:`torch.optim.Adam`).
        **inner_args: its arguments (``lr``, ``betas``, ...).

    ``step(closure)`` takes a closure returning the loss terms (0-d tensors); returns their sum
    before the step. ``last["cosines"]`` holds each term gradient's cosine with the update.
    """

    def __init__(self, params: Iterable[torch.Tensor], inner: type[torch.optim.Optimizer] = torch.optim.Adam,
                 **inner_args: Any):
        params = list(params)
        super().__init__(params, {})
        self.inner = inner(params, **inner_args)
        self.param_groups = self.inner.param_groups  # one set of groups: schedulers and lr edits reach the inner step
        self.last: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict)

    def step(self, closure: Callable[[], Sequence[torch.Tensor]]) -> torch.Tensor:  # type: ignore[override]
        """One step on the ConFIG direction of the closure's loss terms."""
        with torch.enable_grad():
            terms = list(closure())
        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        flat = []
        for i, t in enumerate(terms):
            grads = torch.autograd.grad(t, params, retain_graph=i < len(terms) - 1, allow_unused=True)
            flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                   for g, p in zip(grads, params)]))
        G = torch.stack(flat)
        d = config_direction(G)
        self.last = {"cosines": (G @ d / (G.norm(dim=1) * d.norm()).clamp_min(1e-300)).tolist()}
        offset = 0
        for p in params:
            p.grad = d[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        self.inner.step()
        return sum(t.detach() for t in terms)
