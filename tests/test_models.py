"""Every registered neural operator, in a loop (shapes, extra channels, float64, resolution change,
checkpoint round trip, a few Adam steps), then the properties particular to each architecture.

``pinn_mlp`` is left out of the loop: it maps coordinate points ``(N, in_dim) -> (N, out_dim)`` for
physics-informed training, not fields ``(B, C, *space)``, and has its own tests in ``test_pinn.py``.
"""
import math

import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.operators import MODELS, build_model, load_model, save_model
from pde_lab.operators.cno import AliasFreeAct, resample
from pde_lab.operators.ffno import FactorizedSpectralConv
from pde_lab.operators.transformer import GalerkinAttention

NOT_FIELD_OPERATORS = {"pinn_mlp"}
OPERATORS = [n for n in MODELS.names() if n not in NOT_FIELD_OPERATORS]

# Tiny architectures, so the whole loop runs in seconds on one core.
TINY = {
    "fno": dict(width=6, modes=4, n_layers=2, proj_width=12),
    "ffno": dict(width=6, modes=4, n_layers=2, ff_width=8, proj_width=12),
    "unet": dict(widths=[8, 16], blocks=1),
    "deeponet": dict(basis=8, width=16, depth=2),
    "cno": dict(width=4, levels=2, n_res=1, n_res_neck=1),
    "galerkin_transformer": dict(width=8, heads=2, n_layers=2, proj_width=12),
}
SPACE = {1: (32,), 2: (16, 16)}
OTHER_SPACE = {1: (48,), 2: (24, 20)}
CASES = [(name, d) for name in OPERATORS for d in (1, 2)]


def tiny(name: str, n_dims: int, in_channels: int = 3, out_channels: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, in_channels=in_channels, out_channels=out_channels, n_dims=n_dims, **TINY[name])


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("bad,message", [
    (dict(n_dims=1.5), "supports n_dims .*got 1.5"),
    (dict(in_channels=2.5), "in_channels must be a positive integer, got 2.5"),
    (dict(out_channels=0), "out_channels must be a positive integer, got 0"),
])
def test_every_field_operator_refuses_non_integer_or_zero_shapes(name, bad, message):
    """Nothing is truncated by int() into a different architecture than the one asked for."""
    with pytest.raises(UserError, match=message):
        build_model(name, **{**TINY[name], **bad})


def test_flags_must_be_booleans():
    """bool("false") is True: a string from a config would silently flip these switches."""
    with pytest.raises(UserError, match="F-FNO share_weights must be true or false, got 'false'"):
        build_model("ffno", share_weights="false")
    with pytest.raises(UserError, match="F-FNO grid must be true or false, got 'no'"):
        build_model("ffno", grid="no")
    assert build_model("ffno", share_weights=1, grid=0).config["grid"] is False


def test_every_field_operator_has_tiny_test_arguments():
    """A newly registered model must join the loop below; list its tiny arguments in TINY."""
    assert {"fno", "ffno", "unet", "deeponet", "cno", "galerkin_transformer"} <= set(OPERATORS)
    assert set(OPERATORS) <= set(TINY), f"no TINY arguments for {sorted(set(OPERATORS) - set(TINY))}"


@pytest.mark.parametrize("name,n_dims", CASES)
def test_shapes_with_extra_channels_and_at_another_resolution(name, n_dims):
    model = tiny(name, n_dims)
    for space in (SPACE[n_dims], OTHER_SPACE[n_dims]):
        out = model(torch.randn(2, 3, *space))
        assert out.shape == (2, 2, *space) and torch.isfinite(out).all()
    with pytest.raises(UserError, match=r"\(batch, 3"):
        model(torch.randn(2, 4, *SPACE[n_dims]))


