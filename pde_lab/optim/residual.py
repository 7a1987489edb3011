"""The residual–Jacobian core shared by the Gauss–Newton-type optimizers.

Least-squares training problems (PINNs, the constraint layers' inner solves, curve fits) minimise

    L(θ) = ½ ‖r(θ)‖²,   r: R^p -> R^m,

where for a PINN ``r`` stacks the interior residuals divided by ``sqrt(N_int)`` and the boundary
residuals divided by ``sqrt(N_bd)``, so that ``L = ½ (mean interior r² + mean boundary r²)``.
Everything an optimizer needs comes from ``r`` and its Jacobian ``J = ∂r/∂θ ∈ R^{m×p}``:

* the gradient ``∇L = Jᵀ r``;
* the Gauss–Newton matrix ``G = JᵀJ`` (for a PINN of a linear PDE this is exactly the energy
  Gramian of Müller & Zeinhofer 2023);
* matrix-free products ``J v`` (forward mode, :func:`torch.func.jvp`) and ``Jᵀ u`` (reverse mode,
  :func:`torch.func.vjp`) for iterative solvers that never form ``J``.

A :class:`ResidualFunction` wraps a *pure* function ``fn(theta) -> r`` of a tuple of parameter tensors
(same shapes and order as the parameters it is bound to) together with those parameters. Pure means
it reads the parameters only through its argument, so ``torch.func`` can differentiate it; build one
for a network with :func:`model_residual`, which routes the parameters through
:func:`torch.func.functional_call`.

Flat vectors: ``J``'s columns, ``v`` in ``J v`` and the optimizers' directions follow the order of the
parameters, each flattened in C order (the layout of :func:`torch.nn.utils.parameters_to_vector`).

The direction solvers at the end (:func:`gauss_newton_direction`) are the linear algebra of one
Gauss–Newton / natural-gradient step, shared by :mod:`~pde_lab.optim.engd` and
:mod:`~pde_lab.optim.gauss_newton`.
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable, Literal, NamedTuple, Sequence

import torch
from torch import nn
from torch.func import functional_call, jacfwd, jacrev, jvp, vjp, vmap

from ..errors import UserError, check_choice

Params = tuple[torch.Tensor, ...]
JacobianMode = Literal["auto", "rev", "fwd"]
DirectionSolver = Literal["lstsq", "pinv", "cholesky", "kernel"]
SOLVERS = ("lstsq", "pinv", "cholesky", "kernel")


class ResidualFunction:
    """A residual vector ``r(θ) ∈ R^m`` bound to the parameters ``θ`` it is evaluated at by default.

    Args:
        fn: pure function ``fn(theta) -> (m,)`` of a tuple of tensors shaped like ``params``.
        params: the parameter tensors (e.g. ``list(model.parameters())``); the optimizers update
            them in place.

    Attributes:
        params: the bound tensors; ``shapes``, ``numel`` (``p``), ``dtype``, ``device`` describe them.
    """

    def __init__(self, fn: Callable[[Params], torch.Tensor], params: Iterable[torch.Tensor]):
        self.fn = fn
        self.params: list[torch.Tensor] = list(params)
        if not self.params:
            raise ValueError("a residual function needs at least one parameter tensor")
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        self.numel = sum(self.sizes)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device

    # ---- flat vectors <-> parameter tuples ------------------------------------------------------
    def current(self) -> Params:
        """The bound parameters' values, detached: a tuple to pass as ``theta``."""
        return tuple(p.detach() for p in self.params)

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """A tuple shaped like the parameters -> a flat ``(p,)`` vector."""
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, vector: torch.Tensor) -> Params:
        """A flat ``(p,)`` vector -> a tuple shaped like the parameters (views into ``vector``)."""
        if vector.shape != (self.numel,):
            raise ValueError(f"expected a vector of {self.numel} entries, got shape {tuple(vector.shape)}")
        return tuple(c.view(s) for c, s in zip(torch.split(vector, self.sizes), self.shapes))

    def shifted(self, delta: torch.Tensor, theta: Params | None = None) -> Params:
        """``θ + δ`` for a flat ``δ: (p,)``, as a parameter tuple."""
        theta = self.current() if theta is None else theta
        return tuple(t + d for t, d in zip(theta, self.unflatten(delta)))

    def assign(self, theta: Sequence[torch.Tensor]) -> None:
        """Copy ``theta`` into the bound parameters (in place, without autograd)."""
        with torch.no_grad():
            for p, t in zip(self.params, theta):
                p.copy_(t)

    # ---- evaluations ----------------------------------------------------------------------------
    def __call__(self, theta: Params | None = None) -> torch.Tensor:
        """``r(θ)``: ``(m,)``; ``θ`` defaults to the bound parameters."""
        r = self.fn(self.current() if theta is None else tuple(theta))
        if r.dim() != 1:
            raise ValueError(f"a residual function must return a vector (m,), got shape {tuple(r.shape)}")
        return r

    def loss(self, theta: Params | None = None) -> torch.Tensor:
        """``L(θ) = ½ ‖r(θ)‖²``, a 0-d tensor."""
        r = self(theta)
        return 0.5 * torch.dot(r, r)

    def losses(self, thetas: Sequence[Params]) -> torch.Tensor:
        """``L`` at several parameter points at once: ``(K,)``.

        On CPU a loop over the points: their work arrays stay in cache, where the ``vmap``-batched
        pass streams ``K`` times larger ones through memory (the 31-point grid line search of the 2D
        Poisson benchmark: 113 against 65 ms per ENGD step at 2-32-1, 185 against 79 ms per KFAC step
        at 2-64-1, one thread). Elsewhere batched with ``vmap`` (one pass for all ``K``, fewer kernel
        launches), falling back to the loop when ``fn`` does not support ``vmap``.
        """
        if thetas[0][0].device.type == "cpu":
            return torch.stack([self.loss(t) for t in thetas])
        stacked = tuple(torch.stack(ts) for ts in zip(*thetas))
        try:
            r = vmap(self.fn)(stacked)
            return 0.5 * (r * r).sum(-1)
        except (RuntimeError, NotImplementedError):
            return torch.stack([self.loss(t) for t in thetas])

    def jacobian(self, theta: Params | None = None, mode: JacobianMode = "auto") -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, J)`` at ``θ``: ``r: (m,)``, ``J: (m, p)`` dense.

        Args:
            mode: ``rev`` (``m`` reverse passes, batched by ``vmap``: cheap when ``m ≤ p``), ``fwd``
                (``p`` forward passes: cheap when ``p < m``, the usual PINN case) or ``auto`` (forward
                mode when ``p < m``, which costs one extra evaluation of ``r`` to learn ``m``).
        """
        check_choice("Jacobian mode", mode, ("auto", "rev", "fwd"))
        theta = self.current() if theta is None else tuple(theta)
        if mode == "auto":
            with torch.no_grad():
                m = self(theta).shape[0]
            mode = "fwd" if self.numel < m else "rev"

        def with_value(*ts):
            r = self.fn(ts)
            return r, r

        argnums = tuple(range(len(theta)))
        transform = jacfwd if mode == "fwd" else jacrev
        blocks, r = transform(with_value, argnums=argnums, has_aux=True)(*theta)
        J = torch.cat([b.reshape(r.shape[0], -1) for b in blocks], dim=1)
        return r.detach(), J.detach()

    def jvp(self, v: torch.Tensor, theta: Params | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, J v)`` for a flat ``v: (p,)``, in forward mode without forming ``J``; both ``(m,)``."""
        theta = self.current() if theta is None else tuple(theta)
        r, jv = jvp(lambda *ts: self.fn(ts), theta, self.unflatten(v))
        return r.detach(), jv.detach()

    def vjp(self, u: torch.Tensor, theta: Params | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, Jᵀ u)`` for ``u: (m,)``, in reverse mode without forming ``J``; ``Jᵀu: (p,)``."""
        theta = self.current() if theta is None else tuple(theta)
        r, pullback = vjp(lambda *ts: self.fn(ts), *theta)
        return r.detach(), self.flatten(pullback(u.to(r.dtype))).detach()

    def gradient(self, theta: Params | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, ∇L)`` with ``∇L = Jᵀ r: (p,)``, one reverse pass."""
        theta = self.current() if theta is None else tuple(theta)
        r, pullback = vjp(lambda *ts: self.fn(ts), *theta)
        return 0.5 * torch.dot(r, r).detach(), self.flatten(pullback(r)).detach()


