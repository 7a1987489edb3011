"""The FNO and the model registry: shapes, discretisation invariance, real weights, rebuild from args."""
import math

import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.operators import FNO, MODELS, SpectralConv, build_model, load_model, save_model


def _wave_1d(n: int, modes=((1, 0.7, 0.2), (3, -0.4, 0.5))) -> torch.Tensor:
    """A band-limited periodic signal on [0, 1) sampled at ``n`` points: ``(1, 1, n)`` float64."""
    x = torch.arange(n, dtype=torch.float64) / n
    u = sum(a * torch.cos(2 * math.pi * k * x) + b * torch.sin(2 * math.pi * k * x) for k, a, b in modes)
    return u.reshape(1, 1, n)


def test_registry_has_fno_and_names_allowed_models():
    assert "fno" in MODELS
    with pytest.raises(UserError, match="allowed: .*fno"):
        build_model("no_such_model")
    with pytest.raises(UserError, match="no argument 'depth'.*allowed: .*width"):
        build_model("fno", depth=3)


def test_fno_defaults_follow_the_paper():
    c1, c2 = FNO(n_dims=1).config, FNO(n_dims=2).config
    assert (c1["width"], c1["modes"], c1["n_layers"], c1["proj_width"]) == (64, [16], 4, 128)
    assert (c2["width"], c2["modes"], c2["n_layers"]) == (32, [12, 12], 4)


@pytest.mark.parametrize("n_dims,space", [(1, (40,)), (2, (24, 18)), (3, (8, 10, 9))])
def test_fno_shapes(n_dims, space):
    model = build_model("fno", in_channels=3, out_channels=2, n_dims=n_dims, width=6, modes=4)
    out = model(torch.randn(5, 3, *space))
    assert out.shape == (5, 2, *space)


@pytest.mark.parametrize("padding", [5, 0.25])
def test_fno_padding_keeps_shape(padding):
    model = build_model("fno", in_channels=1, out_channels=1, n_dims=2, width=6, modes=3, padding=padding)
    assert model(torch.randn(2, 1, 12, 16)).shape == (2, 1, 12, 16)


def test_fno_runs_at_other_resolutions():
    model = build_model("fno", in_channels=1, out_channels=1, n_dims=2, width=6, modes=4)
    for space in [(8, 8), (16, 32), (33, 17)]:
        assert model(torch.randn(1, 1, *space)).shape == (1, 1, *space)
    with pytest.raises(UserError, match="at least 8"):
        model(torch.randn(1, 1, 6, 16))


@pytest.mark.parametrize("args,message", [
    (dict(width=2.5), "FNO width must be a positive integer, got 2.5"),
    (dict(width="wide"), "FNO width must be a positive integer, got 'wide'"),
    (dict(modes=4.5), "FNO modes must be a positive integer, got 4.5"),
    (dict(modes=[4, 0], n_dims=2), "FNO modes must be a positive integer, got 0"),
    (dict(n_dims=2.5), "FNO supports n_dims 1, 2, 3, got 2.5"),
    (dict(n_dims=4), "FNO supports n_dims 1, 2, 3, got 4"),
    (dict(grid="false"), "FNO grid must be true or false, got 'false'"),
    (dict(padding=float("nan")), "FNO padding must be a non-negative"),
    (dict(transform="fftw"), "unknown FNO transform 'fftw'"),
])
def test_fno_rejects_bad_arguments_instead_of_truncating_them(args, message):
    """A value that int() or bool() would silently change (2.5 -> 2, "false" -> True) is refused."""
    with pytest.raises(UserError, match=message):
        build_model("fno", **args)
    assert build_model("fno", width=4.0, modes=3.0, grid=0).config == build_model("fno", width=4, modes=3,
                                                                                    grid=False).config


def test_fno_rejects_wrong_input_channels():
    model = build_model("fno", in_channels=2, out_channels=1, n_dims=1, width=4, modes=2)
    with pytest.raises(UserError, match=r"\(batch, 2"):
        model(torch.randn(1, 3, 16))


def test_spectral_conv_is_discretisation_invariant():
    """A band-limited input sampled at n and 2n points gives the same output at the common points."""
    torch.manual_seed(0)
    layer = SpectralConv(1, 2, [5]).double()
    coarse, fine = layer(_wave_1d(32)), layer(_wave_1d(64))
    torch.testing.assert_close(fine[..., ::2], coarse, rtol=1e-10, atol=1e-12)
    assert coarse.abs().max() > 1e-3  # the modes pass through, so the comparison means something


