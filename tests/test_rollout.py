"""Autoregressive rollouts: the feedback of predictions is checked with models whose rollouts are
known exactly (the exact heat propagator: error at float32 round-off; persistence: a closed-form
error), then through training, `pde-lab evaluate` and the plot."""
import h5py
import numpy as np
import pytest
import torch

from pde_lab.datasets import FieldDataset, GenerateConfig, generate
from pde_lab.errors import UserError
from pde_lab.evaluation.rollout import (feedback_channels, persistence, persistence_channels, persistence_metrics,
                                        rollout)
from pde_lab.pdes.base import Task
from pde_lab.pdes.heat import heat_solution


@pytest.fixture(scope="module")
def heat_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("roll") / "heat"
    generate(GenerateConfig(pde="heat_1d", out=str(out), levels=["easy", "hard"], n_train=6, n_valid=2,
                            n_test=3, resolution=32, progress=False))
    return out


class _Exact:
    """A run-like object whose step is the exact heat propagator over one stored interval."""

    def __init__(self, ds: FieldDataset, dt: float, t_out: int):
        self.kappa_channel = ds.input_channels.index("log:kappa") if "log:kappa" in ds.input_channels \
            else ds.input_channels.index("kappa")
        self.log = ds.input_channels[self.kappa_channel].startswith("log:")
        self.dt, self.t_out = dt, t_out

    def predict(self, x: torch.Tensor, points=None) -> torch.Tensor:
        out = []
        for b in range(x.shape[0]):
            k = float(x[b, -1, 0, self.kappa_channel])
            kappa = np.exp(k) if self.log else k
            u = x[b, -1, :, 0].double().numpy()
            frames = heat_solution(u, kappa, self.dt * np.arange(1, self.t_out + 1))
            out.append(torch.from_numpy(frames).float()[..., None])
        return torch.stack(out)


class _Persistence:
    def __init__(self, t_out: int):
        self.t_out = t_out

    def predict(self, x: torch.Tensor, points=None) -> torch.Tensor:
        return x[:, -1:, ..., :1].repeat_interleave(self.t_out, dim=1)


@pytest.mark.parametrize("t_in,t_out", [(1, 1), (2, 3)])
def test_rollout_of_the_exact_propagator_has_round_off_error(heat_data, t_in, t_out):
    ds = FieldDataset([heat_data / "test" / "hard.h5"], task=Task("window", t_in, t_out), parameters=["log:kappa"])
    assert feedback_channels(ds) == [(0, 0)]
    times = np.linspace(0.0, 1.0, ds.n_times)
    roll = rollout(_Exact(ds, times[1] - times[0], t_out), ds, batch_size=2)
    n_blocks = (ds.n_times - t_in) // t_out
    assert roll.prediction.shape == (3, n_blocks * t_out, 32, 1)
    np.testing.assert_array_equal(roll.frames, np.arange(t_in, t_in + n_blocks * t_out))
    np.testing.assert_allclose(roll.times, times[roll.frames], rtol=1e-12)
    assert float(roll.rel_l2.max()) < 1e-5


def test_rollout_of_persistence_has_the_closed_form_error(heat_data):
    ds = FieldDataset([heat_data / "test" / "easy.h5"], task=Task("window", 2, 1), parameters=["log:kappa"])
    roll = rollout(_Persistence(1), ds)
    one_shot = FieldDataset([heat_data / "test" / "easy.h5"], task=Task("one_shot", 1, ds.n_times - 1))
    for b in range(3):
        u = torch.cat([one_shot[b][0], one_shot[b][1]])[:, :, 0]  # (T, n) the whole trajectory
        expected = (u[2:] - u[1]).norm(dim=1) / u[2:].norm(dim=1)
        torch.testing.assert_close(roll.rel_l2[b], expected.double(), rtol=1e-5, atol=1e-7)
    # the rollout's own persistence baseline is this model's error
    torch.testing.assert_close(roll.persistence_rel_l2, roll.rel_l2, rtol=1e-6, atol=0)
    summary = roll.summary()
    assert len(summary["rel_l2_mean"]) == ds.n_times - 2 and len(summary["rel_l2_per_sample"]) == 3
    assert summary["persistence_rel_l2_mean"] == pytest.approx(summary["rel_l2_mean"], rel=1e-6)