class ModelField:
    """A network with given parameter values, as the field ``u_fn: (N, in) -> (N, out)`` that PDE
    residuals take (through :func:`torch.func.functional_call`, so ``torch.func`` can differentiate
    it with respect to the values)."""

    def __init__(self, model: nn.Module, values: dict[str, torch.Tensor]):
        self.model, self.values = model, values

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.values, (x,))


class TaylorField(ModelField):
    """A :class:`ModelField` of a network whose ``forward(x, output=...)`` also returns input
    derivatives in closed form (``PINNMLP.taylor``): the differential operators of
    :mod:`pde_lab.pdes.poisson` use ``gradient`` and ``laplacian`` when a field has them, instead of
    nested ``torch.func`` transforms."""

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in, out)``."""
        return functional_call(self.model, self.values, (x,), {"output": "gradient"})

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, out)``."""
        return functional_call(self.model, self.values, (x,), {"output": "laplacian"})


class ResidualTerm(NamedTuple):
    """One block of a pointwise residual: ``weight · residual(θ, points)``.

    Attributes:
        residual: pure function ``residual(theta, x) -> (n,)`` or ``(n, k)`` for points ``x: (n, d)``,
            where row ``i`` depends on ``x[i]`` only (a PDE residual at collocation points).
        points: ``(N, d)`` points.
        weight: multiplies the block, e.g. ``1 / sqrt(N)`` so that ``½‖r‖²`` is half the mean square.
        name: label for logs (``"interior"``, ``"boundary"``).
    """

    residual: Callable[[Params, torch.Tensor], torch.Tensor]
    points: torch.Tensor
    weight: float = 1.0
    name: str = ""


