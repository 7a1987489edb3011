"""Helmholtz: the sine-series ground truth against the analytic solution for a constant source and
against the finite-volume scheme's second-order limit, the residual, and the PINN residual of the
literature's manufactured problem."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from pde_lab.errors import UserError
from pde_lab.pdes import get_pde
from pde_lab.pdes.base import Instance
from pde_lab.solvers import finite_volume as fv
from pde_lab.training.pinn import PINNConfig, build_problem, fit_pinn


@pytest.fixture(scope="module")
def pde():
    return get_pde("helmholtz")


def _solve(pde, f, k, grid):
    return pde.solve([Instance(params={**pde.default_params(), "k": k}, inputs={"f": f})], grid)


def _constant_source_solution(k, x, terms=20001):
    """``−Δu − k²u = 1`` on the unit square, ``u = 0`` on the walls, at the points ``x × x``: the 1D
    solution ``w(x)`` plus its correction in ``y`` as a series over the odd sine modes of ``w``."""
    w = (np.cos(k * (x - 0.5)) / np.cos(k / 2) - 1) / k**2
    u = np.repeat(w[:, None], len(x), axis=1)
    for p in np.arange(1, terms + 1, 2, dtype=np.float64):
        coefficient = 4 / (p * np.pi * (p**2 * np.pi**2 - k**2))
        beta2 = p**2 * np.pi**2 - k**2
        if beta2 > 0:  # cosh(β(y − ½)) / cosh(β/2) without overflow
            b = math.sqrt(beta2)
            profile = (np.exp(b * (np.abs(x - 0.5) - 0.5)) + np.exp(-b * (np.abs(x - 0.5) + 0.5))) / (1 + math.exp(-b))
        else:
            g = math.sqrt(-beta2)
            profile = np.cos(g * (x - 0.5)) / math.cos(g / 2)
        u -= coefficient * np.sin(p * np.pi * x)[:, None] * profile[None, :]
    return u


@pytest.mark.parametrize("k", [3.0, 12.0, 30.0])
def test_constant_source_matches_the_analytic_solution(pde, k):
    """Exact up to the series' truncation, which the solver estimates: 1e-9 – 2e-8 (the finite-volume
    solver of pde_lab ≤ 0.2.1 was 31 % off at k = 30, n = 64)."""
    grid = pde.grid(48)
    res = _solve(pde, np.ones(grid.shape), k, grid)
    exact = _constant_source_solution(k, grid.axis(0))
    err = np.linalg.norm(res.fields["u"][0] - exact) / np.linalg.norm(exact)
    assert err < 5e-8, err
    assert 0.5 < res.per_sample["series_error"][0] / err < 2.0, (err, res.per_sample)


def _smooth_source(grid):
    x, y = np.meshgrid(grid.axis(0), grid.axis(1), indexing="ij")
    return 1 + np.cos(np.pi * x) * np.cos(2 * np.pi * y) + 0.5 * np.cos(3 * np.pi * x)


def _finite_volume_solution(f, k, grid):
    A, _ = fv.assemble(np.ones(grid.shape), grid, f=0.0, g=0.0)
    shifted = (A - k**2 * sp.identity(A.shape[0], format="csc")).tocsc()
    return spla.splu(shifted).solve(f.ravel()).reshape(grid.shape)


@pytest.mark.parametrize("k", [3.0, 20.0])
def test_finite_volumes_converge_to_the_sine_series_at_second_order(pde, k):
    """An independent discretisation (the cell-centred scheme, itself tested at second order) closes in
    on the ground truth at its own order, below and far above the first resonance."""
    errors = []
    for n in (32, 64, 128):
        grid = pde.grid(n)
        f = _smooth_source(grid)
        u = _solve(pde, f, k, grid).fields["u"][0]
        errors.append(np.abs(_finite_volume_solution(f, k, grid) - u).max() / np.abs(u).max())
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert orders.min() > 1.9, (errors, orders)


def test_every_level_is_solved_to_its_series_tolerance(pde):
    grid = pde.grid(64)
    for level in ("easy", "medium", "hard"):
        inst = pde.sample(level, np.random.default_rng([123, 0]), grid)
        res = pde.solve([inst], grid)
        assert res.per_sample["series_error"][0] < 1e-7, (level, res.per_sample)
        assert res.settings["sine_modes"] == 2048


def test_a_resonant_wave_number_is_refused(pde):
    grid = pde.grid(16)
    with pytest.raises(UserError, match=r"k = 7\.02.*singular"):
        _solve(pde, np.ones(grid.shape), math.pi * math.sqrt(5), grid)
    with pytest.raises(UserError, match="sine_modes"):
        get_pde("helmholtz", sine_modes=15)


def test_residual_converges_where_the_solution_is_smooth_and_detects_errors(pde):
    """The five-point residual is the stencil's truncation error: order 1.5 on a smooth solution (the
    wall cells' quadratic ghost errs by O(h)) and about 2 on the solver's output for a source that
    vanishes on the walls. A source that does not (every dataset draw) gives the solution corner
    singularities and an order-1 residual, still well below that of a 5 % error of ``u``."""
    k = 3.0
    manufactured, wall_free = [], []
    for n in (32, 64, 128):
        grid = pde.grid(n)
        x, y = np.meshgrid(grid.axis(0), grid.axis(1), indexing="ij")
        u = np.sin(np.pi * x) * np.sin(2 * np.pi * y)
        f = (5 * np.pi**2 - k**2) * u
        manufactured.append(np.linalg.norm(pde.residual({"u": u[None], "f": f[None]}, {"k": k}, grid))
                            / np.linalg.norm(f))
        f = (1 - np.cos(2 * np.pi * x)) * (1 - np.cos(2 * np.pi * y))
        fields = _solve(pde, f, k, grid).fields
        wall_free.append(np.linalg.norm(pde.residual(fields, {"k": k}, grid)) / np.linalg.norm(f))
    for sizes, bound in ((manufactured, 1.4), (wall_free, 1.6)):
        orders = np.log2(np.array(sizes[:-1]) / np.array(sizes[1:]))
        assert orders.min() > bound, (sizes, orders)
    grid = pde.grid(64)
    inst = pde.sample("easy", np.random.default_rng([123, 0]), grid)
    fields = pde.solve([inst], grid).fields
    good = np.linalg.norm(pde.residual(fields, inst.params, grid))
    bad = np.linalg.norm(pde.residual({**fields, "u": 1.05 * fields["u"]}, inst.params, grid))
    assert good < 0.01 * np.linalg.norm(fields["f"]) and bad > 3 * good, (good, bad)


def test_torch_residual_matches_numpy_and_has_finite_difference_gradients(pde):
    grid = pde.grid(6)
    rng = np.random.default_rng(1)
    fields = {"f": rng.standard_normal((2, 6, 6)), "u": rng.standard_normal((2, 6, 6))}
    k = np.array([2.0, 7.0])
    expected = pde.residual(fields, {"k": k}, grid)
    f_t = torch.tensor(fields["f"])
    u_t = torch.tensor(fields["u"], requires_grad=True)
    np.testing.assert_allclose(pde.residual({"f": f_t, "u": u_t}, {"k": k}, grid).detach().numpy(), expected,
                               rtol=1e-13, atol=1e-10)
    assert torch.autograd.gradcheck(lambda u: pde.residual({"f": f_t, "u": u}, {"k": k}, grid), (u_t,))


def test_pinn_residual_vanishes_on_the_manufactured_solution_and_not_elsewhere():
    pde = get_pde("helmholtz")
    x = torch.rand(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = {**pde.default_params(), "k": 2.0}
    exact = lambda p: pde.exact_solution(p, params)  # noqa: E731
    assert float(pde.pointwise_residual(exact, x, params).abs().max()) < 1e-10
    bumped = lambda p: exact(p) + (p[:, :1] * (1 - p[:, :1])) ** 2  # noqa: E731
    r = pde.pointwise_residual(bumped, x, params)
    xx = x[:, 0]
    expected = -(2 - 12 * xx + 12 * xx**2) - 4.0 * (xx * (1 - xx)) ** 2  # −Δb − k² b for b = (x(1−x))²
    torch.testing.assert_close(r, expected, rtol=1e-10, atol=1e-10)


def test_engd_pinn_on_helmholtz_reaches_a_small_error():
    """A cheaper version of the benchmark (a₂ = 2 instead of 4): 60 ENGD steps reach 4e-3."""
    cfg = PINNConfig(pde="helmholtz", params={"a2": 2.0}, optimizer="engd",
                     optimizer_args={"solver": "lstsq", "adaptive_damping": True, "line_search": "descending"},
                     steps=60, eval_every=20, n_interior=225, n_boundary=60, eval_points=900,
                     model_args={"widths": [20]}, progress=False)
    out = fit_pinn(build_problem(cfg), cfg)
    assert out["metrics"]["rel_l2"] < 1e-2, out["metrics"]
