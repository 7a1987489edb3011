"""Finite elements against analytic solutions: convergence orders, the disk, heat decay, factorisation reuse."""
import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from pde_lab.errors import UserError
from pde_lab.meshes import disk_mesh, lshape_mesh, rectangle_mesh
from pde_lab.pdes import get_pde
from pde_lab.solvers import fem

PI = math.pi


def u_ex(x, y):
    return np.sin(PI * x) * np.sin(PI * y)


def u_grad(x, y):
    return PI * np.cos(PI * x) * np.sin(PI * y), PI * np.sin(PI * x) * np.cos(PI * y)


def a_var(x, y):
    return 1.0 + 0.5 * np.sin(2 * PI * x) * np.cos(PI * y)


def f_var(x, y):
    """−∇·(a∇u) for the pair above, by hand."""
    ax, ay = PI * np.cos(2 * PI * x) * np.cos(PI * y), -0.5 * PI * np.sin(2 * PI * x) * np.sin(PI * y)
    ux, uy = u_grad(x, y)
    return -(ax * ux + ay * uy) + a_var(x, y) * 2 * PI**2 * u_ex(x, y)


def _orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


@pytest.mark.parametrize("degree, l2_order, h1_order", [(1, 2.0, 1.0), (2, 3.0, 2.0)])
def test_convergence_orders_variable_coefficient(degree, l2_order, h1_order):
    l2, h1 = [], []
    for n in (4, 8, 16):
        space = fem.FEMSpace(rectangle_mesh(1.0 / n), degree)
        u = fem.solve_poisson(space, a_var, f_var, u_ex)
        l2.append(fem.l2_error(space, u, u_ex))
        h1.append(fem.h1_error(space, u, u_grad))
    p0, p1 = _orders(l2), _orders(h1)
    assert abs(p0[-1] - l2_order) < 0.1, f"L2 orders {p0}"
    assert abs(p1[-1] - h1_order) < 0.1, f"H1 orders {p1}"


def test_lshape_nonzero_dirichlet_p2_order():
    """Smooth u with non-zero boundary values on the L-shape: P2 keeps its orders (no corner singularity)."""
    def ue(x, y):
        return np.exp(x) * np.sin(2 * y) + x * y

    def ug(x, y):
        return np.exp(x) * np.sin(2 * y) + y, 2 * np.exp(x) * np.cos(2 * y) + x

    def f(x, y):
        return 3 * np.exp(x) * np.sin(2 * y)  # −Δu

    l2, h1 = [], []
    for h in (0.5, 0.25, 0.125):
        space = fem.FEMSpace(lshape_mesh(h), 2)
        u = fem.solve_poisson(space, 1.0, f, ue)
        l2.append(fem.l2_error(space, u, ue))
        h1.append(fem.h1_error(space, u, ug))
    assert abs(_orders(l2)[-1] - 3) < 0.15 and abs(_orders(h1)[-1] - 2) < 0.15


def test_disk_constant_source():
    """−Δu = 1 on the unit disk, u = 0 on the circle: u = (1 − r²)/4; error O(h²) (polygonal boundary;
    measured ratios 4.1 and 3.8 per halving of h)."""
    errs = []
    for h in (0.2, 0.1, 0.05):
        space = fem.FEMSpace(disk_mesh(h), 1)
        u = fem.solve_poisson(space, 1.0, 1.0)
        r2 = (space.doflocs**2).sum(axis=1)
        errs.append(np.abs(u - (1 - r2) / 4).max())
    assert errs[-1] < 3e-4
    assert errs[1] < errs[0] / 3.5 and errs[2] < errs[1] / 3.5  # order > 1.8


def test_neumann_and_dirichlet_reproduce_a_quadratic():
    """P2 is exact for u = x² + y on the unit square: u on left/right, a ∂u/∂n = ±1 on top/bottom."""
    space = fem.FEMSpace(rectangle_mesh(0.25), 2)
    top = fem.solve_poisson(space, 1.0, -2.0, lambda x, y: x**2 + y, dirichlet_tags=["left", "right"],
                            neumann=(lambda x, y: np.where(y > 0.5, 1.0, -1.0), ["top", "bottom"]))
    assert np.abs(top - (space.doflocs[:, 0] ** 2 + space.doflocs[:, 1])).max() < 1e-11
    # Without the flux data the answer is wrong: the test can fail.
    wrong = fem.solve_poisson(space, 1.0, -2.0, lambda x, y: x**2 + y, dirichlet_tags=["left", "right"])
    assert np.abs(wrong - (space.doflocs[:, 0] ** 2 + space.doflocs[:, 1])).max() > 0.1


def test_poisson_residual_is_round_off_on_solution():
    space = fem.FEMSpace(disk_mesh(0.2), 1)
    a = 1 + space.doflocs[:, 0] ** 2
    u = fem.solve_poisson(space, a, 1.0)
    F = space.load(1.0)
    assert np.abs(fem.poisson_residual(space, u, a, 1.0)).max() < 1e-12 * np.abs(F).max()
    assert np.abs(fem.poisson_residual(space, u * 1.01, a, 1.0)).max() > 1e-4 * np.abs(F).max()


