"""Gaussian random fields with Matérn-like covariance ``sigma² (−Δ + tau² I)^(−alpha)``.

These are the input distributions of the FNO benchmarks (Li et al. 2021): Burgers initial conditions
``N(0, 625(−Δ + 25 I)^(−2))`` on a periodic interval and the Darcy coefficient field, a thresholded
``N(0, (−Δ + 9 I)^(−2))`` with Neumann conditions on the unit square. A field is the Karhunen–Loève sum
``u = Σ_k sqrt(λ_k) ξ_k φ_k`` over the orthonormal eigenfunctions ``φ_k`` of the Laplacian with the
grid's boundary conditions: Fourier modes on periodic axes, cosines (Neumann) on bounded axes, summed
by one inverse FFT or DCT. Larger ``tau`` flattens the spectrum up to ``|k| ≈ tau`` and so gives shorter
correlation lengths; larger ``alpha`` gives smoother fields.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from .grids import CartesianGrid


def _mode_indices(grid: CartesianGrid, periodic: bool) -> list[np.ndarray]:
    """Integer mode index per axis, in the order of the transform's coefficients: Fourier
    (``0, 1, …, −1``, as ``fftfreq``) on periodic axes, cosine (``0 … n−1``) on bounded ones."""
    return [np.round(np.fft.fftfreq(n, d=1.0 / n)).astype(np.int64) if periodic else np.arange(n)
            for n in grid.shape]


def _laplacian_eigenvalues(grid: CartesianGrid, periodic: bool) -> np.ndarray:
    """Eigenvalues of −Δ for each retained mode, shape ``grid.shape``."""
    lam = np.zeros(grid.shape)
    for i, (k, n, L) in enumerate(zip(_mode_indices(grid, periodic), grid.shape, grid.lengths)):
        omega = (2.0 if periodic else 1.0) * np.pi * k / L
        shape = [1] * grid.dim
        shape[i] = n
        lam = lam + (omega**2).reshape(shape)
    return lam


def nested_normals(rng: np.random.Generator, modes: list[np.ndarray], n_per_mode: int = 1) -> np.ndarray:
    """Standard normals for a grid of modes, the same for a mode whatever the grid's size.

    The modes of all grids form one cube of integer indices; its numbers are drawn shell by shell
    (shell ``m``: the modes with ``max_i |k_i| = m``, lexicographic in ``k`` within a shell), so the
    ``j``-th draw always lands on the same mode. A finer grid from the same ``rng`` state therefore
    keeps every coarse mode's number and adds new ones for its extra modes: the same field, resolved
    further.

    Args:
        rng: the only source of randomness.
        modes: integer mode indices along each axis (``fftfreq(n) * n``, or ``0 … n-1`` for cosines).
        n_per_mode: numbers per mode (2 for the real and imaginary parts of a complex one).

    Returns:
        ``(*[len(k) for k in modes], n_per_mode)`` float64 array.
    """
    top = max(int(np.abs(k).max()) for k in modes)
    lo = -top if any(int(k.min()) < 0 for k in modes) else 0
    side = np.arange(lo, top + 1)
    dim = len(modes)
    shell = np.zeros((side.size,) * dim, dtype=np.int64)
    for i in range(dim):
        shape = [1] * dim
        shape[i] = side.size
        shell = np.maximum(shell, np.abs(side).reshape(shape))
    # a stable sort of the C-ordered cube keeps the lexicographic order of k within each shell
    order = np.argsort(shell.ravel(), kind="stable")
    cube = np.empty((shell.size, n_per_mode))
    cube[order] = rng.standard_normal((shell.size, n_per_mode))
    cube = cube.reshape(*shell.shape, n_per_mode)
    return cube[np.ix_(*[np.asarray(k, dtype=np.int64) - lo for k in modes])]


def gaussian_random_field(
    rng: np.random.Generator,
    grid: CartesianGrid,
    alpha: float = 2.0,
    tau: float = 3.0,
    sigma: float = 1.0,
    zero_mean: bool = True,
) -> np.ndarray:
    """Draw one Gaussian random field on ``grid``.

    Args:
        rng: the only source of randomness.
        grid: all axes periodic (Fourier basis) or all bounded (cosine basis, zero normal derivative).
        alpha, tau, sigma: covariance ``sigma² (−Δ + tau² I)^(−alpha)``.
        zero_mean: drop the constant mode, as the FNO benchmark generators do.

    Returns:
        ``(*grid.shape)`` float64 array. The mode coefficients come from :func:`nested_normals`, so
        the same ``rng`` state on a finer grid gives the same field with its finer modes added:
        datasets generated with one seed at several resolutions hold the same initial states.
    """
    if len(set(grid.periodic)) != 1:
        raise ValueError("gaussian_random_field needs all axes periodic or all bounded")
    periodic = grid.periodic[0]
    volume = float(np.prod(grid.lengths))
    lam = _laplacian_eigenvalues(grid, periodic)
    sqrt_eig = sigma * (lam + tau**2) ** (-alpha / 2.0)
    if zero_mean:
        sqrt_eig.flat[0] = 0.0
    n_points = int(np.prod(grid.shape))
    if periodic:
        # sqrt(2) Re(Σ c_k Z_k e^{ik·x}) with standard complex Z_k has covariance Σ c_k² cos(k·(x−y)).
        pairs = nested_normals(rng, _mode_indices(grid, periodic), 2)
        z = (pairs[..., 0] + 1j * pairs[..., 1]) / np.sqrt(2.0)
        coeff = sqrt_eig * z / np.sqrt(volume)
        return np.sqrt(2.0) * np.real(np.fft.ifftn(coeff)) * n_points
    xi = nested_normals(rng, _mode_indices(grid, periodic))[..., 0]
    coeff = sqrt_eig * xi
    # Orthonormal cosines: sqrt(2/L) for k > 0, sqrt(1/L) for k = 0, per axis. DCT-III at the cell
    # centres computes x_0 + 2 Σ_{k≥1} x_k cos(πk(2j+1)/2n), so mode k ≥ 1 enters with half weight.
    for i, (n, L) in enumerate(zip(grid.shape, grid.lengths)):
        w = np.full(n, np.sqrt(2.0 / L) / 2.0)
        w[0] = np.sqrt(1.0 / L)
        shape = [1] * grid.dim
        shape[i] = n
        coeff = coeff * w.reshape(shape)
    return scipy.fft.dctn(coeff, type=3)
