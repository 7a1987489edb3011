"""FNO-2D on 2D Navier–Stokes at ν = 1e-3 (Li et al. 2021, Table 3), trained the paper's way.

One command generates the data (``navier_stokes_2d`` level ``fno_nu1e-3``: the paper's forcing,
initial-vorticity distribution, ν and T = 50, solved at 256² and stored at 64²), trains the paper's
FNO-2D and reports the paper's test metric:

    python experiments/fno_navier_stokes/run.py --device cuda            # 1000 train / 200 test, 500 epochs

Protocol (the paper's ``fourier_2d_time.py``): the model maps the 10 frames ``t = 1 … 10`` to the
next one; training rolls it out for the 40 frames ``t = 11 … 50``, feeding each prediction back,
sums the per-sample relative L2 errors of every step over the batch and the steps, and
back-propagates through the whole rollout. The test error is the relative L2 error of the whole
40-frame rollout per trajectory, ``‖û − u‖ / ‖u‖`` over space and time, averaged over the test
trajectories. FNO-2D: 4 Fourier layers, width 20, 12 modes, grid channels, projection 128; Adam
lr 1e-3, weight decay 1e-4, halved every 100 epochs, batch 20, 500 epochs.

Why not ``pde-lab train``: the generic trainer learns the window task one step at a time (teacher
forcing, optionally pushforward) and reads each window from HDF5; the paper back-propagates
through 40-step rollouts, and this script holds the trajectories on the device.

``--cuda-graph`` replays one captured training step instead of launching its kernels one by one
(:class:`TrainStep`); ``--time-limit`` with ``--fit-schedule`` fits the schedule to a time budget.

Outputs in ``--out``: ``data/`` (the dataset, unless ``--data`` names one), ``log.csv`` (per epoch),
``model.pt`` (``pde_lab.operators.load_model`` rebuilds it), ``checkpoint.pt`` (what ``--resume`` continues
from), ``results.json`` and ``rollout.png``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from pde_lab.datasets import GenerateConfig, generate
from pde_lab.datasets.reader import list_files
from pde_lab.datasets.schema import FIELD_GROUPS
from pde_lab.errors import UserError, check_choice
from pde_lab.pdes import get_pde
from pde_lab.training.config import resolve_device
from pde_lab.operators import build_model, model_payload, save_model
from pde_lab.operators.fno import TRANSFORMS
from pde_lab.operators.base import atomic_torch_save
from pde_lab.training.trainer import relative_l2

#: Li et al. (2021), Table 3, ν = 1e-3, T = 50, N = 1000: FNO-2D's relative L2 test error.
PAPER_FNO2D = 0.0128


def load_vorticity(data: Path, split: str, level: str, limit: int | None) -> torch.Tensor:
    """All stored vorticity frames of one split: ``(N, T + 1, n, n)`` float32, frame 0 at ``t = 0``."""
    files = list_files(data, split, [level])
    with h5py.File(files[0], "r") as f:
        d = f[f"{FIELD_GROUPS[0]}/vorticity"]
        if limit is not None and limit > d.shape[0]:
            raise UserError(f"{files[0]} holds {d.shape[0]} {split} trajectories, asked for {limit}")
        return torch.from_numpy(np.asarray(d[:limit], dtype=np.float32))


def per_step_l2(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of every sample and frame: ``(B, S, n, n)`` pairs -> ``(B, S)``."""
    return relative_l2(pred.flatten(0, 1), truth.flatten(0, 1)).reshape(pred.shape[:2])


