"""Tests of pde_lab.solvers.spectral: Fourier helpers and the ETDRK4 integrator."""
from fractions import Fraction
from math import factorial

import numpy as np
import pytest
import torch

from pde_lab.solvers.spectral import (
    NonFiniteError,
    dealias_mask,
    etdrk4_coefficients,
    etdrk4_solve,
    etdrk4_step,
    imaginary_factor,
    multiply_imaginary,
    wavenumbers,
)


# ---- Fourier helpers ---------------------------------------------------------------------------
def test_wavenumbers_values_and_spectral_derivative():
    k = wavenumbers(8, 2.0)
    assert k.dtype == torch.float64 and k.shape == (5,)
    assert torch.allclose(k, torch.pi * torch.arange(5, dtype=torch.float64))
    full = wavenumbers(8, 2.0, real=False)
    assert full.tolist() == pytest.approx([torch.pi * m for m in (0, 1, 2, 3, -4, -3, -2, -1)])
    # d/dx sin(3·2πx/L) on L = 3 is exact to round-off with these wavenumbers.
    n, L = 32, 3.0
    x = torch.arange(n, dtype=torch.float64) * L / n
    u = torch.sin(3 * 2 * torch.pi * x / L)
    du = torch.fft.irfft(1j * wavenumbers(n, L) * torch.fft.rfft(u), n=n)
    assert torch.allclose(du, 3 * 2 * torch.pi / L * torch.cos(3 * 2 * torch.pi * x / L), atol=1e-12)


def test_dealias_mask_two_thirds_rule():
    assert dealias_mask(256).nonzero().max().item() == 85
    assert dealias_mask(9).tolist() == [True, True, True, False, False]
    full = dealias_mask(12, real=False)
    kept = torch.fft.fftfreq(12, 1 / 12)[full]
    assert sorted(kept.tolist()) == [-3, -2, -1, 0, 1, 2, 3]


