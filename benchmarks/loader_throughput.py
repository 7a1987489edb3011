"""Streaming from a multi-gigabyte pde_lab file: loader throughput, resident memory, loader vs step time.

    python benchmarks/loader_throughput.py --path /tmp/big.h5            # writes a 2.1 GB file if absent
    python benchmarks/loader_throughput.py --path /tmp/big.h5 --gb 4 --train-steps 300

1. **File.** Writes (or reuses, if valid) a pde_lab file of random float32 trajectories
   (``--res``² grid, ``--frames`` frames, as many trajectories as fit ``--gb``) through
   :class:`~pde_lab.datasets.interop.builder.FileBuilder`, then runs the full validator on it
   (values and checksums included). Random data is enough: the reader's cost does not depend on
   the values.
2. **Loader.** Iterates a ``DataLoader`` over ``FieldDataset`` (window task 1→1, so each item reads
   two frames) in a seeded random order, with ``num_workers`` 0 and 1, each from a cold page cache
   (``posix_fadvise(DONTNEED)`` on this file only) and again warm. Reports items/s, MB/s of field
   data delivered, and the resident memory (VmRSS) of the main process and the worker. A last run
   preloads the file (``FieldDataset(preload=True)``, ``num_workers`` 0) and reports the time the
   preload took besides the items/s from memory.
3. **Training.** Trains the registered FNO for ``--train-steps`` steps with ``num_workers`` 0 and 1,
   timing per step how long the loop waited for the next batch and how long forward, backward
   and the optimizer step took, and sampling VmRSS over time.

On a shared machine absolute times vary from run to run; the resident-memory figures do not.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_lines, pin_threads, table  # noqa: E402

MB = 1 << 20


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: how busy a shared machine was during the run."""
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def evict(path: Path) -> None:
    """Drop this file's pages from the OS page cache, so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def make_file(path: Path, gb: float, res: int, frames: int, seed: int = 0) -> dict:
    import numpy as np

    from pde_lab.datasets.interop.builder import FileBuilder
    from pde_lab.datasets.validate import validate_file

    if path.exists():
        t0 = time.perf_counter()
        errs = validate_file(path, check_values=False)
        if not errs:
            return {"reused": True, "bytes": path.stat().st_size, "write_s": None,
                    "validate_s": time.perf_counter() - t0}
        print(f"{path} exists but is not valid ({errs[0]}); rewriting it")
    n = max(1, int(gb * 1e9 // (frames * res * res * 4)))
    x = np.arange(res) / res
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    b = FileBuilder(path, pde="random_fields", n=n, coords={"x": x, "y": x}, periodic=[True, True],
                    times=np.arange(frames, dtype=float), solver="numpy random (benchmark data)")
    b.add_field("u")
    for i in range(n):
        b.write("u", i, rng.standard_normal((frames, res, res), dtype=np.float32))
    b.set_trajectories(wall_time=rng.uniform(1, 2, n))
    b.close()
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    errs = validate_file(path)  # every value and checksum
    if errs:
        raise SystemExit(f"written file does not validate: {errs[:3]}")
    return {"reused": False, "bytes": path.stat().st_size, "write_s": write_s, "validate_s": time.perf_counter() - t0}


def worker_pids(it) -> list[int]:
    return [w.pid for w in getattr(it, "_workers", [])]


def loader_run(path: Path, workers: int, items: int, batch: int, cold: bool, seed: int = 0,
               preload: bool = False) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from pde_lab.datasets.reader import FieldDataset
    from pde_lab.pdes.base import Task

    if cold:
        evict(path)
    rss0 = rss_mb()
    t_load = time.perf_counter()
    ds = FieldDataset([path], task=Task("window", 1, 1), check=False, preload=preload)
    t_load = time.perf_counter() - t_load
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ds), generator=g)[:items].tolist()
    loader = DataLoader(ds, batch_size=batch, sampler=order, num_workers=workers)
    it = iter(loader)
    pids = worker_pids(it)
    main_rss, work_rss, nbytes, n_items = [], [], 0, 0
    t0 = time.perf_counter()
    for x, y in it:
        nbytes += x.numel() * 4 + y.numel() * 4
        n_items += x.shape[0]  # fewer than ``items`` when the file holds fewer windows
        main_rss.append(rss_mb())
        work_rss.extend(rss_mb(p) for p in pids)
    dt = time.perf_counter() - t0
    return {"workers": workers, "cache": "cold" if cold else "warm", "preload_s": t_load if preload else None,
            "items": n_items, "items_s": n_items / dt, "MB_s": nbytes / MB / dt,
            "rss_start": rss0, "rss_max": max(main_rss), "rss_end": main_rss[-1],
            "worker_rss_max": max(work_rss) if work_rss else None}


def train_run(path: Path, workers: int, steps: int, batch: int, width: int, modes: int, seed: int = 0) -> dict:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from pde_lab.datasets.reader import FieldDataset
    from pde_lab.operators.base import build_model
    from pde_lab.pdes.base import Task
    from pde_lab.training.checkpoint import Normalizer, predict_batch
    from pde_lab.training.trainer import relative_l2

    torch.manual_seed(seed)
    ds = FieldDataset([path], task=Task("window", 1, 1), check=False)
    model = build_model("fno", in_channels=1, out_channels=1, n_dims=2, width=width, modes=modes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    norm = Normalizer.identity(1, 1)
    sampler = RandomSampler(ds, num_samples=steps * batch, generator=torch.Generator().manual_seed(seed))
    evict(path)
    it = iter(DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers))
    pids = worker_pids(it)
    waits, computes, trace = [], [], []
    t_start = time.perf_counter()
    for step in range(steps):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        loss = relative_l2(predict_batch(model, norm, x, 1), y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        waits.append(t1 - t0)
        computes.append(t2 - t1)
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            trace.append((step, round(t2 - t_start, 1), round(rss_mb()), [round(rss_mb(p)) for p in pids]))
    del it
    total = time.perf_counter() - t_start
    skip = min(5, steps // 10)  # the first steps include worker start-up and allocator warm-up
    w, c = waits[skip:], computes[skip:]
    return {"workers": workers, "steps": steps, "wait_ms": 1e3 * sum(w) / len(w), "compute_ms": 1e3 * sum(c) / len(c),
            "wait_frac": sum(w) / (sum(w) + sum(c)), "total_s": total, "trace": trace}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", type=Path, required=True, help="pde_lab file to create or reuse")
    p.add_argument("--gb", type=float, default=2.0, help="size of the file to create, in GB")
    p.add_argument("--res", type=int, default=256, help="grid points per axis (2D)")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--items", type=int, default=1200, help="items per loader run")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=200, help="0 skips the training measurement")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--modes", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    a = p.parse_args(argv)
    pin_threads(a.threads)

    print("\n".join(machine_lines()))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  load average: {loadavg()}")
    info = make_file(a.path, a.gb, a.res, a.frames)
    print(f"file: {a.path}  {info['bytes'] / 1e9:.2f} GB  "
          + ("reused" if info["reused"]
             else f"written in {info['write_s']:.1f} s, full validation {info['validate_s']:.1f} s"))
    from pde_lab.datasets.reader import CHUNK_CACHE_BYTES

    import h5py

    with h5py.File(a.path, "r") as f:  # a reused file keeps its own grid, whatever --res says
        shape = [int(v) for v in f.attrs["spatial_resolution"]]
        n_traj, n_frames = int(f.attrs["n_trajectories"]), len(f["dimensions/time"])
    print(f"{n_traj} trajectories x {n_frames} frames x {'x'.join(map(str, shape))}; reader chunk cache: "
          f"{CHUNK_CACHE_BYTES / MB:.0f} MiB per dataset; item = 2 frames = {2 * 4 * shape[0] * shape[1] / MB:.2f} MiB")

    loads = [loader_run(a.path, w, a.items, a.batch, cold) for w in (0, 1) for cold in (True, False)]
    loads.append(loader_run(a.path, 0, a.items, a.batch, True, preload=True))
    print("\n### Loader alone\n")
    print(table(["num_workers", "page cache", "items/s", "MB/s", "main RSS start → max (MiB)",
                 "worker RSS max (MiB)"],
                [[r["workers"], f"preloaded in {r['preload_s']:.1f} s" if r["preload_s"] is not None else r["cache"],
                  f"{r['items_s']:.0f}", f"{r['MB_s']:.0f}",
                  f"{r['rss_start']:.0f} → {r['rss_max']:.0f}",
                  "-" if r["worker_rss_max"] is None else f"{r['worker_rss_max']:.0f}"] for r in loads]))

    trains = [train_run(a.path, w, a.train_steps, a.batch, a.width, a.modes) for w in (0, 1)] if a.train_steps else []
    if trains:
        print(f"\n### FNO training (width {a.width}, modes {a.modes}, batch {a.batch}, {a.train_steps} steps, "
              f"cold cache)\n")
        print(table(["num_workers", "wait for batch (ms/step)", "compute (ms/step)", "waiting share", "total (s)"],
                    [[r["workers"], f"{r['wait_ms']:.1f}", f"{r['compute_ms']:.1f}",
                      f"{100 * r['wait_frac']:.1f} %", f"{r['total_s']:.1f}"] for r in trains]))
    for r in trains:
        print(f"\nRSS over time, num_workers={r['workers']} (step, seconds, main MiB, worker MiB):")
        print("  " + "  ".join(f"({s}, {t}, {m}, {w or '-'})" for s, t, m, w in r["trace"]))
    print(f"\nload average at the end: {loadavg()} (on {os.cpu_count()} cores; above it, timings are inflated)")
    if a.json:
        a.json.write_text(json.dumps({"file": info, "loader": loads, "train": trains}, indent=2, default=str))


if __name__ == "__main__":
    main()
