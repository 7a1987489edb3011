"""SPRING, MultiAdam, ConFIG and the first-order optimizers by name: each against a property that
defines it, then a few steps of each through the PINN trainer."""
import math

import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.optim import ENGD, SPRING, ConFIG, MultiAdam, config_direction, gauss_newton_direction
from pde_lab.optim.first_order import FIRST_ORDER, build_first_order
from pde_lab.training.pinn import PINN_OPTIMIZERS, PINNConfig, build_problem, fit_pinn

D = torch.float64


def _linear_problem(m=6, p=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, p, generator=g, dtype=D), torch.randn(m, generator=g, dtype=D)


def test_spring_without_momentum_is_damped_engd():
    A, b = _linear_problem()
    t1, t2 = torch.zeros(15, dtype=D), torch.zeros(15, dtype=D)
    s = SPRING([t1], momentum=0.0, damping=1e-3, line_search="none")
    e = ENGD([t2], solver="kernel", damping=1e-3, line_search="none")
    for _ in range(3):
        s.step(lambda th: A @ th[0] - b)
        e.step(lambda th: A @ th[0] - b)
    assert torch.allclose(t1, t2, atol=1e-13)


def test_spring_direction_solves_its_regularised_least_squares_problem():
    """φ_k minimises ‖Jφ − r‖² + λ‖φ − μφ_{k−1}‖²: (JᵀJ + λI) φ_k = Jᵀr + λμ φ_{k−1} (a nonlinear r,
    so J and r change between the steps)."""
    A, b = _linear_problem(m=8, p=12, seed=1)
    lam, mu = 1e-2, 0.7
    theta = torch.full((12,), 0.1, dtype=D)
    opt = SPRING([theta], momentum=mu, damping=lam, line_search="none", lr=0.5)
    fn = lambda th: torch.tanh(A @ th[0]) - 0.5 * b  # noqa: E731
    opt.step(fn)
    prev = opt.state[theta]["phi"].clone()
    x = theta.clone()
    opt.step(fn)
    phi = opt.state[theta]["phi"]
    J = torch.autograd.functional.jacobian(lambda t: fn((t,)), x)
    r = fn((x,))
    lhs = (J.T @ J + lam * torch.eye(12, dtype=D)) @ phi
    assert torch.allclose(lhs, J.T @ r + lam * mu * prev, atol=1e-10)
    assert torch.allclose(theta, x - 0.5 * phi, atol=1e-14)
    assert opt.last["momentum_norm"] == pytest.approx(float((mu * prev).norm()), rel=1e-12)


def test_spring_solves_an_underdetermined_linear_system():
    A, b = _linear_problem(m=10, p=40, seed=2)
    theta = torch.zeros(40, dtype=D)
    opt = SPRING([theta], momentum=0.5, damping=1e-8)
    for _ in range(20):
        opt.step(lambda th: A @ th[0] - b)
    assert float((A @ theta - b).norm()) < 1e-10


def test_restart_drops_a_huge_first_direction_that_adaptive_damping_would_pin():
    """A 2-16-1 Poisson PINN from a normal initialisation: the first SPRING direction is huge, the line
    search cuts it short, the adaptive damping raises λ, and a large λ keeps φ ≈ μ φ_prev, so without
    the restart the loss never leaves its initial value; with it the next direction is ENGD's."""
    cfg = PINNConfig(optimizer="spring", n_interior=400, n_boundary=80, eval_points=400,
                     model_args={"widths": [16], "init": "normal"}, progress=False)
    losses = {}
    for restart in (False, True):
        problem = build_problem(cfg)
        opt = SPRING(problem.residual.params, adaptive_damping=True, line_search="descending", restart=restart)
        for _ in range(25):
            opt.step(problem.residual)
        losses[restart] = (float(opt.last["loss"]), opt.last["new_loss"])
    first = float(0.5 * build_problem(cfg).residual().square().sum())
    assert losses[False][1] > 0.99 * first  # the plateau (48.7 throughout)
    assert losses[True][1] < 1e-2 * first, (first, losses)


def test_spring_restart_needs_a_line_search():
    """With a fixed step nothing judges the step, so the momentum is kept (the papers' SPRING)."""
    A, b = _linear_problem()
    theta = torch.zeros(15, dtype=D)
    opt = SPRING([theta], momentum=0.5, damping=1e-3, line_search="none", lr=1e-3)
    opt.step(lambda th: A @ th[0] - b)
    assert not opt.last["restarted"] and "phi" in opt.state[theta]


def test_spring_rejects_bad_arguments():
    t = torch.zeros(2, dtype=D)
    with pytest.raises(UserError, match="momentum"):
        SPRING([t], momentum=1.0)
    with pytest.raises(UserError, match="damping"):
        SPRING([t], damping=0.0)
    with pytest.raises(UserError, match="damping=nan"):  # NaN passed `damping <= 0`
        SPRING([t], damping=math.nan)


def _two_terms(scale=1.0):
    """Two conflicting quadratic terms of very different sizes in R^3."""
    c1 = torch.tensor([1.0, 0.0, 0.5], dtype=D)
    c2 = torch.tensor([-1.0, -0.5, -0.4], dtype=D)
    theta = torch.tensor([0.3, -0.2, 0.1], dtype=D, requires_grad=True)

    def closure():
        return [scale * 1e-4 * ((theta - c1) ** 2).sum(), ((theta - c2) ** 4).sum()]

    return theta, closure


