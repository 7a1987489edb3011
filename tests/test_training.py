"""The training loop, its config, run directories, checkpoints and exact resume."""
import csv
import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from pde_lab.errors import UserError
from pde_lab.operators import build_model, load_model
from pde_lab.pdes.base import Task
from pde_lab.training import (Normalizer, TrainConfig, fit, from_model_layout, load_run, relative_l2,
                              to_model_layout, train)
from pde_lab.training.trainer import epoch_order, rng_state, set_rng_state


class ArrayDataset(Dataset):
    """In-memory data following the reader's contract: ``x: (N, T_in, *space, C_in)``, ``y: (N, T_out, *space, C_out)``."""

    pde_name = "synthetic"

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x.float(), y.float()
        self.input_channels = [f"a{i}" for i in range(x.shape[-1])]
        self.target_channels = [f"u{i}" for i in range(y.shape[-1])]
        self.spatial_shape = tuple(x.shape[2:-1])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def stats(self):
        def per_channel(a):
            flat = a.reshape(-1, a.shape[-1]).double()
            return flat.mean(0).numpy(), flat.std(0, unbiased=False).numpy()
        (xm, xs), (ym, ys) = per_channel(self.x), per_channel(self.y)
        return {"x_mean": xm, "x_std": xs, "y_mean": ym, "y_std": ys}


def antiderivative_data(n: int, s: int, seed: int) -> ArrayDataset:
    """Periodic zero-mean f on [0, 1) -> its zero-mean antiderivative, a linear operator FNO can learn.

    Shapes: x ``(n, 1, s, 1)``, y ``(n, 1, s, 1)``; f has a random offset so normalisation matters.
    """
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, 6, dtype=torch.float64)
    a, b = torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g, dtype=torch.float64)
    t = torch.arange(s, dtype=torch.float64) / s
    phase = 2 * math.pi * k[None, :, None] * t[None, None, :]
    f = (a[..., None] * torch.cos(phase) + b[..., None] * torch.sin(phase)).sum(1)
    big_f = ((a[..., None] * torch.sin(phase) - b[..., None] * torch.cos(phase)) / (2 * math.pi * k[None, :, None])).sum(1)
    return ArrayDataset((f + 3.0)[:, None, :, None], big_f[:, None, :, None])


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = dict(model="fno", model_args=dict(width=8, modes=4, n_layers=2, proj_width=16), lr=3e-3,
                epochs=4, batch_size=4, seed=3, device="cpu", progress=False, scheduler="cosine")
    base.update(kw)
    return TrainConfig(**base)


def tiny_model(config: TrainConfig, ds: ArrayDataset):
    torch.manual_seed(config.seed)
    return build_model("fno", in_channels=1, out_channels=1, n_dims=1, **config.model_args)


# ---- pieces -----------------------------------------------------------------------------------------
def test_layout_round_trip_is_time_major():
    x = torch.randn(2, 3, 5, 4, 2)  # (B, T, nx, ny, C)
    z = to_model_layout(x)
    assert z.shape == (2, 6, 5, 4)
    torch.testing.assert_close(z[:, 1 * 2 + 1], x[:, 1, ..., 1])  # channel t*C + c
    torch.testing.assert_close(from_model_layout(z, 3, 2), x)


def test_normalizer_round_trip_and_constant_channel():
    norm = Normalizer([1.0, 2.0], [2.0, 0.0], [5.0], [0.5])
    x = torch.tensor([[3.0, 7.0]])
    torch.testing.assert_close(norm.encode_x(x), torch.tensor([[1.0, 5.0]]))  # std 0 -> 1
    y = torch.randn(4, 1)
    torch.testing.assert_close(norm.decode_y(norm.encode_y(y)), y)


def test_relative_l2_per_sample():
    target = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    pred = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    torch.testing.assert_close(relative_l2(pred, target), torch.tensor([0.0, 1.0]))


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert epoch_order(10, 0, 3) == epoch_order(10, 0, 3)
    assert sorted(epoch_order(10, 0, 3)) == list(range(10))
    assert epoch_order(10, 0, 3) != epoch_order(10, 0, 4)
    assert epoch_order(10, 0, 3) != epoch_order(10, 1, 3)


