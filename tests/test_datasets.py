"""The HDF5 format: round trip, determinism, atomic writes, the validator, readers and summaries."""
from pathlib import Path
import shutil

import h5py
import numpy as np
import pytest

from pde_lab.datasets import (FieldDataset, GenerateConfig, generate, open_dataset, open_split, sample_seed,
                              summarize, validate_file, validate_path)
from pde_lab.errors import UserError
from pde_lab.pdes import get_pde
from pde_lab.pdes.base import Task


def make(tmp_path, name="d", **kw):
    cfg = dict(pde="toy_decay", out=str(tmp_path / name), n_train=5, n_valid=2, n_test=3, batch_size=2, progress=False)
    cfg.update(kw)
    return generate(GenerateConfig(**cfg))


def test_round_trip_fields_parameters_and_costs(tmp_path):
    out = make(tmp_path)
    pde = get_pde("toy_decay")
    with h5py.File(out / "train" / "hard.h5") as f:
        u = f["t0_fields/u"][()]
        k = f["scalars/k"][()]
        seeds = f["trajectories/seed"][()]
        t = f["dimensions/time"][()]
        assert u.dtype == np.float32 and u.shape == (5, 5, 16)
        assert f["t0_fields/u"].chunks == (1, 1, 16)
        assert np.all(f["trajectories/wall_time"][()] >= 0) and np.all(f["trajectories/steps"][()] == 4)
        np.testing.assert_allclose(f["dimensionless/decay_number"][()], k)
        assert f["trajectories/dt"][()].tolist() == [0.25] * 5
    assert np.all((k >= 2.0) & (k <= 4.0))
    # Each stored trajectory is reproduced from its stored seed alone.
    grid = pde.grid(16)
    for i in range(5):
        inst = pde.sample("hard", np.random.default_rng(int(seeds[i])), grid)
        assert inst.params["k"] == k[i]
        np.testing.assert_allclose(u[i], inst.inputs["u"][None] * np.exp(-k[i] * t[:, None]), rtol=1e-6, atol=1e-7)


def test_same_command_same_field_bytes_whatever_the_batch_size(tmp_path):
    a, b = make(tmp_path, "a"), make(tmp_path, "b", batch_size=3)
    for split in ("train", "valid", "test"):
        for level in ("easy", "hard"):
            with h5py.File(a / split / f"{level}.h5") as fa, h5py.File(b / split / f"{level}.h5") as fb:
                assert fa["t0_fields/u"][()].tobytes() == fb["t0_fields/u"][()].tobytes()
                assert np.array_equal(fa["trajectories/seed"][()], fb["trajectories/seed"][()])


def test_seeds_depend_on_level_split_and_index_only():
    s = {sample_seed(0, lv, sp, i) for lv in ("easy", "hard") for sp in ("train", "test") for i in range(3)}
    assert len(s) == 12
    assert sample_seed(0, "easy", "train", 1) == sample_seed(0, "easy", "train", 1) != sample_seed(1, "easy", "train", 1)


def test_generated_files_are_valid_and_levels_restricted(tmp_path):
    out = make(tmp_path, levels=["hard"], n_valid=0)
    report = validate_path(out)
    assert sorted(report) == [str(out / "test" / "hard.h5"), str(out / "train" / "hard.h5")]
    assert all(v == [] for v in report.values())


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    pde_cls = type(get_pde("toy_decay"))
    calls = {"n": 0}
    original = pde_cls.solve

    def failing(self, instances, grid, device="cpu"):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("solver blew up")
        return original(self, instances, grid, device)

    monkeypatch.setattr(pde_cls, "solve", failing)
    with pytest.raises(RuntimeError, match="blew up"):
        make(tmp_path)
    # Nothing at the output name; the two finished units wait, hidden, for the same command to resume.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.partial"]
    assert len(list((tmp_path / ".d.partial" / "parts").glob("*.part"))) == 2
    assert validate_path(tmp_path / ".d.partial") == {str(tmp_path / ".d.partial"): ["directory holds no .h5 files"]}
    calls["n"] = -100  # no more failures; count the solves the resumed run needs
    out = make(tmp_path)
    calls["n"] += 100
    assert calls["n"] == 12 - 2  # 2 levels x (3 + 1 + 2) batches, minus the two finished ones
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and all(v == [] for v in validate_path(out).values())


