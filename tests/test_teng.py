"""TENG (time-evolving natural gradient): exactness on a model linear in its parameters, temporal
order on a small network, rank-deficient Jacobians, the PDEs' pointwise right-hand sides, bad input."""
import math

import pytest
import torch
from torch import nn

from pde_lab.errors import UserError
from pde_lab.operators import build_model
from pde_lab.optim.teng import TENG, field_values, fit_initial_state, fit_values, pde_rhs, rhs_values
from pde_lab.pdes import get_pde

D = torch.float64
TWO_PI = 2 * math.pi


class FourierModel(nn.Module):
    """``u(x) = Σ_k c_k sin(2π k·x + φ_k)`` for fixed wave vectors: linear in its parameters ``c``, and
    every heat update stays in its span, so one Gauss–Newton iteration fits a TENG target exactly."""

    def __init__(self, waves: list[tuple[int, ...]], phases: list[float]):
        super().__init__()
        self.register_buffer("k", torch.tensor(waves, dtype=D))
        self.register_buffer("phi", torch.tensor(phases, dtype=D))
        self.c = nn.Parameter(torch.linspace(1.0, 0.5, len(waves), dtype=D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(TWO_PI * x @ self.k.T + self.phi) @ self.c)[:, None]


def grid(n: int, dim: int) -> torch.Tensor:
    axes = [torch.arange(n, dtype=D) / n] * dim
    return torch.stack([m.reshape(-1) for m in torch.meshgrid(*axes, indexing="ij")], dim=1)


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_linear_model_one_iteration_is_the_exact_explicit_step(scheme):
    """Heat on the span of sin modes: TENG-Euler multiplies c_k by 1 − z_k, TENG-Heun by 1 − z_k + z_k²/2,
    z_k = Δt κ |2πk|², with one Gauss–Newton iteration per stage (the torch.func Laplacian path)."""
    kappa, dt = 0.02, 0.3
    waves = [(1, 0), (0, 2), (1, 1), (2, 1)]
    model = FourierModel(waves, [0.0, 0.4, 1.1, 2.0])
    c0 = model.c.detach().clone()
    teng = TENG(model, pde_rhs(get_pde("heat_2d"), {"kappa": kappa}), grid(12, 2), dt=dt, scheme=scheme,
                max_iterations=1)
    report = teng.step()
    z = dt * kappa * TWO_PI ** 2 * torch.tensor([a * a + b * b for a, b in waves], dtype=D)
    factor = 1 - z if scheme == "euler" else 1 - z + z * z / 2
    assert torch.allclose(model.c.detach(), c0 * factor, rtol=0, atol=1e-12)
    assert len(report.fits) == (1 if scheme == "euler" else 2)
    assert all(f.iterations == 1 and f.final_rms < 1e-13 for f in report.fits)
    assert report.t == pytest.approx(dt) and teng.reports == [report]


def heat_1d_setup(seed: int = 0):
    kappa = 0.01
    x = grid(32, 1)

    def exact(x, t):
        s = x[:, 0]
        return (torch.sin(TWO_PI * s) * math.exp(-kappa * TWO_PI ** 2 * t)
                + 0.5 * torch.cos(2 * TWO_PI * s) * math.exp(-4 * kappa * TWO_PI ** 2 * t))

    torch.manual_seed(seed)
    net = build_model("pinn_mlp", in_dim=1, out_dim=1, widths=[12], periodic=[0])
    fit = fit_initial_state(net, x, exact(x, 0.0), max_iterations=300)
    return net, x, exact, kappa, fit


@pytest.fixture(scope="module")
def heat_1d():
    return heat_1d_setup()


def test_initial_fit_reaches_small_misfit(heat_1d):
    net, x, exact, _, fit = heat_1d
    assert fit.initial_rms > 0.1 and fit.final_rms < 1e-7
    assert fit.losses[-1] < fit.losses[0]
    x_off = x + 0.5 / 32  # between the collocation points: the fit generalises
    assert (field_values(net, x_off)[:, 0] - exact(x_off, 0.0)).abs().max() < 1e-5


def _final_error(heat_1d, scheme: str, dt: float, t_final: float = 0.6) -> float:
    net0, x, exact, kappa, _ = heat_1d
    net = build_model("pinn_mlp", in_dim=1, out_dim=1, widths=[12], periodic=[0])
    net.load_state_dict(net0.state_dict())
    teng = TENG(net, pde_rhs(get_pde("heat_1d"), {"kappa": kappa}), x, dt=dt, scheme=scheme, max_iterations=4)
    teng.run(round(t_final / dt))
    assert teng.t == pytest.approx(t_final)
    u, ref = field_values(net, x)[:, 0], exact(x, t_final)
    return float((u - ref).norm() / ref.norm())


def test_temporal_order_euler_one_heun_two(heat_1d):
    """Errors of a tiny network on 1D heat at Δt and Δt/2: ratio ≈ 2 (Euler), ≈ 4 (Heun), and Heun is
    far more accurate; the fitting error is orders of magnitude below these time errors."""
    e_euler = [_final_error(heat_1d, "euler", dt) for dt in (0.2, 0.1)]
    e_heun = [_final_error(heat_1d, "heun", dt) for dt in (0.2, 0.1)]
    assert 1.7 < e_euler[0] / e_euler[1] < 2.3
    assert 3.4 < e_heun[0] / e_heun[1] < 4.6
    assert e_heun[1] < 0.1 * e_euler[1]


def test_rank_deficient_jacobian_minimum_norm_step():
    """``u = (a + b) sin 2πx + c cos 2πx``: the columns of a and b coincide (rank 2 of 3). The SVD
    least-squares, the eigen pseudo-inverse and the sample-space (kernel) form take the minimum-norm step
    (a = b) and fit in one iteration; damped Cholesky converges in a few."""

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = (nn.Parameter(torch.zeros((), dtype=D)) for _ in range(3))

        def forward(self, x):
            return ((self.a + self.b) * torch.sin(TWO_PI * x[:, 0]) + self.c * torch.cos(TWO_PI * x[:, 0]))[:, None]

    x = grid(16, 1)
    target = 2 * torch.sin(TWO_PI * x[:, 0]) + 3 * torch.cos(TWO_PI * x[:, 0])
    for solver in ("lstsq", "pinv", "kernel"):
        m = Twin()
        rep = fit_values(m, x, target, max_iterations=1, solver=solver)
        assert rep.final_rms < 1e-12
        assert float(m.a.detach()) == pytest.approx(1.0, abs=1e-12) and float(m.b.detach()) == pytest.approx(1.0, abs=1e-12)
    m = Twin()
    rep = fit_values(m, x, target, max_iterations=20, tol=1e-10, solver="cholesky", damping=1e-6)
    assert rep.stop == "tolerance" and rep.final_rms <= 1e-10


def test_fit_stops_at_tolerance():
    model = FourierModel([(1,), (2,)], [0.0, 0.3])
    x = grid(16, 1)
    target = field_values(model, x)[:, 0]
    rep = fit_values(model, x, target, max_iterations=5, tol=1e-9)
    assert rep.stop == "tolerance" and rep.iterations == 0 and rep.final_rms == 0.0


# ---- the PDEs' pointwise right-hand sides ------------------------------------------------------------
def _field(x):
    s = x[:, :1]
    return torch.sin(TWO_PI * s) + 0.3 * torch.cos(2 * TWO_PI * s)


def test_pointwise_rhs_against_closed_forms():
    x = torch.rand(20, 1, dtype=D, generator=torch.Generator().manual_seed(0))
    s = x[:, 0]
    u = torch.sin(TWO_PI * s) + 0.3 * torch.cos(2 * TWO_PI * s)
    ux = TWO_PI * torch.cos(TWO_PI * s) - 0.6 * TWO_PI * torch.sin(2 * TWO_PI * s)
    uxx = -TWO_PI ** 2 * torch.sin(TWO_PI * s) - 1.2 * TWO_PI ** 2 * torch.cos(2 * TWO_PI * s)
    heat = get_pde("heat_1d").pointwise_rhs(_field, x, {"kappa": 0.3})
    ac = get_pde("allen_cahn_1d").pointwise_rhs(_field, x, {"nu": 0.01})
    burgers = get_pde("burgers").pointwise_rhs(_field, x, {"nu": 0.05})
    assert torch.allclose(heat, 0.3 * uxx, atol=1e-11)
    assert torch.allclose(ac, 0.01 * uxx + u - u ** 3, atol=1e-11)
    assert torch.allclose(burgers, -u * ux + 0.05 * uxx, atol=1e-11)
    # 2D: the Laplacian sums both axes.
    x2 = torch.rand(10, 2, dtype=D, generator=torch.Generator().manual_seed(1))
    f2 = lambda y: torch.sin(TWO_PI * (y[:, :1] + 2 * y[:, 1:]))  # noqa: E731
    heat2 = get_pde("heat_2d").pointwise_rhs(f2, x2, {"kappa": 0.1})
    assert torch.allclose(heat2, -0.1 * 5 * TWO_PI ** 2 * f2(x2)[:, 0], atol=1e-10)


def test_rhs_of_a_network_closed_form_matches_torch_func():
    """``rhs_values`` hands a ``pinn_mlp`` to the PDE as a field with closed-form derivatives; the same
    network through plain ``torch.func`` (a lambda hides ``forward``'s ``output`` argument) agrees."""
    torch.manual_seed(3)
    net = build_model("pinn_mlp", in_dim=1, out_dim=1, widths=[6, 6], periodic=[0])
    x = torch.rand(15, 1, dtype=D, generator=torch.Generator().manual_seed(2))
    rhs = pde_rhs(get_pde("burgers"), {"nu": 0.05})
    fast = rhs_values(net, rhs, x)[:, 0]
    slow = rhs(lambda y: net(y), x).detach()
    assert torch.allclose(fast, slow, atol=1e-12)


def test_periodic_network_is_periodic():
    torch.manual_seed(0)
    net = build_model("pinn_mlp", in_dim=2, out_dim=1, widths=[8, 8], periodic=[0, 1])
    x = torch.rand(7, 2, dtype=D)
    shifted = x + torch.tensor([1.0, -2.0], dtype=D)
    assert torch.allclose(field_values(net, x), field_values(net, shifted), atol=1e-12)


# ---- bad input ---------------------------------------------------------------------------------------
def test_bad_input_raises_user_error():
    model = FourierModel([(1,)], [0.0])
    rhs = pde_rhs(get_pde("heat_1d"))
    x = grid(8, 1)
    with pytest.raises(UserError, match="scheme"):
        TENG(model, rhs, x, dt=0.1, scheme="rk4")
    with pytest.raises(UserError, match="dt"):
        TENG(model, rhs, x, dt=0.0)
    with pytest.raises(UserError, match="solver"):
        TENG(model, rhs, x, dt=0.1, solver="qr")
    with pytest.raises(UserError, match="points"):
        TENG(model, rhs, x[:, 0], dt=0.1)
    with pytest.raises(UserError, match="pointwise_rhs"):
        pde_rhs(get_pde("poisson"))
    with pytest.raises(UserError, match="shape"):
        get_pde("heat_2d").pointwise_rhs(_field, x)
    with pytest.raises(UserError, match="max_iterations"):
        fit_values(model, x, x[:, 0], max_iterations=0)
    # NaN passed `tol < 0` and then never compared true: the tolerance was silently ignored
    with pytest.raises(UserError, match="tol >= 0"):
        fit_values(model, x, x[:, 0], tol=float("nan"))
    with pytest.raises(UserError, match="tol >= 0"):
        TENG(model, rhs, x, dt=0.1, tol=float("nan"))


def test_a_misspelt_parameter_of_the_right_hand_side_is_refused():
    """pde_rhs left the default in force for a name the PDE does not have."""
    with pytest.raises(UserError, match=r"PDE 'heat_2d' has no parameter 'kapa'; allowed: "):
        pde_rhs(get_pde("heat_2d"), {"kapa": 0.1})