class PointwiseResidual(ResidualFunction):
    """A residual made of pointwise blocks, ``r = [w_1 ρ_1(θ, X_1); w_2 ρ_2(θ, X_2); ...]`` (flattened).

    The value, ``J v`` and ``Jᵀ u`` are those of :class:`ResidualFunction`; the dense Jacobian uses the
    pointwise structure: each row depends on one point, so ``J`` is a ``vmap`` over the points of the
    per-point reverse-mode gradient (per-sample gradients). That costs about one backward pass per
    point, not one per row of ``r`` over *all* points (plain ``jacrev``) or one forward pass per
    parameter with every point's full hidden state (``jacfwd``): for the 2-32-1 PINN at 1020 points,
    with the ``torch.func`` Laplacian of :mod:`pde_lab.pdes.poisson`, 18 ms against 0.9 s
    (``jacfwd``) and 7 s (``jacrev``) on one CPU thread (wall time on a shared machine).

    Args:
        terms: the blocks, in the order their rows appear in ``r``.
        params: the parameter tensors the ``theta`` tuples stand for.
        chunk_size: points per ``vmap`` chunk when forming ``J`` (bounds memory; ``None`` = all).
    """

    def __init__(self, terms: Sequence[ResidualTerm], params: Iterable[torch.Tensor],
                 chunk_size: int | None = None):
        self.terms = [ResidualTerm(*t) for t in terms]
        if not self.terms:
            raise ValueError("a pointwise residual needs at least one term")
        self.chunk_size = chunk_size

        def fn(theta: Params) -> torch.Tensor:
            return torch.cat([t.weight * t.residual(theta, t.points).reshape(-1) for t in self.terms])

        super().__init__(fn, params)

    def jacobian(self, theta: Params | None = None, mode: JacobianMode = "auto") -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, J)``; ``mode`` is ignored (always per-point reverse mode, see the class docstring)."""
        theta = self.current() if theta is None else tuple(theta)
        rows, values = [], []
        for term in self.terms:
            def one_point(th: Params, x: torch.Tensor, term: ResidualTerm = term):
                r = term.residual(th, x[None]).reshape(-1)  # (k,): the rows of this point
                return r, r

            blocks, r = vmap(jacrev(one_point, has_aux=True), in_dims=(None, 0),
                             chunk_size=self.chunk_size)(theta, term.points)
            n = term.points.shape[0]
            # (n, k, *shape) -> (n*k, numel): point-major, as reshape(-1) orders the rows in fn.
            rows.append(term.weight * torch.cat([b.reshape(n * r.shape[1], -1) for b in blocks], dim=1))
            values.append(term.weight * r.reshape(-1))
        return torch.cat(values).detach(), torch.cat(rows).detach()


def _trained_parameters(model: nn.Module, params: Sequence[str] | None) -> tuple[dict[str, nn.Parameter], list[str]]:
    """The model's named parameters and the names of those to train (``params``, or by default every
    parameter with ``requires_grad``); a ``ValueError`` names unknown ones and lists the model's."""
    named = dict(model.named_parameters())
    names = [n for n, p in named.items() if p.requires_grad] if params is None else list(params)
    missing = [n for n in names if n not in named]
    if missing:
        raise ValueError(f"model has no parameters {missing}; its parameters are {list(named)}")
    if not names:
        raise ValueError("no parameters to train: the model has none with requires_grad (or params is empty)")
    return named, names


