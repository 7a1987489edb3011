"""FNO training-step time and accuracy: pde_lab's FNO against neuraloperator 2.x's FNO.

Both models are built with the same architecture (see ``build_neuralop``): width, kept Fourier modes,
number of Fourier layers, a linear lifting, a projection through one hidden layer of 128 channels,
a linear skip per layer, GELU between layers, grid coordinates appended to the input. The parameter
counts then agree exactly (complex weights counted as two real numbers).

Sub-commands::

    python benchmarks/fno_step.py step      [--dims 1 2] [--device cpu|cuda] [--threads 1]
    python benchmarks/fno_step.py profile   [--dims 1 2] [--device cpu|cuda]
    python benchmarks/fno_step.py accuracy  --data DIR [--epochs 500] [--seeds 0 1]

``step``: one training step = forward, relative-L2 loss, backward, Adam update, on random data of the
benchmark's shape (1D Burgers: batch 20, s = 256, width 64, 16 modes; 2D Darcy: batch 20, s = 85,
width 32, 12 modes; 4 Fourier layers). After a warm-up the two models are timed in alternating
blocks (so a drift of the machine's speed hits both), every step timed alone; the table gives
medians and interquartile ranges. ``--only pde_lab|neuralop`` times one model (for whole-process
comparisons).

``profile``: torch.profiler tables of one model's training steps (self CPU/CUDA time per operator).

``accuracy``: trains both models with the same loop (``pde_lab.training.fit``: same data order,
normalisation, relative-L2 loss, Adam, step schedule) on a dataset written by ``pde-lab generate``
(splits train/valid/test) and reports the test relative L2 error of the final weights.

Needs neuraloperator (``pip install neuraloperator``; see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import checked_device, iqr, machine_lines, median, pin_threads, sync, table, time_calls  # noqa: E402

# The benchmark problems (FNO paper, Li et al. 2021).
PROBLEMS = {
    1: dict(name="1D Burgers", width=64, modes=16, n_layers=4, proj_width=128, batch=20, s=256),
    2: dict(name="2D Darcy", width=32, modes=12, n_layers=4, proj_width=128, batch=20, s=85),
}


# ---- models ----------------------------------------------------------------------------------------
def build_pde_lab(dims: int, cfg: dict, in_channels: int = 1, out_channels: int = 1):
    from pde_lab.operators.fno import FNO

    return FNO(in_channels, out_channels, dims, width=cfg["width"], modes=cfg["modes"], n_layers=cfg["n_layers"],
               proj_width=cfg["proj_width"], grid=True)


def neuralop_modes(dims: int, modes: int) -> tuple[int, ...]:
    """neuraloperator's ``n_modes`` keeping the same Fourier coefficients as pde_lab's ``modes``.

    neuraloperator counts modes per axis over both signs: along a non-last axis ``n_modes = 2m`` keeps
    wave numbers ``-m .. m-1`` (pde_lab's ``0..m-1`` and ``-m..-1``); along the last (real-FFT) axis it
    keeps ``n_modes // 2 + 1`` non-negative wave numbers, so ``n_modes = 2m - 2`` keeps ``0 .. m-1``.
    """
    return tuple([2 * modes] * (dims - 1) + [2 * modes - 2])


def build_neuralop(dims: int, cfg: dict, in_channels: int = 1, out_channels: int = 1):
    """neuraloperator's FNO configured as the paper's (and pde_lab's) architecture.

    * ``lifting_channel_ratio=0``: a single linear lifting (the default 2 makes it a 2-layer MLP);
    * ``projection_channel_ratio = proj_width / width``: hidden projection width 128;
    * ``use_channel_mlp=False``: no channel MLP after each spectral convolution (the default adds one,
      about +25 % parameters in 1D);
    * ``fno_skip="linear"``: a pointwise linear skip per layer (neuraloperator's has no bias, but its
      spectral convolution has one: the same count as pde_lab's skip bias).
    """
    from neuralop.models import FNO as NeuralopFNO

    ratio = cfg["proj_width"] / cfg["width"]
    return NeuralopFNO(n_modes=neuralop_modes(dims, cfg["modes"]), in_channels=in_channels, out_channels=out_channels,
                       hidden_channels=cfg["width"], n_layers=cfg["n_layers"], lifting_channel_ratio=0,
                       projection_channel_ratio=ratio, use_channel_mlp=False, fno_skip="linear",
                       positional_embedding="grid", domain_padding=None)


BUILDERS = {"pde_lab": build_pde_lab, "neuralop": build_neuralop}


def n_real_parameters(model) -> int:
    """Trainable real scalars: a complex parameter counts twice."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


def relative_l2_loss(pred, target):
    """The FNO paper's loss (as in ``pde_lab.training``): mean over the batch of ||pred-y|| / ||y||."""
    diff = (pred - target).flatten(1).norm(dim=1)
    return (diff / target.flatten(1).norm(dim=1)).mean()


def make_step(model, dims: int, cfg: dict, device: str, seed: int = 0):
    """A closure doing one training step on fixed random data of the problem's shape."""
    import torch

    g = torch.Generator().manual_seed(seed)
    shape = (cfg["batch"], 1, *([cfg["s"]] * dims))
    x = torch.randn(shape, generator=g).to(device)
    y = torch.randn(shape, generator=g).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)

    def step():
        loss = relative_l2_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


# ---- sub-commands ----------------------------------------------------------------------------------
def cmd_step(a) -> None:
    import torch

    names = [a.only] if a.only else ["pde_lab", "neuralop"]
    import neuralop  # noqa: F401  (imported even with --only pde_lab: whole-process timings pay it equally)

    rows, ratios = [], []
    for dims in a.dims:
        cfg = PROBLEMS[dims]
        torch.manual_seed(0)
        models = {n: BUILDERS[n](dims, cfg).to(a.device) for n in names}
        steps = {n: make_step(m, dims, cfg, a.device) for n, m in models.items()}
        for n in names:
            time_calls(steps[n], a.warmup, a.device)
        times = {n: [] for n in names}
        cpu = {n: [] for n in names}
        for r in range(a.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for n in order:
                times[n] += time_calls(steps[n], a.steps, a.device, cpu[n])
        med = {n: median(times[n]) for n in names}
        med_cpu = {n: median(cpu[n]) for n in names}
        for n in names:
            lo, hi = iqr(times[n])
            rows.append([cfg["name"], n, f"{n_real_parameters(models[n]):,}", f"{1e3 * med[n]:.1f}",
                         f"{1e3 * lo:.1f} – {1e3 * hi:.1f}", f"{1e3 * med_cpu[n]:.1f}", len(times[n])])
        if len(names) == 2:
            ratios.append([cfg["name"], f"{med['neuralop'] / med['pde_lab']:.2f}x",
                           f"{med_cpu['neuralop'] / med_cpu['pde_lab']:.2f}x"])
    problems = "; ".join(f"{PROBLEMS[d]['name']}: batch {PROBLEMS[d]['batch']}, s={PROBLEMS[d]['s']}, width "
                         f"{PROBLEMS[d]['width']}, {PROBLEMS[d]['modes']} modes, {PROBLEMS[d]['n_layers']} layers, "
                         f"projection {PROBLEMS[d]['proj_width']}" for d in a.dims)
    print("\n".join(machine_lines(a.device, [("neuraloperator", _neuralop_version()), ("problems", problems),
                                             ("timing", f"{a.warmup} warm-up steps, then {a.rounds} alternating "
                                                        f"blocks of {a.steps} steps per model")])))
    print()
    print(table(["problem", "model", "parameters (real)", "median step, wall [ms]", "wall IQR [ms]",
                 "median step, CPU [ms]", "steps timed"], rows))
    if ratios:
        print()
        print(table(["problem", "neuraloperator / pde_lab, wall", "neuraloperator / pde_lab, CPU"], ratios))


def cmd_profile(a) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device.startswith("cuda") else [])
    key = "self_device_time_total" if a.device.startswith("cuda") else "self_cpu_time_total"
    print("\n".join(machine_lines(a.device, [("neuraloperator", _neuralop_version())])))
    for dims in a.dims:
        cfg = PROBLEMS[dims]
        for n in ([a.only] if a.only else ["pde_lab", "neuralop"]):
            torch.manual_seed(0)
            step = make_step(BUILDERS[n](dims, cfg).to(a.device), dims, cfg, a.device)
            time_calls(step, a.warmup, a.device)
            with profile(activities=acts) as prof:
                for _ in range(a.steps):
                    step()
                sync(a.device)
            print(f"\n## {cfg['name']}, {n}: {a.steps} training steps")
            print(prof.key_averages().table(sort_by=key, row_limit=a.rows))


class _InMemory:
    """A split of a pde_lab dataset held in memory, with the reader's statistics and channel names."""

    def __init__(self, ds):
        import torch

        pairs = [ds[i] for i in range(len(ds))]
        self.x = torch.stack([p[0] for p in pairs])
        self.y = torch.stack([p[1] for p in pairs])
        self._stats = ds.stats()
        for attr in ("input_channels", "target_channels", "spatial_shape", "pde_name", "task"):
            setattr(self, attr, getattr(ds, attr))

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def stats(self):
        return self._stats


def _register_neuralop_wrapper():
    """Register neuraloperator's FNO as a pde_lab model, so ``pde_lab.training.fit`` can train it."""
    from pde_lab.operators.base import MODELS, Operator, register_model

    if "neuralop_fno" in MODELS:
        return MODELS.get("neuralop_fno")

    class NeuralopWrapper(Operator):
        def __init__(self, in_channels: int = 1, out_channels: int = 1, n_dims: int = 1):
            super().__init__()
            self.config = dict(in_channels=in_channels, out_channels=out_channels, n_dims=n_dims)
            self.net = build_neuralop(n_dims, PROBLEMS[n_dims], in_channels, out_channels)

        def forward(self, x):
            return self.net(x)

    return register_model("neuralop_fno")(NeuralopWrapper)


def cmd_accuracy(a) -> None:
    import tempfile

    import torch
    from pde_lab.datasets.reader import open_split
    from pde_lab.operators.base import Operator
    from pde_lab.operators.fno import FNO
    from pde_lab.training import TrainConfig
    from pde_lab.training.checkpoint import Normalizer
    from pde_lab.training.trainer import evaluate_loss, fit

    wrapper = _register_neuralop_wrapper()
    data = {s: _InMemory(open_split(a.data, s)) for s in ("train", "valid", "test")}
    x0 = data["train"].x
    dims = x0.dim() - 3  # (N, T_in, *space, C)
    cfg = PROBLEMS[dims]
    counts = {s: len(d) for s, d in data.items()}
    step_size = max(1, a.epochs // 5)
    rows = []
    for seed in a.seeds:
        for name in ["pde_lab", "neuralop"]:
            config = TrainConfig(epochs=a.epochs, batch_size=cfg["batch"], lr=1e-3, weight_decay=1e-4,
                                 scheduler="step", step_size=step_size, gamma=0.5, seed=seed, device=a.device,
                                 progress=False)
            torch.manual_seed(seed)
            model: Operator = (FNO(1, 1, dims, width=cfg["width"], modes=cfg["modes"], n_layers=cfg["n_layers"],
                                   proj_width=cfg["proj_width"]) if name == "pde_lab" else wrapper(1, 1, dims))
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                run = fit(model, data["train"], data["valid"], config, Path(tmp) / "run")
                seconds = time.perf_counter() - t0
                import csv

                log = list(csv.DictReader(open(run / "log.csv")))
            normalizer = Normalizer.from_stats(data["train"].stats()).to(torch.device(a.device))
            test = evaluate_loss(model, data["test"], normalizer, 1, cfg["batch"], torch.device(a.device))
            train_final = float(log[-1]["train_loss"])
            epoch_s = median([float(r["seconds"]) for r in log])
            rows.append([str(seed), name, f"{n_real_parameters(model):,}", f"{train_final:.4f}",
                         f"{float(log[-1]['valid_loss']):.4f}", f"{test:.4f}", f"{epoch_s:.2f}", f"{seconds:.0f}"])
            print(f"seed {seed} {name}: " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    print("\n".join(machine_lines(a.device, [
        ("neuraloperator", _neuralop_version()),
        ("data", f"{a.data}: {counts['train']} train / {counts['valid']} valid / {counts['test']} test, "
                 f"input shape {tuple(x0.shape[1:])}"),
        ("training", f"pde_lab.training.fit, {a.epochs} epochs, batch {cfg['batch']}, Adam lr 1e-3, "
                     f"weight decay 1e-4, lr x0.5 every {step_size} epochs, relative-L2 loss, normalised "
                     f"inputs/targets; test error of the final weights")])))
    print()
    print(table(["seed", "model", "parameters", "final train rel. L2", "final valid rel. L2", "test rel. L2",
                 "median epoch [s]", "total [s]"], rows))


def _neuralop_version() -> str:
    try:
        from importlib.metadata import version

        return version("neuraloperator")
    except Exception:  # noqa: BLE001
        return "not installed"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("step", "profile", "accuracy"):
        s = sub.add_parser(name)
        s.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
        s.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
        if name != "accuracy":
            s.add_argument("--dims", type=int, nargs="+", default=[1, 2], choices=[1, 2])
            s.add_argument("--only", choices=list(BUILDERS), help="time or profile one model only")
            s.add_argument("--warmup", type=int, default=10, help="untimed steps per model first")
        if name == "step":
            s.add_argument("--steps", type=int, default=10, help="steps per block")
            s.add_argument("--rounds", type=int, default=6, help="alternating blocks per model")
        if name == "profile":
            s.add_argument("--steps", type=int, default=10)
            s.add_argument("--rows", type=int, default=25)
        if name == "accuracy":
            s.add_argument("--data", required=True, help="dataset directory with train/valid/test splits")
            s.add_argument("--epochs", type=int, default=500)
            s.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = p.parse_args(argv)
    counts = {k: getattr(a, k) for k in ("steps", "rounds", "warmup", "epochs") if hasattr(a, k)}
    if any(v < (0 if k == "warmup" else 1) for k, v in counts.items()):
        p.error(f"--steps, --rounds and --epochs must be >= 1 and --warmup >= 0, got {counts}")
    pin_threads(a.threads)
    a.device = checked_device(p, a.device)
    {"step": cmd_step, "profile": cmd_profile, "accuracy": cmd_accuracy}[a.cmd](a)


if __name__ == "__main__":
    main()