@pytest.mark.parametrize("name,n_dims", CASES)
def test_float64_agrees_with_float32(name, n_dims):
    model = tiny(name, n_dims).eval()
    x = torch.randn(2, 3, *SPACE[n_dims])
    y32 = model(x)
    y64 = model.double()(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,n_dims", CASES)
def test_checkpoint_round_trip_gives_identical_outputs(name, n_dims, tmp_path):
    model = tiny(name, n_dims, seed=1)
    # One training step so that normalisation statistics and weights differ from a fresh build.
    x = torch.randn(3, 3, *SPACE[n_dims])
    model.train()
    torch.optim.Adam(model.parameters(), lr=1e-2).zero_grad()
    model(x).square().mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(1e-2 * p.grad)
    save_model(model, tmp_path / "m.pt")
    rebuilt = load_model(tmp_path / "m.pt")
    assert rebuilt.spec() == model.spec()
    fresh = tiny(name, n_dims, seed=2).eval()
    model.eval()
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert not torch.allclose(fresh(x), model(x))  # the weights really came from the file


def _smoothing_problem(n_dims: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random fields (the low modes of white noise) and their periodic 3-point average plus a
    square: ``(n, 3, *space)`` -> ``(n, 2, *space)``."""
    g = torch.Generator().manual_seed(0)
    space = SPACE[n_dims]
    x = resample(resample(torch.randn(n, 3, *space, generator=g), [4] * n_dims), space) * 2.0
    u = x[:, :1]
    avg = sum(torch.roll(u, s, dims=-1) for s in (-1, 0, 1)) / 3
    return x, torch.cat([avg, 0.5 * u ** 2 + x[:, 1:2]], dim=1)


@pytest.mark.parametrize("name,n_dims", CASES)
def test_twenty_adam_steps_lower_the_loss(name, n_dims):
    x, y = _smoothing_problem(n_dims)
    model = tiny(name, n_dims).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = (model(x) - y).square().mean() / y.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


# ---- training through the trainer, by name ------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from pde_lab.datasets import GenerateConfig, generate

    out = tmp_path_factory.mktemp("toy") / "data"
    return generate(GenerateConfig(pde="toy_scale", out=str(out), n_train=4, n_valid=2, n_test=1,
                                   batch_size=4, progress=False))


@pytest.mark.parametrize("name", OPERATORS)
def test_train_builds_each_model_by_name(name, toy_data, tmp_path):
    """``pde-lab train --model NAME``: the trainer fills in channels and n_dims, trains, reloads."""
    from pde_lab.training import TrainConfig, load_run, train

    args = {"fno": dict(width=4, modes=3, proj_width=8), "ffno": dict(width=4, modes=3, proj_width=8)}
    config = TrainConfig(data=str(toy_data), model=name, model_args={**TINY[name], **args.get(name, {})},
                         epochs=1, batch_size=2, out=str(tmp_path / "run"), device="cpu", progress=False)
    run = load_run(train(config))
    assert run.config.model_args["in_channels"] == 2 and run.config.model_args["n_dims"] == 2
    assert run.predict(torch.randn(2, 1, 8, 8, 2)).shape == (2, 1, 8, 8, 3)


# ---- F-FNO -------------------------------------------------------------------------------------------
def _plane_wave(n: int, kx: int, ky: int) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / n
    x, y = torch.meshgrid(t, t, indexing="ij")
    return torch.cos(2 * math.pi * (kx * x + ky * y)).reshape(1, 1, n, n)


def test_factorized_conv_cuts_per_axis_not_per_corner():
    """A wave above the cutoff on both axes is removed; one above it along x only passes through the
    y-transform's wave number 0 (the F-FNO is not a 2D low-pass, unlike the FNO)."""
    torch.manual_seed(0)
    layer = FactorizedSpectralConv(1, 1, [3, 3]).double()
    assert layer(_plane_wave(16, 5, 5)).abs().max() < 1e-12
    assert layer(_plane_wave(16, 5, 0)).abs().max() > 1e-3
    assert layer(_plane_wave(16, 2, 1)).abs().max() > 1e-3


def test_factorized_conv_is_discretisation_invariant():
    torch.manual_seed(0)
    layer = FactorizedSpectralConv(1, 2, [4, 4]).double()
    field = lambda n: _plane_wave(n, 2, -1) + _plane_wave(n, 1, 3)  # noqa: E731
    coarse, fine = layer(field(16)), layer(field(32))
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, rtol=1e-10, atol=1e-12)


def test_factorized_conv_gradient_matches_finite_differences():
    torch.manual_seed(0)
    layer = FactorizedSpectralConv(2, 2, [3, 2]).double()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    w0, w1 = (w.detach().clone().requires_grad_(True) for w in layer.weights)
    f = lambda x, a, b: torch.func.functional_call(layer, {"weights.0": a, "weights.1": b}, (x,))  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w0, w1), eps=1e-6, atol=1e-7)