def model_residual(model: nn.Module, build: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor],
                   params: Sequence[str] | None = None) -> ResidualFunction:
    """A :class:`ResidualFunction` of a network's parameters.

    Args:
        model: the network; its buffers (e.g. fixed Fourier features) are used as they are.
        build: ``build(net) -> r`` computes the residual vector ``(m,)`` from ``net``, the model as a
            pure function ``(N, in) -> (N, out)`` or ``(in,) -> (out,)`` of its inputs; everything that
            depends on the parameters must go through ``net``.
        params: names of the trained parameters (default: every parameter with ``requires_grad``).

    Returns:
        a residual function bound to those parameters, in that order.
    """
    named, names = _trained_parameters(model, params)

    def fn(theta: Params) -> torch.Tensor:
        values = dict(zip(names, theta))
        return build(lambda x: functional_call(model, values, (x,)))

    return ResidualFunction(fn, [named[n] for n in names])


#: A PDE-style residual ``residual(u_fn, x) -> (n,)`` of a field ``u_fn: (n, in) -> (n, out)``.
FieldResidual = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]


def model_terms(model: nn.Module, terms: Sequence[tuple[FieldResidual, torch.Tensor, float, str]],
                params: Sequence[str] | None = None, chunk_size: int | None = None) -> PointwiseResidual:
    """A :class:`PointwiseResidual` of a network's parameters from PDE-style terms.

    Args:
        model: the network ``(N, in) -> (N, out)``, rows independent.
        terms: ``(residual, points, weight, name)`` tuples, where ``residual(u_fn, x) -> (n,)`` takes
            the network as a function ``u_fn: (n, in) -> (n, out)`` of a batch of points (called
            with ``n = 1`` when the Jacobian is formed), e.g.
            ``lambda u, x: pde.pointwise_residual(u, x, params)``.
        params: names of the trained parameters (default: every parameter with ``requires_grad``).
        chunk_size: see :class:`PointwiseResidual`.
    """
    named, names = _trained_parameters(model, params)

    field_type = TaylorField if "output" in inspect.signature(model.forward).parameters else ModelField

    def lift(pde_residual):
        def residual(theta: Params, x: torch.Tensor) -> torch.Tensor:
            return pde_residual(field_type(model, dict(zip(names, theta))), x)
        return residual

    built = [ResidualTerm(lift(res), pts, float(w), str(name)) for res, pts, w, name in terms]
    return PointwiseResidual(built, [named[n] for n in names], chunk_size=chunk_size)


def as_residual_function(closure: ResidualFunction | Callable[[Params], torch.Tensor],
                         params: Sequence[torch.Tensor]) -> ResidualFunction:
    """``closure`` itself if it is a :class:`ResidualFunction` over ``params``, else a new one binding
    the pure function ``closure(theta) -> r`` to ``params``."""
    if isinstance(closure, ResidualFunction):
        if len(closure.params) != len(params) or any(a is not b for a, b in zip(closure.params, params)):
            raise ValueError("the residual function is bound to other parameters than the optimizer's")
        return closure
    if not callable(closure):
        raise TypeError("step() needs a residual closure: a ResidualFunction or fn(theta) -> r")
    return ResidualFunction(closure, params)


