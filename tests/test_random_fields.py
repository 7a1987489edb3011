"""Gaussian random fields: the covariance they promise."""
import numpy as np
import pytest

from pde_lab.grids import CartesianGrid
from pde_lab.random_fields import gaussian_random_field


def test_periodic_variance_matches_the_covariance():
    """E u(x)² = Σ_{k≠0} σ² (4π²k² + τ²)^(−α) on the unit interval, estimated from 4000 draws
    (pooled over the 32 points; a normalisation or pairing mistake changes it by tens of percent)."""
    grid, alpha, tau, sigma = CartesianGrid(bounds=((0.0, 1.0),), shape=(32,), periodic=(True,)), 2.0, 3.0, 1.5
    rng = np.random.default_rng(1)
    samples = np.stack([gaussian_random_field(rng, grid, alpha=alpha, tau=tau, sigma=sigma) for _ in range(4000)])
    k = np.fft.fftfreq(32, 1 / 32)[1:]
    expected = np.sum(sigma**2 * ((2 * np.pi * k) ** 2 + tau**2) ** (-alpha))
    assert samples.mean() == pytest.approx(0.0, abs=0.05 * np.sqrt(expected))
    assert np.mean(samples**2) == pytest.approx(expected, rel=0.05)