def test_rng_states_survive_a_checkpoint_round_trip(tmp_path):
    """The FNO draws no random numbers while training, so the resume tests cannot see these states."""
    import random
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    torch.save({"rng": rng_state()}, tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_resolve_device():
    from pde_lab.training.config import resolve_device
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")


# ---- config -----------------------------------------------------------------------------------------
def test_config_yaml_round_trip(tmp_path):
    config = TrainConfig(data="data/x", levels=["easy", "hard"], task=Task("window", 3, 2),
                         model_args={"width": 16, "modes": [4, 4]}, lr=3e-4, scheduler="cosine",
                         time_limit_minutes=1.5, grad_clip=None, out="runs/a")
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert TrainConfig.from_yaml(path) == config
    # YAML written by hand: PyYAML reads 1e-3 as a string, the config converts it.
    assert TrainConfig.from_yaml("lr: 1e-3\nepochs: 7\n").lr == 1e-3


def test_config_overrides_convert_types():
    config = TrainConfig().apply_overrides(
        ["lr=1e-3", "epochs=20", "model_args.width=32", "model_args.modes=[8,6]", "model_args.grid=false",
         "levels=easy,medium", "task.mode=window", "task.input_steps=10", "grad_clip=none", "normalize=no",
         "time_limit_minutes=1"])
    assert config.lr == 1e-3 and config.epochs == 20 and config.normalize is False
    assert config.model_args == {"width": 32, "modes": [8, 6], "grid": False}
    assert config.levels == ["easy", "medium"]
    assert config.task == Task("window", 10, 1)
    assert config.grad_clip is None and config.time_limit_minutes == 1.0


@pytest.mark.parametrize("override,message", [
    ("lrr=1", r"unknown config key 'lrr' \(did you mean 'lr'\?\); allowed: .*batch_size"),
    ("lr=fast", r"'lr' must be a number, got 'fast'"),
    ("epochs=2.5", r"'epochs' must be an integer"),
    ("optimizer=sgd", r"unknown optimizer 'sgd'; allowed: adam, adamw"),
    ("scheduler=linear", r"allowed: cosine, none, step"),
    ("task.steps=3", r"unknown config key 'task.steps'; allowed: task.mode"),
    ("task.mode=rollout", r"unknown task.mode 'rollout'; allowed: one_shot, time, window"),
    ("batch_size=0", r"'batch_size' must be positive"),
    ("device=gpu", r"unknown device 'gpu'"),
    ("model=nope", r"unknown model 'nope'; allowed: .*fno"),
    ("lr", r"not of the form key=value"),
    ("lr.x=1", r"has no sub-keys"),
    ("lr=inf", r"'lr' must be positive and finite, got inf"),
    ("grad_clip=inf", r"'grad_clip' must be positive and finite"),
    ("seed=-1", r"'seed' must be non-negative"),
    ("model_args.widht=8", r"model 'fno' has no argument 'widht' \(did you mean 'width'\?\); allowed model_args: .*modes"),
])
def test_config_override_errors_name_the_problem(override, message):
    with pytest.raises(UserError, match=message):
        TrainConfig().apply_overrides([override])


def test_config_yaml_unknown_key():
    with pytest.raises(UserError, match="unknown config key 'epoch' .*did you mean 'epochs'"):
        TrainConfig.from_yaml("epoch: 3\n")


# ---- training ---------------------------------------------------------------------------------------
def test_training_lowers_the_loss_and_writes_the_run_dir(tmp_path):
    train_ds, valid_ds = antiderivative_data(64, 64, seed=0), antiderivative_data(16, 64, seed=1)
    config = tiny_config(tmp_path, epochs=12, batch_size=8, lr=5e-3)
    run_dir = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "run")

    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.yaml", "log.csv"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    with (run_dir / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "train_loss", "valid_loss", "lr", "seconds"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
    first, last = float(rows[0]["valid_loss"]), float(rows[-1]["valid_loss"])
    assert last < 0.3 * first, (first, last)
    assert float(rows[-1]["lr"]) < float(rows[0]["lr"])  # cosine decay

    stored = TrainConfig.from_yaml(run_dir / "config.yaml")
    assert stored.model_args["in_channels"] == 1 and stored.model_args["modes"] == [4]
    assert stored.resume is False and stored.epochs == 12

    run = load_run(run_dir)
    assert len(run.log) == 12 and not run.model.training
    assert load_run(run_dir, checkpoint="last").epoch == 12
    best_epoch = min(run.log, key=lambda r: r["valid_loss"])["epoch"]
    assert run.epoch == best_epoch
    x, y = valid_ds.x[:5], valid_ds.y[:5]
    pred = run.predict(x)
    assert pred.shape == y.shape
    err = relative_l2(pred, y).mean().item()
    assert err == pytest.approx(run.log[best_epoch - 1]["valid_loss"], rel=0.5)
    torch.testing.assert_close(run.predict(x.numpy(), batch_size=2), pred)
    # The checkpoint alone rebuilds the model, without the training code's help.
    model = load_model(run_dir / "checkpoints" / "best.pt")
    torch.testing.assert_close(model(to_model_layout(run.normalizer.encode_x(x))),
                               run.model(to_model_layout(run.normalizer.encode_x(x))))


