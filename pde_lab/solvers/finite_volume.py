"""Cell-centred finite volumes for the variable-coefficient diffusion problem ``−∇·(a∇u) = f``.

The domain is the box of a :class:`~pde_lab.grids.CartesianGrid` whose axes are all bounded; the
unknowns are the cell averages of ``u`` at the cell centres the grid places there. The flux through a
face between two cells is ``a_face (u_right − u_left) / h`` with ``a_face`` the harmonic mean of the two
cell coefficients: that is the exact flux of a 1D two-layer medium whose interface lies on the face, so
the scheme keeps its accuracy when ``a`` jumps across cell faces (thresholded random media). On a
boundary face the Dirichlet value ``g`` sits half a cell away from the centre, and the cell's own
coefficient carries the flux ``2 a (u − g) / h``. Dividing the flux balance by the cell volume gives
the 5-point (in 2D) matrix ``A`` with ``A u = f + (boundary terms)``; ``A`` is symmetric positive
definite for positive ``a``.

Why by hand: scikit-fem and friends discretise on nodes with finite elements, whereas the datasets
store cell-centred fields on the same grid the neural operators see, and the assembly here is a few
vectorised ``numpy`` lines into ``scipy.sparse``. The linear solve is SciPy's sparse direct solver
(SuperLU), which is sequential and deterministic, so a sample's bytes never depend on the machine load.

All functions work in any dimension ``grid.dim >= 1``. Arrays are ``(*grid.shape)`` (one field) or
``(B, *grid.shape)`` (a batch); the spatial axes are always the trailing ``grid.dim`` axes.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Mapping, Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import UserError, check_choice
from ..grids import CartesianGrid

Averaging = Literal["harmonic", "arithmetic"]
AVERAGINGS = ("harmonic", "arithmetic")

#: Dirichlet data: one number for the whole boundary, or a mapping from side names ``"x_lo"``,
#: ``"x_hi"``, ``"y_lo"``, ... to the values at that side's face centres, shaped like the grid with
#: the side's axis removed (``x_lo``/``x_hi``: ``(ny,)``, ``y_lo``/``y_hi``: ``(nx,)`` in 2D). Sides
#: left out of the mapping get ``0``.
DirichletData = Union[float, Mapping[str, Any]]

#: Settings of the discretisation, recorded with every generated sample.
SCHEME = "cell-centred finite volume, two-point flux (5-point stencil in 2D)"
LINEAR_SOLVER = (
    "scipy.sparse.linalg.splu (SuperLU direct LU), symmetric mode, MMD_AT_PLUS_A ordering, no pivoting"
)


# ---- helpers ---------------------------------------------------------------------------------

def _check_grid(grid: CartesianGrid) -> None:
    if any(grid.periodic):
        raise ValueError(
            f"finite_volume needs a grid with all axes bounded, got periodic={grid.periodic}"
        )


def _side_names(grid: CartesianGrid) -> list[str]:
    return [f"{ax}_{side}" for ax in grid.axis_names for side in ("lo", "hi")]


def _face_shape(grid: CartesianGrid, axis: int) -> tuple[int, ...]:
    return tuple(n for k, n in enumerate(grid.shape) if k != axis)


def _index(dim: int, axis: int, s) -> tuple:
    """Index that applies ``s`` to spatial ``axis`` of an array whose trailing ``dim`` axes are space."""
    return (Ellipsis,) + tuple(s if k == axis else slice(None) for k in range(dim))


def _face_average(a_lo, a_hi, averaging: str):
    if averaging == "harmonic":
        return 2.0 * a_lo * a_hi / (a_lo + a_hi)
    return 0.5 * (a_lo + a_hi)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _check_coefficient(a: np.ndarray, grid: CartesianGrid) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape != tuple(grid.shape):
        raise ValueError(f"coefficient a has shape {a.shape}, the grid needs {tuple(grid.shape)}")
    if not np.all(np.isfinite(a)):
        raise UserError("coefficient a must be finite everywhere")
    if a.min() <= 0:
        raise UserError(f"coefficient a must be positive everywhere, got min(a) = {a.min()!r}")
    return a


def _check_dirichlet(g: DirichletData, grid: CartesianGrid) -> None:
    if np.isscalar(g) or (isinstance(g, np.ndarray) and g.ndim == 0):
        return
    if not isinstance(g, Mapping):
        raise ValueError(
            "Dirichlet data g must be a number or a mapping from sides "
            f"{_side_names(grid)} to arrays, got {type(g).__name__}"
        )
    allowed = _side_names(grid)
    for key, value in g.items():
        if key not in allowed:
            raise ValueError(f"unknown boundary side {key!r}; allowed: {', '.join(allowed)}")
        axis = grid.axis_names.index(key.split("_")[0])
        want = _face_shape(grid, axis)
        shape = tuple(np.shape(value))
        if not np.isscalar(value) and shape[len(shape) - len(want):] != want:
            raise ValueError(
                f"Dirichlet values on side {key!r} have shape {shape}, expected (..., {want})"
            )


def _side_value(g: DirichletData, grid: CartesianGrid, axis: int, side: str):
    """Dirichlet values on one side: a scalar, or an array ``(..., *face_shape)``."""
    if not isinstance(g, Mapping):
        return g
    return g.get(f"{grid.axis_names[axis]}_{side}", 0.0)


def dirichlet_values(grid: CartesianGrid, fn: Callable[..., np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate a boundary function at the centres of the boundary faces.

    Args:
        grid: bounded grid.
        fn: ``fn(*coords)`` with one coordinate array per axis (broadcast together), returning values.

    Returns:
        ``{"x_lo": (ny,), "x_hi": (ny,), "y_lo": (nx,), "y_hi": (nx,)}`` in 2D (face shape = grid shape
        without the side's axis), float64, in the form :data:`DirichletData` expects.
    """
    _check_grid(grid)
    out = {}
    for axis, name in enumerate(grid.axis_names):
        for side, wall in (("lo", grid.bounds[axis][0]), ("hi", grid.bounds[axis][1])):
            coords = [grid.axis(k) for k in range(grid.dim)]
            coords[axis] = np.array([wall], dtype=np.float64)
            mesh = np.meshgrid(*coords, indexing="ij")
            values = np.broadcast_to(np.asarray(fn(*mesh), dtype=np.float64), mesh[0].shape)
            out[f"{name}_{side}"] = np.array(np.squeeze(values, axis=axis))  # 1D: a 0-d array
    return out