def test_ffno_weight_sharing_and_real_weights():
    shared = build_model("ffno", n_dims=2, width=8, modes=4, n_layers=4, share_weights=True)
    separate = build_model("ffno", n_dims=2, width=8, modes=4, n_layers=4)
    n_spectral = 8 * 8 * 4 * 2 * 2  # per layer: two axes of (in, out, modes, re/im)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(separate) - count(shared) == 3 * n_spectral
    assert all(not p.is_complex() for p in separate.parameters())


@pytest.mark.parametrize("name", ["fno", "ffno"])
def test_domain_padding_per_axis(name):
    """Padding only the non-periodic axis changes the output and keeps the shape; a wrong-length list
    is refused."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 12)
    outs = {}
    for padding in (0, [0, 0.25], 4):
        torch.manual_seed(0)
        model = build_model(name, n_dims=2, width=4, modes=3, n_layers=1, padding=padding)
        outs[str(padding)] = model(x)
        assert outs[str(padding)].shape == (1, 1, 16, 12)
    assert not torch.allclose(outs["0"], outs["[0, 0.25]"]) and not torch.allclose(outs["[0, 0.25]"], outs["4"])
    with pytest.raises(UserError, match="one value per spatial axis"):
        build_model(name, n_dims=2, padding=[1, 2, 3])
    with pytest.raises(UserError, match="non-negative"):
        build_model(name, n_dims=2, padding=-1)


# ---- U-Net -------------------------------------------------------------------------------------------
def test_unet_handles_sizes_not_divisible_by_the_levels():
    model = build_model("unet", n_dims=2, widths=[4, 8, 8], pad_mode="zeros")
    assert model(torch.randn(1, 1, 13, 7)).shape == (1, 1, 13, 7)
    assert build_model("unet", n_dims=1, widths=[4, 8, 8])(torch.randn(1, 1, 5)).shape == (1, 1, 5)


def test_circular_unet_commutes_with_shifts_by_its_coarsest_cell():
    """With circular padding every layer is periodic-translation equivariant for shifts that are
    multiples of the total stride (4 for three levels); zero padding breaks it."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16)
    for pad_mode, equivariant in [("circular", True), ("zeros", False)]:
        torch.manual_seed(0)
        model = build_model("unet", n_dims=2, widths=[4, 8, 8], pad_mode=pad_mode).eval()
        shifted = model(torch.roll(x, (4, 8), dims=(-2, -1)))
        assert torch.allclose(shifted, torch.roll(model(x), (4, 8), dims=(-2, -1)), atol=1e-5) == equivariant


def test_unet_rejects_bad_arguments():
    with pytest.raises(UserError, match="pad_mode"):
        build_model("unet", pad_mode="mirror")
    with pytest.raises(UserError, match="widths"):
        build_model("unet", widths=[])


# ---- DeepONet ----------------------------------------------------------------------------------------
def test_deeponet_point_queries_match_the_grid_output():
    torch.manual_seed(0)
    model = build_model("deeponet", in_channels=2, out_channels=3, n_dims=2, basis=8, width=16,
                        fourier_features=2).eval()
    x = torch.randn(2, 2, 12, 10)
    grid_out = model(x)
    t0, t1 = torch.linspace(0, 1, 12), torch.linspace(0, 1, 10)
    i, j = torch.tensor([0, 5, 11]), torch.tensor([9, 3, 0])
    pts = torch.stack([t0[i], t1[j]], dim=-1)                       # (3, 2)
    torch.testing.assert_close(model(x, pts), grid_out[:, :, i, j], rtol=1e-5, atol=1e-6)
    batched = model(x, pts.expand(2, -1, -1))
    torch.testing.assert_close(batched, grid_out[:, :, i, j], rtol=1e-5, atol=1e-6)


