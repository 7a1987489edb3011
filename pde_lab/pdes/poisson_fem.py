"""Steady diffusion ``−∇·(a∇u) = f`` on unstructured triangle meshes (``poisson_fem``), P1 finite
elements with scikit-fem.

Difficulty has two axes: the geometry (disk → L-shape with its re-entrant corner singularity →
plate with one hole → plate with several holes) and the contrast ``max a / min a`` of the
coefficient (1 → 10 → 1000; lognormal, then two-phase). ``u = 0`` on the outer boundary; holes are
insulated (``a ∂u/∂n = 0``).

One file = one mesh. The mesh of a level is built deterministically from the level and the
resolution (hole layouts come from an rng seeded by the level's name), and only the coefficient and
the source vary between samples. Why: a file then stores its mesh once and every sample's fields
are arrays over the same nodes, so a model reads ``(trajectory, node)`` arrays without per-sample
connectivity, and the solver's mesh-dependent work (basis, mass matrix) is shared. Geometry varies
across levels, i.e. across files.

Fields live on the mesh nodes. The solver is P1 (its dofs are the node values), so the stored ``u``
is the finite-element solution itself and :meth:`PoissonFEM.residual` of a solver output is zero to
round-off (float32 storage aside). The P2 element and its convergence orders are in
:mod:`pde_lab.solvers.fem` and the tests; see ``docs/pdes/poisson_fem.md``.

This module also holds :class:`MeshPDE`, what the mesh families share (level geometry, random fields
on nodes), used by :mod:`pde_lab.pdes.heat_fem`.
"""
from __future__ import annotations

import math
import zlib
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ..errors import UserError
from ..meshes import TriangleMesh, disk_mesh, lshape_mesh, plate_mesh, random_holes
from ..solvers import fem
from . import PDES
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task, check_resolution

__all__ = ["MeshPDE", "PoissonFEM", "node_random_field", "level_mesh", "GEOMETRIES"]

# Level → geometry: (kind, number of holes). Holes are drawn once per level from a fixed seed.
GEOMETRIES: dict[str, tuple[str, int]] = {
    "easy": ("disk", 0),
    "lshape": ("lshape", 0),
    "medium": ("plate", 1),
    "hard": ("plate", 4),
}


def level_mesh(level: str, resolution: int) -> TriangleMesh:
    """The mesh of ``level`` at ``resolution``: about ``resolution`` cells across the shape's width
    (disk of radius 1 and L-shape ``[−1, 1]²``: ``h = 2/resolution``; plate ``[0, 2] × [0, 1]``:
    ``h = 1/resolution``). A deterministic function of its arguments."""
    if level not in GEOMETRIES:
        raise UserError(f"no geometry for level {level!r}; allowed: {', '.join(sorted(GEOMETRIES))}")
    res = check_resolution("mesh", resolution)
    kind, n_holes = GEOMETRIES[level]
    if kind == "disk":
        return disk_mesh(2.0 / res, resolution=res)
    if kind == "lshape":
        return lshape_mesh(2.0 / res, resolution=res)
    holes = random_holes(np.random.default_rng(zlib.crc32(f"holes:{level}".encode())), n_holes,
                         width=2.0, height=1.0, radius_range=(0.1, 0.22), gap=0.1)
    mesh = plate_mesh(1.0 / res, holes, width=2.0, height=1.0, resolution=res)
    return mesh


def node_random_field(rng: np.random.Generator, nodes: np.ndarray, length: float, n_modes: int = 64) -> np.ndarray:
    """A smooth zero-mean random field at arbitrary points: ``n_modes`` random Fourier features of a
    Gaussian covariance ``exp(−|x−y|²/(2ℓ²))`` (frequencies ``~ N(0, ℓ⁻² I)``), rescaled to unit RMS
    over the points. Works on any node set, unlike a grid FFT.

    Args:
        nodes: ``(N, 2)`` points.
        length: correlation length ``ℓ``.

    Returns:
        ``(N,)`` float64.
    """
    w = rng.normal(size=(n_modes, 2)) / float(length)
    phase = rng.uniform(0.0, 2.0 * math.pi, size=n_modes)
    g = np.cos(nodes @ w.T + phase).sum(axis=1)
    g = g - g.mean()
    return g / max(float(np.sqrt(np.mean(g**2))), 1e-300)


def coefficient_field(g: np.ndarray, contrast: float, a_min: float, two_phase: bool) -> np.ndarray:
    """``a`` from a field ``g`` with exactly ``max a / min a = contrast`` over the nodes: lognormal
    ``a_min · contrast^((g − min g)/(max g − min g))``, or two-phase ``a_min · contrast`` where
    ``g ≥ 0`` and ``a_min`` elsewhere."""
    if contrast < 1:
        raise UserError(f"contrast must be >= 1, got {contrast}")
    if two_phase:
        return np.where(g >= 0.0, a_min * contrast, a_min)
    span = float(g.max() - g.min())
    s = (g - g.min()) / span if span > 0 else np.zeros_like(g)
    return a_min * np.exp(math.log(contrast) * s)


