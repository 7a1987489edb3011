"""Training sets mixed from difficulty levels: by ratio, at a fixed sample count or a compute budget.

Two questions of the difficulty-transfer studies need these: does a model trained on a fraction α of
hard samples do better than one trained on easy samples only, (1) at the same number of training
samples, and (2) at the same generation compute (hard samples cost more solver time)?

* :func:`level_counts` splits ``n`` samples between levels by ratio. Counts are exact when
  ``ratio * n`` is an integer and otherwise within one of it (largest remainders).
* :class:`LevelMixSampler` is a ``torch`` sampler over the items of a dataset made of several levels'
  files: each epoch yields ``num_samples`` items with the level counts of :func:`level_counts`,
  seeded, and split between DDP ranks.
* :func:`select_by_count` and :func:`select_by_budget` pick whole *trajectories* (the unit of
  generation cost) from the files of a split; the result restricts a
  :class:`~pde_lab.datasets.reader.FieldDataset` through its ``trajectories`` argument.
  :func:`select_by_budget` keeps the summed recorded ``trajectories/wall_time`` within a budget.

Determinism: each level's trajectories are visited in one random order drawn from
``(seed, crc32(level))``, and selections take prefixes of these orders. So the selection of a level
does not depend on which other levels are present, and a larger ``n`` or budget gives a superset of
a smaller one (nested training sets, so a learning curve varies one thing at a time). Prefixes also
mean no cheap-sample bias: a budget is never "filled up" by skipping expensive trajectories, which
within a level are the harder ones.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence

import h5py
import numpy as np
import torch

from ..errors import UserError
from .writer import attr_value

if TYPE_CHECKING:
    from .reader import FieldDataset

SHARES = ("count", "compute")


# ---- ratios ---------------------------------------------------------------------------------------
def check_ratios(ratios: Mapping[str, float], levels: Sequence[str]) -> dict[str, float]:
    """``ratios`` checked against the available ``levels`` and normalised to sum exactly to 1.

    Ratios must be finite, non-negative numbers naming available levels and summing to 1 (within
    1e-6); levels without a ratio get none of the samples. Raises :class:`UserError` naming the bad
    level or value.
    """
    if not isinstance(ratios, Mapping) or not ratios:
        raise UserError(f"level ratios must be a non-empty mapping level → fraction, got {ratios!r}")
    out = {}
    for level, r in ratios.items():
        if level not in levels:
            raise UserError(f"level {level!r} in the mix is not in the data; available: {', '.join(levels)}")
        try:
            r = float(r)
        except (TypeError, ValueError):
            raise UserError(f"ratio of level {level!r} must be a number, got {r!r}") from None
        if not math.isfinite(r) or r < 0:
            raise UserError(f"ratio of level {level!r} must be a finite non-negative number, got {r!r}")
        out[str(level)] = r
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"level ratios must sum to 1, got {total:.6g} from {dict(ratios)}")
    return {k: v / total for k, v in out.items()}


def level_counts(ratios: Mapping[str, float], n: int) -> dict[str, int]:
    """Split ``n`` samples between levels by ``ratios`` (which sum to 1): the largest-remainder method.

    Every count is ``floor(r n)`` or ``ceil(r n)`` and the counts sum to ``n``; remainders are broken
    in the order the levels are given.
    """
    if n < 0:
        raise UserError(f"number of samples must be non-negative, got {n}")
    names = list(ratios)
    exact = np.array([ratios[k] * n for k in names])
    # Guard floor against 2.9999999999 from floating ratios: round what is integral to 1e-9.
    base = np.floor(exact + 1e-9).astype(np.int64)
    left = n - int(base.sum())
    order = sorted(range(len(names)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[:max(left, 0)]:
        base[i] += 1
    return {k: int(c) for k, c in zip(names, base)}


def most_samples(ratios: Mapping[str, float], sizes: Mapping[str, int]) -> int:
    """The most samples ``sizes`` (level → items available) allow at ``ratios`` without repeating
    one: ``min over levels of size / ratio``, rounded down.

    Rounded as :func:`level_counts` rounds (to 1e-9), not with float ``//``: ``10 // 0.1`` is 99.0,
    which would leave one item of 100 out of a 90/10 mix of 90 + 10 items.
    """
    n = min(math.floor(sizes[k] / r + 1e-9) for k, r in ratios.items() if r > 0)
    while n > 0 and any(c > sizes[k] for k, c in level_counts(ratios, n).items()):
        n -= 1  # never more than a level holds, whatever the rounding
    return int(n)


def _level_seed(seed: int, level: str, *more: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(level.encode()), *more]))


# ---- the sampler ----------------------------------------------------------------------------------
class LevelMixSampler(torch.utils.data.Sampler[int]):
    """Yields, each epoch, ``num_samples`` dataset items with the level ratios of ``ratios``.

    Args:
        level_items: level → indices of the dataset items of that level (see
            :meth:`FieldDataset.level_items <pde_lab.datasets.reader.FieldDataset.level_items>` and
            :meth:`from_dataset`).
        ratios: level → fraction, summing to 1 (e.g. ``{"easy": 0.9, "hard": 0.1}``).
        num_samples: items per epoch over all ranks; ``None`` = the most the pools allow without
            repeating an item (``min over levels of pool / ratio``).
        seed: seeds which items are drawn and their order.
        resample: ``False`` (default): the items are drawn once (from ``seed``) and only their order
            changes between epochs: a fixed training set of ``num_samples`` items. ``True``: a
            fresh draw from the pools every epoch.
        replacement: allow a level's quota to exceed its pool by cycling through it; otherwise such
            a quota raises :class:`UserError`.
        rank, world_size: for DDP: the global order is the same on every rank; rank ``r`` takes
            positions ``r, r + world_size, ...`` after padding the order (with its own first items)
            to a multiple of ``world_size``, so all ranks take the same number of steps.

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``).
    """

    def __init__(self, level_items: Mapping[str, Sequence[int]], ratios: Mapping[str, float],
                 num_samples: int | None = None, seed: int = 0, resample: bool = False, replacement: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.pools = {str(k): np.asarray(v, dtype=np.int64).reshape(-1) for k, v in level_items.items()}
        self.ratios = check_ratios(ratios, list(self.pools))
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is not in 0..world_size-1 (world_size={world_size})")
        if num_samples is None:
            num_samples = most_samples(self.ratios, {k: len(v) for k, v in self.pools.items()})
        if num_samples < 1:
            raise UserError(f"num_samples must be positive, got {num_samples}")
        self.num_samples = int(num_samples)
        self.counts = level_counts(self.ratios, self.num_samples)
        for level, c in self.counts.items():
            if c and not len(self.pools[level]):
                raise UserError(f"level {level!r} has ratio {self.ratios[level]:g} but no items")
        if not replacement:
            for level, c in self.counts.items():
                if c > len(self.pools[level]):
                    raise UserError(f"level {level!r} needs {c} items for {self.num_samples} samples at ratio "
                                    f"{self.ratios[level]:g} but holds {len(self.pools[level])}; lower num_samples "
                                    f"or allow replacement")
        self.seed, self.resample, self.replacement = int(seed), bool(resample), bool(replacement)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    @classmethod
    def from_dataset(cls, dataset: FieldDataset, ratios: Mapping[str, float], **kwargs: Any) -> LevelMixSampler:
        """A sampler over a dataset with a ``level_items()`` method (a ``FieldDataset``)."""
        return cls(dataset.level_items(), ratios, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and, with ``resample``, whose draw) is produced next."""
        self.epoch = int(epoch)

    def _draw(self, level: str, count: int, rng_extra: tuple[int, ...]) -> np.ndarray:
        pool = self.pools[level]
        if count == 0:
            return pool[:0]
        rng = _level_seed(self.seed, level, *rng_extra)
        reps = -(-count // len(pool))  # whole passes through the pool when the quota exceeds it
        picks = np.concatenate([pool[rng.permutation(len(pool))] for _ in range(reps)])
        return picks[:count]

    def epoch_items(self, epoch: int | None = None) -> np.ndarray:
        """The global (all ranks) item order of ``epoch`` (default: the current one), ``(num_samples,)``."""
        epoch = self.epoch if epoch is None else int(epoch)
        extra = (1, epoch) if self.resample else (0,)
        chosen = np.concatenate([self._draw(level, c, extra) for level, c in self.counts.items()])
        order = np.random.default_rng(np.random.SeedSequence([self.seed, 2, epoch])).permutation(len(chosen))
        return chosen[order]

    def __iter__(self) -> Iterator[int]:
        items = self.epoch_items()
        per_rank = len(self)
        padded = np.resize(items, per_rank * self.world_size)  # np.resize repeats from the start
        return iter(padded[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)


# ---- trajectory selection --------------------------------------------------------------------------
def _read_costs(files: Sequence[str | Path]) -> tuple[list[str], list[np.ndarray]]:
    """Each file's level and its ``(N,)`` recorded wall times."""
    levels, costs = [], []
    for p in files:
        with h5py.File(p, "r") as f:
            levels.append(attr_value(f.attrs["level"]))
            costs.append(np.asarray(f["trajectories/wall_time"][()], dtype=np.float64))
    return levels, costs


def _level_orders(levels: Sequence[str], costs: Sequence[np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Level → ``(M, 2)`` array of (file number, trajectory) in the level's seeded random order."""
    pools: dict[str, list[np.ndarray]] = {}
    for k, (level, c) in enumerate(zip(levels, costs)):
        pools.setdefault(level, []).append(np.stack([np.full(len(c), k), np.arange(len(c))], axis=1))
    out = {}
    for level, parts in pools.items():
        pool = np.concatenate(parts).astype(np.int64)
        out[level] = pool[_level_seed(seed, level).permutation(len(pool))]
    return out


def _as_selection(picks: Sequence[np.ndarray], n_files: int) -> dict[int, np.ndarray]:
    """(file, trajectory) rows → file number → sorted trajectory indices (every file present)."""
    rows = np.concatenate([p for p in picks if len(p)]) if any(len(p) for p in picks) else np.zeros((0, 2), np.int64)
    return {k: np.sort(rows[rows[:, 0] == k, 1]) for k in range(n_files)}


def _default_ratios(levels: Sequence[str], costs: Sequence[np.ndarray]) -> dict[str, float]:
    sizes: dict[str, int] = {}
    for level, c in zip(levels, costs):
        sizes[level] = sizes.get(level, 0) + len(c)
    total = sum(sizes.values())
    return {k: v / total for k, v in sizes.items()}


def select_by_count(files: Sequence[str | Path], n: int | None, ratios: Mapping[str, float] | None = None,
                    seed: int = 0) -> dict[int, np.ndarray]:
    """``n`` trajectories from ``files`` with the level counts of :func:`level_counts`.

    Args:
        files: pde_lab files of one split (several levels, possibly several files per level).
        n: number of trajectories; ``None`` = the most the levels allow at these ratios.
        ratios: level → fraction (sums to 1); ``None`` = each level's share of the trajectories.
        seed: seeds the per-level orders (see the module docstring).
    Returns:
        file number → sorted trajectory indices of that file (the ``trajectories`` argument of
        ``FieldDataset``).
    """
    levels, costs = _read_costs(files)
    ratios = check_ratios(ratios, list(dict.fromkeys(levels))) if ratios is not None else _default_ratios(levels, costs)
    orders = _level_orders(levels, costs, seed)
    if n is None:
        n = most_samples(ratios, {k: len(v) for k, v in orders.items()})
    if n < 1:
        raise UserError(f"number of training trajectories must be positive, got {n}")
    counts = level_counts(ratios, n)
    for level, c in counts.items():
        if c > len(orders[level]):
            raise UserError(f"level {level!r} needs {c} trajectories for n={n} at ratio {ratios[level]:g} "
                            f"but the files hold {len(orders[level])}")
    return _as_selection([orders[level][:c] for level, c in counts.items()], len(files))


def select_by_budget(files: Sequence[str | Path], budget_seconds: float, ratios: Mapping[str, float] | None = None,
                     seed: int = 0, share: Literal["count", "compute"] = "count") -> dict[int, np.ndarray]:
    """Trajectories whose summed recorded generation time stays within ``budget_seconds``.

    Args:
        files: pde_lab files of one split; their ``trajectories/wall_time`` is the cost.
        budget_seconds: the generation-compute budget (seconds of classical-solver time).
        ratios: level → fraction (sums to 1); ``None`` = each level's share of the trajectories.
        seed: seeds the per-level orders (see the module docstring).
        share: what the ratios split. ``"count"`` (default): the *number* of trajectories per level
            follows the ratios (as in a fixed-count study, so the two arms mean the same α), and
            trajectories are added one at a time, always to the level furthest below its share,
            until the next one would exceed the budget. ``"compute"``: each level gets
            ``ratio * budget`` seconds and takes trajectories in its order while they fit.
    Returns:
        file number → sorted trajectory indices, as :func:`select_by_count`. The summed cost never
        exceeds the budget; what is left is less than one more trajectory's cost (``count``), or
        than one trajectory per level (``compute``).

    Raises :class:`UserError` when a level's trajectories run out before the budget is used (the
    ratios could then not be kept), or when the files record no cost.
    """
    if share not in SHARES:
        raise UserError(f"unknown budget share {share!r}; allowed: {', '.join(SHARES)}")
    try:
        budget = float(budget_seconds)
    except (TypeError, ValueError):
        raise UserError(f"compute budget must be a number of seconds, got {budget_seconds!r}") from None
    if not math.isfinite(budget) or budget <= 0:
        raise UserError(f"compute budget must be a positive number of seconds, got {budget_seconds!r}")
    levels, costs = _read_costs(files)
    if not any(np.any(c > 0) for c in costs):
        raise UserError("the files record no generation cost (trajectories/wall_time is all zero), so a compute "
                        "budget cannot be applied; use a sample count instead")
    ratios = check_ratios(ratios, list(dict.fromkeys(levels))) if ratios is not None else _default_ratios(levels, costs)
    orders = _level_orders(levels, costs, seed)
    level_cost = {lv: np.array([costs[k][i] for k, i in orders[lv]]) for lv in orders}

    if share == "compute":
        picks = []
        for level, r in ratios.items():
            c = level_cost[level]
            cum = np.cumsum(c)
            # A level given no share takes nothing, not even trajectories recorded as free (imported
            # files record a cost of 0), as in the "count" share.
            take = int(np.searchsorted(cum, r * budget, side="right")) if r > 0 else 0
            # out of data only if the unspent share would still buy one more of its trajectories
            if take == len(c) and r > 0 and r * budget - cum[-1] >= c.min():
                raise UserError(f"level {level!r} holds {cum[-1]:.4g} s of recorded compute, less than its share "
                                f"{r * budget:.4g} s of the budget; lower the budget or generate more {level!r} data")
            picks.append(orders[level][:take])
        return _as_selection(picks, len(files))

    names = [k for k, r in ratios.items() if r > 0]
    counts = {k: 0 for k in names}
    spent, n = 0.0, 0
    while True:
        # The level furthest below its share of n + 1 samples gets the next one: this keeps every
        # count within one of ratio * n at every n, so stopping anywhere honours the ratios.
        n1 = n + 1
        nxt = max(names, key=lambda k: (ratios[k] * n1 - counts[k], -names.index(k)))
        if counts[nxt] == len(level_cost[nxt]):
            if budget - spent < level_cost[nxt].min():
                break  # the budget is spent: what is left would not buy another trajectory
            raise UserError(f"level {nxt!r} ran out after {counts[nxt]} trajectories with "
                            f"{budget - spent:.4g} s of the budget left; lower the budget or generate "
                            f"more {nxt!r} data")
        cost = level_cost[nxt][counts[nxt]]
        if spent + cost > budget:
            break
        spent += cost
        counts[nxt] += 1
        n = n1
    if n == 0:
        raise UserError(f"compute budget {budget:g} s is smaller than the first trajectory's cost")
    return _as_selection([orders[k][:c] for k, c in counts.items()], len(files))


def selection_summary(files: Sequence[str | Path], selection: Mapping[int, Sequence[int]]) -> dict[str, dict]:
    """Level → ``{"n": trajectories, "compute_s": summed wall time}`` of a selection."""
    levels, costs = _read_costs(files)
    out: dict[str, dict] = {}
    for k, (level, c) in enumerate(zip(levels, costs)):
        idx = np.asarray(selection.get(k, np.arange(len(c))), dtype=np.int64)
        s = out.setdefault(level, {"n": 0, "compute_s": 0.0})
        s["n"] += int(len(idx))
        s["compute_s"] += float(c[idx].sum())
    return out


def select_training_set(files: Sequence[str | Path], ratios: Mapping[str, float] | None = None,
                        n: int | None = None, budget_seconds: float | None = None,
                        share: Literal["count", "compute"] = "count", seed: int = 0) -> dict[int, np.ndarray] | None:
    """The trajectories a training run uses, from its config's ``level_mix``, ``n_train``,
    ``compute_budget`` and ``budget_share``; ``None`` (every trajectory) when all three are unset.

    ``n`` and ``budget_seconds`` exclude each other; with neither, ``ratios`` alone takes the most
    trajectories the levels allow at those ratios (:func:`select_by_count` with ``n=None``).
    """
    if n is not None and budget_seconds is not None:
        raise UserError(f"give a sample count (n_train={n}) or a compute budget (compute_budget={budget_seconds}), "
                        f"not both")
    if budget_seconds is not None:
        return select_by_budget(files, budget_seconds, ratios, seed=seed, share=share)
    if n is not None or ratios is not None:
        return select_by_count(files, n, ratios, seed=seed)
    return None
