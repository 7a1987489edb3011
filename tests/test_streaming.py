"""The reader streams: bounded chunk cache, per-process handles, memory independent of the file size."""
import pickle

import numpy as np
import torch
from torch.utils.data import DataLoader

from pde_lab.datasets.interop.builder import FileBuilder
from pde_lab.datasets.reader import CHUNK_CACHE_BYTES, FieldDataset
from pde_lab.pdes.base import Task


def status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key}")


def reset_peak_rss() -> None:
    """Reset VmHWM (the peak resident size) to the current size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def big_file(path, n, frames=16, res=256, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(res) / res
    b = FileBuilder(path, pde="random_fields", n=n, coords={"x": x, "y": x}, periodic=[True, True],
                    times=np.arange(frames, dtype=float))
    b.add_field("u")
    for i in range(n):
        b.write("u", i, rng.standard_normal((frames, res, res), dtype=np.float32))
    return b.close()


def test_resident_memory_stays_bounded_over_a_file_much_larger_than_the_cache(tmp_path):
    path = big_file(tmp_path / "big.h5", n=48)  # 48 x 16 frames x 256 KiB = 192 MiB
    size_mb = path.stat().st_size / 2**20
    assert size_mb > 40 * CHUNK_CACHE_BYTES / 2**20
    ds = FieldDataset([path], task=Task("window", 1, 1), check=False)
    loader = DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    for _ in range(5):  # let handles, allocator arenas and torch settle
        next(it)
    base = status_mb("VmRSS")
    reset_peak_rss()  # the peak then also catches a whole-file read freed right after
    total = 0.0
    for x, y in it:
        total += float(x[:, 0, 0, 0, 0].sum())
    peak = status_mb("VmHWM")
    # Everything (48 x 15 items x 0.5 MiB = 360 MiB of field data) went through, yet the peak
    # resident size grew by far less than the file: a reader that cached frames, or loaded a whole
    # field even for a moment, would not pass.
    assert np.isfinite(total)
    assert peak - base < 48, (base, peak, size_mb)


def test_file_handles_use_the_bounded_cache_and_are_per_process(tmp_path):
    path = big_file(tmp_path / "f.h5", n=3, frames=4, res=16)
    ds = FieldDataset([path], task=Task("window", 1, 1))
    ds[0]
    cache = ds._file(0).id.get_access_plist().get_cache()
    assert cache[2] == CHUNK_CACHE_BYTES
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives: no open handles
    assert clone._handles == {} and len(ds._handles) == 1
    torch.testing.assert_close(clone[5][0], ds[5][0])
    serial = [b[1] for b in DataLoader(ds, batch_size=3)]
    forked = [b[1] for b in DataLoader(ds, batch_size=3, num_workers=1)]
    for a, b in zip(serial, forked, strict=True):
        torch.testing.assert_close(a, b)


def test_index_is_arithmetic_and_matches_the_stored_layout(tmp_path):
    a = big_file(tmp_path / "a.h5", n=3, frames=5, res=8, seed=1)
    b = big_file(tmp_path / "b.h5", n=2, frames=5, res=8, seed=2)
    ds = FieldDataset([a, b], task=Task("window", 2, 1), trajectories={0: [2, 0]})
    # file a: trajectories 2, 0 (3 windows each); file b: both trajectories.
    expected = [(0, t, s) for t in (2, 0) for s in range(3)] + [(1, t, s) for t in (0, 1) for s in range(3)]
    assert [ds.sample_index(i) for i in range(len(ds))] == expected
    assert list(ds.file_items(1)) == list(range(6, 12))
    import h5py
    with h5py.File(b) as f:
        u = f["t0_fields/u"][()]
    x, y = ds[10]  # file b, trajectory 1, windows start 1
    np.testing.assert_array_equal(x[..., 0].numpy(), u[1, 1:3])
    np.testing.assert_array_equal(y[..., 0].numpy(), u[1, 3:4])
