"""The generation engine: work units, resumable solving over processes, shards and final assembly.

A dataset is cut into *work units*: consecutive trajectories ``start .. stop-1`` of one split and
level, ``batch_size`` at a time, numbered in a fixed order (split, then level, then start). Every
sample's seed is a pure function of (dataset seed, level, split, index) and results do not depend on
how samples are batched, so a unit's bytes do not depend on which process solves it, when, or after
how many interruptions. That is what makes resume, ``--workers`` and ``--shard`` exact.

On disk, while generating ``OUT``::

    .OUT.lock                 flock held by the one writer (see lock.py)
    .OUT.partial/
        generation.json       resolved config + shard: a resume must match it
        parts/000017.part     one finished unit (atomic write, per-trajectory checksums)
        train/easy.h5         a file assembled from its parts, complete and verified

A unit is done when its part file reads back with matching checksums, or when its file has been
assembled and validates. When every unit is done the files are assembled, verified and the hidden
directory is renamed to ``OUT``; a shard (``--shard i/N``) instead renames its directory of parts,
which ``pde-lab merge`` assembles later. Nothing under ``OUT`` exists until it is complete, and the
same command run again on a complete ``OUT`` changes nothing.
"""
from __future__ import annotations

import concurrent.futures as cf
import errno
import json
import multiprocessing
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import SolverFailure, UserError
from ..pdes.base import PDE
from . import schema
from .parts import Batch, PartError, fsync_dir, read_part

ENGINE_FILE = "generation.json"
PARTS_DIR = "parts"
ENGINE_VERSION = 1


@dataclass(frozen=True)
class Unit:
    """Trajectories ``start .. stop-1`` of one split and level, solved as one batch."""

    id: int
    split: str
    level: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def meta(self) -> dict[str, Any]:
        """What a part file records about the unit it holds."""
        return {"unit": self.id, "split": self.split, "level": self.level, "start": self.start, "stop": self.stop}


def plan_units(levels: Sequence[str], counts: Mapping[str, int], batch_size: int) -> list[Unit]:
    """All units of a dataset, numbered in the fixed order split, level, start."""
    units = []
    for split in schema.SPLITS:
        for level in levels:
            for start in range(0, counts.get(split, 0), batch_size):
                units.append(Unit(len(units), split, level, start, min(counts[split], start + batch_size)))
    return units


def file_groups(units: Sequence[Unit]) -> dict[tuple[str, str], list[Unit]]:
    """Units grouped by the file they end up in, ``(split, level)`` → units in index order."""
    groups: dict[tuple[str, str], list[Unit]] = {}
    for u in units:
        groups.setdefault((u.split, u.level), []).append(u)
    return groups


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"i/N"`` (or ``(i, N)``) → ``(i, N)`` with ``0 <= i < N``; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        i, n = (int(t) for t in (text.split("/") if isinstance(text, str) else text))
    except (ValueError, TypeError):
        raise UserError(f"shard must be written i/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"shard {i}/{n}: need N >= 1 and 0 <= i < N")
    return i, n


def partial_path(out: Path) -> Path:
    """The hidden directory a dataset or shard is built in before it is renamed to ``out``."""
    return out.with_name(f".{out.name}.partial")


def part_path(root: Path, unit: Unit) -> Path:
    """Where ``unit``'s part file lives under a partial or shard directory."""
    return Path(root) / PARTS_DIR / f"{unit.id:06d}.part"


def solve_unit(pde: PDE, grid: Any, unit: Unit, dataset_seed: int, device: str) -> Batch:
    """Sample and solve the instances of ``unit``; runs in the main process or in a worker."""
    from .generate import sample_seed

    seeds = [sample_seed(dataset_seed, unit.level, unit.split, i) for i in range(unit.start, unit.stop)]
    instances = [pde.sample(unit.level, np.random.default_rng(s), grid) for s in seeds]
    t0 = time.perf_counter()
    try:
        result = pde.solve(instances, grid, device=device)
    except SolverFailure as err:  # the solver counts instances within the unit; the user knows trajectories
        raise SolverFailure(f"{unit.split}/{unit.level}, trajectories {unit.start}-{unit.stop - 1} (instance i is "
                            f"trajectory {unit.start} + i): {err}") from err
    return Batch.from_solve(pde, instances, result, seeds, time.perf_counter() - t0)


# ---- worker processes ----------------------------------------------------------------------------

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _worker_init(main_pid: int) -> None:
    """One thread per worker, and no orphans: a worker exits when the main process is gone.

    ``PR_SET_PDEATHSIG`` (Linux) only watches the direct parent, which under a fork server is the
    server, and the server in turn waits for its workers; so each worker also polls the main process.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    threading.Thread(target=_exit_when_gone, args=(main_pid,), daemon=True).start()
    import torch

    torch.set_num_threads(1)


def _exit_when_gone(pid: int, interval: float = 0.5) -> None:
    while True:
        time.sleep(interval)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive, owned by someone else (cannot happen for our parent, but harmless)
            pass


def _pool_context():
    """Fresh interpreters, never ``fork`` (forking a process that holds torch/OpenMP threads can hang).

    The fork server imports the heavy modules once and forks each worker from that state, so workers
    start in milliseconds instead of each importing torch; where there is no fork server, spawn.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "pde_lab.datasets.engine"])
        return ctx
    return multiprocessing.get_context("spawn")