def test_dealiased_product_is_alias_free():
    """The masked spectrum of a product of masked fields equals that of the exact product."""
    n, big = 48, 512
    g = torch.Generator().manual_seed(0)
    mask = dealias_mask(n)
    a = torch.complex(torch.randn(n // 2 + 1, generator=g, dtype=torch.float64),
                      torch.randn(n // 2 + 1, generator=g, dtype=torch.float64)) * mask
    b = torch.complex(torch.randn(n // 2 + 1, generator=g, dtype=torch.float64),
                      torch.randn(n // 2 + 1, generator=g, dtype=torch.float64)) * mask
    a[0], b[0] = a[0].real.item(), b[0].real.item()
    prod = torch.fft.rfft(torch.fft.irfft(a, n=n) * torch.fft.irfft(b, n=n)) * mask

    def pad(c):  # same trigonometric polynomial on a grid fine enough for the exact product
        out = torch.zeros(big // 2 + 1, dtype=torch.complex128)
        out[: c.numel()] = c * (big / n)
        return out

    exact = torch.fft.rfft(torch.fft.irfft(pad(a), n=big) * torch.fft.irfft(pad(b), n=big))[: n // 2 + 1] * (n / big)
    assert torch.allclose(prod, exact * mask, atol=1e-12)
    # The same check fails for unmasked inputs, whose product aliases onto the retained modes.
    a_full, b_full = a.clone(), b.clone()
    a_full[n // 3 : n // 2] = 1.0
    b_full[n // 3 : n // 2] = 1.0
    aliased = torch.fft.rfft(torch.fft.irfft(a_full, n=n) * torch.fft.irfft(b_full, n=n)) * mask
    exact_full = torch.fft.rfft(torch.fft.irfft(pad(a_full), n=big) * torch.fft.irfft(pad(b_full), n=big))
    assert not torch.allclose(aliased, exact_full[: n // 2 + 1] * (n / big) * mask, atol=1e-6)


# ---- ETDRK4 coefficients ---------------------------------------------------------------------------
def _taylor(numerator, power, terms=25):
    """Taylor coefficients of numerator(z)/z^power, numerator given by its coefficients (exact)."""
    return [numerator(m) for m in range(power, power + terms)]


def _exp_coeff(m):
    return Fraction(1, factorial(m)) if m >= 0 else Fraction(0)


def _series(z, coeffs):
    return sum(complex(float(c)) * z**j for j, c in enumerate(coeffs))


SERIES = {
    # coefficient of z^m in each numerator; the function is numerator / z^power
    "Q": (lambda m: Fraction(1, 2**m) * _exp_coeff(m), 1),
    "f1": (lambda m: 4 * _exp_coeff(m) - 3 * _exp_coeff(m - 1) + _exp_coeff(m - 2)
           - (4 if m == 0 else 0) - (1 if m == 1 else 0), 3),
    "f2": (lambda m: -2 * _exp_coeff(m) + _exp_coeff(m - 1) + (2 if m == 0 else 0) + (1 if m == 1 else 0), 3),
    "f3": (lambda m: 4 * _exp_coeff(m) - _exp_coeff(m - 1)
           - (4 if m == 0 else 0) - (3 if m == 1 else 0) - (1 if m == 2 else 0), 3),
}


def test_contour_coefficients_match_taylor_series_for_small_z():
    z = torch.tensor([0.0, 1e-12, -1e-8, 1e-6j, -1e-4 + 2e-4j, -1e-3, 3e-3, -0.05, 0.02 - 0.03j, -0.3],
                     dtype=torch.complex128)
    dt = 0.7
    c = etdrk4_coefficients(z / dt, dt, n_contour=64)
    for name, (num, power) in SERIES.items():
        coeffs = _taylor(num, power)
        expected = torch.tensor([_series(complex(zi), coeffs) for zi in z.tolist()], dtype=torch.complex128) * dt
        got = getattr(c, name)
        assert torch.allclose(got, expected, rtol=1e-14, atol=0), name
    assert torch.allclose(c.E, torch.exp(z)) and torch.allclose(c.E2, torch.exp(z / 2))


def test_contour_coefficients_match_closed_forms_away_from_zero():
    z = torch.tensor([-2.0, -7.5, -40.0, -1e4, 1.5, -1 + 3j, 4j], dtype=torch.complex128)
    c = etdrk4_coefficients(z, 1.0, n_contour=64)
    e = torch.exp(z)
    closed = {
        "Q": (torch.exp(z / 2) - 1) / z,
        "f1": (-4 - z + e * (4 - 3 * z + z**2)) / z**3,
        "f2": (2 + z + e * (z - 2)) / z**3,
        "f3": (-4 - 3 * z - z**2 + e * (4 - z)) / z**3,
    }
    for name, ref in closed.items():
        assert torch.allclose(getattr(c, name), ref, rtol=1e-12, atol=1e-300), name


def test_real_operator_gives_real_coefficients_and_batched_shape():
    L = -torch.rand(3, 17, dtype=torch.float64) * 100
    c = etdrk4_coefficients(L, 0.01)
    for t in (c.Q, c.f1, c.f2, c.f3, c.E, c.E2):
        assert t.shape == (3, 17) and t.dtype == torch.complex128
        assert torch.all(t.imag == 0)


# ---- ETDRK4 integration ------------------------------------------------------------------------
def _random_state(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64))


def test_linear_problem_is_exact_to_round_off():
    """N = 0 and a constant forcing N = f are integrated exactly (the scheme's weights sum to φ1)."""
    B, K, T, steps = 3, 40, 2.0, 7
    scale = torch.rand(B, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(44))
    L = torch.complex(-torch.linspace(0, 300, K, dtype=torch.float64).repeat(B, 1) * scale,
                      torch.linspace(-20, 20, K, dtype=torch.float64).repeat(B, 1))
    v0 = _random_state((B, K), 1)
    out, taken = etdrk4_solve(v0, L, lambda v: torch.zeros_like(v), T / steps, steps, [0, steps])
    assert taken == steps
    assert torch.allclose(out[:, 1], torch.exp(L * T) * v0, rtol=1e-13, atol=1e-14)
    f = _random_state((B, K), 2)
    out, _ = etdrk4_solve(v0, L, lambda v: f.expand_as(v), T / steps, steps, [steps])
    z = L * T
    phi1 = torch.where(z == 0, torch.ones_like(z), torch.expm1(z) / torch.where(z == 0, torch.ones_like(z), z))
    exact = torch.exp(z) * v0 + T * phi1 * f
    assert torch.allclose(out[:, 0], exact, rtol=1e-12, atol=1e-13)


def _bernoulli(u0, lam, t):
    """Exact solution of u' = λu + u²: w = 1/u solves w' = −λw − 1."""
    w0 = 1.0 / u0
    return 1.0 / ((w0 + 1.0 / lam) * np.exp(-lam * t) - 1.0 / lam)


def test_observed_temporal_order_is_four():
    """Diagonal semilinear system u' = λu + u² (componentwise) against its exact solution."""
    lam = np.array([-3.0, -1.0, -0.3, 0.2, -1.0 + 2.0j, -0.5 - 1.0j])
    u0 = np.array([0.5, 0.7, -0.4, 0.3, 0.4 + 0.1j, -0.2 + 0.3j])
    T = 1.0
    exact = torch.as_tensor(_bernoulli(u0, lam, T))
    L = torch.as_tensor(lam, dtype=torch.complex128)
    v0 = torch.as_tensor(u0, dtype=torch.complex128)[None]
    steps = np.array([4, 8, 16, 32, 64])
    errors = []
    for s in steps:
        out, _ = etdrk4_solve(v0, L, lambda v: v * v, T / s, int(s), [int(s)])
        errors.append(torch.linalg.norm(out[0, 0] - exact).item() / torch.linalg.norm(exact).item())
    order = np.polyfit(np.log(T / steps), np.log(errors), 1)[0]
    assert order >= 3.8, (order, errors)
    assert errors[-1] < 1e-8


def test_snapshots_at_requested_steps_and_validation():
    L = -torch.arange(5, dtype=torch.float64)
    v0 = torch.ones(2, 5, dtype=torch.complex128)
    out, taken = etdrk4_solve(v0, L, lambda v: torch.zeros_like(v), 0.1, 10, [0, 3, 10])
    assert out.shape == (2, 3, 5) and taken == 10
    for j, s in enumerate([0, 3, 10]):
        assert torch.allclose(out[:, j], torch.exp(L * 0.1 * s).to(torch.complex128).expand(2, 5))
    with pytest.raises(ValueError, match="save_steps"):
        etdrk4_solve(v0, L, lambda v: v, 0.1, 10, [0, 11])
    with pytest.raises(ValueError, match="dt"):
        etdrk4_coefficients(L, 0.0)


@pytest.mark.parametrize("complex_operator", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_batch_member_does_not_depend_on_batch_mates(complex_operator, threads):
    """Per-member operators: each member alone and inside a batch agree bit for bit.

    The sizes are odd and large enough (over torch's 32768-element grain) that with two threads
    the batch is split between threads at a position that is not a row boundary.
    """
    B, K, n = 17, 1025, 2048
    g = torch.Generator().manual_seed(4)
    L = -torch.rand(B, K, generator=g, dtype=torch.float64) * torch.arange(K, dtype=torch.float64) ** 2 * 1e-3
    if complex_operator:
        L = torch.complex(L, torch.randn(B, K, generator=g, dtype=torch.float64) * 10)
    v0 = _random_state((B, K), 3) * 0.1
    v0[:, 0] = v0[:, 0].real.to(torch.complex128)
    factor = imaginary_factor(0.3 * torch.arange(K, dtype=torch.float64))

    def nonlinear(v):
        return multiply_imaginary(factor, torch.fft.rfft(torch.fft.irfft(v, n=n) ** 2))

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        together, _ = etdrk4_solve(v0, L, nonlinear, 1e-3, 5, [5])
        for b in (0, 7, B - 1):
            alone, _ = etdrk4_solve(v0[b : b + 1], L[b : b + 1], nonlinear, 1e-3, 5, [5])
            assert torch.equal(alone[0], together[b])
    finally:
        torch.set_num_threads(previous)


def test_blow_up_names_members():
    # u' = u² blows up at t = 1/u0: member 1 (u0 = 5) by t = 0.2, the others stay finite up to t = 1.
    v0 = torch.tensor([[0.1], [5.0], [0.2]], dtype=torch.complex128)
    L = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(NonFiniteError) as info:
        etdrk4_solve(v0, L, lambda v: v * v, 0.05, 20, list(range(0, 21, 5)))
    assert info.value.members == [1]
    assert isinstance(info.value, RuntimeError)


def test_step_reuses_given_nonlinear_value():
    L = -torch.ones(4, dtype=torch.float64)
    v = _random_state((2, 4), 5)
    c = etdrk4_coefficients(L, 0.1)
    nl = lambda w: 0.5 * w * w  # noqa: E731
    assert torch.equal(etdrk4_step(v, nl, c), etdrk4_step(v, nl, c, nv=nl(v)))


@pytest.mark.parametrize("complex_operator", [False, True])
def test_precomputed_forcing_equals_forcing_in_the_nonlinear_term(complex_operator):
    L = -torch.linspace(0.0, 30.0, 6, dtype=torch.float64)
    if complex_operator:
        L = torch.complex(L, torch.linspace(-5.0, 5.0, 6, dtype=torch.float64))
    v, f = _random_state((3, 6), 6), _random_state((3, 6), 7)
    c = etdrk4_coefficients(L, 0.05)
    nl = lambda w: 0.5 * w * w  # noqa: E731
    folded = etdrk4_step(v, nl, c, forcing=c.forcing_terms(f))
    assert torch.allclose(folded, etdrk4_step(v, lambda w: nl(w) + f, c), rtol=1e-13, atol=1e-13)
    assert not torch.allclose(folded, etdrk4_step(v, nl, c), rtol=1e-6, atol=1e-6)


def test_dealiased_coefficients_project_the_nonlinear_term():
    L = -torch.linspace(0.0, 30.0, 8, dtype=torch.float64)
    keep = torch.tensor([True, True, True, False, True, False, True, False])
    v = _random_state((2, 8), 8) * keep
    c = etdrk4_coefficients(L, 0.05)
    nl = lambda w: 0.5 * w * w + 1.0  # noqa: E731
    zero = torch.zeros((), dtype=torch.complex128)
    masked = etdrk4_step(v, lambda w: torch.where(keep, nl(w), zero), c)
    folded = etdrk4_step(v, nl, c.dealiased(keep))
    assert torch.allclose(folded, masked, rtol=1e-14, atol=1e-14)
    assert torch.equal(folded[:, ~keep], torch.zeros_like(folded[:, ~keep]))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    L = -torch.rand(3, 64, dtype=torch.float64) * 1e3
    v0 = _random_state((3, 64), 7) * 0.01
    nl = lambda v: 1j * v * v  # noqa: E731
    cpu, _ = etdrk4_solve(v0, L, nl, 1e-3, 50, [50])
    gpu, _ = etdrk4_solve(v0.cuda(), L.cuda(), nl, 1e-3, 50, [50])
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-12, atol=1e-14)


def test_coefficients_match_50_digit_values_near_the_unit_circle():
    """Q, f1, f2, f3 against mpmath at 50 digits for |z| from 1e-3 to 30, including |z| ≈ 1, where a
    radius-1 contour around z passes next to the removable singularity at 0 (it lost 8 digits at
    z = −0.99 − 0.15i)."""
    import mpmath

    mpmath.mp.dps = 50
    radii = [1e-3, 0.3, 0.9, 0.99, 0.999, 1.0, 1.001, 1.01, 1.5, 5.0, 30.0]
    angles = np.linspace(0.0, 2.0 * np.pi, 37)[:-1] + 0.01
    z = np.array([r * np.exp(1j * a) for r in radii for a in angles])
    c = etdrk4_coefficients(torch.as_tensor(z), dt=1.0)

    def exact(zz):
        zz = mpmath.mpc(zz.real, zz.imag)
        e = mpmath.exp(zz)
        return [mpmath.expm1(zz / 2) / zz, (-4 - zz + e * (4 - 3 * zz + zz**2)) / zz**3,
                (2 + zz + e * (zz - 2)) / zz**3, (-4 - 3 * zz - zz**2 + e * (4 - zz)) / zz**3]

    ref = np.array([[complex(v) for v in exact(zz)] for zz in z])  # (n, 4)
    got = np.stack([c.Q.numpy(), c.f1.numpy(), c.f2.numpy(), c.f3.numpy()], axis=1)
    rel = np.abs(got - ref) / np.abs(ref)
    assert rel.max() < 1e-13, (rel.max(), z[np.unravel_index(rel.argmax(), rel.shape)[0]])