def test_multiadam_trajectory_does_not_depend_on_the_scale_of_a_term():
    paths = []
    for scale in (1.0, 1e3):
        theta, closure = _two_terms(scale)
        opt = MultiAdam([theta], n_terms=2, lr=1e-2, eps=0.0)
        path = []
        for _ in range(50):
            opt.step(closure)
            path.append(theta.detach().clone())
        paths.append(torch.stack(path))
    assert torch.allclose(paths[0], paths[1], rtol=1e-10, atol=1e-13)


def test_multiadam_with_one_term_is_adam():
    theta, closure = _two_terms()
    ref = theta.detach().clone().requires_grad_(True)
    opt = MultiAdam([theta], n_terms=1, lr=1e-2)
    adam = torch.optim.Adam([ref], lr=1e-2)
    for _ in range(20):
        opt.step(lambda: [sum(closure())])
        adam.zero_grad()
        loss = 1e-4 * ((ref - torch.tensor([1.0, 0.0, 0.5], dtype=D)) ** 2).sum() + \
            ((ref - torch.tensor([-1.0, -0.5, -0.4], dtype=D)) ** 4).sum()
        loss.backward()
        adam.step()
    assert torch.allclose(theta, ref, atol=1e-14)
    with pytest.raises(UserError, match="2 loss terms"):
        MultiAdam([theta], n_terms=2).step(lambda: [closure()[0]])
    for bad in (dict(lr=math.nan), dict(lr=math.inf), dict(eps=math.nan)):  # NaN passed `lr <= 0`, `eps < 0`
        (name, value), = bad.items()
        with pytest.raises(UserError, match=rf"MultiAdam needs a finite lr > 0, a finite eps >= 0 .*{name}={value!r}"):
            MultiAdam([theta], n_terms=1, **bad)


def test_config_direction_has_equal_positive_cosines_with_every_gradient():
    g = torch.Generator().manual_seed(3)
    grads = torch.randn(3, 10, generator=g, dtype=D) * torch.tensor([[1e-3], [1.0], [50.0]], dtype=D)
    d = config_direction(grads)
    unit_dots = (grads / grads.norm(dim=1, keepdim=True)) @ d
    assert float(unit_dots.min()) > 0
    assert torch.allclose(unit_dots, unit_dots.mean().expand(3), rtol=1e-10)


def test_config_step_lowers_both_conflicting_terms():
    theta, closure = _two_terms()
    before = [float(t.detach()) for t in closure()]
    g1, g2 = torch.autograd.grad(closure()[0], theta)[0], torch.autograd.grad(closure()[1], theta)[0]
    assert float(g1 @ g2) < 0  # the terms conflict: plain gradient descent on the sum raises the first
    opt = ConFIG([theta], inner=torch.optim.SGD, lr=1e-3)
    opt.step(closure)
    after = [float(t.detach()) for t in closure()]
    assert after[0] < before[0] and after[1] < before[1]
    assert opt.last["cosines"][0] == pytest.approx(opt.last["cosines"][1], rel=1e-8)


@pytest.mark.parametrize("name", sorted(FIRST_ORDER))
def test_first_order_optimizers_by_name_lower_a_quadratic(name):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3, dtype=D))
    target = torch.randn(4, 3, dtype=D)
    opt = build_first_order(name, [w], lr=1e-2)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = ((w - target) ** 2).sum()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(((w - target) ** 2).sum().detach()) < first
    with pytest.raises(UserError, match="unknown optimizer"):
        build_first_order("sgdd", [w])
    with pytest.raises(UserError, match="rejects"):
        build_first_order(name, [w], lr=1e-2, nonsense=3)


@pytest.mark.parametrize("optimizer", ["soap", "shampoo", "multiadam", "config", "spring"])
def test_new_optimizers_train_the_poisson_pinn(optimizer):
    assert optimizer in PINN_OPTIMIZERS
    args = {"damping": 1e-6, "momentum": 0.5} if optimizer == "spring" else {}
    cfg = PINNConfig(optimizer=optimizer, optimizer_args=args, steps=30, eval_every=10, n_interior=36,
                     n_boundary=12, eval_points=100, model_args={"widths": [8]}, lr=1e-2, progress=False)
    problem = build_problem(cfg)
    out = fit_pinn(problem, cfg)
    log = out["log"]
    assert math.isfinite(out["metrics"]["rel_l2"])
    assert log[-1]["loss"] < log[0]["loss"]


def _sine_model_gramian(K: int, N: int = 128) -> torch.Tensor:
    """Gauss-Newton matrix of u(x) = Σ_k θ_k sin(kx) for −u'' = f on (0, π), at the N interior points
    jπ/(N+1) (the boundary rows vanish): J_jk = k² sin(k x_j) / sqrt(N), and by discrete sine
    orthogonality G = JᵀJ = diag(k⁴ (N+1) / (2N))."""
    x = torch.arange(1, N + 1, dtype=D) * math.pi / (N + 1)
    k = torch.arange(1, K + 1, dtype=D)
    J = k ** 2 * torch.sin(x[:, None] * k[None, :]) / math.sqrt(N)
    return J.T @ J


def test_condition_number_of_the_laplacian_grows_as_k4_and_preconditioning_removes_it():
    from pde_lab.optim.diagnostics import condition_number

    for K in (4, 16, 32):
        G = _sine_model_gramian(K)
        raw = condition_number(G)
        assert raw.n_kept == K and raw.condition == pytest.approx(K ** 4, rel=1e-9)
        k4 = torch.arange(1, K + 1, dtype=D) ** 4
        assert condition_number(G, k4).condition == pytest.approx(1.0, abs=1e-9)
        assert condition_number(G, torch.diag(k4)).condition == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(UserError, match="positive"):
        condition_number(G, -k4)