def rollout(model: torch.nn.Module, x: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Feed the model its own predictions: ``(B, T_in, n, n)`` -> ``(B, n_steps, n, n)``."""
    preds = []
    for _ in range(n_steps):
        y = model(x)
        preds.append(y)
        x = torch.cat([x[:, 1:], y], dim=1)
    return torch.cat(preds, dim=1)


@torch.no_grad()
def test_errors(model: torch.nn.Module, frames: torch.Tensor, t_in: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rollout errors on ``frames`` ``(N, T + 1, n, n)``: whole-rollout ``(N,)`` and per-step ``(N, steps)``."""
    model.eval()
    full, per_step = [], []
    for i in range(0, len(frames), batch):
        u = frames[i:i + batch]
        truth = u[:, 1 + t_in:]
        pred = rollout(model, u[:, 1:1 + t_in], truth.shape[1])
        full.append(relative_l2(pred, truth))
        per_step.append(per_step_l2(pred, truth))
    model.train()
    return torch.cat(full), torch.cat(per_step)


class TrainStep:
    """One optimizer step of the paper's training on a batch ``u`` ``(B, T + 1, n, n)`` of trajectories.

    Rolls the model out from frames ``1 … t_in`` over the next ``n_steps``, takes the paper's loss
    (per-sample relative L2 error of every step, summed over the samples and the steps), back-propagates
    through the whole rollout and steps the optimizer. Returns the loss and the summed whole-rollout
    relative errors of the batch, as 0-d tensors on the device (no synchronisation).

    ``cuda_graph``: the step is a few hundred small kernels per rolled-out frame, so on a GPU its time
    goes to launching them. With ``cuda_graph`` the first ``warmup`` batches train eagerly on a side
    stream (as CUDA graph capture requires), then one whole step (rollout, backward, optimizer) is
    captured and every later batch replays it from a fixed input buffer. The optimizer must be
    ``capturable`` with a tensor learning rate; the updates are the same as eager ones.
    """

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, t_in: int, n_steps: int, batch: int,
                 example: torch.Tensor, cuda_graph: bool = False, warmup: int = 3):
        self.model, self.opt, self.t_in, self.n_steps = model, opt, t_in, n_steps
        self.cuda_graph, self.warmup = cuda_graph, warmup
        self.graph = None
        if cuda_graph:
            self.static_u = torch.zeros_like(example[:batch])
            self.stream = torch.cuda.Stream(example.device)

    def _step(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        truth = u[:, 1 + self.t_in:]
        pred = rollout(self.model, u[:, 1:1 + self.t_in], self.n_steps)
        loss = per_step_l2(pred, truth).sum()
        loss.backward()
        self.opt.step()
        return loss.detach(), relative_l2(pred.detach(), truth).sum()

    def _eager(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.opt.zero_grad(set_to_none=True)
        return self._step(u)

    def __call__(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cuda_graph:
            return self._eager(u)
        if self.graph is None and self.warmup > 0:
            self.warmup -= 1
            self.stream.wait_stream(torch.cuda.current_stream(u.device))  # u was made on the current stream
            with torch.cuda.stream(self.stream):
                out = self._eager(u)
            if self.warmup == 0:
                torch.cuda.current_stream(u.device).wait_stream(self.stream)
                self._capture()
            return out
        if self.graph is None:
            self._capture()
        self.static_u.copy_(u)
        self.graph.replay()
        return self.static_loss.clone(), self.static_full.clone()

    def _capture(self) -> None:
        torch.cuda.synchronize(self.static_u.device)
        # gradients set to None now are allocated inside the graph, so each replay writes them afresh
        self.opt.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss, self.static_full = self._step(self.static_u)


PDE = "navier_stokes_2d"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="experiments_out/fno_navier_stokes", help="output directory")
    p.add_argument("--data", default=None, help="an existing dataset directory (skips generation)")
    p.add_argument("--level", default="fno_nu1e-3", help="navier_stokes_2d level")
    p.add_argument("--resolution", type=int, default=64, help="stored grid points per axis")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--gen-batch", type=int, default=200, help="trajectories solved together")
    p.add_argument("--solver-factor", type=int, default=4,
                   help="solver grid per stored grid and axis: 4 is the paper's 256² for 64²; 2 (128²) is 7x cheaper "
                        "and gives the stored frames to a relative 6e-10 at nu = 1e-3 (README)")
    p.add_argument("--t-in", type=int, default=10, help="input frames")
    p.add_argument("--width", type=int, default=20)
    p.add_argument("--modes", type=int, default=12)
    p.add_argument("--transform", default="fft", choices=TRANSFORMS,
                   help="how the spectral layers transform: fft, or dft (products with cached matrices: the same "
                        "coefficients, about 7%% faster per step under --cuda-graph on an H100)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--step-size", type=int, default=100, help="halve the learning rate every this many epochs")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--time-limit", type=float, default=None, help="minutes of training; stops before an epoch that would overrun")
    p.add_argument("--fit-schedule", action="store_true",
                   help="with --time-limit: after the second epoch, shrink --epochs to what fits the limit (at least 2) and "
                        "--step-size in proportion (at least 1), so the run still ends after the paper's five halvings "
                        "when five or more epochs fit")
    p.add_argument("--eval-every", type=int, default=25, help="epochs between test evaluations")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights and the sample order (the data always use dataset seed 0, so every "
                        "run trains and tests on the same trajectories)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="capture one training step as a CUDA graph and replay it (GPU; removes launch overhead)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.pt (model, optimizer, schedule and sample "
                        "order), so a long schedule can be trained over several calls")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.resume and a.fit_schedule:
        p.error("--fit-schedule fits one call's schedule and cannot be combined with --resume")
    if a.fit_schedule and a.time_limit is None:
        p.error("--fit-schedule fits the schedule to --time-limit; give one")
    if a.batch_size > a.n_train:
        p.error(f"--batch-size {a.batch_size} is larger than --n-train {a.n_train}: no batch would be trained")
    if a.solver_factor < 2:
        p.error(f"--solver-factor must be >= 2, got {a.solver_factor}")
    for name in ("resolution", "n_train", "n_test", "gen_batch", "t_in", "width", "modes", "epochs", "step_size",
                 "batch_size", "eval_every"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    # Checked here, not by Adam after the data are generated (a traceback), nor accepted silently
    # (--lr 0 trains nothing; a limit <= 0 stops after one epoch).
    if not a.lr > 0 or not np.isfinite(a.lr):
        p.error(f"--lr must be a finite positive number, got {a.lr}")
    if not a.weight_decay >= 0 or not np.isfinite(a.weight_decay):
        p.error(f"--weight-decay must be a finite number >= 0, got {a.weight_decay}")
    if a.time_limit is not None and not (a.time_limit > 0 and np.isfinite(a.time_limit)):
        p.error(f"--time-limit must be a finite positive number of minutes, got {a.time_limit}")
    return a


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    dev = resolve_device(a.device)
    if a.cuda_graph and dev.type != "cuda":
        raise UserError(f"--cuda-graph needs a CUDA device, got --device {a.device}")
    check_choice(f"{PDE} level", a.level, get_pde(PDE).levels)
    out = Path(a.out)
    # Everything above and the checkpoint are checked before --out is made: a refused call leaves nothing.
    state = _load_checkpoint(out / CHECKPOINT, a) if a.resume else None  # refused before any data work
    gen_seconds = None
    if a.data is None and not (a.resume and (out / "data").is_dir()):
        data = out / "data"
        t0 = time.perf_counter()
        generate(GenerateConfig(pde=PDE, out=str(data), levels=[a.level], n_train=a.n_train, n_valid=0,
                                n_test=a.n_test, resolution=a.resolution, seed=0, batch_size=a.gen_batch,
                                device=a.device, overwrite=True, progress=not a.quiet,
                                solver_options={"solver_factor": a.solver_factor}))
        gen_seconds = time.perf_counter() - t0
    else:
        data = Path(a.data) if a.data is not None else out / "data"
    train = load_vorticity(data, "train", a.level, a.n_train).to(dev)
    test = load_vorticity(data, "test", a.level, a.n_test).to(dev)
    n_steps = train.shape[1] - 1 - a.t_in
    if n_steps < 1:
        raise UserError(f"trajectories hold {train.shape[1]} frames: too few for {a.t_in} input frames after t = 0")

    torch.manual_seed(a.seed)
    model = build_model("fno", in_channels=a.t_in, out_channels=1, n_dims=2, width=a.width, modes=a.modes,
                        n_layers=4, proj_width=128, grid=True, transform=a.transform).to(dev)
    # a graph replays the learning rate it was captured with unless that is a tensor changed in place
    lr = torch.tensor(a.lr, device=dev) if a.cuda_graph else a.lr
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=a.weight_decay, capturable=a.cuda_graph)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=a.step_size, gamma=0.5)
    order_gen = torch.Generator().manual_seed(a.seed)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.csv"
    fields = ["epoch", "lr", "train_l2_step", "train_l2_full", "test_l2_full", "seconds"]
    start, earlier_seconds = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"]["state_dict"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # a graph needs the tensor learning rate on the device, eager a float
            group["lr"] = torch.tensor(float(group["lr"]), device=dev) if a.cuda_graph else float(group["lr"])
        sched.load_state_dict(state["scheduler"])
        order_gen.set_state(state["order_gen"])
        start, earlier_seconds = state["epoch"], state["train_seconds"]
        _truncate_log(log_path, fields, start)
    else:
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerow(fields)
    step = TrainStep(model, opt, a.t_in, n_steps, a.batch_size, train, cuda_graph=a.cuda_graph)
    train_seconds, epoch, last_test = 0.0, start, None  # train_seconds: this call's
    budget = None if a.time_limit is None else 60.0 * a.time_limit
    for epoch in range(start + 1, a.epochs + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        epoch_lr = float(opt.param_groups[0]["lr"])  # the rate this epoch trains with (sched.step() below halves it)
        t0 = time.perf_counter()
        perm = torch.randperm(len(train), generator=order_gen).to(dev)
        step_sum, full_sum = torch.zeros((), device=dev), torch.zeros((), device=dev)
        for i in range(0, len(train) - a.batch_size + 1, a.batch_size):
            loss, full = step(train[perm[i:i + a.batch_size]])
            step_sum += loss
            full_sum += full
        step_sum, full_sum = float(step_sum), float(full_sum)
        sched.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        done = epoch - start  # epochs of this call
        if (epoch == min(2, a.epochs) and a.fit_schedule and budget is not None
                and train_seconds + seconds * (a.epochs - epoch) > budget):
            # Timed on the second epoch: the first also builds the FFT plans and, with --cuda-graph,
            # trains its warm-up batches eagerly and captures the graph, so it would undercount.
            fitted = max(epoch, epoch + int((budget - train_seconds) / seconds))
            sched.step_size = max(1, round(a.step_size * fitted / a.epochs))
            print(f"schedule fitted to {a.time_limit} min: {fitted} epochs (of {a.epochs}), "
                  f"learning rate halved every {sched.step_size}", flush=True)
            a.epochs, a.step_size = fitted, sched.step_size
            # StepLR halves only at multiples of the new interval from here on: apply the halvings
            # the first epochs would have had under it (an interval of 1 or 2 has some)
            refit_lr = a.lr * 0.5 ** (epoch // sched.step_size)
            for group in opt.param_groups:
                if torch.is_tensor(group["lr"]):  # the CUDA graph reads this tensor: change it in place
                    group["lr"].fill_(refit_lr)
                else:
                    group["lr"] = refit_lr
        n_seen = (len(train) // a.batch_size) * a.batch_size
        row = {"epoch": epoch, "lr": epoch_lr, "train_l2_step": step_sum / n_seen / n_steps,
               "train_l2_full": full_sum / n_seen, "test_l2_full": "", "seconds": seconds}
        timed = epoch >= min(2, a.epochs) or not a.fit_schedule  # --fit-schedule times the second epoch
        stop = epoch == a.epochs or (timed and budget is not None and train_seconds + train_seconds / done > budget)
        if epoch % a.eval_every == 0 or stop:
            last_test = float(test_errors(model, test, a.t_in, 50)[0].mean())
            row["test_l2_full"] = last_test
            save_model(model, out / "model.pt")
        with open(log_path, "a", newline="") as fh:
            csv.writer(fh).writerow([row[k] for k in fields])
        atomic_torch_save({"model": model_payload(model),
                           "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "order_gen": order_gen.get_state(), "epoch": epoch,
                           "train_seconds": earlier_seconds + train_seconds,
                           "args": {k: getattr(a, k) for k in RESUME_KEYS}}, out / CHECKPOINT)
        if not a.quiet:
            print(f"epoch {epoch:4d}  {seconds:6.2f} s  train step {row['train_l2_step']:.4f}  "
                  f"full {row['train_l2_full']:.4f}" + (f"  test full {last_test:.4f}" if row["test_l2_full"] != "" else ""),
                  flush=True)
        if stop:
            break

    full, per_step = test_errors(model, test, a.t_in, 50)
    per_step = per_step.double().cpu()
    times = [float(1 + a.t_in + s) for s in range(n_steps)]
    config = vars(a).copy()
    if a.data is not None:  # the generation settings were not used: the data were made elsewhere
        config.update(solver_factor=None, gen_batch=None)
    results = {
        "config": config, "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "n_train": len(train), "n_test": len(test), "epochs_done": epoch,
        "train_seconds": earlier_seconds + train_seconds, "resumed_from_epoch": start,
        "generation_seconds": gen_seconds,
        "test_l2_full": {"mean": float(full.mean()), "median": float(full.median()), "max": float(full.max())},
        "paper_fno2d": PAPER_FNO2D,
        # in the shape of `pde-lab evaluate`'s metrics, so pde_lab.plotting.plot_rollout_error draws it
        "levels": {a.level: {"error_vs_time": {
            "kind": "rollout", "times": times, "rel_l2_mean": per_step.mean(0).tolist(),
            "rel_l2_median": per_step.median(0).values.tolist(), "rel_l2_max": per_step.max(0).values.tolist()}}},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    save_model(model, out / "model.pt")
    _plot(results, model, test, a.t_in, n_steps, out / "rollout.png")
    print(f"test relative L2 of the {n_steps}-step rollout: mean {results['test_l2_full']['mean']:.4f} "
          f"(paper FNO-2D {PAPER_FNO2D}); {epoch} epochs, {(earlier_seconds + train_seconds) / 60:.1f} min training")
    return results


#: The checkpoint in ``--out`` that ``--resume`` continues from (written after every epoch).
CHECKPOINT = "checkpoint.pt"
#: Arguments a resumed call must repeat: they define the model, the data and the schedule.
RESUME_KEYS = ("level", "resolution", "n_train", "t_in", "width", "modes", "transform", "epochs", "step_size",
               "batch_size", "lr", "weight_decay", "seed")
#: What a checkpoint written before a key existed was trained with.
RESUME_DEFAULTS = {"transform": "fft"}


def _load_checkpoint(path: Path, a: argparse.Namespace) -> dict:
    """The checkpoint at ``path``, refused unless it belongs to the same model, data and schedule as ``a``."""
    if not path.is_file():
        raise UserError(f"cannot resume: {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = {**RESUME_DEFAULTS, **state["args"]}
    differ = [f"--{k.replace('_', '-')} {saved[k]} (now {getattr(a, k)})"
              for k in RESUME_KEYS if saved[k] != getattr(a, k)]
    if differ:
        raise UserError(f"cannot resume {str(path)!r}: it was trained with " + ", ".join(differ))
    if state["epoch"] >= a.epochs:
        raise UserError(f"cannot resume {str(path)!r}: all {a.epochs} epochs are done")
    return state


def _truncate_log(path: Path, fields: list[str], epoch: int) -> None:
    """Keep the header and the rows of epochs ``<= epoch`` (a call may have stopped between log and checkpoint)."""
    rows = list(csv.DictReader(open(path))) if path.is_file() else []
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(fields)
        w.writerows([r[k] for k in fields] for r in rows if int(r["epoch"]) <= epoch)


def _plot(results: dict, model: torch.nn.Module, test: torch.Tensor, t_in: int, n_steps: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pde_lab.plotting import plot_error_field, plot_rollout_error

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    plot_rollout_error(results, ax=axes[0], title="test rollout error")
    with torch.no_grad():
        model.eval()
        pred = rollout(model, test[:1, 1:1 + t_in], n_steps)[0].cpu()
    plot_error_field(test[0, 1 + t_in:].cpu()[..., None], pred[..., None], ax=list(axes[1:]),
                     title=f"test sample 0, t = {1 + t_in + n_steps - 1}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        main()
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
