"""The FNO Navier–Stokes reproduction script at a toy scale: rollout, paper loss, saved model."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from pde_lab.operators import load_model

from tests.experiment_scripts import load_experiment


def _load():
    return load_experiment("fno_navier_stokes/run.py")


def test_rollout_feeds_each_prediction_back():
    mod = _load()
    x = torch.arange(3.0).reshape(1, 3, 1, 1).expand(2, 3, 4, 4)  # frames 0, 1, 2
    out = mod.rollout(lambda u: u[:, -1:] + u[:, -2:-1], x, 4)  # Fibonacci-like: next = last + previous
    assert out.shape == (2, 4, 4, 4)
    assert out[0, :, 0, 0].tolist() == [3.0, 5.0, 8.0, 13.0]


def test_relative_l2_is_per_sample_over_all_other_axes():
    mod = _load()
    true = torch.ones(2, 3, 4)
    pred = true.clone()
    pred[1] *= 1.5
    assert torch.allclose(mod.relative_l2(pred, true), torch.tensor([0.0, 0.5]))


def test_toy_run_trains_and_saves_what_it_reports(tmp_path):
    mod = _load()
    out = tmp_path / "run"
    res = mod.main(["--out", str(out), "--level", "easy", "--resolution", "16", "--n-train", "4", "--n-test", "2",
                    "--gen-batch", "6", "--epochs", "6", "--step-size", "100", "--batch-size", "2", "--lr", "1e-2",
                    "--width", "8", "--modes", "4", "--eval-every", "3", "--device", "cpu", "--quiet"])
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    assert float(rows[-1]["train_l2_step"]) < 0.8 * float(rows[0]["train_l2_step"])
    assert rows[2]["test_l2_full"] and not rows[3]["test_l2_full"]  # evaluated every 3 epochs
    # the saved model reproduces the reported test error
    test = mod.load_vorticity(out / "data", "test", "easy", None)
    model = load_model(out / "model.pt")
    full, per_step = mod.test_errors(model, test, 10, 50)
    assert abs(float(full.mean()) - res["test_l2_full"]["mean"]) < 1e-6
    assert per_step.shape == (2, test.shape[1] - 11)
    saved = json.loads((out / "results.json").read_text())
    assert saved["epochs_done"] == 6 and (out / "rollout.png").stat().st_size > 0


def test_log_records_the_learning_rate_each_epoch_trained_with(tmp_path):
    """Halving every epoch: epoch 1 trains at --lr, epoch 2 at half of it (the row is not the rate
    that sched.step() set for the next epoch)."""
    mod = _load()
    out = tmp_path / "run"
    mod.main(["--out", str(out), "--level", "easy", "--resolution", "16", "--n-train", "4", "--n-test", "2",
              "--gen-batch", "6", "--epochs", "2", "--step-size", "1", "--batch-size", "2", "--lr", "1e-2",
              "--width", "8", "--modes", "4", "--device", "cpu", "--quiet"])
    assert [float(r["lr"]) for r in csv.DictReader(open(out / "log.csv"))] == [1e-2, 5e-3]


def test_dft_transform_trains_like_the_fft(tmp_path):
    """--transform dft computes the same Fourier coefficients by matrix products: same losses, to rounding."""
    mod = _load()
    args = ["--level", "easy", "--resolution", "16", "--n-train", "4", "--n-test", "2", "--gen-batch", "6",
            "--epochs", "2", "--batch-size", "2", "--lr", "1e-2", "--width", "8", "--modes", "4", "--device", "cpu",
            "--quiet"]
    mod.main(["--out", str(tmp_path / "fft")] + args)
    mod.main(["--out", str(tmp_path / "dft"), "--data", str(tmp_path / "fft" / "data"), "--transform", "dft"] + args)
    logs = [list(csv.DictReader(open(tmp_path / name / "log.csv"))) for name in ("fft", "dft")]
    for fft_row, dft_row in zip(*logs):
        assert float(dft_row["train_l2_step"]) == pytest.approx(float(fft_row["train_l2_step"]), rel=1e-4)
    assert load_model(tmp_path / "dft" / "model.pt").spectral[0].transform == "dft"
    # the run on existing data does not claim the generation settings it did not use
    configs = [json.loads((tmp_path / name / "results.json").read_text())["config"] for name in ("fft", "dft")]
    assert configs[0]["solver_factor"] == 4 and configs[1]["solver_factor"] is None


@pytest.mark.parametrize("flag, value, message", [
    ("--lr", "0", "--lr must be a finite positive number, got 0.0"),
    ("--lr", "-0.001", "--lr must be a finite positive number"),
    ("--lr", "nan", "--lr must be a finite positive number, got nan"),
    ("--weight-decay", "-1", "--weight-decay must be a finite number >= 0, got -1.0"),
    ("--weight-decay", "inf", "--weight-decay must be a finite number >= 0, got inf"),
    ("--time-limit", "-5", "--time-limit must be a finite positive number of minutes")])
def test_bad_optimizer_settings_are_refused_before_any_work(tmp_path, capsys, flag, value, message):
    """Refused with one line before any data are generated, not by Adam after it (a traceback), and
    not accepted silently (--lr 0 would train nothing, a negative limit stop after one epoch)."""
    mod = _load()
    with pytest.raises(SystemExit) as err:
        mod.main(["--out", str(tmp_path / "run"), "--level", "easy", "--resolution", "16", "--n-train", "4",
                  "--n-test", "2", "--device", "cpu", "--batch-size", "2", flag, value])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_training_matches_eager_training(tmp_path):
    """Replaying a captured step trains like eager steps, across a learning-rate halving."""
    mod = _load()
    common = ["--level", "easy", "--resolution", "16", "--n-train", "8", "--n-test", "2", "--epochs", "3",
              "--step-size", "1", "--batch-size", "2", "--width", "8", "--modes", "4", "--device", "cuda", "--quiet"]
    eager = mod.main(["--out", str(tmp_path / "eager"), "--gen-batch", "10", *common])
    graph = mod.main(["--out", str(tmp_path / "graph"), "--data", str(tmp_path / "eager" / "data"), "--cuda-graph",
                      *common])
    rows = [list(csv.DictReader(open(tmp_path / name / "log.csv"))) for name in ("eager", "graph")]
    for a, b in zip(*rows):
        assert float(b["lr"]) == pytest.approx(float(a["lr"]), rel=1e-7)  # the graph keeps it as a float32 tensor
        assert float(b["train_l2_step"]) == pytest.approx(float(a["train_l2_step"]), rel=1e-4)
    assert graph["test_l2_full"]["mean"] == pytest.approx(eager["test_l2_full"]["mean"], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resumed_cuda_graph_run_matches_an_uninterrupted_one(tmp_path):
    """The checkpoint's optimizer state and tensor learning rate carry over into a newly captured graph."""
    mod = _load()
    common = ["--level", "easy", "--resolution", "16", "--n-train", "8", "--n-test", "2", "--epochs", "3",
              "--step-size", "1", "--batch-size", "2", "--width", "8", "--modes", "4", "--device", "cuda",
              "--cuda-graph", "--quiet"]
    whole = mod.main(["--out", str(tmp_path / "whole"), "--gen-batch", "10", *common])
    split = ["--out", str(tmp_path / "split"), "--data", str(tmp_path / "whole" / "data"), *common]
    mod.main(split + ["--time-limit", "1e-6"])
    resumed = mod.main(split + ["--resume"])
    rows = [list(csv.DictReader(open(tmp_path / name / "log.csv"))) for name in ("whole", "split")]
    assert len(rows[1]) == 3
    for a, b in zip(*rows):
        assert float(b["lr"]) == pytest.approx(float(a["lr"]), rel=1e-7)
        assert float(b["train_l2_step"]) == pytest.approx(float(a["train_l2_step"]), rel=1e-4)
    assert resumed["test_l2_full"]["mean"] == pytest.approx(whole["test_l2_full"]["mean"], rel=1e-3)


