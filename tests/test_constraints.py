"""The hard-constraint layer: LM solve, implicit gradients vs finite differences and unrolled LM,
and the mixture-of-experts partition and batching."""
from __future__ import annotations

import pytest
import torch

from pde_lab.constraints.hard_constraint import LMSettings, hard_constraint_solve, lm_solve
from pde_lab.constraints.moe import Partition, assemble
from pde_lab.errors import UserError

torch.set_num_threads(1)
f64 = torch.float64


def linear_residual(w, A, b):
    return A @ w - b


def nonlinear_residual(w, A, b):
    # Inconsistent (more rows than unknowns, random b): r ≠ 0 at the optimum, so the Gauss–Newton
    # and exact Hessians differ there.
    z = A @ w
    return z + 0.3 * z**2 + 0.1 * torch.sin(w).sum() - b


def problem(K=3, M=12, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, M, N, generator=g, dtype=f64) / M**0.5
    b = torch.randn(K, M, generator=g, dtype=f64) * 0.15
    return A, b


def loss_of(omega, weights):
    return (omega * weights).sum() + 0.5 * (omega**2).sum()


ENTRIES = (0, 5, 13, 22, 31, 47)


def fd_grad(fn, A, b, settings, weights, eps=1e-6):
    """Central differences of the loss with respect to a few entries of ``A`` (float64 solves);
    the other entries are left at zero (compare with :func:`pick`)."""
    out = torch.zeros_like(A)
    for idx in ENTRIES:
        e = torch.zeros(A.numel(), dtype=f64)
        e[idx] = eps
        e = e.view_as(A)
        lp = loss_of(hard_constraint_solve(fn, (A + e, b), A.shape[-1], settings)[0], weights)
        lm = loss_of(hard_constraint_solve(fn, (A - e, b), A.shape[-1], settings)[0], weights)
        out.view(-1)[idx] = (lp - lm) / (2 * eps)
    return out


def pick(g):
    return g.reshape(-1)[list(ENTRIES)]


def implicit_grads(fn, A, b, settings, weights):
    A = A.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    omega, info = hard_constraint_solve(fn, (A, b), A.shape[-1], settings)
    assert bool(info.converged.all())
    loss_of(omega, weights).backward()
    return A.grad, b.grad


def unrolled_grads(fn, A, b, settings, weights):
    A = A.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    omega, _ = lm_solve(fn, torch.zeros(A.shape[0], A.shape[-1], dtype=f64), (A, b), settings)
    loss_of(omega, weights).backward()
    return A.grad, b.grad


def test_linear_solution_matches_normal_equations():
    A, b = problem()
    ridge = 1e-3
    omega, info = hard_constraint_solve(linear_residual, (A, b), 4, LMSettings(ridge=ridge, tol=1e-12))
    expected = torch.linalg.solve(A.transpose(1, 2) @ A + ridge * torch.eye(4, dtype=f64),
                                  (A.transpose(1, 2) @ b[..., None]))[..., 0]
    assert torch.allclose(omega, expected, atol=1e-10)
    assert info.iterations < 30 and bool(info.converged.all())


def test_a_stall_at_a_kink_stops_the_solve_but_is_not_reported_as_converged():
    """r(ω) = ω + 1 for ω ≥ 0, 1 − 2ω below, started at the kink ω = 0: autograd's slope (+1) sends every
    step to ω < 0, where the cost rises, so each is rejected until λ makes them negligibly short. The
    solve stops there (nothing more can change) but ∇f = 1 ≠ 0: it used to report convergence."""
    def kinked(w, c):
        return torch.where(w >= 0, w + c, c - 2.0 * w)

    omega, info = hard_constraint_solve(kinked, (torch.ones(1, 1, dtype=f64),), 1,
                                        LMSettings(max_iter=200, tol=1e-8, ridge=0.0))
    assert float(omega.abs().max()) == 0.0 and info.iterations < 200
    assert not bool(info.converged.any()) and float(info.grad_norm.max()) == pytest.approx(1.0)


