"""Tests of the generic semilinear driver (pde_lab.solvers.semilinear): box, step plans, resampling,
exactness of linear problems, output sampling, batch independence, blow-up reports, CUDA."""
import math

import numpy as np
import pytest
import torch

from pde_lab.pdes.base import Instance
from pde_lab.solvers.semilinear import (BlowUpError, PeriodicBox, fourier_resample, plan_steps, solve_semilinear,
                                        solver_size, spectral_tail, time_derivative)


# ---- box, plans, sizes, resampling -------------------------------------------------------------
def test_box_derivatives_are_exact_for_trigonometric_polynomials():
    box = PeriodicBox((32, 24), (2.0, 3.0))
    x, y = np.meshgrid(np.arange(32) * 2.0 / 32, np.arange(24) * 3.0 / 24, indexing="ij")
    ax, ay = 2 * np.pi / 2.0 * 3, 2 * np.pi / 3.0 * 2
    u = np.sin(ax * x + 0.3) * np.cos(ay * y)
    v = box.to_spectral(torch.from_numpy(u))
    ux = box.to_physical(box.derivative(v, 0, 1)).numpy()
    uyy = box.to_physical(box.derivative(v, 1, 2)).numpy()
    lap = box.to_physical(box.laplacian(v)).numpy()
    uxxx = box.to_physical(box.derivative(v, 0, 3)).numpy()
    assert np.allclose(ux, ax * np.cos(ax * x + 0.3) * np.cos(ay * y), atol=1e-12)
    assert np.allclose(uyy, -ay**2 * u, atol=1e-11)
    assert np.allclose(lap, -(ax**2 + ay**2) * u, atol=1e-11)
    assert np.allclose(uxxx, -ax**3 * np.cos(ax * x + 0.3) * np.cos(ay * y), atol=1e-10)
    # the 2/3 rule keeps |m| < n/3 on every axis
    assert box.mask.shape == (32, 13) and bool(box.mask[10, 7]) and not bool(box.mask[11, 0]) and not bool(box.mask[0, 8])
    assert box.kappa_max == pytest.approx((2 * np.pi * 10 / 2.0, 2 * np.pi * 7 / 3.0))
    with pytest.raises(ValueError):
        PeriodicBox((2,), (1.0,))


