"""Kuramoto–Sivashinsky: ETDRK4's observed temporal order, the leading Lyapunov exponent, burn-in
and stored window, invariants, resolution, batch independence, residual."""
import numpy as np
import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.pdes import Instance
from pde_lab.pdes.kuramoto_sivashinsky import KuramotoSivashinsky1D
from pde_lab.solvers.semilinear import PeriodicBox, solve_semilinear


class ShortKS(KuramotoSivashinsky1D):
    """Fewer stored frames, to keep the tests short (the plan rules are per interval)."""

    n_snapshots = 11


def _ks_solve(u0, L, T, steps, n):
    """The module's operator through the driver with a fixed step T/steps."""
    pde = KuramotoSivashinsky1D()
    box = PeriodicBox((n,), (1.0,))
    lin = pde.linear_operator(box, {"L": torch.tensor([L], dtype=torch.float64).reshape(1, 1, 1)})
    sol = solve_semilinear(box, u0[None, None], lin, pde.nonlinear(), [0.0, T], dt_max=T / steps,
                           coefficients={"L": [L]})
    assert sol.steps[0] == steps
    return sol.u[0, -1, 0].numpy()


def test_etdrk4_observed_order_on_ks():
    """L = 22, 64 points, smooth data, t = 1: errors against a 2048-step reference fall like dt^p,
    p ≥ 3.8 (measured 3.92 for 32 … 256 steps; errors 3.0e-9 … 8.7e-13)."""
    n, L, T = 64, 22.0, 1.0
    x = np.arange(n) / n
    u0 = 0.5 * np.cos(2 * np.pi * x) + 0.3 * np.sin(4 * np.pi * x + 1) + 0.2 * np.cos(6 * np.pi * x + 0.3)
    ref = _ks_solve(u0, L, T, 2048, n)
    steps = np.array([32, 64, 128, 256])
    errors = [np.linalg.norm(_ks_solve(u0, L, T, int(s), n) - ref) / np.linalg.norm(ref) for s in steps]
    order = np.polyfit(np.log(T / steps), np.log(errors), 1)[0]
    assert order >= 3.8, (order, errors)
    assert errors[0] < 1e-8


def test_leading_lyapunov_exponent_matches_the_large_domain_fit():
    """The chaos itself, not only the integrator: Benettin's method (a second state 1e-7 away, the gap
    measured and rescaled every 2 time units) over t = 3000 on the attractor at L = 100, averaged over
    four trajectories solved as one batch, gives λ1 within 12 % of the fit λ_i ≈ 0.093 − 0.94 (i − 0.39)/L
    of Edson, Bunder, Mattner & Roberts (2019), 0.0873 for i = 1 (measured 0.0919). One trajectory's
    estimate spreads over 0.084–0.097 (13 seeds), about 5 % above the fit on average, so a mean of four
    sits about 3 standard deviations inside the band."""
    L, n, dt, tau, T, m = 100.0, 512, 0.125, 2.0, 3000.0, 4
    pde = KuramotoSivashinsky1D()
    box = PeriodicBox((n,), (1.0,))
    lin = pde.linear_operator(box, {"L": torch.full((2 * m, 1, 1), L, dtype=torch.float64)})

    def advance(states, t):
        sol = solve_semilinear(box, states[:, None], lin, pde.nonlinear(), [0.0, t], dt_max=dt,
                               coefficients={"L": [L] * len(states)})
        return sol.u[:, -1, 0].numpy()

    rng = np.random.default_rng(0)
    x = np.arange(n) / n
    u = 0.3 * sum(rng.normal(size=(m, 1)) * np.cos(2 * np.pi * k * x + rng.uniform(0, 2 * np.pi, (m, 1)))
                  for k in range(1, 6))
    u = advance(np.concatenate([u, u]), 200.0)[:m]  # onto the attractor
    eps = 1e-7
    gap = rng.normal(size=(m, n))
    gap -= gap.mean(axis=1, keepdims=True)  # the mean is conserved: a shift of it is a neutral direction
    gap *= eps / np.linalg.norm(gap, axis=1, keepdims=True)
    log_growth = np.zeros(m)
    for _ in range(int(T / tau)):
        out = advance(np.concatenate([u, u + gap]), tau)
        a, b = out[:m], out[m:]
        size = np.linalg.norm(b - a, axis=1, keepdims=True)
        log_growth += np.log(size[:, 0] / eps)
        u, gap = a, (b - a) * (eps / size)
    lam = log_growth / T
    fit = 0.093 - 0.94 * (1 - 0.39) / L
    print(f"lambda1 = {lam.mean():.4f} (trajectories {np.round(lam, 4)}), fit {fit:.4f}")
    assert abs(lam.mean() / fit - 1) < 0.12, (lam, fit)


def test_stored_window_after_burn_in():
    pde = ShortKS()
    g = pde.grid(32)
    inst = pde.sample("easy", np.random.default_rng(0), g)
    p = {**inst.params, "t_burn": 20.0, "t_final": 30.0}
    r = pde.solve([Instance(p, inst.inputs)], g)
    assert np.allclose(r.times, np.linspace(20.0, 30.0, pde.n_snapshots))
    u = r.fields["u"][0]
    assert u.shape == (pde.n_snapshots, 32) and np.isfinite(u).all()
    assert not np.allclose(u[0], inst.inputs["u"])          # frame 0 is after the burn-in
    # burn-in: only the stability bound; stored intervals: 16 steps per 1.0 (the accuracy floor)
    umax = max(3.0, np.abs(inst.inputs["u"]).max())
    burn_steps = r.steps[0] - 16 * (pde.n_snapshots - 1)
    assert 20.0 / burn_steps * umax <= pde.advection_number < 2 * 20.0 / burn_steps * umax
    assert r.per_sample["dt"][0] == pytest.approx(1.0 / 16)