@contextmanager
def _single_thread_env() -> Iterator[None]:
    """Thread variables set to 1 while workers start (they read them at import), restored after."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_units(pde: PDE, grids: Mapping[str, Any], units: Sequence[Unit], dataset_seed: int, device: str,
              workers: int, on_done: Callable[[Unit, Batch], None]) -> None:
    """Solve ``units``, calling ``on_done(unit, batch)`` in this process as each one finishes.

    With ``workers > 1`` units are solved in spawned processes (one thread each); the results, and so
    the files, are the same as with one worker. Only this process writes files.
    """
    if workers <= 1 or len(units) <= 1:
        for u in units:
            on_done(u, solve_unit(pde, grids[u.level], u, dataset_seed, device))
        return
    ex = cf.ProcessPoolExecutor(max_workers=min(workers, len(units)), mp_context=_pool_context(),
                                initializer=_worker_init, initargs=(os.getpid(),))
    try:
        with _single_thread_env():  # workers are spawned during submit and read these at start-up
            futures = {ex.submit(solve_unit, pde, grids[u.level], u, dataset_seed, device): u for u in units}
        for fut in cf.as_completed(futures):
            on_done(futures[fut], fut.result())
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


# ---- state of a partial directory ------------------------------------------------------------------

def read_manifest(root: Path) -> dict | None:
    """The ``generation.json`` of a partial or shard directory, or ``None`` if absent or unreadable."""
    try:
        return json.loads((Path(root) / ENGINE_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(root: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``generation.json`` atomically."""
    path = Path(root) / ENGINE_FILE
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def manifest_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two manifests (empty: same generation)."""
    diffs = []
    ca, cb = a.get("config", {}), b.get("config", {})
    for k in sorted(set(ca) | set(cb)):
        if ca.get(k) != cb.get(k):
            diffs.append(f"{k}: {ca.get(k)!r} vs {cb.get(k)!r}")
    for k in ("shard", "n_units", "engine"):
        if a.get(k) != b.get(k):
            diffs.append(f"{k}: {a.get(k)!r} vs {b.get(k)!r}")
    return diffs


def part_ok(root: Path, unit: Unit, delete_bad: bool = True) -> bool:
    """Whether ``unit``'s part under ``root`` exists and reads back whole (a damaged one is deleted if asked)."""
    path = part_path(root, unit)
    if not path.exists():
        return False
    try:
        ok = read_part(path, expect=unit.meta()).size == unit.size
    except PartError:
        ok = False
    if not ok and delete_bad:
        path.unlink(missing_ok=True)
    return ok


def assembled_ok(root: Path, split: str, level: str) -> bool:
    """Whether the file of ``(split, level)`` under ``root`` is assembled and valid; an invalid one is deleted."""
    from .validate import validate_file

    path = schema.file_path(root, split, level)
    if not path.exists():
        return False
    if validate_file(path):
        path.unlink()
        return False
    return True


def clean_temporaries(root: Path) -> None:
    """Remove temporary files a killed writer left behind (``*.tmp<pid>``, ``*.h5.partial``)."""
    for p in list(Path(root).rglob("*.tmp*")) + list(Path(root).rglob("*.h5.partial")):
        if p.is_file():
            p.unlink(missing_ok=True)


# ---- assembly ------------------------------------------------------------------------------------

def assemble(root: Path, pde: PDE, grids: Mapping[str, Any], units: Sequence[Unit], resolved: Mapping[str, Any],
             part_of: Callable[[Unit], Path], delete_parts: bool,
             on_file: Callable[[str, str], None] | None = None) -> None:
    """Copy the parts of every file into ``root/<split>/<level>.h5`` and verify each file.

    Files already assembled (a resumed run) are kept. Each new file is written as ``.h5.partial``,
    marked complete and renamed by the writer, then validated in full (checksums included).
    """
    from .validate import validate_file
    from .writer import DatasetWriter

    todo = [u for (s, lv), us in file_groups(units).items() if not schema.file_path(root, s, lv).exists() for u in us]
    check_free_space(root, sum(part_of(u).stat().st_size for u in todo if part_of(u).exists()))
    for (split, level), us in file_groups(units).items():
        path = schema.file_path(root, split, level)
        if on_file is not None:
            on_file(split, level)
        if not path.exists():
            writer = DatasetWriter(path, pde, grids[level], level, split, us[-1].stop, int(resolved["seed"]), resolved)
            try:
                for u in us:
                    batch = read_part(part_of(u), expect=u.meta())
                    if batch.size != u.size:
                        raise PartError(f"{part_of(u)}: holds {batch.size} trajectories, expected {u.size}")
                    writer.write(u.start, batch)
                writer.close()
            except BaseException:
                writer.abort()
                raise
            errs = validate_file(path)
            if errs:
                path.unlink()
                raise RuntimeError(f"assembled file {path} failed verification: {errs[0]}")
        if delete_parts:
            for u in us:
                part_of(u).unlink(missing_ok=True)


def check_free_space(root: Path, n_bytes: int) -> None:
    """Raise ``OSError(ENOSPC)`` unless ``root`` has room for ``n_bytes`` plus a margin.

    Checked before HDF5 files are written because a write that fails for lack of space can crash
    the process inside HDF5 instead of raising (seen with h5py 3.16); the parts, written with plain
    file I/O, fail cleanly on their own.
    """
    need = int(1.1 * n_bytes) + (1 << 20)
    free = shutil.disk_usage(root).free
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left on device: assembling {root} needs about {need / 2**20:.1f} MiB, "
                                    f"{free / 2**20:.1f} MiB free")


def replace_dir(src: Path, out: Path) -> None:
    """Rename ``src`` to ``out``; an existing ``out`` (empty, or being overwritten) is moved aside first."""
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            if old.exists():
                shutil.rmtree(old)
            os.rename(out, old)
    os.rename(src, out)
    fsync_dir(out.parent)
    if old.exists():
        shutil.rmtree(old)


def progress_bar(total: int, initial: int, desc: str, enabled: bool, unit: str = "sample") -> tqdm:
    """Items-per-second and time-left bar; ``initial`` counts items a resumed run already has."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)
