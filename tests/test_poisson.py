"""The Poisson dataset family: its finite-volume solve against a manufactured solution in 2D and 3D,
its residual, its levels and its input checks (the PINN side is tested in test_pinn.py)."""
import numpy as np
import pytest

from pde_lab.errors import UserError
from pde_lab.pdes import get_pde
from pde_lab.pdes.base import Instance


@pytest.mark.parametrize("dim, sizes", [(2, (16, 32, 64)), (3, (16, 32))])
def test_solve_converges_at_second_order_to_a_manufactured_solution(dim, sizes):
    """``u = Π sin(m_i π x_i)`` with ``f = π² Σ m_i² u``, ``u = 0`` on the boundary: max-norm error of the
    cell-centre values falls at order 2; the discrete residual of the output is round-off."""
    pde = get_pde("poisson", dim=dim)
    modes = (1, 2, 1)[:dim]
    errors = []
    for n in sizes:
        grid = pde.grid(n)
        x = np.meshgrid(*(grid.axis(k) for k in range(dim)), indexing="ij")
        u = np.prod([np.sin(m * np.pi * xi) for m, xi in zip(modes, x)], axis=0)
        f = np.pi**2 * sum(m**2 for m in modes) * u
        res = pde.solve([Instance(pde.default_params(), {"f": f})], grid)
        assert res.fields["u"].shape == (1,) + (n,) * dim and res.times is None
        errors.append(np.abs(res.fields["u"][0] - u).max())
        assert np.abs(pde.residual(res.fields, {}, grid)).max() < 1e-9 * np.abs(f).max()
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert orders.min() > 1.9, (errors, orders)


def test_levels_draw_within_their_ranges_and_get_rougher():
    pde = get_pde("poisson")
    grid = pde.grid(32)
    rms = {}
    for name, level in pde.levels.items():
        insts = [pde.sample(name, np.random.default_rng(s), grid) for s in range(4)]
        for inst in insts:
            for key, (lo, hi) in level.ranges.items():
                assert lo <= inst.params[key] <= hi
            assert inst.inputs["f"].shape == (32, 32) and np.isfinite(inst.inputs["f"]).all()
        # roughness: rms of the discrete Laplacian of f relative to rms of f
        lap = [np.diff(i.inputs["f"], 2, axis=0).std() / i.inputs["f"].std() for i in insts]
        rms[name] = np.mean(lap)
    assert rms["easy"] < rms["medium"] < rms["hard"], rms


def test_bad_input():
    with pytest.raises(UserError, match="dim must be a positive integer"):
        get_pde("poisson", dim=0)
    with pytest.raises(UserError, match="datasets need dim <= 3"):
        get_pde("poisson", dim=4).grid(8)
    pde = get_pde("poisson")
    with pytest.raises(UserError, match=r"needs a bounded 2D grid"):
        pde.solve([Instance({}, {"f": np.zeros((8, 8, 8))})], get_pde("poisson", dim=3).grid(8))