def test_mean_is_conserved_and_state_on_attractor():
    """u u_x = (u²/2)_x: the spatial mean is invariant (to round-off, through the burn-in too);
    on the attractor |u| stays O(3) and the solver grid resolves the spectrum to ~1e-8."""
    pde = ShortKS()
    g = pde.grid(64)
    inst = pde.sample("easy", np.random.default_rng(1), g)
    u0 = inst.inputs["u"] + 0.3  # a nonzero mean
    p = {**inst.params, "t_burn": 60.0, "t_final": 70.0}
    r = pde.solve([Instance(p, {"u": u0})], g)
    u = r.fields["u"][0]
    assert np.abs(u.mean(axis=1) - u0.mean()).max() < 1e-12
    assert 1.0 < np.abs(u).max() < 5.0
    assert r.per_sample["spectral_tail"][0] < 1e-7


def test_solver_resolution_scales_with_L_and_may_be_coarser_than_storage():
    pde = KuramotoSivashinsky1D()
    for L, n in ((22.0, 256), (64.0, 256), (128.0, 256), (22.0, 16)):
        ns = pde.solver_resolution({"L": L}, None, n)
        assert 2 * np.pi * ((ns - 1) // 3) / L >= pde.kappa_resolved
        assert ns % n == 0 or n % ns == 0 or ns < n
    assert pde.solver_resolution({"L": 22.0}, None, 256) < 256


@pytest.mark.parametrize("L", [24.35, 24.6, 24.85, 49.9, 22.0, 100.0])
def test_resolution_rule_holds_where_a_candidate_grid_sits_just_above_3x_plus_1(L):
    """``2π⌊(n_s − 1)/3⌋/L ≥ kappa_resolved`` for every L: 96 points (3·32) for L = 24.6 kept 31 modes,
    κ_max = 7.92 < 8, because the rule asked for n_s ≥ 3x + 1 instead of rounding the mode x up."""
    pde = KuramotoSivashinsky1D()
    ns = pde.solver_resolution({"L": L}, None, 256)
    assert 2 * np.pi * ((ns - 1) // 3) / L >= pde.kappa_resolved


def test_stored_frames_are_the_band_limited_solution():
    """Stored on 128 points from a 96-point solve: the spectrum above the solver's cut is zero."""
    pde = ShortKS()
    g = pde.grid(128)
    inst = pde.sample("easy", np.random.default_rng(2), g)
    p = {**inst.params, "L": 22.0, "t_burn": 10.0, "t_final": 12.0}
    r = pde.solve([Instance(p, inst.inputs)], g)
    ns = int(r.per_sample["solver_resolution"][0])
    assert ns < 128
    c = np.abs(np.fft.rfft(r.fields["u"][0], axis=-1))
    assert c[:, (ns - 1) // 3 + 1:].max() < 1e-13 * c.max()


def test_batch_independence_mixed_lengths():
    pde = ShortKS()
    g = pde.grid(32)
    rng = np.random.default_rng(3)
    insts = [pde.sample(lv, rng, g) for lv in ("easy", "hard", "easy", "medium")]
    insts = [Instance({**i.params, "t_burn": 5.0, "t_final": 6.0}, i.inputs) for i in insts]
    together = pde.solve(insts, g)
    assert len(set(together.per_sample["solver_resolution"])) > 1
    for i in (0, 1, 3):
        assert np.array_equal(pde.solve([insts[i]], g).fields["u"][0], together.fields["u"][i]), i


def test_residual_small_on_solution_large_on_perturbation():
    pde = ShortKS()
    g = pde.grid(64)
    inst = pde.sample("easy", np.random.default_rng(4), g)
    p = {**inst.params, "t_burn": 30.0, "t_final": 31.0}
    r = pde.solve([Instance(p, inst.inputs)], g)
    res = pde.residual(r.fields, p, g)
    pert = pde.residual({"u": r.fields["u"] + 0.1 * np.sin(6 * np.pi * g.axis(0))}, p, g)
    rms = lambda a: np.sqrt(np.mean(a**2))  # noqa: E731
    assert res.shape == (1, pde.n_snapshots - 2, 64)
    assert rms(res) < 0.1 * rms(pert), (rms(res), rms(pert))


def test_levels_and_bad_input():
    pde = KuramotoSivashinsky1D()
    g = pde.grid(16)
    rng = np.random.default_rng(5)
    lengths = []
    for name, level in pde.levels.items():
        inst = pde.sample(name, rng, g)
        lo, hi = level.ranges["L"]
        assert lo <= inst.params["L"] <= hi
        assert pde.dimensionless(inst.params, inst.inputs)["unstable_modes"] == pytest.approx(inst.params["L"] / (2 * np.pi))
        lengths.append(hi)
    assert lengths == sorted(lengths) and pde.default_task.mode == "window"
    with pytest.raises(UserError, match="t_burn"):
        pde.solve([Instance({**inst.params, "t_burn": 5.0, "t_final": 4.0}, inst.inputs)], g)
    with pytest.raises(UserError, match="share t_burn"):
        pde.solve([inst, Instance({**inst.params, "t_burn": 50.0}, inst.inputs)], g)
