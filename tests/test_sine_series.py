"""The sine-series Dirichlet solver: its two transforms against direct evaluation and quadrature, and
its solutions against closed forms on both sides of the resonances."""
import numpy as np
import pytest
from scipy.integrate import quad

from pde_lab.solvers.sine_series import cosine_coefficients, cosine_to_sine, solve_dirichlet


def _centres(n, length):
    return (np.arange(n) + 0.5) * length / n


@pytest.mark.parametrize("shape, lengths", [((12,), (1.0,)), ((10, 7), (2.0, 0.5)), ((6, 5, 4), (1.0, 3.0, 1.5))])
def test_cosine_coefficients_invert_the_cosine_series(shape, lengths):
    a = np.random.default_rng(0).standard_normal(shape)
    f = a.copy()
    for axis, (n, length) in enumerate(zip(shape, lengths)):
        basis = np.cos(np.pi * np.outer(_centres(n, length), np.arange(n)) / length)  # (points, modes)
        f = np.moveaxis(np.tensordot(basis, f, axes=(1, axis)), 0, axis)
    np.testing.assert_allclose(cosine_coefficients(f), a, rtol=1e-12, atol=1e-12)


def test_cosine_to_sine_matches_quadrature():
    s = cosine_to_sine(6, 9)
    for p in range(1, 10):
        for m in range(6):
            exact = 2 * quad(lambda x: np.cos(m * np.pi * x) * np.sin(p * np.pi * x), 0, 1, limit=200)[0]
            assert s[p - 1, m] == pytest.approx(exact, abs=1e-12), (p, m)


@pytest.mark.parametrize("shift", [-40.0, -2.5, 7.0])
def test_one_dimensional_solution_matches_the_closed_form(shift):
    """``−u'' + c u = cos(3πx/L)`` on ``[0, L]``, ``u(0) = u(L) = 0``: a particular cosine plus the
    homogeneous solutions fitted to the walls, for ``c`` below (oscillatory) and above zero."""
    length, n = 1.7, 40
    x = _centres(n, length)
    q = 3 * np.pi / length
    if shift < 0:
        k = np.sqrt(-shift)
        even, odd = np.cos(k * x), np.sin(k * x)
        even_l, odd_l = np.cos(k * length), np.sin(k * length)
    else:
        b = np.sqrt(shift)
        even, odd = np.cosh(b * x), np.sinh(b * x)
        even_l, odd_l = np.cosh(b * length), np.sinh(b * length)
    c_part = 1.0 / (q**2 + shift)
    a = -c_part  # u(0) = 0
    b_coef = -(c_part * np.cos(q * length) + a * even_l) / odd_l  # u(L) = 0
    exact = c_part * np.cos(q * x) + a * even + b_coef * odd
    u, tail = solve_dirichlet(np.cos(q * x), (length,), shift, modes=4096)
    err = np.abs(u - exact).max() / np.abs(exact).max()
    assert err < 1e-8, err
    assert tail < 1e-7


def test_truncation_error_falls_like_modes_cubed_and_is_estimated():
    f = np.ones((16, 16))
    reference, _ = solve_dirichlet(f, (1.0, 1.0), -150.0, modes=4096)
    errors, estimates = [], []
    for modes in (128, 256, 512):
        u, tail = solve_dirichlet(f, (1.0, 1.0), -150.0, modes=modes)
        errors.append(np.linalg.norm(u - reference) / np.linalg.norm(reference))
        estimates.append(tail)
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert ratios.min() > 6.5, (errors, ratios)
    np.testing.assert_allclose(estimates, errors, rtol=0.3)


def test_resonance_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"mode \((1, 2|2, 1)\)"):
        solve_dirichlet(np.ones((8, 8)), (1.0, 1.0), -5 * np.pi**2)
    with pytest.raises(ValueError, match="at least twice"):
        solve_dirichlet(np.ones((8, 8)), (1.0, 1.0), -1.0, modes=14)
    with pytest.raises(ValueError, match="even"):
        solve_dirichlet(np.ones((8, 8)), (1.0, 1.0), -1.0, modes=33)
    with pytest.raises(ValueError, match="lengths"):
        solve_dirichlet(np.ones((8, 8)), (1.0,), -1.0)
