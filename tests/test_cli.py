"""The pde-lab command: each verb works, and bad input gives one named line, exit 2, nothing written."""
import json
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from pde_lab.cli import main
from pde_lab.errors import UserError


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "data"
    assert main(["generate", "--pde", "toy_scale", "--n-train", "12", "--n-valid", "4", "--n-test", "4",
                 "--out", str(out), "--quiet"]) == 0
    return out


def test_a_blow_up_during_generate_is_one_line_naming_the_trajectories(capsys, tmp_path):
    """Kuramoto-Sivashinsky with its advective step limit loosened 100x and one step per output
    interval (dt = 25): valid input the solver cannot handle at these settings. Exit 1 with the
    split, level, trajectories and parameters, not a traceback, and nothing written."""
    code, _, err = run(capsys, "generate", "--pde", "kuramoto_sivashinsky_1d", "--levels", "hard", "--n-train", "4",
                       "--n-valid", "0", "--n-test", "0", "--resolution", "32", "--seed", "0",
                       "--solver-option", "advection_number=100", "--solver-option", "min_steps_per_interval=1",
                       "--out", str(tmp_path / "ks"), "--quiet")
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("pde-lab generate: error: train/hard, trajectories 0-3") and "blew up" in err and "'L':" in err
    assert not (tmp_path / "ks").exists()


@pytest.mark.parametrize("rank", ["0", "1"])
def test_only_rank_0_names_the_run_directory(capsys, tmp_path, monkeypatch, rank):
    """Under torchrun every rank returns from train(); the line came once per process."""
    import pde_lab.training

    monkeypatch.setattr(pde_lab.training, "train", lambda cfg: tmp_path / "run")
    monkeypatch.setenv("RANK", rank)
    code, out, err = run(capsys, "train", "--data", str(tmp_path), "--model", "fno", "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert out == (f"run directory: {tmp_path / 'run'}\n" if rank == "0" else "")


def test_generate_info_validate_train_evaluate(capsys, toy_data, tmp_path):
    code, out, _ = run(capsys, "info", str(toy_data))
    assert code == 0 and "PDE toy_scale" in out and "level easy: train 12, valid 4, test 4" in out
    code, out, _ = run(capsys, "info", str(toy_data), "--json")
    assert json.loads(out)["levels"]["easy"]["splits"]["train"] == 12
    code, out, _ = run(capsys, "validate", str(toy_data))
    assert code == 0 and out.count(": ok") == 3
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--data", str(toy_data), "--model", "fno", "--epochs", "2", "--out",
                         str(run_dir), "--quiet", "--set", "model_args.modes=3", "--set", "model_args.width=8")
    assert code == 0, err
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    code, out, err = run(capsys, "evaluate", "--run", str(run_dir), "--device", "cpu", "--json")
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads(out) == metrics  # stdout is the JSON alone; 'wrote ...' goes to stderr
    assert metrics["levels"]["easy"]["n"] == 4 and len(metrics["levels"]["easy"]["per_sample"]["relative_l2"]) == 4
    assert metrics["overall"]["solver_seconds"] > 0 and metrics["overall"]["model_seconds"] > 0
    with h5py.File(run_dir / "predictions_test.h5") as f:
        assert f["easy/prediction"].shape == (4, 1, 8, 8, 3)
    # Another split into a directory of its own: the run's evaluation stays, and plots read either.
    before = (run_dir / "metrics.json").read_bytes()
    code, out, err = run(capsys, "evaluate", "--run", str(run_dir), "--split", "valid", "--device", "cpu",
                         "--out", str(tmp_path / "eval_valid"), "--checkpoint", "last")
    assert code == 0, err
    assert f"wrote {tmp_path / 'eval_valid' / 'metrics.json'}" in out
    assert (run_dir / "metrics.json").read_bytes() == before and not (run_dir / "predictions_valid.h5").exists()
    evaluated = json.loads((tmp_path / "eval_valid" / "metrics.json").read_text())
    assert evaluated["split"] == "valid" and evaluated["checkpoint"].endswith("last.pt")
    code, _, err = run(capsys, "evaluate", "--run", str(run_dir), "--checkpoint", "final", "--device", "cpu")
    assert code == 2 and "checkpoint 'final' is neither 'best', 'last' nor an existing checkpoint file" in err
    import matplotlib

    matplotlib.use("Agg")
    from pde_lab.plotting import plot_error_field

    assert plot_error_field(str(tmp_path / "eval_valid"), sample=0, split="valid").axes
    with pytest.raises(UserError, match=r"holds predictions_valid.h5: pass split= one of \['valid'\]"):
        plot_error_field(str(tmp_path / "eval_valid"), sample=0, split="test")
    code, _, err = run(capsys, "evaluate", "--run", str(tmp_path / "eval_valid"), "--device", "cpu")
    assert code == 2 and "holds an evaluation's output, not a run" in err, err


