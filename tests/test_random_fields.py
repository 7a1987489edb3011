"""Gaussian random fields: the covariance they promise, and the same field at every resolution."""
import numpy as np
import pytest
import scipy.fft

from pde_lab.grids import CartesianGrid
from pde_lab.random_fields import gaussian_random_field, nested_normals


def _periodic(n: int, dim: int = 1) -> CartesianGrid:
    return CartesianGrid(bounds=((0.0, 1.0),) * dim, shape=(n,) * dim, periodic=(True,) * dim)


def _bounded(n: int) -> CartesianGrid:
    return CartesianGrid(bounds=((0.0, 1.0), (0.0, 1.0)), shape=(n, n), periodic=(False, False))


def test_a_mode_gets_the_same_numbers_whatever_the_grid():
    coarse = nested_normals(np.random.default_rng(0), [np.fft.fftfreq(8, 1 / 8).astype(int)] * 2, 2)
    fine = nested_normals(np.random.default_rng(0), [np.fft.fftfreq(20, 1 / 20).astype(int)] * 2, 2)
    assert coarse.shape == (8, 8, 2) and fine.shape == (20, 20, 2)
    k8, k20 = np.fft.fftfreq(8, 1 / 8).astype(int), list(np.fft.fftfreq(20, 1 / 20).astype(int))
    at = [k20.index(k) for k in k8]
    np.testing.assert_array_equal(fine[np.ix_(at, at)], coarse)


@pytest.mark.parametrize("dim", [1, 2])
def test_periodic_field_on_a_finer_grid_keeps_the_coarse_modes(dim):
    """Same seed at 16 and 48 points per axis: every Fourier coefficient the coarse grid resolves
    without aliasing (|k| < 8) is the same; the fine grid only adds modes."""
    u = {n: gaussian_random_field(np.random.default_rng(4), _periodic(n, dim), alpha=2.5, tau=7.0) for n in (16, 48)}
    c = {n: np.fft.fftn(v) / v.size for n, v in u.items()}
    k16, k48 = np.fft.fftfreq(16, 1 / 16).astype(int), list(np.fft.fftfreq(48, 1 / 48).astype(int))
    low = [i for i, k in enumerate(k16) if abs(k) < 8]
    at = [k48.index(k16[i]) for i in low]
    np.testing.assert_allclose(c[48][np.ix_(*[at] * dim)], c[16][np.ix_(*[low] * dim)], rtol=0, atol=1e-14)


def test_cosine_field_on_a_finer_grid_keeps_the_coarse_modes():
    """Neumann (cosine) fields, as Darcy's coefficient: the first 12 × 12 cosine coefficients of the
    same seed at 12² and 30² cells agree (the cell centres differ, the field does not)."""
    a = {n: gaussian_random_field(np.random.default_rng(5), _bounded(n), alpha=2.0, tau=3.0) for n in (12, 30)}
    c = {n: scipy.fft.dctn(v, type=2) / (2 * n) ** 2 for n, v in a.items()}
    np.testing.assert_allclose(c[30][:12, :12], c[12], rtol=0, atol=1e-14)


def test_periodic_variance_matches_the_covariance():
    """E u(x)² = Σ_{k≠0} σ² (4π²k² + τ²)^(−α) on the unit interval, estimated from 4000 draws
    (pooled over the 32 points; a draw-order or pairing mistake changes it by tens of percent)."""
    grid, alpha, tau, sigma = _periodic(32), 2.0, 3.0, 1.5
    rng = np.random.default_rng(1)
    samples = np.stack([gaussian_random_field(rng, grid, alpha=alpha, tau=tau, sigma=sigma) for _ in range(4000)])
    k = np.fft.fftfreq(32, 1 / 32)[1:]
    expected = np.sum(sigma**2 * ((2 * np.pi * k) ** 2 + tau**2) ** (-alpha))
    assert samples.mean() == pytest.approx(0.0, abs=0.05 * np.sqrt(expected))
    assert np.mean(samples**2) == pytest.approx(expected, rel=0.05)
