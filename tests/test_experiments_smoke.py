"""Toy-scale runs of the experiments that have no test of their own (fno_burgers, fno_darcy,
pinn_poisson, pinn_problems, teng): each one's real entry point, as its README tells a user to run it,
with sizes, epochs and steps cut down so that the whole file takes well under a minute on one core.

They catch what the full runs would only find after hours: a config key the library no longer
accepts, a flag a script passes that the CLI refused, a function of the library whose signature or
validation changed under a script. The numbers asserted are only that training trains (a finite loss
that falls) and that every output the README promises is written.
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pde_lab.cli import main as cli
from pde_lab.training.config import TrainConfig

from tests.experiment_scripts import EXPERIMENTS, load_experiment


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ---- fno_burgers, fno_darcy: run.sh -> pde-lab generate / train / evaluate ------------------------------
#: what each README and train.yaml claim: (generate flags of run.sh, train.yaml values)
FNO = {
    "fno_burgers": ({"--pde": "burgers", "--levels": "fno", "--n-train": "1000", "--n-valid": "100",
                     "--n-test": "200", "--resolution": "256", "--seed": "0"},
                    {"width": 64, "modes": 16, "n_layers": 4, "grid": True}),
    "fno_darcy": ({"--pde": "darcy", "--levels": "fno", "--n-train": "1000", "--n-valid": "100",
                   "--n-test": "100", "--resolution": "85", "--seed": "0"},
                  {"width": 32, "modes": 12, "n_layers": 4, "grid": True}),
}
#: toy sizes substituted into run.sh's generate command
TOY = {"--n-train": "8", "--n-valid": "2", "--n-test": "2"}
TOY_RESOLUTION = {"fno_burgers": "32", "fno_darcy": "17"}


def _flag(argv: list[str], name: str) -> str:
    assert name in argv, (name, argv)
    return argv[argv.index(name) + 1]


def _record_run_sh(name: str, out: Path, extra: list[str], tmp: Path) -> list[list[str]]:
    """Run ``experiments/<name>/run.sh OUT EXTRA...`` with ``PDE_LAB`` (the variable the script reads
    for its command) pointing at a recorder, so bash expands the script's own commands; returns the
    argument lists of its ``pde-lab`` calls, in order."""
    log = tmp / "calls.jsonl"
    recorder = tmp / "record_pde_lab"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    recorder.chmod(0o755)
    subprocess.run(["bash", str(EXPERIMENTS / name / "run.sh"), str(out), *extra], check=True,
                   env={**os.environ, "PDE_LAB": str(recorder)}, timeout=60)
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(FNO))
def test_fno_train_yaml_loads_with_the_papers_settings(name):
    cfg = TrainConfig.from_yaml(EXPERIMENTS / name / "train.yaml")
    assert cfg.model == "fno"
    for key, value in FNO[name][1].items():
        assert cfg.model_args[key] == value, key
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay) == ("adam", 1e-3, 1e-4)
    assert (cfg.scheduler, cfg.step_size, cfg.gamma) == ("step", 100, 0.5)
    assert (cfg.epochs, cfg.batch_size, cfg.normalize) == (500, 20, True)


@pytest.mark.parametrize("name", sorted(FNO))
def test_fno_run_sh_generates_trains_and_evaluates_at_toy_scale(name, tmp_path, capsys):
    """run.sh's three commands (as bash expands them, extra train flags passed the README's way) run
    through ``pde-lab`` with 8/2/2 samples on a coarse grid and a narrow FNO."""
    out = tmp_path / "out"
    extra = ["--epochs", "8", "--lr", "1e-2", "--batch-size", "4", "--set", "model_args.width=8",
             "--set", "model_args.modes=4", "--device", "cpu", "--quiet"]
    calls = _record_run_sh(name, out, extra, tmp_path)
    assert [c[0] for c in calls] == ["generate", "train", "evaluate"]
    generate, train, evaluate = calls
    for flag, value in FNO[name][0].items():  # the README's data set
        assert _flag(generate, flag) == value, flag
    assert _flag(generate, "--out") == str(out / "data") and "--overwrite" in generate
    assert Path(_flag(train, "--config")) == EXPERIMENTS / name / "train.yaml"
    assert train[-len(extra):] == extra
    assert _flag(evaluate, "--run") == str(out / "run") and _flag(evaluate, "--split") == "test"

    toy = {**TOY, "--resolution": TOY_RESOLUTION[name]}
    generate = [toy.get(prev, arg) for prev, arg in zip([None, *generate], generate)] + ["--quiet"]
    for argv in (generate, train, evaluate):
        assert cli(argv) == 0, (argv, capsys.readouterr().err)

    for split in ("train", "valid", "test"):
        assert (out / "data" / split / "fno.h5").is_file()
    run = out / "run"
    resolved = yaml.safe_load((run / "config.yaml").read_text())  # train.yaml under the flags
    assert resolved["epochs"] == 8 and resolved["weight_decay"] == 1e-4 and resolved["scheduler"] == "step"
    assert resolved["model_args"]["width"] == 8 and resolved["model_args"]["n_layers"] == 4
    log = _rows(run / "log.csv")
    assert [int(r["epoch"]) for r in log] == list(range(1, 9))
    loss = [float(r["train_loss"]) for r in log]
    assert all(math.isfinite(v) for v in loss) and loss[-1] < 0.8 * loss[0], loss
    assert min(float(r["valid_loss"]) for r in log) < float(log[0]["valid_loss"])
    assert (run / "checkpoints" / "best.pt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    fno = metrics["levels"]["fno"]
    assert metrics["split"] == "test" and fno["n"] == 2
    assert 0 < fno["relative_l2"]["mean"] < 1.0  # better than predicting zero after 8 epochs


# ---- pinn_poisson/run.py with its configs and pinn_problems' configs ------------------------------------
PINN_CONFIGS = {  # config -> entries to run (None: all of them)
    "pinn_poisson/config.yaml": None,
    "pinn_poisson/kfac_paper.yaml": None,
    "pinn_poisson/kfac_paper_plots.yaml": None,
    "pinn_problems/helmholtz.yaml": None,
    "pinn_problems/heat2d.yaml": None,
    "pinn_problems/poisson5d.yaml": None,
    "pinn_problems/allen_cahn1d.yaml": ["engd_ad"],  # each run solves its spectral reference (~3 s)
}
PINN_STEPS = 6


def _toy_pinn_config(src: Path, dst: Path) -> dict:
    """The config with 64 + 16 points, 100 test points, 6 steps per entry and no time limit."""
    spec = yaml.safe_load(src.read_text())
    spec["base"].update(n_interior=64, n_boundary=16, eval_points=100, time_limit_minutes=None)
    for entry in spec["optimizers"].values():
        entry.update(steps=PINN_STEPS, eval_every=2)
        entry.pop("time_limit_minutes", None)
    dst.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec


@pytest.mark.parametrize("config", sorted(PINN_CONFIGS))
def test_pinn_runner_trains_every_entry_of_the_config(config, tmp_path, capsys):
    run = load_experiment("pinn_poisson/run.py")
    spec = _toy_pinn_config(EXPERIMENTS / config, tmp_path / "config.yaml")
    names = PINN_CONFIGS[config] or list(spec["optimizers"])
    out = tmp_path / "out"
    argv = ["--config", str(tmp_path / "config.yaml"), "--out", str(out), "--seeds", "0", "--only", ",".join(names)]
    assert run.main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert list(results) == names
    for name in names:
        (metrics,) = results[name]
        assert metrics["steps"] == PINN_STEPS and metrics["stop_reason"] == "max steps", name
        assert math.isfinite(metrics["rel_l2"]) and metrics["optimizer"] == spec["optimizers"][name]["optimizer"]
        log = _rows(out / name / "seed0" / "log.csv")
        assert int(log[-1]["step"]) == PINN_STEPS
        losses = [float(r["loss"]) for r in log]
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], (name, losses)
    table = (out / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == [f"| {n}" for n in names]

    # --report rebuilds the same table from the run directories without training
    capsys.readouterr()
    assert run.main([*argv, "--report"]) == 0
    assert (out / "table.md").read_text().splitlines()[2:] == table[2:]


def test_pinn_runner_refuses_an_unknown_entry(tmp_path):
    run = load_experiment("pinn_poisson/run.py")
    with pytest.raises(SystemExit) as err:
        run.main(["--out", str(tmp_path), "--only", "engd,nosuch"])
    assert err.value.code == 2 and not any(tmp_path.iterdir())


def test_kfac_paper_draw_script_writes_its_outputs(tmp_path, capsys):
    """The script's own command for 5 steps: starts from the paper's logged loss, lowers it, writes
    log, model, metrics and the comparison table."""
    mod = load_experiment("pinn_poisson/kfac_paper_draw.py")
    out = tmp_path / "draw"
    assert mod.main(["--out", str(out), "--steps", "5"]) == 0
    log = _rows(out / "log.csv")
    assert float(log[0]["loss"]) == pytest.approx(mod.PAPER_FIRST_LOSSES[0], rel=1e-12)
    assert int(log[-1]["step"]) == 5 and float(log[-1]["loss"]) < float(log[0]["loss"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and math.isfinite(metrics["rel_l2"])
    assert metrics["targets"] == "float32" and metrics["prune_copies"] is False
    assert (out / "model.pt").stat().st_size > 0
    assert (out / "comparison.md").read_text().startswith("| paper's step |")
    with pytest.raises(SystemExit):
        mod.main(["--out", str(tmp_path / "bad"), "--perturb", "128"])
    assert not (tmp_path / "bad").exists()


# ---- teng/run.py ------------------------------------------------------------------------------------------
def _shrink_teng(mod, monkeypatch, coarse_heat: bool) -> None:
    """Cut teng/run.py's parts to toy size by wrapping its own functions: initial fits capped at 60
    iterations; the spectral-reference parts on 16 grid points per axis, 12 per axis (1D: 32)
    collocation points, to T = 0.1 with Δt = 0.01 and 0.005 (the errors are taken at the reference's snapshots, T/10 apart);
    ``coarse_heat``: heat steps of at least 0.2 (4 steps to T = 0.8 instead of 160, the checkpoints
    unchanged) and sweep runs of one step of 0.8."""
    fit, integrate, reference = mod.fit_initial_state, mod.integrate, mod.run_spectral_reference
    monkeypatch.setattr(mod, "fit_initial_state",
                        lambda net, x, u0, max_iterations=600: fit(net, x, u0, max_iterations=60))

    def coarse_integrate(net, rhs, x, dt, scheme, t_final, iterations, checkpoints=(), **kwargs):
        sweep = tuple(checkpoints) == (t_final,)  # the Δt sweep: one step of T instead of 4 to 32
        return integrate(net, rhs, x, t_final if sweep else max(dt, 0.2), scheme, t_final, iterations,
                         checkpoints=checkpoints, **kwargs)

    def small_reference(name, params, dim, n_grid, widths, n_col, dts, seeds, log, modes, amplitude):
        return reference(name, {**params, "t_final": 0.1}, dim, 16, widths, 12 if dim == 2 else 32, (0.01, 0.005),
                         seeds, log, modes, amplitude)

    if coarse_heat:
        monkeypatch.setattr(mod, "integrate", coarse_integrate)
    monkeypatch.setattr(mod, "run_spectral_reference", small_reference)


def test_teng_heat_part_tracks_the_exact_solution(tmp_path, monkeypatch, capsys):
    mod = load_experiment("teng/run.py")
    _shrink_teng(mod, monkeypatch, coarse_heat=True)
    out = tmp_path / "teng"
    assert mod.main(["--out", str(out), "--seeds", "0", "--only", "heat,sweep"]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {r["scheme"]: r for r in results["heat"]}
    assert sorted(rows) == ["euler", "heun"]
    sweep = results["sweep"]
    assert sorted((r["scheme"], r["dt"]) for r in sweep) == sorted((s, dt) for s in ("euler", "heun")
                                                                    for dt in (0.2, 0.1, 0.05, 0.025))
    assert all(math.isfinite(r["error"]) and r["steps"] == 1 for r in sweep)
    for row in rows.values():
        assert sorted(float(t) for t in row["errors"]) == [0.2, 0.4, 0.6, 0.8] and row["steps"] == 4
        assert all(math.isfinite(e) for e in row["errors"].values())
    fit_error, heun, euler = rows["heun"]["error_t0"], rows["heun"]["errors"]["0.8"], rows["euler"]["errors"]["0.8"]
    assert fit_error < 0.05  # the initial fit worked
    assert heun < 1.5 * fit_error + 1e-4  # Heun adds little to the fit's error, even at Δt = 0.2
    assert euler > heun  # first order loses more at the same step
    tables = (out / "tables.md").read_text()
    assert "| TENG-Heun |" in tables and "observed order" in tables
    # the sweep table's observed order: the least-squares slope of log error against log Δt
    sweep = [{"scheme": s, "dt": dt, "error": c * dt ** p} for s, c, p in (("euler", 0.02, 1), ("heun", 0.003, 2))
             for dt in (0.2, 0.1, 0.05, 0.025)]
    table = mod.tables({"sweep": sweep})
    assert "| TENG-Euler |" in table and table.count(" | 1.00 |") == 1 and table.count(" | 2.00 |") == 1


def test_teng_spectral_parts_run_and_a_smaller_step_is_more_accurate(tmp_path, monkeypatch, capsys):
    mod = load_experiment("teng/run.py")
    _shrink_teng(mod, monkeypatch, coarse_heat=False)
    out = tmp_path / "teng"
    parts = ["allen_cahn", "burgers", "burgers_2d"]
    assert mod.main(["--out", str(out), "--seeds", "0", "--only", ",".join(parts)]) == 0
    results = json.loads((out / "results.json").read_text())
    tables = (out / "tables.md").read_text()
    for part in parts:
        rows = {r["dt"]: r for r in results[part]}
        assert sorted(rows) == [0.005, 0.01], part
        for row in rows.values():
            assert len(row["errors"]) == 10 and row["steps"] == round(0.1 / row["dt"])
            assert all(math.isfinite(e) for e in row["errors"].values())
            assert row["error_t0"] < 1e-3, part  # the initial fit on the script's own network
        final = {dt: row["errors"][max(row["errors"], key=float)] for dt, row in rows.items()}
        assert final[0.005] < final[0.01] < 0.1, (part, final)
        assert f"### {part}: TENG-Heun" in tables


def test_teng_integrate_refuses_a_step_that_misses_a_checkpoint():
    """With Δt = 0.02 the snapshots at 0.01, 0.03, … are never reached; their errors must not be filed
    under the wrong time."""
    mod = load_experiment("teng/run.py")
    net = mod.periodic_net(1, [4], 0)
    with pytest.raises(ValueError, match="checkpoint"):
        mod.integrate(net, lambda *a: None, mod.grid_points(8, 1), 0.02, "heun", 0.1, 1,
                      checkpoints=(0.01, 0.02, 0.03), evaluate=lambda net, t: 0.0)


def test_teng_refuses_an_unknown_part(tmp_path, capsys):
    mod = load_experiment("teng/run.py")
    assert mod.main(["--out", str(tmp_path / "t"), "--only", "heat,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err


@pytest.mark.parametrize("script", [["fno_step.py", "step"], ["model_table.py", "cost"], ["navier_stokes_step.py"]])
def test_benchmarks_refuse_an_unknown_device_before_any_work(script):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / script[0]
    out = subprocess.run([sys.executable, str(path), *script[1:], "--device", "gpu"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--device: unknown device 'gpu'; allowed: auto, cpu, cuda, cuda:N, mps" in out.stderr


# ---- argument checks of the other scripts -----------------------------------------------------------------
def test_teng_refuses_bad_seeds_with_one_line(tmp_path, capsys):
    mod = load_experiment("teng/run.py")
    assert mod.main(["--out", str(tmp_path / "t"), "--seeds", "0,x", "--only", "heat"]) == 2
    assert "--seeds must be non-negative integers separated by commas, got '0,x'" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--parts", "2,x", "--parts must be positive integers separated by commas, got '2,x'"),
    ("--parts", "2,0", "--parts must be positive integers separated by commas, got '2,0'"),
    ("--overlap", "-0.5", "--overlap must be a finite non-negative fraction of a subdomain width, got -0.5"),
    ("--overlap", "inf", "--overlap must be a finite non-negative fraction of a subdomain width, got inf"),
    # Navier-Stokes draws each expert's points from its own grid nodes: an overlap was accepted and ignored
    ("--overlap", "0.25", "--overlap applies to diffusion_sorption only"),
    ("--lm", "max_iter=0", "--lm: LM max_iter must be a positive integer, got 0"),
    ("--lm", "max_iter=2.5", "--lm 'max_iter=2.5': '2.5' is not an integer"),
    ("--lm", "ridge=-1", "--lm: LM ridge must be non-negative and finite, got -1.0"),
    ("--lm", "ridge=inf", "--lm: LM ridge must be non-negative and finite, got inf"),
    ("--lm", "lr=1", "--lm 'lr=1': not KEY=VALUE with KEY one of max_iter, tol, ridge, damping, step"),
    ("--lm", "step=exact", "--lm: unknown LM step 'exact'; allowed: gauss_newton, newton")])
def test_hard_constraints_refuses_bad_partition_flags_before_any_solve(tmp_path, capsys, flag, value, message):
    """A usage error (exit 2), not a traceback: --parts used to fail in int(), --overlap only when the
    MoE partition was built, after the ground-truth solves; --lm values are checked by LMSettings first."""
    mod = load_experiment("hard_constraints/run.py")
    with pytest.raises(SystemExit) as err:
        mod.main(["navier_stokes", "--steps", "1", "--out", str(tmp_path / "hc"), flag, value])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "hc").exists()


def _benchmark(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    sys.path.insert(0, str(path.parent))  # the scripts import _common from their folder
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_loader_throughput_counts_the_items_it_read(tmp_path):
    """Asked for more items than the file's 9 windows, items/s is the 9 read over the time taken: MB/s
    over items/s is the size of one item (two 8x8 float32 frames)."""
    lt = _benchmark("loader_throughput")
    path = tmp_path / "small.h5"
    lt.make_file(path, gb=3 * 4 * 8 * 8 * 4 / 1e9, res=8, frames=4)  # 3 trajectories x 3 windows
    r = lt.loader_run(path, 0, 1000, 4, cold=False)
    assert r["items"] == 9
    assert r["MB_s"] / r["items_s"] * lt.MB == pytest.approx(2 * 8 * 8 * 4, rel=1e-9)


@pytest.mark.parametrize("args, message", [(["--only", "burger"], "argument --only: invalid choice: 'burger'"),
                                           (["--models", "fnoo"], "--models: unknown fnoo; allowed:")])
def test_model_table_refuses_unknown_datasets_and_models(tmp_path, args, message):
    """They used to be skipped silently, leaving an empty table."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "model_table.py"
    out = subprocess.run([sys.executable, str(path), "train", "--data", str(tmp_path / "d"), "--runs",
                          str(tmp_path / "r"), *args], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and message in out.stderr


def test_model_table_copy_baseline_is_persistence_of_the_stored_frames(tmp_path):
    """For a window task of 2 input frames it is the mean over test windows of |u(t_{k+1}) - u(t_{k+2})| /
    |u(t_{k+2})|, computed here from the stored frames; a one-shot task has no such baseline."""
    import h5py
    import numpy as np

    from pde_lab.datasets import GenerateConfig, generate
    from pde_lab.pdes.base import Task
    from pde_lab.training import train

    mt = _benchmark("model_table")
    data = tmp_path / "data"
    generate(GenerateConfig(pde="advection_1d", levels=["easy"], resolution=32, n_train=2, n_valid=1, n_test=2,
                            out=str(data), progress=False))
    u = h5py.File(data / "test" / "easy.h5")["t0_fields/u"][:].astype(np.float64)  # (trajectory, time, x)
    ratios = np.linalg.norm(u[:, :-1] - u[:, 1:], axis=-1) / np.linalg.norm(u[:, 1:], axis=-1)
    errors = {}
    for task in (Task("window", 2, 1), Task("one_shot", 1, 1)):
        run = tmp_path / task.mode
        train(TrainConfig(data=str(data), model="deeponet", model_args=mt.SMALL["deeponet"], epochs=1,
                          task=task, out=str(run), progress=False, device="cpu"))
        errors[task.mode] = mt.copy_input_error(run)
    assert errors["window"] == pytest.approx(ratios[:, 1:].mean(), rel=1e-5) and errors["window"] > 0.01
    assert errors["one_shot"] is None


@pytest.mark.parametrize("argv, message", [
    (["fno_step.py", "step", "--steps", "0"], "--steps, --rounds and --epochs must be >= 1"),
    (["model_table.py", "cost", "--reps", "0"], "--reps, --epochs, --batch and --workers must be >= 1"),
    (["flow_obstacles_cost.py", "--levels", "nope"], "need known --levels (unknown: nope;"),
])
def test_benchmarks_refuse_counts_and_levels_that_would_end_in_a_traceback(argv, message):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / argv[0]
    out = subprocess.run([sys.executable, str(path), *argv[1:]], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and message in out.stderr
