"""Generate a multi-difficulty dataset: sample instances, solve them in batches, write HDF5 files.

The work is cut into units that are solved (in this process or in ``workers`` spawned ones), stored
as checksummed part files in a hidden directory, then assembled into the final files; a killed run
resumes from its finished units and ends with the same bytes (see :mod:`.engine`). Nothing appears
under the output name until every file is complete and verified.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import UserError, check_positive
from ..pdes import get_pde
from . import engine, schema
from .layout import check_overwritable, file_in_the_way
from .lock import DirectoryLock
from .parts import write_part


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
        device: where batched solvers run (``cpu``, ``cuda``, ``cuda:N``, or ``auto``: CUDA when
            available); the files record the device used.
        workers: processes solving units in parallel (one thread each); does not change the data.
        shard: ``"i/N"`` or ``(i, N)``: generate only units ``i, i+N, i+2N, ...`` into a shard
            directory for ``pde-lab merge``; ``None``: the whole dataset.
        solver_options: keyword arguments of the PDE family's constructor (its solver settings,
            e.g. ``{"solver_factor": 2}`` for ``navier_stokes_2d``); they change the data, so they are
            part of the stored ``generation_config``.
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
    solver_options: dict = field(default_factory=dict)
    workers: int = 1
    shard: str | tuple[int, int] | None = None


MAX_SEED = 2**63 - 1  # the dataset seed is stored as an int64 HDF5 attribute


def sample_seed(dataset_seed: int, level: str, split: str, index: int) -> int:
    """The seed of one sample, a pure function of (dataset seed, level, split, index).

    Names enter through CRC-32 so the seed of a sample does not depend on which other levels or
    splits are generated alongside it.
    """
    ss = np.random.SeedSequence([dataset_seed, zlib.crc32(level.encode()), zlib.crc32(split.encode()), index])
    return int(ss.generate_state(1, np.uint64)[0])


def _check(config: GenerateConfig):
    if not isinstance(config.solver_options, dict):
        raise UserError(f"solver_options must be a dict of constructor arguments, got {config.solver_options!r}")
    pde = get_pde(config.pde, **config.solver_options)
    if config.levels is not None and len(config.levels) == 0:
        raise UserError(f"no levels given; name at least one of {', '.join(pde.levels)} (or leave levels out for all)")
    levels = list(config.levels) if config.levels is not None else list(pde.levels)
    for lv in levels:
        pde.level(lv)
    if len(set(levels)) != len(levels):
        raise UserError(f"levels repeat: {','.join(levels)}")
    for name in ("n_train", "n_valid", "n_test"):
        check_positive(name, getattr(config, name), allow_zero=True)
    if config.n_train + config.n_valid + config.n_test == 0:
        raise UserError("n_train, n_valid and n_test are all 0: nothing to generate")
    check_positive("batch_size", config.batch_size)
    check_positive("workers", config.workers)
    if config.resolution is not None:
        check_positive("resolution", config.resolution)
        if config.resolution < 8:
            raise UserError(f"resolution must be at least 8, got {config.resolution}")
    if not isinstance(config.seed, (int, np.integer)) or not 0 <= config.seed <= MAX_SEED:
        raise UserError(f"seed must be an integer in 0 .. {MAX_SEED} (stored as int64), got {config.seed!r}")
    device = _check_device(config.device)
    shard = engine.parse_shard(config.shard)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory")
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise UserError(f"output {out} cannot be made: {blocking} is a file, not a directory")
    return pde, levels, shard, device


def _check_device(device: str) -> str:
    """``device`` checked, with ``auto`` resolved to ``cuda`` or ``cpu``."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return device