def test_deeponet_mlp_branch_reads_mesh_nodes_and_answers_anywhere():
    torch.manual_seed(0)
    model = build_model("deeponet", in_channels=1, out_channels=2, n_dims=2, branch="mlp", n_sensors=37,
                        basis=6, width=16)
    nodes = torch.randn(4, 1, 37)                                    # values at 37 mesh nodes
    queries = torch.rand(4, 50, 2)
    assert model(nodes, queries).shape == (4, 2, 50)
    with pytest.raises(UserError, match="n_sensors=37"):
        model(torch.randn(4, 1, 36), queries)
    with pytest.raises(UserError, match="needs n_sensors"):
        build_model("deeponet", branch="mlp")
    # the trainer fills n_sensors in for every DeepONet; the CNN branch reads any grid and keeps None
    assert build_model("deeponet", n_dims=2, n_sensors=64).config["n_sensors"] is None


def test_deeponet_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = build_model("deeponet", n_dims=1, basis=3, width=6, depth=1).double()
    x = torch.randn(2, 1, 8, dtype=torch.float64, requires_grad=True)
    pts = torch.rand(5, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: model(a, b), (x, pts), eps=1e-6, atol=1e-6)


# ---- CNO ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_in,n_out", [(16, 32), (16, 9), (15, 40), (32, 16)])
def test_resample_is_exact_on_band_limited_fields(n_in, n_out):
    """A trigonometric polynomial below both grids' Nyquist limits is interpolated exactly."""
    def field(n, m):
        a, b = torch.arange(n, dtype=torch.float64) / n, torch.arange(m, dtype=torch.float64) / m
        x, y = torch.meshgrid(a, b, indexing="ij")
        return (torch.cos(2 * math.pi * (2 * x - y)) + 0.3 * torch.sin(2 * math.pi * (3 * y + x)) + 0.2)[None, None]
    torch.testing.assert_close(resample(field(n_in, 12), (n_out, 10)), field(n_out, 10), rtol=1e-10, atol=1e-12)


def test_down_after_up_is_the_identity_and_gradients_are_exact():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 7, dtype=torch.float64)
    low = resample(resample(x, (5, 4)), (10, 7))                      # band-limit first
    torch.testing.assert_close(resample(resample(low, (20, 14)), (10, 7)), low, rtol=1e-10, atol=1e-12)
    xs = torch.randn(1, 1, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: resample(a, (9, 8)), (xs,), eps=1e-6, atol=1e-7)


def test_alias_free_activation_is_closer_to_the_continuous_one_than_a_plain_activation():
    """The band-limited part of leaky_relu(v) for a band-limited v (computed on a 256x finer grid) is
    matched far better by the activation at 2x than by leaky_relu on the grid itself, whose
    above-Nyquist frequencies fold back (alias) onto the kept ones."""
    torch.manual_seed(0)
    v = resample(resample(torch.randn(4, 1, 32, dtype=torch.float64), (12,)), (32,))
    true = resample(torch.nn.functional.leaky_relu(resample(v, (8192,)), 0.01), (32,))
    alias_free = AliasFreeAct()(v)
    plain = resample(torch.nn.functional.leaky_relu(v, 0.01), (32,))
    err = lambda a: ((a - true).norm() / true.norm()).item()  # noqa: E731
    assert err(alias_free) < 0.3 * err(plain), (err(alias_free), err(plain))


def test_cno_runs_on_odd_sizes_and_without_norm():
    model = build_model("cno", n_dims=2, width=4, levels=2, n_res=1, n_res_neck=1, norm="none")
    assert model(torch.randn(1, 1, 13, 11)).shape == (1, 1, 13, 11)
    assert model(torch.randn(1, 1, 4, 4)).shape == (1, 1, 4, 4)
    with pytest.raises(UserError, match=r"levels=2 .* needs at least 4 points per axis, got spatial shape \(3, 8\)"):
        model(torch.randn(1, 1, 3, 8))
    with pytest.raises(UserError, match="norm"):
        build_model("cno", norm="layer")


