"""Metrics against hand-computed values, and energy spectra against Parseval."""
import json
import math

import numpy as np
import pytest
import torch

from pde_lab.evaluation.metrics import (
    DEFAULT_EPS,
    METRICS,
    compute_metrics,
    energy_spectrum,
    max_error,
    nrmse,
    relative_l1,
    relative_l2,
    rmse,
    spectral_error,
    summarize,
)
from pde_lab.evaluation.rollout import Rollout


def _pair():
    """Two samples shaped (B=2, T=1, X=2, C=1) whose errors are easy to do by hand.

    sample 0: true (3, 4), error (0, 1)   -> ‖e‖₂ = 1,  ‖u‖₂ = 5, Σ|e| = 1, Σ|u| = 7
    sample 1: true (1, 0), error (-2, 2)  -> ‖e‖₂ = √8, ‖u‖₂ = 1, Σ|e| = 4, Σ|u| = 1
    """
    true = torch.tensor([[3.0, 4.0], [1.0, 0.0]]).reshape(2, 1, 2, 1)
    err = torch.tensor([[0.0, 1.0], [-2.0, 2.0]]).reshape(2, 1, 2, 1)
    return true + err, true


def test_metrics_match_hand_computed_values():
    pred, true = _pair()
    expected = {
        "relative_l2": [1 / 5, math.sqrt(8)],
        "relative_l1": [1 / 7, 4.0],
        "nrmse": [1 / 5, math.sqrt(8)],  # one channel: same as relative_l2
        "max_error": [1.0, 2.0],
        "rmse": [math.sqrt(1 / 2), 2.0],
    }
    got = compute_metrics(pred, true)
    assert list(got) == list(METRICS)
    for name, values in expected.items():
        assert got[name].dtype == torch.float64
        torch.testing.assert_close(got[name], torch.tensor(values, dtype=torch.float64), msg=name)