def test_rollout_needs_a_window_task(heat_data):
    ds = FieldDataset([heat_data / "test" / "easy.h5"], task=Task("one_shot", 1, 1))
    with pytest.raises(UserError, match="window"):
        rollout(_Persistence(1), ds)
    assert persistence_channels(ds) is None  # nor is "nothing changes" a baseline of a one-shot map
    with pytest.raises(UserError, match="no persistence baseline: the task is 'one_shot'"):
        persistence_metrics(ds)


def test_persistence_copies_the_last_input_frame_of_each_target_channel(heat_data):
    ds = FieldDataset([heat_data / "test" / "easy.h5"], task=Task("window", 2, 3), parameters=["log:kappa"])
    assert ds.input_channels == ["u", "log:kappa"] and persistence_channels(ds) == [0]
    x, y = ds[0]
    base = persistence(x[None], persistence_channels(ds), 3)
    assert base.shape == (1, *y.shape)
    torch.testing.assert_close(base[0], x[-1:, :, :1].expand(3, -1, -1), rtol=0, atol=0)


def test_persistence_skips_static_inputs_and_keeps_several_fields_in_order(tmp_path):
    """2D flow past obstacles: mask and distance are static inputs, pressure and velocity the targets."""
    data = tmp_path / "obstacles"
    generate(GenerateConfig(pde="navier_stokes_obstacles", out=str(data), levels=["easy"], n_train=1, n_valid=0,
                            n_test=1, resolution=16, progress=False))
    ds = FieldDataset([data / "test" / "easy.h5"], task=Task("window", 2, 3))
    assert ds.input_channels == ["mask", "sdf", "pressure", "velocity_x", "velocity_y"]
    assert ds.target_channels == ["pressure", "velocity_x", "velocity_y"] and persistence_channels(ds) == [2, 3, 4]
    x, y = ds[0]
    torch.testing.assert_close(persistence(x[None], [2, 3, 4], 3)[0], x[-1:, ..., 2:].expand(3, -1, -1, -1),
                               rtol=0, atol=0)
    errors = persistence_metrics(ds, ["relative_l2"])["relative_l2"]
    assert errors.shape == (len(ds),)
    x_last, y0 = ds[0][0][-1, ..., 2:], ds[0][1]
    expected = (y0 - x_last).double().norm() / y0.double().norm()
    assert float(errors[0]) == pytest.approx(float(expected), rel=1e-6) and float(expected) > 0


def test_evaluate_reports_rollouts_and_the_plot_draws_them(heat_data, tmp_path):
    from pde_lab.evaluation.evaluate import evaluate, format_metrics
    from pde_lab.plotting import plot_rollout_error
    from pde_lab.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(data=str(heat_data), task=Task("window", 1, 1), model="fno",
                      model_args=dict(width=8, modes=6, n_layers=2, proj_width=16), epochs=2, batch_size=8,
                      device="cpu", progress=False, out=str(run)))
    result = evaluate(run, heat_data, device="cpu")
    copied = []
    for level in ("easy", "hard"):
        r = result["levels"][level]["error_vs_time"]
        assert r["kind"] == "rollout"
        assert len(r["times"]) == len(r["rel_l2_mean"]) == 10 and all(np.isfinite(r["rel_l2_max"]))
        # the persistence baseline's one-step error, from the stored frames: |u(t+1) - u(t)| / |u(t+1)|
        with h5py.File(heat_data / "test" / f"{level}.h5") as f:
            u = f["t0_fields/u"][()].astype(np.float64)  # (trajectory, time, x)
        ratios = np.linalg.norm(u[:, 1:] - u[:, :-1], axis=-1) / np.linalg.norm(u[:, 1:], axis=-1)
        copied.append(ratios.ravel())
        assert result["levels"][level]["persistence"]["relative_l2"]["mean"] == pytest.approx(ratios.mean(), rel=1e-5)
    assert result["overall"]["persistence"]["relative_l2"]["median"] == pytest.approx(np.median(np.concatenate(copied)),
                                                                                      rel=1e-5)
    assert "persistence (every output frame = the last input frame), rel L2: easy" in format_metrics(result)
    fig = plot_rollout_error(run)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["easy (mean)", "easy (persistence)", "hard (mean)", "hard (persistence)"]
    assert len(plot_rollout_error(run, baseline=False).axes[0].lines) == 2
    with pytest.raises(UserError, match="no level"):
        plot_rollout_error(result, levels=["medium"])


