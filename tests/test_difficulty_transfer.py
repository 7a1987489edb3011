"""Smoke test of the difficulty-transfer study script at a toy scale (slow: generates and trains)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import pytest

from tests.experiment_scripts import load_experiment


def _load():
    return load_experiment("difficulty_transfer/run.py")


@pytest.mark.slow
def test_study_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    mod = _load()
    tiny = dataclasses.replace(mod.SCALES["cpu"], resolution=32, n_train=4, easy_factor=3, n_valid=1, n_test=2,
                               epochs=1, workers=1, axes=("physics", "geometry"),  # --axes picks one below
                               model_args={"fno": {"width": 4, "modes": 4, "proj_width": 8}, "unet": {"widths": [4, 8]}})
    monkeypatch.setitem(mod.SCALES, "cpu", tiny)
    monkeypatch.setattr(mod, "ALPHAS", (0.0, 0.5, 1.0))
    out = tmp_path / "out"
    cmd = ["--axes", "geometry", "--models", "fno", "--seeds", "0,1", "--out", str(out)]
    assert mod.main(cmd) == 0
    res = json.loads((out / "results.json").read_text())
    assert (res["settings"]["axes"], res["models"], res["settings"]["budget_models"]) == (["geometry"], ["fno"], ["fno"])
    assert res["seeds"] == [0, 1] and [f["seeds"] for f in res["findings"]] == [[0, 1]] * 3
    rows = {(r["arm"], r["alpha"]): r for r in res["rows"] if r["seed"] == 0}
    other = {(r["arm"], r["alpha"]): r for r in res["rows"] if r["seed"] == 1}
    assert set(other) == set(rows) and "/seed1/" in other["count", 0.5]["run"]
    assert other["budget", 1.0]["same_as"].endswith("seed1/fno-count-a1")
    # another seed: the same counts, other weights (and trajectories), so another error
    assert (other["count", 0.5]["n_easy"], other["count", 0.5]["n_hard"]) == (2, 2)
    assert other["count", 0.5]["err_hard"] != rows["count", 0.5]["err_hard"]
    assert set(rows) == {(arm, a) for arm in ("count", "budget") for a in (0.0, 0.5, 1.0)} | {("subset", 0.5), ("subset", 1.0)}
    # fixed count: every α trains on n_train trajectories, split as asked
    assert [(rows["count", a]["n_easy"], rows["count", a]["n_hard"]) for a in (0.0, 0.5, 1.0)] == [(4, 0), (2, 2), (0, 4)]
    # fixed compute: no budget set costs more than the hard-only set, whose run is reused
    budget = rows["count", 1.0]["gen_seconds"]
    assert all(rows["budget", a]["gen_seconds"] <= budget * (1 + 1e-9) for a in (0.0, 0.5))
    assert rows["budget", 1.0]["same_as"].endswith("fno-count-a1")
    # hard subset: the mix's hard trajectories alone, with the count arm's number of optimizer steps
    assert (rows["subset", 0.5]["n_easy"], rows["subset", 0.5]["n_hard"]) == (0, 2)
    log = (Path(rows["subset", 0.5]["run"]) / "log.csv").read_text().strip().splitlines()
    assert len(log) - 1 == 2 * tiny.epochs
    for r in res["rows"]:
        assert 0 < r["err_hard"] < 10 and r["rollout_hard"] is not None
    assert "Over the seeds" in (out / "results.md").read_text()
    for name in ("results.md", "error_vs_alpha_geometry.png", "error_vs_compute_geometry.png"):
        assert (out / name).stat().st_size > 0
    # resumable: a second call trains nothing (run directories untouched) and gives the same rows
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("metrics.json")}
    assert mod.main(cmd) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("metrics.json")} == stamp
    again = json.loads((out / "results.json").read_text())
    assert [r["err_hard"] for r in again["rows"]] == [r["err_hard"] for r in res["rows"]]


def test_a_finished_run_with_other_settings_is_refused_not_reused(tmp_path):
    """A run with a metrics.json is skipped and read back: one trained with another --epochs or model
    size must not be reported under this call's settings."""
    from pde_lab.operators import build_model
    from pde_lab.training import TrainConfig

    mod = _load()
    scale = mod.SCALES["cpu"]
    easy, medium, hard = mod.AXES["geometry"]
    run = tmp_path / "runs" / "geometry" / "fno-count-a0.5"
    run.mkdir(parents=True)
    args = build_model("fno", in_channels=6, out_channels=3, n_dims=2, **scale.model_args["fno"]).spec()["args"]
    TrainConfig(model="fno", model_args=args, epochs=scale.epochs, lr=scale.lr,
                batch_size=scale.batch_size).to_yaml(run / "config.yaml")
    (run / "data.json").write_text(json.dumps({"selection": {"per_level": {easy: {"n": 8, "compute_s": 10.0},
                                                                           hard: {"n": 8, "compute_s": 15.0}}}}))
    (run / "metrics.json").write_text(json.dumps({"levels": {lv: {"relative_l2": {"mean": 0.3}}
                                                             for lv in (easy, medium, hard)}}))
    same = mod.run_one(scale, "geometry", tmp_path / "data", "fno", "count", 0.5, 1.0, run, scale.epochs)
    assert (same["n_easy"], same["n_hard"], same["err_hard"], same["gen_seconds"]) == (8, 8, 0.3, 25.0)
    with pytest.raises(mod.UserError, match=rf"epochs {scale.epochs} \(now 30\)"):
        mod.run_one(scale, "geometry", tmp_path / "data", "fno", "count", 0.5, 1.0, run, 30)
    wide = dataclasses.replace(scale, model_args={**scale.model_args, "fno": {**scale.model_args["fno"], "width": 32}})
    with pytest.raises(mod.UserError, match=r"model_args.width 16 \(now 32\)"):
        mod.run_one(wide, "geometry", tmp_path / "data", "fno", "count", 0.5, 1.0, run, scale.epochs)


