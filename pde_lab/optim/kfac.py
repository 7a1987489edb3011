"""Kronecker-factored approximate curvature (KFAC) for PINN losses (Dangel, Müller & Zeinhofer 2024,
"Kronecker-Factored Approximate Curvature for Physics-Informed Neural Networks", NeurIPS).

ENGD (:mod:`pde_lab.optim.engd`) preconditions the gradient of ``L(θ) = ½ ‖r(θ)‖²`` with the
Gauss–Newton matrix ``G = JᵀJ``, which costs ``O(p³)`` per step. KFAC approximates ``G`` by a
block-diagonal matrix, one block per linear layer, each block a sum of Kronecker products of two
small matrices, so the preconditioned gradient costs a few ``(fan_in + 1)``- and ``fan_out``-sized
eigendecompositions per layer.

Why standard KFAC does not fit, and what does. Standard KFAC (``curvlinops``'
``KFACLinearOperator``, ``kfac-pytorch``) factorises the Gauss–Newton matrix of a loss on the
network's *outputs*. A PINN residual involves derivatives of the network (``−Δu − f``): computed by
Taylor mode / the forward Laplacian (``PINNMLP.taylor``), a linear layer ``W`` is applied to several
*copies* of its input at every point: the value ``a``, the ``d`` first derivatives ``∂_i a`` and the
Laplacian ``Δa``. The residual is a network with *weight sharing*. For a point ``n`` with copies
``s = 1..S`` of the (bias-augmented) layer input ``ã_{n,s}`` (``[a, 1]`` for the value, ``[∂a, 0]``,
``[Δa, 0]`` for the others) and the residual's derivative ``g_{n,s} = ∂r_n/∂z_{n,s}`` with respect to
the layer output ``z_{n,s} = W ã_{n,s}``, the Jacobian row block of the layer is
``J_n = Σ_s g_{n,s} ã_{n,s}ᵀ``, and the KFAC approximations for weight sharing (Eschenhagen et al.
2023) give, for one residual term with ``N`` points,

    expand:  A = 1/(N S) Σ_{n,s} ã_{n,s} ã_{n,s}ᵀ,        B = Σ_{n,s} g_{n,s} g_{n,s}ᵀ,
    reduce:  A = 1/N Σ_n ā_n ā_nᵀ,  ā_n = 1/S Σ_s ã_{n,s},  B = Σ_n ĝ_n ĝ_nᵀ,  ĝ_n = Σ_s g_{n,s},

``G_layer ≈ B ⊗ A`` for the layer's parameters ``[W b]`` flattened row by row (the transpose of the
papers' column-stacking ``A ⊗ B``). Residuals with ``k > 1`` rows per point sum ``B`` over the rows
(type-2 Gauss–Newton: the loss Hessian is the identity). Here ``r`` carries the term weights
(``1/sqrt(N)``), so ``B`` includes them and the two factors match the paper's normalisation of
``G = 1/N Σ_n J_nᵀ J_n``. Boundary (value) terms have one copy, ``S = 1``, where both flavours agree.

Idle copies (``prune_copies``, ours; default on). A copy whose input is zero at every point (the
first layer's ``Δx = 0``) or whose output gradient is (the last layer's value and gradient copies in
a Laplacian residual, which the residual never reads) adds nothing to ``J_n`` but still enters the
paper's factors, through ``S`` and the other factor. Leaving such copies out changes nothing where
the factorisation is exact and makes the output layer's interior block exact (``B ⊗ A = JᵀJ`` for that
block; the paper's factors keep the unused value copies in ``A``). On the Poisson benchmark the output
block's relative error went from 59% (after 300 steps) to rounding, and one CPU-minute on seed 0 ended
at 1.1e-4 instead of 2.9e-4. Set ``prune_copies=False`` for the paper's factors (both are tested
against the definition).

Each loss term (interior, boundary) gives its own Kronecker product; as in the paper, the sum of two,
``B₁ ⊗ A₁ + B₂ ⊗ A₂``, is inverted exactly after damping through the generalised eigenvectors of the
factor pairs. Problems with more terms merge the second and later ones into one Kronecker product
(``A`` averaged weighted by the terms' point counts, ``B`` summed), which is no longer exact where the
terms' own factors are.

Damping (Tikhonov). The factors of each of the ``T`` Kronecker products are damped as
``(A + λ_A I)``, ``(B + λ_B I)`` with ``λ_A λ_B = λ/T``, split by the trace-norm rule
``λ_A/λ_B = π²``, ``π² = (tr A/dim A)/(tr B/dim B)`` (Martens & Grosse 2015, §6.3;
``damping_split="trace-norm"``), or ``λ_A = λ_B = λ/T`` (``"same"``). The paper's code adds its ``λ``
to every factor of every term without the ``1/T``, so its ``"same"`` with ``λ`` is ours with ``T λ``. ``λ`` is fixed
(``damping``) or, with ``adaptive_damping``, ``μ · tr(K)/p_layer`` per layer, ``K`` the layer's
undamped KFAC block, with the relative ``μ`` steered as described next.

The step. ``line_search="auto"`` (default; the paper's KFAC*, Martens & Grosse 2015, §7): the update
``u = α Δ + β δ`` along the KFAC direction ``Δ = −K_λ⁻¹∇L`` and the previous update ``δ`` minimises
the Gauss–Newton model ``½ uᵀ(JᵀJ + λ̄I)u + ∇Lᵀu`` with the *exact* Gramian (two Jacobian-vector
products), ``λ̄ = μ tr(K)/p``; ``μ`` follows the ratio ``ρ`` of the actual to the predicted decrease
(×2/3 for ``ρ > 3/4``, ×3/2 for ``ρ < 1/4``, ×10 when the loss rose, in which case the step is not
taken and the momentum restarts). ``grid``, ``descending`` and ``none`` are ENGD's line searches
over ``θ − η d``, ``η = 2^−k``, with ENGD's damping control (÷10 after ``η ≥ 1/4``, ×10 after
``η ≤ 1/32``); :class:`KFAC` subclasses :class:`~pde_lab.optim.engd.ENGD` and reuses its step for
these; with them, ``momentum`` adds the previous direction, ``m ← β m + K_λ⁻¹∇L``, and the search runs
along ``m`` (the paper's code's heavy ball; its best run on the 2D Poisson problem used the grid with
``β = 0.54``). Curvature estimates are exponential moving averages of the factors (``ema``, 0.95 as in
the paper's code), refreshed every ``update_every`` steps; the average starts from the first estimate,
or with ``init_identity`` from identity factors, which damps the first steps towards gradient descent.

On the 2D Poisson benchmark (2-32-1, one CPU-minute, seed 0; see
``experiments/pinn_poisson/README.md``) the automatic step with moving averages 0.9–0.99 reached
relative L2 errors of 8e-5 to 1.1e-4, the descending line search 1.3e-3 (``ema`` 0) to 4.5e-4
(``ema`` 0.97). One step costs about as much as ENGD's at 129 parameters (19 against 15 ms of CPU
time) and far less for wider networks (56 ms against 5.1 s at 2-64-64-1, 4417 parameters). On the
paper's own set-up (2-64-1, random points) with its best run's settings (``line_search="grid"``,
``momentum=0.54``, ``ema=0.86``, ``init_identity=True``, ``damping=2.8e-13``, ``damping_split="same"``)
the paper's 20 237 steps end at 3.3e-6 (median of 3 seeds; the paper's best tuned run: 9.3e-7). On
that run's own draw of points and weights (``experiments/pinn_poisson/kfac_paper_draw.py``), with
``prune_copies=False``, ``accept_worse=False`` and ``damping`` twice the paper's, the first twenty
steps reproduce the loss the paper's run logged to 1e-12 (tested); after that the run is chaotic.

How the layer inputs and output gradients are found. The optimizer sees only the residual closure
(a :class:`~pde_lab.optim.residual.PointwiseResidual`), not the network, and the residual is evaluated
through the PDE's own operator. While it evaluates each residual term, a
:class:`torch.overrides.TorchFunctionMode` watches the parameter tensors: every linear map of a weight
(``F.linear``, ``torch.addmm`` / ``@`` with ``Wᵀ``, which is how ``nn.Linear`` and the forward
Laplacian of ``pinn_mlp`` apply it) records its input copies and adds a zero perturbation to its
output, and one backward pass per residual row gives ``g`` as the gradient with respect to the
perturbations. Any other use of a parameter is refused with a :class:`UserError`, and on the first
step the gradient rebuilt from the recorded ``ã`` and ``g`` is checked against autograd's, so a
residual that reaches the weights some way the tape cannot see fails loudly instead of giving wrong
factors. Supported: residuals built from ``pinn_mlp``'s closed-form value, gradient and Laplacian
(Poisson, Helmholtz). Refused: residuals that differentiate the network with ``torch.func`` (the
space-time heat, Allen–Cahn and Burgers problems take their time derivatives that way; ``hard_bc``
fields), whose derivative copies never pass through a plain linear map. Written here because no
maintained package factorises PINN losses: ``curvlinops`` 3.0.1 supports MSE, cross-entropy and BCE
losses on the outputs of ``Linear``/``Conv2d`` modules only (checked in its wheel).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence

import torch
from torch.func import vjp
from torch.overrides import TorchFunctionMode

from ..errors import UserError, check_choice
from .engd import ENGD, LINE_SEARCHES
from .residual import Params, PointwiseResidual, ResidualFunction, ResidualTerm, as_residual_function, is_finite

KFACApprox = Literal["expand", "reduce"]
Factors = tuple[torch.Tensor, torch.Tensor]  # (A, B) of one layer and one term
APPROXIMATIONS = ("expand", "reduce")
DAMPING_SPLITS = ("trace-norm", "same")
KFAC_LINE_SEARCHES = ("auto", *LINE_SEARCHES)

_T_GETTER = torch.Tensor.T.__get__
_TRANSPOSES = (torch.t, torch.Tensor.t)
_MATMULS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__)
_ADDMMS = (torch.addmm, torch.Tensor.addmm)
_NEEDS = ("It needs a network that applies its weights in plain linear maps for every derivative it returns, "
          "such as pinn_mlp's forward Laplacian (no nested torch.func transforms, hence no hard_bc)")


@dataclass
class _Use:
    """One linear map of a weight during a residual evaluation: ``z = a Wᵀ (+ b)``.

    Attributes:
        weight: index of the weight in ``θ``; bias: index of the bias added in this map, or ``None``.
        inputs: the input copies ``(N, C, F)`` (detached), ``C`` copies per point.
        perturbation: zeros shaped like the output, added to it so that autograd gives ``∂r/∂z``.
    """

    weight: int
    bias: int | None
    inputs: torch.Tensor
    perturbation: torch.Tensor


class _LinearTape(TorchFunctionMode):
    """Records every linear map of the tensors in ``theta`` during a residual evaluation (see the module
    docstring); refuses any other operation on them."""

    def __init__(self, theta: Sequence[torch.Tensor], n_points: int):
        super().__init__()
        self.index = {id(t): i for i, t in enumerate(theta)}
        # id(Wᵀ) -> (weight index, Wᵀ): holding the transpose keeps its id from being reused.
        self.transposed: dict[int, tuple[int, torch.Tensor]] = {}
        self.n_points = n_points
        self.uses: list[_Use] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x, w = args[0], args[1]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            if id(w) in self.index:
                return self._record(func(*args, **kwargs), x, self.index[id(w)], b)
        elif func in _MATMULS and len(args) == 2 and not kwargs and id(args[1]) in self.transposed:
            return self._record(func(*args), args[0], self.transposed[id(args[1])][0], None)
        elif func in _ADDMMS and len(args) == 3 and not kwargs and id(args[2]) in self.transposed:
            return self._record(func(*args), args[1], self.transposed[id(args[2])][0], args[0])
        elif (func == _T_GETTER or func in _TRANSPOSES) and len(args) == 1 and id(args[0]) in self.index:
            out = func(*args, **kwargs)
            if args[0].dim() == 2:
                self.transposed[id(out)] = (self.index[id(args[0])], out)
                return out
            raise UserError(f"KFAC: parameter {self.index[id(args[0])]} is transposed but is not a matrix")
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and self._touches(args, kwargs):
            name = getattr(func, "__name__", repr(func))
            raise UserError(f"KFAC supports parameters used only as linear-layer weights and biases "
                            f"(F.linear, addmm or matmul with the transposed weight); the residual applies "
                            f"{name!r} to one")
        return out

    def _touches(self, args, kwargs) -> bool:
        stack = list(args) + list(kwargs.values())
        while stack:
            a = stack.pop()
            if isinstance(a, (list, tuple)):
                stack.extend(a)
            elif isinstance(a, torch.Tensor) and (id(a) in self.index or id(a) in self.transposed):
                return True
        return False

    def _record(self, out: torch.Tensor, x: torch.Tensor, weight: int, bias: torch.Tensor | None) -> torch.Tensor:
        if x.dim() < 2 or x.shape[0] != self.n_points:
            raise UserError(f"KFAC needs layer inputs shaped (points, ..., features) with {self.n_points} points "
                            f"first; got {tuple(x.shape)}")
        bias_index = None
        if bias is not None:
            bias_index = self.index.get(id(bias))  # a bias that is not a parameter is a constant offset
        try:
            perturbation = torch.zeros_like(out).requires_grad_(True)
        except RuntimeError:  # inside a torch.func transform: the derivative copies are not plain maps
            raise UserError(f"KFAC cannot follow a residual that differentiates the network with torch.func. "
                            f"{_NEEDS}") from None
        self.uses.append(_Use(weight, bias_index, x.detach().reshape(self.n_points, -1, x.shape[-1]), perturbation))
        return out + perturbation


@dataclass
class _Layer:
    """A linear layer found in the residual: its weight ``(out, F)`` and bias indices in ``θ``."""

    weight: int
    bias: int | None
    fan_in: int
    fan_out: int

    @property
    def dim_a(self) -> int:
        return self.fan_in + (self.bias is not None)


class KFAC(ENGD):
    """KFAC natural gradient for PINN residuals (see the module docstring).

    Args:
        params: the parameter tensors (one group): the weights and biases of the network's linear layers.
        damping: ``λ > 0``, fixed; with ``adaptive_damping`` the initial relative ``μ`` (default 1e-3
            when 0).
        kfac_approx: ``expand`` (default) or ``reduce``.
        ema: weight of the old factors in their exponential moving average, in ``[0, 1)`` (0: use
            the current estimate only).
        update_every: recompute the factors every this many steps (the gradient every step).
        damping_split: ``trace-norm`` (default) or ``same``.
        prune_copies: leave out copies with zero input or zero output gradient at every point.
        momentum: heavy-ball momentum ``β`` of the direction for the line searches ``grid``,
            ``descending`` and ``none``: the search runs along ``m ← β m + K_λ⁻¹∇L`` (the paper's code's
            momentum; 0: none).
        init_identity: start the moving averages of the factors from identity matrices instead of the
            first estimate, so that the first steps are damped towards gradient descent.
        accept_worse: for ENGD's line searches, whether a step that raises the loss is still taken
            (``True``, ENGD's rule) or not (``False``, the KFAC paper's grid search).
        line_search: ``auto`` (default: the model-based step size and momentum), or ENGD's ``grid``,
            ``descending``, ``none``. With ``auto`` and a fixed damping, a rejected step (the loss rose)
            is retried with the same damping, so a too small ``damping`` can stall it; the adaptive
            damping raises ``μ`` instead.
        max_halvings, lr, adaptive_damping, damping_range: as for :class:`~pde_lab.optim.engd.ENGD`.

    ``step(residual)`` takes a :class:`~pde_lab.optim.residual.PointwiseResidual` over these parameters
    (``model_terms`` builds one) and returns the loss before the step. ``last`` holds ENGD's entries
    (``eta`` is ``α`` for the automatic step) and, for ``auto``, ``momentum`` (``β``).
    """

    def __init__(self, params: Iterable[torch.Tensor], damping: float = 0.0, kfac_approx: KFACApprox = "expand",
                 ema: float = 0.95, update_every: int = 1, damping_split: str = "trace-norm", prune_copies: bool = True,
                 line_search: str = "auto", max_halvings: int = 30, lr: float = 1.0,
                 adaptive_damping: bool = True, damping_range: tuple[float, float] = (1e-15, 1e3),
                 momentum: float = 0.0, init_identity: bool = False, accept_worse: bool = True):
        check_choice("KFAC approximation", kfac_approx, APPROXIMATIONS)
        check_choice("KFAC damping_split", damping_split, DAMPING_SPLITS)
        line_search = "none" if line_search is None else line_search  # the override `line_search=none` reads None
        check_choice("KFAC line_search", line_search, KFAC_LINE_SEARCHES)
        if not 0.0 <= float(ema) < 1.0 or int(update_every) < 1:
            raise UserError(f"KFAC needs 0 <= ema < 1 and update_every >= 1, got {ema!r} and {update_every!r}")
        if not adaptive_damping and damping <= 0:
            raise UserError("KFAC without adaptive damping needs damping > 0 (the factors are often singular)")
        if adaptive_damping and line_search == "none":  # before ENGD's message, which knows no `auto`
            raise UserError("KFAC adaptive_damping (on by default) is steered by the step size: use line_search "
                            "auto, grid or descending, or line_search none with adaptive_damping false and a "
                            "damping > 0")
        if not 0.0 <= float(momentum) < 1.0:
            raise UserError(f"KFAC momentum must be in [0, 1), got {momentum!r}")
        if momentum and line_search == "auto":
            raise UserError("KFAC momentum is for line_search grid, descending or none; the automatic step "
                            "chooses its own momentum")
        super().__init__(params, damping=damping, line_search="descending" if line_search == "auto" else line_search,
                         max_halvings=max_halvings, lr=lr, adaptive_damping=adaptive_damping,
                         damping_range=damping_range, accept_worse=accept_worse)
        g = self.param_groups[0]
        g["line_search"] = line_search
        for unused in ("solver", "rcond", "jacobian_mode"):  # ENGD's Gramian solve is not used
            g.pop(unused, None)
        g.update(kfac_approx=kfac_approx, ema=float(ema), update_every=int(update_every), damping_split=damping_split,
                 prune_copies=bool(prune_copies), momentum=float(momentum), init_identity=bool(init_identity))
        self._layers: list[_Layer] | None = None
        self._validated = False  # the tape is checked against autograd's gradient once
        self._gradient: torch.Tensor | None = None  # ∇L of the last direction

    # ---- curvature -----------------------------------------------------------------------------------
    def factors(self, res: PointwiseResidual) -> tuple[torch.Tensor, torch.Tensor, list[list[Factors]]]:
        """The residual, the gradient and the current (not averaged) Kronecker factors.

        Returns:
            ``(r (m,), ∇L (p,), factors)`` with ``factors[t][l] = (A, B)`` for term ``t`` and layer ``l``
            (:attr:`layers` order): ``A: (F_l (+1), F_l (+1))`` from the inputs, ``B: (out_l, out_l)`` from
            the output gradients.
        """
        if not isinstance(res, PointwiseResidual):
            raise UserError("KFAC needs a PointwiseResidual (pde_lab.optim.model_terms builds one), "
                            f"got {type(res).__name__}")
        theta = tuple(t.detach().requires_grad_(True) for t in res.current())
        approx, prune = self.param_groups[0]["kfac_approx"], self.param_groups[0]["prune_copies"]
        rows, grads, per_term, uses_all = [], None, [], []
        for term in res.terms:
            r, uses = self._evaluate(term, theta)
            rows.append(r.detach().reshape(-1))
            g_theta = torch.autograd.grad(r, theta, grad_outputs=r.detach(), retain_graph=True, allow_unused=True)
            g_theta = [torch.zeros_like(t) if gt is None else gt for gt, t in zip(g_theta, theta)]
            grads = g_theta if grads is None else [a + b for a, b in zip(grads, g_theta)]
            outs = self._output_gradients(r, uses)
            uses_all.append((r.detach(), uses, outs))
        layers = self._discover(theta, [u for _, uses, _ in uses_all for u in uses])
        for r, uses, outs in uses_all:
            per_term.append([_kronecker_factors(layer, uses, outs, r.shape[0], approx, prune) for layer in layers])
        gradient = res.flatten(grads)
        if not self._validated:
            self._validate(layers, uses_all, gradient, res)
            self._validated = True
        return torch.cat(rows), gradient, per_term

    def check(self, res: PointwiseResidual) -> None:
        """Raise the :class:`UserError` the first step would raise if this residual cannot be factorised
        (parameters used outside linear maps, ``torch.func`` derivatives), without changing any
        parameter: callers check before they write anything."""
        self.factors(res)

    @property
    def layers(self) -> list[_Layer]:
        """The linear layers found in the residual (after the first step or :meth:`factors` call)."""
        if self._layers is None:
            raise RuntimeError("KFAC has not seen a residual yet")
        return self._layers

    def _evaluate(self, term: ResidualTerm, theta: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, list[_Use]]:
        """The weighted residual rows ``(N, k)`` of one term and the linear maps seen on the way."""
        n = term.points.shape[0]
        with _LinearTape(theta, n) as tape:
            r = term.residual(theta, term.points)
        return term.weight * r.reshape(n, -1), tape.uses

    @staticmethod
    def _output_gradients(r: torch.Tensor, uses: list[_Use]) -> list[list[torch.Tensor]]:
        """``g`` per residual column: ``outs[j][u]: (N, C_u, out)``, ``∂r_{n,j}/∂z`` of use ``u``. Rows depend
        on their own point only, so the gradient of the column sum is every point's own derivative."""
        eps = [u.perturbation for u in uses]
        outs = []
        for j in range(r.shape[1]):
            gs = torch.autograd.grad(r[:, j].sum(), eps, retain_graph=True, allow_unused=True) if eps else []
            outs.append([torch.zeros_like(e) if g is None else g for g, e in zip(gs, eps)])
        return [[g.reshape(r.shape[0], -1, g.shape[-1]) for g in col] for col in outs]

    def _discover(self, theta: tuple[torch.Tensor, ...], uses: list[_Use]) -> list[_Layer]:
        """The layers (weight, bias pairs) of the recorded maps; every parameter must belong to one."""
        bias_of: dict[int, int | None] = {}
        for u in uses:
            if u.bias is not None:
                if bias_of.get(u.weight) not in (None, u.bias):
                    raise UserError(f"KFAC: weight {u.weight} is used with two different biases")
                bias_of[u.weight] = u.bias
            else:
                bias_of.setdefault(u.weight, None)
        layers = [_Layer(w, b, theta[w].shape[1], theta[w].shape[0]) for w, b in sorted(bias_of.items())]
        covered = sorted([l.weight for l in layers] + [l.bias for l in layers if l.bias is not None])
        bad_bias = any(theta[l.bias].shape != (l.fan_out,) for l in layers if l.bias is not None)
        if covered != list(range(len(theta))) or bad_bias:
            missing = sorted(set(range(len(theta))) - set(covered))
            raise UserError(f"KFAC needs every parameter to be the weight or bias of a linear layer; parameters "
                            f"{missing} (shapes {[tuple(theta[i].shape) for i in missing]}) are not")
        pairs = [(x.weight, x.bias) for x in layers]
        if self._layers is not None and [(x.weight, x.bias) for x in self._layers] != pairs:
            raise UserError("KFAC: the residual's layer structure changed between steps")
        self._layers = layers
        return layers

    def _validate(self, layers: list[_Layer], uses_all, gradient: torch.Tensor, res: ResidualFunction) -> None:
        """The gradient rebuilt from the tape, ``Σ r_{n,j} g_{n,s,j} ã_{n,s}ᵀ``, must equal autograd's:
        otherwise the residual reaches the weights some way the tape did not see."""
        rebuilt = torch.zeros_like(gradient)
        offsets = [0]
        for size in res.sizes:
            offsets.append(offsets[-1] + size)
        for r, uses, outs in uses_all:
            for layer in layers:
                ga = _layer_gradient(layer, uses, outs, r)
                w, b = layer.weight, layer.bias
                rebuilt[offsets[w]:offsets[w + 1]] += ga[:, :layer.fan_in].reshape(-1)
                if b is not None:
                    rebuilt[offsets[b]:offsets[b + 1]] += ga[:, layer.fan_in]
        tol = 10 * math.sqrt(torch.finfo(gradient.dtype).eps)
        if float((rebuilt - gradient).norm()) > tol * float(gradient.norm() + rebuilt.norm()) + 1e-300:
            raise UserError(f"KFAC cannot follow how this residual uses the network's weights (the gradient "
                            f"rebuilt from the recorded linear maps differs from autograd's). {_NEEDS}")

    def _update_factors(self, per_term: list[list[Factors]], counts: list[int]) -> None:
        """Group the terms into at most two Kronecker products (the second and later terms merged: ``A``
        averaged weighted by the terms' point counts, ``B`` summed) and fold them into the moving averages."""
        groups = [per_term[0]]
        if len(per_term) > 1:
            rest, weights = per_term[1:], counts[1:]
            total = float(sum(weights))
            groups.append([(sum(w * t[l][0] for t, w in zip(rest, weights)) / total, sum(t[l][1] for t in rest))
                           for l in range(len(per_term[0]))])
        state = self.state[self._params[0]]
        beta = self.param_groups[0]["ema"]
        old = state.get("factors")
        if old is None or len(old) != len(groups):
            if not self.param_groups[0]["init_identity"]:
                state["factors"] = [[(a.clone(), b.clone()) for a, b in grp] for grp in groups]
                return
            old = [[(torch.eye(a.shape[0], dtype=a.dtype, device=a.device),
                     torch.eye(b.shape[0], dtype=b.dtype, device=b.device)) for a, b in grp] for grp in groups]
        state["factors"] = [[(beta * ao + (1 - beta) * a, beta * bo + (1 - beta) * b)
                             for (ao, bo), (a, b) in zip(go, gn)] for go, gn in zip(old, groups)]

    def curvature(self) -> torch.Tensor:
        """The current undamped KFAC matrix ``(p, p)``: block diagonal, one block ``Σ_t B_t ⊗ A_t`` per layer,
        in the flat parameter order of the residual (weight rows, then the bias)."""
        factors = self.state[self._params[0]].get("factors")
        if factors is None:
            raise RuntimeError("KFAC has no factors yet: take a step first")
        sizes = [p.numel() for p in self._params]
        offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        p = offsets[-1]
        ref = factors[0][0][0]
        K = torch.zeros(p, p, dtype=ref.dtype, device=ref.device)
        for l, layer in enumerate(self.layers):
            block = sum(torch.kron(grp[l][1], grp[l][0]) for grp in factors)  # row-major [W b]: B ⊗ A
            idx = _layer_indices(layer, offsets, ref.device)
            K[idx[:, None], idx[None, :]] = block
        return K

    # ---- the step ----------------------------------------------------------------------------------
    def direction(self, res: ResidualFunction) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, d)``: the residual ``(m,)`` and the KFAC natural-gradient direction ``(p,)`` (descent: ``−d``)."""
        g = self.param_groups[0]
        state = self.state[self._params[0]]
        if "factors" not in state or state.get("step", 0) % g["update_every"] == 0:
            r, gradient, per_term = self.factors(res)
            self._update_factors(per_term, [t.points.shape[0] for t in res.terms])
        else:
            r, pullback = vjp(lambda *ts: res.fn(ts), *res.current())
            r = r.detach()
            gradient = res.flatten(pullback(r)).detach()
        self._gradient = gradient
        d = self._precondition(gradient)
        if g["momentum"] and is_finite(d):  # never with line_search="auto" (refused in __init__)
            # heavy ball on the direction: the line search scales the accumulated direction
            buffer = state.get("momentum_buffer")
            d = d if buffer is None else g["momentum"] * buffer + d
            state["momentum_buffer"] = d
        return r, d

    @torch.no_grad()
    def step(self, closure: ResidualFunction | Callable[[Params], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """One KFAC step; returns the loss ``½‖r‖²`` before it (0-d tensor). ``closure`` is a
        :class:`~pde_lab.optim.residual.PointwiseResidual` over this optimizer's parameters."""
        if self.param_groups[0]["line_search"] != "auto":
            return super().step(closure)
        return self._auto_step(as_residual_function(closure, self._params))

    def _auto_step(self, res: ResidualFunction) -> torch.Tensor:
        """KFAC's own step rule (Martens & Grosse 2015, §7; the paper's KFAC*): the update
        ``u = α Δ + β δ`` along the KFAC direction ``Δ = −K⁻¹∇L`` and the previous update ``δ`` minimises
        the damped Gauss-Newton model ``½ uᵀ(JᵀJ + λI)u + ∇Lᵀu`` (``J Δ``, ``J δ`` by forward mode); the
        relative damping ``μ`` follows the reduction ratio ``ρ`` of the actual to the predicted decrease
        (×2/3 for ``ρ > 3/4``, ×3/2 for ``ρ < 1/4``, ×10 for ``ρ < 0``). A step that raises the loss is not
        taken, and the momentum restarts."""
        g = self.param_groups[0]
        state = self.state[self._params[0]]
        with torch.enable_grad():
            try:
                r, d = self.direction(res)
            except FloatingPointError:
                r, d = res().detach(), None
        loss = 0.5 * torch.dot(r, r)
        if d is None or not is_finite(d):
            self.last = dict(loss=float(loss), new_loss=float(loss), eta=0.0, momentum=0.0, evaluations=0,
                             improved=False)
            self._adapt_ratio(-math.inf)
            return loss
        theta = res.current()
        previous = state.get("update")
        dirs = [-d] + ([previous] if previous is not None else [])
        with torch.enable_grad():
            jv = [res.jvp(v, theta)[1] for v in dirs]
        lam = self._model_damping()
        M = torch.stack([torch.stack([torch.dot(a, b) + lam * torch.dot(u, v) for b, v in zip(jv, dirs)])
                         for a, u in zip(jv, dirs)])
        b = torch.stack([torch.dot(self._gradient, v) for v in dirs])
        coef = -torch.linalg.lstsq(M, b[:, None]).solution[:, 0]
        update = sum(c * v for c, v in zip(coef, dirs))
        predicted = 0.5 * float(torch.dot(b, coef))  # the model's change of the loss, ≤ 0
        new_loss = float(res.loss(res.shifted(update, theta)))
        improved = math.isfinite(new_loss) and new_loss < float(loss)
        if improved:
            res.assign(res.shifted(update, theta))
            state["update"] = update
            state["step"] = state.get("step", 0) + 1
        else:
            state.pop("update", None)  # restart the momentum from the next direction
        self.last = dict(loss=float(loss), new_loss=new_loss if improved else float(loss), eta=float(coef[0]),
                         momentum=float(coef[1]) if len(coef) > 1 else 0.0, evaluations=1, improved=improved)
        if g["adaptive_damping"]:
            self.last["mu"] = state.get("mu", g["damping"] or 1e-3)
        ratio = (new_loss - float(loss)) / predicted if predicted < 0 and math.isfinite(new_loss) else -math.inf
        self._adapt_ratio(ratio)
        return loss

    def _model_damping(self) -> float:
        """``λ`` of the quadratic model: fixed, or ``μ`` times the mean eigenvalue of the KFAC matrix."""
        g = self.param_groups[0]
        if not g["adaptive_damping"]:
            return g["damping"]
        mu = self.state[self._params[0]].get("mu", g["damping"] or 1e-3)
        factors = self.state[self._params[0]]["factors"]
        trace = sum(float(A.trace()) * float(B.trace()) for grp in factors for A, B in grp)
        return mu * trace / sum(p.numel() for p in self._params)

    def _adapt_ratio(self, ratio: float) -> None:
        """Levenberg-Marquardt control of ``μ`` by the reduction ratio (Martens & Grosse 2015, §6.5)."""
        g = self.param_groups[0]
        if not g["adaptive_damping"]:
            return
        state = self.state[self._params[0]]
        mu = state.get("mu", g["damping"] or 1e-3)
        if ratio > 0.75:
            mu *= 2.0 / 3.0
        elif ratio < 0:  # the loss rose: the model is not trusted at all
            mu *= 10.0
        elif ratio < 0.25:
            mu *= 1.5
        low, high = g["damping_range"]
        state["mu"] = min(max(mu, low), high)

    def _precondition(self, gradient: torch.Tensor) -> torch.Tensor:
        """``K_λ⁻¹ ∇L`` layer by layer; ``FloatingPointError`` (a failed step) if a damped factor is singular."""
        g = self.param_groups[0]
        factors = self.state[self._params[0]]["factors"]
        sizes = [p.numel() for p in self._params]
        offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        d = torch.zeros_like(gradient)
        for l, layer in enumerate(self.layers):
            idx = _layer_indices(layer, offsets, gradient.device)
            G = gradient[idx].reshape(layer.fan_out, layer.dim_a)
            pairs = [grp[l] for grp in factors]
            lam = self._layer_damping(pairs)
            damped = [_damp(A, B, lam / len(pairs), g["damping_split"]) for A, B in pairs]
            d[idx] = _solve_kronecker_sum(damped, G).reshape(-1)
        return d

    def _layer_damping(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """``λ`` of a layer: fixed, or the relative ``μ`` times the mean eigenvalue ``tr(K)/p_layer``."""
        g = self.param_groups[0]
        if not g["adaptive_damping"]:
            return g["damping"]
        mu = self.state[self._params[0]].get("mu", g["damping"] or 1e-3)
        A0, B0 = pairs[0]
        trace = sum(float(A.trace()) * float(B.trace()) for A, B in pairs)
        return mu * trace / (A0.shape[0] * B0.shape[0])


def _layer_indices(layer: _Layer, offsets: list[int], device) -> torch.Tensor:
    """Flat indices of ``[W b]`` in row-major order: row ``i`` is ``W[i, :]`` then ``b[i]``."""
    w = torch.arange(offsets[layer.weight], offsets[layer.weight + 1], device=device)
    w = w.reshape(layer.fan_out, layer.fan_in)
    if layer.bias is None:
        return w.reshape(-1)
    b = torch.arange(offsets[layer.bias], offsets[layer.bias + 1], device=device)[:, None]
    return torch.cat([w, b], dim=1).reshape(-1)


def _augmented_inputs(layer: _Layer, uses: list[_Use]) -> tuple[torch.Tensor, list[int]]:
    """``ã: (N, S, F(+1))`` of ``layer`` over its uses in one term (``[a, 1]`` where the bias is added,
    ``[a, 0]`` elsewhere) and the positions of those uses in ``uses``."""
    picked = [i for i, u in enumerate(uses) if u.weight == layer.weight]
    parts = []
    for i in picked:
        a = uses[i].inputs
        if layer.bias is not None:
            one = a.new_ones(a.shape[:-1] + (1,)) if uses[i].bias == layer.bias else a.new_zeros(a.shape[:-1] + (1,))
            a = torch.cat([a, one], dim=-1)
        parts.append(a)
    return torch.cat(parts, dim=1), picked


def _kronecker_factors(layer: _Layer, uses: list[_Use], outs: list[list[torch.Tensor]], n: int,
                       approx: str, prune: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of one layer and one term (module docstring); a layer the term does not use gets zeros.
    With ``prune``, copies whose input or output gradient is zero at every point are left out."""
    zeros = (torch.zeros(layer.dim_a, layer.dim_a, dtype=uses[0].inputs.dtype, device=uses[0].inputs.device),
             torch.zeros(layer.fan_out, layer.fan_out, dtype=uses[0].inputs.dtype, device=uses[0].inputs.device))
    if not any(u.weight == layer.weight for u in uses):
        return zeros
    a, picked = _augmented_inputs(layer, uses)  # (N, S, Fa)
    g = torch.stack([torch.cat([col[i] for i in picked], dim=1) for col in outs])  # (k, N, S, out)
    if prune:
        keep = (a.abs().amax(dim=(0, 2)) > 0) & (g.abs().amax(dim=(0, 1, 3)) > 0)
        if not bool(keep.any()):
            return zeros
        a, g = a[:, keep], g[:, :, keep]
    if approx == "expand":
        A = torch.einsum("nsf,nsh->fh", a, a) / (n * a.shape[1])
        B = torch.einsum("knso,knsq->oq", g, g)
    else:
        mean = a.mean(dim=1)
        A = mean.T @ mean / n
        total = g.sum(dim=2)  # (k, N, out)
        B = torch.einsum("kno,knq->oq", total, total)
    return A, B


def _layer_gradient(layer: _Layer, uses: list[_Use], outs: list[list[torch.Tensor]], r: torch.Tensor) -> torch.Tensor:
    """``Σ_{n,j,s} r_{n,j} g_{n,s,j} ã_{n,s}ᵀ``: the layer's gradient ``(out, F(+1))`` rebuilt from the tape."""
    if not any(u.weight == layer.weight for u in uses):
        return r.new_zeros(layer.fan_out, layer.dim_a)
    a, picked = _augmented_inputs(layer, uses)
    total = r.new_zeros(layer.fan_out, layer.dim_a)
    for j, col in enumerate(outs):
        g = torch.cat([col[i] for i in picked], dim=1)
        total = total + torch.einsum("n,nso,nsf->of", r[:, j], g, a)
    return total


def _damp(A: torch.Tensor, B: torch.Tensor, lam: float, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A + λ_A I, B + λ_B I)`` with ``λ_A λ_B = λ`` (trace-norm split) or ``λ_A = λ_B = λ`` (same)."""
    if split == "same":
        lam_a = lam_b = lam
    else:
        ta, tb = float(A.trace()) / A.shape[0], float(B.trace()) / B.shape[0]
        pi = math.sqrt(ta / tb) if ta > 0 and tb > 0 else 1.0
        lam_a, lam_b = pi * math.sqrt(lam), math.sqrt(lam) / pi
    eye_a = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    eye_b = torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
    return A + lam_a * eye_a, B + lam_b * eye_b


def _cholesky(M: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(M)
    if int(info) != 0:
        raise FloatingPointError("a damped KFAC factor is not positive definite; increase the damping")
    return L


def _solve_kronecker_sum(pairs: list[tuple[torch.Tensor, torch.Tensor]], G: torch.Tensor) -> torch.Tensor:
    """``D`` with ``Σ_t B_t D A_t = G`` for one or two SPD pairs ``(A_t, B_t)``; ``G, D: (out, Fa)``.

    One pair: ``D = B⁻¹ G A⁻¹``. Two: with the generalised eigenvectors ``V`` (``Vᵀ A₂ V = I``,
    ``Vᵀ A₁ V = Λ``) and ``U`` (``Uᵀ B₂ U = I``, ``Uᵀ B₁ U = M``), ``B₁ ⊗ A₁ + B₂ ⊗ A₂`` is
    ``(U ⊗ V)⁻ᵀ (M ⊗ Λ + I) (U ⊗ V)⁻¹``, so ``D = U [(Uᵀ G V) / (μ_i λ_j + 1)] Vᵀ``.
    """
    if len(pairs) == 1:
        (A, B), = pairs
        X = torch.cholesky_solve(G, _cholesky(B))
        return torch.cholesky_solve(X.T, _cholesky(A)).T
    (A1, B1), (A2, B2) = pairs

    def generalised(M1: torch.Tensor, M2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L = _cholesky(M2)
        Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=L.dtype, device=L.device), upper=False)
        C = Linv @ M1 @ Linv.T
        evals, Q = torch.linalg.eigh(0.5 * (C + C.T))
        return evals, Linv.T @ Q

    lam, V = generalised(A1, A2)
    mu, U = generalised(B1, B2)
    return U @ ((U.T @ G @ V) / (mu[:, None] * lam[None, :] + 1.0)) @ V.T


__all__ = ["KFAC", "APPROXIMATIONS", "DAMPING_SPLITS"]
