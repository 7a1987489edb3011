"""The residual-Jacobian core: J against finite differences, J·v and Jᵀ·u against the dense J, the
pointwise Jacobian against the generic one, and the Gauss-Newton direction solvers against each other."""
import math

import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.operators.pinn import PINNMLP
from pde_lab.optim.residual import (PointwiseResidual, ResidualFunction, ResidualTerm, as_residual_function,
                                    gauss_newton_direction, model_residual, model_terms)
from pde_lab.pdes.poisson import Poisson

D = torch.float64  # every tensor here is double: the checks are at 1e-10


def _fit_residual(seed: int = 0) -> ResidualFunction:
    """Data misfit of a small tanh network: a non-pointwise residual (m = 12, p = 25)."""
    torch.manual_seed(seed)
    net = PINNMLP(in_dim=2, out_dim=1, widths=[6])
    x = torch.rand(12, 2, dtype=D)
    y = torch.sin(3 * x[:, 0]) * x[:, 1]
    return model_residual(net, lambda u: u(x)[:, 0] - y)


def _poisson_residual(seed: int = 0, width: int = 5) -> PointwiseResidual:
    torch.manual_seed(seed)
    net = PINNMLP(in_dim=2, out_dim=1, widths=[width], init="normal", init_scale=0.5)
    pde = Poisson(2)
    xi, xb = torch.rand(7, 2, dtype=D), torch.rand(4, 2, dtype=D)
    xb[:2, 0] = 0.0
    xb[2:, 1] = 1.0
    return model_terms(net, [(pde.pointwise_residual, xi, 1 / math.sqrt(7), "interior"),
                             (pde.boundary_residual, xb, 1 / math.sqrt(4), "boundary")])


def _fd_jacobian(res: ResidualFunction, h: float = 1e-6) -> torch.Tensor:
    """Central differences, column by column: (m, p)."""
    theta = res.flatten(res.current()).clone()
    cols = []
    for j in range(res.numel):
        e = torch.zeros_like(theta)
        e[j] = h
        cols.append((res(res.unflatten(theta + e)) - res(res.unflatten(theta - e))) / (2 * h))
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("mode", ["rev", "fwd", "auto"])
def test_jacobian_matches_finite_differences(mode):
    res = _fit_residual()
    r, J = res.jacobian(mode=mode)
    assert J.shape == (12, res.numel) and r.shape == (12,)
    assert torch.allclose(r, res())
    assert torch.allclose(J, _fd_jacobian(res), atol=1e-8, rtol=1e-6)


def test_pointwise_jacobian_matches_finite_differences_and_generic_jacobian():
    res = _poisson_residual()
    r, J = res.jacobian()
    assert J.shape == (11, res.numel)
    fd = _fd_jacobian(res, h=1e-5)
    assert torch.allclose(J, fd, atol=1e-6 * fd.abs().max(), rtol=1e-5)
    r_gen, J_gen = ResidualFunction.jacobian(res, mode="fwd")  # ignores the pointwise structure
    assert torch.allclose(r, r_gen, atol=1e-13) and torch.allclose(J, J_gen, atol=1e-12)


def test_jacobian_is_wrong_when_a_parameter_is_left_out():
    """The finite-difference check can fail: the Jacobian of a residual bound to fewer parameters
    has fewer columns and so differs from the full one."""
    torch.manual_seed(0)
    net = PINNMLP(in_dim=1, out_dim=1, widths=[3])
    x = torch.linspace(0, 1, 5, dtype=D)[:, None]
    full = model_residual(net, lambda u: u(x)[:, 0])
    part = model_residual(net, lambda u: u(x)[:, 0], params=["net.0.weight", "net.0.bias"])
    assert full.jacobian()[1].shape[1] == 10 and part.jacobian()[1].shape[1] == 6


@pytest.mark.parametrize("make", [_fit_residual, _poisson_residual])
def test_jvp_and_vjp_match_the_dense_jacobian(make):
    res = make()
    r, J = res.jacobian()
    g = torch.Generator().manual_seed(1)
    v = torch.randn(res.numel, generator=g, dtype=D)
    u = torch.randn(r.shape[0], generator=g, dtype=D)
    r1, Jv = res.jvp(v)
    r2, JTu = res.vjp(u)
    assert torch.allclose(r1, r) and torch.allclose(r2, r)
    assert torch.allclose(Jv, J @ v, atol=1e-12, rtol=1e-10)
    assert torch.allclose(JTu, J.T @ u, atol=1e-12, rtol=1e-10)
    loss, grad = res.gradient()
    assert math.isclose(float(loss), 0.5 * float(r @ r), rel_tol=1e-12)
    assert torch.allclose(grad, J.T @ r, atol=1e-12, rtol=1e-10)


def test_batched_losses_match_one_at_a_time():
    res = _poisson_residual()
    g = torch.Generator().manual_seed(2)
    thetas = [res.shifted(0.1 * torch.randn(res.numel, generator=g, dtype=D)) for _ in range(4)]
    batched = res.losses(thetas)
    single = torch.stack([res.loss(t) for t in thetas])
    assert torch.allclose(batched, single, rtol=1e-12)


def test_flatten_unflatten_assign_round_trip():
    res = _fit_residual()
    theta = res.current()
    flat = res.flatten(theta).clone()
    assert flat.shape == (res.numel,)
    assert all(torch.equal(a, b) for a, b in zip(res.unflatten(flat), theta))
    res.assign(res.shifted(torch.ones_like(flat)))
    assert torch.allclose(res.flatten(res.current()), flat + 1)
    with pytest.raises(ValueError, match="entries"):
        res.unflatten(flat[:-1])


