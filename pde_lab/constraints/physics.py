"""From a PDE module's pointwise residual terms to the least-squares problem of the hard constraint.

A PDE module that supports hard constraints declares (duck-typed, like the PINN interface of
:mod:`pde_lab.pdes.poisson`):

``pinn_coordinates``
    names of the point coordinates, e.g. ``("x", "t")``;
``pinn_domain(params) -> ((lo, hi), ...)``
    the box the collocation points fill;
``hard_constraint_terms(params) -> [(name, face, jets, fn), ...]``
    residual terms: ``face`` is ``None`` (interior) or ``(axis, side)``; ``jets`` names the values
    ``fn`` needs; ``fn(jets: {name: (P,)}, x: (P, d), inputs: {name: (P,)}) -> (P,)``.

The constrained field is ``u = Σ_i ω_i b_i`` with basis functions ``b_i`` from a network. Every
value a term needs (``u``, ``u_t``, ``u_xx``, a velocity obtained from the vorticity, …) is *linear*
in ``u``, so it is ``jets @ ω`` with ``jets`` the same value computed for each basis function: the
jets are computed once per forward pass (by :func:`coordinate_jets` for a network of the
coordinates, or by a PDE module's grid operator such as ``NavierStokes2D.grid_jets``), and the
least-squares solve only sees ``(P, J, N)`` tensors. The residual of a term is nonlinear in the
jet values (``R(u) u_t``, ``u·∇ω``), hence a Levenberg–Marquardt solve.

Generic code uses only these declarations, never the PDE's name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, NamedTuple, Sequence

import torch
from torch.func import jvp

from ..errors import UserError

if TYPE_CHECKING:
    from ..pdes.base import PDE

__all__ = ["Term", "as_terms", "jet_names", "coordinate_jets", "ConstraintResidual", "term_residuals"]


class Term(NamedTuple):
    """One residual term of a PDE module (see the module docstring)."""

    name: str
    face: tuple[int, int] | None
    jets: tuple[str, ...]
    fn: Callable[[Mapping[str, torch.Tensor], torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]


def as_terms(pde: PDE, params: Mapping[str, float]) -> list[Term]:
    """The residual terms of ``pde`` for ``params``; ``UserError`` if the PDE does not declare them."""
    if not hasattr(pde, "hard_constraint_terms"):
        raise UserError(f"PDE {getattr(pde, 'name', pde)!r} does not declare hard_constraint_terms; "
                        f"see pde_lab/constraints/physics.py for the interface")
    return [Term(str(n), None if f is None else (int(f[0]), int(f[1])), tuple(j), fn)
            for n, f, j, fn in pde.hard_constraint_terms(params)]


def jet_names(terms: Sequence[Term]) -> tuple[str, ...]:
    """Union of the jets of ``terms`` in first-use order: the ``J`` axis of the jet tensors."""
    out: list[str] = []
    for t in terms:
        out += [j for j in t.jets if j not in out]
    return tuple(out)


def coordinate_jets(basis_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    names: Sequence[str], coordinates: Sequence[str]) -> torch.Tensor:
    """Values and partial derivatives of every basis function at points, by forward-mode autograd.

    A name is a field name alone (the value) or ``field_<letters>`` with one letter per
    differentiation, each letter a coordinate name (``"u_xx"`` = ``∂²u/∂x²``, ``"u_xt"``); the field
    part is not used (one field). Derivatives of orders one and two are nested
    :func:`torch.func.jvp` over the whole point batch, valid because row ``p`` of ``basis_fn(x)``
    depends on ``x[p]`` only. Differentiable with respect to the network's parameters.

    Args:
        basis_fn: ``(P, d) -> (P, N)``, rows independent.
        x: ``(P, d)`` points.
        names: the jets, e.g. ``("u", "u_t", "u_xx")``.
        coordinates: names of the ``d`` coordinates, e.g. ``("x", "t")``.

    Returns:
        ``(P, J, N)`` with ``J = len(names)``.
    """
    coords = list(coordinates)
    if x.dim() != 2 or x.shape[-1] != len(coords):
        raise UserError(f"coordinate_jets needs points (P, {len(coords)}), got {tuple(x.shape)}")

    def direction(letter: str) -> torch.Tensor:
        if letter not in coords:
            raise UserError(f"jet derivative {letter!r} is not a coordinate; coordinates are {coords}")
        e = torch.zeros_like(x)
        e[:, coords.index(letter)] = 1.0
        return e

    cache: dict[str, torch.Tensor] = {}
    value = None
    out = []
    for name in names:
        letters = name.split("_", 1)[1] if "_" in name else ""
        if letters in cache:
            out.append(cache[letters])
            continue
        if letters == "":
            value = basis_fn(x) if value is None else value
            res = value
        elif len(letters) == 1:
            res = jvp(basis_fn, (x,), (direction(letters),))[1]
        elif len(letters) == 2:
            e1, e2 = direction(letters[0]), direction(letters[1])
            res = jvp(lambda y: jvp(basis_fn, (y,), (e1,))[1], (x,), (e2,))[1]
        else:
            raise UserError(f"coordinate_jets supports derivatives up to order 2, got {name!r}")
        cache[letters] = res
        out.append(res)
    return torch.stack(out, dim=1)


def term_residuals(term: Term, names: Sequence[str], values: torch.Tensor, x: torch.Tensor,
                   inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``term.fn`` on jet values ``values (..., P, J)`` (the ``J`` axis ordered as ``names``)."""
    jets = {n: values[..., names.index(n)] for n in term.jets}
    return term.fn(jets, x, inputs)


class ConstraintResidual:
    """The per-expert residual ``r(ω, *data) -> (M,)`` of :func:`hard_constraint_solve`.

    ``data`` is, for each term in order, ``(jets (P_t, J, N), x (P_t, d), inputs (P_t, I), weight
    (P_t,))``: the basis jets at the term's points, the points, the input fields there (columns in
    the order of ``input_names``) and a weight per row (0 drops a row: a face that this expert does
    not touch; the term's overall weight times ``1/sqrt(P_t)``, so that ``½‖r‖²`` is a sum of mean
    squares). Rows of every term are concatenated.

    Args:
        terms: the PDE's residual terms.
        input_names: names of the input-field columns passed to the terms.
    """

    def __init__(self, terms: Sequence[Term], input_names: Sequence[str] = ()):
        self.terms = list(terms)
        self.names = jet_names(self.terms)
        self.input_names = tuple(input_names)

    def __call__(self, omega: torch.Tensor, *data: torch.Tensor) -> torch.Tensor:
        if len(data) != 4 * len(self.terms):
            raise UserError(f"ConstraintResidual needs 4 tensors per term ({4 * len(self.terms)}), got {len(data)}")
        parts = []
        for i, term in enumerate(self.terms):
            jets, x, inp, w = data[4 * i: 4 * i + 4]
            values = jets @ omega
            inputs = {n: inp[..., c] for c, n in enumerate(self.input_names)}
            parts.append(w * term_residuals(term, self.names, values, x, inputs))
        return torch.cat(parts, dim=-1)
