"""Gauss-Newton, Levenberg-Marquardt and the L-BFGS wrapper on problems with known minimisers."""
import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.optim import LBFGS, GaussNewton, LevenbergMarquardt, ResidualFunction

D = torch.float64


def _linear_problem(m: int = 40, p: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, p, generator=g, dtype=D)
    b = torch.randn(m, generator=g, dtype=D)
    return A, b


def _rosenbrock(theta):
    """Rosenbrock as residuals: ½‖r‖² = 50 (y − x²)² + ½ (1 − x)², minimum 0 at (1, 1)."""
    x, y = theta[0][0], theta[0][1]
    return torch.stack([10.0 * (y - x * x), 1.0 - x])


@pytest.mark.parametrize("solver", ["lstsq", "pinv", "cholesky"])
def test_gauss_newton_solves_linear_least_squares_in_one_step(solver):
    A, b = _linear_problem()
    theta = torch.zeros(A.shape[1], dtype=D)
    opt = GaussNewton([theta], solver=solver)
    loss0 = opt.step(lambda th: A @ th[0] - b)
    expected = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    assert torch.allclose(theta, expected, atol=1e-12)
    assert float(loss0) == pytest.approx(0.5 * float(b @ b))
    # At the minimiser the gradient Aᵀ(Aθ − b) vanishes.
    assert float((A.T @ (A @ theta - b)).abs().max()) < 1e-11


def test_gauss_newton_with_a_fixed_short_step_does_not_solve_in_one_step():
    A, b = _linear_problem()
    theta = torch.zeros(A.shape[1], dtype=D)
    GaussNewton([theta], lr=0.5).step(lambda th: A @ th[0] - b)
    expected = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    assert torch.allclose(theta, 0.5 * expected, atol=1e-12)


@pytest.mark.parametrize("scaling", ["identity", "marquardt"])
@pytest.mark.parametrize("solver", ["lstsq", "cholesky"])
def test_levenberg_marquardt_solves_rosenbrock(scaling, solver):
    theta = torch.tensor([-1.2, 1.0], dtype=D)
    opt = LevenbergMarquardt([theta], damping=1e-3, scaling=scaling, solver=solver)
    losses = []
    for _ in range(100):
        losses.append(float(opt.step(_rosenbrock)))
        assert opt.last["accepted"]
        assert opt.last["new_loss"] <= opt.last["loss"]  # accepted steps never increase the loss
        if opt.last["new_loss"] < 1e-28:
            break
    assert torch.allclose(theta, torch.ones(2, dtype=D), atol=1e-12)
    assert len(losses) < 60


def test_levenberg_marquardt_raises_the_damping_after_a_rejected_step():
    """From a bad point with almost no damping the first Gauss-Newton step overshoots: it must be
    rejected and the damping raised until a step is accepted."""
    theta = torch.tensor([-1.2, 1.0], dtype=D)
    opt = LevenbergMarquardt([theta], damping=1e-12, min_damping=1e-15)
    opt.step(_rosenbrock)
    assert opt.last["tries"] > 1 and opt.last["accepted"]
    assert opt.last["damping"] > 1e-12
    assert opt.last["new_loss"] < opt.last["loss"]


def test_levenberg_marquardt_takes_a_residual_function_and_checks_arguments():
    A, b = _linear_problem()
    theta = torch.zeros(A.shape[1], dtype=D)
    res = ResidualFunction(lambda th: A @ th[0] - b, [theta])
    opt = LevenbergMarquardt([theta], damping=1e-9)
    for _ in range(3):
        opt.step(res)
    expected = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    assert torch.allclose(theta, expected, atol=1e-9)
    with pytest.raises(UserError, match="damping"):
        LevenbergMarquardt([theta], damping=0.0)
    with pytest.raises(UserError, match="scaling"):
        LevenbergMarquardt([theta], scaling="diag")


def _quadratic_closure(theta, opt, A, b):
    def closure():
        opt.zero_grad()
        loss = 0.5 * ((A @ theta - b) ** 2).sum()
        loss.backward()
        return loss
    return closure


def test_lbfgs_reports_convergence_on_the_gradient_and_running_out_of_iterations():
    A, b = _linear_problem(20, 5)
    theta = torch.zeros(5, dtype=D, requires_grad=True)
    # The loss is about 5 at the minimum, so float64 resolves gradients down to about 1e-9 only.
    lbfgs = LBFGS([theta], tolerance_grad=1e-7, tolerance_change=0.0)
    closure = _quadratic_closure(theta, lbfgs.optimizer, A, b)
    first = lbfgs.run(closure, max_iter=2)
    assert first.reason == "max_iter" and first.iterations == 2 and not first.stopped_early
    report = lbfgs.run(closure, max_iter=100)
    assert report.reason == "gradient" and report.stopped_early
    assert report.iterations < 100
    expected = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    assert torch.allclose(theta.detach(), expected, atol=1e-7)
    assert report.loss == pytest.approx(0.5 * float(((A @ expected - b) ** 2).sum()), rel=1e-10)


def test_lbfgs_reports_a_stall_on_the_loss_change():
    A, b = _linear_problem(20, 5)
    theta = torch.zeros(5, dtype=D, requires_grad=True)
    lbfgs = LBFGS([theta], tolerance_grad=0.0, tolerance_change=1e-3)
    report = lbfgs.run(_quadratic_closure(theta, lbfgs.optimizer, A, b), max_iter=100)
    assert report.stopped_early
    assert report.reason in ("loss_change", "step_size", "directional_derivative")
