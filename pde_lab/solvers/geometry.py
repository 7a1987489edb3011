"""Obstacle shapes for masked-cell flow solvers: exact signed distances, rasterisation, placement.

Two shape families: axis-aligned boxes and rotated ellipses (circles when both semi-axes agree). The
signed distance is exact for both (negative inside); for ellipses the closest boundary point is found
by bisection on the monotone root function of Eberly ("Distance from a point to an ellipse, an
ellipsoid, or a hyperellipsoid", Geometric Tools, 2013), vectorised over all query points. A union of
disjoint shapes has the minimum of the member distances as its exact signed distance.

Why by hand: the usual tools (``scipy.ndimage.distance_transform_edt``, scikit-fmm) measure distances
between grid cells, so their field depends on the resolution and is only accurate to a cell; the
analytic distances here are a property of the geometry itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

from ..grids import CartesianGrid


@dataclass(frozen=True)
class Box:
    """Axis-aligned rectangle with centre ``(cx, cy)`` and half-widths ``hx``, ``hy``."""

    cx: float
    cy: float
    hx: float
    hy: float

    @property
    def radius(self) -> float:
        """Radius of the smallest centred disc that contains the shape."""
        return math.hypot(self.hx, self.hy)

    def extent(self) -> tuple[float, float]:
        """Half-extents of the axis-aligned bounding box."""
        return self.hx, self.hy


@dataclass(frozen=True)
class Ellipse:
    """Ellipse with centre ``(cx, cy)``, semi-axes ``a`` (along the direction ``angle``, radians from
    the x axis) and ``b``."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0

    @property
    def radius(self) -> float:
        return max(self.a, self.b)

    def extent(self) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return math.hypot(self.a * c, self.b * s), math.hypot(self.a * s, self.b * c)


Shape = Union[Box, Ellipse]


def _box_sdf(box: Box, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    qx = np.abs(x - box.cx) - box.hx
    qy = np.abs(y - box.cy) - box.hy
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def _ellipse_sdf(ell: Ellipse, x: np.ndarray, y: np.ndarray, iterations: int = 64) -> np.ndarray:
    c, s = math.cos(ell.angle), math.sin(ell.angle)
    dx, dy = x - ell.cx, y - ell.cy
    p0, p1 = c * dx + s * dy, -s * dx + c * dy
    e0, e1 = ell.a, ell.b
    if e0 < e1:  # the algorithm wants the major axis first
        e0, e1, p0, p1 = e1, e0, p1, p0
    y0, y1 = np.abs(p0), np.abs(p1)       # first quadrant by symmetry
    if e0 == e1:
        return np.hypot(y0, y1) - e0
    inside = (y0 / e0) ** 2 + (y1 / e1) ** 2 < 1.0
    # General case, y1 > 0: bisection for the root s of (r0 z0/(s + r0))² + (z1/(s + 1))² = 1.
    z0, z1 = y0 / e0, y1 / e1
    r0 = (e0 / e1) ** 2
    n0 = r0 * z0
    g = z0**2 + z1**2 - 1.0
    s0 = z1 - 1.0
    s1 = np.where(g < 0, 0.0, np.hypot(n0, z1) - 1.0)
    # Points on the major axis (z1 = 0) divide by zero here; their value is replaced below.
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(iterations):
            sm = 0.5 * (s0 + s1)
            gm = (n0 / (sm + r0)) ** 2 + (z1 / (sm + 1.0)) ** 2 - 1.0
            s0 = np.where(gm > 0, sm, s0)
            s1 = np.where(gm > 0, s1, sm)
        sr = 0.5 * (s0 + s1)
        x0 = r0 * y0 / (sr + r0)
        x1 = y1 / (sr + 1.0)
    d_general = np.hypot(x0 - y0, x1 - y1)
    # On the major axis (y1 = 0) the closest point is either the vertex or off the axis.
    numer, denom = e0 * y0, e0**2 - e1**2
    xde = np.minimum(numer / denom, 1.0)
    d_axis = np.where(numer < denom, np.hypot(e0 * xde - y0, e1 * np.sqrt(np.maximum(1.0 - xde**2, 0.0))),
                      np.abs(y0 - e0))
    d = np.where(y1 > 0, d_general, d_axis)
    return np.where(inside, -d, d)


def signed_distance(shape: Shape, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact signed distance to ``shape`` at points ``(x, y)`` (same shape), negative inside."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if isinstance(shape, Box):
        return _box_sdf(shape, x, y)
    if isinstance(shape, Ellipse):
        return _ellipse_sdf(shape, x, y)
    raise TypeError(f"unknown shape {type(shape).__name__}")


def union_signed_distance(shapes: Sequence[Shape], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to the union of disjoint ``shapes`` (``+inf`` when there are none)."""
    out = np.full(np.broadcast(np.asarray(x), np.asarray(y)).shape, np.inf)
    for shape in shapes:
        out = np.minimum(out, signed_distance(shape, x, y))
    return out


def rasterize(shapes: Sequence[Shape], grid: CartesianGrid) -> np.ndarray:
    """Solid-cell mask ``(nx, ny)`` bool: a cell is solid when its centre lies inside a shape."""
    x, y = grid.mesh()
    return union_signed_distance(shapes, x, y) < 0.0


def separated(a: Shape, b: Shape, gap: float) -> bool:
    """Whether two shapes are at least ``gap`` apart (exact for two boxes, by bounding discs otherwise)."""
    if isinstance(a, Box) and isinstance(b, Box):
        return (abs(a.cx - b.cx) >= a.hx + b.hx + gap) or (abs(a.cy - b.cy) >= a.hy + b.hy + gap)
    return math.hypot(a.cx - b.cx, a.cy - b.cy) >= a.radius + b.radius + gap


def place_shapes(
    rng: np.random.Generator,
    n: int,
    draw: Callable[[np.random.Generator], Shape],
    region: tuple[tuple[float, float], tuple[float, float]],
    gap: float,
    max_tries: int = 1000,
    max_restarts: int = 20,
) -> list[Shape]:
    """Draw ``n`` shapes that lie inside ``region`` and are pairwise at least ``gap`` apart.

    Shapes are drawn one by one with ``draw(rng)`` and rejected when they leave the region (by their
    bounding box) or come closer than ``gap`` to an accepted shape; when a shape cannot be placed in
    ``max_tries`` draws the whole layout starts over. Everything comes from ``rng``, so the layout is
    a pure function of its state.

    Raises:
        RuntimeError: no layout found after ``max_restarts`` attempts (the region is too crowded).
    """
    (x_lo, x_hi), (y_lo, y_hi) = region
    for _ in range(max_restarts):
        shapes: list[Shape] = []
        for _ in range(n):
            for _ in range(max_tries):
                cand = draw(rng)
                ex, ey = cand.extent()
                inside = x_lo <= cand.cx - ex and cand.cx + ex <= x_hi and y_lo <= cand.cy - ey and cand.cy + ey <= y_hi
                if not inside:
                    continue
                if all(separated(cand, other, gap) for other in shapes):
                    shapes.append(cand)
                    break
            else:
                break
        if len(shapes) == n:
            return shapes
    raise RuntimeError(f"could not place {n} shapes {gap} apart in {region} after {max_restarts} restarts")