def _state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def _assert_same_run(a, b):
    sa, sb = _state(a), _state(b)
    assert sa["epoch"] == sb["epoch"]
    for key, value in sa["model"]["state_dict"].items():
        assert torch.equal(value, sb["model"]["state_dict"][key]), key
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in sa["history"]]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in sb["history"]]


@pytest.mark.parametrize("scheduler", ["cosine", "step"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, scheduler):
    train_ds, valid_ds = antiderivative_data(12, 32, seed=0), antiderivative_data(4, 32, seed=1)
    config = tiny_config(tmp_path, scheduler=scheduler, step_size=1, gamma=0.7, grad_clip=1.0)

    full = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "full")
    part = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "part", stop_after=2)
    assert _state(part)["epoch"] == 2
    # A different initialisation proves the weights come from the checkpoint.
    torch.manual_seed(123)
    resumed_model = build_model("fno", in_channels=1, out_channels=1, n_dims=1, **config.model_args)
    torch.manual_seed(999)  # and the RNG state as well
    fit(resumed_model, train_ds, valid_ds, TrainConfig(**{**config.to_dict(), "resume": True}), part)
    _assert_same_run(full, part)
    with (part / "log.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]


def test_extending_a_finished_run_equals_a_longer_run(tmp_path):
    train_ds, valid_ds = antiderivative_data(12, 32, seed=0), antiderivative_data(4, 32, seed=1)
    long = tiny_config(tmp_path, scheduler="step", step_size=2, epochs=4)
    short = TrainConfig(**{**long.to_dict(), "epochs": 2})
    full = fit(tiny_model(long, train_ds), train_ds, valid_ds, long, tmp_path / "full")
    part = fit(tiny_model(short, train_ds), train_ds, valid_ds, short, tmp_path / "part")
    fit(tiny_model(long, train_ds), train_ds, valid_ds, TrainConfig(**{**long.to_dict(), "resume": True}), part)
    _assert_same_run(full, part)


def test_resume_refuses_a_different_model(tmp_path):
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=1)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    other = TrainConfig(**{**config.to_dict(), "resume": True, "epochs": 2})
    torch.manual_seed(0)
    wider = build_model("fno", in_channels=1, out_channels=1, n_dims=1, width=12, modes=4, n_layers=2)
    with pytest.raises(UserError, match="cannot resume: the checkpoint holds model 'fno'"):
        fit(wider, train_ds, None, other, run_dir)


def test_resume_refuses_optimizer_settings_the_checkpoint_would_override(tmp_path):
    """The checkpoint's optimizer state carries lr and weight decay: a resume with new values trained
    with the old ones while config.yaml recorded the new ones. It is refused, the run left as it was."""
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=1)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    for change, message in [({"lr": 0.5}, r"lr: 0.003 -> 0.5"),
                            ({"weight_decay": 0.0, "optimizer": "adamw"}, r"optimizer: 'adam' -> 'adamw', .*weight_decay"),
                            ({"optimizer_args": {"eps": 1e-6}}, r"optimizer_args: \{\} -> \{'eps': 1e-06\}"),
                            ({"normalize": False}, r"normalize: True -> False")]:
        resumed = TrainConfig(**{**config.to_dict(), "resume": True, "epochs": 2, **change})
        with pytest.raises(UserError, match="cannot resume with a changed " + message):
            fit(tiny_model(config, train_ds), train_ds, None, resumed, run_dir)
    assert {p.name: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()} == before


