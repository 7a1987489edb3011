"""Training samples for the pushforward trick (Brandstetter, Worrall & Welling, ICLR 2022).

A model trained only on true inputs (teacher forcing) never sees its own errors, and a rollout
drifts off the data it knows. The pushforward trick feeds it inputs it made itself: for each sample
the window is advanced ``k`` times by the model without gradients (``k`` drawn uniformly from
``0..max_steps``), and the loss is taken on the step after, against the truth ``k·T_out`` frames
later. No gradient flows through the unrolled steps, so the cost is ``k`` extra forward passes and
the model learns to correct the distribution shift of its own predictions rather than to
backpropagate through time.

:class:`PushforwardPairs` draws ``k`` per item and epoch from ``(seed, epoch, item)`` only (so runs
and resumes stay reproducible) and hands the trainer ``(x, y, k)``; the trainer unrolls with
:func:`pde_lab.evaluation.rollout.advance`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError
from ..evaluation.rollout import feedback_channels


class PushforwardPairs(Dataset):
    """``(x, y, k)``: the window input of item ``i``, the target ``k·T_out`` frames later, and ``k``.

    Args:
        ds: a dataset read with the ``window`` task (a :class:`~pde_lab.datasets.reader.FieldDataset`).
        max_steps: the largest number of unrolled steps ``K``.
        seed: with the epoch (:meth:`set_epoch`) and the item, determines ``k``.

    ``k`` is cut where the trajectory ends: a window ``s`` takes at most ``(last − s) // T_out`` steps.
    """

    def __init__(self, ds: Dataset, max_steps: int, seed: int):
        task = getattr(ds, "task", None)
        if task is None or task.mode != "window" or getattr(ds, "n_times", None) is None:
            raise UserError("pushforward needs a time-dependent dataset read with the window task")
        if int(max_steps) < 1:
            raise UserError(f"pushforward steps must be >= 1, got {max_steps!r}")
        if not feedback_channels(ds):
            raise UserError("pushforward needs input channels that carry the predicted fields")
        self.ds, self.max_steps, self.seed, self.epoch = ds, int(max_steps), int(seed), 0
        self.pairs = feedback_channels(ds)
        self._last = ds.n_times - task.input_steps - task.output_steps
        for name in ("input_channels", "target_channels", "spatial_shape", "n_dims", "points", "weights", "pde_name",
                     "task", "files"):
            if hasattr(ds, name):
                setattr(self, name, getattr(ds, name))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def stats(self) -> dict[str, np.ndarray]:
        """The wrapped dataset's normalisation statistics (``x_mean``, ``x_std``, ``y_mean``, ``y_std``)."""
        return self.ds.stats()

    def __len__(self) -> int:
        return len(self.ds)

    def steps(self, item: int) -> int:
        """The unrolled steps ``k`` of ``item`` in the current epoch."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, item]))
        _, _, start = self.ds.sample_index(item)
        return min(int(rng.integers(0, self.max_steps + 1)), (self._last - start) // self.ds.task.output_steps)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        k = self.steps(item)
        x, y = self.ds[item]
        if k:
            # windows of one trajectory are consecutive items, ordered by start
            _, y = self.ds[item + k * self.ds.task.output_steps]
        return x, y, k