def test_a_run_that_failed_before_any_work_does_not_block_the_corrected_command(tmp_path, monkeypatch):
    pde_cls = type(get_pde("toy_decay"))
    original = pde_cls.solve

    def failing(self, instances, grid, device="cpu"):
        raise RuntimeError("bad solver option")

    monkeypatch.setattr(pde_cls, "solve", failing)
    with pytest.raises(RuntimeError, match="bad solver option"):
        make(tmp_path, resolution=32)
    assert (tmp_path / ".d.partial").is_dir()  # nothing finished in it
    monkeypatch.setattr(pde_cls, "solve", original)
    out = make(tmp_path)  # another config: the empty build directory is replaced, not in the way
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and all(v == [] for v in validate_path(out).values())


def test_refuses_existing_output_unless_overwrite(tmp_path):
    out = make(tmp_path)
    stamp = (out / "train" / "easy.h5").stat().st_mtime_ns
    make(tmp_path)  # the same command on its own finished output: nothing to do
    assert (out / "train" / "easy.h5").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="--overwrite"):
        make(tmp_path, n_train=3)
    make(tmp_path, overwrite=True, n_train=2)
    with h5py.File(out / "train" / "easy.h5") as f:
        assert f.attrs["n_trajectories"] == 2


def test_levels_are_listed_in_generation_order_not_alphabetically(tmp_path):
    """``hard`` generated before ``easy``: readers, ``info`` and ``validate`` keep that order; levels
    named explicitly come in the order named."""
    from pde_lab.datasets import summarize
    from pde_lab.datasets.reader import list_files

    out = make(tmp_path, levels=["hard", "easy"], n_valid=0)
    assert [p.stem for p in list_files(out, "train")] == ["hard", "easy"]
    assert [p.stem for p in list_files(out, "test", ["easy", "hard"])] == ["easy", "hard"]
    assert list(summarize(out)["levels"]) == ["hard", "easy"]
    assert [Path(f).parts[-2:] for f in validate_path(out)] == [
        ("train", "hard.h5"), ("train", "easy.h5"), ("test", "hard.h5"), ("test", "easy.h5")]


def test_a_test_only_dataset_holds_the_same_test_trajectories(tmp_path):
    """n_train = 0 makes a test set alone, e.g. at another resolution for a trained model; a sample's
    seed depends on its split and index only, so its trajectories are those of the full dataset."""
    only = make(tmp_path / "a", n_train=0, n_valid=0)
    full = make(tmp_path / "b")
    assert sorted(p.name for p in only.iterdir()) == ["test"]
    for level in ("easy", "hard"):
        with h5py.File(only / "test" / f"{level}.h5") as f, h5py.File(full / "test" / f"{level}.h5") as g:
            assert np.array_equal(f["t0_fields/u"][:], g["t0_fields/u"][:])
    assert all(errs == [] for errs in validate_path(only).values())


@pytest.mark.parametrize("kw, match", [
    (dict(pde="nope"), "unknown PDE 'nope'; allowed: .*toy_decay"),
    (dict(levels=["easy", "extreme"]), "unknown level 'extreme' of PDE 'toy_decay'; allowed: "),
    (dict(n_train=0, n_valid=0, n_test=0), "n_train, n_valid and n_test are all 0: nothing to generate"),
    (dict(n_train=-2), "n_train must be non-negative, got -2"),
    (dict(n_test=-1), "n_test must be non-negative, got -1"),
    (dict(resolution=4), "resolution must be at least 8"),
    (dict(batch_size=0), "batch_size must be positive"),
    (dict(levels=[]), "no levels given; name at least one of easy, hard"),
    (dict(seed=2**64), "seed must be an integer in 0 .. 9223372036854775807"),
    (dict(seed=-1), "seed must be an integer in 0 .."),
])
def test_bad_generation_input_is_named(tmp_path, kw, match):
    with pytest.raises(UserError, match=match):
        make(tmp_path, **kw)
    assert not (tmp_path / "d").exists()


# ---- the validator catches each kind of violation -------------------------------------------------