@pytest.mark.parametrize("shape", [(16,), (16, 16), (24, 12)])
def test_transforms_do_not_depend_on_batch_mates(shape):
    """Fails with torch.fft.rfftn/irfftn over two axes, which round a field differently depending on
    how many share the call."""
    box = PeriodicBox(shape, (1.0,) * len(shape))
    u = torch.randn((5, 1) + shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = box.to_spectral(u)
    w = box.to_physical(v)
    for i in range(5):
        assert torch.equal(box.to_spectral(u[i:i + 1])[0], v[i]) and torch.equal(box.to_physical(v[i:i + 1])[0], w[i])
    ref = torch.fft.rfftn(u, dim=box.dims)
    assert torch.allclose(v, ref, rtol=0, atol=1e-12) and torch.allclose(w, u, rtol=0, atol=1e-14)


def test_odd_derivative_drops_the_nyquist_mode():
    box = PeriodicBox((8,), (1.0,))
    nyquist = torch.from_numpy(np.cos(np.pi * np.arange(8)))  # cos(π n x) on the grid
    d = box.to_physical(box.derivative(box.to_spectral(nyquist), 0, 1))
    assert torch.all(d == 0)


def test_plan_steps_rule():
    assert plan_steps([1.0, 1.0], 0.3) == (4, 4)
    assert plan_steps([1.0], math.inf) == (1,)
    assert plan_steps([1.0], math.inf, min_steps_per_interval=5) == (8,)
    assert plan_steps([0.5], 0.25) == (2,)                       # a bound met exactly is not doubled
    assert plan_steps([0.5], 0.25 * (1 - 1e-15)) == (2,)         # nor one met up to rounding
    assert plan_steps([0.5], 0.2499) == (4,)
    # a burn-in interval obeys dt_max only; output intervals also the accuracy floor
    assert plan_steps([100.0, 0.5, 0.5], 0.25, 16, burn_in=True) == (512, 16, 16)
    with pytest.raises(ValueError):
        plan_steps([1.0], 0.0)
    with pytest.raises(ValueError):
        plan_steps([0.0], 1.0)


def test_solver_size_candidates():
    assert solver_size(64, 110) == 128 and solver_size(64, 129) == 192 and solver_size(64, 10) == 128
    assert solver_size(16, 130) == 192 and solver_size(16, 0) == 32
    # coarser than the output grid only when allowed
    assert solver_size(256, 84, keep_output_modes=False) == 96
    assert solver_size(256, 300, keep_output_modes=False) == 512
    assert solver_size(16, 84, keep_output_modes=False) == 96


def test_fourier_resample_round_trip_and_interpolation():
    rng = np.random.default_rng(0)
    for shape, fine in (((12,), (36,)), ((8, 6), (16, 24))):
        u = rng.standard_normal((3,) + shape)
        up = fourier_resample(u, fine)
        assert up.shape == (3,) + fine
        strides = tuple(f // s for f, s in zip(fine, shape))
        assert np.allclose(up[(Ellipsis,) + tuple(slice(None, None, s) for s in strides)], u, atol=1e-13)
        # back onto the old grid: the same samples, less the (ambiguous) Nyquist modes
        c = np.fft.fftn(u, axes=tuple(range(-len(shape), 0)))
        for ax, n in enumerate(shape):
            idx = [slice(None)] * (1 + len(shape))
            idx[1 + ax] = n // 2
            c[tuple(idx)] = 0.0
        no_nyquist = np.real(np.fft.ifftn(c, axes=tuple(range(-len(shape), 0))))
        assert np.allclose(fourier_resample(up, shape), no_nyquist, atol=1e-13)
    # a band-limited function is interpolated exactly, and truncation keeps the low modes
    x = np.arange(16) / 16
    f = lambda z: np.sin(2 * np.pi * z) + 0.2 * np.cos(6 * np.pi * z + 1)  # noqa: E731
    xf = np.arange(48) / 48
    assert np.allclose(fourier_resample(f(x), (48,)), f(xf), atol=1e-13)
    assert np.allclose(fourier_resample(f(xf), (16,)), f(x), atol=1e-13)
    # each field alone: the same bytes with or without companions
    many = rng.standard_normal((4, 10, 10))
    assert np.array_equal(fourier_resample(many, (20, 30))[2], fourier_resample(many[2], (20, 30)))


def test_time_derivative_is_exact_for_quadratics():
    t = np.array([0.0, 0.1, 0.35, 0.4, 1.0])
    u = (3 * t**2 - t + 2)[None, :, None] * np.ones((2, 1, 3))
    d = time_derivative(u, t)
    assert np.allclose(d, (6 * t[1:-1] - 1)[None, :, None])
    dt = time_derivative(torch.from_numpy(u), t)
    assert isinstance(dt, torch.Tensor) and np.allclose(dt.numpy(), d)


# ---- linear problems, output sampling ----------------------------------------------------------
def test_linear_problem_is_exact_for_any_step():
    """N = None: v(t) = e^{L t} v0 to round-off, with one step per interval or many.

    ``L = c − a|κ|² − i b·κ`` per instance and component (diffusion, drift, growth: a real
    operator's symbol); the initial state has no Nyquist modes (their drift is not representable).
    """
    box = PeriodicBox((16, 16), (1.0, 1.0))
    g = torch.Generator().manual_seed(1)
    v0 = box.to_spectral(torch.randn(3, 2, 16, 16, generator=g, dtype=torch.float64))
    v0[:, :, 8] = 0.0
    v0[..., 8] = 0.0
    u0 = box.to_physical(v0)
    a, c = (torch.rand(3, 2, 1, 1, generator=g, dtype=torch.float64) for _ in range(2))
    bx, by = (torch.randn(3, 2, 1, 1, generator=g, dtype=torch.float64) * 3 for _ in range(2))
    lin = torch.complex(c - 1e-2 * a * box.k2, -(bx * box.kappa[0] + by * box.kappa[1]))
    times = np.array([0.0, 0.3, 0.6, 1.1])
    for min_steps in (1, 3, 32):
        sol = solve_semilinear(box, u0, lin, None, times, dealias=False, min_steps_per_interval=min_steps)
        v = box.to_spectral(sol.u)
        for j, t in enumerate(times):
            exact = torch.exp(lin * t) * v0
            err = (v[:, j] - exact).abs().max() / v0.abs().max()
            assert err < 1e-13, (min_steps, t, float(err))
        assert np.all(sol.steps_per_interval == plan_steps([0.3, 0.3, 0.5], math.inf, min_steps))
    assert np.isnan(sol.spectral_tail).all()


def test_output_on_a_finer_grid_is_the_band_limited_solution():
    """A dealiased solve on 12 points, stored on 36 (interpolated) and on 4 (strided), agrees with the
    exact solution of the heat equation evaluated there."""
    box = PeriodicBox((12,), (1.0,))
    x12, x36 = np.arange(12) / 12, np.arange(36) / 36
    def f(x, t):
        return (np.exp(-0.1 * (2 * np.pi) ** 2 * t) * np.sin(2 * np.pi * x)
                + np.exp(-0.1 * (6 * np.pi) ** 2 * t) * np.cos(6 * np.pi * x))
    u0 = torch.from_numpy(f(x12, 0.0))[None, None]
    lin = (-0.1 * box.k2)[None, None]
    zero = lambda box, cf: (lambda v: torch.zeros_like(v))  # noqa: E731
    t = [0.0, 0.05, 0.1]
    fine = solve_semilinear(box, u0, lin, zero, t, output_shape=(36,)).u[0, :, 0].numpy()
    coarse = solve_semilinear(box, u0, lin, zero, t, output_shape=(4,)).u[0, :, 0].numpy()
    ex = np.stack([f(x36, s) for s in t])
    assert np.allclose(fine, ex, atol=1e-14)
    assert np.allclose(coarse, ex[:, ::9], atol=1e-14)
    with pytest.raises(ValueError, match="output_shape"):
        solve_semilinear(box, u0, lin, zero, t, output_shape=(8,))


def test_records_plan_numbers_and_tail():
    box = PeriodicBox((32,), (1.0,))
    u0 = torch.from_numpy(0.5 + 0.3 * np.sin(2 * np.pi * np.arange(32) / 32))[None, None].repeat(2, 1, 1)
    lin = (-0.01 * box.k2)[None, None].repeat(2, 1, 1)

    def logistic(box, cf):
        return lambda v: box.to_spectral(-cf["r"] * box.to_physical(v) ** 2)

    sol = solve_semilinear(box, u0, lin, logistic, [0.0, 0.5, 1.0], coefficients={"r": [1.0, 3.0]},
                           step_limits={"reaction_number": (np.array([1.0, 3.0]), 0.2)}, min_steps_per_interval=2)
    assert np.array_equal(sol.steps_per_interval, [[4, 4], [8, 8]])
    assert np.allclose(sol.dt, [[0.125, 0.125], [0.0625, 0.0625]])
    assert np.allclose(sol.numbers["reaction_number"], [0.125, 0.1875])
    assert np.array_equal(sol.steps, [8, 16]) and np.allclose(sol.dt_max, [0.2, 0.2 / 3])
    assert np.all(sol.spectral_tail < 1e-9) and np.all(sol.spectral_tail > 0)
    # the diagnostic itself: a state with energy at the cut reports it
    v = torch.zeros(1, 1, 17, dtype=torch.complex128)
    v[0, 0, 1], v[0, 0, 10] = 2.0, 0.5
    assert float(spectral_tail(v, box)[0]) == 0.25


# ---- batch independence ------------------------------------------------------------------------
def _reaction_diffusion_batch(B=7, n=24):
    """2D two-component problem with per-instance coefficients and different step plans."""
    box = PeriodicBox((n, n), (1.0, 1.0))
    rng = np.random.default_rng(5)
    u0 = torch.from_numpy(rng.uniform(0, 1, (B, 2, n, n)))
    d = torch.from_numpy(rng.uniform(1e-3, 1e-2, B)).reshape(B, 1, 1, 1)
    lin = torch.cat([-d * box.k2, -2 * d * box.k2 - 0.1], dim=1)
    rates = rng.choice([1.0, 2.0, 4.0], B)

    def term(box, cf):
        def n_(v):
            w = box.to_physical(v)
            a, b = w[:, :1], w[:, 1:]
            r = cf["c"] * a * b * b
            return box.to_spectral(torch.cat([0.05 - r, r], dim=1))
        return n_
    kw = dict(coefficients={"c": rng.uniform(0.5, 1.5, B)}, step_limits={"rate": (rates, 0.5)})
    return box, u0, lin, term, kw


@pytest.mark.parametrize("threads", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_member_does_not_depend_on_batch_mates(threads):
    box, u0, lin, term, kw = _reaction_diffusion_batch()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = [0.0, 0.5, 1.0]
        together = solve_semilinear(box, u0, lin, term, t, **kw)
        assert len(set(map(tuple, together.steps_per_interval))) > 1  # several plans in one call
        perm = [4, 0, 6, 2, 1, 5, 3]
        kp = dict(coefficients={"c": kw["coefficients"]["c"][perm]},
                  step_limits={"rate": (kw["step_limits"]["rate"][0][perm], 0.5)})
        permuted = solve_semilinear(box, u0[perm], lin[perm], term, t, **kp)
        assert torch.equal(permuted.u, together.u[perm])
        for i in (0, 3, 6):
            ki = dict(coefficients={"c": kw["coefficients"]["c"][i:i + 1]},
                      step_limits={"rate": (kw["step_limits"]["rate"][0][i:i + 1], 0.5)})
            alone = solve_semilinear(box, u0[i:i + 1], lin[i:i + 1], term, t, **ki)
            assert torch.equal(alone.u[0], together.u[i]), i
            assert alone.spectral_tail[0] == together.spectral_tail[i]
    finally:
        torch.set_num_threads(previous)


def test_blow_up_names_the_instance():
    box = PeriodicBox((16,), (1.0,))
    u0 = torch.zeros(3, 1, 16, dtype=torch.float64)
    u0[1] = 3.0  # u' = u² from u0 = 3 blows up at t = 1/3
    lin = torch.zeros(3, 1, 9, dtype=torch.float64)
    square = lambda box, cf: (lambda v: box.to_spectral(box.to_physical(v) ** 2))  # noqa: E731
    names = [f"instance {i} with parameters {{'a': {i}}}" for i in (10, 11, 12)]
    with pytest.raises(BlowUpError, match=r"instance 11 with parameters \{'a': 11\}") as info:
        solve_semilinear(box, u0, lin, square, [0.0, 1.0], dt_max=0.01, instance_names=names, check_every=8)
    assert info.value.members == [1] and isinstance(info.value, RuntimeError)
    assert info.value.time < 0.5  # caught inside the interval, not only at its end


def test_bad_arguments():
    box = PeriodicBox((16,), (1.0,))
    u0 = torch.zeros(2, 1, 16, dtype=torch.float64)
    lin = torch.zeros(2, 1, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="u0"):
        solve_semilinear(box, u0[:, :, :8], lin, None, [0.0, 1.0])
    with pytest.raises(ValueError, match="linear"):
        solve_semilinear(box, u0, lin[:, :, :5], None, [0.0, 1.0])
    with pytest.raises(ValueError, match="times"):
        solve_semilinear(box, u0, lin, None, [0.0, 1.0, 1.0])


# ---- CUDA ----------------------------------------------------------------------------------------
def _gpu_cases():
    from pde_lab.pdes import advection, allen_cahn, fisher_kpp, gray_scott, heat, kuramoto_sivashinsky  # noqa: F401
    return [("heat_1d", 32, {}), ("heat_2d", 16, {}), ("advection_1d", 32, {}),
            ("allen_cahn_1d", 32, {"t_final": 2.0}), ("allen_cahn_2d", 16, {"t_final": 1.0}),
            ("kuramoto_sivashinsky_1d", 32, {"t_burn": 5.0, "t_final": 10.0}),
            ("fisher_kpp_1d", 32, {"t_final": 1.0}), ("gray_scott_2d", 16, {"t_final": 20.0})]


@pytest.mark.gpu
@pytest.mark.parametrize("case", range(8))
def test_cuda_matches_cpu(case):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from pde_lab.pdes import PDES
    name, n, override = _gpu_cases()[case]
    pde = PDES.get(name)()
    g = pde.grid(n)
    rng = np.random.default_rng(4)
    insts = []
    for level in pde.levels:
        inst = pde.sample(level, rng, g)
        insts.append(Instance({**inst.params, **override}, inst.inputs))
    cpu = pde.solve(insts, g)
    gpu = pde.solve(insts, g, device="cuda")
    for c in cpu.fields:
        scale = np.abs(cpu.fields[c]).max()
        assert np.allclose(gpu.fields[c], cpu.fields[c], rtol=0, atol=1e-10 * scale), c
    assert np.array_equal(gpu.steps, cpu.steps)


# ---- parameter checks ---------------------------------------------------------------------------
def _families_with_positive_params():
    from pde_lab.pdes import PDES
    from pde_lab.pdes.periodic_semilinear import PeriodicSemilinearPDE
    out = []
    for name in PDES.names():
        pde = PDES.get(name)()
        if isinstance(pde, PeriodicSemilinearPDE) and pde.positive_params:
            out.append(name)
    return out


@pytest.mark.parametrize("name", _families_with_positive_params())
def test_each_positive_parameter_is_checked_by_name(name):
    from pde_lab.pdes import PDES
    pde = PDES.get(name)()
    good = dict(pde.default_params())
    assert pde.check_params(good) is None
    for key in pde.positive_params:
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            assert pde.check_params({**good, key: bad}) == f"{key} must be positive and finite, got {bad!r}"


@pytest.mark.parametrize("name, key", [("kuramoto_sivashinsky_1d", "L"), ("fisher_kpp_1d", "r"),
                                       ("gray_scott_2d", "F"), ("allen_cahn_1d", "nu")])
def test_an_infinite_parameter_is_refused_by_name(name, key):
    """An infinite parameter passed ``> 0``: KS with L = inf looped forever in its resolution rule (the
    candidate list of ``solver_size`` grew without end), Fisher–KPP with r = inf and Gray–Scott with
    F = inf died of a ZeroDivisionError."""
    from pde_lab.errors import UserError
    from pde_lab.pdes import Instance, get_pde
    pde = get_pde(name)
    g = pde.grid(16)
    inst = pde.sample(next(iter(pde.levels)), np.random.default_rng(0), g)
    with pytest.raises(UserError, match=f"instance 0: {key} must be .*finite, got inf"):
        pde.solve([Instance({**inst.params, key: float("inf")}, inst.inputs)], g)


def test_solver_size_refuses_a_non_finite_need():
    with pytest.raises(ValueError, match="needed must be finite, got inf"):
        solver_size(64, float("inf"))
    with pytest.raises(ValueError, match="needed must be finite, got nan"):
        solver_size(64, float("nan"), keep_output_modes=False)
