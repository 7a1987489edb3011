"""Join the shard directories of ``generate --shard i/N`` into one dataset.

Each shard directory holds the generation manifest (``generation.json``: resolved config, shard
``[i, N]``, number of units) and the checksummed part files of its units. Merging checks that the
shards come from one config, that ``0 .. N-1`` are all present exactly once and that every unit's
part reads back whole, then assembles the files exactly as a single-process run would (same
``generation_config``, same field bytes) and validates them before the output is renamed into place.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from ..errors import UserError
from ..pdes import get_pde
from . import engine
from .layout import check_overwritable
from .lock import DirectoryLock
from .parts import PartError


def _load_shards(shard_dirs: Sequence[str | Path]) -> tuple[dict, dict[int, Path]]:
    if not shard_dirs:
        raise UserError("merge needs at least one shard directory")
    manifests, by_index = [], {}
    for d in map(Path, shard_dirs):
        if not d.is_dir():
            raise UserError(f"shard directory {d} does not exist")
        m = engine.read_manifest(d)
        if m is None or not isinstance(m, dict) or not isinstance(m.get("config"), dict):
            raise UserError(f"{d} is not a finished shard directory (no readable {engine.ENGINE_FILE}); "
                            "shards are written by `pde-lab generate --shard i/N`")
        if m.get("engine") != engine.ENGINE_VERSION:
            raise UserError(f"{d}: shard engine version {m.get('engine')!r}, this pde_lab reads {engine.ENGINE_VERSION}")
        shard = m.get("shard")
        if not (isinstance(shard, list) and len(shard) == 2 and all(isinstance(v, int) for v in shard)):
            raise UserError(f"{d} holds a whole generation, not a shard (its manifest has shard={shard!r})")
        if manifests:
            diffs = engine.manifest_differences({**manifests[0], "shard": None}, {**m, "shard": None})
            if diffs:
                raise UserError(f"{d} comes from a different generation than {shard_dirs[0]}: {'; '.join(diffs)}")
            if shard[1] != manifests[0]["shard"][1]:
                raise UserError(f"{d} is shard {shard[0]}/{shard[1]} but {shard_dirs[0]} is one of "
                                f"{manifests[0]['shard'][1]} shards")
        if shard[0] in by_index:
            raise UserError(f"shard {shard[0]}/{shard[1]} given twice: {by_index[shard[0]]} and {d}")
        manifests.append(m)
        by_index[shard[0]] = d
    n = manifests[0]["shard"][1]
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise UserError(f"missing shard(s) {', '.join(f'{i}/{n}' for i in missing)}; all {n} are needed")
    return manifests[0], by_index


def merge_shards(shard_dirs: Sequence[str | Path], out: str | Path, overwrite: bool = False,
                 progress: bool = True) -> Path:
    """Assemble the shards of one generation into the dataset directory ``out``; returns ``out``.

    Raises :class:`UserError` for shards of different configs, a missing or repeated shard, a
    damaged part file, or an existing non-empty ``out`` without ``overwrite``. The shard directories
    are only read.
    """
    manifest, by_index = _load_shards(shard_dirs)
    cfg = manifest["config"]
    try:
        pde = get_pde(cfg["pde"], **cfg.get("solver_options", {}))
        levels = list(cfg["levels"])
        counts = {"train": int(cfg["n_train"]), "valid": int(cfg["n_valid"]), "test": int(cfg["n_test"])}
        units = engine.plan_units(levels, counts, int(cfg["batch_size"]))
        resolution = int(cfg["resolution"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"shard manifest of {by_index[0]} is malformed ({e.__class__.__name__}: {e})") from None
    if len(units) != manifest["n_units"]:
        raise UserError(f"shard manifest of {by_index[0]} lists {manifest['n_units']} units but its config "
                        f"makes {len(units)}")
    n_shards = len(by_index)

    def part_of(u: engine.Unit) -> Path:
        return engine.part_path(by_index[u.id % n_shards], u)

    missing = [u for u in units if not part_of(u).is_file()]
    if missing:
        u = missing[0]
        raise UserError(f"{len(missing)} unit(s) missing from the shards, e.g. unit {u.id} ({u.split}/{u.level} "
                        f"trajectories {u.start}..{u.stop - 1}) in {by_index[u.id % n_shards]}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory")
    with DirectoryLock(out):
        check_overwritable(out, overwrite)
        tmp = engine.partial_path(out)
        if tmp.exists():
            shutil.rmtree(tmp)  # an interrupted merge: assembling again is cheap
        tmp.mkdir(parents=True)
        grids = {lv: pde.level_grid(lv, resolution) for lv in levels}
        bar = tqdm(total=len(engine.file_groups(units)), desc=f"merge {n_shards} shards", unit="file",
                   disable=not progress)
        try:
            engine.assemble(tmp, pde, grids, units, cfg, part_of, delete_parts=False,
                            on_file=lambda sp, lv: bar.update(1))
        except PartError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"damaged shard: {e}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            bar.close()
        engine.replace_dir(tmp, out)
    return out
