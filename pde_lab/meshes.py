"""Unstructured triangle meshes for the finite-element PDEs: a disk, an L-shape, a rectangle and a
plate with circular holes, generated in the package; any triangle mesh read through meshio.

Why our own generator: a mesher with a native binary (gmsh) is a heavy dependency for four simple
shapes. The curved shapes are meshed by a point cloud and a Delaunay triangulation (scipy/qhull): the
boundary is sampled at spacing ``≤ h`` (circle nodes lie exactly on the circle), the inside is filled
with a hexagonal lattice of spacing ``h`` kept ``h/2`` away from the boundary, and triangles whose
centroid falls inside a hole are removed. Straight-sided shapes (rectangle, L-shape) are structured
right-triangle meshes, nested under halving of ``h``, which the convergence tests need. Every mesh is
checked on construction (:func:`check_mesh`): positive areas, manifold edges, the boundary tags, and
its area against the area enclosed by the sampled boundary, which a triangle crossing a hole or the
re-entrant corner would change.

A :class:`TriangleMesh` also plays the role a :class:`~pde_lab.grids.CartesianGrid` plays for the
dataset writer and readers: fields live on its nodes, so its ``shape`` is ``(n_nodes,)`` and its one
array axis is called ``node``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import UserError, check_positive

if TYPE_CHECKING:
    import meshio
    import skfem

__all__ = ["TriangleMesh", "disk_mesh", "lshape_mesh", "rectangle_mesh", "plate_mesh", "random_holes",
           "read_mesh", "check_mesh", "refine", "lumped_mass"]


@dataclass(frozen=True, eq=False)
class TriangleMesh:
    """A conforming mesh of linear triangles with tagged boundary facets.

    Attributes:
        nodes: ``(N, 2)`` float64 node coordinates.
        triangles: ``(M, 3)`` int64 node indices, counter-clockwise.
        boundary_facets: ``(F, 2)`` int64 node indices of the edges that belong to one triangle only.
        facet_tags: ``(F,)`` int64, index into ``tag_names`` for each boundary facet.
        tag_names: names of the boundary parts, e.g. ``("outer", "hole")``.
        geometry: what was meshed, e.g. ``"disk"``, ``"plate"``, ``"file"``.
        geometry_params: JSON-serialisable description: ``h``, circles ``[cx, cy, r, tag]`` whose
            boundary nodes lie on them, straight boundary segments ``[x0, y0, x1, y1, tag]``.
        resolution: the resolution it was built from (``h = length / resolution``), 0 if read from a file.
    """

    nodes: np.ndarray
    triangles: np.ndarray
    boundary_facets: np.ndarray
    facet_tags: np.ndarray
    tag_names: tuple[str, ...]
    geometry: str = "mesh"
    geometry_params: dict[str, Any] = field(default_factory=dict)
    resolution: int = 0

    # ---- the grid interface the dataset writer and readers use ---------------------------------
    grid_type = "mesh"
    cell_type = "triangle"
    dim = 2
    axis_names = ("node",)
    periodic = (False,)

    @property
    def shape(self) -> tuple[int]:
        """``(n_nodes,)``: a field on the mesh is one value per node."""
        return (self.n_nodes,)

    @property
    def n_nodes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def n_triangles(self) -> int:
        return int(self.triangles.shape[0])

    @property
    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Bounding box ``((x_min, x_max), (y_min, y_max))``."""
        lo, hi = self.nodes.min(axis=0), self.nodes.max(axis=0)
        return ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])))

    def coordinates(self) -> dict[str, np.ndarray]:
        """``{"node": 0 .. N-1}`` as float64: the array axis of a field; positions are :attr:`nodes`."""
        return {"node": np.arange(self.n_nodes, dtype=np.float64)}

    # ---- geometry helpers ---------------------------------------------------------------------
    @property
    def h(self) -> float:
        """Longest edge length."""
        e = self.edges()
        return float(np.max(np.linalg.norm(self.nodes[e[:, 0]] - self.nodes[e[:, 1]], axis=1)))

    def areas(self) -> np.ndarray:
        """``(M,)`` signed triangle areas (positive: counter-clockwise)."""
        return _signed_areas(self.nodes, self.triangles)

    def lumped_mass(self) -> np.ndarray:
        """``(N,)`` lumped-mass weights of the nodes: :func:`lumped_mass`."""
        return lumped_mass(self.nodes, self.triangles)

    def edges(self) -> np.ndarray:
        """``(E, 2)`` unique edges, smaller index first."""
        e = np.sort(self.triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        return np.unique(e, axis=0)

    def boundary_nodes(self, tag: str | None = None) -> np.ndarray:
        """Sorted node indices on the boundary part ``tag`` (all of the boundary when ``None``)."""
        facets = self.boundary_facets
        if tag is not None:
            if tag not in self.tag_names:
                raise UserError(f"unknown boundary tag {tag!r}; this mesh has: {', '.join(self.tag_names)}")
            facets = facets[self.facet_tags == self.tag_names.index(tag)]
        return np.unique(facets)

    def node_mask(self, tag: str | None = None) -> np.ndarray:
        """``(N,)`` bool, true on the nodes of boundary part ``tag`` (all of the boundary when ``None``)."""
        mask = np.zeros(self.n_nodes, dtype=bool)
        mask[self.boundary_nodes(tag)] = True
        return mask

    def min_angle(self) -> float:
        """Smallest interior angle in degrees (mesh quality)."""
        p = self.nodes[self.triangles]
        ang = []
        for i in range(3):
            a, b, c = p[:, i], p[:, (i + 1) % 3], p[:, (i + 2) % 3]
            u, v = b - a, c - a
            cos = np.sum(u * v, axis=1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
            ang.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
        return float(np.min(ang))

    def to_skfem(self) -> skfem.MeshTri:
        """The same mesh as a ``skfem.MeshTri`` (nodes ``(2, N)``, triangles ``(3, M)``)."""
        from skfem import MeshTri

        return MeshTri(np.ascontiguousarray(self.nodes.T), np.ascontiguousarray(self.triangles.T))

    def to_meshio(self, point_data: dict[str, np.ndarray] | None = None) -> meshio.Mesh:
        """A ``meshio.Mesh`` with the triangles and the tagged boundary lines (cell data ``tag``)."""
        import meshio

        pts = np.column_stack([self.nodes, np.zeros(self.n_nodes)])
        cells = [("triangle", self.triangles), ("line", self.boundary_facets)]
        cell_data = {"tag": [np.full(self.n_triangles, -1, dtype=np.int64), self.facet_tags.astype(np.int64)]}
        return meshio.Mesh(pts, cells, point_data=point_data or {}, cell_data=cell_data)


def lumped_mass(nodes: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Row sums of the P1 mass matrix: each node's share of the area, a third of every triangle it
    belongs to. As quadrature weights, ``Σ_i w_i f_i`` is the exact integral of the P1 interpolant
    of ``f`` and ``Σ_i w_i f_i²`` approximates ``∫ f²`` to second order, so norms weighted by them
    approximate the ``L2(Ω)`` and ``L1(Ω)`` norms however the nodes are spread.

    Args:
        nodes: ``(N, 2)`` coordinates.
        triangles: ``(M, 3)`` node indices.

    Returns:
        ``(N,)`` float64, summing to the area of the mesh.
    """
    area = np.abs(_signed_areas(np.asarray(nodes, dtype=np.float64), np.asarray(triangles)))
    return np.bincount(np.asarray(triangles).reshape(-1), weights=np.repeat(area / 3.0, 3),
                       minlength=len(nodes))


# ---- construction ---------------------------------------------------------------------------------

def _signed_areas(nodes: np.ndarray, tri: np.ndarray) -> np.ndarray:
    p0, p1, p2 = nodes[tri[:, 0]], nodes[tri[:, 1]], nodes[tri[:, 2]]
    return 0.5 * ((p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p2[:, 0] - p0[:, 0]) * (p1[:, 1] - p0[:, 1]))


def _boundary_facets(tri: np.ndarray) -> np.ndarray:
    """Edges used by exactly one triangle, oriented as in that triangle (domain on the left)."""
    e = tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = np.sort(e, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return e[counts[inv.ravel()] == 1]


def _tag_facets(nodes: np.ndarray, facets: np.ndarray, params: dict, tag_names: Sequence[str]) -> np.ndarray:
    """Each facet gets the tag of the nearest boundary curve (segment or circle) to its midpoint."""
    mid = 0.5 * (nodes[facets[:, 0]] + nodes[facets[:, 1]])
    best = np.full(len(mid), np.inf)
    tags = np.zeros(len(mid), dtype=np.int64)
    for x0, y0, x1, y1, tag in params.get("segments", []):
        a, b = np.array([x0, y0]), np.array([x1, y1])
        t = np.clip(((mid - a) @ (b - a)) / np.dot(b - a, b - a), 0.0, 1.0)
        d = np.linalg.norm(mid - (a + t[:, None] * (b - a)), axis=1)
        better = d < best
        best[better], tags[better] = d[better], tag_names.index(tag)
    for cx, cy, r, tag in params.get("circles", []):
        d = np.abs(np.linalg.norm(mid - np.array([cx, cy]), axis=1) - r)
        better = d < best
        best[better], tags[better] = d[better], tag_names.index(tag)
    return tags


def _finish(nodes: np.ndarray, tri: np.ndarray, geometry: str, params: dict, tag_names: Sequence[str],
            resolution: int, expected_area: float | None) -> TriangleMesh:
    """Drop unused nodes, orient counter-clockwise, tag the boundary, check."""
    used = np.unique(tri)
    remap = np.full(len(nodes), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    nodes, tri = np.ascontiguousarray(nodes[used], dtype=np.float64), remap[tri].astype(np.int64)
    flip = _signed_areas(nodes, tri) < 0
    tri[flip] = tri[flip][:, ::-1]
    facets = _boundary_facets(tri).astype(np.int64)
    tags = _tag_facets(nodes, facets, params, list(tag_names))
    mesh = TriangleMesh(nodes, np.ascontiguousarray(tri), facets, tags, tuple(tag_names), geometry, params,
                        int(resolution))
    errors = check_mesh(mesh, expected_area)
    if errors:
        raise RuntimeError(f"{geometry} mesh generation produced an invalid mesh: {'; '.join(errors)}")
    return mesh


def check_mesh(mesh: TriangleMesh, expected_area: float | None = None) -> list[str]:
    """Every violation of mesh validity (empty list: valid): indices in range, positive areas,
    no edge shared by more than two triangles, every boundary node on one of the geometry's curves
    (when it declares any), and the total area against ``expected_area`` (relative 1e-9)."""
    errs = []
    n = mesh.n_nodes
    if mesh.nodes.ndim != 2 or mesh.nodes.shape[1] != 2 or not np.all(np.isfinite(mesh.nodes)):
        errs.append(f"nodes must be a finite (N, 2) array, got shape {mesh.nodes.shape}")
        return errs
    t = mesh.triangles
    if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] == 0:
        return errs + [f"triangles must be a non-empty (M, 3) array, got shape {t.shape}"]
    if t.min() < 0 or t.max() >= n:
        return errs + [f"triangle node indices must lie in [0, {n - 1}], got [{t.min()}, {t.max()}]"]
    areas = mesh.areas()
    scale = max(mesh.h, 1e-300) ** 2
    if np.any(areas <= 1e-12 * scale):
        errs.append(f"{int(np.sum(areas <= 1e-12 * scale))} triangles have non-positive area")
    e = np.sort(t[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    if np.any(counts > 2):
        errs.append(f"{int(np.sum(counts > 2))} edges are shared by more than two triangles")
    if len(mesh.facet_tags) != len(mesh.boundary_facets) or (
            len(mesh.facet_tags) and (mesh.facet_tags.min() < 0 or mesh.facet_tags.max() >= len(mesh.tag_names))):
        errs.append("facet_tags must hold one index into tag_names per boundary facet")
    curves = mesh.geometry_params
    if curves.get("segments") or curves.get("circles"):
        b = mesh.nodes[np.unique(mesh.boundary_facets)]
        d = np.full(len(b), np.inf)
        for x0, y0, x1, y1, _ in curves.get("segments", []):
            a, c = np.array([x0, y0]), np.array([x1, y1])
            s = np.clip(((b - a) @ (c - a)) / np.dot(c - a, c - a), 0.0, 1.0)
            d = np.minimum(d, np.linalg.norm(b - (a + s[:, None] * (c - a)), axis=1))
        for cx, cy, r, _ in curves.get("circles", []):
            d = np.minimum(d, np.abs(np.linalg.norm(b - np.array([cx, cy]), axis=1) - r))
        if np.any(d > 1e-9 * math.sqrt(scale) + 1e-12):
            errs.append(f"{int(np.sum(d > 1e-9 * math.sqrt(scale)))} boundary nodes lie off the geometry's curves "
                        "(a triangle crosses a hole or the boundary)")
    if expected_area is not None and abs(areas.sum() - expected_area) > 1e-9 * abs(expected_area):
        errs.append(f"total area {areas.sum():.12g} differs from the enclosed area {expected_area:.12g}")
    return errs


def _hex_lattice(x0: float, x1: float, y0: float, y1: float, h: float) -> np.ndarray:
    """Points of a hexagonal lattice with spacing ``h`` covering the box, ``(P, 2)``."""
    dy = h * math.sqrt(3.0) / 2.0
    ys = np.arange(y0, y1 + dy, dy)
    rows = []
    for j, y in enumerate(ys):
        xs = np.arange(x0 + (0.5 * h if j % 2 else 0.0), x1 + h, h)
        rows.append(np.column_stack([xs, np.full(len(xs), y)]))
    return np.concatenate(rows)


def _circle_points(cx: float, cy: float, r: float, h: float) -> tuple[np.ndarray, int]:
    n = max(8, int(math.ceil(2.0 * math.pi * r / h)))
    th = 2.0 * math.pi * np.arange(n) / n
    return np.column_stack([cx + r * np.cos(th), cy + r * np.sin(th)]), n


def _polygon_area(r: float, n: int) -> float:
    """Area of the regular ``n``-gon inscribed in a circle of radius ``r``."""
    return 0.5 * n * r * r * math.sin(2.0 * math.pi / n)


def _edge_points(a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
    """Points on segment ``[a, b)`` with spacing ``≤ h`` (``b`` itself excluded)."""
    n = max(1, int(math.ceil(np.linalg.norm(b - a) / h)))
    s = np.arange(n) / n
    return a[None] + s[:, None] * (b - a)[None]


def _delaunay(points: np.ndarray) -> np.ndarray:
    from scipy.spatial import Delaunay

    tri = Delaunay(points).simplices.astype(np.int64)
    area = _signed_areas(points, tri)
    # qhull may close flat hull sections with zero-area triangles; they carry no part of the domain.
    return tri[np.abs(area) > 1e-10 * np.max(np.abs(area))]


def _check_h(h: float) -> float:
    check_positive("mesh size h", h)
    return float(h)


def disk_mesh(h: float, radius: float = 1.0, center: tuple[float, float] = (0.0, 0.0),
              resolution: int = 0) -> TriangleMesh:
    """Triangulated disk: boundary nodes on the circle at spacing ``≤ h``, hexagonal lattice inside.

    The mesh covers the inscribed polygon exactly (checked). Boundary tag ``outer``.
    """
    h = _check_h(h)
    check_positive("disk radius", radius)
    if h > radius:
        raise UserError(f"mesh size h={h} must not exceed the disk radius {radius}")
    cx, cy = center
    ring, n = _circle_points(cx, cy, radius, h)
    lat = _hex_lattice(cx - radius, cx + radius, cy - radius, cy + radius, h)
    lat = lat[np.linalg.norm(lat - np.array([cx, cy]), axis=1) < radius - 0.5 * h]
    pts = np.concatenate([ring, lat])
    params = {"h": h, "circles": [[cx, cy, radius, "outer"]], "segments": []}
    return _finish(pts, _delaunay(pts), "disk", params, ("outer",), resolution, _polygon_area(radius, n))


def _structured(x0: float, x1: float, y0: float, y1: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-triangle mesh of a box, ``nx × ny`` squares each cut along its rising diagonal."""
    xs, ys = np.linspace(x0, x1, nx + 1), np.linspace(y0, y1, ny + 1)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    nodes = np.column_stack([X.ravel(), Y.ravel()])
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    n00 = (i * (ny + 1) + j).ravel()
    n10, n01, n11 = n00 + (ny + 1), n00 + 1, n00 + ny + 2
    tri = np.concatenate([np.column_stack([n00, n10, n11]), np.column_stack([n00, n11, n01])])
    return nodes, tri


def _box_segments(x0, x1, y0, y1, tag="outer") -> list:
    return [[x0, y0, x1, y0, tag], [x1, y0, x1, y1, tag], [x1, y1, x0, y1, tag], [x0, y1, x0, y0, tag]]


def rectangle_mesh(h: float, bounds: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 1.0), (0.0, 1.0)),
                   resolution: int = 0) -> TriangleMesh:
    """Structured right-triangle mesh of a rectangle, ``ceil(L/h)`` squares per side. Tags ``left``,
    ``right``, ``bottom``, ``top``."""
    h = _check_h(h)
    (x0, x1), (y0, y1) = bounds
    nx, ny = (max(1, int(math.ceil((b - a) / h - 1e-9))) for a, b in bounds)
    nodes, tri = _structured(x0, x1, y0, y1, nx, ny)
    params = {"h": h, "circles": [], "segments": [[x0, y0, x1, y0, "bottom"], [x1, y0, x1, y1, "right"],
                                                  [x1, y1, x0, y1, "top"], [x0, y1, x0, y0, "left"]]}
    return _finish(nodes, tri, "rectangle", params, ("bottom", "right", "top", "left"), resolution,
                   (x1 - x0) * (y1 - y0))


def lshape_mesh(h: float, resolution: int = 0) -> TriangleMesh:
    """Structured mesh of the L-shape ``[−1, 1]² \\ (0, 1] × [−1, 0)`` (re-entrant corner at the
    origin), ``2 ceil(1/h)`` squares per side. Boundary tag ``outer``."""
    h = _check_h(h)
    if h > 1.0:
        raise UserError(f"mesh size h={h} must not exceed 1 for the L-shape")
    n = 2 * int(math.ceil(1.0 / h - 1e-9))
    nodes, tri = _structured(-1.0, 1.0, -1.0, 1.0, n, n)
    c = nodes[tri].mean(axis=1)
    tri = tri[~((c[:, 0] > 0) & (c[:, 1] < 0))]
    corners = [(-1, -1), (0, -1), (0, 0), (1, 0), (1, 1), (-1, 1)]
    segs = [[*corners[k], *corners[(k + 1) % 6], "outer"] for k in range(6)]
    params = {"h": h, "circles": [], "segments": [[float(v) for v in s[:4]] + ["outer"] for s in segs]}
    return _finish(nodes, tri, "lshape", params, ("outer",), resolution, 3.0)


def random_holes(rng: np.random.Generator, n_holes: int, width: float = 2.0, height: float = 1.0,
                 radius_range: tuple[float, float] = (0.08, 0.2), gap: float = 0.08,
                 max_tries: int = 10000) -> list[tuple[float, float, float]]:
    """``n_holes`` non-overlapping circles ``(cx, cy, r)`` inside ``[0, width] × [0, height]``, at
    least ``gap`` from each other and from the edges, drawn by rejection from ``rng``."""
    if n_holes < 0:
        raise UserError(f"n_holes must be non-negative, got {n_holes}")
    holes: list[tuple[float, float, float]] = []
    for _ in range(max_tries):
        if len(holes) == n_holes:
            return holes
        r = float(rng.uniform(*radius_range))
        cx = float(rng.uniform(r + gap, width - r - gap))
        cy = float(rng.uniform(r + gap, height - r - gap))
        if all(math.hypot(cx - x, cy - y) >= r + s + gap for x, y, s in holes):
            holes.append((cx, cy, r))
    raise UserError(f"could not place {n_holes} holes of radius {radius_range} with gap {gap} in a "
                    f"{width} x {height} plate after {max_tries} tries; use fewer or smaller holes")


def plate_mesh(h: float, holes: Sequence[tuple[float, float, float]], width: float = 2.0, height: float = 1.0,
               resolution: int = 0) -> TriangleMesh:
    """Rectangle ``[0, width] × [0, height]`` with circular holes ``(cx, cy, r)``.

    Hole boundaries are sampled at spacing ``≤ h`` exactly on the circles; triangles whose centroid
    lies inside a hole are removed. Boundary tags ``outer`` (the rectangle) and ``hole``.
    """
    h = _check_h(h)
    check_positive("plate width", width)
    check_positive("plate height", height)
    if h > min(width, height) / 2:
        raise UserError(f"mesh size h={h} must not exceed half the plate's shorter side {min(width, height) / 2}")
    for k, (cx, cy, r) in enumerate(holes):
        if not (r > 0 and min(cx - r, width - cx - r, cy - r, height - cy - r) > 0.25 * h):
            raise UserError(f"hole {k} (center ({cx}, {cy}), radius {r}) must lie strictly inside the "
                            f"{width} x {height} plate")
        for m, (x, y, s) in enumerate(holes[:k]):
            if math.hypot(cx - x, cy - y) < r + s + 0.25 * h:
                raise UserError(f"holes {m} and {k} are closer than a quarter of the mesh size h={h}")
    corners = [np.array(c, dtype=np.float64) for c in ((0, 0), (width, 0), (width, height), (0, height))]
    parts = [_edge_points(corners[k], corners[(k + 1) % 4], h) for k in range(4)]
    area = width * height
    centers = np.array([[cx, cy] for cx, cy, _ in holes]).reshape(-1, 2)
    radii = np.array([r for *_, r in holes])
    for cx, cy, r in holes:
        ring, n = _circle_points(cx, cy, r, h)
        parts.append(ring)
        area -= _polygon_area(r, n)
    lat = _hex_lattice(0.0, width, 0.0, height, h)
    keep = (lat[:, 0] > 0.5 * h) & (lat[:, 0] < width - 0.5 * h) & (lat[:, 1] > 0.5 * h) & (lat[:, 1] < height - 0.5 * h)
    for (cx, cy), r in zip(centers, radii):
        keep &= np.linalg.norm(lat - np.array([cx, cy]), axis=1) > r + 0.5 * h
    pts = np.concatenate(parts + [lat[keep]])
    tri = _delaunay(pts)
    c = pts[tri].mean(axis=1)
    inside = np.zeros(len(tri), dtype=bool)
    for (cx, cy), r in zip(centers, radii):
        inside |= np.linalg.norm(c - np.array([cx, cy]), axis=1) < r
    params = {"h": h, "width": width, "height": height, "holes": [list(map(float, hl)) for hl in holes],
              "segments": _box_segments(0.0, width, 0.0, height),
              "circles": [[float(cx), float(cy), float(r), "hole"] for cx, cy, r in holes]}
    tags = ("outer", "hole") if len(holes) else ("outer",)
    return _finish(pts, tri[~inside], "plate", params, tags, resolution, area)


def refine(mesh: TriangleMesh) -> TriangleMesh:
    """Uniform refinement (each triangle into four); new nodes on a circular boundary are moved onto
    the circle, so the refined mesh approximates the curved domain better."""
    m = mesh.to_skfem().refined()
    nodes = np.ascontiguousarray(m.p.T, dtype=np.float64)
    tri = np.ascontiguousarray(m.t.T, dtype=np.int64)
    params = dict(mesh.geometry_params)
    from scipy.spatial import cKDTree

    tree = cKDTree(nodes)
    old_facets = mesh.boundary_facets
    tol = 1e-9 * mesh.h
    for cx, cy, r, _ in params.get("circles", []):
        c = np.array([cx, cy])
        # Only midpoints of facets whose two ends lie on this circle move onto it.
        on = np.abs(np.linalg.norm(mesh.nodes - c, axis=1) - r) < tol
        arc = old_facets[on[old_facets[:, 0]] & on[old_facets[:, 1]]]
        if len(arc) == 0:
            continue
        dist, idx = tree.query(0.5 * (mesh.nodes[arc[:, 0]] + mesh.nodes[arc[:, 1]]))
        if np.any(dist > tol):
            raise RuntimeError("refinement lost track of a boundary midpoint")
        d = nodes[idx] - c
        nodes[idx] = c + d * (r / np.linalg.norm(d, axis=1))[:, None]
    if "h" in params:
        params["h"] = params["h"] / 2
    expected = None if params.get("circles") else float(mesh.areas().sum())
    return _finish(nodes, tri, mesh.geometry, params, mesh.tag_names, 2 * mesh.resolution, expected)


# ---- reading ----------------------------------------------------------------------------------------

def _read_pde_lab_mesh(path: Path) -> TriangleMesh:
    import json

    import h5py

    with h5py.File(path, "r") as f:
        if not isinstance(f.get("mesh"), h5py.Group):
            raise UserError(f"{path} is an HDF5 file without a /mesh group (not a pde_lab mesh file)")
        g = f["mesh"]
        tags = tuple(t.decode() if isinstance(t, bytes) else str(t) for t in g.attrs["tag_names"])
        geometry = g.attrs.get("geometry", "file")
        mesh = TriangleMesh(g["nodes"][()].astype(np.float64), g["cells"][()].astype(np.int64),
                            g["boundary_facets"][()].astype(np.int64), g["boundary_facet_tags"][()].astype(np.int64),
                            tags, geometry.decode() if isinstance(geometry, bytes) else str(geometry),
                            json.loads(g.attrs.get("geometry_params", "{}")), int(g.attrs.get("resolution", 0)))
    errors = check_mesh(mesh)
    if errors:
        raise UserError(f"mesh in {path} is not valid: {'; '.join(errors)}")
    return mesh


def read_mesh(path: str | Path) -> TriangleMesh:
    """A triangle mesh from any file meshio reads (``.msh``, ``.vtu``, ``.xdmf``, ``.obj``, ...), or
    the mesh stored in a pde_lab dataset file (``.h5`` with a ``mesh`` group, tags kept).

    Quadratic triangles (``triangle6``) keep their corner nodes. Boundary facets are the edges of one
    triangle only; they are tagged from the file's ``line`` cells when those carry integer cell data
    (gmsh physical groups, named through the file's field data when present), else all ``boundary``.
    Unused nodes are dropped and clockwise triangles reoriented.

    Raises:
        UserError: missing or unreadable file, no triangles, a 3D mesh, degenerate triangles.
    """
    import meshio

    path = Path(path)
    if not path.is_file():
        raise UserError(f"mesh file {path} does not exist")
    if path.suffix in (".h5", ".hdf5"):
        return _read_pde_lab_mesh(path)
    try:
        m = meshio.read(path)
    except Exception as e:  # meshio raises many types for unreadable input
        raise UserError(f"cannot read mesh {path}: {e.__class__.__name__}: {e}") from e
    pts = np.asarray(m.points, dtype=np.float64)
    if pts.shape[1] == 3:
        if np.any(np.abs(pts[:, 2]) > 1e-12 * max(1.0, np.abs(pts).max())):
            raise UserError(f"mesh {path} is not planar: z coordinates are non-zero")
        pts = pts[:, :2]
    tri_blocks = [c.data[:, :3] for c in m.cells if c.type in ("triangle", "triangle6")]
    if not tri_blocks:
        raise UserError(f"mesh {path} holds no triangles; cell types: {', '.join(c.type for c in m.cells) or 'none'}")
    tri = np.concatenate(tri_blocks).astype(np.int64)
    if np.any(np.abs(_signed_areas(pts, tri)) <= 1e-14 * np.ptp(pts, axis=0).max() ** 2):
        raise UserError(f"mesh {path} has degenerate (zero-area) triangles")
    # Boundary lines with an integer tag, keyed by their sorted node pair (in the file's numbering).
    line_tag: dict[tuple[int, int], str] = {}
    names = {int(v[0]): k for k, v in (m.field_data or {}).items() if len(v) >= 1}
    for k, c in enumerate(m.cells):
        if c.type != "line":
            continue
        data = m.cell_data or {}
        # gmsh's physical groups are the named boundary parts; its geometrical entities are not.
        for name in sorted(data, key=lambda n: n != "gmsh:physical"):
            v = np.asarray(data[name][k])
            if v.dtype.kind in "iu" and v.ndim == 1 and len(v) == len(c.data):
                for (a, b), t in zip(c.data, v):
                    line_tag[(min(a, b), max(a, b))] = names.get(int(t), str(int(t)))
                break
    used = np.unique(tri)
    remap = np.full(len(pts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    nodes, tri2 = pts[used], remap[tri]
    flip = _signed_areas(nodes, tri2) < 0
    tri2[flip] = tri2[flip][:, ::-1]
    facets = _boundary_facets(tri2)
    labels = [line_tag.get((min(a, b), max(a, b)), "boundary") for a, b in used[facets]]
    tag_names = tuple(sorted(set(labels)))
    tags = np.array([tag_names.index(s) for s in labels], dtype=np.int64)
    mesh = TriangleMesh(np.ascontiguousarray(nodes), np.ascontiguousarray(tri2), facets.astype(np.int64), tags,
                        tag_names, "file", {"source": str(path)}, 0)
    errors = check_mesh(mesh)
    if errors:
        raise UserError(f"mesh {path} is not a valid triangle mesh: {'; '.join(errors)}")
    return mesh
