"""Uniform Cartesian grids.

Point placement follows the numerics: along a periodic axis the points are ``a + i h`` (the nodes a
Fourier method uses, the end point ``b`` being the image of ``a``); along a bounded axis they are cell
centres ``a + (i + 1/2) h``, the unknowns of a cell-centred finite-volume method, so the boundary
itself carries no point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AXIS_NAMES = ("x", "y", "z")


@dataclass(frozen=True)
class CartesianGrid:
    """A uniform grid on the box ``bounds`` with ``shape`` points.

    Attributes:
        bounds: ``((a0, b0), (a1, b1), ...)``, one pair per axis.
        shape: number of points per axis.
        periodic: per axis, whether it wraps around.
    """

    bounds: tuple[tuple[float, float], ...]
    shape: tuple[int, ...]
    periodic: tuple[bool, ...]

    def __post_init__(self):
        if not (len(self.bounds) == len(self.shape) == len(self.periodic)):
            raise ValueError("bounds, shape and periodic need one entry per axis")
        for n in self.shape:
            if int(n) < 2:
                raise ValueError(f"a grid axis needs at least 2 points, got {n}")

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return AXIS_NAMES[: self.dim]

    @property
    def lengths(self) -> tuple[float, ...]:
        return tuple(b - a for a, b in self.bounds)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Grid step ``h`` per axis."""
        return tuple(L / n for L, n in zip(self.lengths, self.shape))

    def axis(self, i: int) -> np.ndarray:
        """Coordinates along axis ``i``, shape ``(shape[i],)``, float64."""
        (a, _), n, h = self.bounds[i], self.shape[i], self.spacing[i]
        offset = 0.0 if self.periodic[i] else 0.5
        return a + (np.arange(n) + offset) * h

    def coordinates(self) -> dict[str, np.ndarray]:
        """Axis name → 1D coordinate array."""
        return {name: self.axis(i) for i, name in enumerate(self.axis_names)}

    def mesh(self) -> tuple[np.ndarray, ...]:
        """Coordinate arrays broadcast to the full grid, each of shape ``shape`` (``indexing='ij'``)."""
        return tuple(np.meshgrid(*[self.axis(i) for i in range(self.dim)], indexing="ij"))
