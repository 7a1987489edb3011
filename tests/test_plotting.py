"""Figures build headless, share colour limits where they must, and read run directories."""
import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from pde_lab.errors import UserError  # noqa: E402
from pde_lab.grids import CartesianGrid  # noqa: E402
from pde_lab.plotting import (  # noqa: E402
    plot_error_by_level,
    plot_error_field,
    plot_loss_curve,
    plot_rollout_error,
    plot_spectrum,
)


def _panels(fig: Figure):
    """The three main panels: colour-bar axes carry a ``_colorbar`` attribute."""
    return [a for a in fig.axes if not hasattr(a, "_colorbar")]


def _field_2d(nx=24, ny=16):
    x = np.arange(nx) / nx
    y = np.arange(ny) / ny
    X, Y = np.meshgrid(x, y, indexing="ij")
    truth = np.sin(2 * np.pi * X) * np.cos(2 * np.pi * Y)
    return truth, 1.3 * truth + 0.1  # a prediction whose range exceeds the truth's


def test_2d_truth_and_prediction_share_colour_limits(tmp_path):
    truth, pred = _field_2d()
    fig = plot_error_field(truth, pred, coords=CartesianGrid(((0, 1), (0, 1)), (24, 16), (True, True)))
    panels = _panels(fig)
    assert len(panels) == 3
    assert all(len(a.images) == 1 for a in panels)
    assert len(fig.axes) == 6  # a colour bar per panel
    (im_t,), (im_p,), (im_e,) = (a.images for a in panels)
    lo, hi = min(truth.min(), pred.min()), max(truth.max(), pred.max())
    assert im_t.get_clim() == pytest.approx((lo, hi))
    assert im_p.get_clim() == im_t.get_clim()
    assert im_e.get_clim() == pytest.approx((0.0, np.abs(pred - truth).max()))
    # Fields are indexed [x, y] and drawn with x across.
    np.testing.assert_allclose(im_t.get_array(), truth.T)
    fig.savefig(tmp_path / "field2d.png")
    assert (tmp_path / "field2d.png").stat().st_size > 0


def test_2d_from_torch_with_time_and_channels_picks_the_frame():
    truth = torch.randn(4, 8, 6, 3, generator=torch.Generator().manual_seed(0))
    fig = plot_error_field(truth, truth + 0.1, time_index=2, channel=1)
    np.testing.assert_allclose(_panels(fig)[0].images[0].get_array(), truth[2, :, :, 1].numpy().T, rtol=1e-6)


def test_1d_line_plots_share_y_range():
    x = np.linspace(0, 1, 50)
    truth = np.stack([np.sin(2 * np.pi * (x - 0.1 * t)) for t in range(3)])[..., None]  # (T, X, C)
    fig = plot_error_field(truth, 2 * truth, coords=x)
    panels = _panels(fig)
    assert len(panels) == len(fig.axes) == 3
    assert all(not a.images for a in panels)
    assert panels[0].get_ylim() == panels[1].get_ylim()
    assert panels[0].get_ylim()[1] >= 2 * truth[-1].max()
    np.testing.assert_allclose(panels[2].lines[0].get_ydata(), np.abs(truth[-1, :, 0]))


def test_ambiguous_and_bad_inputs_fail_clearly():
    with pytest.raises(UserError, match="space_dims"):
        plot_error_field(np.zeros((3, 8, 2)), np.zeros((3, 8, 2)))
    assert len(_panels(plot_error_field(np.zeros((3, 8, 2)), np.ones((3, 8, 2)), space_dims=1))) == 3
    with pytest.raises(UserError, match="shapes differ"):
        plot_error_field(np.zeros(8), np.zeros(9))
    with pytest.raises(UserError, match="time_index"):
        plot_error_field(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 1)), time_index=5)


# ------------------------------------------------------------------------------------ run directory


