"""The space-time PINN view of a periodic evolution equation ``u_t = F[u]``.

A family that defines the pointwise right-hand side ``pointwise_rhs(u_fn, x, params)`` (the one
TENG evolves) and a closed-form ``exact_solution`` on space-time points gets the pointwise-residual
interface of :mod:`pde_lab.pdes.poisson` by inheriting :class:`SpaceTimePINN`:

* points ``(x, t)`` in ``[0, 1)^d × [0, t_final]``, time last;
* residual ``u_t − F[u]``, where ``F`` sees ``u`` as a function of ``x`` at each point's own ``t``
  (rows are independent, so freezing ``t`` per row gives exactly the spatial derivatives);
* the initial state (the exact solution at ``t = 0``) as the only boundary face;
* periodicity in ``x`` carried by the network: ``pinn_periodic_axes`` tells the trainer which
  inputs get ``pinn_mlp``'s periodic embedding.

One definition of each equation serves the solver's residual, TENG and the space-time PINN.
"""
from __future__ import annotations

from typing import Mapping

import torch

from ..errors import UserError
from .poisson import PointFunction, gradient


class SpaceTimePINN:
    """Mixin: the space-time pointwise-residual interface from ``pointwise_rhs`` and ``exact_solution``."""

    dim: int
    pinn_fields = ("u",)

    def _t_final(self, params: Mapping[str, float] | None) -> float:
        return self.param(params, "t_final")

    def pinn_domain(self, params: Mapping[str, float] | None = None) -> tuple[tuple[float, float], ...]:
        """``[0, 1]^d × [0, t_final]``: space first, time last."""
        return ((0.0, 1.0),) * self.dim + ((0.0, self._t_final(params)),)

    def pinn_periodic_axes(self, params: Mapping[str, float] | None = None) -> list[int]:
        """The space coordinates (period 1)."""
        return list(range(self.dim))

    def pinn_boundary_faces(self, params: Mapping[str, float] | None = None) -> list[tuple[int, int]]:
        """Only ``t = 0`` carries a condition: the initial state."""
        return [(self.dim, 0)]

    def boundary_value(self, x: torch.Tensor, params: Mapping[str, float] | None = None) -> torch.Tensor:
        """The initial state at ``t = 0``, extended into the domain by the exact solution; ``(N,)``."""
        return self.exact_solution(x, params)[:, 0]

    def pointwise_residual(self, u_fn: PointFunction, x: torch.Tensor,
                           params: Mapping[str, float] | None = None) -> torch.Tensor:
        """``u_t − F[u]`` at space-time points ``x: (N, d + 1)``; returns ``(N,)``."""
        self._check_space_time(x)
        t = x[:, self.dim:]

        def at_own_time(y: torch.Tensor) -> torch.Tensor:
            return u_fn(torch.cat([y, t], dim=1))

        u_t = gradient(u_fn, x)[:, self.dim]
        return u_t - self.pointwise_rhs(at_own_time, x[:, : self.dim], params)

    def boundary_residual(self, u_fn: PointFunction, x: torch.Tensor,
                          params: Mapping[str, float] | None = None) -> torch.Tensor:
        """``u(x, 0) − u₀(x)`` at initial points ``(N, d + 1)``; returns ``(N,)``."""
        self._check_space_time(x)
        return u_fn(x)[:, 0] - self.boundary_value(x, params)

    def _check_space_time(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.dim + 1:
            raise UserError(f"{self.name} PINN points are (x, t): shape (N, {self.dim + 1}), got {tuple(x.shape)}")
