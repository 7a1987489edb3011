"""The cell-centred finite-volume solver: structure of the matrix, exactness, convergence, residual."""
import numpy as np
import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.grids import CartesianGrid
from pde_lab.solvers import finite_volume as fv


def box(shape, bounds=None):
    bounds = bounds or tuple((0.0, 1.0) for _ in shape)
    return CartesianGrid(tuple(bounds), tuple(shape), tuple(False for _ in shape))


def observed_orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


def test_matrix_is_symmetric_positive_definite_and_conservative():
    grid = box((7, 5), ((0.0, 2.0), (-1.0, 0.5)))  # unequal spacings in x and y
    rng = np.random.default_rng(0)
    a = np.exp(2.0 * rng.standard_normal(grid.shape))
    A, b = fv.assemble(a, grid, f=0.0, g=0.0)
    assert A.shape == (35, 35) and b.shape == (35,)
    assert abs(A - A.T).max() == 0.0
    assert np.linalg.eigvalsh(A.toarray()).min() > 0.0
    # Fluxes cancel between neighbours: constant u only feels the walls.
    row_sums = (A @ np.ones(35)).reshape(grid.shape)
    np.testing.assert_allclose(row_sums[1:-1, 1:-1], 0.0, atol=1e-12 * a.max() * 35)
    assert np.all(row_sums[0, :] > 0) and np.all(row_sums[:, -1] > 0)


@pytest.mark.parametrize("dim", [1, 2])
def test_harmonic_averaging_is_exact_for_layered_medium(dim):
    """Two layers, interface on a cell face: the exact u is piecewise linear and the two-point flux
    with harmonic averages reproduces it to round-off; arithmetic averages do not."""
    n, x_interface, a1, a2 = 16, 0.375, 1.0, 10.0
    grid = box((n,) if dim == 1 else (n, 5))
    x = grid.axis(0)
    q = 1.0 / (x_interface / a1 + (1.0 - x_interface) / a2)  # the constant flux when u(0)=0, u(1)=1

    def exact(xs):
        return np.where(xs < x_interface, q * xs / a1, q * x_interface / a1 + q * (xs - x_interface) / a2)

    a_1d = np.where(x < x_interface, a1, a2)
    a = a_1d if dim == 1 else np.repeat(a_1d[:, None], 5, axis=1)
    u_exact = exact(x) if dim == 1 else np.repeat(exact(x)[:, None], 5, axis=1)
    g = fv.dirichlet_values(grid, lambda *xs: exact(xs[0]))
    u = fv.solve(a, grid, f=0.0, g=g)
    np.testing.assert_allclose(u, u_exact, rtol=0, atol=1e-13)
    u_arith = fv.solve(a, grid, f=0.0, g=g, averaging="arithmetic")
    assert abs(u_arith - u_exact).max() > 1e-2


def test_manufactured_solution_with_boundary_data_converges_at_second_order():
    """u = cos(x) e^y (harmonic), a = 1 + x + 2y² on [0, 2] × [0, 1]: f = sin(x)e^y − 4y cos(x)e^y."""
    errors = []
    for m in (16, 32, 64, 128):
        grid = box((2 * m, m), ((0.0, 2.0), (0.0, 1.0)))
        x, y = grid.mesh()
        a = 1.0 + x + 2.0 * y**2
        f = np.sin(x) * np.exp(y) - 4.0 * y * np.cos(x) * np.exp(y)
        g = fv.dirichlet_values(grid, lambda xs, ys: np.cos(xs) * np.exp(ys))
        u = fv.solve(a, grid, f=f, g=g)
        errors.append(abs(u - np.cos(x) * np.exp(y)).max())
    assert errors[-1] < 1e-4
    assert observed_orders(errors).min() >= 1.9, errors


def poisson_square_series(x, y, terms=10001):
    """u with −Δu = 1 on the unit square, u = 0 on its boundary: x(1−x)/2 minus a harmonic series.

    Args: ``x`` ``(nx,)``, ``y`` ``(ny,)``. Returns ``(nx, ny)``.
    """
    m = np.arange(1, 2 * terms, 2)[:, None]
    sines = np.sin(np.pi * m * x[None, :]) * 4.0 / (np.pi**3 * m**3)
    d = np.abs(y[None, :] - 0.5)
    # cosh(mπ(y − 1/2)) / cosh(mπ/2) written without overflow.
    ratio = np.exp(np.pi * m * (d - 0.5)) * (1 + np.exp(-2 * np.pi * m * d)) / (1 + np.exp(-np.pi * m))
    return (x * (1 - x) / 2)[:, None] - sines.T @ ratio