class MeshPDE(PDE):
    """Base of the families on unstructured meshes: the level decides the geometry
    (:data:`GEOMETRIES`), samples vary fields on its nodes. ``grid(resolution)`` is the mesh of the
    first level, what a level-agnostic caller gets; the generator asks :meth:`level_grid`."""

    default_resolution = 32
    dirichlet_tags: ClassVar[tuple[str, ...]] = ("outer",)

    def __init__(self):
        self._spaces: dict[tuple, fem.FEMSpace] = {}
        # Kept across solve() calls: batches of one file share the mesh, and samples with equal
        # coefficients (contrast 1) share one factorisation.
        self.cache = fem.FactorCache(max_entries=4)

    def __getstate__(self) -> dict[str, Any]:
        # SuperLU factorisations do not pickle; a copy sent to a worker process starts with empty caches.
        state = self.__dict__.copy()
        state["_spaces"], state["cache"] = {}, fem.FactorCache(max_entries=4)
        return state

    def grid(self, resolution: int) -> TriangleMesh:
        """The mesh of the first level at ``resolution`` (see :func:`level_mesh`)."""
        return self.level_grid(next(iter(self.levels)), resolution)

    def level_grid(self, level: str, resolution: int) -> TriangleMesh:
        """The mesh of ``level`` at ``resolution`` (:func:`level_mesh`); fields live on its ``N`` nodes."""
        self.level(level)
        return level_mesh(level, resolution)

    def space(self, mesh: TriangleMesh) -> fem.FEMSpace:
        """The P1 space on ``mesh`` (cached per mesh)."""
        if not isinstance(mesh, TriangleMesh):
            raise UserError(f"{self.name} needs a TriangleMesh grid, got {type(mesh).__name__}")
        key = fem._digest(mesh.nodes, mesh.triangles, mesh.boundary_facets, mesh.facet_tags)
        if key not in self._spaces:
            if len(self._spaces) > 4:
                self._spaces.clear()
            self._spaces[key] = fem.FEMSpace(mesh, 1)
        return self._spaces[key]

    def dirichlet(self, mesh: TriangleMesh) -> list[str]:
        """The boundary tags of ``mesh`` with ``u = 0``: those of ``dirichlet_tags`` it has."""
        return [t for t in self.dirichlet_tags if t in mesh.tag_names]

    def _inputs(self, instances: Sequence[Instance], mesh: TriangleMesh, names: Sequence[str]) -> dict[str, np.ndarray]:
        if len(instances) == 0:
            raise UserError(f"{self.name}.solve needs at least one instance")
        out = {}
        for name in names:
            out[name] = np.stack([inst.field(name, mesh.shape, i) for i, inst in enumerate(instances)])
        if "a" in out and not np.all(out["a"] > 0):
            raise UserError("coefficient a must be positive at every node")
        return out

    def mesh_settings(self, mesh: TriangleMesh) -> dict[str, Any]:
        """Solver settings that describe ``mesh`` and the discretisation (JSON-serialisable)."""
        return {"element": "P1 (Lagrange, linear triangles)", "geometry": mesh.geometry,
                "n_nodes": mesh.n_nodes, "n_triangles": mesh.n_triangles,
                "coefficient_representation": "P1 interpolant of the nodal values",
                "dirichlet_tags": list(self.dirichlet(mesh)), "linear_solver": fem.LINEAR_SOLVER,
                "assembly": "scikit-fem", "dtype": "float64"}


_COEF_PARAMS = (
    Parameter("contrast", 1.0, "1", "max a / min a over the nodes"),
    Parameter("two_phase", 0.0, "1", "1: two-valued coefficient (thresholded field), 0: lognormal"),
    Parameter("corr_length", 0.25, "L", "correlation length of the random field behind a"),
)


