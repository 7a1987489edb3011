"""The supervised training loop for neural operators, and the run directory it writes.

``train(config)`` opens the dataset, builds the model and calls ``fit``; ``fit`` is the loop itself
and takes any datasets that follow the reader's contract (``ds[i] -> (x, y)`` with
``x: (T_in, *space, C_in)`` and ``y: (T_out, *space, C_out)`` float32 tensors; optional attributes
``input_channels``, ``target_channels``, ``spatial_shape``, ``n_dims``, ``pde_name``, ``task``,
``points`` and a ``stats()`` method), so tests and scripts can train on in-memory data. A dataset
with ``points`` (``(N, d)``, on a mesh, where ``space = (N,)``) is learnt by a point model, which the
loop calls as ``model(x, points)``.

One step: normalise the physical input per channel with the training statistics, flatten
``(B, T_in, *space, C_in)`` to ``(B, T_in*C_in, *space)`` (see :func:`~.checkpoint.to_model_layout`),
run the model, reshape its ``(B, T_out*C_out, *space)`` output back and decode it to physical units;
the loss is the mean over the batch of the per-sample relative L2 error in physical units (the FNO
paper's loss), so it is comparable across normalisations and with published numbers.

Reproducibility: the model is initialised after ``torch.manual_seed(seed)``; the sample order of
epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``, so it does not depend on
what ran before; checkpoints carry the optimizer, scheduler and RNG states. On CPU a run stopped
after any epoch and resumed gives bitwise the same weights as an uninterrupted run.

Run directory::

    config.yaml              the resolved config (model arguments filled in)
    data.json                the data path, levels, and the sha256 of every data file read
    log.csv                  epoch, train_loss, valid_loss, lr, seconds (one row per epoch)
    checkpoints/last.pt      after every epoch
    checkpoints/best.pt      the lowest validation loss so far
    tensorboard/             with ``tensorboard: true``: the log's columns as TensorBoard scalars
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
import yaml

from ..datasets.reader import merge_moments, space_weights_name
from ..errors import TrainingFailure, UserError
from ..evaluation.metrics import space_weights
from ..evaluation.rollout import advance
from ..operators.base import (Operator, build_model, data_arguments, model_parameters, model_payload, models_taking,
                              takes_points)
from ..optim.first_order import build_first_order
from . import distributed
from .checkpoint import Normalizer, load_checkpoint, predict_batch, save_checkpoint, write_log
from .config import TrainConfig, resolve_device
from .pushforward import PushforwardPairs

LOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "lr", "seconds")
#: Config keys a resumed run cannot change: the checkpoint's optimizer state (learning rate, weight
#: decay, the optimizer's own arguments) and normaliser replace what the config says, so a new value
#: would be silently ignored while ``config.yaml`` recorded it; and the keys that choose the training
#: set, whose statistics the normaliser holds.
RESUME_FIXED = ("optimizer", "optimizer_args", "lr", "weight_decay", "normalize",
                "levels", "level_mix", "n_train", "compute_budget", "budget_share")
RUN_FILES = ("config.yaml", "data.json", "log.csv", "checkpoints")


# ---- small pieces ----------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """All global RNG states, as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def relative_l2(pred: torch.Tensor, target: torch.Tensor, root_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample relative L2 error ``||pred - target|| / ||target||`` over all non-batch axes: ``(B,)``.

    ``root_weights``: square roots of the space points' weights, shaped to multiply both fields
    (:func:`root_weights_of`); ``None``: every point alike.
    """
    if root_weights is not None:
        pred, target = pred * root_weights, target * root_weights
    diff = (pred - target).flatten(1).norm(dim=1)
    ref = target.flatten(1).norm(dim=1)
    return diff / ref.clamp_min(torch.finfo(ref.dtype).tiny)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over ``model``'s parameters."""
    kwargs = {"lr": config.lr, "weight_decay": config.weight_decay, **config.optimizer_args}
    return build_first_order(config.optimizer, model.parameters(), **kwargs)


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The learning-rate multiplier of epoch ``e`` (0-based) for ``config.scheduler``."""
    if config.scheduler == "step":
        return lambda e: config.gamma ** (e // config.step_size)
    if config.scheduler == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, config.epochs) / config.epochs))
    return lambda e: 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch scheduler; a function of the epoch number only, so resuming restores it exactly."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of ``epoch``: a permutation of ``range(n)`` that depends on ``(seed, epoch)`` only."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return torch.randperm(n, generator=g).tolist()


def compute_stats(ds: Dataset) -> dict[str, np.ndarray]:
    """Per-channel mean and std of inputs and targets over every sample, time and point of ``ds``.

    The fallback for datasets without a ``stats()`` method (in-memory test data); the moments are
    merged as in :meth:`~pde_lab.datasets.reader.FieldDataset.stats`, but inputs and targets are
    counted apart (an in-memory dataset does not say which channels are the same field).
    """
    acc: dict[str, list[list]] = {}
    for i in range(len(ds)):
        for key, a in zip("xy", ds[i]):
            flat = np.asarray(a, dtype=np.float64).reshape(-1, np.shape(a)[-1])
            channels = acc.setdefault(key, [[0, 0.0, 0.0] for _ in range(flat.shape[1])])
            for c, moments in enumerate(channels):
                merge_moments(moments, flat[:, c])

    def mean_std(key: str) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([m[1] for m in acc[key]]), np.sqrt(np.array([m[2] / m[0] for m in acc[key]])))

    (x_mean, x_std), (y_mean, y_std) = mean_std("x"), mean_std("y")
    return {"x_mean": x_mean, "x_std": x_std, "y_mean": y_mean, "y_std": y_std}


def points_of(ds: Dataset, device: torch.device | None = None) -> torch.Tensor | None:
    """The ``(N, d)`` node coordinates of a mesh dataset (its ``points``), on ``device`` when given
    (once per loop, not once per batch), ``None`` on a grid."""
    points = getattr(ds, "points", None)
    return points if points is None or device is None else points.to(device, torch.float32)


def root_weights_of(ds: Dataset, device: torch.device) -> torch.Tensor | None:
    """Square roots of a mesh dataset's node weights (its ``weights``, the lumped mass, rescaled to
    mean 1), shaped ``(1, 1, N, 1)`` to multiply ``(B, T, N, C)`` fields, so that the training loss
    and the validation error are the norm that evaluation reports; ``None`` on a grid."""
    w = getattr(ds, "weights", None)
    return None if w is None else space_weights(w, w.shape, device).sqrt().float()


def check_points_model(model: Operator, ds: Dataset) -> None:
    """:class:`UserError` when ``ds`` lives on mesh nodes and ``model`` cannot answer at points."""
    if points_of(ds) is not None and not takes_points(model.model_name):
        able = [n for n in models_taking("in_channels") if takes_points(n)]
        raise UserError(f"the data live on the {len(points_of(ds))} nodes of an unstructured mesh and model "
                        f"{model.model_name!r} reads grids only; on a mesh use {', '.join(able)} "
                        f"(docs/training.md#unstructured-meshes)")


def sample_shapes(ds: Dataset) -> tuple[int, int, int, int, tuple[int, ...]]:
    """``(T_in, C_in, T_out, C_out, space)`` from the first sample of ``ds``."""
    if len(ds) == 0:
        raise UserError("the training split has no samples")
    x, y = (torch.as_tensor(a) for a in ds[0][:2])  # pushforward items carry a third entry
    if x.dim() < 3 or y.dim() < 3:
        raise ValueError(f"samples must be (T, *space, C); got x {tuple(x.shape)}, y {tuple(y.shape)}")
    return x.shape[0], x.shape[-1], y.shape[0], y.shape[-1], tuple(x.shape[1:-1])


def check_resume_config(stored: dict[str, Any], config: TrainConfig) -> None:
    """:class:`UserError` naming every :data:`RESUME_FIXED` key whose value in ``config`` differs from
    the checkpoint's config ``stored`` (keys an older checkpoint lacks are not compared).

    Values are compared as ``config.yaml`` holds them: a tuple given from Python (``betas=(0.9,
    0.99)``) is the list that a resume from the YAML file reads back."""
    current = config.to_dict()

    def plain(value: Any) -> Any:
        return yaml.safe_load(yaml.safe_dump(value))

    changed = [f"{k}: {stored[k]!r} -> {current[k]!r}" for k in RESUME_FIXED
               if k in stored and plain(stored[k]) != plain(current[k])]
    if changed:
        raise UserError(f"cannot resume with a changed {', '.join(changed)}: the checkpoint's optimizer state, "
                        f"normaliser and training set were made with the run's values; keep them (keys "
                        f"{', '.join(RESUME_FIXED)}; `--config RUN/config.yaml` or plain `--resume --out RUN` "
                        f"reuses them) or start a new run")


def stopped_early(epochs_done: int, best_epoch: int, patience: int | None) -> bool:
    """The early-stopping rule: ``patience`` epochs or more since the best one (never with ``None``)."""
    return patience is not None and epochs_done - best_epoch >= patience


def finished_reason(state: dict[str, Any], config: TrainConfig) -> str | None:
    """Why the run whose last checkpoint is ``state`` has nothing left to train under ``config``, or
    ``None`` when a resume would train on.

    Finished means: it has trained ``config.epochs`` epochs or more, or the early-stopping rule holds
    for ``config.patience`` (``patience`` epochs or more since the best one). Both are judged with the
    resumed config's values, so raising ``epochs`` continues a completed run, and raising ``patience``
    (or setting it to ``None``) continues one that stopped early; raising only ``epochs`` does not,
    since the stopping rule the run met still holds.
    """
    done, best = int(state["epoch"]), int(state["best_epoch"])
    if done >= config.epochs:
        return f"it has trained {done} epochs (epochs={config.epochs}); raise epochs to train on"
    if stopped_early(done, best, config.patience):
        return (f"it stopped early after epoch {done}: no improvement for {done - best} epochs since the best "
                f"at epoch {best} (patience={config.patience}); raise patience (or set patience=none) to train on")
    return None


def _report_finished(run_dir: Path, reason: str) -> None:
    tqdm.write(f"nothing to resume in {str(run_dir)!r}: the run is already finished, {reason}. "
               f"It is left as it was.")


@torch.no_grad()
def check_model_on_data(model: torch.nn.Module, normalizer: Normalizer, ds: Dataset, output_steps: int,
                        device: torch.device, amp: bool = False) -> None:
    """:class:`UserError` unless ``model`` maps the first sample of ``ds`` to a prediction shaped like
    its target: one forward pass in eval mode (no weight or running statistic changes; under bfloat16
    autocast with ``amp``, as in training), so a wrong channel count or a grid too coarse for the model
    (FNO modes) fails before training starts."""
    x, y = (torch.as_tensor(a) for a in ds[0][:2])
    was_training = model.training
    model.eval()
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = predict_batch(model, normalizer, x[None].to(device, torch.float32), output_steps, points_of(ds))
    except UserError as err:
        raise UserError(f"the model does not fit the data (sample input {tuple(x.shape)} = (T_in, *space, C_in)): "
                        f"{err}") from None
    except ValueError as err:  # from_model_layout: the model's output channels are not T_out * C_out
        raise UserError(f"the model does not fit the data: {err}") from None
    finally:
        model.train(was_training)
    if tuple(pred.shape[1:]) != tuple(y.shape):
        raise UserError(f"the model predicts samples of shape {tuple(pred.shape[1:])} but the targets are "
                        f"{tuple(y.shape)} = (T_out, *space, C_out)")


# ---- the run directory -----------------------------------------------------------------------------
def check_run_dir(run_dir: Path, overwrite: bool, resume: bool, resumable: bool = True) -> None:
    """Refuse a non-empty ``run_dir`` unless ``overwrite`` or ``resume``; check a resume is possible.
    ``resumable=False`` (PINN runs) leaves resuming out of the advice."""
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise UserError(f"cannot resume: {str(run_dir / 'checkpoints' / 'last.pt')!r} does not exist")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            resume_hint = " or continue it (--resume, resume=true)" if resumable else ""
            raise UserError(f"run directory {str(run_dir)!r} is not empty; pick another out, or replace it "
                            f"(--overwrite, overwrite=true){resume_hint}")
        if not (run_dir / "config.yaml").is_file():
            # Overwriting deletes files: only do it where a run directory was, never to a stray folder.
            raise UserError(f"refusing to overwrite {str(run_dir)!r}: it is not empty and holds no "
                            f"config.yaml, so it is not a pde_lab run directory")


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool, subdirs: tuple[str, ...] = ("checkpoints",)) -> None:
    """:func:`check_run_dir`, then create ``run_dir`` (emptied first when overwriting) and its ``subdirs``."""
    check_run_dir(run_dir, overwrite, resume)
    if overwrite and not resume and run_dir.is_dir():
        for child in run_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    for sub in subdirs:
        (run_dir / sub).mkdir(exist_ok=True)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def data_files(data_dir: Path, *datasets: Any) -> list[Path]:
    """The files behind ``datasets`` (``None`` entries skipped), in the order they are read: their
    ``files`` attribute when they have one, else every ``*.h5``/``*.hdf5`` file under ``data_dir``."""
    files: list[Path] = []
    for ds in (d for d in datasets if d is not None):
        found = getattr(ds, "files", None)
        if found is None:
            files = sorted(p for ext in ("*.h5", "*.hdf5") for p in data_dir.rglob(ext))
            break
        files.extend(Path(f) for f in found)
    return list(dict.fromkeys(files))  # as read: train then valid, levels in generation order


def data_record(config: TrainConfig, train_ds: Any, valid_ds: Any) -> dict[str, Any]:
    """What ``data.json`` holds: where the data came from and a content hash of every file read."""
    data_dir = Path(config.data).resolve()
    return {"data": str(data_dir),
            "levels": config.levels,
            "task": dataclasses.asdict(config.task) if config.task else None,
            "pde_name": getattr(train_ds, "pde_name", None),
            "n_train": len(train_ds),
            "n_valid": len(valid_ds) if valid_ds is not None else 0,
            "hash": "sha256 of each file's bytes",
            "files": [{"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
                      for p in data_files(data_dir, train_ds, valid_ds)]}


# ---- the loop --------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, ds: Dataset, normalizer: Normalizer, output_steps: int,
                  batch_size: int, device: torch.device, num_workers: int = 0) -> float:
    """Mean per-sample relative L2 error of ``model`` on ``ds``, in physical units."""
    model.eval()
    total, count = 0.0, 0
    points, root = points_of(ds, device), root_weights_of(ds, device)
    for x, y in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        x, y = x.to(device), y.to(device)
        err = relative_l2(predict_batch(model, normalizer, x, output_steps, points), y, root)
        total += err.sum().item()
        count += err.numel()
    return total / max(count, 1)


def fit(model: Operator, train_ds: Dataset, valid_ds: Dataset | None, config: TrainConfig,
        run_dir: str | Path, *, data_info: dict[str, Any] | None = None,
        stop_after: int | None = None, resume_state: dict[str, Any] | None = None) -> Path:
    """Train ``model`` on ``train_ds``, validating on ``valid_ds`` every epoch; return the run directory.

    Args:
        model: a registered model whose channels match the data: ``in_channels = T_in * C_in``,
            ``out_channels = T_out * C_out`` (built after seeding, for reproducibility).
        train_ds, valid_ds: datasets of ``(x, y)`` pairs, ``x: (T_in, *space, C_in)``,
            ``y: (T_out, *space, C_out)``; ``valid_ds=None`` skips validation (best = lowest train loss).
        config: the training config; ``data``/``levels``/``task`` are only recorded here.
        run_dir: the run directory (see the module docstring); refused when non-empty unless
            ``config.overwrite`` or ``config.resume``.
        data_info: written to ``data.json`` when given (``train`` passes :func:`data_record`).
        stop_after: stop after this many epochs in this call, as if interrupted (for tests and
            staged runs); the run can then be resumed.
        resume_state: the checkpoint ``last.pt`` already loaded by the caller (:func:`train`), so a resume
            reads it once.

    A resume of a run that is already finished (:func:`finished_reason`) says so and returns without
    training or writing anything.
    """
    run_dir = Path(run_dir)
    # Everything that can fail on bad input (the run directory, the data, the model's fit to the data,
    # the optimizer's arguments) is checked before the run directory is touched: a bad run must leave
    # nothing behind, and with overwrite=true must not have deleted the previous run first.
    check_run_dir(run_dir, config.overwrite, config.resume)
    if config.pushforward:
        train_ds = PushforwardPairs(train_ds, config.pushforward, config.seed)
    device = resolve_device(config.device)
    ctx = distributed.context(device)
    distributed.check_model(model, ctx)
    if ctx.active and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    t_in, c_in, t_out, c_out, space = sample_shapes(train_ds)
    check_points_model(model, train_ds)

    state = None
    if config.resume:
        state = resume_state if resume_state is not None else load_checkpoint(run_dir / "checkpoints" / "last.pt")
    if state is not None:
        stored, current = state["model"], model.spec()
        # Rebuilt, the stored arguments gain the defaults of arguments added since the checkpoint.
        stored_args = (build_model(stored["name"], **stored["args"]).spec()["args"]
                       if stored["name"] == current["name"] else stored["args"])
        if stored["name"] != current["name"] or stored_args != current["args"]:
            raise UserError(f"cannot resume: the checkpoint holds model {stored['name']!r} with "
                            f"{stored['args']}, the config builds {current['name']!r} with {current['args']}")
        check_resume_config(state.get("config", {}), config)
        model.load_state_dict(state["model"]["state_dict"])
        reason = finished_reason(state, config)
        if reason is not None:  # nothing is written: not config.yaml, not the log, not a checkpoint
            if ctx.is_main:
                _report_finished(run_dir, reason)
            return run_dir
        normalizer = Normalizer.from_state_dict(state["normalizer"])
    elif config.normalize:
        stats = train_ds.stats() if hasattr(train_ds, "stats") else compute_stats(train_ds)
        if not all(np.all(np.isfinite(np.asarray(v))) for v in stats.values()):
            raise UserError(f"the training data hold NaN or infinite values; `pde-lab validate {config.data}` "
                            f"names the trajectories")
        normalizer = Normalizer.from_stats(stats)
    else:
        normalizer = Normalizer.identity(c_in, c_out)
    model.to(device)
    normalizer.to(device)
    check_model_on_data(model, normalizer, train_ds, t_out, device, config.amp)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    if ctx.is_main:
        prepare_run_dir(run_dir, config.overwrite, config.resume)
    distributed.barrier(ctx)

    # Absolute paths: the run's config.yaml must work from any directory (evaluate, --resume).
    resolved = dataclasses.replace(config, model=model.spec()["name"], model_args=model.spec()["args"],
                                   data=str(Path(config.data).resolve()) if config.data else None,
                                   out=str(run_dir.resolve()), resume=False, overwrite=False)
    if ctx.is_main:
        resolved.to_yaml(run_dir / "config.yaml")
        if data_info is not None:
            _write_data_json(run_dir / "data.json", data_info, resumed=state is not None)
    data_meta = {"input_channels": list(getattr(train_ds, "input_channels", [f"in{i}" for i in range(c_in)])),
                 "target_channels": list(getattr(train_ds, "target_channels", [f"out{i}" for i in range(c_out)])),
                 "spatial_shape": list(getattr(train_ds, "spatial_shape", space)),
                 "pde_name": getattr(train_ds, "pde_name", None),
                 "input_steps": int(t_in), "output_steps": int(t_out), "mesh": points_of(train_ds) is not None,
                 "space_weights": space_weights_name(train_ds)}

    start_epoch, history, best_valid, best_epoch = 0, [], math.inf, -1
    if state is not None:
        if data_meta["mesh"] and state.get("data", {}).get("space_weights") != data_meta["space_weights"]:
            # Its logged losses and best checkpoint were judged in the node-count norm.
            raise UserError(f"{run_dir} was trained with every mesh node weighing the same; this pde_lab weighs "
                            f"them by area (docs/metrics.md#space-weights-meshes), so a resume would change "
                            f"its loss; start a new run")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # The optimizer state holds the learning rate the checkpoint's schedule set; a resume that
        # lengthens the run or changes the schedule continues on the new one from this epoch on
        # (with the schedule unchanged this recomputes the same value).
        factor = lr_factor(config)(scheduler.last_epoch)
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base_lr * factor
        start_epoch, history = int(state["epoch"]), list(state["history"])
        best_valid, best_epoch = float(state["best_valid"]), int(state["best_epoch"])
        set_rng_state(state["rng"])
        # The checkpoint is the truth: drop log rows of epochs written after it.
        if ctx.is_main:
            write_log(run_dir / "log.csv", history, LOG_COLUMNS)
    else:
        seed_everything(config.seed)

    limit_s = None if config.time_limit_minutes is None else 60.0 * config.time_limit_minutes
    started = time.perf_counter()
    last_epoch_s = 0.0
    shown_valid = "-"
    bar = tqdm(total=config.epochs, initial=start_epoch, desc="train", unit="epoch",
               disable=not (config.progress and ctx.is_main), dynamic_ncols=True)
    board = _tensorboard(run_dir) if config.tensorboard and ctx.is_main else None
    try:
        for epoch in range(start_epoch, config.epochs):
            if stop_after is not None and epoch - start_epoch >= stop_after:
                break
            elapsed = time.perf_counter() - started
            if limit_s is not None and epoch > start_epoch and elapsed + last_epoch_s > limit_s:
                bar.write(f"time limit of {config.time_limit_minutes} min reached after {epoch} epochs")
                break
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss = _train_epoch(model, train_ds, normalizer, optimizer, config, epoch, t_out, device, bar,
                                      shown_valid, ctx)
            scheduler.step()
            valid_loss = (evaluate_loss(model, valid_ds, normalizer, t_out, config.batch_size, device,
                                        config.num_workers) if valid_ds is not None else math.nan)
            last_epoch_s = time.perf_counter() - t0
            losses = {"training": train_loss, **({"validation": valid_loss} if valid_ds is not None else {})}
            diverged = next(((name, value) for name, value in losses.items() if not math.isfinite(value)), None)
            if diverged is not None:
                kept = f"the checkpoints hold epoch {epoch} at most" if epoch else "no checkpoint was written"
                raise TrainingFailure(
                    f"epoch {epoch + 1}: the {diverged[0]} loss is {diverged[1]}; lower the learning rate (--lr) "
                    f"or clip gradients (--set grad_clip=1), and check the data (`pde-lab validate {config.data}`); "
                    f"{kept}")
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "valid_loss": valid_loss,
                            "lr": lr, "seconds": last_epoch_s})
            score = valid_loss if valid_ds is not None else train_loss
            improved = score < best_valid
            if improved:
                best_valid, best_epoch = score, epoch + 1
            checkpoint = {"model": model_payload(model),
                          "normalizer": normalizer.state_dict(), "data": data_meta,
                          "config": resolved.to_dict(), "epoch": epoch + 1,
                          "best_valid": best_valid, "best_epoch": best_epoch, "history": history,
                          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                          "rng": rng_state()}
            if ctx.is_main:
                save_checkpoint(checkpoint, run_dir / "checkpoints" / "last.pt")
                if improved:
                    save_checkpoint(checkpoint, run_dir / "checkpoints" / "best.pt")
                write_log(run_dir / "log.csv", history, LOG_COLUMNS)
                if board is not None:
                    for key in ("train_loss", "valid_loss", "lr", "seconds"):
                        board.add_scalar(key, history[-1][key], epoch + 1)
                    board.flush()
            shown_valid = f"{valid_loss:.4g}"
            bar.set_postfix(loss=f"{train_loss:.4g}", valid=shown_valid, refresh=False)
            bar.update(1)
            if stopped_early(epoch + 1, best_epoch, config.patience):
                bar.write(f"early stop after epoch {epoch + 1}: no improvement for {config.patience} epochs "
                          f"(best {best_valid:.4g} at epoch {best_epoch})")
                break
    finally:
        bar.close()
        if board is not None:
            board.close()
    return run_dir


def _tensorboard(run_dir: Path):
    """A TensorBoard writer into ``run_dir/tensorboard`` (the optional ``tensorboard`` package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("tensorboard=true needs the tensorboard package: pip install -c constraints.txt "
                        "'pde_lab[tensorboard]'") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _train_epoch(model: torch.nn.Module, ds: Dataset, normalizer: Normalizer, optimizer: torch.optim.Optimizer,
                 config: TrainConfig, epoch: int, output_steps: int, device: torch.device, bar: tqdm,
                 shown_valid: str, ctx: distributed.Context = distributed.Context()) -> float:
    """One pass over ``ds`` in the order of :func:`epoch_order`; returns the mean per-sample loss.

    Each global batch of ``config.batch_size`` samples is shared among the ranks
    (:mod:`~pde_lab.training.distributed`); every rank's loss is its samples' sum over the global batch
    size and the gradients are summed, so the step is the one-process step on the global batch.
    """
    model.train()
    if isinstance(ds, PushforwardPairs):
        ds.set_epoch(epoch)
    order = epoch_order(len(ds), config.seed, epoch)
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    shares = [distributed.rank_share(b, ctx) for b in batches]
    loader = iter(DataLoader(ds, batch_sampler=[s for s in shares if s], num_workers=config.num_workers,
                             pin_memory=device.type == "cuda"))
    params = [p for p in model.parameters() if p.requires_grad]
    points, root = points_of(ds, device), root_weights_of(ds, device)
    total, count = 0.0, 0
    for batch, share in zip(batches, shares):
        optimizer.zero_grad(set_to_none=True)
        if share:
            x, y, *unroll = next(loader)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if unroll and int(unroll[0].max()) > 0:
                x = _push_forward(model, normalizer, x, unroll[0].to(device), output_steps, ds.pairs, points)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                pred = predict_batch(model, normalizer, x, output_steps, points)
            err = relative_l2(pred.float(), y, root)
            (err.sum() / len(batch)).backward()
            total += err.detach().sum().item()
            count += err.numel()
        distributed.sum_gradients(params, ctx)
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        bar.set_postfix(loss=f"{total / max(count, 1):.4g}", valid=shown_valid, refresh=False)
    total, count = distributed.sum_scalars([total, count], ctx, device)
    return total / max(count, 1)


@torch.no_grad()
def _push_forward(model: torch.nn.Module, normalizer: Normalizer, x: torch.Tensor, steps: torch.Tensor,
                  output_steps: int, pairs: list[tuple[int, int]], points: torch.Tensor | None = None) -> torch.Tensor:
    """Advance each sample's input ``steps[b]`` times with the model's own predictions (no gradient)."""
    for j in range(1, int(steps.max()) + 1):
        moved = advance(x, predict_batch(model, normalizer, x, output_steps, points), pairs)
        keep = (steps >= j).reshape(-1, *([1] * (x.dim() - 1)))
        x = torch.where(keep, moved, x)
    return x


def _write_data_json(path: Path, info: dict[str, Any], resumed: bool) -> None:
    if resumed and path.is_file():
        old = json.loads(path.read_text())
        # Compared as sets: older runs listed the files sorted by path, newer ones in reading order.
        if sorted(f["sha256"] for f in old.get("files", [])) != sorted(f["sha256"] for f in info.get("files", [])):
            warnings.warn(f"the data files differ from those this run started with (see {path}); "
                          f"the resumed run trains on the new data", stacklevel=3)
        return
    path.write_text(json.dumps(info, indent=2) + "\n")


# ---- the entry point -------------------------------------------------------------------------------
def train(config: TrainConfig) -> Path:
    """Train ``config.model`` on ``config.data`` and return the run directory ``config.out``.

    Opens the ``train`` split and, when the dataset has one, the ``valid`` split with
    ``pde_lab.datasets.reader.open_split`` (without it ``best.pt`` is the epoch of lowest training
    loss), builds the model with the data's channel counts and dimension, and calls :func:`fit`.
    """
    if config.data is None:
        raise UserError("no training data: set data=PATH (a dataset directory)")
    if config.out is None:
        raise UserError("no run directory: set out=PATH")
    if "in_channels" not in model_parameters(config.model):  # a network of points, not of fields
        raise UserError(f"model {config.model!r} maps coordinates to values and does not take fields: train it "
                        f"physics-informed (pde-lab train --pde NAME), or train an operator on --data: "
                        f"{', '.join(models_taking('in_channels'))}")
    run_dir = Path(config.out)
    check_run_dir(run_dir, config.overwrite, config.resume)
    state = None
    if config.resume:
        # A finished run is recognised before the data are opened and hashed; the checkpoint is
        # handed to fit, which checks the rest, so it is read once.
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        check_resume_config(state.get("config", {}), config)
        reason = finished_reason(state, config)
        if reason is not None:
            if distributed.env_rank() == 0:  # the process group is not joined yet
                _report_finished(run_dir, reason)
            return run_dir
    from ..datasets.reader import list_files, open_split, varying_parameters

    if config.parameters is None:
        config = dataclasses.replace(config, parameters=varying_parameters(list_files(config.data, "train", config.levels)))
    from ..datasets.mixing import select_training_set, selection_summary

    train_files = list_files(config.data, "train", config.levels)
    selection = select_training_set(train_files, config.level_mix, config.n_train, config.compute_budget,
                                    config.budget_share, config.seed)
    train_ds = open_split(config.data, "train", levels=config.levels, task=config.task, parameters=config.parameters,
                          trajectories=selection, preload=config.preload)
    valid_ds = None
    if Path(config.data).is_dir() and any((Path(config.data) / "valid").glob("*.h5")):
        valid_ds = open_split(config.data, "valid", levels=config.levels, task=config.task,
                              parameters=config.parameters, preload=config.preload)
    elif distributed.env_rank() == 0:
        print(f"{config.data} has no valid split: checkpoints/best.pt will be the epoch of lowest training loss")
    t_in, c_in, t_out, c_out, space = sample_shapes(train_ds)
    data_args = data_arguments(config.model, t_in * c_in, t_out * c_out, train_ds.n_dims, math.prod(space))
    for key, value in data_args.items():
        # None: not set (a stored config holds n_sensors: null for a model that does not use it)
        if config.model_args.get(key) is not None and config.model_args[key] != value:
            raise UserError(f"model_args.{key}={config.model_args[key]!r} does not match the data, "
                            f"which needs {value}; leave it out and it is filled in (from a config file: "
                            f"--set model_args.{key}=null)")
    seed_everything(config.seed)
    model = build_model(config.model, **{**config.model_args, **data_args})
    task = getattr(train_ds, "task", None) or config.task
    config = dataclasses.replace(config, task=task)
    info = data_record(config, train_ds, valid_ds)
    if selection is not None:  # which trajectories a mixed or budgeted run saw, and what they cost
        info["selection"] = {"per_level": selection_summary(train_files, selection),
                             "trajectories": {str(train_files[k]): v.tolist() for k, v in selection.items()}}
    return fit(model, train_ds, valid_ds, config, run_dir, data_info=info, resume_state=state)