def test_time_task_items_carry_the_lead_time_and_the_target_frame(heat_data):
    path = heat_data / "test" / "easy.h5"
    ds = FieldDataset([path], task=Task("time", 2, 1), parameters=["log:kappa"])
    assert ds.input_channels == ["u", "log:kappa", "lead_time"] and len(ds) == 3 * (ds.n_times - 2)
    whole = FieldDataset([path], task=Task("one_shot", 1, ds.n_times - 1))
    for item in (0, 5, len(ds) - 1):
        _, traj, frame = ds.sample_index(item)
        x, y = ds[item]
        u = torch.cat([whole[traj][0], whole[traj][1]])  # (T, n, 1)
        torch.testing.assert_close(x[..., 0], u[:2, :, 0])
        torch.testing.assert_close(y, u[frame:frame + 1])
        torch.testing.assert_close(x[..., 2], torch.full_like(x[..., 2], ds.times[frame] - ds.times[1]))
    stats = ds.stats()
    lead = ds.times[2:] - ds.times[1]
    assert stats["x_mean"][2] == pytest.approx(lead.mean()) and stats["x_std"][2] == pytest.approx(lead.std())
    with pytest.raises(UserError, match="output_steps = 1"):
        FieldDataset([path], task=Task("time", 1, 2))


def test_time_curve_groups_item_errors_by_frame(heat_data):
    from pde_lab.evaluation.rollout import time_curve

    ds = FieldDataset([heat_data / "test" / "hard.h5"], task=Task("time", 1, 1))
    frames = torch.tensor([float(ds.sample_index(i)[2]) for i in range(len(ds))])
    curve = time_curve(ds, frames * torch.tensor([1.0, 2.0, 3.0]).repeat_interleave(ds.n_times - 1))
    assert curve["kind"] == "time_conditioned" and curve["frames"] == list(range(1, ds.n_times))
    np.testing.assert_allclose(curve["rel_l2_mean"], 2.0 * np.arange(1, ds.n_times))
    np.testing.assert_allclose(curve["rel_l2_max"], 3.0 * np.arange(1, ds.n_times))


def test_time_conditioned_training_and_evaluation(heat_data, tmp_path):
    from pde_lab.evaluation.evaluate import evaluate
    from pde_lab.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(data=str(heat_data), task=Task("time", 1, 1), model="fno",
                      model_args=dict(width=8, modes=6, n_layers=2, proj_width=16), epochs=2, batch_size=16,
                      device="cpu", progress=False, out=str(run)))
    result = evaluate(run, heat_data, device="cpu")
    curve = result["levels"]["easy"]["error_vs_time"]
    assert curve["kind"] == "time_conditioned" and len(curve["rel_l2_mean"]) == 10


class _ExactModule(torch.nn.Module):
    """The exact heat step as a model in the trainer's layout: (B, [u, log κ], n) -> (B, T_out, n)."""

    def __init__(self, dt: float, t_out: int):
        super().__init__()
        self.dt, self.t_out = dt, t_out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = []
        for b in range(z.shape[0]):
            kappa = float(np.exp(float(z[b, 1, 0])))
            frames = heat_solution(z[b, 0].double().numpy(), kappa, self.dt * np.arange(1, self.t_out + 1))
            out.append(torch.from_numpy(frames).float())
        return torch.stack(out)