def _corrupt(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace_u(f, data, chunks=None):
    attrs = dict(f["t0_fields/u"].attrs)
    del f["t0_fields/u"]
    chunks = chunks or ((1,) * (data.ndim - 1) + data.shape[-1:])
    f["t0_fields"].create_dataset("u", data=data, chunks=chunks).attrs.update(attrs)


VIOLATIONS = {
    "format": (lambda f: f.attrs.__setitem__("format", "other"), "not a pde_lab file"),
    "version": (lambda f: f.attrs.__setitem__("format_version", 7), "unsupported format_version 7"),
    "incomplete": (lambda f: f.attrs.__setitem__("complete", False), "incomplete"),
    "missing attr": (lambda f: f.attrs.__delitem__("solver"), "missing attribute 'solver'"),
    "attr type": (lambda f: f.attrs.__setitem__("n_spatial_dims", "one"), "'n_spatial_dims' is str"),
    "json": (lambda f: f.attrs.__setitem__("generation_config", "{oops"), "'generation_config' is not valid JSON"),
    "split": (lambda f: f.attrs.__setitem__("split", "holdout"), "split 'holdout' is not one of"),
    "group": (lambda f: f.__delitem__("scalars"), "missing group /scalars"),
    "dtype": (lambda f: _replace_u(f, np.zeros((5, 5, 16))), "dtype float64, expected float32"),
    "shape": (lambda f: _replace_u(f, np.zeros((5, 4, 16), np.float32)), "shape (5, 4, 16), expected (5, 5, 16)"),
    "chunks": (lambda f: _replace_u(f, np.zeros((5, 5, 16), np.float32), chunks=(5, 5, 16)),
               "expected one chunk per frame (1, 1, 16)"),
    "nan": (lambda f: f["t0_fields/u"].__setitem__((2, 1, 3), np.nan), "trajectory 2 holds NaN or inf"),
    "unlisted": (lambda f: f["t0_fields"].create_dataset("w", data=np.zeros(3)), "not listed in field_names"),
    "role": (lambda f: f["t0_fields/u"].attrs.__setitem__("role", "output"), "role 'output' is not one of"),
    "coords": (lambda f: f["dimensions/x"].__setitem__(slice(0, 2), [1.0, 0.0]), "strictly increasing"),
    "time": (lambda f: f["dimensions"].__delitem__("time"), "time-varying field but /dimensions/time is missing"),
    "traj": (lambda f: f["trajectories"].__delitem__("seed"), "missing dataset 'seed'"),
    "index": (lambda f: f["trajectories/index"].__setitem__(0, 3), "expected 0 .. n_trajectories-1"),
    "scalar shape": (lambda f: (f["scalars"].__delitem__("k"), f["scalars"].create_dataset("k", data=np.zeros(2))),
                     "/scalars/k: expected a float64 array of shape"),
    "bc": (lambda f: f["boundary_conditions/x_periodic"].attrs.__setitem__("bc_type", "WEIRD"), "bc_type 'WEIRD'"),
    # every rule of docs/data_format.md, one violation each
    "grid type": (lambda f: f.attrs.__setitem__("grid_type", "voronoi"), "grid_type 'voronoi' is not one of"),
    "json object": (lambda f: f.attrs.__setitem__("solver_settings", "[1, 2]"),
                    "'solver_settings' must be a JSON object, got list"),
    "level definition name": (lambda f: f.attrs.__setitem__(
        "level_definition", '{"name": "hard", "ranges": {}, "log_uniform": [], "description": ""}'),
        "level_definition names level 'hard' but the file's level is 'easy'"),
    "level definition keys": (lambda f: f.attrs.__setitem__("level_definition", '{"name": "easy"}'),
                              "level_definition lacks key(s) ['ranges', 'log_uniform', 'description']"),
    "dataset seed": (lambda f: f.attrs.__setitem__("dataset_seed", -1), "dataset_seed -1 is negative"),
    "no trajectories": (lambda f: f.attrs.__setitem__("n_trajectories", 0), "a file holds at least one trajectory"),
    # floats compare equal to the shape (16.0 == 16) but break readers (np.broadcast_to needs ints)
    "resolution floats": (lambda f: f.attrs.__setitem__("spatial_resolution", np.array([16.0])),
                          "spatial_resolution must be a non-empty array of positive integers, got [16.0]"),
    "periodic": (lambda f: f["dimensions"].attrs.__setitem__("periodic", [True, False]),
                 "attribute 'periodic' must hold one bool per axis"),
    "bounds": (lambda f: f["dimensions"].attrs.__setitem__("bounds", [1.0, 0.0]), "attribute 'bounds' must be"),
    "bounds mismatch": (lambda f: f["dimensions"].attrs.__setitem__("bounds", [[0.0, 2.0]]),
                        "/dimensions/x: coordinates are not a + i h (periodic axis) for bounds [0, 2]"),
    "cell centres": (lambda f: f["dimensions/x"].__setitem__(Ellipsis, f["dimensions/x"][()] + 1 / 32),
                     "/dimensions/x: coordinates are not a + i h"),
    "coordinate dtype": (lambda f: _replace(f, "dimensions/x", f["dimensions/x"][()].astype(np.float32)),
                         "/dimensions/x: dtype float32, expected float64"),
    "time dtype": (lambda f: _replace(f, "dimensions/time", f["dimensions/time"][()].astype(np.float32)),
                   "/dimensions/time: dtype float32, expected float64"),
    "coordinate attrs": (lambda f: f["dimensions/x"].attrs.__setitem__("sample_varying", True),
                         "/dimensions/x: attribute 'sample_varying' is True, expected False"),
    "time attrs": (lambda f: f["dimensions/time"].attrs.__delitem__("time_varying"),
                   "/dimensions/time: attribute 'time_varying' is None, expected True"),
    "field sample_varying": (lambda f: f["t0_fields/u"].attrs.__setitem__("sample_varying", False),
                             "/t0_fields/u: attribute 'sample_varying' is False, expected True"),
    "field dim_varying": (lambda f: f["t0_fields/u"].attrs.__setitem__("dim_varying", [True, True]),
                          "'dim_varying' must hold True for each spatial dimension (1;"),
    "field dim_varying false": (lambda f: f["t0_fields/u"].attrs.__setitem__("dim_varying", [False]),
                                "'dim_varying' must hold True for each spatial dimension (1;"),
    "version bool": (lambda f: f.attrs.__setitem__("format_version", True), "unsupported format_version True"),
    "seed dtype": (lambda f: _replace(f, "trajectories/seed", f["trajectories/seed"][()].astype(np.uint32)),
                   "/trajectories/seed: expected uint64, got uint32"),
    "field time_varying": (lambda f: f["t0_fields/u"].attrs.__setitem__("time_varying", "yes"),
                           "'time_varying' must be a bool, got 'yes'"),
    "field units": (lambda f: f["t0_fields/u"].attrs.__setitem__("units", 3), "'units' must be a string"),
    "field attr missing": (lambda f: f["t0_fields/u"].attrs.__delitem__("description"),
                           "/t0_fields/u: missing attribute 'description'"),
    "scalar dtype": (lambda f: _replace(f, "scalars/k", np.arange(5)), "/scalars/k: expected a float64 array"),
    "scalar units": (lambda f: f["scalars/k"].attrs.__delitem__("units"), "/scalars/k: missing string attribute 'units'"),
    "unlisted scalar": (lambda f: f["scalars"].create_dataset("extra", data=np.zeros(5)),
                        "/scalars: datasets ['extra'] are not listed in field_names"),
    "unlisted dimensionless": (lambda f: f["dimensionless"].create_dataset("Re", data=np.zeros(5)),
                               "/dimensionless: datasets ['Re'] are not listed in field_names"),
    "per-sample missing": (lambda f: f["trajectories"].__delitem__("dt"), "'dt' listed in solver_per_sample but missing"),
    "per-sample dtype": (lambda f: _replace(f, "trajectories/dt", np.ones(5, np.float32)),
                         "/trajectories/dt: expected a float64 array of shape (5,)"),
    "per-sample unlisted": (lambda f: f["trajectories"].create_dataset("tol", data=np.zeros(5)),
                            "datasets ['tol'] are not listed in solver_per_sample"),
    "stray checksum": (lambda f: f["trajectories"].create_dataset("checksum_w", data=np.zeros(5, np.uint32)),
                       "checksums ['checksum_w'] belong to no field"),
    "wall time": (lambda f: f["trajectories/wall_time"].__setitem__(0, np.inf), "negative, NaN or infinite times"),
    "bc value": (lambda f: (f["boundary_conditions/x_periodic"].attrs.__setitem__("bc_type", "DIRICHLET"),
                            f["boundary_conditions/x_periodic"].attrs.__delitem__("value")),
                 "/boundary_conditions/x_periodic: missing attribute 'value'"),
    "bc mask": (lambda f: f["boundary_conditions/x_periodic"].__delitem__("mask_x"), "missing dataset 'mask_x'"),
    "bc mask shape": (lambda f: _replace(f, "boundary_conditions/x_periodic/mask_x", np.ones(3, bool)),
                      "mask_x: expected bool of shape (16,), got bool (3,)"),
}


def _replace(f, name, data):
    """Replace dataset ``name`` by ``data``, keeping its attributes."""
    attrs = dict(f[name].attrs)
    del f[name]
    f.create_dataset(name, data=data).attrs.update(attrs)


@pytest.mark.parametrize("kind", sorted(VIOLATIONS))
def test_validator_names_each_violation(tmp_path, kind):
    out = make(tmp_path, n_valid=0, n_test=0, levels=["easy"])
    path = out / "train" / "easy.h5"
    assert validate_file(path) == []
    fn, message = VIOLATIONS[kind]
    _corrupt(path, fn)
    errors = validate_file(path)
    assert any(message in e for e in errors), errors


def test_validator_on_foreign_and_broken_files(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert "not an HDF5 file" in validate_file(text)[0]
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.zeros(3)
    assert "not a pde_lab file" in validate_file(foreign)[0]
    out = make(tmp_path, n_valid=0, n_test=0, levels=["easy"])
    good = out / "train" / "easy.h5"
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert validate_file(truncated)
    misplaced = out / "train" / "hard.h5"
    shutil.copy(good, misplaced)
    assert "its attributes say" in validate_path(out)[str(misplaced)][0]


# ---- readers ----------------------------------------------------------------------------------------

def test_reader_one_shot_and_windows(tmp_path):
    out = make(tmp_path)
    ds = open_split(out, "train")
    assert len(ds) == 10 and ds.input_channels == ["u"] and ds.target_channels == ["u"]
    x, y = ds[0]
    with h5py.File(out / "train" / "easy.h5") as f:
        u = f["t0_fields/u"][0]
    np.testing.assert_array_equal(x[0, :, 0].numpy(), u[0])
    np.testing.assert_array_equal(y[0, :, 0].numpy(), u[-1])
    win = open_split(out, "train", levels=["easy"], task=Task("window", 2, 1))
    assert len(win) == 5 * 3
    x, y = win[4]  # trajectory 1, start 1
    with h5py.File(out / "train" / "easy.h5") as f:
        u = f["t0_fields/u"][1]
    np.testing.assert_array_equal(x[..., 0].numpy(), u[1:3])
    np.testing.assert_array_equal(y[..., 0].numpy(), u[3:4])
    with pytest.raises(UserError, match="longer than the 5 stored frames"):
        open_split(out, "train", task=Task("window", 4, 2))
    with pytest.raises(UserError, match="level\\(s\\) medium not in"):
        open_split(out, "train", levels=["medium"])


def test_reader_steady_with_input_and_vector_fields(tmp_path):
    out = make(tmp_path, pde="toy_scale", n_valid=0, n_test=0)
    ds = open_split(out, "train")
    assert ds.input_channels == ["a"] and ds.target_channels == ["u", "v_x", "v_y"]
    x, y = ds[1]
    assert x.shape == (1, 8, 8, 1) and y.shape == (1, 8, 8, 3)
    c = x.new_tensor(0) + (y[..., 0] / x[..., 0]).mean()
    np.testing.assert_allclose(y[..., 1].numpy(), (c * x[..., 0]).numpy(), rtol=1e-5)
    np.testing.assert_allclose(y[..., 2].numpy(), -y[..., 1].numpy())
    stats = ds.stats()
    all_a = np.stack([ds[i][0][0, ..., 0].numpy() for i in range(len(ds))]).astype(np.float64)
    np.testing.assert_allclose(stats["x_mean"], [all_a.mean()], rtol=1e-6)
    np.testing.assert_allclose(stats["x_std"], [all_a.std()], rtol=1e-5)


def test_reader_works_in_dataloader_workers(tmp_path):
    import torch

    out = make(tmp_path)
    ds = open_split(out, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (10, 1, 16, 1)
    np.testing.assert_array_equal(xs[3].numpy(), ds[3][0].numpy())


def test_reader_refuses_invalid_files(tmp_path):
    out = make(tmp_path, n_valid=0, n_test=0, levels=["easy"])
    _corrupt(out / "train" / "easy.h5", lambda f: f.attrs.__setitem__("complete", False))
    with pytest.raises(UserError, match="not a valid pde_lab file: file is incomplete"):
        FieldDataset([out / "train" / "easy.h5"])


def test_xarray_and_summary(tmp_path):
    out = make(tmp_path)
    ds = open_dataset(out, "test")
    assert dict(ds["u"].sizes) == {"trajectory": 6, "time": 5, "x": 16}
    assert list(ds["level"].values) == ["easy"] * 3 + ["hard"] * 3
    np.testing.assert_allclose(ds["time"].values, np.linspace(0, 1, 5))
    s = summarize(out)
    assert s["pde"] == "toy_decay" and s["resolution"] == [16]
    assert s["levels"]["hard"]["splits"] == {"test": 3, "train": 5, "valid": 2}
    lo, hi = s["levels"]["hard"]["parameters"]["k"]
    assert 2.0 <= lo <= hi <= 4.0
    assert s["total_wall_time_s"] > 0
    # A file copied to another split's folder was counted under its own split, replacing that count.
    import shutil

    shutil.copy(out / "train" / "hard.h5", out / "valid" / "hard.h5")
    with pytest.raises(UserError, match=r"valid/hard.h5: file is at valid/hard.h5 but its attributes say "
                                        r"split='train', level='hard'"):
        summarize(out)


def test_varying_parameters_become_constant_input_channels(tmp_path):
    from pde_lab.datasets.reader import list_files, varying_parameters

    out = make(tmp_path)
    files = list_files(out, "train")
    assert varying_parameters(files) == ["k"]  # 0.5..4 spans less than a decade
    assert varying_parameters(files, log_span=2.0) == ["log:k"]
    ds = open_split(out, "train", parameters=["log:k"])
    assert ds.input_channels == ["u", "log:k"]
    x, _ = ds[7]
    with h5py.File(out / "train" / "hard.h5") as f:
        k = f["scalars/k"][2]
    np.testing.assert_allclose(x[..., 1].numpy(), np.log(k), rtol=1e-6)
    stats = ds.stats()
    ks = np.log(np.concatenate([h5py.File(p)["scalars/k"][()] for p in files]))
    np.testing.assert_allclose([stats["x_mean"][1], stats["x_std"][1]], [ks.mean(), ks.std()], rtol=1e-10)
    with pytest.raises(UserError, match="is not NAME or log:NAME"):
        open_split(out, "train", parameters=["exp:k"])


def test_writer_refuses_a_batch_solved_at_other_times(tmp_path):
    """A file has one time axis: a batch with other output times must not be stored under the first's."""
    from pde_lab.datasets.writer import DatasetWriter

    pde = get_pde("toy_decay")
    grid = pde.grid(16)
    rng = np.random.default_rng(0)
    inst = [pde.sample("easy", rng, grid) for _ in range(4)]
    w = DatasetWriter(tmp_path / "easy.h5", pde, grid, "easy", "train", 4, 0, {})
    w.write_batch(0, inst[:2], pde.solve(inst[:2], grid), [1, 2], 0.1)
    same = pde.solve(inst[2:], grid)
    other = pde.solve(inst[2:], grid)
    other.times = other.times * 2
    with pytest.raises(RuntimeError, match="output times changed between batches"):
        w.write_batch(2, inst[2:], other, [3, 4], 0.1)
    w.write_batch(2, inst[2:], same, [3, 4], 0.1)
    assert validate_file(w.close()) == []
