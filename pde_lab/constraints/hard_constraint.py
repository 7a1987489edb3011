"""A differentiable nonlinear least-squares layer: the hard constraint of physics-informed models.

The layer maps data ``θ`` (tensors computed by a network: basis values and their derivatives at
collocation points) to the coefficients

    ω*(θ) = argmin_ω  ½ ‖r(ω, θ)‖² + ½ μ ‖ω‖²,        ω ∈ R^N,

where ``r`` stacks the PDE residual at interior points and the initial and boundary residuals, and
``μ`` (``ridge``) is a small Tikhonov term that makes the problem well posed when the basis is
degenerate. The layer is batched: ``K`` independent problems (one per expert of a mixture, or per
sample of a batch) are solved together, each with its own data, by vectorising the per-problem
residual with :func:`torch.func.vmap`.

Forward: damped Gauss–Newton (Levenberg–Marquardt) in float64 with a fixed iteration budget and a
tolerance, or damped Newton steps with the objective's exact Hessian (``LMSettings.step``) for
constraints whose residual stays large at the solution. All problems advance in lock step; a
problem that has converged, or stopped on a step too short to matter, keeps its iterate (masked
update), so one batched solve costs ``max_iter`` Jacobians at most and stops early when every
problem has stopped.

Backward: implicit differentiation at the solution, not unrolling. With ``F(ω, θ) = Jᵀr + μω``,
``F(ω*, θ) = 0`` gives ``dω*/dθ = −H⁻¹ ∂F/∂θ`` with ``H = ∂F/∂ω``. For an upstream gradient ``g`` one
adjoint solve ``H λ = g`` and one vector–Jacobian product give

    ∂L/∂θ = −∂/∂θ [ λ · F(ω*, θ) ] = −∂/∂θ [ r(ω*, θ) · J(ω*, θ) λ ],

where ``J λ`` is a forward-mode product (:func:`torch.func.jvp`) and the outer derivative a reverse
one (:func:`torch.func.vjp`). ``H`` is the Gauss–Newton matrix ``JᵀJ + μI`` (``hessian="gauss_newton"``,
the default, exact when the residual is linear in ``ω`` or vanishes at ``ω*``) or the full Hessian of
the objective (``hessian="exact"``, adds ``Σ r_i ∇²r_i``; needed for exact gradients of an
inconsistent nonlinear problem). Memory does not grow with the number of iterations.

Written by hand: ``torch.func`` supplies the derivatives, but no maintained PyTorch library offers
a batched LM solve with an implicit backward over arbitrary residual data (theseus and torchopt
carry their own tensor wrappers and are heavy dependencies for these ~150 lines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.func import jacfwd, jvp, vjp, vmap

from ..errors import UserError, check_choice

__all__ = ["LMSettings", "LMInfo", "lm_solve", "hard_constraint_solve", "ResidualFn"]

#: Per-problem residual ``r(ω, *data) -> (M,)`` for ``ω: (N,)`` and data tensors without the batch axis.
ResidualFn = Callable[..., torch.Tensor]

HESSIANS = ("gauss_newton", "exact")
STEPS = ("gauss_newton", "newton")


@dataclass(frozen=True)
class LMSettings:
    """Controls of the Levenberg–Marquardt solve.

    Attributes:
        max_iter: iteration budget (Jacobian evaluations) per solve.
        tol: a problem has converged when ``‖∇f‖∞ ≤ tol · (1 + f)``. A step shorter than
            ``tol · (1 + ‖ω‖)`` also stops it (ω can hardly change any more), but it is reported as
            converged only if the gradient test holds there: a short step also comes from a large
            damping λ (slow progress on an ill-conditioned problem, or every step rejected at a kink).
        ridge: ``μ`` in ``½‖r‖² + ½μ‖ω‖²`` (≥ 0; > 0 keeps a rank-deficient basis solvable).
        damping: initial LM damping ``λ``; the step solves ``(G + λ diag(JᵀJ + μI)) δ = −∇f`` with
            ``G`` the matrix of ``step``.
        damping_down, damping_up: ``λ`` is divided by ``damping_down`` after an accepted step and
            multiplied by ``damping_up`` after a rejected one.
        hessian: ``"gauss_newton"`` or ``"exact"``: the matrix of the adjoint solve (module docstring).
        step: ``"gauss_newton"`` (``G = JᵀJ + μI``) or ``"newton"`` (``G`` = the exact Hessian of the
            objective, ``JᵀJ + Σ r_i ∇²r_i + μI``). Gauss–Newton converges only linearly when the
            residual stays large at the solution (an inconsistent constraint), the slower the nearer
            ``JᵀJ`` is to singular; Newton's step keeps the curvature of the residual and converges
            quadratically near a minimum, at the cost of a Hessian per iteration. A step that does
            not descend (``G + λD`` indefinite) is rejected, which raises ``λ`` until it does.
    """

    max_iter: int = 30
    tol: float = 1e-9
    ridge: float = 1e-8
    damping: float = 1e-4
    damping_down: float = 3.0
    damping_up: float = 8.0
    hessian: str = "gauss_newton"
    step: str = "gauss_newton"

    def __post_init__(self):
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise UserError(f"LM max_iter must be a positive integer, got {self.max_iter!r}")
        # Finite too: ridge = inf makes every cost NaN, tol = inf reports ω = 0 as converged.
        for name in ("tol", "ridge", "damping"):
            if not 0 <= getattr(self, name) < math.inf:
                raise UserError(f"LM {name} must be non-negative and finite, got {getattr(self, name)!r}")
        for name in ("damping_down", "damping_up"):
            if not 1 < getattr(self, name) < math.inf:
                raise UserError(f"LM {name} must be > 1 and finite, got {getattr(self, name)!r}")
        check_choice("LM hessian", self.hessian, HESSIANS)
        check_choice("LM step", self.step, STEPS)


@dataclass
class LMInfo:
    """What a batched solve did: ``iterations`` taken (shared), final ``cost`` ``(K,)`` (½‖r‖² + ½μ‖ω‖²),
    ``converged`` ``(K,)`` bool, ``grad_norm`` ``(K,)`` (max-norm of the objective's gradient)."""

    iterations: int
    cost: torch.Tensor
    converged: torch.Tensor
    grad_norm: torch.Tensor


def _residual_and_jacobian(fn: ResidualFn, omega: torch.Tensor, data: Sequence[torch.Tensor]):
    """``r (K, M)`` and ``J (K, M, N)`` of every problem, one vmapped forward-mode Jacobian."""
    def one(w, *d):
        r = fn(w, *d)
        return r, r
    jac = vmap(jacfwd(one, has_aux=True))
    J, r = jac(omega, *data)
    return r, J


def _state(fn: ResidualFn, omega: torch.Tensor, data: Sequence[torch.Tensor], s: LMSettings):
    """``(J (K, M, N), cost (K,), grad (K, N), stationary (K,))`` at ``omega``: one Jacobian, and the
    gradient test of convergence."""
    r, J = _residual_and_jacobian(fn, omega, data)
    cost = 0.5 * (r.pow(2).sum(-1) + s.ridge * omega.pow(2).sum(-1))
    grad = torch.einsum("kmn,km->kn", J, r) + s.ridge * omega
    return J, cost, grad, grad.abs().amax(-1) <= s.tol * (1.0 + cost)


def _cost(fn: ResidualFn, omega: torch.Tensor, data: Sequence[torch.Tensor], ridge: float) -> torch.Tensor:
    r = vmap(fn)(omega, *data)
    return 0.5 * (r.pow(2).sum(-1) + ridge * omega.pow(2).sum(-1))


def lm_solve(fn: ResidualFn, omega0: torch.Tensor, data: Sequence[torch.Tensor],
             settings: LMSettings = LMSettings()) -> tuple[torch.Tensor, LMInfo]:
    """Minimise ``½‖r(ω_k, data_k)‖² + ½μ‖ω_k‖²`` for ``k = 1..K`` at once by Levenberg–Marquardt.

    Runs in the dtype of its inputs and is differentiable as written (every operation is a torch
    operation, accept/reject by :func:`torch.where`), which is how the tests unroll it; the layer
    :func:`hard_constraint_solve` calls it without autograd in float64.

    Args:
        fn: per-problem residual ``fn(ω (N,), *data_k) -> (M,)``; must be vmap-compatible.
        omega0: ``(K, N)`` starting coefficients.
        data: tensors with a leading ``K`` axis, ``data_k = [d[k] for d in data]``.
        settings: iteration budget, tolerance, ridge, damping.

    Returns:
        ``(ω (K, N), info)``.
    """
    s = settings
    omega = omega0
    K, N = omega.shape
    eye = torch.eye(N, dtype=omega.dtype, device=omega.device)
    lam = torch.full((K,), float(s.damping), dtype=omega.dtype, device=omega.device)
    converged = torch.zeros(K, dtype=torch.bool, device=omega.device)
    done = converged.clone()  # converged, or stalled: kept as is from here on
    it = 0
    for it in range(1, int(s.max_iter) + 1):
        J, cost, grad, stationary = _state(fn, omega, data, s)
        converged = converged | stationary
        done = done | converged
        if bool(done.all()):
            break
        A = torch.einsum("kmn,kmp->knp", J, J) + s.ridge * eye
        # Marquardt's scaling: damping proportional to the diagonal makes the step invariant to the
        # scale of each basis function; the tiny floor keeps a zero column (dead basis) solvable.
        diag = torch.diagonal(A, dim1=-2, dim2=-1).clamp_min(1e-12 * (1.0 + A.diagonal(dim1=-2, dim2=-1).amax(-1, keepdim=True)))
        G = A if s.step == "gauss_newton" else _exact_hessian(fn, omega, data, s.ridge)
        step = torch.linalg.solve(G + torch.diag_embed(lam[:, None] * diag), -grad[..., None])[..., 0]
        trial = omega + step
        new_cost = _cost(fn, trial, data, s.ridge)
        # Accept ties up to rounding: cost is quadratic in the error, so a strict decrease test
        # would stall at sqrt(machine epsilon) relative accuracy of ω.
        slack = 4.0 * torch.finfo(cost.dtype).eps * cost
        accept = (new_cost <= cost + slack) & ((step * grad).sum(-1) < 0) & ~done
        omega = torch.where(accept[:, None], trial, omega)
        # A step this short hardly changes ω: stop. Whether that is convergence is the gradient's call
        # (below): a heavily damped step is short far from a stationary point too.
        small = step.norm(dim=-1) <= s.tol * (1.0 + omega.norm(dim=-1))
        done = done | small
        lam = torch.where(accept, lam / s.damping_down, lam * s.damping_up)
    _, cost, grad, stationary = _state(fn, omega, data, s)
    converged = converged | stationary  # the budget's last step may have got there
    return omega, LMInfo(iterations=it, cost=cost.detach(), converged=converged.detach(),
                         grad_norm=grad.abs().amax(-1).detach())


def _adjoint_matrix(fn: ResidualFn, omega: torch.Tensor, data: Sequence[torch.Tensor], s: LMSettings) -> torch.Tensor:
    """``H (K, N, N)``: Gauss–Newton ``JᵀJ + μI`` or the exact Hessian of the objective."""
    N = omega.shape[-1]
    eye = torch.eye(N, dtype=omega.dtype, device=omega.device)
    if s.hessian == "gauss_newton":
        _, J = _residual_and_jacobian(fn, omega, data)
        return torch.einsum("kmn,kmp->knp", J, J) + s.ridge * eye
    return _exact_hessian(fn, omega, data, s.ridge)


def _exact_hessian(fn: ResidualFn, omega: torch.Tensor, data: Sequence[torch.Tensor], ridge: float) -> torch.Tensor:
    """``(K, N, N)`` Hessian of ``½‖r‖² + ½μ‖ω‖²``: forward-over-reverse, one ``jvp`` per coefficient."""
    def half_sq(w, *d):
        return 0.5 * fn(w, *d).pow(2).sum()
    eye = torch.eye(omega.shape[-1], dtype=omega.dtype, device=omega.device)
    return vmap(jacfwd(torch.func.grad(half_sq)))(omega, *data) + ridge * eye


class _HardConstraint(torch.autograd.Function):
    """ω* = LM solution; backward by the implicit function theorem (module docstring)."""

    @staticmethod
    def forward(ctx, fn, settings, info_out, omega0, *data):
        work = torch.float64
        data64 = [d.detach().to(work) for d in data]
        with torch.no_grad():
            omega, info = lm_solve(fn, omega0.detach().to(work), data64, settings)
        info_out.append(info)
        ctx.fn, ctx.settings = fn, settings
        ctx.dtypes = [d.dtype for d in data]
        ctx.save_for_backward(omega, *data64)
        return omega.to(omega0.dtype)

    @staticmethod
    def backward(ctx, grad_omega):
        omega, *data = ctx.saved_tensors
        fn, s = ctx.fn, ctx.settings
        g = grad_omega.to(omega.dtype)
        H = _adjoint_matrix(fn, omega, data, s)
        lam = torch.linalg.solve(H, g[..., None])[..., 0]  # (K, N): the one adjoint solve

        def directional(*d):
            # r(ω*, θ) · J(ω*, θ) λ  =  λ · ∂_ω(½‖r‖²): its θ-gradient is (∂F/∂θ)ᵀ λ.
            def one(w, l, *dk):
                r, jl = jvp(lambda v: fn(v, *dk), (w,), (l,))
                return (r * jl).sum()
            return vmap(one)(omega, lam, *d).sum()

        _, pullback = vjp(directional, *data)
        grads = pullback(torch.ones((), dtype=omega.dtype, device=omega.device))
        out = [(-gr).to(dt) for gr, dt in zip(grads, ctx.dtypes)]
        return (None, None, None, None, *out)


def hard_constraint_solve(fn: ResidualFn, data: Sequence[torch.Tensor], n_coef: int,
                          settings: LMSettings = LMSettings(), omega0: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, LMInfo]:
    """The hard-constraint layer: ``K`` least-squares solves, differentiable in ``data`` by the IFT.

    Args:
        fn: per-problem residual ``fn(ω (N,), *data_k) -> (M,)``, pure and vmap-compatible
            (ridge excluded: it is added by the layer).
        data: tensors with a leading ``K`` axis (basis values and derivatives at the collocation
            points, weights, targets); gradients flow to those that require them.
        n_coef: ``N``, the number of coefficients (basis functions).
        settings: LM controls; the solve runs in float64 whatever the data's dtype.
        omega0: ``(K, N)`` starting point (default zeros; a warm start from the previous step is fine,
            it is not differentiated).

    Returns:
        ``(ω* (K, N)`` in the dtype of ``data[0]``, ``info)``.
    """
    if not data:
        raise UserError("hard_constraint_solve needs at least one data tensor (with a leading K axis)")
    K = data[0].shape[0]
    if any(d.shape[0] != K for d in data):
        raise UserError(f"every data tensor needs the same leading (problem) axis K, got shapes "
                        f"{[tuple(d.shape) for d in data]}")
    if int(n_coef) < 1:
        raise UserError(f"n_coef must be a positive integer, got {n_coef!r}")
    if omega0 is None:
        omega0 = torch.zeros(K, int(n_coef), dtype=data[0].dtype, device=data[0].device)
    elif tuple(omega0.shape) != (K, int(n_coef)):
        raise UserError(f"omega0 must have shape ({K}, {n_coef}), got {tuple(omega0.shape)}")
    info: list[LMInfo] = []
    omega = _HardConstraint.apply(fn, settings, info, omega0.to(data[0].dtype), *data)
    return omega, info[0]
