"""Conforming finite elements (P1, P2) on triangle meshes with scikit-fem, for ``−∇·(a∇u) = f`` and
the heat equation ``u_t = ∇·(a∇u) + f``.

scikit-fem assembles; what this module adds is the bookkeeping a dataset generator needs:

* coefficients and sources given either as callables ``fn(x, y)`` (evaluated at quadrature points:
  the manufactured solutions of the tests) or as values on the mesh nodes (the stored fields of a
  dataset, used through their P1 interpolant, so the solve sees exactly the data in the file);
* Dirichlet data on tagged boundary parts, eliminated by condensation, and Neumann flux data;
* a :class:`FactorCache`: a sparse LU factorisation (SuperLU) is keyed by the matrix it factorises
  (mesh, degree, coefficient bytes, time-step shift), so the heat solver factorises once per
  trajectory and reuses it every step, and samples that share a coefficient share one factorisation;
* L2 and H1-seminorm errors against exact solutions, by high-order quadrature.

Heat equation time stepping is Crank–Nicolson with a Rannacher start: the first step is replaced by
two backward-Euler half steps, which damp the high-frequency part of a rough initial state that
Crank–Nicolson alone would carry along undamped. Both use the matrix ``M + (Δt/2) K``, so one
factorisation serves the whole trajectory; the scheme is second order in time.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ..errors import UserError
from ..meshes import TriangleMesh

__all__ = ["FEMSpace", "FactorCache", "solve_poisson", "solve_heat", "l2_error", "h1_error", "poisson_residual",
           "SCHEME", "LINEAR_SOLVER"]

SCHEME = "conforming Lagrange finite elements on triangles (scikit-fem)"
LINEAR_SOLVER = "scipy.sparse.linalg.splu (SuperLU), factorisations cached and reused"

# A coefficient or source: a constant, a callable fn(x, y) on arrays, or (N,) values on the mesh nodes.
Data = Union[float, Callable[..., np.ndarray], np.ndarray]


class FEMSpace:
    """Lagrange elements of ``degree`` 1 or 2 on a :class:`~pde_lab.meshes.TriangleMesh`.

    Attributes:
        mesh: the mesh.
        degree: polynomial degree.
        basis: the ``skfem.Basis``; unknowns are its dofs, ``n_dofs`` of them. For both degrees the
            first ``mesh.n_nodes`` dofs are the values at the mesh nodes, in node order.
        doflocs: ``(n_dofs, 2)`` dof positions.
    """

    def __init__(self, mesh: TriangleMesh, degree: int = 1):
        from skfem import Basis, ElementTriP1, ElementTriP2

        elements = {1: ElementTriP1, 2: ElementTriP2}
        if degree not in elements:
            raise UserError(f"finite element degree {degree!r} is not supported; allowed: 1, 2")
        self.mesh, self.degree = mesh, int(degree)
        self.skmesh = mesh.to_skfem()
        # Quadrature exact for the mass matrix of P2 times a P1 coefficient (degree 5).
        self.basis = Basis(self.skmesh, elements[degree](), intorder=2 * degree + 1)
        self._p1 = self.basis.with_element(ElementTriP1())
        self.doflocs = np.ascontiguousarray(self.basis.doflocs.T)
        if not np.array_equal(self.basis.nodal_dofs[0], np.arange(mesh.n_nodes)):
            raise RuntimeError("scikit-fem numbers the vertex dofs differently than expected")
        self._mass: sp.csr_matrix | None = None
        self._facet_index = self._facets_by_tag()
        # Identifies the discrete space in factorisation cache keys (an id() could be reused).
        self.key = f"P{self.degree}:" + _digest(mesh.nodes, mesh.triangles, mesh.boundary_facets)

    @property
    def n_dofs(self) -> int:
        return int(self.basis.N)

    def _facets_by_tag(self) -> dict[str, np.ndarray]:
        """skfem facet indices of each boundary tag (our facets are node pairs)."""
        f = np.sort(self.skmesh.facets.T, axis=1)
        lookup = {(int(a), int(b)): k for k, (a, b) in enumerate(f)}
        out = {}
        b = np.sort(self.mesh.boundary_facets, axis=1)
        for t, name in enumerate(self.mesh.tag_names):
            out[name] = np.array([lookup[(int(x), int(y))] for x, y in b[self.mesh.facet_tags == t]], dtype=np.int64)
        return out

    def boundary_dofs(self, tags: Sequence[str] | None = None) -> np.ndarray:
        """Sorted dofs on the boundary parts ``tags`` (all of the boundary when ``None``), P2 edge dofs included."""
        tags = list(self.mesh.tag_names) if tags is None else list(tags)
        facets = []
        for t in tags:
            if t not in self._facet_index:
                raise UserError(f"unknown boundary tag {t!r}; this mesh has: {', '.join(self.mesh.tag_names)}")
            facets.append(self._facet_index[t])
        facets = np.concatenate(facets) if facets else np.zeros(0, dtype=np.int64)
        if facets.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(self.basis.get_dofs(facets=facets).all())

    def at_quadrature(self, value: Data):
        """``value`` at the quadrature points, ``(n_elements, n_points)``, or a float."""
        if callable(value):
            x = np.asarray(self.basis.global_coordinates())
            return np.asarray(value(x[0], x[1]), dtype=np.float64) * np.ones(x[0].shape)
        if np.isscalar(value):
            return float(value)
        v = np.asarray(value, dtype=np.float64)
        if v.shape != (self.mesh.n_nodes,):
            raise UserError(f"nodal data must have shape ({self.mesh.n_nodes},), got {v.shape}")
        return np.asarray(self._p1.interpolate(v))

    def at_dofs(self, value: Data) -> np.ndarray:
        """``value`` at the dof positions, ``(n_dofs,)``: a callable is evaluated there, nodal P1 data
        interpolated (P2 edge dofs get the mean of the edge's end values)."""
        if callable(value):
            return np.asarray(value(self.doflocs[:, 0], self.doflocs[:, 1]), dtype=np.float64) * np.ones(self.n_dofs)
        if np.isscalar(value):
            return np.full(self.n_dofs, float(value))
        v = np.asarray(value, dtype=np.float64)
        if v.shape == (self.n_dofs,):
            return v.copy()
        if v.shape != (self.mesh.n_nodes,):
            raise UserError(f"nodal data must have shape ({self.mesh.n_nodes},), got {v.shape}")
        if self.degree == 1:
            return v.copy()
        edges = self.skmesh.facets  # (2, n_facets): P2 facet dofs follow the vertex dofs in facet order
        out = np.empty(self.n_dofs)
        out[: self.mesh.n_nodes] = v
        out[self.basis.facet_dofs[0]] = 0.5 * (v[edges[0]] + v[edges[1]])
        return out

    def stiffness(self, a: Data = 1.0) -> sp.csr_matrix:
        """``K_ij = ∫ a ∇φ_j·∇φ_i``, ``(n_dofs, n_dofs)``."""
        from skfem import BilinearForm, asm
        from skfem.helpers import dot, grad

        @BilinearForm
        def form(u, v, w):
            return w["a"] * dot(grad(u), grad(v))

        return asm(form, self.basis, a=self.at_quadrature(a)).tocsr()

    def mass(self) -> sp.csr_matrix:
        """``M_ij = ∫ φ_j φ_i``, ``(n_dofs, n_dofs)`` (computed once)."""
        if self._mass is None:
            from skfem import BilinearForm, asm

            @BilinearForm
            def form(u, v, w):
                return u * v

            self._mass = asm(form, self.basis).tocsr()
        return self._mass

    def load(self, f: Data = 0.0) -> np.ndarray:
        """``F_i = ∫ f φ_i``, ``(n_dofs,)``."""
        from skfem import LinearForm, asm

        @LinearForm
        def form(v, w):
            return w["f"] * v

        return asm(form, self.basis, f=self.at_quadrature(f))

    def neumann_load(self, g: float | Callable[..., np.ndarray], tags: Sequence[str]) -> np.ndarray:
        """``∫_Γ g φ_i`` over the boundary parts ``tags`` (outward flux ``a ∂u/∂n = g``, a number or
        ``g(x, y)``), ``(n_dofs,)``."""
        from skfem import FacetBasis, LinearForm, asm

        if not (callable(g) or np.isscalar(g)):
            raise UserError(f"Neumann data must be a number or a function g(x, y), got {type(g).__name__}")
        unknown = [t for t in tags if t not in self._facet_index]
        if unknown:
            raise UserError(f"unknown boundary tag(s) {unknown}; this mesh has: {', '.join(self.mesh.tag_names)}")

        facets = np.concatenate([self._facet_index[t] for t in tags]) if tags else np.zeros(0, dtype=np.int64)
        if facets.size == 0:
            return np.zeros(self.n_dofs)
        fb = FacetBasis(self.skmesh, self.basis.elem, facets=facets, intorder=2 * self.degree + 1)

        @LinearForm
        def form(v, w):
            x = w.x
            val = g(x[0], x[1]) if callable(g) else float(g)
            return val * v

        return asm(form, fb)


def _coef_key(space: FEMSpace, a: Data) -> str:
    """Cache key of a coefficient: a constant array and the same number give the same key (the same
    matrix), so samples with a uniform coefficient share a factorisation. A callable is keyed by its
    values at the quadrature points (an object's identity could be reused after it is freed)."""
    if callable(a):
        return "quad:" + _digest(space.at_quadrature(a))
    v = np.asarray(a, dtype=np.float64)
    if v.size and np.all(v == v.reshape(-1)[0]):
        return f"const:{float(v.reshape(-1)[0])!r}"
    return _digest(v)


def _digest(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        b = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(str(b.shape).encode())
        h.update(b.tobytes())
    return h.hexdigest()


@dataclass
class FactorCache:
    """Sparse LU factorisations keyed by what determines the matrix.

    ``n_factorizations`` counts the factorisations actually computed, ``n_hits`` the reuses.
    ``max_entries`` bounds memory (least recently used dropped first).
    """

    max_entries: int = 8
    n_factorizations: int = 0
    n_hits: int = 0
    _store: dict = field(default_factory=dict)

    def get(self, key: tuple, build: Callable[[], sp.spmatrix]):
        """The factorisation stored under ``key``, or the LU of ``build()`` (stored)."""
        if key in self._store:
            self.n_hits += 1
            lu = self._store.pop(key)
            self._store[key] = lu
            return lu
        lu = splu(sp.csc_matrix(build()))
        self.n_factorizations += 1
        self._store[key] = lu
        while len(self._store) > self.max_entries:
            self._store.pop(next(iter(self._store)))
        return lu


def _split(space: FEMSpace, dirichlet_tags: Sequence[str] | None):
    D = space.boundary_dofs(dirichlet_tags) if dirichlet_tags is None or len(dirichlet_tags) else np.zeros(0, np.int64)
    free = np.setdiff1d(np.arange(space.n_dofs), D)
    return D, free


def solve_poisson(space: FEMSpace, a: Data = 1.0, f: Data = 0.0, g: Data = 0.0,
                  dirichlet_tags: Sequence[str] | None = None, neumann: tuple[Data, Sequence[str]] | None = None,
                  cache: FactorCache | None = None) -> np.ndarray:
    """Solve ``−∇·(a∇u) = f`` with ``u = g`` on ``dirichlet_tags`` (default: the whole boundary) and
    ``a ∂u/∂n = neumann[0]`` on ``neumann[1]`` (other boundary parts: zero flux).

    Returns:
        ``(n_dofs,)`` float64 dof values; the first ``mesh.n_nodes`` are the nodal values.
    """
    D, free = _split(space, dirichlet_tags)
    if D.size == 0:
        raise UserError("the Poisson problem needs a Dirichlet boundary part (pure Neumann is singular)")
    K = space.stiffness(a)
    F = space.load(f)
    if neumann is not None:
        F = F + space.neumann_load(*neumann)
    u = np.zeros(space.n_dofs)
    u[D] = space.at_dofs(g)[D]
    rhs = F[free] - K[free][:, D] @ u[D]
    cache = cache if cache is not None else FactorCache()
    key = ("poisson", space.key, _coef_key(space, a), _digest(D))
    lu = cache.get(key, lambda: K[free][:, free])
    u[free] = lu.solve(rhs)
    return u


def poisson_residual(space: FEMSpace, u: np.ndarray, a: Data = 1.0, f: Data = 0.0,
                     dirichlet_tags: Sequence[str] | None = None) -> np.ndarray:
    """Discrete residual ``(K u − F)`` at the free (non-Dirichlet) dofs, ``(n_free,)``; zero to
    round-off on a solution of :func:`solve_poisson` with the same data."""
    D, free = _split(space, dirichlet_tags)
    return (space.stiffness(a) @ np.asarray(u, dtype=np.float64) - space.load(f))[free]


def solve_heat(space: FEMSpace, u0: Data, times: np.ndarray, a: Data = 1.0, f: Data = 0.0, g: Data = 0.0,
               dirichlet_tags: Sequence[str] | None = None, steps_per_interval: int = 1,
               cache: FactorCache | None = None, rannacher: bool = True) -> tuple[np.ndarray, int]:
    """Solve ``u_t = ∇·(a∇u) + f``, ``u = g`` on ``dirichlet_tags`` (default: the whole boundary),
    zero flux elsewhere, from ``u0`` at ``times[0]``; Crank–Nicolson with a Rannacher start.

    The output interval ``times[k+1] − times[k]`` (must be uniform) is split into
    ``steps_per_interval`` steps. The matrix ``M + (Δt/2) K`` is factorised once (through ``cache``).
    The initial state is taken at the dofs (nodal data interpolated) and its Dirichlet dofs set to ``g``.

    Returns:
        ``(U, steps)``: ``U`` of shape ``(T, n_dofs)`` float64, ``U[0]`` the initial dof vector, and the
        number of time steps taken (the Rannacher half steps count one each).
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size < 2 or not np.all(np.diff(t) > 0):
        raise UserError("times must be a 1D strictly increasing array of at least 2 values")
    dt_out = np.diff(t)
    if not np.allclose(dt_out, dt_out[0], rtol=1e-10, atol=0):
        raise UserError("times must be equally spaced")
    if steps_per_interval < 1:
        raise UserError(f"steps_per_interval must be >= 1, got {steps_per_interval}")
    dt = float(dt_out[0]) / steps_per_interval
    D, free = _split(space, dirichlet_tags)
    M, K = space.mass(), space.stiffness(a)
    F = space.load(f)
    gD = space.at_dofs(g)[D]
    cache = cache if cache is not None else FactorCache()
    A = (M + 0.5 * dt * K).tocsr()
    key = ("heat", space.key, _coef_key(space, a), round(dt, 15), _digest(D))
    lu = cache.get(key, lambda: A[free][:, free])
    Mff, Kff = M[free][:, free], K[free][:, free]
    # With u = g fixed on D, u_D' = 0 and the free dofs obey M_ff u' + K_ff u = F_f − K_fD g.
    Ff = F[free] - K[free][:, D] @ gD
    u = space.at_dofs(u0)
    u[D] = gD
    out = np.empty((t.size, space.n_dofs))
    out[0] = u
    out[1:, D] = gD
    uf = u[free].copy()
    steps = 0
    for k in range(1, t.size):
        for s in range(steps_per_interval):
            if rannacher and k == 1 and s == 0:
                for _ in range(2):  # backward Euler, step dt/2: (M + dt/2 K) u+ = M u + dt/2 F
                    uf = lu.solve(Mff @ uf + 0.5 * dt * Ff)
                    steps += 1
                continue
            uf = lu.solve(Mff @ uf - 0.5 * dt * (Kff @ uf) + dt * Ff)
            steps += 1
        out[k, free] = uf
    return out, steps


def l2_error(space: FEMSpace, u: np.ndarray, exact: Callable[..., np.ndarray]) -> float:
    """``‖u_h − u‖_{L2}`` for dof vector ``u`` ``(n_dofs,)`` and ``exact(x, y)``, by the space's quadrature
    raised to degree 7."""
    from skfem import Basis, Functional

    b = Basis(space.skmesh, space.basis.elem, intorder=7)
    uh = b.interpolate(np.asarray(u, dtype=np.float64))
    x = np.asarray(b.global_coordinates())
    ue = np.asarray(exact(x[0], x[1]), dtype=np.float64) * np.ones(x[0].shape)

    @Functional
    def err(w):
        return (w["uh"] - w["ue"]) ** 2

    return float(np.sqrt(err.assemble(b, uh=np.asarray(uh), ue=ue)))


def h1_error(space: FEMSpace, u: np.ndarray, exact_grad: Callable[..., tuple[np.ndarray, np.ndarray]]) -> float:
    """``|u_h − u|_{H1} = ‖∇u_h − ∇u‖_{L2}`` for dof vector ``u`` ``(n_dofs,)`` and
    ``exact_grad(x, y) → (u_x, u_y)``."""
    from skfem import Basis, Functional

    b = Basis(space.skmesh, space.basis.elem, intorder=7)
    gh = b.interpolate(np.asarray(u, dtype=np.float64)).grad
    x = np.asarray(b.global_coordinates())
    gx, gy = exact_grad(x[0], x[1])

    @Functional
    def err(w):
        return (w["gx"] - w["ex"]) ** 2 + (w["gy"] - w["ey"]) ** 2

    return float(np.sqrt(err.assemble(b, gx=gh[0], gy=gh[1], ex=gx * np.ones(x[0].shape), ey=gy * np.ones(x[0].shape))))