# ---- the linear algebra of one Gauss-Newton step ---------------------------------------------------
def gauss_newton_direction(J: torch.Tensor, r: torch.Tensor, damping: float = 0.0,
                           solver: DirectionSolver = "lstsq", rcond: float | None = None,
                           scaling: torch.Tensor | None = None) -> torch.Tensor:
    """The (damped) Gauss–Newton direction ``d`` with ``(JᵀJ + λ D) d = Jᵀ r``; step ``θ ← θ − η d``.

    Args:
        J: ``(m, p)`` Jacobian; r: ``(m,)`` residual.
        damping: ``λ ≥ 0``.
        solver:
            ``lstsq``: least squares on ``J`` itself (``λ = 0``: the minimum-norm solution of
            ``min ‖J d − r‖`` by SVD, singular values below ``rcond · σ_max`` cut off; ``λ > 0``: the
            stacked system ``[J; sqrt(λ D)] d ≈ [r; 0]`` by QR). Never forms ``JᵀJ``, whose condition
            number is the square of ``J``'s.
            ``pinv``: ``d = (JᵀJ + λD)^+ Jᵀ r`` with the Gramian's eigenvalues below
            ``rcond · λ_max`` cut off (the pseudo-inverse of Müller & Zeinhofer's ENGD).
            ``cholesky``: ``(JᵀJ + λD)`` by Cholesky; needs ``λ > 0`` unless ``J`` has full column rank.
            ``kernel``: the sample-space (Woodbury / push-through) form ``d = Jᵀ (J Jᵀ + λ I)^(−1) r``,
            an ``m × m`` solve, cheaper when ``m < p``; equal to the others for ``D = I`` (and to the
            minimum-norm solution as ``λ → 0``). ``λ = 0`` uses a pseudo-inverse with ``rcond``.
        rcond: relative cut-off for the singular values of ``J`` (``lstsq``) or the eigenvalues of
            ``JᵀJ`` / ``JJᵀ`` (``pinv``, ``kernel``); default ``sqrt(max(m, p) · eps)`` for ``lstsq`` and
            ``max(m, p) · eps`` for the others, which cut the same directions. Without a cut-off the
            tiny singular values of a PINN Jacobian (1e-17 relative for the 2-32-1 network) blow the
            step up: with ``lstsq`` and ``rcond = max(m, p) · eps`` ENGD stalled from the first step.
        scaling: ``(p,)`` diagonal ``D`` (Marquardt's ``diag(JᵀJ)``); default ``I``. Not with ``kernel``.

    Returns:
        ``d: (p,)``.
    """
    check_choice("direction solver", solver, SOLVERS)
    if not damping >= 0:
        raise UserError(f"damping must be non-negative, got {damping!r}")
    if rcond is not None and not 0 <= rcond < 1:
        raise UserError(f"rcond (relative cut-off of small singular values) must be in [0, 1), got {rcond!r}")
    m, p = J.shape
    if rcond is None:
        # The same effective cut-off for every solver: singular values of J below sqrt(max(m, p)·eps)
        # relative, i.e. eigenvalues of JᵀJ (or JJᵀ) below max(m, p)·eps relative.
        rcond = max(m, p) * torch.finfo(J.dtype).eps
        if solver == "lstsq":
            rcond = rcond ** 0.5
    d_vec = torch.ones(p, dtype=J.dtype, device=J.device) if scaling is None else scaling
    if solver == "lstsq":
        if damping == 0:
            # gelsd (SVD) handles rank deficiency on CPU; CUDA offers only gels (full rank, QR).
            driver = "gelsd" if J.device.type == "cpu" else None
            return torch.linalg.lstsq(J, r[:, None], rcond=rcond, driver=driver).solution[:, 0]
        A = torch.cat([J, torch.diag(torch.sqrt(damping * d_vec))])
        b = torch.cat([r, r.new_zeros(p)])
        driver = "gels" if J.device.type == "cpu" else None
        return torch.linalg.lstsq(A, b[:, None], driver=driver).solution[:, 0]
    if solver == "kernel":
        if scaling is not None:
            raise UserError("the kernel (Woodbury) solver supports only the identity scaling")
        K = J @ J.T
        if damping > 0:
            K = K + damping * torch.eye(m, dtype=J.dtype, device=J.device)
            return J.T @ _spd_solve(K, r)
        return J.T @ (_eig_pinv(K, rcond) @ r)
    G = J.T @ J + damping * torch.diag(d_vec)
    g = J.T @ r
    if solver == "pinv":
        return _eig_pinv(G, rcond) @ g
    return _spd_solve(G, g)


def _spd_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve with the symmetric positive definite ``A`` by Cholesky; a clear error if it is singular."""
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        raise FloatingPointError("the damped Gauss-Newton matrix is not positive definite; increase the "
                                 "damping or use solver='lstsq' or 'pinv'")
    return torch.cholesky_solve(b[:, None], L)[:, 0]


def _eig_pinv(A: torch.Tensor, rcond: float) -> torch.Tensor:
    """Pseudo-inverse of a symmetric positive semi-definite matrix, eigenvalues below ``rcond·λ_max`` dropped."""
    evals, evecs = torch.linalg.eigh(A)
    keep = evals > rcond * evals.max().clamp_min(torch.finfo(A.dtype).tiny)
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return (evecs * inv) @ evecs.T


def predicted_reduction(J: torch.Tensor, r: torch.Tensor, step: torch.Tensor) -> float:
    """``L(θ) − m(θ + s)`` for the Gauss–Newton model ``m(θ + s) = ½ ‖r + J s‖²`` and a step ``s``."""
    js = J @ step
    return float(-(torch.dot(r, js) + 0.5 * torch.dot(js, js)))


def is_finite(x: torch.Tensor) -> bool:
    """Whether every entry of ``x`` is finite (a NaN step must never be taken)."""
    return bool(torch.isfinite(x).all())


__all__ = ["ResidualFunction", "ResidualTerm", "PointwiseResidual", "ModelField", "TaylorField",
           "model_residual", "model_terms",
           "as_residual_function", "gauss_newton_direction",
           "predicted_reduction", "is_finite", "SOLVERS"]