# ---- Galerkin transformer ----------------------------------------------------------------------------
def test_galerkin_transformer_is_permutation_equivariant_on_point_clouds():
    torch.manual_seed(0)
    model = build_model("galerkin_transformer", in_channels=2, out_channels=1, n_dims=2, width=8, heads=2,
                        n_layers=2).eval()
    x, pts = torch.randn(3, 2, 40), torch.rand(40, 2)
    perm = torch.randperm(40)
    torch.testing.assert_close(model(x[..., perm], pts[perm]), model(x, pts)[..., perm], rtol=1e-5, atol=1e-6)
    grid = torch.randn(3, 2, 6, 5)
    coords = torch.stack(torch.meshgrid(torch.linspace(0, 1, 6), torch.linspace(0, 1, 5), indexing="ij"), -1)
    torch.testing.assert_close(model(grid.flatten(2), coords.reshape(-1, 2)).reshape(3, 1, 6, 5), model(grid))


def test_galerkin_transformer_converges_under_grid_refinement():
    """The attention averages over points, a quadrature of an integral: the same smooth input on
    nested grids gives outputs that agree better and better at the shared points."""
    torch.manual_seed(0)
    model = build_model("galerkin_transformer", n_dims=1, width=16, heads=2, n_layers=2).double().eval()
    u = lambda n: torch.sin(2 * math.pi * torch.linspace(0, 1, n, dtype=torch.float64)).reshape(1, 1, n) + 0.5  # noqa: E731
    outs = {n: model(u(n)) for n in (33, 65, 129, 257)}
    gaps = [(outs[2 * n - 1][..., ::2] - outs[n]).norm() / outs[n].norm() for n in (33, 65, 129)]
    assert gaps[0] < 0.05 and gaps[1] < 0.6 * gaps[0] and gaps[2] < 0.6 * gaps[1], gaps


def test_galerkin_attention_gradient_matches_finite_differences():
    torch.manual_seed(0)
    layer = GalerkinAttention(4, 2, delta=0.3).double()
    z = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (z,), eps=1e-6, atol=1e-6)


def test_galerkin_transformer_rejects_bad_arguments():
    with pytest.raises(UserError, match="multiple of heads"):
        build_model("galerkin_transformer", width=10, heads=4)
    model = build_model("galerkin_transformer", n_dims=2, width=8, heads=2)
    with pytest.raises(UserError, match="coords must be"):
        model(torch.randn(1, 1, 10), torch.rand(9, 2))


# ---- FNO: the DFT-matmul transform -------------------------------------------------------------------
@pytest.mark.parametrize("modes,space", [([5], (16,)), ([5], (8,)), ([3, 4], (10, 9)), ([4, 5], (8, 8)),
                                         ([2, 3, 2], (6, 8, 5))])
def test_dft_transform_equals_fft_transform(modes, space):
    """Same weights, same outputs and gradients (float64 to 1e-12; float32 to 1e-6 of the output's
    size), including the Nyquist column (modes 5 on 8 points) and 3D."""
    from pde_lab.operators import SpectralConv

    torch.manual_seed(0)
    fft = SpectralConv(2, 3, modes).double()
    dft = SpectralConv(2, 3, modes, transform="dft").double()
    dft.load_state_dict(fft.state_dict())
    x = torch.randn(2, 2, *space, dtype=torch.float64, requires_grad=True)
    a, b = fft(x), dft(x)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(a)
    ga = torch.autograd.grad(a, (x, fft.weight), g)
    gb = torch.autograd.grad(b, (x, dft.weight), g)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(v, u, rtol=1e-10, atol=1e-12)
    x32 = x.detach().float()
    a32, b32 = fft.float()(x32), dft.float()(x32)
    assert (a32 - b32).abs().max() <= 1e-6 * a32.abs().max()


def test_fno_transform_is_an_argument_that_keeps_the_weights():
    torch.manual_seed(0)
    fft = build_model("fno", n_dims=2, width=6, modes=4)
    dft = build_model("fno", n_dims=2, width=6, modes=4, transform="dft")
    assert dft.config["transform"] == "dft"
    dft.load_state_dict(fft.state_dict())
    x = torch.randn(2, 1, 16, 12)
    torch.testing.assert_close(dft(x), fft(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="transform"):
        build_model("fno", transform="fftw")
