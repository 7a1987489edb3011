"""Where a dataset's files are, and in which order commands list them.

A dataset directory holds ``<split>/<level>.h5`` (:func:`~pde_lab.datasets.schema.file_path`). Files
are listed by split (train, valid, test) and then in the order the levels were generated (the
``levels`` of each file's ``generation_config``, usually easy → hard), not alphabetically (easy,
hard, medium): tables and plots then read in order of difficulty.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import h5py

from ..errors import UserError
from . import schema
from .writer import attr_value


def generation_rank(file: Path) -> tuple[int, str]:
    """``(position of the file's level among its generation's levels, level)``; levels a file's
    ``generation_config`` does not order (imported or hand-made files) sort after, by name."""
    try:
        with h5py.File(file, "r") as f:
            level = str(attr_value(f.attrs["level"]))
            order = json.loads(attr_value(f.attrs["generation_config"])).get("levels") or []
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return (1 << 30, file.stem)
    return (order.index(level) if level in order else 1 << 30, level)


def in_level_order(files: Sequence[Path]) -> list[Path]:
    """``files`` of one split in generation order of their levels (see the module docstring)."""
    return sorted(files, key=generation_rank)


def dataset_files(path: str | Path) -> list[Path]:
    """The ``.h5`` files of a dataset directory (by split, then level order), or ``[path]`` for a file.

    Raises:
        UserError: when ``path`` does not exist, or is a training run directory (its
            ``predictions_<split>.h5`` are not dataset files), naming the path.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.is_file():
        return [path]
    if (path / "config.yaml").is_file():
        raise UserError(f"{path} is a training run directory (it has config.yaml), not a dataset; "
                        f"pass the dataset it was trained on (its config.yaml names it under 'data')")
    splits = [s for s in schema.SPLITS if (path / s).is_dir()]
    files = [f for s in splits for f in in_level_order(list((path / s).glob("*.h5")))]
    known = set(files)
    # Files outside the split folders (exports, hand-placed files) are still dataset members to check.
    return files + sorted(f for f in path.rglob("*.h5") if f not in known)


def file_in_the_way(path: str | Path) -> Path | None:
    """The first ancestor of ``path`` that exists as a file, which makes ``path`` impossible to
    create; ``None`` when there is none."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)


#: What a dataset directory (or a shard of one) may hold besides nothing: its split folders and the
#: generation engine's record and parts.
DATASET_ENTRIES = frozenset({*schema.SPLITS, "generation.json", "parts"})


def check_overwritable(out: Path, overwrite: bool, allowed: frozenset[str] = DATASET_ENTRIES,
                       what: str = "a pde_lab dataset", hint: str = "") -> None:
    """Refuse to write into a non-empty ``out`` unless ``overwrite``, and even then if it holds anything
    but ``allowed`` entries: ``--overwrite`` deletes what is there, so it must only ever delete what
    pde_lab wrote, never a stray folder of other files.

    Args:
        out: the output directory (absent or empty passes).
        overwrite: the user's ``--overwrite``.
        allowed: entry names that ``what`` consists of.
        what: how the refusal names the kind of directory.
        hint: appended to the "not empty" refusal.

    Raises:
        UserError: ``out`` is not empty and ``overwrite`` is false; or it holds entries that are not
            ``allowed`` (``out`` and up to five of them named).
    """
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UserError(f"output {out} exists and is not empty; pass --overwrite to replace it{hint}")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in allowed)
    if foreign:
        raise UserError(f"refusing to overwrite {out}: it holds {', '.join(foreign[:5])}"
                        f"{' …' if len(foreign) > 5 else ''}, which {what} does not; pick another --out")
