"""Autoregressive rollouts: the feedback of predictions is checked with models whose rollouts are
known exactly (the exact heat propagator: error at float32 round-off; persistence: a closed-form
error), then through training, `pde-lab evaluate` and the plot."""
import numpy as np
import pytest
import torch

from pde_lab.datasets import FieldDataset, GenerateConfig, generate
from pde_lab.errors import UserError
from pde_lab.evaluation.rollout import feedback_channels, rollout
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

    def predict(self, x: torch.Tensor) -> torch.Tensor:
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

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1:, :, :1].repeat_interleave(self.t_out, dim=1)


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
        torch.testing.assert_close(roll.rel_l2[b], expected, rtol=1e-5, atol=1e-7)
    summary = roll.summary()
    assert len(summary["rel_l2_mean"]) == ds.n_times - 2 and len(summary["rel_l2_per_sample"]) == 3


def test_rollout_needs_a_window_task(heat_data):
    ds = FieldDataset([heat_data / "test" / "easy.h5"], task=Task("one_shot", 1, 1))
    with pytest.raises(UserError, match="window"):
        rollout(_Persistence(1), ds)


def test_evaluate_reports_rollouts_and_the_plot_draws_them(heat_data, tmp_path):
    from pde_lab.evaluation.evaluate import evaluate
    from pde_lab.plotting import plot_rollout_error
    from pde_lab.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(data=str(heat_data), task=Task("window", 1, 1), model="fno",
                      model_args=dict(width=8, modes=6, n_layers=2, proj_width=16), epochs=2, batch_size=8,
                      device="cpu", progress=False, out=str(run)))
    result = evaluate(run, heat_data, device="cpu")
    for level in ("easy", "hard"):
        r = result["levels"][level]["rollout"]
        assert len(r["times"]) == len(r["rel_l2_mean"]) == 10 and all(np.isfinite(r["rel_l2_max"]))
    fig = plot_rollout_error(run)
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(UserError, match="no level"):
        plot_rollout_error(result, levels=["medium"])
