"""The reader streams: bounded chunk cache, per-process handles, memory independent of the file size."""
import pickle

import numpy as np
import pytest
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


def rich_file(path, n=5, frames=6, res=8, seed=1, level="default"):
    """Static input, scalar and vector solutions, and a per-trajectory scalar parameter."""
    rng = np.random.default_rng(seed)
    x = np.arange(res) / res
    b = FileBuilder(path, pde="random_fields", n=n, coords={"x": x, "y": x}, periodic=[True, True],
                    times=np.arange(frames, dtype=float), level=level)
    b.add_field("k", role="input", time_varying=False)
    b.add_field("u")
    b.add_field("v", rank=1)
    for i in range(n):
        b.write("k", i, rng.standard_normal((res, res)))
        b.write("u", i, rng.standard_normal((frames, res, res)))
        b.write("v", i, rng.standard_normal((frames, res, res, 2)))
    b.add_scalar("nu", rng.uniform(1e-3, 1e-1, n))
    return b.close()


def test_stats_of_a_constant_channel_are_exactly_constant_and_agree_with_numpy(tmp_path):
    # A constant mask and a constant parameter: the one-pass E[x²] − E[x]² left a standard deviation
    # of 1.9e-9 for six values of 0.1, which the normaliser's 1e-12 floor did not catch; and it lost
    # digits for a channel whose mean is far larger than its spread.
    from pde_lab.training.checkpoint import Normalizer

    rng = np.random.default_rng(0)
    n, frames, res = 6, 5, 64
    x = np.arange(res) / res
    b = FileBuilder(tmp_path / "c.h5", pde="random_fields", n=n, coords={"x": x, "y": x}, periodic=[True, True],
                    times=np.arange(frames, dtype=float))
    b.add_field("mask", role="input", time_varying=False)
    b.add_field("u")
    us = 1e3 + rng.standard_normal((n, frames, res, res))
    for i in range(n):
        b.write("mask", i, np.full((res, res), 0.3))
        b.write("u", i, us[i])
    b.add_scalar("Re", np.full(n, 0.1))
    ds = FieldDataset([b.close()], task=Task("window", 1, 1), parameters=["Re"])
    stats = ds.stats()
    assert ds.input_channels == ["mask", "u", "Re"]
    assert stats["x_std"][0] < 1e-15 and stats["x_std"][2] < 1e-15
    u32 = us.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose([stats["x_mean"][1], stats["x_std"][1]], [u32.mean(), u32.std()], rtol=1e-12)
    norm = Normalizer.from_stats(stats)
    assert norm.x_std[0] == 1.0 and norm.x_std[2] == 1.0  # shifted only


@pytest.mark.parametrize("task", [Task("window", 2, 1), Task("one_shot", 1, 1), Task("time", 2, 1)])
def test_preloaded_items_equal_streamed_ones(tmp_path, task):
    files = [rich_file(tmp_path / "a.h5"), rich_file(tmp_path / "b.h5", n=4, seed=2, level="hard")]
    # out of order and repeated trajectories in file 0, file 1 whole
    kw = dict(task=task, parameters=["log:nu"], trajectories={0: [3, 1, 3, 0]})
    lazy, mem = FieldDataset(files, **kw), FieldDataset(files, preload=True, **kw)
    assert mem.preloaded and not lazy.preloaded and len(mem) == len(lazy) > 0
    for i in range(len(lazy)):
        for a, b in zip(lazy[i], mem[i]):
            assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    for key, value in lazy.stats().items():
        np.testing.assert_array_equal(value, mem.stats()[key])
    # the memory copy holds only the used trajectories of file 0, and a pickled copy needs no file
    arrays, rows = mem._memory[0]
    assert sorted(rows) == [0, 1, 3] and all(a.shape[0] == 3 for a in arrays.values())
    clone = pickle.loads(pickle.dumps(mem))
    for p in files:
        p.rename(p.with_suffix(".moved"))
    assert torch.equal(clone[len(clone) - 1][1], lazy[len(lazy) - 1][1])