def _write_predictions(run_dir: Path, split="test"):
    """The evaluator's contract: <level>/{prediction,truth} (N, T_out, *space, C) float32, channels attr."""
    rng = np.random.default_rng(0)
    data = {}
    with h5py.File(run_dir / f"predictions_{split}.h5", "w") as f:
        for level, n in (("easy", 4), ("hard", 2)):
            truth = rng.standard_normal((n, 3, 8, 8, 2)).astype(np.float32)
            pred = (truth + 0.1 * rng.standard_normal(truth.shape)).astype(np.float32)
            g = f.create_group(level)
            g.create_dataset("truth", data=truth)
            g.create_dataset("prediction", data=pred)
            g.attrs["channels"] = np.array(["u", "v"], dtype=h5py.string_dtype())
            data[level] = (truth, pred)
    return data


def test_run_object_and_path_read_the_predictions_file(tmp_path):
    data = _write_predictions(tmp_path)
    run = SimpleNamespace(run_dir=tmp_path)
    fig = plot_error_field(run, sample=3, split="test", channel="v")
    truth, pred = data["easy"]  # default level: the first in the file
    im_t, im_p = (a.images[0] for a in _panels(fig)[:2])
    np.testing.assert_allclose(im_t.get_array(), truth[3, -1, :, :, 1].T)
    np.testing.assert_allclose(im_p.get_array(), pred[3, -1, :, :, 1].T)
    assert "easy" in fig.get_suptitle() and "v" in fig.get_suptitle()

    fig = plot_error_field(str(tmp_path), sample=-1, level="hard", time_index=0)
    np.testing.assert_allclose(_panels(fig)[0].images[0].get_array(), data["hard"][0][-1, 0, :, :, 0].T)

    with pytest.raises(UserError, match="unknown level 'medium'.*easy, hard"):
        plot_error_field(run, level="medium")
    with pytest.raises(UserError, match="out of range"):
        plot_error_field(run, level="hard", sample=2)
    with pytest.raises(UserError, match="unknown channel 'p'"):
        plot_error_field(run, channel="p")


def test_missing_predictions_file_says_to_evaluate(tmp_path):
    with pytest.raises(UserError, match="pde-lab evaluate"):
        plot_error_field(SimpleNamespace(run_dir=tmp_path), sample=0, split="valid")


def test_loss_curve_from_log_csv(tmp_path):
    rows = ["epoch,train_loss,valid_loss,lr,seconds"]
    for e in range(1, 11):
        valid = f"{0.6 / e:.6f}" if e % 2 == 0 else ""
        rows.append(f"{e},{1.0 / e:.6f},{valid},{1e-3 * 0.9 ** e:.6g},{0.5 * e}")
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    fig = plot_loss_curve(SimpleNamespace(run_dir=tmp_path))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    train, valid = ax.lines
    assert len(train.get_xdata()) == 10 and len(valid.get_xdata()) == 5
    assert fig.axes[1].get_yscale() == "log"  # the learning rate
    assert isinstance(plot_loss_curve(tmp_path / "log.csv", show_lr=False), Figure)
    rows = [{"epoch": 1, "train_loss": 0.5, "valid_loss": float("nan")}, {"epoch": 2, "train_loss": 0.4, "valid_loss": 0.3}]
    assert len(plot_loss_curve(rows).axes[0].lines) == 2
    with pytest.raises(UserError, match="log.csv"):
        plot_loss_curve(tmp_path / "nowhere")