def test_cuda_graph_is_refused_on_cpu(tmp_path):
    mod = _load()
    with pytest.raises(mod.UserError, match="--cuda-graph needs a CUDA device"):
        mod.main(["--out", str(tmp_path), "--data", str(tmp_path / "none"), "--cuda-graph", "--device", "cpu"])


def test_fit_schedule_shrinks_the_epochs_to_the_time_limit(tmp_path):
    """A limit far below one epoch keeps the two timed epochs and scales the halving interval with them."""
    mod = _load()
    out = tmp_path / "run"
    res = mod.main(["--out", str(out), "--level", "easy", "--resolution", "16", "--n-train", "4", "--n-test", "2",
                    "--gen-batch", "6", "--epochs", "500", "--step-size", "100", "--batch-size", "2",
                    "--width", "8", "--modes", "4", "--time-limit", "1e-6", "--fit-schedule", "--device", "cpu",
                    "--quiet"])
    assert res["epochs_done"] == 2
    assert res["config"]["epochs"] == 2 and res["config"]["step_size"] == 1
    assert len(list(csv.DictReader(open(out / "log.csv")))) == 2
    # halved every epoch, the rate after two epochs is a quarter (it stayed at --lr when the
    # interval changed after the scheduler's second step)
    state = torch.load(out / mod.CHECKPOINT, weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 / 4)


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """Stopping after epochs 1 and 2 (a tiny time limit) and resuming gives the same log and test error."""
    mod = _load()
    common = ["--level", "easy", "--resolution", "16", "--n-train", "6", "--n-test", "2", "--epochs", "4",
              "--step-size", "2", "--batch-size", "2", "--width", "8", "--modes", "4", "--eval-every", "2",
              "--device", "cpu", "--quiet"]
    whole = mod.main(["--out", str(tmp_path / "whole"), "--gen-batch", "8", *common])
    split = ["--out", str(tmp_path / "split"), "--data", str(tmp_path / "whole" / "data"), *common]
    assert mod.main(split + ["--time-limit", "1e-6"])["epochs_done"] == 1
    with pytest.raises(mod.UserError, match=r"--width 8 \(now 9\)"):
        mod.main([("9" if i and split[i - 1] == "--width" else v) for i, v in enumerate(split)] + ["--resume"])
    with pytest.raises(mod.UserError, match=r"--transform fft \(now dft\)"):
        mod.main(split + ["--resume", "--transform", "dft"])
    # a checkpoint written before --transform existed was trained with the FFT, and resumes as such
    state = torch.load(tmp_path / "split" / mod.CHECKPOINT, weights_only=True)
    del state["args"]["transform"]
    torch.save(state, tmp_path / "split" / mod.CHECKPOINT)
    assert mod.main(split + ["--resume", "--time-limit", "1e-6"])["epochs_done"] == 2
    resumed = mod.main(split + ["--resume"])
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_done"] == 4
    rows = [list(csv.DictReader(open(tmp_path / name / "log.csv"))) for name in ("whole", "split")]
    assert [r["epoch"] for r in rows[1]] == ["1", "2", "3", "4"]
    for a, b in zip(*rows):
        # test errors differ only where the split run stopped and evaluated (epoch 1)
        assert [a[k] for k in ("lr", "train_l2_step", "train_l2_full")] == [b[k] for k in ("lr", "train_l2_step", "train_l2_full")]
    assert resumed["test_l2_full"] == whole["test_l2_full"]
    with pytest.raises(mod.UserError, match="all 4 epochs are done"):
        mod.main(split + ["--resume"])