def test_bad_axis_is_a_user_error(capsys):
    mod = _load()
    assert mod.main(["--axes", "diagonal"]) == 2
    assert "diagonal" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_scale_runs_its_resolution_axes_and_models_on_cpu(tmp_path, monkeypatch):
    """The ``--scale gpu`` configuration (128², both axes, its FNO and U-Net sizes, both models in the
    budget arm, its ratio of easy to hard trajectories) runs end to end with the counts cut down and
    CUDA swapped for the CPU (18 minutes on the loaded 2-core machine)."""
    mod = _load()
    small = dataclasses.replace(mod.SCALES["gpu"], n_train=2, n_valid=1, n_test=1, epochs=1, device="cpu",
                                workers=2)
    monkeypatch.setitem(mod.SCALES, "gpu", small)
    monkeypatch.setattr(mod, "ALPHAS", (0.0, 0.5, 1.0))
    out = tmp_path / "out"
    assert mod.main(["--scale", "gpu", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["axis"] for r in res["rows"]} == {"physics", "geometry"}
    assert {r["model"] for r in res["rows"] if r["arm"] == "budget"} == {"fno", "unet"}
    for r in res["rows"]:
        assert 0 < r["err_hard"] < 10
    with h5py.File(next((out / "data").rglob("*.h5"))) as f:
        assert f["t1_fields/velocity"].shape[2:4] == (128, 128)


def _row(seed, alpha, err, n_hard, gen):
    return {"axis": "physics", "model": "fno", "arm": "count", "alpha": alpha, "seed": seed, "err_hard": err,
            "n_easy": 16 - n_hard, "n_hard": n_hard, "gen_seconds": gen, "err_medium": 0.1, "err_easy": 0.05,
            "rollout_hard": None}


def test_answer_pairs_each_mix_with_the_hard_only_run_of_its_own_seed():
    """Accuracy ratios are formed within a seed, then averaged: with seed 1's hard-only run twice as
    bad, pairing across seeds (or averaging errors first) would give other numbers."""
    mod = _load()
    rows = [_row(0, 1.0, 0.20, 16, 32.0), _row(0, 0.5, 0.25, 8, 30.0),
            _row(1, 1.0, 0.40, 16, 34.0), _row(1, 0.5, 0.40, 8, 20.0)]
    (f,) = mod.answer(rows)
    (m,) = f["mixes"]
    assert f["seeds"] == [0, 1] and f["hard_only_err"] == pytest.approx(0.30)
    assert m["accuracy_per_seed"] == pytest.approx([0.8, 1.0])
    assert m["accuracy_vs_hard_only"] == pytest.approx(0.9) and m["reaches_90"]
    assert m["seeds_reaching_90"] == 1 and m["compute_saving"] == pytest.approx((32 / 30 + 34 / 20) / 2)
    (line,) = mod.answer_lines([f])
    assert "mean of 2 seeds" in line and "1 of 2 seeds ≥ 0.9" in line and "8/16 hard samples" in line
    md = mod.markdown(rows, [f], {}, "# t")
    assert "| physics | fno | count | 0.5 | 2 | 8 | 0.3250 (0.2500–0.4000) | 0.900 (0.800–1.000) | 1/2 |" in md
    # one seed: the per-seed numbers, no table over seeds
    (one,) = mod.answer(rows[:2])
    assert one["mixes"][0]["accuracy_vs_hard_only"] == pytest.approx(0.8) and not one["mixes"][0]["reaches_90"]
    assert "Over the seeds" not in mod.markdown(rows[:2], [one], {}, "# t")


def test_a_finished_run_of_another_seed_is_refused(tmp_path):
    from pde_lab.operators import build_model
    from pde_lab.training import TrainConfig

    mod = _load()
    scale = mod.SCALES["cpu"]
    run = tmp_path / "run"
    run.mkdir()
    args = build_model("fno", in_channels=6, out_channels=3, n_dims=2, **scale.model_args["fno"]).spec()["args"]
    TrainConfig(model="fno", model_args=args, epochs=scale.epochs, lr=scale.lr, batch_size=scale.batch_size,
                seed=1).to_yaml(run / "config.yaml")
    mod.check_reused(run, scale, "fno", scale.epochs, seed=1)
    with pytest.raises(mod.UserError, match=r"seed 1 \(now 2\)"):
        mod.check_reused(run, scale, "fno", scale.epochs, seed=2)


@pytest.mark.parametrize("seeds", ["", "a", "0,0", "-1"])
def test_bad_seeds_are_a_user_error(seeds, capsys, tmp_path, monkeypatch):
    mod = _load()
    monkeypatch.setattr(mod, "generate_levels", lambda *a: pytest.fail("bad --seeds reached generation"))
    assert mod.main(["--seeds", seeds, "--out", str(tmp_path)]) == 2
    assert "--seeds" in capsys.readouterr().err