def test_residual_must_be_a_vector_and_closures_must_match_the_parameters():
    p = torch.zeros(2, 2, dtype=D)
    with pytest.raises(ValueError, match="vector"):
        ResidualFunction(lambda th: th[0], [p])()
    res = ResidualFunction(lambda th: th[0].reshape(-1), [p])
    with pytest.raises(ValueError, match="other parameters"):
        as_residual_function(res, [torch.zeros(2, 2, dtype=D)])
    assert as_residual_function(res, [p]) is res
    wrapped = as_residual_function(lambda th: th[0].reshape(-1), [p])
    assert isinstance(wrapped, ResidualFunction) and wrapped.params[0] is p


def test_residual_terms_are_weighted_and_ordered():
    p = torch.tensor([2.0, 3.0], dtype=D)
    terms = [ResidualTerm(lambda th, x: th[0][0] * x[:, 0], torch.tensor([[1.0], [2.0]], dtype=D), 0.5, "a"),
             ResidualTerm(lambda th, x: th[0][1] * x[:, 0], torch.tensor([[4.0]], dtype=D), 2.0, "b")]
    res = PointwiseResidual(terms, [p])
    r, J = res.jacobian()
    assert torch.allclose(r, torch.tensor([1.0, 2.0, 24.0], dtype=D))
    assert torch.allclose(J, torch.tensor([[0.5, 0.0], [1.0, 0.0], [0.0, 8.0]], dtype=D))


# ---- direction solvers ------------------------------------------------------------------------------
def test_direction_solvers_agree_on_a_full_rank_problem():
    g = torch.Generator().manual_seed(3)
    J, r = torch.randn(30, 6, generator=g, dtype=D), torch.randn(30, generator=g, dtype=D)
    exact = torch.linalg.solve(J.T @ J, J.T @ r)
    for solver in ("lstsq", "pinv", "cholesky"):
        assert torch.allclose(gauss_newton_direction(J, r, solver=solver), exact, atol=1e-10)
    lam = 0.3
    damped = torch.linalg.solve(J.T @ J + lam * torch.eye(6, dtype=D), J.T @ r)
    for solver in ("lstsq", "pinv", "cholesky", "kernel"):
        assert torch.allclose(gauss_newton_direction(J, r, damping=lam, solver=solver), damped, atol=1e-10)


def test_kernel_form_gives_the_minimum_norm_step_when_underdetermined():
    """Fewer residuals than parameters: d = Jᵀ(JJᵀ)⁻¹ r solves J d = r with the smallest norm."""
    g = torch.Generator().manual_seed(4)
    J, r = torch.randn(5, 20, generator=g, dtype=D), torch.randn(5, generator=g, dtype=D)
    d_kernel = gauss_newton_direction(J, r, solver="kernel")
    d_lstsq = gauss_newton_direction(J, r, solver="lstsq")
    assert torch.allclose(J @ d_kernel, r, atol=1e-10)
    assert torch.allclose(d_kernel, d_lstsq, atol=1e-10)
    assert torch.allclose(d_kernel, torch.linalg.pinv(J) @ r, atol=1e-10)


def test_pseudo_inverse_cuts_off_a_null_direction():
    J = torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]], dtype=D)  # rank 1
    r = torch.tensor([1.0, 2.0, 5.0], dtype=D)
    for solver in ("lstsq", "pinv"):
        d = gauss_newton_direction(J, r, solver=solver)
        assert torch.allclose(d, torch.tensor([0.5, 0.5], dtype=D), atol=1e-12)
    with pytest.raises(FloatingPointError, match="positive definite"):
        gauss_newton_direction(J, r, solver="cholesky")
    with pytest.raises(UserError, match="damping"):
        gauss_newton_direction(J, r, damping=-1.0)
    with pytest.raises(UserError, match="direction solver"):
        gauss_newton_direction(J, r, solver="qr")
    for bad in (-1e-3, 1.0, float("nan")):
        with pytest.raises(UserError, match="rcond"):
            gauss_newton_direction(J, r, solver="pinv", rcond=bad)
    with pytest.raises(UserError, match="damping"):
        gauss_newton_direction(J, r, damping=float("nan"))


def test_unknown_parameter_names_are_named_with_the_models_own():
    net = PINNMLP(in_dim=2, out_dim=1, widths=[3])
    x = torch.rand(4, 2, dtype=D)
    for build in (lambda names: model_residual(net, lambda u: u(x)[:, 0], params=names),
                  lambda names: model_terms(net, [(lambda u, xx: u(xx)[:, 0], x, 1.0, "fit")], params=names)):
        with pytest.raises(ValueError, match=r"no parameters \['w'\]; its parameters are \[.*'"):
            build(["w"])
        with pytest.raises(ValueError, match="no parameters to train"):
            build([])



@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])])
def test_batched_losses_equal_one_at_a_time(device):
    """``losses`` (a loop on CPU, ``vmap`` elsewhere) gives each point's own ``loss``."""
    torch.manual_seed(3)
    net = PINNMLP(in_dim=2, out_dim=1, widths=[5], init="normal", init_scale=0.5).to(device)
    pde = Poisson(2)
    xi, xb = torch.rand(7, 2, dtype=D, device=device), torch.rand(4, 2, dtype=D, device=device)
    xb[:, 0] = 0.0
    res = model_terms(net, [(pde.pointwise_residual, xi, 1 / math.sqrt(7), "interior"),
                            (pde.boundary_residual, xb, 0.5, "boundary")])
    thetas = [tuple(t + 0.1 * k for t in res.current()) for k in range(5)]
    batched = res.losses(thetas)
    single = torch.stack([res.loss(t) for t in thetas])
    assert batched.shape == (5,) and batched.device.type == device
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=0)