def test_space_weights_enter_every_sum_over_space():
    """Weights (1, 3) on the two points of _pair: sample 0 has Σw e² = 3·1, Σw u² = 9 + 3·16,
    Σw|e| = 3, Σw|u| = 15; the RMSE uses them rescaled to mean 1, (½, 3/2)."""
    pred, true = _pair()
    w = torch.tensor([1.0, 3.0])
    got = compute_metrics(pred, true, weights=w)
    expected = {
        "relative_l2": [math.sqrt(3 / 57), math.sqrt((4 + 12) / 1)],
        "relative_l1": [3 / 15, (2 + 6) / 1],
        "nrmse": [math.sqrt(3 / 57), 4.0],
        "max_error": [1.0, 2.0],
        "rmse": [math.sqrt(3 / 4), math.sqrt(16 / 4)],
    }
    for name, values in expected.items():
        torch.testing.assert_close(got[name], torch.tensor(values, dtype=torch.float64), msg=name)
        torch.testing.assert_close(METRICS[name](pred, true, weights=w), got[name], msg=name)
    # Uniform weights of any size change nothing; a zero weight drops its point.
    uniform = compute_metrics(pred, true, weights=torch.full((2,), 7.0))
    for name, value in compute_metrics(pred, true).items():
        torch.testing.assert_close(uniform[name], value, msg=name)
    dropped = relative_l2(pred, true, weights=np.array([1.0, 0.0]))
    torch.testing.assert_close(dropped, torch.tensor([0.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("weights, match", [
    (torch.ones(3), r"shape of the space axes \(2,\)"),
    (torch.tensor([1.0, -1.0]), "non-negative"),
    (torch.zeros(2), "positive sum"),
    (torch.tensor([1.0, float("nan")]), "finite"),
])
def test_bad_weights_are_rejected(weights, match):
    pred, true = _pair()
    for name in METRICS:
        with pytest.raises(ValueError, match=match):
            METRICS[name](pred, true, weights=weights)


def test_nrmse_weights_channels_equally_unlike_relative_l2():
    # Channel 0 is of order 1000 with error 10 (1 %); channel 1 is of order 1 with error 1 (100 %).
    true = torch.tensor([[1000.0, 1.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    pred = torch.tensor([[1000.0, 1.0], [10.0, 1.0]]).reshape(1, 1, 2, 2)
    assert nrmse(pred, true).item() == pytest.approx((10 / 1000 + 1 / 1) / 2, rel=1e-12)
    assert relative_l2(pred, true).item() == pytest.approx(math.sqrt(101 / 1_000_001), rel=1e-12)


def test_nrmse_per_frame_normalises_each_time_step():
    # One channel, one point, two frames: truth (2, 1), prediction (2, 2).
    true = torch.tensor([2.0, 1.0]).reshape(1, 2, 1, 1)
    pred = torch.tensor([2.0, 2.0]).reshape(1, 2, 1, 1)
    assert nrmse(pred, true).item() == pytest.approx(1 / math.sqrt(5), rel=1e-12)
    assert nrmse(pred, true, per_frame=True).item() == pytest.approx((0 + 1) / 2, rel=1e-12)


def test_per_sample_shapes_dtype_and_independence():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(3, 4, 5, 6, 2, generator=g)
    pred = true + 0.1 * torch.randn(3, 4, 5, 6, 2, generator=g)
    batch = compute_metrics(pred.float(), true.float())
    for name, values in batch.items():
        assert values.shape == (3,), name
        assert values.dtype == torch.float64
        alone = METRICS[name](pred[1:2], true[1:2])
        torch.testing.assert_close(values[1:2], alone, rtol=1e-6, atol=0, msg=name)


def test_numpy_input_is_accepted():
    pred, true = _pair()
    got = relative_l2(pred.numpy(), true.numpy())
    torch.testing.assert_close(got, relative_l2(pred, true))


def test_zero_error_gives_zero():
    true = torch.randn(2, 3, 4, 2)
    for name, value in compute_metrics(true.clone(), true).items():
        assert torch.all(value == 0), name


def test_zero_truth_is_guarded_by_eps():
    zero = torch.zeros(2, 1, 3, 1)
    for fn in (relative_l2, relative_l1, nrmse):
        assert torch.all(fn(zero, zero) == 0), fn.__name__
    pred = zero.clone()
    pred[0, 0, 0, 0] = 1e-3
    got = relative_l2(pred, zero)
    assert torch.isfinite(got).all()
    assert got[0].item() == pytest.approx(1e-3 / DEFAULT_EPS)
    assert got[1].item() == 0


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="same shape"):
        rmse(torch.zeros(2, 1, 3, 1), torch.zeros(2, 1, 4, 1))
    with pytest.raises(ValueError, match="at least 3 axes"):
        max_error(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), names=["l7"])


def test_bad_eps_is_rejected_by_every_relative_metric():
    pred, true = _pair()
    for fn in (relative_l2, relative_l1, nrmse):
        for eps in (0.0, -1e-12, math.nan, "tiny"):
            with pytest.raises(ValueError, match="eps must be a positive finite number"):
                fn(pred, true, eps=eps)
    with pytest.raises(ValueError, match="eps must be"):
        spectral_error(torch.zeros(1, 1, 4, 1), torch.zeros(1, 1, 4, 1), eps=0.0)


def test_summarize_statistics_and_json():
    stats = summarize({"relative_l2": torch.tensor([1.0, 2.0, 3.0, 10.0]), "rmse": [5.0]})
    s = stats["relative_l2"]
    assert s == pytest.approx({"mean": 4.0, "std": math.sqrt(12.5), "median": 2.5, "min": 1.0, "max": 10.0})
    assert stats["rmse"] == {"mean": 5.0, "std": 0.0, "median": 5.0, "min": 5.0, "max": 5.0}
    assert all(type(v) is float for v in s.values())
    json.dumps(stats)
    with pytest.raises(ValueError, match="no samples"):
        summarize({"rmse": torch.tensor([])})


def test_rollout_summary_statistics_over_trajectories():
    # Two trajectories, two frames: the median of two values is their midpoint, as in summarize.
    errors = torch.tensor([[0.1, 0.4], [0.3, 0.2]], dtype=torch.float32)
    roll = Rollout(np.array([1, 2]), np.array([0.5, 1.0]), torch.zeros(2, 2, 3, 1), torch.zeros(2, 2, 3, 1), errors)
    s = roll.summary()
    assert s["kind"] == "rollout" and s["frames"] == [1, 2] and s["times"] == [0.5, 1.0]
    assert s["rel_l2_mean"] == pytest.approx([0.2, 0.3])
    assert s["rel_l2_median"] == pytest.approx([0.2, 0.3])
    assert s["rel_l2_max"] == pytest.approx([0.3, 0.4])
    assert s["rel_l2_median"] == pytest.approx([summarize({"e": errors[:, t]})["e"]["median"] for t in range(2)])
    json.dumps(s)


# ------------------------------------------------------------------------------------------ spectra


def test_single_mode_1d_lands_in_its_bin_with_parseval_energy():
    n, L = 32, 2.0
    x = torch.arange(n, dtype=torch.float64) * L / n
    u = (0.5 + 3.0 * torch.cos(2 * math.pi * 3 * x / L)).reshape(1, 1, n, 1)
    k, E = energy_spectrum(u, lengths=L)
    assert k.shape == (n // 2 + 1,) and E.shape == (1, n // 2 + 1)
    torch.testing.assert_close(k[3], torch.tensor(2 * math.pi * 3 / L, dtype=torch.float64))
    expected = torch.zeros(n // 2 + 1, dtype=torch.float64)
    expected[0], expected[3] = 0.25, 9.0 / 2
    torch.testing.assert_close(E[0], expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(E.sum(), u.square().mean())


def test_single_mode_2d_shell_and_time_average():
    nx, ny = 16, 24
    x = torch.arange(nx, dtype=torch.float64) / nx
    y = torch.arange(ny, dtype=torch.float64) / ny
    X, Y = torch.meshgrid(x, y, indexing="ij")
    mode = torch.sin(2 * math.pi * (3 * X + 4 * Y))  # |k| = 2π·5 on the unit square
    u = torch.stack([mode, 2 * mode]).reshape(1, 2, nx, ny, 1)  # two frames, amplitudes 1 and 2
    k, E = energy_spectrum(u, lengths=(1.0, 1.0))
    torch.testing.assert_close(k[5], torch.tensor(10 * math.pi, dtype=torch.float64))
    assert E[0, 5].item() == pytest.approx((0.5 + 2.0) / 2)
    assert E[0].sum().item() == pytest.approx(E[0, 5].item())
    _, per_frame = energy_spectrum(u, lengths=1.0, per_frame=True)
    assert per_frame.shape == (1, 2, E.shape[1])
    assert per_frame[0, :, 5].tolist() == pytest.approx([0.5, 2.0])


def test_parseval_for_random_multichannel_fields():
    u = torch.randn(3, 2, 12, 10, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, E = energy_spectrum(u, lengths=(2.0, 1.0))
    torch.testing.assert_close(E.sum(dim=1), u.square().sum(dim=-1).mean(dim=(1, 2, 3)))


def test_anisotropic_domain_bins_by_physical_wavenumber():
    # Period 2 in x and 1 in y: x mode 2 and y mode 1 both have |k| = 2π, shell 2 of width π.
    x = torch.arange(16, dtype=torch.float64) * 2.0 / 16
    y = torch.arange(8, dtype=torch.float64) / 8
    X, Y = torch.meshgrid(x, y, indexing="ij")
    u = torch.stack([torch.cos(2 * math.pi * 2 * X / 2), torch.cos(2 * math.pi * Y)], dim=-1)
    k, E = energy_spectrum(u.reshape(1, 1, 16, 8, 2), lengths=(2.0, 1.0))
    assert k[2].item() == pytest.approx(2 * math.pi)
    assert E[0, 2].item() == pytest.approx(1.0)  # 1/2 from each channel


def test_spectral_error_isolates_the_shell_that_is_wrong():
    n = 64
    x = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    true = (torch.sin(x) + torch.sin(5 * x)).reshape(1, 1, n, 1).repeat(2, 1, 1, 1)
    pred = true + 0.1 * torch.sin(5 * x).reshape(1, 1, n, 1)
    k, rel = spectral_error(pred, true)
    assert rel.shape == k.shape == (n // 2 + 1,)
    assert rel[5].item() == pytest.approx(0.1)
    assert rel[1].item() == pytest.approx(0.0, abs=1e-10)


def test_spectral_error_averages_the_per_sample_ratios():
    # Sample 0 is wrong by 10 % in shell 1, sample 1 by 50 % in shell 1 and 100 % in shell 2:
    # r_1 = (0.1 + 0.5) / 2 = 0.3 (not the ratio of batch-mean energies), r_2 = (0 + 1) / 2.
    n = 16
    x = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    s1, s2 = torch.sin(x), torch.sin(2 * x)
    true = torch.stack([s1 + s2, 2 * s1 + s2]).reshape(2, 1, n, 1)
    pred = torch.stack([1.1 * s1 + s2, 3 * s1]).reshape(2, 1, n, 1)
    k, rel = spectral_error(pred, true)
    assert rel[1].item() == pytest.approx(0.3, rel=1e-12)
    assert rel[2].item() == pytest.approx(0.5, rel=1e-12)


def test_spectrum_rejects_fields_without_space():
    with pytest.raises(ValueError, match="space axis"):
        energy_spectrum(torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="one length per space axis"):
        energy_spectrum(torch.zeros(1, 1, 4, 4, 1), lengths=(1.0,))


@pytest.mark.gpu
def test_metrics_stay_on_the_device():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pred, true = (t.cuda() for t in _pair())
    got = compute_metrics(pred, true)
    assert all(v.device.type == "cuda" for v in got.values())
    torch.testing.assert_close(got["relative_l2"].cpu(), compute_metrics(*_pair())["relative_l2"])
