"""The generation engine: workers, shards and merge, resume, the writer lock, checksums in the validator."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import tests.engine_toys  # noqa: F401  (registers toy_slow)
from pde_lab.datasets import GenerateConfig, generate, validate_file, validate_path
from pde_lab.datasets import engine
from pde_lab.datasets.lock import DirectoryLock, lock_path
from pde_lab.datasets.merge import merge_shards
from pde_lab.datasets.parts import PartError, read_part, trajectory_checksums
from pde_lab.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CFG = dict(pde="toy_decay", n_train=5, n_valid=2, n_test=3, batch_size=2, progress=False)


def make(out, **kw):
    return generate(GenerateConfig(**{**CFG, "out": str(out), **kw}))


def field_bytes(root) -> dict[str, bytes]:
    """Every field dataset of every file under ``root`` → its raw bytes."""
    out = {}
    for path in sorted(Path(root).rglob("*.h5")):
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and name.split("/")[0].endswith("_fields"):
                    out[f"{path.relative_to(root)}:{name}"] = obj[()].tobytes()
            f.visititems(visit)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return make(tmp_path_factory.mktemp("ref") / "d")


def test_plan_units_and_shards_partition_them():
    units = engine.plan_units(["easy", "hard"], {"train": 5, "valid": 0, "test": 3}, 2)
    assert [(u.split, u.level, u.start, u.stop) for u in units[:4]] == [
        ("train", "easy", 0, 2), ("train", "easy", 2, 4), ("train", "easy", 4, 5), ("train", "hard", 0, 2)]
    assert [u.id for u in units] == list(range(10)) and sum(u.size for u in units) == 16
    shards = [[u.id for u in units if u.id % 3 == i] for i in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))


@pytest.mark.parametrize("text, message", [("2/2", "need N >= 1 and 0 <= i < N"), ("a/3", "written i/N"),
                                           ("1", "written i/N"), ("-1/3", "0 <= i < N"), ("0/0", "N >= 1")])
def test_bad_shard_is_named(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        make(tmp_path / "d", shard=text)
    assert list(tmp_path.iterdir()) == []


def test_bad_workers_and_device_are_named(tmp_path):
    with pytest.raises(UserError, match="workers must be positive, got 0"):
        make(tmp_path / "d", workers=0)
    with pytest.raises(UserError, match="device must be cpu, cuda, cuda:N or auto, got 'gpu0'"):
        make(tmp_path / "d", device="gpu0")
    assert list(tmp_path.iterdir()) == []


def test_device_auto_is_resolved_and_recorded(tmp_path, reference):
    import torch

    out = make(tmp_path / "a", device="auto")
    used = "cuda" if torch.cuda.is_available() else "cpu"
    with h5py.File(out / "train/easy.h5") as f:
        assert json.loads(f.attrs["generation_config"])["device"] == used
    if used == "cpu":  # the same command with the device spelled out: nothing to do, the same bytes
        assert field_bytes(out) == field_bytes(reference)
        assert make(tmp_path / "a") == out


def test_workers_give_the_same_bytes(tmp_path, reference):
    out = make(tmp_path / "w", workers=2)
    assert field_bytes(out) == field_bytes(reference)
    for f in ("train/easy.h5", "test/hard.h5"):
        with h5py.File(out / f) as a, h5py.File(reference / f) as b:
            assert a.attrs["generation_config"] == b.attrs["generation_config"]
            assert np.array_equal(a["trajectories/seed"][()], b["trajectories/seed"][()])


def test_shards_merge_to_the_single_process_run(tmp_path, reference):
    shards = [make(tmp_path / f"s{i}", shard=f"{i}/3") for i in range(3)]
    assert all((s / engine.ENGINE_FILE).is_file() and not list(s.rglob("*.h5")) for s in shards)
    n_parts = [len(list((s / engine.PARTS_DIR).glob("*.part"))) for s in shards]
    assert n_parts == [4, 4, 4]  # 12 units dealt round-robin
    out = merge_shards([shards[2], shards[0], shards[1]], tmp_path / "m", progress=False)
    assert field_bytes(out) == field_bytes(reference)
    assert all(v == [] for v in validate_path(out).values())
    for f in ("train/easy.h5", "valid/hard.h5"):
        with h5py.File(out / f) as a, h5py.File(reference / f) as b:
            for key in ("generation_config", "solver_settings", "n_trajectories"):
                assert a.attrs[key] == b.attrs[key]
            for name in ("seed", "index", "steps", "batch_size", "checksum_u", "dt"):
                assert np.array_equal(a[f"trajectories/{name}"][()], b[f"trajectories/{name}"][()]), name
    # Re-running a shard job on its finished directory does nothing.
    stamp = sorted(p.stat().st_mtime_ns for p in shards[0].rglob("*.part"))
    make(tmp_path / "s0", shard="0/3")
    assert sorted(p.stat().st_mtime_ns for p in shards[0].rglob("*.part")) == stamp


def test_merge_refuses_bad_shard_sets(tmp_path):
    s = [make(tmp_path / f"s{i}", shard=f"{i}/3") for i in range(3)]
    other = make(tmp_path / "o1", shard="1/3", seed=5)
    four = make(tmp_path / "f1", shard="1/4")
    whole = make(tmp_path / "whole")
    cases = [
        ([s[0], s[1]], "missing shard\\(s\\) 2/3"),
        ([s[0], s[1], s[1]], "shard 1/3 given twice"),
        ([s[0], other, s[2]], "different generation .*seed: 0 vs 5"),
        ([s[0], four, s[2]], "shard 1/4 but .* is one of 3 shards"),
        ([whole], "not a finished shard directory"),
        ([tmp_path / "nowhere"], "does not exist"),
    ]
    for dirs, message in cases:
        with pytest.raises(UserError, match=message):
            merge_shards(dirs, tmp_path / "m", progress=False)
    part = sorted((s[1] / engine.PARTS_DIR).glob("*.part"))[1]
    data = bytearray(part.read_bytes())
    data[-200:-100] = bytes(100)  # damage the tail of a part file
    part.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged shard"):
        merge_shards(s, tmp_path / "m", progress=False)
    part.unlink()
    with pytest.raises(UserError, match="1 unit\\(s\\) missing from the shards"):
        merge_shards(s, tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists() and not lock_path(tmp_path / "m").exists()
    assert not engine.partial_path(tmp_path / "m").exists()


def test_resume_skips_finished_units_and_counts_them_in_the_progress_bar(tmp_path, reference, monkeypatch):
    from pde_lab.pdes import get_pde

    pde_cls = type(get_pde("toy_decay"))
    original = pde_cls.solve
    solved = []

    def failing(self, instances, grid, device="cpu"):
        if len(solved) == 7:
            raise KeyboardInterrupt
        solved.append(len(instances))
        return original(self, instances, grid, device)

    monkeypatch.setattr(pde_cls, "solve", failing)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path / "d")
    assert not (tmp_path / "d").exists() and not lock_path(tmp_path / "d").exists()
    bars = []
    real_bar = engine.progress_bar
    monkeypatch.setattr(engine, "progress_bar", lambda total, initial, *a: bars.append((total, initial)) or
                        real_bar(total, initial, *a))
    solved.clear()
    solved.append(-1000)  # never fail again
    make(tmp_path / "d")
    assert bars == [(20, 12)]  # the first 7 units: train/easy (5), train/hard (5), valid/easy (2)
    assert len(solved) - 1 == 12 - 7
    assert field_bytes(tmp_path / "d") == field_bytes(reference)


def test_resume_refuses_a_different_config_unless_overwrite(tmp_path, monkeypatch):
    from pde_lab.pdes import get_pde

    pde_cls = type(get_pde("toy_decay"))
    original = pde_cls.solve
    n = {"calls": 0}

    def failing(self, *a, **k):
        n["calls"] += 1
        if n["calls"] == 2:
            raise RuntimeError("stop")
        return original(self, *a, **k)

    monkeypatch.setattr(pde_cls, "solve", failing)
    with pytest.raises(RuntimeError):
        make(tmp_path / "d")
    with pytest.raises(UserError, match="unfinished generation with a different config \\(n_train: 5 vs 4; n_units: 12 vs 10\\)"):
        make(tmp_path / "d", n_train=4)
    out = make(tmp_path / "d", n_train=4, overwrite=True)
    with h5py.File(out / "train" / "easy.h5") as f:
        assert f.attrs["n_trajectories"] == 4


def test_damaged_part_is_regenerated_on_resume(tmp_path, reference, monkeypatch):
    from pde_lab.pdes import get_pde

    pde_cls = type(get_pde("toy_decay"))
    original = pde_cls.solve
    n = {"calls": 0}

    def failing(self, *a, **k):
        n["calls"] += 1
        if n["calls"] == 5:
            raise RuntimeError("stop")
        return original(self, *a, **k)

    monkeypatch.setattr(pde_cls, "solve", failing)
    with pytest.raises(RuntimeError):
        make(tmp_path / "d")
    parts = sorted((engine.partial_path(tmp_path / "d") / engine.PARTS_DIR).glob("*.part"))
    assert len(parts) == 4
    with np.load(parts[2]) as z:
        items = {k: z[k] for k in z.files}
    items["fields/u"][0, 0, 0] += 1.0  # silent corruption, zip CRC rewritten: only our checksum tells
    with open(parts[2], "wb") as fh:
        np.savez(fh, **items)
    with pytest.raises(PartError, match="checksum mismatch"):
        read_part(parts[2])
    n["calls"] = -100
    make(tmp_path / "d")
    assert n["calls"] == -100 + 12 - 3
    assert field_bytes(tmp_path / "d") == field_bytes(reference)


# ---- the lock -----------------------------------------------------------------------------------------

def test_second_writer_is_refused_while_the_first_lives(tmp_path):
    out = tmp_path / "d"
    with DirectoryLock(out):
        with pytest.raises(UserError, match=f"is being written by another process \\(pid {os.getpid()} on host"):
            make(out)
        with pytest.raises(UserError, match="being written by another process"):
            merge_shards([make(tmp_path / "s0", shard="0/1")], out, progress=False)
    assert not lock_path(out).exists()
    make(out)
    assert not lock_path(out).exists()


def test_lock_of_a_killed_writer_is_released_by_the_os(tmp_path):
    out = tmp_path / "d"
    # A bare flock holder speaks the same protocol as another pde_lab writer, without importing torch.
    code = ("import fcntl, json, os, socket, time; "
            f"fd = os.open({str(lock_path(out))!r}, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
            "os.write(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname()}).encode()); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            DirectoryLock(out).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_path(out).exists()  # the dead holder could not delete it ...
    make(out)  # ... but its lock died with it
    assert all(v == [] for v in validate_path(out).values())


# ---- checksums and value checks in the validator ----------------------------------------------------------

@pytest.fixture
def one_file(tmp_path):
    return make(tmp_path / "d", n_valid=0, n_test=0, levels=["easy"]) / "train" / "easy.h5"


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def test_checksums_are_stored_per_trajectory(one_file):
    with h5py.File(one_file) as f:
        sums = f["trajectories/checksum_u"][()]
        assert sums.dtype == np.uint32 and sums.shape == (5,)
        assert np.array_equal(sums, trajectory_checksums(f["t0_fields/u"][()]))
        assert f["trajectories"].attrs["checksum_algorithm"] == "crc32"
    assert len(set(sums.tolist())) == 5


CHECKSUM_VIOLATIONS = {
    "edited value": (lambda f: f["t0_fields/u"].__setitem__((3, 2, 5), 0.125),
                     "/t0_fields/u: trajectory 3 does not match its checksum"),
    "edited checksum": (lambda f: f["trajectories/checksum_u"].__setitem__(1, 7), "trajectory 1 does not match"),
    "missing checksums": (lambda f: f["trajectories"].__delitem__("checksum_u"), "missing dataset 'checksum_u'"),
    "checksum dtype": (lambda f: (f["trajectories"].__delitem__("checksum_u"),
                                  f["trajectories"].create_dataset("checksum_u", data=np.zeros(5))),
                       "checksum_u: expected uint32 of shape (5,), got float64"),
    "algorithm": (lambda f: f["trajectories"].attrs.__setitem__("checksum_algorithm", "md5"),
                  "'checksum_algorithm' is 'md5', expected 'crc32'"),
    "constant": (lambda f: f["t0_fields/u"].__setitem__(4, 0.0), "trajectory 4 is one constant value at every point and time"),
    "nan in two": (lambda f: (f["t0_fields/u"].__setitem__((0, 1, 1), np.inf), f["t0_fields/u"].__setitem__((2, 0, 0), np.nan)),
                   "trajectories 0, 2 hold NaN or inf"),
}


@pytest.mark.parametrize("kind", sorted(CHECKSUM_VIOLATIONS))
def test_validator_names_damage(one_file, kind):
    fn, message = CHECKSUM_VIOLATIONS[kind]
    _edit(one_file, fn)
    errors = validate_file(one_file)
    assert any(message in e for e in errors), errors


def test_a_uniform_state_that_changes_in_time_is_physics_not_a_fill_value(one_file):
    """Every frame spatially constant but the value moving (a uniform state relaxing) was reported
    like a never-written slot; only one value at every point and time is."""
    def uniform_in_space(f):
        u = f["t0_fields/u"]
        u[0] = np.broadcast_to(np.arange(u.shape[1], dtype=np.float32)[:, None], u.shape[1:])
        f["trajectories/checksum_u"][0] = trajectory_checksums(u[0][None])[0]

    _edit(one_file, uniform_in_space)
    assert validate_file(one_file) == []


def test_a_single_constant_frame_is_not_damage(one_file):
    # A trajectory at rest in its first frame (a fluid started from rest) is physics, not a fault.
    def rest(f):
        u = f["t0_fields/u"][1]
        u[0] = 0.0
        f["t0_fields/u"][1] = u
        f["trajectories/checksum_u"][1] = trajectory_checksums(u[None])[0]
    _edit(one_file, rest)
    assert validate_file(one_file) == []


def test_no_values_skips_reading_fields(one_file):
    _edit(one_file, lambda f: f["t0_fields/u"].__setitem__((3, 2, 5), 0.125))
    assert validate_file(one_file, check_values=False) == []
    assert validate_file(one_file)


def test_truncated_and_overwritten_files_are_named_not_raised(one_file, tmp_path):
    data = one_file.read_bytes()
    for frac in (0.1, 0.5, 0.8, 0.95, 0.99):
        bad = tmp_path / f"cut{frac}.h5"
        bad.write_bytes(data[: int(len(data) * frac)])
        errors = validate_file(bad)
        assert errors and all(isinstance(e, str) for e in errors), frac
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(12):
        bad = tmp_path / f"noise{trial}.h5"
        buf = bytearray(data)
        start = int(rng.integers(0, len(buf) - 64))
        buf[start:start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        bad.write_bytes(bytes(buf))
        hits += bool(validate_file(bad))  # never raises; most random damage is caught
    assert hits >= 6, hits


def test_cli_validate_no_values_and_merge(tmp_path, capsys):
    from pde_lab.cli import main

    for i in range(2):
        assert main(["generate", "--pde", "toy_decay", "--n-train", "3", "--n-valid", "0", "--n-test", "1",
                     "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}"), "--quiet"]) == 0
    assert main(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m"), "--quiet"]) == 0
    capsys.readouterr()
    path = tmp_path / "m" / "train" / "easy.h5"
    _edit(path, lambda f: f["t0_fields/u"].__setitem__((0, 1, 1), 2.5))
    assert main(["validate", "--no-values", str(tmp_path / "m")]) == 0
    assert main(["validate", str(tmp_path / "m")]) == 1
    out = capsys.readouterr().out
    assert "trajectory 0 does not match its checksum" in out
    code = main(["merge", str(tmp_path / "s0"), "--out", str(tmp_path / "m2"), "--quiet"])
    assert code == 2 and "missing shard(s) 1/2" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_generation_resumes_and_shards_exactly(tmp_path, monkeypatch):
    """On a GPU: batched CUDA solves go through the same engine; interrupted, sharded and whole runs agree."""
    from pde_lab.pdes import get_pde

    cfg = dict(pde="heat_1d", levels=["easy"], n_train=6, n_valid=0, n_test=2, resolution=32, batch_size=3,
               device="cuda")
    whole = make(tmp_path / "whole", **cfg)
    assert all(v == [] for v in validate_path(whole).values())
    pde_cls = type(get_pde("heat_1d"))
    original, calls = pde_cls.solve, {"n": 0}

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("stop")
        return original(self, *a, **k)

    monkeypatch.setattr(pde_cls, "solve", failing)
    with pytest.raises(RuntimeError):
        make(tmp_path / "resumed", **cfg)
    make(tmp_path / "resumed", **cfg)
    shards = [make(tmp_path / f"s{i}", shard=f"{i}/2", **cfg) for i in range(2)]
    merged = merge_shards(shards, tmp_path / "merged", progress=False)
    assert field_bytes(tmp_path / "resumed") == field_bytes(whole) == field_bytes(merged)
