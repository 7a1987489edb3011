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


def _laplacian_eigenvalues(grid: CartesianGrid, periodic: bool) -> np.ndarray:
    """Eigenvalues of −Δ for each retained mode, shape ``grid.shape``."""
    lam = np.zeros(grid.shape)
    for i, (n, L) in enumerate(zip(grid.shape, grid.lengths)):
        k = np.fft.fftfreq(n, d=1.0 / n) if periodic else np.arange(n)
        omega = (2.0 if periodic else 1.0) * np.pi * k / L
        shape = [1] * grid.dim
        shape[i] = n
        lam = lam + (omega**2).reshape(shape)
    return lam


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
        ``(*grid.shape)`` float64 array.
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
        z = (rng.standard_normal(grid.shape) + 1j * rng.standard_normal(grid.shape)) / np.sqrt(2.0)
        coeff = sqrt_eig * z / np.sqrt(volume)
        return np.sqrt(2.0) * np.real(np.fft.ifftn(coeff)) * n_points
    xi = rng.standard_normal(grid.shape)
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