BAD = [
    (["generate", "--pde", "heat9", "--out", "{tmp}/x"], "unknown PDE 'heat9'; allowed: "),
    (["generate", "--pde", "darcy", "--levels", "easy,brutal", "--out", "{tmp}/x"], "unknown level 'brutal' of PDE 'darcy'; allowed: fno, easy, medium, hard"),
    (["generate", "--pde", "darcy", "--n-train", "0", "--n-valid", "0", "--n-test", "0", "--out", "{tmp}/x"],
     "n_train, n_valid and n_test are all 0: nothing to generate"),
    (["generate", "--pde", "darcy", "--n-test", "-3", "--out", "{tmp}/x"], "n_test must be non-negative, got -3"),
    (["generate", "--pde", "darcy", "--out", "{data}"], "exists and is not empty; pass --overwrite"),
    (["generate", "--pde", "darcy", "--out", "{data}/train/easy.h5/x"], "easy.h5 is a file, not a directory"),
    (["generate", "--pde", "navier_stokes_2d", "--solver-option", "factor=2", "--out", "{tmp}/x"],
     "navier_stokes_2d has no solver option(s) ['factor']; allowed: ['solver_factor'"),
    (["generate", "--pde", "navier_stokes_2d", "--solver-option", "solver_factor=1", "--out", "{tmp}/x"],
     "solver_factor must be an integer >= 2, got 1"),
    (["generate", "--pde", "navier_stokes_2d", "--solver-option", "solver_factor=two", "--out", "{tmp}/x"],
     "bad solver option for navier_stokes_2d"),
    (["generate", "--pde", "darcy", "--solver-option", "solver_factor", "--out", "{tmp}/x"],
     "--solver-option 'solver_factor' is not of the form KEY=VALUE"),
    (["generate", "--pde", "darcy", "--levels", ",", "--out", "{tmp}/x"], "no levels given; name at least one of"),
    (["generate", "--pde", "darcy", "--seed", str(2**64), "--out", "{tmp}/x"], "seed must be an integer in 0 .."),
    (["info", "{tmp}/missing"], "does not exist"),
    (["import", "csv", "{data}/train/easy.h5", "{data}/train/easy.h5"], "unknown import format 'csv'; allowed: "),
    (["import", "the_well", "{data}/train/easy.h5", "{tmp}/x", "--split", "holdout"],
     "unknown split 'holdout'; allowed: test, train, valid"),
    (["train", "--data", "{data}", "--model", "transformer9", "--out", "{tmp}/r"], "unknown model 'transformer9'; allowed:"),
    (["train", "--data", "{tmp}/nodata", "--model", "fno", "--out", "{tmp}/r"], "does not exist"),
    (["train", "--data", "{data}", "--model", "fno", "--out", "{tmp}/r", "--set", "learning_rate=3"], "learning_rate"),
    (["train", "--data", "{data}", "--model", "fno", "--out", "{tmp}/r", "--epochs", "0"], "epochs"),
    (["train", "--data", "{data}", "--levels", "hard", "--out", "{tmp}/r"], "level(s) hard not in"),
    (["evaluate", "--run", "{tmp}/norun", "--data", "{data}"], "norun"),
    (["evaluate", "--run", "{data}", "--data", "{data}"], "is a dataset, not a run directory: pass it as --data"),
    (["train", "--resume", "--out", "{tmp}/r"], "/r: it holds no run (no config.yaml)"),
    (["train", "--data", "{data}", "--resume", "--overwrite", "--out", "{tmp}/r"],
     "--resume continues the run in --out and --overwrite deletes it: give one of them"),
    (["train", "--data", "{data}", "--model", "pinn_mlp", "--out", "{tmp}/r"], "model 'pinn_mlp' maps coordinates"),
    # PINN runs: refused before the run directory exists (an FNO, KFAC on torch.func residuals,
    # operator-only flags that would be ignored)
    (["train", "--pde", "poisson", "--model", "fno", "--steps", "2", "--out", "{tmp}/r"],
     "model 'fno' maps fields to fields; a physics-informed network maps coordinates to values: pinn_mlp"),
    (["train", "--pde", "heat_2d", "--optimizer", "kfac", "--steps", "2", "--out", "{tmp}/r", "--set", "n_interior=32",
      "--set", "n_boundary=8"], "KFAC cannot follow a residual that differentiates the network with torch.func"),
    (["train", "--pde", "poisson", "--batch-size", "7", "--out", "{tmp}/r"],
     "--batch-size apply to operator training on --data, not to a PINN"),
    (["train", "--pde", "poisson", "--steps", "2", "--epochs", "5", "--out", "{tmp}/r"], "give --steps or --epochs"),
    (["evaluate", "--run", "{tmp}/norun", "--data", "{data}", "--batch-size", "0", "--out", "{tmp}/x"],
     "batch_size must be an integer >= 1, got 0"),
    (["validate", "{tmp}/missing"], "does not exist"),
    (["demo", "--minutes", "-1", "--out", "{tmp}/x"], "minutes must be positive, got -1.0"),
    (["evaluate", "--run", "{tmp}/norun", "--data", "{data}", "--device", "gpu0"],
     "unknown device 'gpu0'; allowed: auto, cpu, cuda, cuda:N, mps"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_named_line(capsys, toy_data, tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path, data=toy_data) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert not (tmp_path / "x").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv", [["generate", "--pde", "toy_scale", "--n-train", "2", "--quiet"],
                                  ["demo", "--minutes", "0.01"]])
