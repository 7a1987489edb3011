"""Method of lines for 1D nonlinear diffusion with a storage (retardation) factor:

    R(u) u_t = ∂x (D ∂x u)   on [a, b],    u + κ ∂n u = g   at each end,

with cell-centred finite volumes in space and SciPy's variable-order BDF in time.

Space: ``n`` cells of width ``h``, unknowns the cell values ``u_i`` at the centres. Face fluxes
(positive along +x) are ``q_{i+1/2} = −D (u_{i+1} − u_i)/h`` inside; at a boundary the face value
``u_b`` follows from the condition with the one-sided derivative ``∂n u ≈ (u_b − u_edge)/(h/2)``, so
``u_b = (g + s u_edge)/(1 + s)`` with ``s = 2κ/h``: ``κ = 0`` is a Dirichlet condition, ``κ > 0`` a Robin
one (``u(1) = −D u_x(1)`` is the outflow condition of the PDEBench diffusion–sorption problem). The
semi-discrete system is ``R(u_i) du_i/dt = −(q_{i+1/2} − q_{i−1/2})/h``. Because ``R = dm/du`` for the
stored quantity ``m(u)`` (``u + (sorbed mass)``), ``d/dt Σ h m(u_i) = q_in − q_out`` holds exactly for the
semi-discrete system: the scheme conserves mass, and the two boundary fluxes are integrated alongside
``u`` so that the balance can be checked to the integrator's tolerance.

Time: :class:`scipy.integrate.BDF` (variable order 1–5, error control, Newton with a sparse direct
solve) on ``du/dt = (A u + b)/R(u)`` with the exact tridiagonal Jacobian
``J = diag(1/R) A − diag(R'(u) (A u + b)/R²)`` handed over as a sparse matrix. Why this rather than a
hand-written BDF2 in conservative form: the problem is stiff (``D/(R h²)`` is ~160 per time unit
at 1024 cells against ``T = 500``) and its initial layer (``u`` jumps from 0 to 1 at the inflow) wants
small steps first and large ones later, which an error-controlled variable-order method does well
and a fixed-order scheme would need its own controller for; SciPy's implementation is well tested,
and with the exact sparse Jacobian each step costs a tridiagonal LU. The price is that mass is
conserved to the integration tolerance rather than to round-off (measured in the tests).

Instances are solved one after the other on the CPU (SciPy works on NumPy arrays); each solve sees
only its own data, so results do not depend on the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.integrate import BDF

from ..errors import SolverFailure

__all__ = ["RobinBoundary", "MOLSolution", "boundary_weights", "flux_divergence", "solve_diffusion_mol"]


@dataclass(frozen=True)
class RobinBoundary:
    """The condition ``u + kappa ∂n u = value`` at one end (``∂n`` the outward normal derivative).

    ``kappa = 0`` gives the Dirichlet condition ``u = value``.
    """

    value: float
    kappa: float = 0.0


def boundary_weights(h: float, diffusivity: float, bc: RobinBoundary) -> float:
    """Conductance ``c`` of the half cell at a boundary: the inflow flux is ``c (g − u_edge)``.

    From ``u_b = (g + s u_edge)/(1 + s)``, ``s = 2κ/h``: ``D (u_b − u_edge)/(h/2) = 2D/(h + 2κ) (g − u_edge)``.
    """
    return 2.0 * diffusivity / (h + 2.0 * bc.kappa)


def flux_divergence(u, h: float, diffusivity, left: RobinBoundary, right: RobinBoundary):
    """``∂x(D ∂x u)`` of the finite-volume scheme, ``−(q_{i+1/2} − q_{i−1/2})/h``, for cell values ``u``.

    Works on NumPy arrays and torch tensors (differentiable), any leading batch axes.

    Args:
        u: ``(..., n)`` cell values.
        h: cell width.
        diffusivity: ``D``, a number or an array broadcastable to ``(..., 1)``.
        left, right: the boundary conditions.

    Returns:
        ``(..., n)``, same array type as ``u``.
    """
    is_torch = type(u).__module__.startswith("torch")
    if is_torch:
        import torch

        cat = lambda parts: torch.cat(parts, dim=-1)  # noqa: E731
    else:
        u = np.asarray(u, dtype=np.float64)
        cat = lambda parts: np.concatenate(parts, axis=-1)  # noqa: E731
    d = diffusivity
    inner = d * (u[..., 1:] - u[..., :-1]) / h                      # D u_x on interior faces
    c_l, c_r = boundary_weights(h, 1.0, left), boundary_weights(h, 1.0, right)
    face_l = d * c_l * (u[..., :1] - left.value)                    # D u_x on the left face
    face_r = d * c_r * (right.value - u[..., -1:])                  # D u_x on the right face
    grad = cat([face_l, inner, face_r])                             # (..., n + 1)
    return (grad[..., 1:] - grad[..., :-1]) / h


@dataclass
class MOLSolution:
    """Result of :func:`solve_diffusion_mol` for one instance.

    Attributes:
        u: ``(T, n)`` cell values at the output times.
        times: ``(T,)``.
        inflow, outflow: ``(T,)`` time integrals from 0 of the flux entering at the left end and
            leaving at the right end.
        steps, nfev, njev, nlu: BDF steps, right-hand-side and Jacobian evaluations, LU factorisations.
    """

    u: np.ndarray
    times: np.ndarray
    inflow: np.ndarray
    outflow: np.ndarray
    steps: int
    nfev: int
    njev: int
    nlu: int


def solve_diffusion_mol(
    u0: np.ndarray,
    times: Sequence[float],
    length: float,
    diffusivity: float,
    capacity: Callable[[np.ndarray], np.ndarray],
    capacity_derivative: Callable[[np.ndarray], np.ndarray],
    left: RobinBoundary,
    right: RobinBoundary,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    first_step: float | None = None,
) -> MOLSolution:
    """Solve ``R(u) u_t = ∂x(D ∂x u)`` on ``[0, length]`` with Robin/Dirichlet ends by BDF.

    Args:
        u0: ``(n,)`` initial cell values.
        times: ``(T,)`` increasing output times, ``times[0]`` the initial time.
        length: domain length (``n`` cells of width ``length/n``).
        diffusivity: ``D > 0``.
        capacity: ``R(u)``, elementwise, positive.
        capacity_derivative: ``R'(u)``, elementwise.
        left, right: boundary conditions ``u + κ ∂n u = g``.
        rtol, atol: BDF tolerances (on ``u`` and the flux integrals).
        first_step: initial step (default: SciPy's choice).

    Returns:
        :class:`MOLSolution`.

    Raises:
        RuntimeError: the integrator failed or produced non-finite values.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    n = u0.size
    if u0.ndim != 1 or n < 2:
        raise ValueError(f"u0 must be a 1D array of at least 2 cells, got shape {u0.shape}")
    if t.ndim != 1 or t.size < 1 or np.any(np.diff(t) <= 0):
        raise ValueError("times must be a strictly increasing 1D sequence")
    if not diffusivity > 0:
        raise ValueError(f"diffusivity must be positive, got {diffusivity!r}")
    h = length / n
    c_l = boundary_weights(h, diffusivity, left)
    c_r = boundary_weights(h, diffusivity, right)
    main = np.full(n, -2.0 * diffusivity / h**2)
    main[0] = -(diffusivity / h + c_l) / h
    main[-1] = -(diffusivity / h + c_r) / h
    off = np.full(n - 1, diffusivity / h**2)
    A = sp.diags([off, main, off], [-1, 0, 1], format="csr")
    b = np.zeros(n)
    b[0] = c_l * left.value / h
    b[-1] = c_r * right.value / h
    # Extended state y = (u, Q_in, Q_out): Q' are the boundary fluxes, linear in the edge values.
    flux_rows = sp.csr_matrix(([-c_l, c_r], ([0, 1], [0, n - 1])), shape=(2, n))
    flux_rhs = np.array([c_l * left.value, -c_r * right.value])

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        u = y[:n]
        return np.concatenate([(A @ u + b) / capacity(u), flux_rows @ u + flux_rhs])

    def jac(_t: float, y: np.ndarray) -> sp.csc_matrix:
        u = y[:n]
        r = capacity(u)
        top = sp.diags(1.0 / r) @ A - sp.diags(capacity_derivative(u) * (A @ u + b) / r**2)
        # The flux integrals Q enter no right-hand side: their two columns are zero.
        return sp.hstack([sp.vstack([top, flux_rows]), sp.csr_matrix((n + 2, 2))], format="csc")

    y0 = np.concatenate([u0, [0.0, 0.0]])
    out = np.empty((t.size, n + 2))
    out[0] = y0
    if t.size == 1:
        return MOLSolution(out[:, :n], t, out[:, n], out[:, n + 1], 0, 0, 0, 0)
    kwargs = {} if first_step is None else {"first_step": first_step}
    solver = BDF(rhs, t[0], y0, t[-1], rtol=rtol, atol=atol, jac=jac, **kwargs)
    k, steps = 1, 0
    while k < t.size:
        message = solver.step()
        if solver.status == "failed":
            raise SolverFailure(f"BDF failed at t = {solver.t:g}: {message}")
        steps += 1
        if not np.all(np.isfinite(solver.y)):
            raise SolverFailure(f"BDF produced non-finite values at t = {solver.t:g}")
        if k < t.size and t[k] <= solver.t:
            dense = solver.dense_output()
            while k < t.size and t[k] <= solver.t:
                out[k] = solver.y if t[k] == solver.t else dense(t[k])
                k += 1
    return MOLSolution(out[:, :n], t, out[:, n], out[:, n + 1], steps, solver.nfev, solver.njev, solver.nlu)