def test_in_memory_statistics_agree_with_numpy_and_leave_a_constant_channel_unscaled():
    from pde_lab.training.trainer import compute_stats

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.full((6, 2, 16, 1), 0.1, dtype=torch.float64),
                   1e4 + torch.randn(6, 2, 16, 1, generator=g, dtype=torch.float64)], dim=-1)
    y = torch.randn(6, 1, 16, 1, generator=g, dtype=torch.float64)
    x, y = x.float().double(), y.float().double()  # what ArrayDataset stores
    stats = compute_stats(ArrayDataset(x, y))
    flat = x.reshape(-1, 2).numpy()
    assert stats["x_std"][0] < 1e-15
    np.testing.assert_allclose(stats["x_mean"], flat.mean(0), rtol=1e-14)
    # a mean 1e4 times the spread: the one-pass E[x²] − E[x]² was 9e-9 off in relative terms
    np.testing.assert_allclose(stats["x_std"][1], flat[:, 1].std(), rtol=1e-12)
    np.testing.assert_allclose([stats["y_mean"][0], stats["y_std"][0]], [y.mean().item(), y.std(correction=0).item()],
                               rtol=1e-12)
    assert Normalizer.from_stats(stats).x_std[0] == 1.0


def test_resume_from_config_yaml_accepts_a_tuple_the_yaml_file_holds_as_a_list(tmp_path):
    """betas given as a tuple from Python are a list once read back from config.yaml: not a change."""
    import dataclasses

    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=1, optimizer_args={"betas": (0.9, 0.99)})
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    stored = TrainConfig.from_yaml(run_dir / "config.yaml")
    assert stored.optimizer_args == {"betas": [0.9, 0.99]}
    fit(tiny_model(config, train_ds), train_ds, None, dataclasses.replace(stored, resume=True, epochs=2), run_dir)
    assert _state(run_dir)["epoch"] == 2
    with pytest.raises(UserError, match=r"optimizer_args: \{'betas': \[0.9, 0.99\]\} -> \{'betas': \[0.9, 0.9\]\}"):
        fit(tiny_model(config, train_ds), train_ds, None,
            dataclasses.replace(stored, resume=True, epochs=3, optimizer_args={"betas": [0.9, 0.9]}), run_dir)


def test_resume_accepts_a_checkpoint_written_before_an_argument_with_a_default_existed(tmp_path):
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=1)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    path = run_dir / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    assert state["model"]["args"].pop("transform") == "fft"  # as written before FNO took `transform`
    torch.save(state, path)
    fit(tiny_model(config, train_ds), train_ds, None, TrainConfig(**{**config.to_dict(), "resume": True, "epochs": 2}),
        run_dir)
    assert _state(run_dir)["epoch"] == 2


def test_time_limit_stops_after_the_first_epoch(tmp_path):
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=50, time_limit_minutes=1e-9)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    assert _state(run_dir)["epoch"] == 1


