"""First-order optimizers by name, for operator training and PINNs alike.

``adam`` and ``adamw`` are PyTorch's. ``soap`` (Vyas et al. 2024: Adam run in the eigenbasis of
Shampoo's preconditioner) and ``shampoo`` (Gupta, Koren & Singer 2018: Kronecker-factored
full-matrix AdaGrad) come from the maintained ``pytorch-optimizer`` package: writing them again would
add code to maintain without adding anything.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import torch
from pytorch_optimizer import SOAP, Shampoo

from ..errors import UserError, check_choice, did_you_mean

FIRST_ORDER: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "soap": SOAP,
    "shampoo": Shampoo,
}


def build_first_order(name: str, params: Iterable[torch.Tensor], **kwargs: Any) -> torch.optim.Optimizer:
    """The first-order optimizer ``name`` (one of :data:`FIRST_ORDER`) over ``params``.

    Raises:
        UserError: for an unknown name or arguments the optimizer rejects (both named).
    """
    check_choice("optimizer", name, tuple(FIRST_ORDER))
    # pytorch-optimizer's classes swallow unknown keywords (**kwargs): check them here so a typo fails
    accepted = {p.name for p in inspect.signature(FIRST_ORDER[name]).parameters.values()
                if p.kind is not inspect.Parameter.VAR_KEYWORD}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        takes = sorted(accepted - {"self", "params"})
        raise UserError(f"optimizer {name!r} rejects arguments {unknown}{did_you_mean(unknown[0], takes)}; "
                        f"it takes: {', '.join(takes)}")
    try:
        return FIRST_ORDER[name](params, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"optimizer {name!r} rejects arguments {kwargs}: {err}") from None
