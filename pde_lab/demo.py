"""``pde-lab demo``: the whole job on a small built-in default, in a few minutes on a laptop CPU.

Generates a three-level Burgers dataset, trains an FNO for about a minute, evaluates it on the test
split, draws the error field of the hardest test sample and the loss curve, and says where it all is.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import check_positive


def run_demo(out: str | Path, minutes: float = 1.0, device: str = "auto", overwrite: bool = False) -> dict:
    """Run generate → train → evaluate → plot under ``out``; returns the paths it wrote."""
    import matplotlib

    matplotlib.use("Agg")
    from .datasets import GenerateConfig, generate
    from .datasets.layout import check_overwritable
    from .evaluation import evaluate, format_metrics
    from .plotting import plot_error_field, plot_loss_curve
    from .training import train
    from .training.checkpoint import load_run
    from .training.config import TrainConfig, resolve_device

    out = Path(out)
    data, run_dir = out / "data", out / "run"
    # Everything is checked before anything is written: a bad --minutes or --device (or CUDA asked
    # for and absent) must not cost a minute of generation and leave a half-made demo directory.
    resolve_device(device)
    check_positive("minutes", minutes)
    cfg = TrainConfig().apply_overrides([f"data={data}", "model=fno", f"out={run_dir}", "epochs=500",
                                         f"time_limit_minutes={minutes}", "batch_size=16", "lr=0.002",
                                         f"device={device}", "model_args.width=32", "model_args.modes=16"])
    gen = GenerateConfig(pde="burgers", out=str(data), levels=["easy", "medium", "hard"], n_train=48,
                         n_valid=8, n_test=16, resolution=128, seed=0)
    check_overwritable(out, overwrite, frozenset({"data", "run"}), "a demo directory", hint=" or choose --out")
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    print(f"[1/4] generating Burgers data (levels easy, medium, hard) into {data}")
    generate(gen)
    print(f"[2/4] training an FNO for about {minutes:g} minute(s)")
    train(cfg)
    print("[3/4] evaluating on the test split")
    metrics = evaluate(run_dir, data, split="test", device=device)
    print(format_metrics(metrics))
    print("[4/4] plotting")
    run = load_run(run_dir, device="cpu")
    hard = metrics["levels"]["hard"]["per_sample"]["relative_l2"]
    worst = max(range(len(hard)), key=hard.__getitem__)
    fig = plot_error_field(run, sample=worst, split="test", level="hard")
    paths = {"data": data, "run": run_dir, "metrics": run_dir / "metrics.json",
             "error_field": run_dir / "error_field_hard.png", "loss_curve": run_dir / "loss_curve.png"}
    fig.savefig(paths["error_field"], dpi=120, bbox_inches="tight")
    plot_loss_curve(run).savefig(paths["loss_curve"], dpi=120, bbox_inches="tight")
    print("done:")
    for k, v in paths.items():
        print(f"  {k:<12} {v}")
    return paths
