"""Error against time: autoregressive rollouts of a window-trained model, and the per-frame error of
a time-conditioned one.

A model trained on the ``window`` task maps ``T_in`` frames to the next ``T_out``. A rollout starts
from the first ``T_in`` stored frames of each trajectory and feeds the model its own predictions:
the solution channels of the next input are the last ``T_in`` frames of (input, prediction), while
the constant channels (coefficients, masks, parameters) keep their values. It runs until the stored
trajectory ends (whole ``T_out`` blocks only) and is compared frame by frame with the stored truth:

    e_b(t) = ‖û_b(t) − u_b(t)‖₂ / ‖u_b(t)‖₂        (over space and channels, per trajectory b)

which is how error accumulation is reported in the autoregressive-surrogate literature (PDEBench's
rollout nRMSE, Brandstetter et al.'s pushforward study). The one-step error of the training loss
is ``e(T_in)`` to ``e(T_in + T_out − 1)``.

A model trained on the ``time`` task predicts each frame directly from the first ``T_in`` and the
lead time; :func:`time_curve` reports the same ``e_b(t)`` for it, so both kinds plot alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import h5py
import numpy as np
import torch

from ..datasets.reader import FieldDataset
from ..errors import UserError
from .metrics import compute_metrics, relative_l2

if TYPE_CHECKING:
    from ..training.checkpoint import Run


@dataclass
class Rollout:
    """A rollout over the trajectories of one dataset.

    Attributes:
        frames: ``(T,)`` indices of the predicted frames in the stored trajectory.
        times: ``(T,)`` their physical times (``frames`` as floats when the file stores no time).
        prediction, truth: ``(B, T, *space, C_out)`` float32.
        rel_l2: ``(B, T)`` float64 relative L2 error per trajectory and frame (on a mesh the nodes weighted
            by the dataset's ``weights``, as in the evaluation metrics).
        persistence_rel_l2: ``(B, T)`` the same error of holding the first input's last frame
            (:func:`persistence`) over the whole rollout; ``None`` when a target channel is not an input.
    """

    frames: np.ndarray
    times: np.ndarray
    prediction: torch.Tensor
    truth: torch.Tensor
    rel_l2: torch.Tensor
    persistence_rel_l2: torch.Tensor | None = None

    def summary(self) -> dict:
        """JSON-ready: frames, times, mean/median/max error per frame, the per-trajectory curves, and
        the persistence baseline's mean error per frame (``persistence_rel_l2_mean``) when there is one."""
        out = _curve("rollout", self.frames, self.times, self.rel_l2)
        if self.persistence_rel_l2 is not None:
            out["persistence_rel_l2_mean"] = self.persistence_rel_l2.double().mean(0).tolist()
        return out


def _curve(kind: str, frames: np.ndarray, times: np.ndarray, errors: torch.Tensor) -> dict:
    """JSON-ready error-against-time summary of ``errors`` ``(B, T)``: statistics over trajectories.

    The median is the midpoint of the two middle values for even ``B``, as in
    :func:`~pde_lab.evaluation.metrics.summarize` (``Tensor.median`` would give the lower one).
    """
    e = errors.double()
    return {"kind": kind, "frames": [int(f) for f in frames], "times": [float(t) for t in times],
            "rel_l2_mean": e.mean(0).tolist(), "rel_l2_median": torch.quantile(e, 0.5, dim=0).tolist(),
            "rel_l2_max": e.max(0).values.tolist(), "rel_l2_per_sample": e.tolist()}


def time_curve(ds: FieldDataset, rel_l2: torch.Tensor) -> dict:
    """Error against time of a time-conditioned model from its per-item errors.

    Args:
        ds: a dataset read with the ``time`` task (items: trajectory-major, then target frame).
        rel_l2: ``(len(ds),)`` relative L2 error per item.

    Returns:
        the summary of :meth:`Rollout.summary` with ``kind = "time_conditioned"``.
    """
    if ds.task.mode != "time":
        raise UserError(f"time_curve needs a dataset read with the time task, got {ds.task.mode!r}")
    frames = np.array([ds.sample_index(i)[2] for i in range(len(ds))])
    n_frames = ds.n_times - ds.task.input_steps
    frames = frames[:n_frames]
    return _curve("time_conditioned", frames, ds.times[frames], rel_l2.reshape(-1, n_frames))


def feedback_channels(ds: FieldDataset) -> list[tuple[int, int]]:
    """``(input channel, target channel)`` pairs that carry the same field, the channels a rollout
    overwrites with its own predictions."""
    target = {name: j for j, name in enumerate(ds.target_channels)}
    return [(i, target[name]) for i, name in enumerate(ds.input_channels) if name in target]


def persistence_channels(ds: FieldDataset) -> list[int] | None:
    """For each target channel, the input channel holding the same field: what the persistence
    baseline copies. ``None`` unless the task is ``window`` (the outputs follow the inputs) and every
    target channel is also an input channel."""
    pairs = feedback_channels(ds)
    if ds.task.mode != "window" or len(pairs) != len(ds.target_channels):
        return None
    return [i for i, _ in sorted(pairs, key=lambda pair: pair[1])]


def persistence(x: torch.Tensor, channels: list[int], n_out: int) -> torch.Tensor:
    """The baseline "nothing changes": every output frame is the last input frame.

    A window model that does not beat it has learnt no dynamics; its error at an output frame ``t``
    is ``‖u(t) − u(t_last input)‖ / ‖u(t)‖``.

    Args:
        x: ``(B, T_in, *space, C_in)`` inputs of a ``window`` task.
        channels: :func:`persistence_channels` of their dataset.
        n_out: output frames ``T_out``.

    Returns:
        ``(B, T_out, *space, C_out)``.
    """
    last = x[:, -1:, ..., channels]
    return last.expand(-1, n_out, *last.shape[2:])


def persistence_metrics(ds: FieldDataset, names: Sequence[str] | None = None,
                        batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Per-item metrics of :func:`persistence` on every item of ``ds`` (a ``window`` dataset).

    Args:
        ds: the dataset; ``UserError`` when it has no persistence baseline (:func:`persistence_channels`).
        names: metrics of :func:`~pde_lab.evaluation.metrics.compute_metrics` (default: all).
        batch_size: items per batch.

    Returns:
        name -> ``(len(ds),)`` values.
    """
    channels = persistence_channels(ds)
    if channels is None:
        raise UserError(f"no persistence baseline: the task is {ds.task.mode!r} (needs 'window') or a target "
                        f"channel of {ds.target_channels} is not among the inputs {ds.input_channels}")
    parts: dict[str, list[torch.Tensor]] = {}
    for x, y in torch.utils.data.DataLoader(ds, batch_size=batch_size):
        for k, v in compute_metrics(persistence(x, channels, y.shape[1]), y, names, weights=ds.weights).items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def advance(x: torch.Tensor, y: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """The next input of an autoregressive step.

    Args:
        x: ``(B, T_in, *space, C_in)`` the current input.
        y: ``(B, T_out, *space, C_out)`` the model's prediction from it.
        pairs: :func:`feedback_channels`.

    Returns:
        ``(B, T_in, *space, C_in)``: the last ``T_in`` frames of ``x`` followed by ``y``, where a
        predicted frame keeps the constant channels of ``x``'s last frame.
    """
    t_in, t_out = x.shape[1], y.shape[1]
    feed_in = torch.tensor([i for i, _ in pairs], device=x.device)
    feed_out = torch.tensor([j for _, j in pairs], device=x.device)
    nxt = x[:, -1:].repeat_interleave(t_out, dim=1).clone()
    nxt[..., feed_in] = y[..., feed_out].to(nxt.dtype)
    return torch.cat([x, nxt], dim=1)[:, -t_in:]


@torch.no_grad()
def rollout(run: Run, ds: FieldDataset, batch_size: int = 32) -> Rollout:
    """Roll ``run`` (a :class:`~pde_lab.training.checkpoint.Run`) out over every trajectory of ``ds``.

    Args:
        run: a run trained on a ``window`` task; ``run.predict`` maps ``(B, T_in, *space, C_in)`` to
            ``(B, T_out, *space, C_out)``, called with ``points=ds.points`` (``None`` on a grid).
        ds: a dataset of that task (its windows give the first input and the truth).
        batch_size: trajectories per forward pass.
    """
    task = ds.task
    if task.mode != "window" or ds.n_times is None:
        raise UserError(f"a rollout needs a time-dependent dataset read with the window task, got {task.mode!r}")
    t_in, t_out = task.input_steps, task.output_steps
    n_blocks = (ds.n_times - t_in) // t_out
    pairs = feedback_channels(ds)
    if not pairs:
        raise UserError("no input channel carries a predicted field, so predictions cannot be fed back")
    # the reader orders a trajectory's windows by start, so window s of the trajectory whose first
    # window is item i is item i + s
    first_items = [i for i in range(len(ds)) if ds.sample_index(i)[2] == 0]
    copy = persistence_channels(ds)
    preds, truths, held = [], [], []
    for chunk in range(0, len(first_items), batch_size):
        items = first_items[chunk:chunk + batch_size]
        x = torch.stack([ds[i][0] for i in items])
        if copy is not None:
            held.append(persistence(x, copy, n_blocks * t_out))
        blocks, true_blocks = [], []
        for b in range(n_blocks):
            y = run.predict(x, points=ds.points)
            blocks.append(y)
            true_blocks.append(torch.stack([ds[i + b * t_out][1] for i in items]))
            x = advance(x, y, pairs)
        preds.append(torch.cat(blocks, dim=1))
        truths.append(torch.cat(true_blocks, dim=1))
    pred, truth = torch.cat(preds), torch.cat(truths)
    frames = np.arange(t_in, t_in + n_blocks * t_out)
    times = frames.astype(np.float64)
    with h5py.File(ds.files[0], "r") as f:
        if "time" in f["dimensions"]:
            times = np.asarray(f["dimensions/time"][()], dtype=np.float64)[frames]
    return Rollout(frames, times, pred, truth, _frame_errors(pred, truth, ds.weights),
                   _frame_errors(torch.cat(held), truth, ds.weights) if held else None)


def _frame_errors(pred: torch.Tensor, truth: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``(B, T)`` relative L2 error per trajectory and frame of ``(B, T, *space, C)`` fields, the
    space points weighted by ``weights``: :func:`~pde_lab.evaluation.metrics.relative_l2` of each frame."""
    b, t = truth.shape[:2]
    one_frame_samples = (b * t, 1, *truth.shape[2:])
    errors = relative_l2(pred.reshape(one_frame_samples), truth.reshape(one_frame_samples), weights=weights)
    return errors.reshape(b, t)