def test_spectral_conv_2d_keeps_negative_and_positive_low_modes_only():
    """rfft2 corner blocks: wave number -2 on the first axis passes, 5 (beyond modes=3) is cut."""
    torch.manual_seed(0)
    layer = SpectralConv(1, 1, [3, 3]).double()
    n = 16
    axis = torch.arange(n, dtype=torch.float64) / n
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    neg = torch.cos(2 * math.pi * (-2 * x + 1 * y)).reshape(1, 1, n, n)
    high = torch.cos(2 * math.pi * (5 * x + 1 * y)).reshape(1, 1, n, n)
    assert layer(neg).abs().max() > 1e-4
    assert layer(high).abs().max() < 1e-12


def _reference_spectral_conv(layer: SpectralConv, x: torch.Tensor) -> torch.Tensor:
    """The textbook form: full rfftn, multiply each corner block, irfftn."""
    import itertools
    d = layer.n_dims
    dims = tuple(range(-d, 0))
    x_hat = torch.fft.rfftn(x, dim=dims)
    out = x_hat.new_zeros((x.shape[0], layer.out_channels, *x_hat.shape[2:]))
    w = torch.view_as_complex(layer.weight)
    for signs in itertools.product((0, 1), repeat=d - 1):
        xi, wi = [], []
        for neg, m in zip(signs, layer.modes[:-1]):
            xi.append(slice(-m, None) if neg else slice(0, m))
            wi.append(slice(m, 2 * m) if neg else slice(0, m))
        xi.append(slice(0, layer.modes[-1]))
        wi.append(slice(0, layer.modes[-1]))
        full = (slice(None), slice(None), *xi)
        out[full] = torch.einsum("bi...,io...->bo...", x_hat[full], w[(slice(None), slice(None), *wi)])
    return torch.fft.irfftn(out, s=x.shape[2:], dim=dims)


@pytest.mark.parametrize("modes,space", [([5], (16,)), ([3, 4], (10, 9)), ([2, 3, 2], (6, 8, 5)), ([4, 5], (8, 8))])
def test_truncated_transform_equals_full_rfftn(modes, space):
    torch.manual_seed(0)
    layer = SpectralConv(2, 3, modes).double()
    x = torch.randn(2, 2, *space, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _reference_spectral_conv(layer, x), rtol=1e-10, atol=1e-12)


def test_spectral_weights_are_real():
    model = build_model("fno", in_channels=1, out_channels=1, n_dims=2, width=4, modes=3)
    for name, p in model.named_parameters():
        assert not p.is_complex(), name
    w = model.spectral[0].weight
    assert w.dtype == torch.float32 and w.shape == (4, 4, 6, 3, 2)


@pytest.mark.parametrize("transform", ["fft", "dft"])
@pytest.mark.parametrize("modes,space", [([3, 2], (8, 6)), ([5], (8,)), ([2, 3], (4, 4)), ([2, 2, 2], (4, 5, 2))])
def test_spectral_conv_gradient_matches_finite_differences(transform, modes, space):
    """Both transforms, including the Nyquist column (5 modes on 8 points, 3 on 4) whose imaginary
    part the inverse real transform drops, and both blocks of a two-sided axis filling it (2 of 4)."""
    torch.manual_seed(0)
    layer = SpectralConv(2, 3, modes, transform=transform).double()
    x = torch.randn(2, 2, *space, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)

    def f(x, w):
        return torch.func.functional_call(layer, {"weight": w}, (x,))

    assert torch.autograd.gradcheck(f, (x, w), eps=1e-6, atol=1e-7)


def test_fno_without_grid_commutes_with_periodic_shifts():
    """Every operation is pointwise or a convolution, so without the coordinate channels a circular
    shift of the input shifts the output; appending the grid breaks that, as it should."""
    torch.manual_seed(0)
    u = torch.randn(2, 1, 32)
    for grid, equivariant in [(False, True), (True, False)]:
        model = build_model("fno", n_dims=1, width=8, modes=6, grid=grid)
        shifted = model(torch.roll(u, 5, dims=-1))
        close = torch.allclose(shifted, torch.roll(model(u), 5, dims=-1), atol=1e-5)
        assert close == equivariant


def test_save_and_load_rebuild_an_identical_model(tmp_path):
    torch.manual_seed(1)
    model = build_model("fno", in_channels=2, out_channels=3, n_dims=2, width=5, modes=[3, 2], padding=0.1)
    path = tmp_path / "model.pt"
    save_model(model, path)
    stored = torch.load(path, weights_only=True)
    assert set(stored) == {"name", "args", "state_dict"} and stored["name"] == "fno"
    rebuilt = load_model(path)
    assert rebuilt.config == model.config
    x = torch.randn(2, 2, 10, 9)
    torch.testing.assert_close(rebuilt(x), model.eval()(x), rtol=0, atol=0)
    # From the args alone: a fresh build with the stored args has the same architecture.
    fresh = build_model(stored["name"], **stored["args"])
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in stored["state_dict"].items()}


def test_load_model_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="missing state_dict"):
        load_model({"name": "fno", "args": {}})