def test_overwrite_refuses_a_directory_pde_lab_did_not_write(capsys, tmp_path, argv):
    """--overwrite deletes what is in --out: a folder holding anything else is refused, untouched."""
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.tex").write_text("keep")
    (out / "sub" / "code.py").write_text("keep")
    code, _, err = run(capsys, *argv, "--out", str(out), "--overwrite")
    assert code == 2 and f"refusing to overwrite {out}: it holds sub, thesis.tex" in err, err
    assert (out / "thesis.tex").read_text() == "keep" and (out / "sub" / "code.py").read_text() == "keep"


def test_running_out_of_memory_is_one_line(capsys, tmp_path, monkeypatch):
    """A mistyped --resolution (e.g. 20000 for 200) made NumPy raise MemoryError with a traceback."""
    from pde_lab.pdes.darcy import Darcy

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 2.98 GiB for an array with shape (20000, 20000)")

    monkeypatch.setattr(Darcy, "sample", too_big)
    code, _, err = run(capsys, "generate", "--pde", "darcy", "--levels", "easy", "--n-train", "1", "--n-valid", "0",
                       "--n-test", "0", "--resolution", "16", "--out", str(tmp_path / "x"), "--quiet")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "out of memory (--resolution 16: try a smaller one): Unable to allocate 2.98 GiB" in err
    assert not (tmp_path / "x").exists()


