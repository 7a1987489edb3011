"""Helmholtz: the finite-volume solver's second order on a manufactured solution on both sides of
the first resonance, its residual, and the PINN residual of the literature's manufactured problem."""
import math

import numpy as np
import pytest
import torch

from pde_lab.pdes import get_pde
from pde_lab.pdes.base import Instance
from pde_lab.training.pinn import PINNConfig, build_problem, fit_pinn


@pytest.mark.parametrize("k", [3.0, 20.0])
def test_finite_volume_solution_converges_at_second_order(k):
    pde = get_pde("helmholtz")
    errors = []
    for n in (16, 32, 64):
        grid = pde.grid(n)
        X, Y = np.meshgrid(grid.axis(0), grid.axis(1), indexing="ij")
        u = np.sin(np.pi * X) * np.sin(2 * np.pi * Y)
        f = (5 * np.pi**2 - k**2) * u
        res = pde.solve([Instance(params={**pde.default_params(), "k": k}, inputs={"f": f})], grid)
        errors.append(np.abs(res.fields["u"][0] - u).max())
        assert np.abs(pde.residual(res.fields, {"k": k}, grid)).max() < 1e-9 * np.abs(f).max()
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert orders.min() > 1.9, orders


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
