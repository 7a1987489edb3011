"""Checkpoints, the normaliser they carry, and :func:`load_run`, the way back from a run directory.

Layouts. Datasets hand out samples as ``(T, *space, C)`` (batched: ``(B, T, *space, C)``); the
convolutional models work on ``(B, channels, *space)``. :func:`to_model_layout` flattens time and
channels into one axis, time-major: model channel ``t * C + c`` is field ``c`` at step ``t``;
:func:`from_model_layout` undoes it.

A checkpoint (``checkpoints/last.pt``, ``checkpoints/best.pt``) is a ``torch.save`` dict of tensors
and plain Python values only, readable with ``torch.load(weights_only=True)``:

=================  ===============================================================================
``format``         ``"pde_lab/checkpoint"``; ``version``: 1
``model``          ``{"name", "args", "state_dict"}``: rebuilds the model (``operators.load_model``)
``normalizer``     per-channel ``x_mean``, ``x_std`` ``(C_in,)``, ``y_mean``, ``y_std`` ``(C_out,)``
``data``           ``input_channels``, ``target_channels``, ``spatial_shape``, ``pde_name``,
                   ``input_steps``, ``output_steps``, ``mesh`` (trained on mesh nodes),
                   ``space_weights`` (what the loss weighed the points by: ``uniform``, ``lumped_mass``)
``config``         the resolved :class:`TrainConfig` as a dict
``epoch``          epochs completed; ``best_epoch``, ``best_valid``: the best validation so far
``history``        the rows of ``log.csv`` up to ``epoch``
``optimizer``,     state dicts, and ``rng``: the torch / CUDA / numpy / Python random states, so that
``scheduler``      a resumed run continues exactly as if never stopped
=================  ===============================================================================
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch

from ..errors import UserError
from ..operators.base import Operator, atomic_torch_save, load_model
from .config import TrainConfig

#: A per-channel statistic: a tensor, a numpy array or a list of numbers, of shape ``(C,)``.
ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[float]]

CHECKPOINT_FORMAT = "pde_lab/checkpoint"
CHECKPOINT_VERSION = 1


# ---- layouts ---------------------------------------------------------------------------------------
def to_model_layout(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, *space, C)`` -> ``(B, T*C, *space)``; model channel ``t*C + c`` is field ``c`` at step ``t``."""
    b, t, c = x.shape[0], x.shape[1], x.shape[-1]
    return x.movedim(-1, 2).reshape(b, t * c, *x.shape[2:-1])


def from_model_layout(z: torch.Tensor, steps: int, channels: int) -> torch.Tensor:
    """``(B, steps*channels, *space)`` -> ``(B, steps, *space, channels)``, the inverse of :func:`to_model_layout`."""
    if z.shape[1] != steps * channels:
        raise ValueError(f"model output has {z.shape[1]} channels, expected {steps} steps x {channels} fields")
    return z.reshape(z.shape[0], steps, channels, *z.shape[2:]).movedim(2, -1)