# ---- assembly and solve --------------------------------------------------------------------

def assemble(
    a: np.ndarray,
    grid: CartesianGrid,
    f: float | np.ndarray = 1.0,
    g: DirichletData = 0.0,
    averaging: Averaging = "harmonic",
) -> tuple[sp.csc_matrix, np.ndarray]:
    """Matrix and right-hand side of the cell-centred discretisation of ``−∇·(a∇u) = f``, ``u = g``.

    Args:
        a: ``(*grid.shape)`` positive coefficient, one value per cell.
        grid: grid with every axis bounded; its points are the cell centres.
        f: source, a number or ``(*grid.shape)`` values at the cell centres.
        g: Dirichlet data, see :data:`DirichletData`.
        averaging: face coefficient from the two neighbouring cells, ``"harmonic"`` (the scheme) or
            ``"arithmetic"`` (only for comparisons).

    Returns:
        ``(A, b)``: ``A`` an ``(N, N)`` CSC matrix, ``N = prod(grid.shape)``, unknowns in C order of the
        grid (``u.ravel()``); ``b`` of shape ``(N,)``. The discrete solution solves ``A u = b``.
    """
    _check_grid(grid)
    check_choice("face averaging", averaging, AVERAGINGS)
    a = _check_coefficient(a, grid)
    _check_dirichlet(g, grid)
    shape, dim = tuple(grid.shape), grid.dim
    n_cells = int(np.prod(shape))
    index = np.arange(n_cells).reshape(shape)
    diag = np.zeros(n_cells)
    b = np.broadcast_to(np.asarray(f, dtype=np.float64), shape).astype(np.float64).ravel()
    rows, cols, vals = [], [], []
    for axis, h in enumerate(grid.spacing):
        lo, hi = _index(dim, axis, slice(0, -1)), _index(dim, axis, slice(1, None))
        t = (_face_average(a[lo], a[hi], averaging) / h**2).ravel()
        i_lo, i_hi = index[lo].ravel(), index[hi].ravel()
        rows += [i_lo, i_hi]
        cols += [i_hi, i_lo]
        vals += [-t, -t]
        diag += np.bincount(i_lo, weights=t, minlength=n_cells)
        diag += np.bincount(i_hi, weights=t, minlength=n_cells)
        for side, s in (("lo", 0), ("hi", -1)):
            wall = _index(dim, axis, s)
            t_wall = (2.0 * a[wall] / h**2).ravel()
            i_wall = index[wall].ravel()
            value = np.broadcast_to(np.asarray(_side_value(g, grid, axis, side), dtype=np.float64),
                                    _face_shape(grid, axis)).ravel()
            # Corner cells touch two walls; bincount adds both contributions.
            diag += np.bincount(i_wall, weights=t_wall, minlength=n_cells)
            b += np.bincount(i_wall, weights=t_wall * value, minlength=n_cells)
    rows.append(np.arange(n_cells))
    cols.append(np.arange(n_cells))
    vals.append(diag)
    A = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_cells, n_cells)
    ).tocsc()
    return A, b


def solve(
    a: np.ndarray,
    grid: CartesianGrid,
    f: float | np.ndarray = 1.0,
    g: DirichletData = 0.0,
    averaging: Averaging = "harmonic",
) -> np.ndarray:
    """Solve ``−∇·(a∇u) = f`` with ``u = g`` on the boundary for one coefficient field.

    Args:
        a: ``(*grid.shape)`` positive coefficient.
        grid, f, g, averaging: as in :func:`assemble`.

    Returns:
        ``(*grid.shape)`` float64 cell-centre values of ``u``.
    """
    A, b = assemble(a, grid, f, g, averaging)
    return _factorize(A).solve(b).reshape(grid.shape)