def test_error_by_level_bars_and_error_bars(tmp_path):
    metrics = {"levels": {
        "easy": {"relative_l2": {"mean": 0.01, "std": 0.002}, "nrmse": {"mean": 0.02, "std": 0.01}},
        "hard": {"relative_l2": {"mean": 0.2, "std": 0.5}, "nrmse": {"mean": 0.3, "std": 0.1}},
    }}
    fig = plot_error_by_level(metrics)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.01, 0.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["easy", "hard"]
    # Error bars never reach below zero, even when std exceeds the mean.
    assert min(min(seg[:, 1]) for seg in ax.collections[0].get_segments()) >= 0
    assert len(plot_error_by_level(metrics, ["relative_l2", "nrmse"]).axes[0].patches) == 4
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert isinstance(plot_error_by_level(tmp_path, log=True), Figure)
    with pytest.raises(UserError, match="no metric 'rmse'"):
        plot_error_by_level(metrics, "rmse")
    # the persistence baseline of a window task: a dash across its level's bar, where there is one
    metrics["levels"]["hard"]["persistence"] = {"relative_l2": {"mean": 0.4, "std": 0.1}}
    ax = plot_error_by_level(metrics).axes[0]
    (dash,) = [line for line in ax.lines if line.get_label() == "persistence"]
    assert list(dash.get_ydata()) == [0.4, 0.4] and list(dash.get_xdata()) == pytest.approx([0.6, 1.4])
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["persistence", "relative_l2"]
    assert "persistence" not in plot_error_by_level(metrics, baseline=False).axes[0].get_legend_handles_labels()[1]


def test_spectrum_from_arrays_and_from_run(tmp_path):
    n = 32
    x = np.arange(n) * 2 * np.pi / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    truth = (np.sin(X) + 0.1 * np.sin(4 * X + 3 * Y))[None, None, ..., None]  # (B, T, X, Y, C)
    pred = truth + 0.05 * np.sin(4 * X + 3 * Y)[None, None, ..., None]
    fig = plot_spectrum(truth, pred)
    assert len(fig.axes) == 2
    spec, rel = fig.axes
    assert len(spec.lines) >= 3
    k, r = rel.lines[0].get_data()
    assert r[np.argmin(np.abs(k - 5))] == pytest.approx(0.5)  # shell 5 holds the (4, 3) mode
    assert len(plot_spectrum(truth[0, 0, ..., 0], space_dims=2).axes) == 1
    # A sample with almost no energy in the shell must not rule it: the panel shows the ratio of the
    # batch's energies (0.141 here), not the mean of per-sample ratios ((0.1 + 100) / 2).
    mode = np.sin(4 * X + 3 * Y)[None, None, ..., None]
    base = np.sin(X)[None, None, ..., None]
    truth2 = np.concatenate([base + 0.1 * mode, base + 1e-4 * mode])
    k, r = plot_spectrum(truth2, truth2 + 0.01 * mode).axes[1].lines[0].get_data()
    assert r[np.argmin(np.abs(k - 5))] == pytest.approx(np.sqrt(2e-4 / (0.1**2 + 1e-8)), rel=1e-4)
    _write_predictions(tmp_path)
    assert "hard" in plot_spectrum(tmp_path, level="hard").get_suptitle()


def _curve(times, mean, median, top):
    return {"error_vs_time": {"kind": "rollout", "frames": list(range(len(times))), "times": times,
                              "rel_l2_mean": mean, "rel_l2_median": median, "rel_l2_max": top}}


def test_rollout_error_single_frame_and_exact_model_and_bad_levels():
    one = {"levels": {"easy": _curve([0.5], [0.01], [0.01], [0.02])}}
    line = plot_rollout_error(one).axes[0].lines[0]
    # One frame: a line alone would draw nothing; the marker shows the point.
    assert list(line.get_xdata()) == [0.5] and line.get_marker() == "o"
    exact = {"levels": {"easy": _curve([0.1, 0.2], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0])}}
    assert plot_rollout_error(exact).axes[0].get_yscale() == "linear"
    long = {"levels": {"hard": _curve(list(np.linspace(0, 1, 50)), [0.1] * 50, [0.1] * 50, [0.2] * 50)}}
    ax = plot_rollout_error(long).axes[0]
    assert ax.get_yscale() == "log" and ax.lines[0].get_marker() in (None, "None", "")
    with pytest.raises(UserError, match="at least one level"):
        plot_rollout_error(one, levels=[])
    with pytest.raises(UserError, match="no level 'hard'"):
        plot_rollout_error(one, levels=["hard"])