def test_pushforward_pairs_and_unrolling_reach_the_true_later_window(heat_data):
    from pde_lab.training.checkpoint import Normalizer
    from pde_lab.training.pushforward import PushforwardPairs
    from pde_lab.training.trainer import _push_forward

    ds = FieldDataset([heat_data / "train" / "hard.h5"], task=Task("window", 1, 2), parameters=["log:kappa"])
    pairs = PushforwardPairs(ds, max_steps=3, seed=0)
    ks = [pairs.steps(i) for i in range(len(pairs))]
    assert set(ks) == {0, 1, 2, 3} and ks == [pairs.steps(i) for i in range(len(pairs))]
    pairs.set_epoch(1)
    assert ks != [pairs.steps(i) for i in range(len(pairs))]
    items = range(0, len(pairs), 3)
    x = torch.stack([ds[i][0] for i in items])
    k = torch.tensor([pairs.steps(i) for i in items])
    y = torch.stack([pairs[i][1] for i in items])
    assert max(ds.sample_index(i)[2] + 2 * pairs.steps(i) for i in range(len(ds))) <= ds.n_times - 3
    model = _ExactModule(0.1, 2)
    pushed = _push_forward(model, Normalizer.identity(2, 1), x, k, 2, pairs.pairs)
    for b, i in enumerate(items):
        true_x = ds[i + 2 * int(k[b])][0]
        torch.testing.assert_close(pushed[b], true_x, rtol=1e-4, atol=1e-5)
    step = Normalizer.identity(2, 1)
    from pde_lab.training.checkpoint import predict_batch
    torch.testing.assert_close(predict_batch(model, step, pushed, 2), y, rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="window"):
        PushforwardPairs(FieldDataset([heat_data / "train" / "hard.h5"], task=Task("one_shot", 1, 1)), 2, 0)


def test_training_with_pushforward_runs_and_changes_the_result(heat_data, tmp_path):
    from pde_lab.training import TrainConfig, load_run, train

    runs = {}
    for k in (0, 2):
        run = tmp_path / f"run{k}"
        train(TrainConfig(data=str(heat_data), task=Task("window", 1, 1), model="fno", pushforward=k,
                          model_args=dict(width=8, modes=6, n_layers=2, proj_width=16), epochs=2, batch_size=8,
                          device="cpu", progress=False, out=str(run)))
        runs[k] = load_run(run, checkpoint="last")
    assert all(np.isfinite(r["train_loss"]) for r in runs[2].log)
    assert runs[0].log[-1]["train_loss"] != runs[2].log[-1]["train_loss"]


def test_rollout_in_2d_has_the_persistence_error(tmp_path):
    out = tmp_path / "heat2d"
    generate(GenerateConfig(pde="heat_2d", out=str(out), levels=["easy"], n_train=1, n_valid=0, n_test=2,
                            resolution=8, progress=False))
    ds = FieldDataset([out / "test" / "easy.h5"], task=Task("window", 1, 1))
    roll = rollout(_Persistence(1), ds)
    u = torch.stack([ds[i][1][0] for i in range(len(ds))]).reshape(2, ds.n_times - 1, 8, 8, 1)
    first = ds[0][0][0]
    expected = torch.linalg.vector_norm(u[0] - first, dim=(1, 2, 3)) / torch.linalg.vector_norm(u[0], dim=(1, 2, 3))
    torch.testing.assert_close(roll.rel_l2[0], expected.double(), rtol=1e-5, atol=1e-7)