def test_constant_coefficient_matches_poisson_series():
    centre = poisson_square_series(np.array([0.5]), np.array([0.5]))[0, 0]
    assert centre == pytest.approx(0.0736713532814, abs=1e-11)
    errors = []
    for n in (16, 32, 64, 128):
        grid = box((n, n))
        u = fv.solve(np.full(grid.shape, 2.0), grid, f=1.0)
        errors.append(abs(2.0 * u - poisson_square_series(grid.axis(0), grid.axis(1))).max())
    assert errors[-1] < 1e-5
    assert observed_orders(errors).min() >= 1.9, errors


def test_residual_matches_matrix_and_vanishes_on_the_solution():
    grid = box((9, 6), ((0.0, 1.5), (0.0, 1.0)))
    rng = np.random.default_rng(1)
    a = np.exp(rng.standard_normal((3,) + grid.shape))
    u = rng.standard_normal((3,) + grid.shape)
    f = rng.standard_normal(grid.shape)
    g = {k: rng.standard_normal(v.shape) for k, v in fv.dirichlet_values(grid, lambda x, y: x + y).items()}
    r = fv.residual(a, u, grid, f=f, g=g)
    assert r.shape == (3,) + grid.shape
    for i in range(3):
        A, b = fv.assemble(a[i], grid, f=f, g=g)
        np.testing.assert_allclose(r[i].ravel(), A @ u[i].ravel() - b, rtol=1e-12, atol=1e-10)
        u_solved = fv.solve(a[i], grid, f=f, g=g)
        assert abs(fv.residual(a[i], u_solved, grid, f=f, g=g)).max() < 1e-10 * abs(b).max()


def test_residual_on_torch_is_differentiable_and_matches_numpy():
    grid = box((8, 8))
    rng = np.random.default_rng(2)
    a = np.exp(rng.standard_normal((2,) + grid.shape))
    u = rng.standard_normal((2,) + grid.shape)
    u_t = torch.tensor(u, requires_grad=True)
    r_t = fv.residual(torch.tensor(a), u_t, grid, f=1.0, g=0.5)
    r = fv.residual(a, u, grid, f=1.0, g=0.5)
    np.testing.assert_allclose(r_t.detach().numpy(), r, rtol=1e-13, atol=1e-11)
    (0.5 * (r_t**2).sum()).backward()
    for i in range(2):
        A, _ = fv.assemble(a[i], grid, f=1.0, g=0.5)
        expected = A.T @ r_t[i].detach().numpy().ravel()  # gradient of ½|Au − b|² is Aᵀ(Au − b)
        np.testing.assert_allclose(u_t.grad[i].numpy().ravel(), expected, rtol=1e-10, atol=1e-8)


def test_solve_batch_is_per_sample_and_bitwise_independent_of_the_batch():
    grid = box((12, 10))
    rng = np.random.default_rng(3)
    a = np.exp(rng.standard_normal((3,) + grid.shape))
    batch = fv.solve_batch(a, grid, f=1.0)
    assert batch.shape == (3,) + grid.shape and batch.dtype == np.float64
    alone = fv.solve_batch(a[1:2], grid, f=1.0)
    assert batch[1].tobytes() == alone[0].tobytes()
    assert batch[2].tobytes() == fv.solve(a[2], grid, f=1.0).tobytes()
    f_per_sample = np.stack([np.full(grid.shape, c) for c in (1.0, 2.0, 3.0)])
    np.testing.assert_allclose(fv.solve_batch(a, grid, f=f_per_sample)[2], 3.0 * batch[2], rtol=1e-12)


def test_dirichlet_values_shapes():
    g = fv.dirichlet_values(box((4, 3)), lambda x, y: x + 10 * y)
    assert {k: v.shape for k, v in g.items()} == {"x_lo": (3,), "x_hi": (3,), "y_lo": (4,), "y_hi": (4,)}
    np.testing.assert_allclose(g["x_hi"], 1.0 + 10 * box((4, 3)).axis(1))
    np.testing.assert_allclose(g["y_lo"], box((4, 3)).axis(0))


def test_bad_input_is_rejected_with_a_useful_message():
    grid = box((4, 4))
    a = np.ones(grid.shape)
    with pytest.raises(UserError, match="positive"):
        fv.assemble(np.where(np.eye(4) > 0, -1.0, 1.0), grid)
    with pytest.raises(UserError, match="finite"):
        fv.assemble(np.full(grid.shape, np.nan), grid)
    with pytest.raises(ValueError, match="shape"):
        fv.assemble(np.ones((4, 5)), grid)
    with pytest.raises(ValueError, match="bounded"):
        fv.assemble(a, CartesianGrid(((0, 1), (0, 1)), (4, 4), (True, False)))
    with pytest.raises(ValueError, match="z_lo"):
        fv.assemble(a, grid, g={"z_lo": 1.0})
    with pytest.raises(ValueError, match="x_lo"):
        fv.assemble(a, grid, g={"x_lo": np.zeros(5)})
    with pytest.raises(UserError, match="harmonic"):
        fv.assemble(a, grid, averaging="geometric")
