"""Operators trained, evaluated and plotted on unstructured-mesh datasets (poisson_fem, heat_fem)
through the same commands as on grids: the point models get the nodes' coordinates."""
import csv
import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from pde_lab.cli import main
from pde_lab.datasets.reader import FieldDataset, open_split, unit_box
from pde_lab.errors import UserError
from pde_lab.evaluation.metrics import relative_l2
from pde_lab.evaluation.rollout import persistence_channels, rollout
from pde_lab.plotting import plot_error_field, plot_spectrum
from pde_lab.training.checkpoint import load_run
from pde_lab.training.pushforward import PushforwardPairs
from pde_lab.training.trainer import evaluate_loss

DEEPONET = ["--model", "deeponet", "--set", "model_args.branch=mlp", "--set", "model_args.width=64",
            "--set", "model_args.basis=32"]


@pytest.fixture(scope="module")
def poisson_mesh(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesh") / "poisson_fem"
    assert main(["generate", "--pde", "poisson_fem", "--levels", "easy,medium", "--n-train", "48", "--n-valid", "8",
                 "--n-test", "8", "--resolution", "12", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def deeponet_run(poisson_mesh, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "deeponet"
    assert main(["train", "--data", str(poisson_mesh), "--levels", "easy", *DEEPONET, "--epochs", "60",
                 "--batch-size", "8", "--out", str(run), "--quiet"]) == 0
    return run


def test_mesh_items_are_node_values_with_coordinates_in_the_unit_box(poisson_mesh):
    ds = open_split(poisson_mesh, "train", levels=["medium"])
    with h5py.File(poisson_mesh / "train" / "medium.h5") as f:
        nodes, cells = f["mesh/nodes"][()], f["mesh/cells"][()]
        a, u = f["t0_fields/a"][3], f["t0_fields/u"][3]
    x, y = ds[3]
    assert x.shape == (1, len(nodes), 2) and y.shape == (1, len(nodes), 1)
    np.testing.assert_allclose(x[0, :, 0].numpy(), a, rtol=1e-6)
    np.testing.assert_allclose(y[0, :, 0].numpy(), u, rtol=1e-6)
    p = ds.points.numpy()
    # the plate [0, 2] x [0, 1]: one scale for both axes, so the shape keeps its proportions
    np.testing.assert_allclose(p.min(axis=0), 0.0, atol=1e-7)
    np.testing.assert_allclose(p.max(axis=0), [1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(p * 2.0, nodes, atol=1e-6)
    np.testing.assert_array_equal(p, unit_box(nodes))
    # the metrics' node weights: each node's share of the plate's area
    e1, e2 = nodes[cells[:, 1]] - nodes[cells[:, 0]], nodes[cells[:, 2]] - nodes[cells[:, 0]]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    assert ds.weights.shape == (len(nodes),) and bool((ds.weights > 0).all())
    assert float(ds.weights.sum()) == pytest.approx(area, rel=1e-12)


def test_files_of_different_meshes_are_refused_together(poisson_mesh):
    with pytest.raises(UserError, match="holds another mesh than .*--levels NAME"):
        open_split(poisson_mesh, "train")


def test_deeponet_learns_the_poisson_operator_on_a_disk_mesh(deeponet_run):
    with (deeponet_run / "log.csv").open() as fh:
        valid = [float(r["valid_loss"]) for r in csv.DictReader(fh)]
    # -Δu = f on the disk is linear in f: the error falls from 0.62 to 0.18 in 60 epochs of 48 samples
    assert valid[-1] < 0.4 * valid[0]
    run = load_run(deeponet_run)
    assert run.on_mesh and run.model.config["n_sensors"] == run.data["spatial_shape"][0]


def test_evaluation_and_figures_on_a_mesh(deeponet_run, poisson_mesh, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(deeponet_run), "--data", str(poisson_mesh), "--levels", "easy",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["levels"]["easy"]
    run = load_run(deeponet_run)
    ds = open_split(poisson_mesh, "test", levels=["easy"])
    x, y = (torch.stack(t) for t in zip(*(ds[i] for i in range(len(ds)))))
    pred = run.predict(x, points=ds.points)
    with h5py.File(out / "predictions_test.h5") as f, h5py.File(poisson_mesh / "test" / "easy.h5") as src:
        np.testing.assert_allclose(f["easy/prediction"][()], pred.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(f["easy/mesh_cells"][()], src["mesh/cells"][()])
        np.testing.assert_array_equal(f["easy/mesh_nodes"][()], src["mesh/nodes"][()])
        nodes, cells = src["mesh/nodes"][()], src["mesh/cells"][()]
    # The metrics weigh each node by its third of the area of the triangles around it.
    a, b, c = (nodes[cells[:, k]] for k in range(3))
    area = 0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    w = np.zeros(len(nodes))
    np.add.at(w, cells, area[:, None] / 3)
    root = torch.from_numpy(np.sqrt(w)).reshape(1, 1, -1, 1)
    per_sample = ((pred - y) * root).flatten(1).norm(dim=1) / (y * root).flatten(1).norm(dim=1)
    rel = per_sample.mean().item()
    assert metrics["space_weights"] == "lumped_mass"
    assert metrics["relative_l2"]["mean"] == pytest.approx(rel, rel=1e-5)
    # the trainer's validation error (and loss) is the same norm
    assert evaluate_loss(run.model, ds, run.normalizer, 1, 3, torch.device("cpu")) == pytest.approx(rel, rel=1e-5)
    by_node = ((pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean().item()
    assert abs(by_node / rel - 1) > 1e-3  # the weights matter
    fig = plot_error_field(out, sample=2)
    drawn = [c for a in fig.axes for c in a.collections if type(c).__name__ == "TriMesh"]
    assert len(drawn) == 3 and all(len(c.get_array()) == x.shape[2] for c in drawn)
    assert f"rel. L2 {per_sample[2].item():.2e}" in " ".join(a.get_title() for a in fig.axes)
    with pytest.raises(UserError, match="trained on mesh nodes: pass points=ds.points"):
        run.predict(x)
    with pytest.raises(UserError, match="points must be \\(N, d\\) with N = "):
        run.predict(x, points=ds.points[:-1])


def test_grid_models_and_the_cnn_branch_are_refused_on_a_mesh(poisson_mesh, tmp_path, capsys):
    assert main(["train", "--data", str(poisson_mesh), "--levels", "easy", "--model", "fno", "--epochs", "1",
                 "--out", str(tmp_path / "fno"), "--quiet"]) == 2
    assert "model 'fno' reads grids only; on a mesh use deeponet, galerkin_transformer" in capsys.readouterr().err
    assert main(["train", "--data", str(poisson_mesh), "--levels", "easy", "--model", "deeponet", "--epochs", "1",
                 "--out", str(tmp_path / "cnn"), "--quiet"]) == 2
    assert "use branch='mlp' for values at mesh nodes" in capsys.readouterr().err
    assert not (tmp_path / "fno").exists() and not (tmp_path / "cnn").exists()


def test_time_dependent_mesh_data_train_with_pushforward_and_roll_out(tmp_path):
    data, run = tmp_path / "heat_fem", tmp_path / "run"
    assert main(["generate", "--pde", "heat_fem", "--levels", "medium", "--n-train", "4", "--n-valid", "0",
                 "--n-test", "2", "--resolution", "8", "--out", str(data), "--quiet"]) == 0
    assert main(["train", "--data", str(data), "--model", "galerkin_transformer", "--epochs", "2", "--out", str(run),
                 "--set", "model_args.width=16", "--set", "model_args.n_layers=1", "--set", "task.mode=window",
                 "--set", "pushforward=2", "--quiet"]) == 0
    assert main(["evaluate", "--run", str(run), "--data", str(data)]) == 0
    curve = json.loads((run / "metrics.json").read_text())["levels"]["medium"]["error_vs_time"]
    config = load_run(run).config
    ds = open_split(data, "test", task=config.task, parameters=config.parameters)
    assert len(curve["rel_l2_mean"]) == ds.n_times - 1 and np.isfinite(curve["rel_l2_mean"]).all()
    roll = rollout(load_run(run), ds)
    frame = roll.truth.shape[1] // 2
    weighted = relative_l2(roll.prediction[:, frame:frame + 1], roll.truth[:, frame:frame + 1], weights=ds.weights)
    torch.testing.assert_close(roll.rel_l2[:, frame], weighted, rtol=1e-5, atol=0)
    # the persistence baseline (hold the first input frame) in the same norm, over the rollout and per item
    copy = persistence_channels(ds)
    first = torch.stack([ds[i][0] for i in range(len(ds)) if ds.sample_index(i)[2] == 0])[:, -1:, ..., copy]
    held = first.expand_as(roll.truth)
    torch.testing.assert_close(roll.persistence_rel_l2[:, frame],
                               relative_l2(held[:, frame:frame + 1], roll.truth[:, frame:frame + 1],
                                           weights=ds.weights), rtol=1e-5, atol=0)
    x, y = (torch.stack(t) for t in zip(*(ds[i] for i in range(len(ds)))))
    copied = relative_l2(x[:, -1:, ..., copy].expand_as(y), y, weights=ds.weights).mean().item()
    stored = json.loads((run / "metrics.json").read_text())["levels"]["medium"]["persistence"]
    assert stored["relative_l2"]["mean"] == pytest.approx(copied, rel=1e-5)
    assert PushforwardPairs(ds, 2, seed=0).weights is ds.weights


def test_the_training_loss_weighs_the_nodes_by_area(poisson_mesh, tmp_path):
    """With a step too small to move the weights, the first epoch's logged loss is the initial
    model's weighted error over the training set."""
    run_dir = tmp_path / "still"
    assert main(["train", "--data", str(poisson_mesh), "--levels", "easy", *DEEPONET, "--epochs", "1", "--set",
                 "lr=1e-30", "--set", "weight_decay=0", "--out", str(run_dir), "--quiet"]) == 0
    with (run_dir / "log.csv").open() as fh:
        logged = float(next(csv.DictReader(fh))["train_loss"])
    run, ds = load_run(run_dir), open_split(poisson_mesh, "train", levels=["easy"])
    x, y = (torch.stack(t) for t in zip(*(ds[i] for i in range(len(ds)))))
    err = relative_l2(run.predict(x, points=ds.points), y, weights=ds.weights)
    assert logged == pytest.approx(err.mean().item(), rel=1e-4)
    assert logged != pytest.approx(relative_l2(run.predict(x, points=ds.points), y).mean().item(), rel=1e-3)


def test_a_mesh_run_trained_with_node_counts_is_not_resumed_with_weights(deeponet_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(deeponet_run, run)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["data"]["space_weights"]  # as written before the weights
    torch.save(state, last)
    assert main(["train", "--config", str(run / "config.yaml"), "--out", str(run), "--epochs", "61", "--resume",
                 "--quiet"]) == 2


def test_a_mesh_run_resumes_from_its_stored_config(deeponet_run, tmp_path):
    """The stored config names n_sensors; a resume from it must agree with the data's node count."""
    run = tmp_path / "copy"
    shutil.copytree(deeponet_run, run)
    assert main(["train", "--config", str(run / "config.yaml"), "--out", str(run), "--epochs", "61", "--resume",
                 "--quiet"]) == 0
    with (run / "log.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)][-2:] == [60, 61]


def test_the_galerkin_transformer_evaluates_on_a_finer_mesh_of_the_same_geometry(poisson_mesh, tmp_path):
    """Its attention is a mean over the points, so the weights apply to any node set; the finer disk
    maps to the same unit box, so the coordinates mean the same."""
    fine, run = tmp_path / "fine", tmp_path / "run"
    assert main(["generate", "--pde", "poisson_fem", "--levels", "easy", "--n-train", "0", "--n-valid", "0",
                 "--n-test", "4", "--resolution", "20", "--out", str(fine), "--quiet"]) == 0
    assert main(["train", "--data", str(poisson_mesh), "--levels", "easy", "--model", "galerkin_transformer",
                 "--set", "model_args.width=16", "--set", "model_args.n_layers=1", "--epochs", "40",
                 "--out", str(run), "--quiet"]) == 0
    coarse = open_split(poisson_mesh, "test", levels=["easy"])
    finer = open_split(fine, "test", levels=["easy"])
    assert len(finer.points) > 2 * len(coarse.points)
    errors = []
    for data in (poisson_mesh, fine):
        assert main(["evaluate", "--run", str(run), "--data", str(data), "--levels", "easy", "--out",
                     str(tmp_path / "eval")]) == 0
        errors.append(json.loads((tmp_path / "eval" / "metrics.json").read_text())["overall"]["relative_l2"]["mean"])
    print("rel. L2 on the training mesh and on the finer one:", errors)
    assert errors[1] < 1.25 * errors[0]  # 0.306 on the training mesh (146 nodes), 0.273 on the finer one (390)


def test_evaluation_defaults_to_the_trained_mesh_and_refuses_grids(deeponet_run, poisson_mesh, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(deeponet_run), "--data", str(poisson_mesh), "--out", str(out)]) == 0
    assert list(json.loads((out / "metrics.json").read_text())["levels"]) == ["easy"]  # not the plate of medium
    with pytest.raises(UserError, match="holds fields on mesh nodes; energy spectra need a Cartesian grid"):
        plot_spectrum(out)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(deeponet_run), "--data", str(poisson_mesh), "--levels", "medium",
                 "--out", str(tmp_path / "medium")]) == 2
    assert "level 'medium'" in capsys.readouterr().err and not (tmp_path / "medium").exists()
    grid = tmp_path / "darcy"
    assert main(["generate", "--pde", "darcy", "--levels", "easy", "--n-train", "0", "--n-valid", "0", "--n-test", "1",
                 "--resolution", "16", "--out", str(grid), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(deeponet_run), "--data", str(grid), "--out", str(tmp_path / "grid")]) == 2
    assert "holds fields on a grid, the run was trained on mesh nodes" in capsys.readouterr().err


def test_a_vector_field_on_a_mesh_has_one_channel_per_geometric_component(poisson_mesh, tmp_path):
    """A mesh has one space axis (the nodes) but two components per vector; no family writes one yet,
    the format allows it."""
    path = tmp_path / "easy.h5"
    shutil.copy(poisson_mesh / "train" / "easy.h5", path)
    with h5py.File(path, "a") as f:
        n, nodes = f["t0_fields/u"].shape
        v = np.random.default_rng(0).normal(size=(n, nodes, 2)).astype(np.float32)
        d = f.create_dataset("t1_fields/v", data=v, chunks=(1, nodes, 2))
        d.attrs.update({k: f["t0_fields/a"].attrs[k] for k in f["t0_fields/a"].attrs})
        f["t1_fields"].attrs["field_names"] = np.array(["v"], dtype=h5py.string_dtype())
    ds = FieldDataset([path], check=False)  # no per-trajectory checksum written for v
    assert ds.input_channels == ["a", "f", "v_x", "v_y"]
    stats = ds.stats()
    np.testing.assert_allclose(stats["x_mean"][2:], v.reshape(-1, 2).mean(axis=0), rtol=1e-5)
    assert ds[0][0].shape == (1, nodes, 4)