@PDES.register("poisson_fem")
class PoissonFEM(MeshPDE):
    """``−∇·(a∇u) = f`` on a disk, an L-shape or a plate with holes; ``u = 0`` on the outer boundary,
    insulated holes. Inputs ``a`` and ``f`` and solution ``u`` on the mesh nodes, stored as
    ``(trajectory, n_nodes)``."""

    name = "poisson_fem"
    description = "Steady diffusion on unstructured meshes (disk, L-shape, plates with holes), P1 FEM"
    equation = "-div(a grad u) = f in Omega, u = 0 on the outer boundary, a du/dn = 0 on holes"
    parameters = (
        Parameter("a_min", 1.0, "1", "smallest value of the coefficient"),
        *_COEF_PARAMS,
        Parameter("source_mean", 1.0, "1", "mean of the source f"),
        Parameter("source_variation", 0.5, "1", "RMS of the random part of f"),
    )
    fields = (
        FieldSpec("a", "input", time_varying=False, description="diffusion coefficient on the nodes"),
        FieldSpec("f", "input", time_varying=False, description="source on the nodes"),
        FieldSpec("u", "solution", time_varying=False, description="P1 finite-element solution at the nodes"),
    )
    boundary_conditions = (
        BoundaryCondition("outer_dirichlet", "dirichlet", ("outer",), ("u",), 0.0),
        BoundaryCondition("hole_neumann", "neumann", ("hole",), ("u",), 0.0),
    )
    levels = {
        "easy": Level("easy", {"contrast": (1.0, 1.0)},
                      description="unit disk, a = 1 (contrast 1); random source"),
        "lshape": Level("lshape", {"contrast": (10.0, 10.0), "corr_length": (0.2, 0.4)},
                        description="L-shape (re-entrant corner), lognormal a with contrast 10"),
        "medium": Level("medium", {"contrast": (10.0, 10.0), "corr_length": (0.15, 0.3)},
                        description="2 x 1 plate with one insulated hole, lognormal a with contrast 10"),
        "hard": Level("hard", {"contrast": (1000.0, 1000.0), "two_phase": (1.0, 1.0), "corr_length": (0.1, 0.2)},
                      description="2 x 1 plate with four insulated holes, two-phase a with contrast 1000"),
    }
    solver = "P1 finite elements (scikit-fem), sparse direct solve (SuperLU)"
    default_task = Task("one_shot", 1, 1)

    def sample(self, level: str, rng: np.random.Generator, grid: TriangleMesh) -> Instance:
        """Parameters from ``level``, then the coefficient field and the source field, from ``rng``.

        Returns:
            ``Instance(params, inputs={"a": (N,), "f": (N,)})`` float64 nodal values.
        """
        params = self.draw_params(level, rng)
        x = grid.nodes
        g = node_random_field(rng, x, params["corr_length"])
        a = coefficient_field(g, params["contrast"], params["a_min"], params["two_phase"] >= 0.5)
        f = params["source_mean"] + params["source_variation"] * node_random_field(rng, x, 0.3)
        return Instance(params=params, inputs={"a": a, "f": f})

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Realised ``contrast = max a / min a`` and ``high_fraction``, the share of nodes where ``a``
        exceeds the geometric mean of its extremes."""
        a = np.asarray(inputs["a"], dtype=np.float64)
        mid = math.sqrt(a.max() * a.min())
        return {"contrast": float(a.max() / a.min()),
                "high_fraction": float(np.mean(a > mid)) if a.max() > a.min() else 0.0}

    def solve(self, instances: Sequence[Instance], grid: TriangleMesh, device: str = "cpu") -> SolveResult:
        """One sparse direct solve per instance on the CPU (SuperLU has no GPU path); instances with
        equal coefficients reuse one factorisation.

        Returns:
            ``SolveResult`` with ``fields = {"a", "f", "u"}``, each ``(B, N)`` float64, ``times=None``,
            ``steps`` ones, per sample ``factorized`` (1: this sample's matrix was factorised, 0: reused).
        """
        space = self.space(grid)
        inp = self._inputs(instances, grid, ("a", "f"))
        tags = self.dirichlet(grid)
        B = len(instances)
        u = np.empty((B, grid.n_nodes))
        factorized = np.zeros(B)
        for i in range(B):
            before = self.cache.n_factorizations
            u[i] = fem.solve_poisson(space, inp["a"][i], inp["f"][i], 0.0, dirichlet_tags=tags, cache=self.cache)
            factorized[i] = self.cache.n_factorizations - before
        settings = {"scheme": fem.SCHEME, **self.mesh_settings(grid), "solve_device": "cpu",
                    "requested_device": str(device)}
        return SolveResult(fields={"a": inp["a"], "f": inp["f"], "u": u}, times=None,
                           steps=np.ones(B, dtype=np.int64), settings=settings,
                           per_sample={"factorized": factorized})

    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: TriangleMesh,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
        """Discrete finite-element residual ``K(a) u − F(f)`` of the P1 system, at every node (zero at
        the Dirichlet nodes, where the equation is replaced by the boundary condition).

        Args:
            solution: ``{"a", "f", "u"}``, each ``(B, N)`` (or ``(N,)``) nodal values.
            params, times: unused (the fields carry everything).
            grid: the mesh of the fields.

        Returns:
            ``(B, N)`` float64 in the units of ``∫ f φ``; zero to round-off on a solver output.
        """
        space = self.space(grid)
        a, f, u = (np.atleast_2d(np.asarray(solution[k], dtype=np.float64)) for k in ("a", "f", "u"))
        D = space.boundary_dofs(self.dirichlet(grid))
        out = np.empty_like(u)
        for i in range(u.shape[0]):
            r = space.stiffness(a[i]) @ u[i] - space.load(f[i])
            r[D] = 0.0
            out[i] = r
        return out
