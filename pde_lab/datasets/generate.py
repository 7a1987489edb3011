"""Generate a multi-difficulty dataset: sample instances, solve them in batches, write HDF5 files.

The output directory is built under a temporary sibling name and renamed into place when every file
is complete, so an interrupted run never leaves a directory that looks finished.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import UserError, check_positive
from ..pdes import get_pde
from . import schema
from .writer import DatasetWriter


@dataclass
class GenerateConfig:
    """Everything that determines a generated dataset (stored, resolved, in every file).

    Attributes:
        pde: registered PDE name.
        levels: difficulty levels to generate (None: all the PDE declares).
        n_train, n_valid, n_test: trajectories per level and split.
        resolution: grid points per axis (None: the PDE's default).
        seed: dataset seed; each sample's seed derives from (seed, level, split, index).
        batch_size: instances solved together; results do not depend on it.
        device: where batched solvers run (``cpu``, ``cuda``).
    """

    pde: str
    out: str
    levels: list[str] | None = None
    n_train: int = 64
    n_valid: int = 8
    n_test: int = 16
    resolution: int | None = None
    seed: int = 0
    batch_size: int = 16
    device: str = "cpu"
    overwrite: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)


def sample_seed(dataset_seed: int, level: str, split: str, index: int) -> int:
    """The seed of one sample, a pure function of (dataset seed, level, split, index).

    Names enter through CRC-32 so the seed of a sample does not depend on which other levels or
    splits are generated alongside it.
    """
    ss = np.random.SeedSequence([dataset_seed, zlib.crc32(level.encode()), zlib.crc32(split.encode()), index])
    return int(ss.generate_state(1, np.uint64)[0])


def _check(config: GenerateConfig):
    pde = get_pde(config.pde)
    levels = config.levels if config.levels else list(pde.levels)
    for lv in levels:
        pde.level(lv)
    if len(set(levels)) != len(levels):
        raise UserError(f"levels repeat: {','.join(levels)}")
    for name in ("n_train", "n_valid", "n_test"):
        check_positive(name, getattr(config, name), allow_zero=name != "n_train")
    check_positive("batch_size", config.batch_size)
    if config.resolution is not None:
        check_positive("resolution", config.resolution)
        if config.resolution < 8:
            raise UserError(f"resolution must be at least 8, got {config.resolution}")
    if config.seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {config.seed}")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise UserError(f"output {out} exists and is not empty; pass --overwrite to replace it")
    return pde, levels


def generate(config: GenerateConfig) -> Path:
    """Generate the dataset described by ``config``; returns the output directory.

    Layout: ``<out>/<split>/<level>.h5``, one file per split and level.
    """
    pde, levels = _check(config)
    grid = pde.grid(config.resolution or pde.default_resolution)
    resolved = dataclasses.asdict(config)
    resolved.update(levels=levels, resolution=grid.shape[0])
    for key in ("out", "overwrite", "progress"):  # do not change the data
        resolved.pop(key)
    out = Path(config.out)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    counts = {"train": config.n_train, "valid": config.n_valid, "test": config.n_test}
    total = sum(counts.values()) * len(levels)
    bar = tqdm(total=total, desc=f"generate {pde.name}", unit="sample", disable=not config.progress)
    try:
        for split in schema.SPLITS:
            n = counts[split]
            if n == 0:
                continue
            for level in levels:
                _generate_file(pde, grid, level, split, n, config, resolved, tmp, bar)
        bar.close()
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _generate_file(pde, grid, level, split, n, config, resolved, tmp, bar) -> None:
    writer = DatasetWriter(schema.file_path(tmp, split, level), pde, grid, level, split, n, config.seed, resolved)
    try:
        for start in range(0, n, config.batch_size):
            idx = range(start, min(n, start + config.batch_size))
            seeds = [sample_seed(config.seed, level, split, i) for i in idx]
            instances = [pde.sample(level, np.random.default_rng(s), grid) for s in seeds]
            t0 = time.perf_counter()
            result = pde.solve(instances, grid, device=config.device)
            wall = time.perf_counter() - t0
            writer.write_batch(start, instances, result, seeds, wall)
            bar.update(len(instances))
            bar.set_postfix(level=level, split=split)
        writer.close()
    except BaseException:
        writer.abort()
        raise