def test_a_run_trained_at_one_resolution_evaluates_at_others(heat_data, tmp_path):
    """Multi-resolution evaluation: an FNO trained on 32-point heat data is evaluated on 64 and 128
    points (same seeds, so the same initial states, resolved finer); the error stays of the same size."""
    from pde_lab.evaluation.evaluate import evaluate
    from pde_lab.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(data=str(heat_data), task=Task("one_shot", 1, 1), model="fno",
                      model_args=dict(width=8, modes=6, n_layers=2, proj_width=16), epochs=3, batch_size=8,
                      device="cpu", progress=False, out=str(run)))
    errors = {}
    for n in (32, 64, 128):
        data = heat_data if n == 32 else tmp_path / f"heat{n}"
        if n != 32:
            generate(GenerateConfig(pde="heat_1d", out=str(data), levels=["easy", "hard"], n_train=6, n_valid=2,
                                    n_test=3, resolution=n, progress=False))
        errors[n] = evaluate(run, data, device="cpu", save_predictions=False)["overall"]["relative_l2"]["mean"]
        with h5py.File(data / "test" / "easy.h5") as f, h5py.File(heat_data / "test" / "easy.h5") as c:
            u0, coarse = f["t0_fields/u"][:, 0, :: n // 32], c["t0_fields/u"][:, 0]
        # the same initial states: at the coarse points they differ only by the modes 32 points cannot hold
        # (independent draws per resolution differed by ~50 % of the maximum)
        assert np.abs(u0 - coarse).max() < 1e-2 * np.abs(coarse).max(), n
    assert all(np.isfinite(list(errors.values())))
    assert max(errors.values()) < 2.0 * errors[32] + 0.05, errors


def test_pushforward_on_a_one_shot_task_is_refused_before_the_run_directory_exists(heat_data, tmp_path):
    from pde_lab.training import TrainConfig, train

    with pytest.raises(UserError, match="window"):
        train(TrainConfig(data=str(heat_data), task=Task("one_shot", 1, 1), model="fno", pushforward=2, epochs=1,
                          device="cpu", progress=False, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_evaluate_a_run_of_fit_that_recorded_no_task(heat_data, tmp_path):
    """``fit`` on a dataset opened by hand records ``task: null``; evaluate read ``task.mode`` of that
    None (AttributeError) instead of the task the reader used (the PDE's default)."""
    from pde_lab.datasets.reader import open_split
    from pde_lab.evaluation.evaluate import evaluate
    from pde_lab.operators import build_model
    from pde_lab.training import TrainConfig, fit

    train_ds = open_split(heat_data, "train", parameters=())
    config = TrainConfig(model="fno", model_args=dict(width=8, modes=6, n_layers=2, proj_width=16), epochs=1,
                         batch_size=8, device="cpu", progress=False, parameters=[])
    assert config.task is None
    x, y = train_ds[0]
    model = build_model("fno", in_channels=x.shape[0] * x.shape[-1], out_channels=y.shape[0] * y.shape[-1],
                        n_dims=1, **config.model_args)
    run = fit(model, train_ds, None, config, tmp_path / "run")
    result = evaluate(run, heat_data, device="cpu")
    assert set(result["levels"]) == {"easy", "hard"}
    assert all(np.isfinite(result["levels"][lv]["relative_l2"]["mean"]) for lv in ("easy", "hard"))
    # the heat PDE's default task is one-shot: no error-against-time curve, as for a run of `train`
    assert train_ds.task.mode == "one_shot" and "error_vs_time" not in result["levels"]["easy"]


def test_predictions_file_lists_levels_as_evaluated_and_figures_default_to_the_first(heat_data, tmp_path):
    """h5py lists groups alphabetically unless the file tracks creation order: a figure's default level
    was then 'easy' however the evaluation was ordered."""
    import h5py

    from pde_lab.evaluation.evaluate import evaluate
    from pde_lab.plotting import plot_error_field
    from pde_lab.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(data=str(heat_data), model="fno", model_args=dict(width=4, modes=4, n_layers=1, proj_width=8),
                      epochs=1, batch_size=8, device="cpu", progress=False, out=str(run)))
    evaluate(run, heat_data, levels=["hard", "easy"], device="cpu")
    with h5py.File(run / "predictions_test.h5") as f:
        assert [k for k in f if k != "coords"] == ["hard", "easy"]
    assert plot_error_field(run).texts[0].get_text().startswith("hard")
