"""Mixture of experts for hard constraints: a uniform partition of the (space-)time box into ``K``
subdomains, one least-squares solve per subdomain, and the assembled output.

Each expert ``k`` owns a box ``Ω_k`` of a uniform ``parts[0] × parts[1] × …`` partition of the domain.
Its problem uses only collocation points sampled in ``Ω_k`` (optionally in ``Ω_k`` widened by
``overlap`` times its width on each side, clipped to the domain), so the ``K`` solves are
independent: they are batched along a leading axis and vectorised with :func:`torch.func.vmap` by
:func:`~pde_lab.constraints.hard_constraint.hard_constraint_solve`, every expert with the same number of
points and the same iteration count; the batch axis can equally be split across devices. The
constrained field at a point ``x`` is ``b(x) · ω_k`` with ``k`` the expert whose (unwidened) box holds
``x`` (:func:`assemble`). ``K = 1`` is the global hard constraint.

Rows that every expert must satisfy whatever its box (the paper's diffusion–sorption mixture hands the
global initial and boundary conditions to each expert, while the PDE rows are partitioned) are drawn
once over the whole domain and replicated (``sample(..., shared=True)``): the experts share one basis,
so each expert's field is defined on the whole domain and can be held to the whole initial and
boundary data; the solves stay independent.

Points on an internal face belong to the expert above it; the domain's upper faces to the last
expert along each axis, so every point of the closed box has exactly one expert.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch

from ..errors import UserError

__all__ = ["Partition", "assemble"]


class Partition:
    """Uniform partition of a box into ``prod(parts)`` experts, numbered in C order over ``parts``.

    Args:
        bounds: ``((lo, hi), …)`` per coordinate (space, then time).
        parts: number of subdomains per coordinate (1 = not split along that axis).
        overlap: widening of each box on every side for sampling, as a fraction of its width (≥ 0).
    """

    def __init__(self, bounds: Sequence[tuple[float, float]], parts: Sequence[int], overlap: float = 0.0):
        self.bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)
        self.parts = tuple(int(p) for p in parts)
        if len(self.parts) != len(self.bounds):
            raise UserError(f"partition parts needs one entry per coordinate ({len(self.bounds)}), got {list(parts)}")
        if any(p < 1 for p in self.parts) or any(int(p) != p for p in parts):
            raise UserError(f"partition parts must be positive integers, got {list(parts)}")
        if any(not hi > lo for lo, hi in self.bounds):
            raise UserError(f"partition bounds need lo < hi on every axis, got {self.bounds}")
        if not 0 <= float(overlap) < float("inf"):  # an infinite widening samples nowhere
            raise UserError(f"partition overlap must be a finite non-negative fraction of a subdomain width, "
                            f"got {overlap!r}")
        self.overlap = float(overlap)

    @property
    def n_experts(self) -> int:
        n = 1
        for p in self.parts:
            n *= p
        return n

    @property
    def dim(self) -> int:
        return len(self.bounds)

    def _multi_index(self) -> torch.Tensor:
        """``(K, d)`` integer position of each expert's box along each axis (C order)."""
        grids = torch.meshgrid(*[torch.arange(p) for p in self.parts], indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], dim=-1)

    def _edges(self, axis: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
               ) -> torch.Tensor:
        """``(p + 1,)`` edges of the boxes along ``axis``: ``lo + i·width``, the last exactly ``hi``.

        ``lo + p·width`` can miss ``hi`` by an ulp (``lo = −1, hi = 0.3``: 0.30000000000000004); the
        last box must end exactly on the domain face, or :meth:`touches` says no expert reaches it.
        Both :meth:`boxes` and :meth:`assign` use these edges, so a point is assigned to a box that
        holds it.
        """
        (lo, hi), p = self.bounds[axis], self.parts[axis]
        edges = lo + torch.arange(p + 1, dtype=dtype, device=device) * ((hi - lo) / p)
        edges[-1] = hi
        return edges

    def boxes(self, expanded: bool = False, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(K, d, 2)`` lower and upper corners of every expert's box (widened and clipped if ``expanded``)."""
        idx = self._multi_index()
        start = torch.stack([self._edges(a, dtype)[idx[:, a]] for a in range(self.dim)], dim=-1)
        end = torch.stack([self._edges(a, dtype)[idx[:, a] + 1] for a in range(self.dim)], dim=-1)
        if expanded and self.overlap > 0:
            lo = torch.tensor([b[0] for b in self.bounds], dtype=dtype)
            hi = torch.tensor([b[1] for b in self.bounds], dtype=dtype)
            width = torch.tensor([(b[1] - b[0]) / p for b, p in zip(self.bounds, self.parts)], dtype=dtype)
            start = torch.maximum(start - self.overlap * width, lo)
            end = torch.minimum(end + self.overlap * width, hi)
        return torch.stack([start, end], dim=-1)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Expert index ``(P,)`` (int64) of points ``x (P, d)`` inside the domain."""
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise UserError(f"partition.assign expects points (P, {self.dim}), got {tuple(x.shape)}")
        k = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        for axis, p in enumerate(self.parts):
            # Binned by the inner faces of the boxes (binning by floor((x − lo)/(hi − lo)·p) rounds
            # differently near a face); a point on a face goes to the box above.
            faces = self._edges(axis, x.dtype, x.device)[1:-1]
            k = k * p + torch.searchsorted(faces, x[:, axis].contiguous(), right=True)
        return k

    def sample(self, n_per_expert: int, generator: torch.Generator, dtype: torch.dtype = torch.float64,
               fixed: dict[int, float] | None = None, shared: bool = False) -> torch.Tensor:
        """``(K, n, d)`` points uniform in each expert's (expanded) box, or in the whole domain.

        Args:
            n_per_expert: points per expert (the same for all, so the solves batch).
            generator: the source of randomness.
            fixed: ``{axis: value}`` coordinates to pin (points on a face, e.g. ``{1: 0.0}`` for ``t = 0``).
            shared: draw ``n`` points in the whole domain once and give the same points to every
                expert (rows every expert must satisfy, such as the global initial and boundary
                conditions of a mixture whose experts share one basis).
        """
        if int(n_per_expert) < 1:
            raise UserError(f"n_per_expert must be a positive integer, got {n_per_expert!r}")
        bad_axes = [a for a in (fixed or {}) if not (isinstance(a, numbers.Integral) and 0 <= a < self.dim)]
        if bad_axes:
            raise UserError(f"fixed coordinates name axis {', '.join(map(str, bad_axes))}; the partition has "
                            f"axes 0..{self.dim - 1}")
        if shared:
            lo = torch.tensor([b[0] for b in self.bounds], dtype=dtype)
            hi = torch.tensor([b[1] for b in self.bounds], dtype=dtype)
            u = torch.rand(int(n_per_expert), self.dim, generator=generator, dtype=dtype)
            x = (lo + u * (hi - lo)).expand(self.n_experts, -1, -1).clone()
        else:
            boxes = self.boxes(expanded=True, dtype=dtype)
            u = torch.rand(self.n_experts, int(n_per_expert), self.dim, generator=generator, dtype=dtype)
            x = boxes[:, None, :, 0] + u * (boxes[:, None, :, 1] - boxes[:, None, :, 0])
        for axis, value in (fixed or {}).items():
            x[..., axis] = float(value)
        return x

    def touches(self, axis: int, side: int) -> torch.Tensor:
        """``(K,)`` bool: whether each expert's (expanded) box reaches the domain face ``(axis, side)``
        (``side`` 0 = lower, 1 = upper)."""
        if not (isinstance(axis, numbers.Integral) and 0 <= axis < self.dim) or side not in (0, 1):
            raise UserError(f"a domain face is (axis, side) with axis in 0..{self.dim - 1} and side 0 (lower) "
                            f"or 1 (upper), got ({axis!r}, {side!r})")
        boxes = self.boxes(expanded=True)
        edge = self.bounds[axis][side]
        return boxes[:, axis, side] == edge

    def grid_indices(self, coords: torch.Tensor, n_per_expert: int, generator: torch.Generator) -> torch.Tensor:
        """``(K, n)`` indices into a fixed point set ``coords (G, d)``: ``n`` distinct points drawn
        from each expert's (unwidened) box, for problems whose basis lives on a grid."""
        k = self.assign(coords)
        out = []
        for e in range(self.n_experts):
            mine = torch.nonzero(k == e).reshape(-1)
            if mine.numel() < n_per_expert:
                raise UserError(f"expert {e} owns {mine.numel()} grid points, fewer than the {n_per_expert} requested; "
                                f"use fewer points per expert or fewer experts")
            out.append(mine[torch.randperm(mine.numel(), generator=generator)[:n_per_expert]])
        return torch.stack(out)


def assemble(basis: torch.Tensor, expert: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """The constrained field ``u(x_p) = b(x_p) · ω_{k(p)}``.

    Args:
        basis: ``(..., P, N)`` basis values at the points (leading axes, e.g. a sample batch, allowed).
        expert: ``(P,)`` expert of each point (:meth:`Partition.assign`).
        omega: ``(..., K, N)`` coefficients of every expert.

    Returns:
        ``(..., P)``.
    """
    return (basis * omega[..., expert, :]).sum(-1)