def test_non_finite_data_or_loss_stops_training_in_one_line(capsys, toy_data, tmp_path):
    """Training used to run to the end on NaN data, exit 0 and leave no best.pt."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(toy_data, bad)
    with h5py.File(bad / "train" / "easy.h5", "r+") as f:
        group = next(f[g] for g in ("t0_fields", "t1_fields", "t2_fields") if len(f[g]))
        group[next(iter(group))][0, ...] = np.nan
    args = ["--model", "fno", "--epochs", "2", "--quiet", "--set", "model_args.modes=3", "--set", "model_args.width=8"]
    code, _, err = run(capsys, "train", "--data", str(bad), "--out", str(tmp_path / "r"), *args)
    assert code == 2 and "the training data hold NaN or infinite values; `pde-lab validate" in err, err
    assert not (tmp_path / "r").exists()
    code, _, err = run(capsys, "train", "--data", str(toy_data), "--out", str(tmp_path / "r2"), "--lr", "1e30", *args)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert re.search(r"epoch 1: the (training|validation) loss is (nan|inf); lower the learning rate", err), err
    assert "no checkpoint was written" in err


def test_a_file_given_as_data_must_hold_the_split_and_level_asked_for(capsys, toy_data, tmp_path):
    """A single file used to serve every split: a training file evaluated as --split test gave training
    error labelled as test error, and a run validated on its own training data."""
    from pde_lab.datasets.reader import list_files

    train_file = toy_data / "train" / "easy.h5"
    assert list_files(train_file, "train") == [train_file] == list_files(train_file, None)
    with pytest.raises(UserError, match="holds the 'train' split, not 'test'; pass the dataset directory"):
        list_files(train_file, "test")
    with pytest.raises(UserError, match="holds level 'easy', not 'hard'"):
        list_files(train_file, "train", ["hard"])
    code, out, err = run(capsys, "train", "--data", str(train_file), "--model", "fno", "--epochs", "1",
                         "--out", str(tmp_path / "r"), "--quiet", "--set", "model_args.modes=3", "--set",
                         "model_args.width=8")
    assert code == 0, err
    assert "has no valid split" in out
    assert json.loads((tmp_path / "r" / "data.json").read_text())["n_valid"] == 0


def test_a_resume_continues_the_runs_own_config_from_any_directory(capsys, toy_data, tmp_path, monkeypatch):
    """`train --resume --out RUN` reads RUN/config.yaml: it used to rebuild the config from the
    defaults (all levels, batch 20, the step schedule) and to need --data again."""
    import csv
    import os

    from pde_lab.training.config import TrainConfig

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    relative_data = os.path.relpath(toy_data)
    code, _, err = run(capsys, "train", "--data", relative_data, "--model", "fno", "--epochs", "1", "--batch-size",
                       "5", "--out", "run", "--quiet", "--set", "scheduler=cosine", "--set", "model_args.modes=3",
                       "--set", "model_args.width=8")
    assert code == 0, err
    assert TrainConfig.from_yaml(tmp_path / "run" / "config.yaml").data == str(toy_data.resolve())
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = run(capsys, "train", "--resume", "--out", "../run", "--epochs", "2")
    assert code == 0, err
    assert "train:" in err  # the bar is this call's: the first call's --quiet is not inherited
    stored = TrainConfig.from_yaml(tmp_path / "run" / "config.yaml")
    assert (stored.batch_size, stored.scheduler, stored.epochs) == (5, "cosine", 2)
    with (tmp_path / "run" / "log.csv").open() as fh:
        assert [float(r["lr"]) for r in csv.DictReader(fh)] == pytest.approx([1e-3, 5e-4])  # cosine over 2 epochs
    code, _, err = run(capsys, "train", "--resume", "--out", "../run", "--epochs", "3", "--levels", "easy")
    assert code == 2 and "cannot resume with a changed levels: None -> ['easy']" in err
    code, _, err = run(capsys, "evaluate", "--run", "../run", "--device", "cpu", "--out", "eval")
    assert code == 0, err
    code, _, err = run(capsys, "train", "--data", relative_data, "--steps", "3", "--out", "other")
    assert code == 2 and "--steps counts a PINN's optimizer steps" in err
    # A PINN run has no checkpoint to resume from: said so, not "unknown config key 'pde'".
    assert main(["train", "--pde", "poisson", "--steps", "1", "--out", "pinn", "--quiet"]) == 0
    code, _, err = run(capsys, "train", "--resume", "--out", "pinn")
    assert code == 2 and "cannot resume pinn: it has no checkpoints/last.pt (a PINN run" in err


def test_a_failed_evaluation_leaves_no_folder_and_another_pde_is_named(capsys, toy_data, tmp_path, monkeypatch):
    import importlib
    import shutil

    evaluate_module = importlib.import_module("pde_lab.evaluation.evaluate")  # the package exports the function

    code, _, err = run(capsys, "train", "--data", str(toy_data), "--model", "fno", "--epochs", "1", "--out",
                       str(tmp_path / "run"), "--quiet", "--set", "model_args.modes=3", "--set", "model_args.width=8")
    assert code == 0, err

    def broken(*args, **kwargs):
        raise RuntimeError("metrics failed")

    monkeypatch.setattr(evaluate_module, "compute_metrics", broken)
    with pytest.raises(RuntimeError, match="metrics failed"):
        evaluate_module.evaluate(tmp_path / "run", toy_data, device="cpu", out=tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    monkeypatch.undo()

    other = tmp_path / "other"
    shutil.copytree(toy_data, other)
    with h5py.File(other / "test" / "easy.h5", "r+") as f:
        f.attrs["pde"] = "toy_other"
    with pytest.warns(UserWarning, match=r"holds PDE 'toy_other', the run was trained on 'toy_scale'"):
        evaluate_module.evaluate(tmp_path / "run", other, device="cpu", out=tmp_path / "transfer")
    assert main(["generate", "--pde", "darcy", "--levels", "easy", "--n-train", "1", "--n-valid", "0", "--n-test", "1",
                 "--resolution", "8", "--out", str(tmp_path / "darcy"), "--quiet"]) == 0
    with pytest.raises(UserError, match=r"holds PDE 'darcy', the run was trained on 'toy_scale', and its inputs do "
                                        r"not fit the run: "):
        evaluate_module.evaluate(tmp_path / "run", tmp_path / "darcy", device="cpu", out=tmp_path / "darcy_eval")
    assert not (tmp_path / "darcy_eval").exists()


def test_info_and_validate_name_a_run_directory_passed_as_data(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("data: somewhere\n")
    for verb in ("info", "validate"):
        code, _, err = run(capsys, verb, str(run_dir))
        assert code == 2 and "is a training run directory (it has config.yaml), not a dataset" in err, err


def test_solver_options_reach_the_solver_and_the_files(capsys, tmp_path):
    """``--solver-option`` builds the PDE with that constructor argument, and both the generation
    config and the solver settings of the file record it."""
    code, _, err = run(capsys, "generate", "--pde", "navier_stokes_2d", "--levels", "fno_nu1e-3", "--n-train", "1",
                       "--n-valid", "0", "--n-test", "0", "--resolution", "8", "--solver-option", "solver_factor=3",
                       "--out", str(tmp_path / "ns"), "--quiet")
    assert code == 0, err
    with h5py.File(tmp_path / "ns" / "train" / "fno_nu1e-3.h5") as f:
        assert json.loads(f.attrs["generation_config"])["solver_options"] == {"solver_factor": 3}
        settings = json.loads(f.attrs["solver_settings"])
    assert settings["solver_factor"] == 3


def test_validate_lists_violations_and_exits_nonzero(capsys, toy_data, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes((toy_data / "train" / "easy.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        del f.attrs["solver"]
        f.attrs["complete"] = False
    code, out, _ = run(capsys, "validate", str(bad))
    assert code == 1 and "2 violation(s)" in out and "missing attribute 'solver'" in out and "incomplete" in out


def test_evaluate_refuses_a_corrupt_data_file(capsys, toy_data, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(toy_data), "--model", "fno", "--epochs", "1", "--out", str(run_dir), "--quiet",
                 "--set", "model_args.modes=3", "--set", "model_args.width=8"]) == 0
    capsys.readouterr()
    broken = tmp_path / "broken"
    (broken / "test").mkdir(parents=True)
    (broken / "test" / "easy.h5").write_bytes(b"\x89HDF\r\n garbage")
    code, _, err = run(capsys, "evaluate", "--run", str(run_dir), "--data", str(broken))
    assert code == 2 and "not a valid pde_lab file: not an HDF5 file" in err
    assert not (run_dir / "metrics.json").exists()


def test_unwritable_output_is_one_line(capsys, toy_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    for argv in (["generate", "--pde", "toy_decay", "--out", str(blocker / "data"), "--quiet"],
                 ["export-well", str(toy_data / "train" / "easy.h5"), str(blocker / "w.hdf5")]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and f"{blocker} is a file, not a directory" in err
    # Where no check foresees it, the operating system's error is still one line (exit 1).
    code, _, err = run(capsys, "train", "--data", str(toy_data), "--model", "fno", "--epochs", "1", "--out",
                       str(blocker / "run"), "--quiet", "--set", "model_args.modes=3")
    assert code == 1 and len(err.strip().splitlines()) == 1 and str(blocker) in err
    assert blocker.read_text().startswith("a file")


def test_console_script_exit_status():
    proc = subprocess.run([sys.executable, "-m", "pde_lab.cli", "generate", "--pde", "nope", "--out", "/tmp/never"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("pde-lab generate: error: unknown PDE 'nope'")


def test_train_help_names_every_optimizer_and_the_true_defaults(capsys):
    """The help text is written out by hand (importing torch for --help would make it slow): it must
    not drift from the optimizer registries and the config defaults."""
    import re

    from pde_lab.training.config import OPTIMIZERS, TrainConfig
    from pde_lab.training.pinn import PINN_OPTIMIZERS, PINNConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    operator_part, pinn_part = text.split("operator runs:")[1].split("PINN runs (--pde):")
    pinn_part = pinn_part.split("(docs/pinns.md)")[0]
    assert set(re.findall(r"[a-z+_]+", operator_part.replace("default", ""))) == set(OPTIMIZERS)
    assert set(re.findall(r"[a-z+_]+", pinn_part.replace("default", ""))) == set(PINN_OPTIMIZERS)
    cfg, pinn = TrainConfig(), PINNConfig()
    assert f"{cfg.optimizer} (default)" in operator_part and f"{pinn.optimizer} (default)" in pinn_part
    assert f"training epochs (default {cfg.epochs};" in text and f"samples per step (default {cfg.batch_size})" in text
    assert f"learning rate (default {cfg.lr:g})" in text and f"mixing (default {cfg.seed})" in text


def test_evaluate_names_a_physics_informed_run(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--pde", "poisson", "--steps", "2", "--out", str(tmp_path / "p"), "--quiet",
                       "--set", "n_interior=16", "--set", "n_boundary=8")
    assert code == 0, err
    code, _, err = run(capsys, "evaluate", "--run", str(tmp_path / "p"), "--device", "cpu")
    assert code == 2 and "is a physics-informed run: its error against the exact solution is in its metrics.json" in err