def test_heat_time_order_on_discrete_eigenvector():
    """Starting from the first discrete eigenvector, the exact semi-discrete solution is e^{−λ_h t} v,
    so the error is pure time discretisation: second order for Crank–Nicolson with the Rannacher start."""
    space = fem.FEMSpace(rectangle_mesh(1 / 8), 1)
    D = space.boundary_dofs()
    free = np.setdiff1d(np.arange(space.n_dofs), D)
    K, M = space.stiffness(1.0)[free][:, free], space.mass()[free][:, free]
    lam, vec = spla.eigsh(K.tocsc(), k=1, M=M.tocsc(), sigma=0.0)
    v = np.zeros(space.n_dofs)
    v[free] = vec[:, 0] / np.abs(vec[:, 0]).max()
    assert abs(lam[0] - 2 * PI**2) / (2 * PI**2) < 0.1
    T, errs = 0.2, []
    for n in (2, 4, 8, 16):
        U, steps = fem.solve_heat(space, v, np.array([0.0, T]), steps_per_interval=n)
        assert steps == n + 1
        errs.append(np.abs(U[-1] - np.exp(-lam[0] * T) * v).max())
    p = _orders(errs)
    assert np.all(p > 1.9) and abs(p[-1] - 2) < 0.1, f"time orders {p}"


def test_heat_eigenmode_decay_against_exact():
    """sin(πx) sin(πy) e^{−2π²t} on the unit square (P2): the error falls like Δt² to the space floor."""
    space = fem.FEMSpace(rectangle_mesh(1 / 16), 2)
    times = np.linspace(0.0, 0.1, 3)
    exact = u_ex(*space.doflocs.T)[None] * np.exp(-2 * PI**2 * times)[:, None]
    errs = []
    for n in (8, 32):
        U, _ = fem.solve_heat(space, u_ex, times, steps_per_interval=n)
        errs.append(np.abs(U - exact).max())
    assert errs[0] < 1.5e-3 and errs[1] < 1e-4 and errs[0] / errs[1] > 12


def test_factorisation_is_reused(monkeypatch):
    calls = []
    real = fem.splu

    def counting(A):
        calls.append(A.shape)
        return real(A)

    monkeypatch.setattr(fem, "splu", counting)
    space = fem.FEMSpace(disk_mesh(0.25), 1)
    cache = fem.FactorCache()
    times = np.linspace(0.0, 0.5, 6)
    u0 = 1 - (space.doflocs**2).sum(axis=1)
    fem.solve_heat(space, u0, times, a=1.0, steps_per_interval=4, cache=cache)
    assert len(calls) == 1 == cache.n_factorizations  # 21 steps, one factorisation
    fem.solve_heat(space, 2 * u0, times, a=np.ones(space.mesh.n_nodes), steps_per_interval=4, cache=cache)
    fem.solve_heat(space, u0, times, a=2.0, steps_per_interval=4, cache=cache)
    fem.solve_heat(space, u0, times, a=1.0, steps_per_interval=2, cache=cache)  # other dt: other matrix
    assert len(calls) == 3 == cache.n_factorizations
    fem.solve_poisson(space, 1.0, 1.0, cache=cache)
    fem.solve_poisson(space, 1.0, 2.0, cache=cache)  # new source, same matrix
    assert len(calls) == 4 and cache.n_hits >= 2


def test_pde_solve_shares_factorisations_between_equal_coefficients():
    pde = get_pde("heat_fem")
    mesh = pde.level_grid("easy", 10)
    insts = [pde.sample("easy", np.random.default_rng(s), mesh) for s in range(3)]
    r = pde.solve(insts, mesh)
    assert r.per_sample["factorized"].tolist() == [1.0, 0.0, 0.0]  # contrast 1: a is the same everywhere
    mesh = pde.level_grid("hard", 10)
    insts = [pde.sample("hard", np.random.default_rng(s), mesh) for s in range(2)]
    assert pde.solve(insts, mesh).per_sample["factorized"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("name", ["poisson_fem", "heat_fem"])
def test_pde_residual_of_solver_output(name):
    pde = get_pde(name)
    mesh = pde.level_grid("medium", 10)
    insts = [pde.sample("medium", np.random.default_rng(s), mesh) for s in range(2)]
    if name == "heat_fem":
        pde.steps_per_interval = 1  # then stored frames after the first are consecutive CN steps
    r = pde.solve(insts, mesh)
    res = pde.residual(r.fields, insts[0].params, mesh, r.times)
    scale = np.abs(pde.residual({**r.fields, "u": r.fields["u"] * 1.05}, insts[0].params, mesh, r.times)).max()
    assert scale > 0
    if name == "heat_fem":
        assert res.shape == (2, 10, mesh.n_nodes)
        res = res[:, 1:]  # the first interval holds the two backward-Euler half steps
    assert np.abs(res).max() < 1e-10 * scale


def test_bad_input():
    space = fem.FEMSpace(disk_mesh(0.3), 1)
    with pytest.raises(UserError, match="degree"):
        fem.FEMSpace(space.mesh, 3)
    with pytest.raises(UserError, match="shape"):
        fem.solve_poisson(space, np.ones(3), 1.0)
    with pytest.raises(UserError, match="boundary tag"):
        fem.solve_poisson(space, 1.0, 1.0, dirichlet_tags=["left"])
    with pytest.raises(UserError, match="equally spaced"):
        fem.solve_heat(space, 0.0, np.array([0.0, 0.1, 0.3]))
    pde = get_pde("poisson_fem")
    inst = pde.sample("easy", np.random.default_rng(0), space.mesh)
    inst.inputs["a"][0] = -1.0
    with pytest.raises(UserError, match="positive"):
        pde.solve([inst], space.mesh)