def _factorize(A: sp.csc_matrix):
    """Sparse LU of the SPD matrix ``A``.

    A minimum-degree ordering of ``A + Aᵀ`` in symmetric mode keeps the fill about half that of
    SciPy's default COLAMD (measured: 256² cells, 3.4M vs 6.2M factor entries, 0.26 s vs 0.32 s), and
    an SPD matrix needs no pivoting for stability, so pivoting is switched off to keep the ordering.
    """
    return spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                     options={"SymmetricMode": True})


def solve_batch(
    a: np.ndarray,
    grid: CartesianGrid,
    f: float | np.ndarray = 1.0,
    g: DirichletData = 0.0,
    averaging: Averaging = "harmonic",
) -> np.ndarray:
    """Solve for a batch of coefficient fields, one sparse direct solve each.

    Each solve sees only its own coefficient, so a sample's result does not depend on the batch.

    Args:
        a: ``(B, *grid.shape)`` positive coefficients.
        grid, averaging: as in :func:`assemble`.
        f: a number, ``(*grid.shape)`` shared by all samples, or ``(B, *grid.shape)``.
        g: Dirichlet data shared by all samples (see :data:`DirichletData`).

    Returns:
        ``(B, *grid.shape)`` float64.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != grid.dim + 1:
        raise ValueError(f"solve_batch needs a of shape (B, {tuple(grid.shape)}), got {a.shape}")
    f = np.asarray(f, dtype=np.float64)
    per_sample_f = f.ndim == grid.dim + 1
    out = np.empty(a.shape, dtype=np.float64)
    for i in range(a.shape[0]):
        out[i] = solve(a[i], grid, f[i] if per_sample_f else f, g, averaging)
    return out


# ---- residual --------------------------------------------------------------------------------

def residual(
    a,
    u,
    grid: CartesianGrid,
    f: Any = 1.0,
    g: DirichletData = 0.0,
    averaging: Averaging = "harmonic",
):
    """Discrete residual ``A(a) u − b(f, g)`` of the scheme of :func:`assemble`, without a matrix.

    Works on NumPy arrays and on torch tensors (differentiable, any device), so PINN losses and
    physics metrics use the same discrete equation as the solver. The result is zero (to round-off)
    exactly on the solution of :func:`solve`.

    Args:
        a: ``(..., *grid.shape)`` positive coefficient.
        u: ``(..., *grid.shape)`` candidate solution (batch axes broadcast with ``a``).
        grid: bounded grid.
        f: source, broadcastable to ``(..., *grid.shape)``.
        g: Dirichlet data; side arrays may carry the same leading batch axes as ``u``.
        averaging: as in :func:`assemble`.

    Returns:
        ``(..., *grid.shape)`` residual, same array type as ``u``, in the units of ``f``.
    """
    _check_grid(grid)
    check_choice("face averaging", averaging, AVERAGINGS)
    _check_dirichlet(g, grid)
    dim = grid.dim
    if _is_torch(u):
        import torch

        def convert(x):
            return x if np.isscalar(x) else torch.as_tensor(x, dtype=u.dtype, device=u.device)

        cat = lambda parts, axis: torch.cat(parts, dim=axis)  # noqa: E731
        expand = torch.unsqueeze
        a = convert(a)
    else:
        convert = lambda x: x if np.isscalar(x) else np.asarray(x, dtype=np.float64)  # noqa: E731
        cat = lambda parts, axis: np.concatenate(parts, axis=axis)  # noqa: E731
        expand = np.expand_dims
        u, a = np.asarray(u, dtype=np.float64), np.asarray(a, dtype=np.float64)
    if tuple(u.shape[u.ndim - dim:]) != tuple(grid.shape):
        raise ValueError(f"u has shape {tuple(u.shape)}, its last axes must be {tuple(grid.shape)}")
    divergence = 0.0
    for axis, h in enumerate(grid.spacing):
        lo, hi = _index(dim, axis, slice(0, -1)), _index(dim, axis, slice(1, None))
        first, last = _index(dim, axis, slice(0, 1)), _index(dim, axis, slice(-1, None))
        # Flux a ∂u/∂x_axis on every face of this axis, walls included: (..., n_axis + 1, ...).
        interior = _face_average(a[lo], a[hi], averaging) * (u[hi] - u[lo]) / h
        g_lo, g_hi = (convert(_side_value(g, grid, axis, s)) for s in ("lo", "hi"))
        if not np.isscalar(g_lo):
            g_lo = expand(g_lo, axis - dim)
        if not np.isscalar(g_hi):
            g_hi = expand(g_hi, axis - dim)
        wall_lo = 2.0 * a[first] * (u[first] - g_lo) / h
        wall_hi = 2.0 * a[last] * (g_hi - u[last]) / h
        flux = cat([wall_lo, interior, wall_hi], axis - dim)
        divergence = divergence + (flux[hi] - flux[lo]) / h
    return -divergence - convert(f)