def test_a_short_step_under_heavy_damping_is_not_reported_as_converged():
    """Damping 1e12 makes the first step of a linear problem descend but by ~1e-12: the solve stops
    there (the step is below tol), far from the solution. It used to count as converged."""
    A, b = problem()
    omega, info = hard_constraint_solve(linear_residual, (A, b), 4, LMSettings(ridge=1e-3, tol=1e-8, damping=1e12))
    assert info.iterations <= 2 and not bool(info.converged.any()) and float(info.grad_norm.min()) > 1e-3
    _, info = hard_constraint_solve(linear_residual, (A, b), 4, LMSettings(ridge=1e-3, tol=1e-8))
    assert bool(info.converged.all())


def test_newton_steps_converge_where_gauss_newton_crawls():
    """r(ω) = Aω + (Cω)² − b with b of unit size: the residual stays large at the minimum, so
    Gauss–Newton converges linearly and stalls above a 1e-10 gradient (measured 1.7e-7 after 200
    iterations); the damped Newton step meets it in 18 iterations, at the same minimum."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 12, 4, generator=g, dtype=f64) / 12**0.5
    C = torch.randn(3, 12, 4, generator=g, dtype=f64) / 12**0.5
    b = torch.randn(3, 12, generator=g, dtype=f64)

    def quadratic(w, A, C, b):
        return A @ w + (C @ w) ** 2 - b
    start = torch.zeros(3, 4, dtype=f64)
    w_gn, gn = lm_solve(quadratic, start, (A, C, b), LMSettings(max_iter=200, tol=1e-10, ridge=0.0))
    w_nt, nt = lm_solve(quadratic, start, (A, C, b), LMSettings(max_iter=200, tol=1e-10, ridge=0.0, step="newton"))
    assert not bool(gn.converged.any()) and gn.iterations == 200
    assert bool(nt.converged.all()) and nt.iterations < 30
    assert torch.allclose(nt.cost, gn.cost, rtol=1e-12) and torch.allclose(w_nt, w_gn, atol=1e-5)
    with pytest.raises(UserError, match="unknown LM step .exact.; allowed: gauss_newton, newton"):
        LMSettings(step="exact")


@pytest.mark.parametrize("hessian", ["gauss_newton", "exact"])
def test_linear_implicit_gradient_matches_finite_differences(hessian):
    # Linear residual: the Gauss–Newton matrix is the exact Hessian, both options are exact.
    A, b = problem(seed=1)
    s = LMSettings(ridge=1e-3, tol=1e-13, max_iter=60, hessian=hessian)
    w = torch.randn(3, 4, dtype=f64, generator=torch.Generator().manual_seed(5))
    gA, gb = implicit_grads(linear_residual, A, b, s, w)
    assert torch.allclose(pick(gA), pick(fd_grad(linear_residual, A, b, s, w)), atol=1e-6, rtol=1e-5)


def test_nonlinear_exact_hessian_gradient_matches_fd_and_unrolled():
    A, b = problem(seed=2)
    s = LMSettings(ridge=1e-4, tol=1e-11, max_iter=200, hessian="exact")
    w = torch.randn(3, 4, dtype=f64, generator=torch.Generator().manual_seed(6))
    gA, gb = implicit_grads(nonlinear_residual, A, b, s, w)
    fd = fd_grad(nonlinear_residual, A, b, s, w)
    assert torch.allclose(pick(gA), pick(fd), atol=1e-6, rtol=1e-5)
    uA, ub = unrolled_grads(nonlinear_residual, A, b, s, w)
    assert torch.allclose(gA, uA, atol=1e-7, rtol=1e-6)
    assert torch.allclose(gb, ub, atol=1e-7, rtol=1e-6)
    # The Gauss–Newton adjoint drops Σ r_i ∇²r_i: visibly different on this inconsistent problem.
    gA_gn, _ = implicit_grads(nonlinear_residual, A, b, LMSettings(ridge=1e-4, tol=1e-11, max_iter=200), w)
    assert (gA_gn - gA).abs().max() > 1e-3


def test_gauss_newton_gradient_exact_for_consistent_nonlinear_problem():
    # b chosen so that r(ω_true) = 0: the dropped term vanishes and Gauss–Newton IFT is exact.
    A, _ = problem(seed=3)
    w_true = torch.tensor([[0.3, -0.2, 0.1, 0.4]] * 3, dtype=f64)
    b = torch.stack([nonlinear_residual(w_true[k], A[k], torch.zeros(12, dtype=f64)) for k in range(3)])
    s = LMSettings(ridge=0.0, tol=1e-11, max_iter=100)
    w = torch.randn(3, 4, dtype=f64, generator=torch.Generator().manual_seed(7))
    gA, gb = implicit_grads(nonlinear_residual, A, b, s, w)
    uA, ub = unrolled_grads(nonlinear_residual, A, b, s, w)
    assert torch.allclose(gA, uA, atol=1e-7) and torch.allclose(gb, ub, atol=1e-7)


def test_float32_data_solved_in_float64_and_gradients_flow():
    A, b = problem(seed=4)
    A32 = A.float().requires_grad_(True)
    omega, _ = hard_constraint_solve(linear_residual, (A32, b.float()), 4, LMSettings(ridge=1e-3))
    assert omega.dtype == torch.float32
    omega.sum().backward()
    assert A32.grad is not None and A32.grad.dtype == torch.float32 and torch.isfinite(A32.grad).all()


def test_problems_are_independent():
    # Perturbing problem 0's data must not move problem 1's solution (experts are independent).
    A, b = problem(seed=5)
    s = LMSettings(ridge=1e-4, tol=1e-13, max_iter=100)
    w1, _ = hard_constraint_solve(nonlinear_residual, (A, b), 4, s)
    A2 = A.clone()
    A2[0] += 0.1
    w2, _ = hard_constraint_solve(nonlinear_residual, (A2, b), 4, s)
    assert not torch.allclose(w1[0], w2[0])
    assert torch.allclose(w1[1:], w2[1:], atol=1e-12)


def test_bad_settings_raise_user_error():
    with pytest.raises(UserError, match="max_iter"):
        LMSettings(max_iter=0)
    with pytest.raises(UserError, match="hessian"):
        LMSettings(hessian="newton")
    for bad in (dict(ridge=float("inf")), dict(tol=float("nan")), dict(damping_up=float("inf"))):
        with pytest.raises(UserError, match="finite"):
            LMSettings(**bad)
    A, b = problem()
    with pytest.raises(UserError, match="leading"):
        hard_constraint_solve(linear_residual, (A, b[:2]), 4)


# ---- mixture of experts ------------------------------------------------------------------------
def test_partition_assigns_every_point_to_the_box_containing_it():
    p = Partition(((0.0, 1.0), (0.0, 2.0)), (4, 2))
    assert p.n_experts == 8
    x = torch.rand(1000, 2, dtype=f64) * torch.tensor([1.0, 2.0], dtype=f64)
    k = p.assign(x)
    boxes = p.boxes()
    lo, hi = boxes[k, :, 0], boxes[k, :, 1]
    assert bool(((x >= lo) & (x <= hi)).all())
    # The domain's upper edge belongs to the last expert.
    assert p.assign(torch.tensor([[1.0, 2.0]], dtype=f64)).item() == 7


@pytest.mark.parametrize("bounds, parts", [((-1.0, 0.3), 3), ((0.1, 0.7), 3), ((-0.3, 1.1), 7)])
def test_points_on_inner_faces_go_to_a_box_that_contains_them(bounds, parts):
    """Points exactly on each inner face of :meth:`Partition.boxes`, and one ulp either side: each is
    assigned to an expert whose box holds it (binning by ``floor`` misplaced some of these)."""
    p = Partition((bounds,), (parts,))
    boxes = p.boxes()
    faces = boxes[1:, 0, 0]
    x = torch.cat([faces, torch.nextafter(faces, torch.full_like(faces, -9.0)),
                   torch.nextafter(faces, torch.full_like(faces, 9.0))])[:, None]
    own = boxes[p.assign(x), 0]
    assert bool(((x[:, 0] >= own[:, 0]) & (x[:, 0] <= own[:, 1])).all())
    assert p.assign(faces[:, None]).tolist() == list(range(1, parts))


def test_partition_sampling_stays_in_expanded_boxes():
    p = Partition(((0.0, 1.0),), (4,), overlap=0.25)
    x = p.sample(50, torch.Generator().manual_seed(0), dtype=f64)
    assert x.shape == (4, 50, 1)
    boxes = p.boxes(expanded=True)
    assert bool(((x >= boxes[:, None, :, 0]) & (x <= boxes[:, None, :, 1])).all())
    # Expert 1 of 4 with overlap 1/4 of its width: [0.25 - 0.0625, 0.5 + 0.0625].
    assert torch.allclose(boxes[1, 0], torch.tensor([0.1875, 0.5625], dtype=f64))
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(UserError, match="overlap must be a finite non-negative"):
            Partition(((0.0, 1.0),), (4,), overlap=bad)
    with pytest.raises(UserError, match="parts"):
        Partition(((0.0, 1.0),), (0,))


def test_partition_faces_are_touched_exactly_whatever_the_bounds():
    # lo + p * width misses hi by an ulp for these bounds; the last box must still end on the face,
    # or the experiment's "own" face scope gives no expert the rows of that face.
    for bounds, parts in [(((-1.0, 0.3),), (3,)), (((0.1, 0.7),), (7,)), (((-0.3, 3.14159), (0.0, 1.1)), (5, 3))]:
        p = Partition(bounds, parts)
        for axis in range(len(bounds)):
            lower, upper = p.touches(axis, 0), p.touches(axis, 1)
            position = p._multi_index()[:, axis]
            assert torch.equal(lower, position == 0), (bounds, parts, axis)
            assert torch.equal(upper, position == parts[axis] - 1), (bounds, parts, axis)
        assert torch.equal(p.boxes()[..., 1].amax(0), torch.tensor([hi for _, hi in bounds], dtype=f64))
    with pytest.raises(UserError, match="side 0"):
        Partition(((0.0, 1.0),), (2,)).touches(0, 2)
    with pytest.raises(UserError, match="axis in 0..0"):
        Partition(((0.0, 1.0),), (2,)).touches(1, 0)
    with pytest.raises(UserError, match="axis 2"):
        Partition(((0.0, 1.0), (0.0, 1.0)), (2, 2)).sample(4, torch.Generator().manual_seed(0), fixed={2: 0.0})


def test_partition_shared_sampling_gives_every_expert_the_same_whole_face():
    # Global initial/boundary rows of a mixture: one draw over the whole domain, replicated.
    p = Partition(((0.0, 1.0), (0.0, 2.0)), (4, 1))
    x = p.sample(64, torch.Generator().manual_seed(0), dtype=f64, fixed={1: 0.0}, shared=True)
    assert x.shape == (4, 64, 2)
    assert torch.equal(x, x[:1].expand_as(x))
    assert bool((x[..., 1] == 0.0).all())
    assert bool(((x[..., 0] >= 0.0) & (x[..., 0] <= 1.0)).all())
    # The points span the whole face, not expert 0's box [0, 1/4] only.
    assert float(x[0, :, 0].min()) < 0.25 < float(x[0, :, 0].max())
    assert set(p.assign(x[0]).tolist()) == {0, 1, 2, 3}
    # Without shared, each expert samples its own box.
    y = p.sample(64, torch.Generator().manual_seed(0), dtype=f64, fixed={1: 0.0})
    assert bool((p.assign(y.reshape(-1, 2)).reshape(4, 64) == torch.arange(4)[:, None]).all())


def test_assemble_uses_each_points_expert():
    basis = torch.randn(5, 3, dtype=f64)
    omega = torch.randn(2, 3, dtype=f64)
    idx = torch.tensor([0, 1, 1, 0, 1])
    out = assemble(basis, idx, omega)
    expected = torch.stack([basis[i] @ omega[idx[i]] for i in range(5)])
    assert torch.allclose(out, expected)