def test_run_dir_refusals(tmp_path):
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=1)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    with pytest.raises(UserError, match=r"is not empty; .*\(--overwrite, overwrite=true\) .*\(--resume, resume=true\)"):
        fit(tiny_model(config, train_ds), train_ds, None, config, run_dir)
    with pytest.raises(UserError, match="cannot resume: .*last.pt' does not exist"):
        fit(tiny_model(config, train_ds), train_ds, None, TrainConfig(**{**config.to_dict(), "resume": True}),
            tmp_path / "elsewhere")
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a pde_lab run directory"):
        fit(tiny_model(config, train_ds), train_ds, None, TrainConfig(**{**config.to_dict(), "overwrite": True}), stray)
    assert (stray / "notes.txt").read_text() == "keep me"
    (run_dir / "old_metrics.json").write_text("{}")
    fit(tiny_model(config, train_ds), train_ds, None, TrainConfig(**{**config.to_dict(), "overwrite": True}), run_dir)
    assert not (run_dir / "old_metrics.json").exists() and (run_dir / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("model_args,extra,message", [
    (dict(modes=20), {}, r"does not fit the data .*FNO keeps 20 modes along spatial axis 0 but the input has only 32"),
    (dict(in_channels=2), {}, r"does not fit the data .*FNO expects input \(batch, 2, 1 spatial axes\)"),
    (dict(out_channels=3), {}, r"does not fit the data: model output has 3 channels, expected 1 steps x 1 fields"),
    ({}, dict(optimizer_args={"betaz": [0.9, 0.99]}), r"optimizer 'adam' rejects arguments \['betaz'\]"),
])
def test_a_model_or_optimizer_that_cannot_train_leaves_the_previous_run_intact(tmp_path, model_args, extra, message):
    """Bad input fails before the run directory is touched: overwrite=true must not have emptied the
    previous run, and no half-made run (config.yaml without checkpoints) is left."""
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=1)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    bad = TrainConfig(**{**config.to_dict(), "overwrite": True, **extra})
    torch.manual_seed(0)
    model = build_model("fno", **{**dict(in_channels=1, out_channels=1, n_dims=1), **config.model_args, **model_args})
    with pytest.raises(UserError, match=message):
        fit(model, train_ds, None, bad, run_dir)
    assert {p.name: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()} == before
    with pytest.raises(UserError, match=message):
        fit(model, train_ds, None, bad, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_train_entry_point_on_generated_data(tmp_path, capsys):
    """``train`` on real files: opens splits, adds varying parameters as channels, fills in model
    channels, hashes the files."""
    import hashlib

    from pde_lab.datasets import GenerateConfig, generate

    data = generate(GenerateConfig(pde="toy_scale", out=str(tmp_path / "data"), n_train=6, n_valid=2, n_test=2,
                                   batch_size=4, progress=False))
    config = TrainConfig(data=str(data), levels=["easy"], epochs=1, batch_size=3,
                         model_args={"width": 4, "modes": 3, "proj_width": 8},
                         out=str(tmp_path / "run"), device="cpu", progress=False)
    run_dir = train(config)

    stored = TrainConfig.from_yaml(run_dir / "config.yaml")
    # input a + the varying parameter c; targets u, v_x, v_y; a 2D grid
    assert stored.parameters == ["c"]
    assert stored.model_args["in_channels"] == 2 and stored.model_args["out_channels"] == 3
    assert stored.model_args["n_dims"] == 2
    record = json.loads((run_dir / "data.json").read_text())
    assert record["data"] == str(data.resolve()) and record["levels"] == ["easy"]
    files = [data / "train" / "easy.h5", data / "valid" / "easy.h5"]
    assert [f["sha256"] for f in record["files"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    run = load_run(run_dir)
    assert run.predict(torch.randn(3, 1, 8, 8, 2)).shape == (3, 1, 8, 8, 3)
    assert run.data["input_channels"] == ["a", "c"]
    # A missing parameter channel would broadcast against the normaliser's two channels.
    with pytest.raises(UserError, match=r"takes inputs \(B, 1, n, n, 2\) with channels \['a', 'c'\], "
                                        r"got shape \(3, 1, 8, 8, 1\); open the data with parameters="):
        run.predict(torch.randn(3, 1, 8, 8, 1))

    # A checkpoint file of another run is read with the config it was trained with; the run's own
    # checkpoints with its config.yaml (the latest: a resume may have changed it).
    plain = train(TrainConfig(**{**config.to_dict(), "parameters": [], "out": str(tmp_path / "plain")}))
    borrowed = load_run(run_dir, checkpoint=str(plain / "checkpoints" / "best.pt"))
    assert borrowed.config.parameters == [] and borrowed.predict(torch.randn(2, 1, 8, 8, 1)).shape == (2, 1, 8, 8, 3)
    stored = TrainConfig.from_yaml(run_dir / "config.yaml")
    TrainConfig(**{**stored.to_dict(), "epochs": 7}).to_yaml(run_dir / "config.yaml")
    assert load_run(run_dir).config.epochs == 7
    stored.to_yaml(run_dir / "config.yaml")

    # data.json written in the older sorted order: a resume with the same files does not warn.
    import warnings

    record = json.loads((plain / "data.json").read_text())
    record["files"] = sorted(record["files"], key=lambda f: f["path"], reverse=True)
    (plain / "data.json").write_text(json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(TrainConfig(**{**config.to_dict(), "parameters": [], "out": str(plain), "epochs": 2, "resume": True}))
    assert _state(plain)["epoch"] == 2

    # holding the splits in memory changes nothing but where items are read from
    preloaded = train(TrainConfig(**{**config.to_dict(), "preload": True, "out": str(tmp_path / "mem")}))
    _assert_same_run(run_dir, preloaded)

    with pytest.raises(UserError, match="model_args.in_channels=3 does not match the data, which needs 2"):
        train(TrainConfig(**{**config.to_dict(), "model_args": {"in_channels": 3}, "out": str(tmp_path / "r2")}))
    with pytest.raises(UserError, match="no run directory"):
        train(TrainConfig(**{**config.to_dict(), "out": None}))
    with pytest.raises(UserError, match="has no parameter 'viscosity'"):
        train(TrainConfig(**{**config.to_dict(), "parameters": ["viscosity"], "out": str(tmp_path / "r3")}))

    # Resuming the finished run is recognised from its checkpoint before the data are opened or hashed.
    before = _snapshot(run_dir)
    data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert train(TrainConfig(**{**config.to_dict(), "resume": True})) == run_dir
    assert "already finished" in capsys.readouterr().out and _snapshot(run_dir) == before


def test_train_without_a_validation_split_keeps_the_lowest_training_loss(tmp_path, capsys):
    from pde_lab.datasets import GenerateConfig, generate

    data = generate(GenerateConfig(pde="toy_scale", out=str(tmp_path / "data"), n_train=4, n_valid=0, n_test=2,
                                   batch_size=4, progress=False))
    run_dir = train(TrainConfig(data=str(data), epochs=2, batch_size=2, model_args={"width": 4, "modes": 3},
                                out=str(tmp_path / "run"), device="cpu", progress=False))
    assert "has no valid split: checkpoints/best.pt will be the epoch of lowest training loss" in capsys.readouterr().out
    state = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    losses = [row["train_loss"] for row in state["history"]]
    assert state["best_valid"] == min(losses) and all(math.isnan(row["valid_loss"]) for row in state["history"])
    record = json.loads((run_dir / "data.json").read_text())
    assert record["n_valid"] == 0 and [f["path"] for f in record["files"]] == [str(data / "train" / "easy.h5")]


def test_a_pointwise_network_is_not_trained_on_fields(tmp_path):
    with pytest.raises(UserError, match=r"model 'pinn_mlp' maps coordinates to values .* --pde NAME.*: cno, "):
        train(TrainConfig(data=str(tmp_path), model="pinn_mlp", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_a_resume_with_a_longer_schedule_follows_it_from_the_first_resumed_epoch(tmp_path):
    """The optimizer state holds the learning rate the old schedule set: without recomputing it, the
    first resumed epoch of a cosine run extended from 2 to 4 epochs trained at the old end value, 0."""
    train_ds = antiderivative_data(8, 32, seed=0)
    short = tiny_config(tmp_path, epochs=2, scheduler="cosine")
    run_dir = fit(tiny_model(short, train_ds), train_ds, None, short, tmp_path / "run")
    fit(tiny_model(short, train_ds), train_ds, None, TrainConfig(**{**short.to_dict(), "epochs": 4, "resume": True}),
        run_dir)
    lrs = [row["lr"] for row in _state(run_dir)["history"]]
    cosine = [short.lr * 0.5 * (1 + math.cos(math.pi * e / n)) for n, e in [(2, 0), (2, 1), (4, 2), (4, 3)]]
    assert lrs == pytest.approx(cosine, rel=1e-12)


def test_resume_refuses_another_training_set(tmp_path):
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=1)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    for change, message in [({"levels": ["easy"]}, r"levels: None -> \['easy'\]"), ({"n_train": 4}, r"n_train: None -> 4")]:
        resumed = TrainConfig(**{**config.to_dict(), "resume": True, "epochs": 2, **change})
        with pytest.raises(UserError, match="cannot resume with a changed " + message):
            fit(tiny_model(config, train_ds), train_ds, None, resumed, run_dir)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_matches_cpu_closely(tmp_path):
    train_ds, valid_ds = antiderivative_data(16, 64, seed=0), antiderivative_data(4, 64, seed=1)
    runs = {}
    for device in ("cpu", "cuda"):
        config = tiny_config(tmp_path, epochs=2, device=device)
        runs[device] = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / device)
    cpu, gpu = load_run(runs["cpu"], checkpoint="last"), load_run(runs["cuda"], checkpoint="last", device="cuda")
    assert next(gpu.model.parameters()).is_cuda
    np.testing.assert_allclose([r["train_loss"] for r in cpu.log], [r["train_loss"] for r in gpu.log], rtol=1e-3)
    torch.testing.assert_close(gpu.predict(valid_ds.x), cpu.predict(valid_ds.x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["soap", "shampoo", "adamw"])
def test_operator_training_with_the_preconditioned_optimizers(tmp_path, optimizer):
    """SOAP and Shampoo (pytorch-optimizer) drive the operator trainer like Adam; a misspelt argument is named."""
    train_ds, valid_ds = antiderivative_data(32, 32, seed=0), antiderivative_data(8, 32, seed=1)
    config = tiny_config(tmp_path, epochs=6, batch_size=8, lr=3e-3, optimizer=optimizer)
    run_dir = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "run")
    with (run_dir / "log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["valid_loss"]) < float(rows[0]["valid_loss"])
    bad = tiny_config(tmp_path, optimizer=optimizer, optimizer_args={"betaz": 0.9})
    with pytest.raises(UserError, match="rejects arguments"):
        fit(tiny_model(bad, train_ds), train_ds, valid_ds, bad, tmp_path / "run2")


def test_early_stopping_stops_when_validation_stalls(tmp_path):
    """lr = 0 freezes the model, so the validation loss never improves after epoch 1: with patience 2
    training stops after epoch 3 of 10 and best.pt stays at epoch 1."""
    train_ds, valid_ds = antiderivative_data(16, 32, seed=0), antiderivative_data(8, 32, seed=1)
    config = tiny_config(tmp_path, epochs=10, batch_size=8, optimizer="adam", optimizer_args={"lr": 0.0},
                         patience=2, scheduler="none")
    run_dir = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "run")
    run = load_run(run_dir)
    assert len(run.log) == 3 and run.epoch == 1
    with pytest.raises(UserError, match="patience"):
        tiny_config(tmp_path, patience=0)


def _snapshot(run_dir):
    """Every file's bytes and modification time: equal snapshots mean nothing was rewritten."""
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _resumed(config, **change):
    return TrainConfig(**{**config.to_dict(), "resume": True, **change})


def test_resuming_an_early_stopped_run_finds_it_finished_until_patience_is_raised(tmp_path, capsys):
    """A run that stopped early met its stopping rule: resumed with the same patience, even with more
    epochs, it is finished and left as it was (it used to train one more epoch and stop again). A
    larger patience trains on until the rule holds again; patience=none trains up to epochs."""
    train_ds, valid_ds = antiderivative_data(16, 32, seed=0), antiderivative_data(8, 32, seed=1)
    config = tiny_config(tmp_path, epochs=10, batch_size=8, optimizer="adam", optimizer_args={"lr": 0.0},
                         patience=2, scheduler="none")
    run_dir = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "run")
    assert _state(run_dir)["epoch"] == 3 and _state(run_dir)["best_epoch"] == 1
    before = _snapshot(run_dir)
    capsys.readouterr()
    for change in ({}, {"epochs": 20}):
        assert fit(tiny_model(config, train_ds), train_ds, valid_ds, _resumed(config, **change), run_dir) == run_dir
        assert _snapshot(run_dir) == before, change
        out = capsys.readouterr().out
        assert "already finished" in out and "stopped early after epoch 3" in out and "raise patience" in out

    fit(tiny_model(config, train_ds), train_ds, valid_ds, _resumed(config, patience=3), run_dir)
    assert _state(run_dir)["epoch"] == 4 and len(load_run(run_dir, checkpoint="last").log) == 4
    fit(tiny_model(config, train_ds), train_ds, valid_ds, _resumed(config, patience=None, epochs=6), run_dir)
    state = _state(run_dir)
    assert state["epoch"] == 6 and [row["epoch"] for row in state["history"]] == [1, 2, 3, 4, 5, 6]
    assert TrainConfig.from_yaml(run_dir / "config.yaml").patience is None


def test_resuming_a_completed_run_leaves_it_as_it_was(tmp_path, capsys):
    """A run that trained all its epochs, resumed with the same (or fewer) epochs, has nothing to do:
    no file is rewritten and the message says how to train on."""
    train_ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, epochs=2)
    run_dir = fit(tiny_model(config, train_ds), train_ds, None, config, tmp_path / "run")
    before = _snapshot(run_dir)
    capsys.readouterr()
    for epochs in (2, 1):
        fit(tiny_model(config, train_ds), train_ds, None, _resumed(config, epochs=epochs), run_dir)
        assert _snapshot(run_dir) == before, epochs
        out = capsys.readouterr().out
        assert "already finished" in out and f"trained 2 epochs (epochs={epochs})" in out and "raise epochs" in out
    fit(tiny_model(config, train_ds), train_ds, None, _resumed(config, epochs=3), run_dir)
    assert _state(run_dir)["epoch"] == 3


@pytest.mark.parametrize("model_name,args", [("fno", dict(width=8, modes=4, n_layers=2, proj_width=16)),
                                             ("ffno", dict(width=8, modes=4, n_layers=2))])
def test_mixed_precision_runs_pointwise_layers_in_bfloat16_and_ffts_in_float32(tmp_path, model_name, args):
    """amp=true on CPU autocast: the first lifting layer computes in bfloat16, the spectral layers get
    float32 (the FFT rejects bfloat16), and training still lowers the loss."""
    train_ds, valid_ds = antiderivative_data(32, 32, seed=0), antiderivative_data(8, 32, seed=1)
    config = tiny_config(tmp_path, model=model_name, model_args=args, epochs=4, batch_size=8, lr=5e-3, amp=True)
    torch.manual_seed(config.seed)
    model = build_model(model_name, in_channels=1, out_channels=1, n_dims=1, **args)
    seen = {}

    def record(key):
        def hook(module, inputs, output):
            seen.setdefault(key, (inputs[0].dtype, output.dtype))
        return hook

    first = next(m for m in model.modules() if type(m).__name__ == "Pointwise")
    first.register_forward_hook(record("lift"))
    spectral = next(m for m in model.modules() if "Spectral" in type(m).__name__)
    spectral.register_forward_hook(record("spectral"))
    run_dir = fit(model, train_ds, valid_ds, config, tmp_path / "run")
    assert seen["lift"][1] == torch.bfloat16 and seen["spectral"] == (torch.bfloat16, torch.float32)
    rows = load_run(run_dir).log
    assert rows[-1]["valid_loss"] < rows[0]["valid_loss"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixed_precision_training_on_cuda(tmp_path):
    train_ds, valid_ds = antiderivative_data(32, 32, seed=0), antiderivative_data(8, 32, seed=1)
    config = tiny_config(tmp_path, epochs=4, batch_size=8, lr=5e-3, amp=True, device="cuda")
    run_dir = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "run")
    rows = load_run(run_dir).log
    assert rows[-1]["valid_loss"] < rows[0]["valid_loss"]


def test_tensorboard_scalars_match_the_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_ds, valid_ds = antiderivative_data(16, 32, seed=0), antiderivative_data(8, 32, seed=1)
    config = tiny_config(tmp_path, epochs=3, batch_size=8, tensorboard=True)
    run_dir = fit(tiny_model(config, train_ds), train_ds, valid_ds, config, tmp_path / "run")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    log = load_run(run_dir, checkpoint="last").log
    for key in ("train_loss", "valid_loss"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx([row[key] for row in log], rel=1e-6)
