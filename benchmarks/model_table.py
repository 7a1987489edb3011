"""Every registered neural operator side by side: parameters, training-step time and peak memory at
128² batch 16, and test errors after a short training on Burgers, Darcy and periodic Navier–Stokes.

    python benchmarks/model_table.py cost  [--size 128] [--batch 16] [--reps 3] [--device cpu]
    python benchmarks/model_table.py train --data DIR [--epochs 20] [--only burgers darcy] [--models fno cno] [--device cpu]
    python benchmarks/model_table.py data  --data DIR [--workers 2]   # generate the three small datasets

``cost`` builds each model with its DEFAULT arguments in 2D (1 input, 1 output channel), and times
full training steps (forward, relative-L2 loss, backward, Adam step) on random data. Each model runs
in its own subprocess, so that the peak memory is its own: on CPU the increase of the process's
peak resident set (``ru_maxrss``) over the step, measured from just before the first step (so it
counts activations, gradients, Adam state and allocator overhead, not the weights or the batch); on
CUDA ``torch.cuda.max_memory_allocated`` minus the memory held before the first step.

``train`` trains each model through ``pde_lab.training.train`` (``--model NAME``, the same path as
``pde-lab train``) for the same number of epochs (and optionally a wall-time limit) on the datasets
made by ``data``, reports wall and process-CPU training time (CPU time is the steadier figure on a
shared machine), and evaluates the best checkpoint's mean relative L2 error on the test split
(``test_error``, with ``pde_lab.evaluation.metrics.relative_l2``); for a time-stepping (``window``) task
it adds the error of copying the last input frame (``copy_input_error``), the floor a model must beat.
These are SMALL-SCALE runs (small models, few samples, minutes of CPU): the errors rank architectures
at a small budget, they are not converged published numbers.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checked_device, machine_lines, median, pin_threads, table  # noqa: E402

HERE = Path(__file__).resolve()
NOT_FIELD_OPERATORS = {"pinn_mlp"}  # maps points, not fields (see tests/test_models.py)

# Small architectures for the short training runs: about 0.1-0.6 M parameters each, so that a
# minute of one CPU thread gives each model a few hundred steps.
SMALL = {
    "fno": dict(width=24, modes=12, n_layers=4, proj_width=64),
    "ffno": dict(width=32, modes=12, n_layers=4, proj_width=64),
    "unet": dict(widths=[16, 32, 64], blocks=1),
    "deeponet": dict(basis=64, width=64, depth=3),
    "cno": dict(width=12, levels=3, n_res=1, n_res_neck=2),
    "galerkin_transformer": dict(width=32, heads=4, n_layers=3, proj_width=64),
}
DATASETS = {
    # name: (pde, level, resolution, n_train, n_valid, n_test, solver options)
    "burgers": ("burgers", "fno", 128, 200, 20, 50, {}),
    "darcy": ("darcy", "easy", 64, 200, 20, 50, {}),
    # Solved on 128² instead of the default 256²: 7x cheaper, 2.7e-9 and 6.0e-9 from the 256² frames (ν = 1e-3, 6.6e-4).
    "navier_stokes_2d": ("navier_stokes_2d", "easy", 64, 200, 20, 40, {"solver_factor": 2}),
}


def operators() -> list[str]:
    from pde_lab.operators import MODELS

    return [n for n in MODELS.names() if n not in NOT_FIELD_OPERATORS]


# ---- cost ------------------------------------------------------------------------------------------
def measure_one(name: str, size: int, batch: int, reps: int, device: str) -> dict:
    """Parameters, step times and peak step memory of model ``name`` (default args, 2D)."""
    import torch

    from pde_lab.operators import build_model
    from pde_lab.training.trainer import relative_l2

    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_model(name, in_channels=1, out_channels=1, n_dims=2).to(dev).train()
    x = torch.randn(batch, 1, size, size, device=dev)
    y = torch.randn(batch, 1, size, size, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = relative_l2(model(x), y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()  # warm-up; also allocates the Adam state, counted in the peak
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
            "step_wall_s": median(wall), "step_cpu_s": median(cpu), "peak_step_mib": peak / 2**20,
            "args": model.spec()["args"]}


def cost(args) -> list[dict]:
    rows = []
    for name in operators():
        cmd = [sys.executable, str(HERE), "_one", name, "--size", str(args.size), "--batch", str(args.batch),
               "--reps", str(args.reps), "--device", args.device, "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{name} failed:\n{out.stderr}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {name}: {rows[-1]['step_wall_s']:.2f} s/step", file=sys.stderr, flush=True)
    print("\n".join(machine_lines(args.device, [("setting", f"2D, default arguments, {args.size}x{args.size}, "
                                                           f"batch {args.batch}, 1 -> 1 channel; median of "
                                                           f"{args.reps} steps after one warm-up")])))
    print()
    print(table(["model", "parameters", "step wall [s]", "step CPU [s]", "peak step memory [MiB]"],
                [[r["model"], f"{r['parameters']:,}", f"{r['step_wall_s']:.2f}", f"{r['step_cpu_s']:.2f}",
                  f"{r['peak_step_mib']:.0f}"] for r in rows]))
    return rows


# ---- data and training -----------------------------------------------------------------------------
def make_data(args) -> None:
    from pde_lab.datasets import GenerateConfig, generate

    for key, (pde, level, res, n_train, n_valid, n_test, options) in DATASETS.items():
        if args.only and key not in args.only:
            continue
        t0 = time.perf_counter()
        generate(GenerateConfig(pde=pde, levels=[level], resolution=res, n_train=n_train, n_valid=n_valid,
                                n_test=n_test, out=str(Path(args.data) / key), progress=False, overwrite=True,
                                solver_options=options, workers=args.workers))
        print(f"{key}: {pde} level {level}, {res} points per axis, {n_train}/{n_valid}/{n_test} trajectories, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)


def train_all(args) -> list[dict]:
    from pde_lab.training import TrainConfig, train

    rows = []
    for key in DATASETS:
        if args.only and key not in args.only:
            continue
        data = Path(args.data) / key
        run_dir = None
        for name in operators():
            if args.models and name not in args.models:
                continue
            run_dir = Path(args.runs) / key / name
            config = TrainConfig(data=str(data), model=name, model_args=SMALL[name], epochs=args.epochs,
                                 batch_size=20, lr=1e-3, scheduler="cosine", time_limit_minutes=args.minutes,
                                 device=args.device, out=str(run_dir), overwrite=True, progress=False, seed=0)
            t0, c0 = time.perf_counter(), time.process_time()
            train(config)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            log = (run_dir / "log.csv").read_text().strip().splitlines()
            err = test_error(run_dir, args.device)
            n_params = _parameters(run_dir)
            rows.append({"data": key, "model": name, "test_rel_l2": err, "epochs": len(log) - 1,
                         "train_s": seconds, "train_cpu_s": cpu_seconds, "parameters": n_params})
            print(f"  {key} {name}: rel L2 {err:.4f} after {len(log) - 1} epochs, {seconds:.0f} s "
                  f"({cpu_seconds:.0f} s CPU)", file=sys.stderr, flush=True)
        copy = None if run_dir is None else copy_input_error(run_dir)  # any run of this data will do
        if copy is not None:
            rows.append({"data": key, "model": "copy the last input frame (no model)", "test_rel_l2": copy,
                         "epochs": None, "train_s": None, "train_cpu_s": None, "parameters": 0})
    budget = f"{args.epochs} epochs" + (f" or {args.minutes} min" if args.minutes else "")
    print("\n".join(machine_lines(args.device, [("budget", f"{budget} per run, Adam lr 1e-3 with cosine decay, "
                                                           f"batch 20, SMALL model arguments")])))
    print()
    print(table(["data", "model", "parameters", "epochs", "train wall [s]", "train CPU [s]", "test rel. L2"],
                [[r["data"], r["model"], f"{r['parameters']:,}", r["epochs"] or "", _seconds(r["train_s"]),
                  _seconds(r["train_cpu_s"]), f"{r['test_rel_l2']:.4f}"] for r in rows]))
    return rows


def _test_split(run):
    """The test split read as the run ``run`` was trained: same levels, task and parameter channels."""
    from pde_lab.datasets.reader import open_split
    from pde_lab.pdes.base import Task

    task = run.config.task
    task = Task(**task) if isinstance(task, dict) else task
    return open_split(run.config.data, "test", levels=run.config.levels, task=task,
                      parameters=run.config.parameters or ())


def test_error(run_dir: Path, device: str) -> float:
    """Mean over the test samples (one-step windows for time-dependent tasks) of the per-sample
    relative L2 error of the best checkpoint, as ``pde_lab.evaluation.metrics.relative_l2``."""
    import torch

    from pde_lab.evaluation.metrics import relative_l2
    from pde_lab.training import load_run

    run = load_run(run_dir, device=device)
    errors = []
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(_test_split(run), batch_size=32):
            errors.append(relative_l2(run.predict(x), y))
    return float(torch.cat(errors).mean())


def copy_input_error(run_dir: Path) -> float | None:
    """The same error for copying the last input frame's values of the target channels to every output
    frame (persistence), the baseline a time-stepping model must beat. ``None`` unless the run's task
    is ``window`` (outputs follow the inputs) and every target channel is also an input channel."""
    from pde_lab.evaluation.rollout import persistence_channels, persistence_metrics
    from pde_lab.training import load_run

    ds = _test_split(load_run(run_dir))
    if persistence_channels(ds) is None:
        return None
    return float(persistence_metrics(ds, ["relative_l2"])["relative_l2"].mean())


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _parameters(run_dir: Path) -> int:
    from pde_lab.training import load_run

    return sum(p.numel() for p in load_run(run_dir).model.parameters())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["cost", "data", "train", "_one"])
    p.add_argument("name", nargs="?")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="processes generating the data (one thread each)")
    p.add_argument("--data", default="bench_data/model_table")
    p.add_argument("--runs", default="bench_runs/model_table")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--minutes", type=float, default=None, help="optional wall-time limit per training run")
    p.add_argument("--only", nargs="*", choices=list(DATASETS), help="dataset keys to use (default: all)")
    p.add_argument("--models", nargs="*", help="models to train (default: all)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    if a.reps < 1 or a.epochs < 1 or a.size < 8 or a.batch < 1 or a.workers < 1:
        p.error(f"--reps, --epochs, --batch and --workers must be >= 1 and --size >= 8, got {a.reps}, {a.epochs}, "
                f"{a.batch}, {a.workers}, {a.size}")
    pin_threads(a.threads)
    a.device = checked_device(p, a.device)
    unknown = [m for m in a.models or [] if m not in operators()]
    if unknown:  # else they were skipped silently and the table came out empty
        p.error(f"--models: unknown {', '.join(unknown)}; allowed: {', '.join(operators())}")
    if a.what == "_one":
        print(json.dumps(measure_one(a.name, a.size, a.batch, a.reps, a.device)))
        return
    rows = {"cost": cost, "data": make_data, "train": train_all}[a.what](a)
    if a.json and rows is not None:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