# ---- normalisation ---------------------------------------------------------------------------------
class Normalizer:
    """Per-channel standardisation of inputs and targets with the training split's statistics.

    All four statistics are float32 tensors, ``x_*`` of shape ``(C_in,)`` and ``y_*`` of shape
    ``(C_out,)``; they broadcast against the channel-last dataset layout ``(..., C)``. A standard
    deviation below ``1e-12`` (a constant channel such as a mask) is replaced by 1 so the channel is
    only shifted.
    """

    def __init__(self, x_mean: ArrayLike, x_std: ArrayLike, y_mean: ArrayLike, y_std: ArrayLike):
        def vec(v: ArrayLike) -> torch.Tensor:
            if torch.is_tensor(v):
                return v.detach().to("cpu", torch.float32).reshape(-1).clone()
            return torch.as_tensor(np.asarray(v, dtype=np.float32)).reshape(-1).clone()

        self.x_mean, self.y_mean = vec(x_mean), vec(y_mean)
        self.x_std = torch.where(vec(x_std) < 1e-12, torch.ones(()), vec(x_std))
        self.y_std = torch.where(vec(y_std) < 1e-12, torch.ones(()), vec(y_std))

    @classmethod
    def identity(cls, in_channels: int, out_channels: int) -> "Normalizer":
        """A normaliser that changes nothing (``normalize: false``)."""
        return cls(torch.zeros(in_channels), torch.ones(in_channels), torch.zeros(out_channels),
                   torch.ones(out_channels))

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> "Normalizer":
        """From a dataset's ``stats()``: ``x_mean``, ``x_std`` ``(C_in,)``, ``y_mean``, ``y_std`` ``(C_out,)``."""
        return cls(stats["x_mean"], stats["x_std"], stats["y_mean"], stats["y_std"])

    def to(self, device: str | torch.device) -> "Normalizer":
        for name in ("x_mean", "x_std", "y_mean", "y_std"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def encode_x(self, x: torch.Tensor) -> torch.Tensor:
        """Physical ``(..., C_in)`` -> normalised."""
        return (x - self.x_mean) / self.x_std

    def encode_y(self, y: torch.Tensor) -> torch.Tensor:
        """Physical ``(..., C_out)`` -> normalised."""
        return (y - self.y_mean) / self.y_std

    def decode_y(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised ``(..., C_out)`` -> physical."""
        return y * self.y_std + self.y_mean

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).detach().cpu().clone() for k in ("x_mean", "x_std", "y_mean", "y_std")}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "Normalizer":
        return cls.from_stats(state)


# ---- checkpoint files ------------------------------------------------------------------------------
def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a checkpoint dict (see the module docstring) to ``path`` through a temporary file."""
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors mapped to ``map_location``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{str(path)!r} is not a pde_lab training checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise UserError(f"checkpoint {str(path)!r} has version {state['version']}; this pde_lab reads "
                        f"up to {CHECKPOINT_VERSION}")
    return state


def write_log(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` (their ``columns``) to the CSV file ``path`` atomically: a temporary file, then
    a rename, so a reader never sees half a log."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns})
    os.replace(tmp, path)


def read_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``log.csv`` as dicts of numbers (``epoch`` as int)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in rows]


# ---- a finished (or running) run -------------------------------------------------------------------
@dataclass
class Run:
    """A trained run loaded back from its directory (see :func:`load_run`).

    Attributes:
        run_dir: the run directory.
        config: the resolved training config.
        model: the model of the loaded checkpoint, in eval mode, on ``device``.
        normalizer: the training statistics, on ``device``.
        checkpoint_path: which checkpoint was loaded.
        log: ``log.csv`` rows (``epoch``, ``train_loss``, ``valid_loss``, ``lr``, ``seconds``).
        data: the checkpoint's ``data`` entry (channel names, spatial shape, PDE, steps, ``mesh``).
        epoch: epochs completed when the checkpoint was written.
        device: where ``model`` lives.
    """

    run_dir: Path
    config: TrainConfig
    model: Operator
    normalizer: Normalizer
    checkpoint_path: Path
    log: list[dict[str, float]]
    data: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def output_steps(self) -> int:
        """``T_out``, the number of time steps the model predicts."""
        if self.data.get("output_steps"):
            return int(self.data["output_steps"])
        return int(self.model.config["out_channels"]) // self.normalizer.y_mean.numel()

    @property
    def on_mesh(self) -> bool:
        """Whether the run was trained on the nodes of a mesh (its model then needs ``points``)."""
        return bool(self.data.get("mesh"))

    @torch.no_grad()
    def predict(self, x: torch.Tensor | np.ndarray, batch_size: int | None = None,
                points: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Physical inputs ``(B, T_in, *space, C_in)`` -> physical predictions ``(B, T_out, *space, C_out)``.

        Runs on the run's ``device`` in chunks of ``batch_size`` samples (all at once when ``None``);
        returns a float32 tensor on the device of ``x`` (CPU for numpy input). The input channels are
        ``data["input_channels"]``: the fields, then the parameters of ``config.parameters``, as
        ``open_split(..., task=config.task, parameters=config.parameters)`` yields them.

        ``points``: for a run trained on a mesh (:attr:`on_mesh`), where ``space = (N,)``, the nodes'
        ``(N, d)`` coordinates as the dataset gives them (``ds.points``); required there, refused on
        a grid.
        """
        x = torch.as_tensor(x, dtype=torch.float32)
        self.check_input(x)
        if self.on_mesh != (points is not None):
            raise UserError("this run was trained on mesh nodes: pass points=ds.points (the (N, d) node "
                            "coordinates of the dataset x comes from)" if self.on_mesh else
                            "this run was trained on a grid and takes no points")
        if points is not None:
            points = torch.as_tensor(points, dtype=torch.float32)
            if points.dim() != 2 or points.shape[0] != x.shape[2]:
                raise UserError(f"points must be (N, d) with N = {x.shape[2]} nodes, got shape {tuple(points.shape)}")
        out_device = x.device
        chunks = [x] if batch_size is None else torch.split(x, batch_size)
        outs = [predict_batch(self.model, self.normalizer, xb.to(self.device), self.output_steps,
                              points).to(out_device)
                for xb in chunks]
        return torch.cat(outs)

    def check_input(self, x: torch.Tensor) -> None:
        """:class:`UserError` unless ``x`` is ``(B, T_in, *space, C_in)`` with this run's ``T_in`` and
        ``C_in`` (a wrong channel count would otherwise broadcast against the normaliser silently)."""
        c_in = self.normalizer.x_mean.numel()
        t_in = self.data.get("input_steps")
        n_space = len(self.data["spatial_shape"]) if self.data.get("spatial_shape") else x.dim() - 3
        if x.dim() != n_space + 3 or x.shape[-1] != c_in or (t_in is not None and x.shape[1] != int(t_in)):
            names = list(self.data.get("input_channels") or [f"in{i}" for i in range(c_in)])
            expected = ", ".join(["B", str(t_in) if t_in is not None else "T_in", *["n"] * n_space, str(c_in)])
            raise UserError(f"this run's model takes inputs ({expected}) with channels {names}, got shape "
                            f"{tuple(x.shape)}; open the data with parameters=run.config.parameters and "
                            f"task=run.config.task")


def predict_batch(model: torch.nn.Module, normalizer: Normalizer, x: torch.Tensor, output_steps: int,
                  points: torch.Tensor | None = None) -> torch.Tensor:
    """Physical ``(B, T_in, *space, C_in)`` -> physical ``(B, T_out, *space, C_out)`` through ``model``.

    The one place where normalisation and the layout change wrap a model, shared by training,
    validation and :meth:`Run.predict`. ``points``: on a mesh, ``space = (N,)`` and the nodes'
    ``(N, d)`` coordinates (the dataset's ``points``), passed to the model as ``coords``.
    """
    z = to_model_layout(normalizer.encode_x(x))
    z = model(z) if points is None else model(z, points.to(z.device, z.dtype))
    return normalizer.decode_y(from_model_layout(z, output_steps, normalizer.y_mean.numel()))


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | torch.device = "cpu") -> Run:
    """Load a run directory written by the trainer.

    Args:
        run_dir: the run directory.
        checkpoint: ``"best"`` (lowest validation loss), ``"last"``, or a path to a checkpoint file.
        device: where to put the model.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    if checkpoint in ("best", "last"):
        path = run_dir / "checkpoints" / f"{checkpoint}.pt"
        if not path.is_file():
            raise UserError(_not_a_run(run_dir, checkpoint))
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise UserError(f"checkpoint {checkpoint!r} is neither 'best', 'last' nor an existing checkpoint file")
    device = torch.device(device)
    state = load_checkpoint(path, map_location="cpu")
    # The run's config.yaml (the latest, after a resume) for its own checkpoints; a checkpoint file of
    # another run is read with the config it was trained with (its task and parameters).
    config_path = run_dir / "config.yaml"
    own = checkpoint in ("best", "last") or path.resolve().parent == (run_dir / "checkpoints").resolve()
    if (own or state.get("config") is None) and config_path.is_file():
        config = TrainConfig.from_yaml(config_path)
    else:
        config = TrainConfig.from_dict(state["config"])
    model = load_model(state["model"], map_location=device)
    return Run(run_dir=run_dir, config=config, model=model,
               normalizer=Normalizer.from_state_dict(state["normalizer"]).to(device),
               checkpoint_path=path, log=read_log(run_dir / "log.csv"), data=dict(state.get("data", {})),
               epoch=int(state.get("epoch", 0)), device=device)


def _not_a_run(run_dir: Path, checkpoint: str) -> str:
    """Why ``run_dir`` has no ``checkpoint`` checkpoint, from what it does hold."""
    if any(run_dir.glob("*/*.h5")) and not (run_dir / "config.yaml").is_file():
        return f"{run_dir} is a dataset, not a run directory: pass it as --data and the run as --run"
    if (run_dir / "model.pt").is_file() and not (run_dir / "checkpoints").is_dir():
        return (f"{run_dir} is a physics-informed run: its error against the exact solution is in its "
                f"metrics.json; there is no operator to evaluate on a dataset")
    if any(run_dir.glob("predictions_*.h5")) and not (run_dir / "config.yaml").is_file():
        return (f"{run_dir} holds an evaluation's output, not a run: pass the run directory that was evaluated "
                f"(its metrics.json names it)")
    if (run_dir / "config.yaml").is_file():
        hint = " (no epoch finished with a finite validation loss)" if checkpoint == "best" else ""
        return f"run {run_dir} has no {checkpoint}.pt checkpoint{hint}; try --checkpoint last"
    return f"{run_dir} is not a pde_lab run directory: it has no config.yaml and no checkpoints/{checkpoint}.pt"
