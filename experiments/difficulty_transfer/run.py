"""Difficulty transfer on channel flow past obstacles (Choudhary et al., "Pre-generating
multi-difficulty PDE data for few-shot neural PDE solvers").

Question: a neural operator is wanted on *hard* flows (many obstacles, Re 8000-10000), whose data cost
the most solver time. Does training on a mix of cheap easy samples and a fraction α of hard ones reach
nearly the accuracy of training on hard samples only, with fewer hard samples and less generation
compute?

For every difficulty axis (both end at ``hard`` = ``many-high``)

* ``geometry``: ``none-high`` → ``one-high`` → ``many-high`` (Re band fixed at 8000-10000),
* ``physics``:  ``many-low``  → ``many-medium`` → ``many-high`` (2-10 squares fixed),

the script generates easy, medium and hard levels once (``pde_lab.datasets.generate``, solver wall
time recorded per trajectory), then trains each model on ``level_mix = {easy: 1 - α, hard: α}``,
α ∈ {0, 0.1, 0.25, 0.5, 1}, in two arms:

* ``count``:  ``n_train`` trajectories (the same number for every α);
* ``budget``: trajectories whose recorded generation seconds sum to at most the cost of the
  hard-only ``count`` training set (``compute_budget``; level counts follow α), so cheap easy
  trajectories buy a larger training set.

Each run is evaluated on the test split of the axis's three levels (``pde_lab.evaluation.evaluate``);
the headline error is the mean one-step relative L2 error on the hard test trajectories.
Definitions used in the answer:

* accuracy relative to hard-only: ``err(α = 1) / err(α)`` within the same model, arm and seed,
  averaged over the seeds (≥ 0.9 = "reaches 90 % of hard-only accuracy"; > 1 = better than hard-only);
* compute saving: the recorded generation seconds of the hard-only training set divided by those of
  the mixed one (both read from the runs' ``data.json``; averaged over the seeds), for mixes that
  reach 90 %.

Usage (one thread per process):

    OMP_NUM_THREADS=1 python experiments/difficulty_transfer/run.py                 # CPU scale
    OMP_NUM_THREADS=1 python experiments/difficulty_transfer/run.py --axes geometry,physics --seeds 0,1,2
    python experiments/difficulty_transfer/run.py --scale gpu --axes physics,geometry

Options: ``--axes``, ``--models``, ``--arms count,budget``, ``--budget-models`` (models of the
budget arm; CPU scale: fno), ``--epochs``, ``--seeds`` (training seeds, e.g. ``0,1,2``: each seed
draws its own selection of trajectories, initial weights and batch order from the same data; the
answers use the mean over seeds of the accuracy ratio), ``--workers`` (generation processes),
``--out`` (default ``experiments_out/difficulty_transfer``). Runs whose ``metrics.json`` exists are skipped,
an interrupted run resumes from its last checkpoint, and generation resumes or is skipped when done.
Writes ``OUT/results.json``, ``OUT/results.md`` and per axis ``OUT/error_vs_alpha_<axis>.png`` and
``OUT/error_vs_compute_<axis>.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pde_lab.datasets import generate
from pde_lab.datasets.generate import GenerateConfig
from pde_lab.datasets.mixing import level_counts as mix_counts
from pde_lab.datasets.mixing import select_by_count, selection_summary
from pde_lab.datasets.reader import FieldDataset, list_files
from pde_lab.errors import UserError
from pde_lab.evaluation.evaluate import evaluate
from pde_lab.evaluation.rollout import persistence_metrics
from pde_lab.pdes.base import Task
from pde_lab.training import TrainConfig, train

PDE = "navier_stokes_obstacles"
HARD = "many-high"
AXES = {"geometry": ("none-high", "one-high", HARD), "physics": ("many-low", "many-medium", HARD)}
ALPHAS = (0.0, 0.1, 0.25, 0.5, 1.0)
ARMS = ("count", "budget", "subset")
PAPER_SAVING = 8.9  # the study's compute saving at 10 % hard samples (OpenFOAM, 128²)


@dataclass(frozen=True)
class Scale:
    """Sizes of one scale of the study.

    ``n_train``: trajectories per training set in the ``count`` arm (and hard trajectories
    generated); easy levels get ``easy_factor * n_train`` training trajectories so that the budget
    arm at α = 0 does not run out of cheap samples. Medium levels are generated for evaluation
    (``n_test``) with one training and one validation trajectory only.
    """

    resolution: int
    n_train: int
    easy_factor: int
    n_valid: int
    n_test: int
    epochs: int
    batch_size: int
    lr: float
    device: str
    workers: int
    axes: tuple[str, ...]
    budget_models: tuple[str, ...]
    model_args: dict = field(default_factory=dict)


SCALES = {
    # 48² cells, 16 training trajectories x 20 one-step pairs, small models: ~16 min per axis and seed on one idle core.
    # On an idle machine a `none-high` trajectory recorded 0.33× the seconds of a hard one, so the budget
    # arm at α = 0 needs 3.1× the hard count of easy trajectories (3× ran out): 6×, as at the GPU scale.
    "cpu": Scale(resolution=48, n_train=16, easy_factor=6, n_valid=4, n_test=8, epochs=15, batch_size=20,
                 lr=2e-3, device="cpu", workers=2, axes=("geometry",), budget_models=("fno",),
                 model_args={"fno": {"width": 16, "modes": 8, "proj_width": 32},
                             "unet": {"widths": [8, 16, 32]}}),
    # The study's resolution; generation still runs on CPU processes (the projection solver is SciPy).
    # At 128² a `none-high` trajectory cost 0.37× a hard one (2 of each timed), so the budget arm at
    # α = 0 needs 2.7× the hard count of easy trajectories; 6× leaves room for the spread of costs.
    "gpu": Scale(resolution=128, n_train=64, easy_factor=6, n_valid=8, n_test=16, epochs=100, batch_size=20,
                 lr=1e-3, device="cuda", workers=16, axes=("physics", "geometry"), budget_models=("fno", "unet"),
                 model_args={"fno": {"width": 32, "modes": 16}, "unet": {"widths": [32, 64, 128, 256]}}),
}


# ---- data ------------------------------------------------------------------------------------------
def level_counts(scale: Scale, level: str, axes: list[str]) -> tuple[int, int, int]:
    """(n_train, n_valid, n_test) generated for ``level``."""
    if level == HARD:
        return scale.n_train, scale.n_valid, scale.n_test
    if any(AXES[a][0] == level for a in axes):
        return scale.easy_factor * scale.n_train, scale.n_valid, scale.n_test
    return 1, 1, scale.n_test  # medium: evaluation only


def generate_levels(scale: Scale, axes: list[str], out: Path, workers: int) -> dict[str, Path]:
    """Generate every level the axes need, each in its own directory (with its own counts); then
    link each axis's three levels into ``out/data/<axis>/<split>/<level>.h5`` for the trainer."""
    levels = sorted({lv for a in axes for lv in AXES[a]})
    for lv in levels:
        n_train, n_valid, n_test = level_counts(scale, lv, axes)
        t0 = time.perf_counter()
        generate(GenerateConfig(pde=PDE, out=str(out / "data" / "levels" / lv), levels=[lv], n_train=n_train,
                                n_valid=n_valid, n_test=n_test, resolution=scale.resolution, seed=0, batch_size=2,
                                workers=workers, progress=False))
        print(f"[data] {lv}: {n_train}/{n_valid}/{n_test} trajectories ready ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    dirs = {}
    for a in axes:
        d = out / "data" / a
        for split in ("train", "valid", "test"):
            (d / split).mkdir(parents=True, exist_ok=True)
            for lv in AXES[a]:
                link = d / split / f"{lv}.h5"
                target = Path("..", "..", "levels", lv, split, f"{lv}.h5")
                if not link.is_symlink():
                    link.symlink_to(target)
        dirs[a] = d
    return dirs


def hard_only_cost(data: Path, easy: str, n: int, seed: int) -> float:
    """Recorded generation seconds of the hard-only training set of the count arm."""
    files = list_files(data, "train", [easy, HARD])
    sel = select_by_count(files, n, {easy: 0.0, HARD: 1.0}, seed=seed)
    cost = sum(s["compute_s"] for s in selection_summary(files, sel).values())
    # The budget arm adds the same costs in another order; the margin keeps its float sum from
    # dropping the last hard trajectory, so its α = 1 set is exactly this one.
    return cost * (1 + 1e-9)


def level_cost_table(data_dirs: dict[str, Path]) -> dict[str, dict]:
    """Per level: mean recorded wall seconds and solver steps per training trajectory."""
    import h5py

    out = {}
    for d in data_dirs.values():
        for path in list_files(d, "train"):
            if path.stem in out:
                continue
            with h5py.File(path, "r") as f:
                wall = f["trajectories/wall_time"][()]
                steps = f["trajectories/steps"][()]
            out[path.stem] = {"n": int(len(wall)), "wall_s_mean": float(wall.mean()),
                              "steps_mean": float(steps.mean())}
    return out


def persistence_error(data: Path, level: str) -> float:
    """Mean one-step relative L2 error of predicting "next frame = current frame" on ``level``'s test
    trajectories: the floor a trained model must beat to have learnt any dynamics."""
    ds = FieldDataset(list_files(data, "test", [level]), task=Task("window", 1, 1))
    err = persistence_metrics(ds, ["relative_l2"])["relative_l2"]
    ds.close()
    return float(err.mean())


# ---- runs ------------------------------------------------------------------------------------------
def run_one(scale: Scale, axis: str, data: Path, model: str, arm: str, alpha: float, budget: float,
            run_dir: Path, epochs: int, seed: int = 0) -> dict:
    """Train (or resume, or skip) one run with training seed ``seed`` (trajectory selection, initial
    weights, batch order) and evaluate it; returns its row of the results."""
    easy, medium, hard = AXES[axis]
    metrics_path = run_dir / "metrics.json"
    mix = {easy: 1.0 - alpha, hard: alpha}
    n_train = scale.n_train
    if arm == "subset":  # the hard trajectories of the count arm's mix, without its easy ones
        n_train = mix_counts(mix, scale.n_train)[hard]
        mix = {easy: 0.0, hard: 1.0}
        # as many optimizer steps as the count arm, so only the easy samples are missing
        epochs = max(1, round(epochs * scale.n_train / n_train))
    if metrics_path.is_file():
        check_reused(run_dir, scale, model, epochs, seed)
    else:
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        by_count = arm == "count" or alpha == 1.0
        cfg = TrainConfig(
            data=str(data), levels=[easy, hard], parameters=["reynolds"], task=Task("window", 1, 1),
            level_mix=mix,
            # hard-only under the budget = the hard-only count set (see main), which select_by_budget
            # refuses because the hard level runs out with the rounding margin of the budget unspent
            n_train=n_train if by_count or arm == "subset" else None,
            compute_budget=budget if arm == "budget" and not by_count else None, budget_share="count",
            model=model, model_args=dict(scale.model_args.get(model, {})), epochs=epochs,
            batch_size=scale.batch_size, lr=scale.lr, scheduler="cosine", seed=seed, device=scale.device,
            preload=True,  # the selected trajectories fit in memory at both scales; HDF5 reads would dominate
            out=str(run_dir), resume=resume, overwrite=not resume and run_dir.exists(), progress=False)
        t0 = time.perf_counter()
        train(cfg)
        t_train = time.perf_counter() - t0
        evaluate(run_dir, data, split="test", levels=[easy, medium, hard], device=scale.device,
                 save_predictions=False)
        (run_dir / "timing.json").write_text(json.dumps({"train_eval_wall_s": time.perf_counter() - t0,
                                                         "train_wall_s": t_train}))
    return summarize_run(run_dir, axis, model, arm, alpha, seed)


def check_reused(run_dir: Path, scale: Scale, model: str, epochs: int, seed: int = 0) -> None:
    """:class:`UserError` unless the finished run in ``run_dir`` was trained with the settings this call
    would train it with: a run is skipped when its ``metrics.json`` exists, so a call with another
    ``--epochs`` (or scale) into the same ``--out`` would otherwise report the old runs under the new
    settings."""
    import yaml

    from pde_lab.operators import build_model

    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    want = {"model": model, "epochs": epochs, "lr": scale.lr, "batch_size": scale.batch_size, "seed": seed}
    differ = [f"{k} {stored.get(k)!r} (now {v!r})" for k, v in want.items() if stored.get(k) != v]
    if not differ:
        # The stored arguments are resolved (modes 8 -> [8, 8], defaults filled in): compare them with
        # the scale's arguments resolved the same way, on the stored channel counts.
        args = stored.get("model_args", {})
        now = build_model(model, **{**args, **scale.model_args.get(model, {})}).spec()["args"]
        differ = [f"model_args.{k} {args.get(k)!r} (now {v!r})" for k, v in now.items() if args.get(k) != v]
    if differ:
        raise UserError(f"the finished run {str(run_dir)!r} was trained with " + ", ".join(differ)
                        + "; give another --out, or delete the run to train it again")


def summarize_run(run_dir: Path, axis: str, model: str, arm: str, alpha: float, seed: int = 0) -> dict:
    """The row of one finished run, read back from its ``data.json`` and ``metrics.json``."""
    easy, medium, hard = AXES[axis]
    info = json.loads((run_dir / "data.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    per_level = info["selection"]["per_level"]
    row = {"axis": axis, "model": model, "arm": arm, "alpha": alpha, "seed": seed, "run": str(run_dir),
           "n_easy": per_level.get(easy, {}).get("n", 0), "n_hard": per_level.get(hard, {}).get("n", 0),
           "gen_seconds": sum(v["compute_s"] for v in per_level.values())}
    for name, lv in (("easy", easy), ("medium", medium), ("hard", hard)):
        m = metrics["levels"][lv]
        row[f"err_{name}"] = m["relative_l2"]["mean"]
        curve = m.get("error_vs_time")
        row[f"rollout_{name}"] = float(np.mean(curve["rel_l2_mean"][1:])) if curve else None
    timing = run_dir / "timing.json"
    row["train_eval_wall_s"] = json.loads(timing.read_text())["train_eval_wall_s"] if timing.is_file() else None
    return row


# ---- analysis --------------------------------------------------------------------------------------
def span(values, fmt: str = "g") -> str:
    """``"x"`` when every value is ``x``, else ``"lo–hi"``."""
    lo, hi = min(values), max(values)
    return format(lo, fmt) if lo == hi else f"{lo:{fmt}}–{hi:{fmt}}"


def answer(rows: list[dict]) -> list[dict]:
    """Per (axis, model, arm): accuracy of every mix relative to hard-only and the compute saving, both
    per seed (against the hard-only run of the same seed), and their means over the seeds.

    A mix "reaches 90 %" when the mean accuracy ratio is ≥ 0.9; ``seeds_reaching_90`` counts the seeds
    whose own ratio is.
    """
    findings = []
    groups = sorted({(r["axis"], r["model"], r["arm"]) for r in rows})
    for axis, model, arm in groups:
        g = [r for r in rows if (r["axis"], r["model"], r["arm"]) == (axis, model, arm)]
        ref = {r["seed"]: r for r in g if r["alpha"] == 1.0}
        if not ref:
            continue
        mixes = []
        for a in sorted({r["alpha"] for r in g if r["alpha"] < 1.0}):
            runs = sorted((r for r in g if r["alpha"] == a and r["seed"] in ref), key=lambda r: r["seed"])
            if not runs:  # only seeds without a hard-only run to compare with
                continue
            acc = [ref[r["seed"]]["err_hard"] / r["err_hard"] for r in runs]
            saving = [ref[r["seed"]]["gen_seconds"] / r["gen_seconds"] for r in runs]
            mixes.append({"alpha": a, "seeds": [r["seed"] for r in runs],
                          "accuracy_vs_hard_only": float(np.mean(acc)), "accuracy_per_seed": acc,
                          "reaches_90": float(np.mean(acc)) >= 0.9, "seeds_reaching_90": sum(x >= 0.9 for x in acc),
                          "err_hard_per_seed": [r["err_hard"] for r in runs],
                          "n_hard": [r["n_hard"] for r in runs],
                          "hard_only_n_hard": [ref[r["seed"]]["n_hard"] for r in runs],
                          "compute_saving": float(np.mean(saving))})
        ok = [m for m in mixes if m["reaches_90"]]
        findings.append({"axis": axis, "model": model, "arm": arm, "seeds": sorted(ref),
                         "hard_only_err": float(np.mean([r["err_hard"] for r in ref.values()])),
                         "hard_only_err_per_seed": [ref[s]["err_hard"] for s in sorted(ref)],
                         "hard_only_gen_seconds": float(np.mean([r["gen_seconds"] for r in ref.values()])),
                         "mixes": mixes,
                         "smallest_alpha_reaching_90": min((m["alpha"] for m in ok), default=None)})
    return findings


def markdown(rows: list[dict], findings: list[dict], costs: dict, header: str) -> str:
    lines = [header, "", "Generation cost per training trajectory (recorded wall seconds, solver steps), and the one-step "
             "error of the persistence baseline (next frame = current frame) on the level's test trajectories:", "",
             "| level | trajectories | wall s / trajectory | steps / trajectory | persistence err (test) |",
             "|---|---|---|---|---|"]
    for lv, c in sorted(costs.items()):
        lines.append(f"| `{lv}` | {c['n']} | {c['wall_s_mean']:.2f} | {c['steps_mean']:.0f} | "
                     f"{c['persistence_err']:.4f} |")
    if len({r["seed"] for r in rows}) > 1:
        lines += ["", "Over the seeds: hard-test error, mean (min–max); accuracy relative to hard-only, mean of the "
                  "per-seed ratios err(α=1) / err(α) (min–max), and how many seeds reach 0.9; compute saving, mean "
                  "over seeds.", "",
                  "| axis | model | arm | α | seeds | n hard | err hard | acc | seeds ≥ 0.9 | compute saving |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for f in findings:
            for m in f["mixes"]:
                errs = m["err_hard_per_seed"]
                lines.append(f"| {f['axis']} | {f['model']} | {f['arm']} | {m['alpha']:g} | {len(m['seeds'])} | "
                             f"{span(m['n_hard'])} | {np.mean(errs):.4f} ({span(errs, '.4f')}) | "
                             f"{m['accuracy_vs_hard_only']:.3f} ({span(m['accuracy_per_seed'], '.3f')}) | "
                             f"{m['seeds_reaching_90']}/{len(m['seeds'])} | {m['compute_saving']:.2f}× |")
            e = f["hard_only_err_per_seed"]
            lines.append(f"| {f['axis']} | {f['model']} | {f['arm']} | 1 | {len(e)} | - | {f['hard_only_err']:.4f} "
                         f"({span(e, '.4f')}) | 1 | - | - |")
    lines += ["", "Every run. Errors: mean one-step relative L2 on each level's test trajectories; rollout: mean over "
              "frames 1-20 of the autoregressive rollout error from frame 0. acc = err(α=1) / err(α) "
              "(same model, arm and seed).", "",
              "| axis | model | arm | seed | α | n easy | n hard | gen s | err hard | acc | err medium | err easy "
              "| rollout hard |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = {(r["axis"], r["model"], r["arm"], r["seed"]): r for r in rows if r["alpha"] == 1.0}
    for r in sorted(rows, key=lambda r: (r["axis"], r["model"], r["arm"], r["seed"], r["alpha"])):
        h = ref.get((r["axis"], r["model"], r["arm"], r["seed"]))
        acc = f"{h['err_hard'] / r['err_hard']:.3f}" if h else "-"
        roll = f"{r['rollout_hard']:.3f}" if r["rollout_hard"] is not None else "-"
        lines.append(f"| {r['axis']} | {r['model']} | {r['arm']} | {r['seed']} | {r['alpha']:g} | {r['n_easy']} | "
                     f"{r['n_hard']} | {r['gen_seconds']:.1f} | {r['err_hard']:.4f} | {acc} | {r['err_medium']:.4f} | "
                     f"{r['err_easy']:.4f} | {roll} |")
    lines += ["", "Answers:", ""] + [f"- {s}" for s in answer_lines(findings)]
    return "\n".join(lines) + "\n"


def answer_lines(findings: list[dict]) -> list[str]:
    out = []
    for f in findings:
        n = len(f["seeds"])
        over = f", mean of {n} seeds" if n > 1 else ""
        head = (f"{f['axis']}/{f['model']}/{f['arm']} (hard-only err {f['hard_only_err']:.4f}{over}, "
                f"{f['hard_only_gen_seconds']:.1f} s)")
        ok = [m for m in f["mixes"] if m["reaches_90"]]
        if not ok:
            best = max(f["mixes"], key=lambda m: m["accuracy_vs_hard_only"], default=None)
            tail = f"; best α = {best['alpha']:g} at {best['accuracy_vs_hard_only']:.3f}" if best else ""
            out.append(f"{head}: no α < 1 reaches 90 % of hard-only accuracy{tail}.")
            continue
        parts = [f"α = {m['alpha']:g}: acc {m['accuracy_vs_hard_only']:.3f}"
                 + (f" ({m['seeds_reaching_90']} of {len(m['seeds'])} seeds ≥ 0.9)" if n > 1 else "")
                 + f", {span(m['n_hard'])}/{span(m['hard_only_n_hard'])} hard samples, "
                 f"compute saving {m['compute_saving']:.2f}×" for m in ok]
        out.append(f"{head}: reaches ≥ 90 % with " + "; ".join(parts) + ".")
    return out


def curves(rows: list[dict], model: str, arm: str) -> list[tuple[float, list[dict]]]:
    """``(α, runs over the seeds)`` of one model and arm, by increasing α."""
    sel = [r for r in rows if (r["model"], r["arm"]) == (model, arm)]
    return [(a, [r for r in sel if r["alpha"] == a]) for a in sorted({r["alpha"] for r in sel})]


def plot(rows: list[dict], axis: str, out: Path, persistence: float) -> None:
    """The two figures of one axis: hard test error against α, and against generation seconds. With
    several seeds, markers are the means and bars span the seeds' smallest to largest error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r["axis"] == axis]
    n_seeds = len({r["seed"] for r in sel})
    seeds_note = f"; mean of {n_seeds} seeds, bars min-max" if n_seeds > 1 else ""
    styles = {"count": "-o", "budget": "--s", "subset": ":^"}
    for against_compute in (False, True):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for model, arm in sorted({(r["model"], r["arm"]) for r in sel}):
            pts = curves(sel, model, arm)
            errs = [[r["err_hard"] for r in runs] for _, runs in pts]
            y = np.array([np.mean(e) for e in errs])
            bars = np.array([[m - min(e) for m, e in zip(y, errs)], [max(e) - m for m, e in zip(y, errs)]])
            x = ([float(np.mean([r["gen_seconds"] for r in runs])) for _, runs in pts] if against_compute
                 else [a for a, _ in pts])
            line = ax.errorbar(x, y, yerr=bars if n_seeds > 1 else None, fmt=styles[arm], capsize=2,
                               label=f"{model}, {arm}")
            if against_compute:
                for (a, _), xi, yi in zip(pts, x, y):
                    ax.annotate(f"{a:g}", (xi, yi), fontsize=7, textcoords="offset points", xytext=(3, 3))
            elif arm == "count" and pts and pts[-1][0] == 1.0:
                ax.axhline(y[-1] / 0.9, color=line[0].get_color(), lw=0.8, ls=":")
        ax.axhline(persistence, color="grey", lw=0.8, ls="-.", label="persistence baseline")
        ax.set_ylabel(f"relative L2 on hard test ({HARD})")
        ax.legend(fontsize=8)
        if against_compute:
            ax.set_xlabel("generation seconds of the training set (recorded solver wall time)")
            ax.set_title(f"{axis} axis: error vs generation compute\n(labels: α{seeds_note})", fontsize=8)
        else:
            ax.set_xlabel("hard fraction α")
            ax.set_title(f"{axis} axis: error vs α\n(dotted: hard-only error / 0.9{seeds_note})", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"error_vs_{'compute' if against_compute else 'alpha'}_{axis}.png", dpi=120)
        plt.close(fig)


# ---- driver ----------------------------------------------------------------------------------------
def parse_list(text: str, allowed, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise UserError(f"{what} {text!r} not understood; allowed: {', '.join(allowed)}")
    return items


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``: distinct non-negative integers."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} not understood; give distinct non-negative integers, e.g. 0,1,2")
    return seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--axes", default=None, help="comma list of physics, geometry (default: the scale's)")
    p.add_argument("--models", default="fno,unet")
    p.add_argument("--arms", default="count,budget,subset")
    p.add_argument("--budget-models", default=None,
                   help="models of the budget and subset arms (default: the scale's)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seeds", default="0",
                   help="comma list of training seeds (selection, initial weights, batch order), e.g. 0,1,2")
    p.add_argument("--workers", type=int, default=None, help="generation processes")
    p.add_argument("--out", default="experiments_out/difficulty_transfer")
    args = p.parse_args(argv)
    try:
        scale = SCALES[args.scale]
        axes = parse_list(args.axes, AXES, "axes") if args.axes else list(scale.axes)
        models = parse_list(args.models, ("fno", "unet"), "models")
        arms = parse_list(args.arms, ARMS, "arms")
        budget_models = (parse_list(args.budget_models, ("fno", "unet"), "budget models") if args.budget_models
                         else list(scale.budget_models))
        epochs = scale.epochs if args.epochs is None else args.epochs
        workers = scale.workers if args.workers is None else args.workers
        seeds = parse_seeds(args.seeds)
        if epochs < 1 or workers < 1:
            raise UserError(f"--epochs and --workers must be positive, got {epochs} and {workers}")
        if args.budget_models and arms != ["count"] and not set(models) & set(budget_models):
            raise UserError(f"the budget and subset arms train --budget-models {budget_models}, none of which is in "
                            f"--models {models}")
        if scale.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--scale gpu trains on CUDA, which is not available here; use --scale cpu")
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        data_dirs = generate_levels(scale, axes, out, workers)
        costs = level_cost_table(data_dirs)
        for axis, d in data_dirs.items():
            for lv in AXES[axis]:
                if "persistence_err" not in costs[lv]:  # the hard level belongs to both axes: once
                    costs[lv]["persistence_err"] = persistence_error(d, lv)
        rows = []
        for axis, seed in ((a, s) for a in axes for s in seeds):
            easy, _, hard = AXES[axis]
            budget = hard_only_cost(data_dirs[axis], easy, scale.n_train, seed=seed)
            print(f"[{axis}] seed {seed}: compute budget = hard-only count-arm cost = {budget:.1f} s", flush=True)
            for arm in arms:
                for model in models:
                    if arm != "count" and model not in budget_models:
                        continue
                    for alpha in ALPHAS:
                        if arm == "subset" and mix_counts({easy: 1.0 - alpha, hard: alpha}, scale.n_train)[hard] == 0:
                            continue  # no hard trajectories in the mix (alpha = 0, or rounded away)
                        run_dir = out / "runs" / axis / f"seed{seed}" / f"{model}-{arm}-a{alpha:g}"
                        twin = run_dir.with_name(f"{model}-count-a{alpha:g}")
                        if arm != "count" and alpha == 1.0 and (twin / "metrics.json").is_file():
                            # The budget is the cost of the hard-only count set and selections are prefixes
                            # of one order per level, so this run would train on exactly that set again.
                            # (select_by_budget would also refuse it: the hard level runs out with the
                            # budget's rounding margin unspent.)
                            check_reused(twin, scale, model, epochs, seed)
                            row = dict(summarize_run(twin, axis, model, "count", alpha, seed), arm=arm,
                                       same_as=str(twin))
                        else:
                            row = run_one(scale, axis, data_dirs[axis], model, arm, alpha, budget, run_dir, epochs,
                                          seed)
                        rows.append(row)
                        print(f"[{axis}] seed {seed} {model:<4} {arm:<6} α={alpha:<4g} n_easy={row['n_easy']:<3} "
                              f"n_hard={row['n_hard']:<3} gen={row['gen_seconds']:7.1f}s err_hard={row['err_hard']:.4f} "
                              f"err_easy={row['err_easy']:.4f}", flush=True)
        for axis in axes:
            plot(rows, axis, out, costs[HARD]["persistence_err"])
        findings = answer(rows)
        header = (f"# Difficulty transfer, scale `{args.scale}`\n\nCommand: `python experiments/difficulty_transfer/"
                  f"{' '.join(['run.py', *(sys.argv[1:] if argv is None else argv)])}`; resolution {scale.resolution}², "
                  f"n_train {scale.n_train}, epochs {epochs}, seeds {', '.join(map(str, seeds))}, "
                  f"models {', '.join(models)}, arms {', '.join(arms)} "
                  f"(budget and subset arms: {', '.join(budget_models)}).")
        (out / "results.md").write_text(markdown(rows, findings, costs, header))
        (out / "results.json").write_text(json.dumps(
            {"scale": args.scale, "models": models, "arms": arms,
             # the scale as this call ran it: flags override its axes, budget models, epochs and workers
             "settings": {**scale.__dict__, "axes": axes, "budget_models": budget_models, "epochs": epochs,
                          "workers": workers}, "epochs": epochs, "seeds": seeds,
             "axes": axes, "level_costs": costs, "rows": rows, "findings": findings,
             "paper_compute_saving_at_10pct": PAPER_SAVING,
             "total_wall_s": time.perf_counter() - t_start}, indent=2, default=list))
        print()
        for line in answer_lines(findings):
            print(line)
        print(f"(the study reports {PAPER_SAVING}× compute saving at 10 % hard; results in {out})")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