def generate(config: GenerateConfig) -> Path:
    """Generate the dataset described by ``config``; returns the output directory.

    Layout: ``<out>/<split>/<level>.h5``, one file per split and level; with ``config.shard`` a
    shard directory of part files for :func:`~pde_lab.datasets.merge.merge_shards`. Running the same
    config again resumes an interrupted run, and does nothing if ``out`` is already complete. A
    second process writing the same ``out`` is refused (:class:`UserError`).
    """
    pde, levels, shard, device = _check(config)
    resolution = config.resolution or pde.default_resolution
    grid = pde.grid(resolution)
    resolved = dataclasses.asdict(config)
    # A mesh's shape is its node count, not the resolution it was built from.
    resolved.update(levels=levels, resolution=getattr(grid, "resolution", grid.shape[0]), device=device)
    for key in ("out", "overwrite", "progress", "workers", "shard"):  # do not change the data
        resolved.pop(key)
    counts = {"train": config.n_train, "valid": config.n_valid, "test": config.n_test}
    units = engine.plan_units(levels, counts, config.batch_size)
    mine = [u for u in units if shard is None or u.id % shard[1] == shard[0]]
    manifest = {"engine": engine.ENGINE_VERSION, "config": resolved, "shard": list(shard) if shard else None,
                "n_units": len(units)}
    out = Path(config.out)
    with DirectoryLock(out):
        if not config.overwrite and _finished(out, manifest, units, mine, shard is not None):
            shutil.rmtree(engine.partial_path(out), ignore_errors=True)
            if shard is None:
                (out / engine.ENGINE_FILE).unlink(missing_ok=True)  # left if a run died right after its rename
            return out
        check_overwritable(out, config.overwrite, hint=" (it is not the finished result of this command)")
        tmp = engine.partial_path(out)
        _open_partial(tmp, manifest, config.overwrite)
        grids = {lv: pde.level_grid(lv, resolution) for lv in levels}
        done = _done_units(tmp, mine, shard is not None)
        todo = [u for u in mine if u.id not in done]
        desc = f"generate {pde.name}" + (f" shard {shard[0]}/{shard[1]}" if shard else "")
        bar = engine.progress_bar(sum(u.size for u in mine), sum(u.size for u in mine if u.id in done), desc,
                                  config.progress)

        def store(unit: engine.Unit, batch) -> None:
            write_part(engine.part_path(tmp, unit), batch, unit.meta())
            bar.update(unit.size)
            bar.set_postfix(split=unit.split, level=unit.level)

        try:
            engine.run_units(pde, grids, todo, config.seed, device, config.workers, store)
            if shard is None:
                engine.assemble(tmp, pde, grids, units, resolved, lambda u: engine.part_path(tmp, u),
                                delete_parts=True, on_file=lambda sp, lv: bar.set_postfix_str(f"assembling {sp}/{lv}"))
                shutil.rmtree(tmp / engine.PARTS_DIR, ignore_errors=True)
        finally:
            bar.close()
        engine.replace_dir(tmp, out)
        if shard is None:
            (out / engine.ENGINE_FILE).unlink(missing_ok=True)
    return out


def _open_partial(tmp: Path, manifest: dict, overwrite: bool) -> None:
    """Create the hidden build directory, or check that an existing one belongs to this command."""
    if tmp.exists():
        found = engine.read_manifest(tmp)
        diffs = engine.manifest_differences(found, manifest) if found is not None else []
        # A run that failed before finishing any unit (a bad option found by the solver) holds no
        # work: the corrected command replaces it instead of being told to finish it.
        if found is None or (diffs and (overwrite or not _holds_work(tmp))):
            shutil.rmtree(tmp)
        elif diffs:
            raise UserError(f"{tmp} holds an unfinished generation with a different config ({'; '.join(diffs)}); "
                            "rerun that command to finish it, or pass --overwrite to discard it")
    if not tmp.exists():
        tmp.mkdir(parents=True)
        engine.write_manifest(tmp, manifest)
    engine.clean_temporaries(tmp)


def _holds_work(tmp: Path) -> bool:
    """Whether a build directory holds a finished unit (a part file) or an assembled file."""
    return any((tmp / engine.PARTS_DIR).glob("*.part")) or any(tmp.rglob("*.h5"))


def _done_units(tmp: Path, mine: list, sharded: bool) -> set[int]:
    """Ids of units a previous run finished (checked part files, or verified assembled files)."""
    done = set()
    for (split, level), us in engine.file_groups(mine).items():
        if not sharded and engine.assembled_ok(tmp, split, level):
            done.update(u.id for u in us)
            continue
        done.update(u.id for u in us if engine.part_ok(tmp, u))
    return done


def _finished(out: Path, manifest: dict, units: list, mine: list, sharded: bool) -> bool:
    """Whether ``out`` already holds exactly what this command would write (so running it again is a no-op)."""
    from .validate import validate_file

    if not out.is_dir():
        return False
    if sharded:
        found = engine.read_manifest(out)
        return (found is not None and not engine.manifest_differences(found, manifest)
                and all(engine.part_ok(out, u, delete_bad=False) for u in mine))
    expected = {schema.file_path(out, s, lv) for s, lv in engine.file_groups(units)}
    if set(out.rglob("*.h5")) != expected:
        return False
    for path in sorted(expected):
        if validate_file(path, check_values=False):
            return False
        with h5py.File(path, "r") as f:
            try:
                if json.loads(f.attrs["generation_config"]) != manifest["config"]:
                    return False
            except (KeyError, ValueError, TypeError):
                return False
    return True
