"""Solved batches as the generation engine stores them: in memory, in part files, with checksums.

A *part file* holds one work unit (a batch of consecutive trajectories of one split and level) while a
dataset is being generated. It is written to a temporary name, flushed to disk and renamed, so a part
file that exists is whole; each trajectory of each field carries a CRC-32 of its float32 bytes, so a
part damaged after the fact is detected when it is read back. Part files are uncompressed ``.npz``
archives (suffix ``.part``, ``format = pde_lab_part``), not HDF5: plain file writes fail cleanly with
``OSError`` on a full disk, where h5py 3.16 (HDF5 2.0.0) was seen to crash the process (segfault)
closing a file whose write had failed; and no reader or validator mistakes one for a dataset file.
"""
from __future__ import annotations

import errno
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..pdes.base import PDE, Instance, SolveResult

PART_FORMAT = "pde_lab_part"
CHECKSUM_ALGORITHM = "crc32"
_GROUPS = ("fields", "params", "dimensionless", "per_sample", "checksums")


class PartError(Exception):
    """A part file is missing, unreadable, damaged or not the unit it claims to be."""


def trajectory_checksums(data: np.ndarray) -> np.ndarray:
    """CRC-32 of each trajectory's little-endian float32 bytes (C order).

    Args:
        data: ``(B, ...)`` array; converted to float32 first, as the files store it.

    Returns:
        ``(B,)`` uint32 checksums.
    """
    arr = np.ascontiguousarray(data, dtype="<f4")
    return np.array([zlib.crc32(arr[i].tobytes()) for i in range(arr.shape[0])], dtype=np.uint32)


@dataclass
class Batch:
    """``B`` solved trajectories exactly as they are stored.

    Attributes:
        fields: name → float32 ``(B, [T,] *space[, D])``.
        times: ``(T,)`` float64 output times, or ``None`` for a steady problem.
        params: parameter name → float64 ``(B,)``.
        dimensionless: name → float64 ``(B,)``.
        seeds: uint64 ``(B,)`` per-sample seeds.
        steps: int64 ``(B,)`` solver steps.
        per_sample: name → float64 ``(B,)`` solver settings that differ per sample.
        settings: solver settings shared by the batch (JSON-serialisable).
        wall_time: seconds the batched solve took (the whole batch).
        checksums: field name → uint32 ``(B,)`` CRC-32 per trajectory.
    """

    fields: dict[str, np.ndarray]
    times: np.ndarray | None
    params: dict[str, np.ndarray]
    dimensionless: dict[str, np.ndarray]
    seeds: np.ndarray
    steps: np.ndarray
    per_sample: dict[str, np.ndarray]
    settings: dict[str, Any]
    wall_time: float
    checksums: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        """Number of trajectories ``B``."""
        return len(self.seeds)

    @classmethod
    def from_solve(cls, pde: PDE, instances: Sequence[Instance], result: SolveResult, seeds: Sequence[int],
                   wall_time: float) -> "Batch":
        """Convert a batched solve to stored dtypes; refuses non-finite fields (a blow-up is never stored)."""
        fields = {}
        for fs in pde.fields:
            data = np.asarray(result.fields[fs.name])
            if not np.all(np.isfinite(data)):
                raise RuntimeError(f"solver returned non-finite values in field {fs.name!r}; not stored")
            fields[fs.name] = np.ascontiguousarray(data, dtype=np.float32)
        dimless = [pde.dimensionless(inst.params, inst.inputs) for inst in instances]
        names = sorted(dimless[0]) if dimless else []
        return cls(
            fields=fields,
            times=None if result.times is None else np.asarray(result.times, dtype=np.float64),
            params={p.name: np.array([inst.params[p.name] for inst in instances], dtype=np.float64)
                    for p in pde.parameters},
            dimensionless={k: np.array([d[k] for d in dimless], dtype=np.float64) for k in names},
            seeds=np.asarray(seeds, dtype=np.uint64),
            steps=np.asarray(result.steps, dtype=np.int64),
            per_sample={k: np.asarray(v, dtype=np.float64) for k, v in sorted(result.per_sample.items())},
            settings=dict(result.settings),
            wall_time=float(wall_time),
            checksums={k: trajectory_checksums(v) for k, v in fields.items()},
        )


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy values in solver settings."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened or synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):  # file systems without directory sync
            raise
    finally:
        os.close(fd)


def write_part(path: Path, batch: Batch, meta: Mapping[str, Any]) -> Path:
    """Write ``batch`` to ``path`` atomically: temporary file, fsync, rename, fsync of the directory.

    ``meta`` (JSON-serialisable: unit id, split, level, start, stop) is stored so a part can be checked
    against the unit it is read for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"format": np.array(PART_FORMAT), "meta": np.array(json.dumps(dict(meta), sort_keys=True)),
              "settings": np.array(json.dumps(batch.settings, sort_keys=True, default=json_default)),
              "wall_time": np.array(batch.wall_time), "checksum_algorithm": np.array(CHECKSUM_ALGORITHM),
              "seeds": batch.seeds, "steps": batch.steps}
    if batch.times is not None:
        arrays["times"] = batch.times
    for group in _GROUPS:
        for name, value in getattr(batch, group).items():
            arrays[f"{group}/{name}"] = value
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def read_part(path: Path, expect: Mapping[str, Any] | None = None) -> Batch:
    """Read a part file back and verify it; raises :class:`PartError` if it is not whole and correct.

    ``expect``: meta values the part must carry (e.g. its unit id and index range).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            items = {k: z[k] for k in z.files}  # reading each member checks its zip CRC
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise PartError(f"{path}: unreadable or damaged ({e.__class__.__name__})") from None
    try:
        if str(items["format"]) != PART_FORMAT:
            raise PartError(f"{path}: not a part file")
        meta = json.loads(str(items["meta"]))
        for k, v in (expect or {}).items():
            if meta.get(k) != v:
                raise PartError(f"{path}: {k} is {meta.get(k)!r}, expected {v!r}")
        groups = {g: {k.split("/", 1)[1]: v for k, v in items.items() if k.startswith(g + "/")} for g in _GROUPS}
        batch = Batch(times=items.get("times"), seeds=items["seeds"], steps=items["steps"],
                      settings=json.loads(str(items["settings"])), wall_time=float(items["wall_time"]), **groups)
    except (KeyError, ValueError, TypeError) as e:
        raise PartError(f"{path}: damaged ({e.__class__.__name__}: {e})") from None
    for name, data in batch.fields.items():
        stored = batch.checksums.get(name)
        if stored is None or not np.array_equal(trajectory_checksums(data), stored):
            raise PartError(f"{path}: checksum mismatch in field {name!r}")
    if set(batch.checksums) != set(batch.fields) or any(len(v) != batch.size for v in batch.fields.values()):
        raise PartError(f"{path}: fields and checksums do not match")
    return batch
