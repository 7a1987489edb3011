"""The operator-preconditioning diagnostic of De Ryck, Bonnet, Mishra & de Bézenac (ICLR 2024, "An
operator preconditioning perspective on training in physics-informed machine learning").

Their result: gradient descent on a physics-informed loss converges at a rate set by the condition
number of the Gauss–Newton matrix ``G = JᵀJ`` (for a model linear in its parameters, exactly the
matrix of the loss; for a network, its linearisation), and for a differential operator of order
``2s`` that number grows with the resolved frequencies as ``K^{4s}``: the operator ``L*L`` is
ill-conditioned before any network is involved. A preconditioner ``P`` (SPD) changes the matrix to
``P^{−1/2} G P^{−1/2}``; the right one (e.g. the inverse of ``L*L`` in the model's basis, which is
what natural-gradient methods apply) brings its condition number to about one.

``G`` of a PINN is rank-deficient (many more parameters than directions the residual sees), so the
condition number here is taken on its numerical range: the ratio of the largest eigenvalue to the
smallest one above ``rcond`` times the largest. ``n_kept`` reports how many that is.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import UserError


class Conditioning(NamedTuple):
    """``condition``: ``λ_max / λ_min`` over the kept eigenvalues; ``n_kept`` of ``n`` eigenvalues
    above ``rcond · λ_max``; ``eigenvalues``: all of them, ascending ``(n,)``."""

    condition: float
    n_kept: int
    n: int
    eigenvalues: torch.Tensor


def condition_number(G: torch.Tensor, preconditioner: torch.Tensor | None = None,
                     rcond: float | None = None) -> Conditioning:
    """Condition number of a symmetric positive semi-definite ``G`` ``(p, p)`` on its numerical range,
    optionally preconditioned.

    Args:
        G: e.g. the Gauss–Newton matrix ``JᵀJ``.
        preconditioner: SPD ``P`` ``(p, p)``, or its diagonal ``(p,)``; the eigenvalues are those of
            ``P^{−1} G`` (computed as ``L^{−1} G L^{−T}`` with ``P = L Lᵀ``).
        rcond: relative eigenvalue cut-off; default ``p · eps`` of the dtype.
    """
    if G.dim() != 2 or G.shape[0] != G.shape[1]:
        raise UserError(f"condition_number needs a square matrix, got shape {tuple(G.shape)}")
    p = G.shape[0]
    A = 0.5 * (G + G.T)
    if preconditioner is not None:
        P = preconditioner
        if P.dim() == 1:
            if P.shape[0] != p or bool((P <= 0).any()):
                raise UserError(f"a diagonal preconditioner needs {p} positive entries")
            s = P.rsqrt()
            A = s[:, None] * A * s[None, :]
        else:
            if P.shape != G.shape:  # checked first: cholesky_ex raises its own error on a non-square P
                raise UserError(f"the preconditioner must be a ({p},) diagonal or a ({p}, {p}) matrix, "
                                f"got shape {tuple(P.shape)}")
            L, info = torch.linalg.cholesky_ex(0.5 * (P + P.T))
            if int(info) != 0:
                raise UserError(f"the preconditioner must be symmetric positive definite of shape {tuple(G.shape)}")
            X = torch.linalg.solve_triangular(L, A, upper=False)
            A = torch.linalg.solve_triangular(L, X.T, upper=False)
            A = 0.5 * (A + A.T)
    evals = torch.linalg.eigvalsh(A)
    rcond = p * torch.finfo(G.dtype).eps if rcond is None else rcond
    top = float(evals[-1])
    if top <= 0:
        raise UserError("the matrix has no positive eigenvalue")
    kept = evals[evals > rcond * top]
    return Conditioning(top / float(kept[0]), int(kept.numel()), p, evals)
