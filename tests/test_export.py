"""Mesh datasets through the CLI, the validator's mesh checks, and `pde-lab export` round trips."""
import shutil

import h5py
import meshio
import numpy as np
import pytest
import xarray as xr

from pde_lab.cli import main
from pde_lab.datasets import validate_file
from pde_lab.datasets.export import EXPORTERS, export_sample
from pde_lab.datasets.parts import trajectory_checksums
from pde_lab.datasets.writer import attr_value


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def mesh_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fem")
    for pde in ("poisson_fem", "heat_fem"):
        assert main(["generate", "--pde", pde, "--levels", "easy,hard", "--n-train", "3", "--n-valid", "0",
                     "--n-test", "1", "--resolution", "10", "--batch-size", "2", "--out", str(root / pde),
                     "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    for pde in ("toy_scale", "toy_decay"):
        assert main(["generate", "--pde", pde, "--n-train", "2", "--n-valid", "0", "--n-test", "0",
                     "--resolution", "8", "--out", str(root / pde), "--quiet"]) == 0
    return root


def test_generated_mesh_files_validate_and_store_the_mesh(capsys, mesh_data):
    code, out, _ = run(capsys, "validate", mesh_data / "poisson_fem", mesh_data / "heat_fem")
    assert code == 0 and out.count(": ok") == 8
    with h5py.File(mesh_data / "heat_fem/train/hard.h5") as f:
        assert f.attrs["grid_type"] == "mesh"
        n = f["mesh/nodes"].shape[0]
        assert f["t0_fields/u"].shape == (3, 11, n) and f["t0_fields/a"].shape == (3, n)
        assert list(f.attrs["spatial_resolution"]) == [n]
        tags = attr_value(f["mesh"].attrs["tag_names"])
        assert tags == ["outer", "hole"]
        mask = f["boundary_conditions/hole_neumann/mask_hole"][()]
        assert mask.shape == (n,) and 0 < mask.sum() < n
    with h5py.File(mesh_data / "heat_fem/train/easy.h5") as f:  # a disk has no hole: the condition names none
        assert len(f["boundary_conditions/hole_neumann"].attrs["associated_dims"]) == 0
    code, out, _ = run(capsys, "info", mesh_data / "poisson_fem")
    assert code == 0 and "nodes" in out


def _corrupt(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return validate_file(dst)


def test_validator_mesh_checks(mesh_data, tmp_path):
    src = mesh_data / "poisson_fem/train/hard.h5"

    def flip(f):
        c = f["mesh/cells"][()]
        c[0] = c[0, ::-1]
        f["mesh/cells"][...] = c

    def out_of_range(f):
        c = f["mesh/cells"][()]
        c[0, 0] = f["mesh/nodes"].shape[0]
        f["mesh/cells"][...] = c

    def fewer_nodes(f):
        nodes = f["mesh/nodes"][()]
        del f["mesh/nodes"]
        f["mesh"].create_dataset("nodes", data=nodes[:-1])

    assert validate_file(src) == []
    assert any("non-positive area" in e for e in _corrupt(src, tmp_path / "a.h5", flip))
    assert any("node indices" in e for e in _corrupt(src, tmp_path / "b.h5", out_of_range))
    assert any("n_nodes" in e for e in _corrupt(src, tmp_path / "c.h5", fewer_nodes))
    assert any("/mesh is missing" in e for e in _corrupt(src, tmp_path / "d.h5", lambda f: f.__delitem__("mesh")))

    def float_cells(f):
        c = f["mesh/cells"][()]
        del f["mesh/cells"]
        f["mesh"].create_dataset("cells", data=c.astype(np.float64))

    def short_mask(f):
        del f["boundary_conditions/outer_dirichlet/mask_outer"]
        f["boundary_conditions/outer_dirichlet"].create_dataset("mask_outer", data=np.ones(3, bool))

    assert any("/mesh/cells: dtype float64, expected int64" in e for e in _corrupt(src, tmp_path / "e.h5", float_cells))
    assert any("node coordinate must be 0 .." in e for e in _corrupt(
        src, tmp_path / "f.h5", lambda f: f["dimensions/node"].__setitem__(0, -1.0)))
    assert any("'geometry_params' is not valid JSON" in e for e in _corrupt(
        src, tmp_path / "g.h5", lambda f: f["mesh"].attrs.__setitem__("geometry_params", "{")))
    assert any("mask_outer: expected bool of shape" in e for e in _corrupt(src, tmp_path / "h.h5", short_mask))


def test_a_vector_field_on_a_mesh_has_one_component_per_spatial_dimension(mesh_data, tmp_path):
    """``spatial_resolution`` of a mesh file is ``(n_nodes,)``: the component axis was sized by it (1)
    instead of by ``n_spatial_dims`` (2), so a velocity on a mesh was refused."""
    def add_velocity(f):
        n, n_nodes = f["t0_fields/a"].shape
        v = np.random.default_rng(0).standard_normal((n, n_nodes, 2)).astype(np.float32)
        d = f["t1_fields"].create_dataset("v", data=v, chunks=(1, n_nodes, 2))
        for key, value in f["t0_fields/a"].attrs.items():
            d.attrs[key] = value
        d.attrs["role"] = "solution"
        f["t1_fields"].attrs["field_names"] = ["v"]
        f["trajectories"].create_dataset("checksum_v", data=trajectory_checksums(v))

    assert _corrupt(mesh_data / "poisson_fem/train/hard.h5", tmp_path / "v.h5", add_velocity) == []


@pytest.mark.parametrize("pde, suffix", [("heat_fem", ".pvd"), ("poisson_fem", ".vtu")])
def test_vtu_roundtrip_mesh(capsys, mesh_data, tmp_path, pde, suffix):
    src = mesh_data / pde / "train/hard.h5"
    code, out, _ = run(capsys, "export", src, "--index", "2", "--format", "vtu", "--out", tmp_path / f"s{suffix}")
    assert code == 0
    with h5py.File(src) as f:
        nodes, cells = f["mesh/nodes"][()], f["mesh/cells"][()]
        u = f["t0_fields/u"][2]
        a = f["t0_fields/a"][2]
    if pde == "heat_fem":
        frames = sorted(tmp_path.glob("s_*.vtu"))
        assert len(frames) == 11 and (tmp_path / "s.pvd").is_file()
        assert 's_0010.vtu' in (tmp_path / "s.pvd").read_text()
        for k in (0, 5, 10):
            m = meshio.read(frames[k])
            assert np.array_equal(m.point_data["u"], u[k]) and np.array_equal(m.point_data["a"], a)
    else:
        m = meshio.read(tmp_path / "s.vtu")
        assert np.array_equal(m.point_data["u"], u)
        assert np.allclose(m.points[:, :2], nodes) and np.array_equal(m.cells_dict["triangle"], cells)
    assert not list(tmp_path.glob(".*partial*"))


def test_xdmf_time_series_roundtrip(mesh_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # meshio's writer would otherwise drop its .h5 in the working directory
    src = mesh_data / "heat_fem/train/easy.h5"
    (tmp_path / "out").mkdir()
    written = export_sample(src, 1, "xdmf", tmp_path / "out/s.xdmf")
    assert sorted(p.name for p in written) == ["s.h5", "s.xdmf"]
    with h5py.File(src) as f:
        u, t = f["t0_fields/u"][1], f["dimensions/time"][()]
    with meshio.xdmf.TimeSeriesReader(tmp_path / "out/s.xdmf") as r:
        points, cells = r.read_points_cells()
        assert r.num_steps == len(t)
        for k in range(r.num_steps):
            tk, pd, _ = r.read_data(k)
            assert tk == pytest.approx(t[k]) and np.array_equal(pd["u"], u[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_netcdf_mesh(mesh_data, tmp_path):
    src = mesh_data / "poisson_fem/train/hard.h5"
    export_sample(src, 0, "netcdf", tmp_path / "s.nc")
    ds = xr.open_dataset(tmp_path / "s.nc", engine="h5netcdf")
    with h5py.File(src) as f:
        assert np.array_equal(ds["u"].values, f["t0_fields/u"][0])
        assert np.array_equal(ds["x"].values, f["mesh/nodes"][:, 0])
        assert np.array_equal(ds["cells"].values, f["mesh/cells"][()])
        assert float(ds["contrast"]) == f["scalars/contrast"][0]
    ds.close()


def test_cartesian_exports(grid_data, tmp_path):
    src = grid_data / "toy_scale/train/easy.h5"  # 2D, steady, a vector field
    export_sample(src, 1, "vtu", tmp_path / "s.vtu")
    m = meshio.read(tmp_path / "s.vtu")
    with h5py.File(src) as f:
        x, y = f["dimensions/x"][()], f["dimensions/y"][()]
        u, v = f["t0_fields/u"][1], f["t1_fields/v"][1]
    assert len(m.cells_dict["quad"]) == (len(x) - 1) * (len(y) - 1)
    i, j = 3, 5
    p = i * len(y) + j
    assert np.allclose(m.points[p, :2], [x[i], y[j]]) and m.point_data["u"][p] == u[i, j]
    assert np.array_equal(m.point_data["v"][p], v[i, j])
    export_sample(src, 1, "netcdf", tmp_path / "s.nc")
    with xr.open_dataset(tmp_path / "s.nc", engine="h5netcdf") as ds:
        assert ds["u"].dims == ("x", "y") and np.array_equal(ds["u"].values, u)
        assert ds["u"].dtype == ds["v"].dtype == np.float32  # as stored, not widened to float64
    src = grid_data / "toy_decay/train/easy.h5"  # 1D, time-dependent
    export_sample(src, 0, "xdmf", tmp_path / "d.xdmf")
    with h5py.File(src) as f:
        u = f["t0_fields/u"][0]
    with meshio.xdmf.TimeSeriesReader(tmp_path / "d.xdmf") as r:
        r.read_points_cells()
        _, pd, _ = r.read_data(r.num_steps - 1)
        assert np.array_equal(pd["u"], u[-1])


def test_netcdf_exports_vector_and_rank2_tensor_fields(tmp_path):
    """A rank-2 field (t2_fields, e.g. imported from The Well) has two component axes; netCDF export
    named only one and failed inside xarray."""
    from pde_lab.datasets.interop.builder import FileBuilder

    a = np.random.default_rng(5).random((2, 3, 4, 5, 2, 2)).astype(np.float32)
    b = FileBuilder(tmp_path / "t.h5", pde="stress_toy", n=2, coords={"x": np.arange(4.0), "y": np.arange(5.0)},
                    periodic=[False, True], times=np.arange(3.0))
    b.add_field("sigma", rank=2)
    b.add_field("v", rank=1)
    for i in range(2):
        b.write("sigma", i, a[i])
        b.write("v", i, a[i, ..., 0])
    export_sample(b.close(), 1, "netcdf", tmp_path / "s.nc")
    with xr.open_dataset(tmp_path / "s.nc", engine="h5netcdf") as ds:
        assert ds["sigma"].dims == ("time", "x", "y", "sigma_component0", "sigma_component1")
        assert ds["v"].dims == ("time", "x", "y", "v_component")
        assert np.array_equal(ds["sigma"].values, a[1]) and np.array_equal(ds["v"].values, a[1, ..., 0])


def test_export_errors_leave_nothing(capsys, mesh_data, tmp_path):
    src = mesh_data / "poisson_fem/train/easy.h5"
    cases = [
        (["--index", "7", "--format", "vtu", "--out", tmp_path / "a.vtu"], "out of range"),
        (["--index", "-1", "--format", "vtu", "--out", tmp_path / "a.vtu"], "out of range"),
        (["--format", "vtk", "--out", tmp_path / "a.vtu"], "unknown export format 'vtk'; allowed: "),
        (["--format", "xdmf", "--out", tmp_path / "a.vtu"], f"xdmf output {tmp_path / 'a.vtu'} must end in .xdmf"),
        (["--format", "vtu", "--out", tmp_path / "s4.nc"], f"vtu output {tmp_path / 's4.nc'} must end in .vtu or .pvd"),
        (["--format", "vtu", "--out", tmp_path / "s4.nc" / "a.vtu"], f"{tmp_path / 's4.nc'} is a file, not a directory"),
    ]
    (tmp_path / "s4.nc").write_text("")
    for args, message in cases:
        code, _, err = run(capsys, "export", src, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    (tmp_path / "s4.nc").unlink()
    code, _, err = run(capsys, "export", tmp_path / "nope.h5", "--out", tmp_path / "a.vtu")
    assert code == 2 and "not a valid pde_lab file" in err
    code, _, err = run(capsys, "export", mesh_data, "--out", tmp_path / "a.vtu")
    assert code == 2 and f"{mesh_data} is a directory, not a pde_lab file" in err
    assert list(tmp_path.iterdir()) == []
    assert set(EXPORTERS) >= {"vtu", "xdmf", "netcdf"}


@pytest.mark.parametrize("name, made", [("s.nc", ["s.nc"]), ("s.xdmf", ["s.h5", "s.xdmf"]), ("s", None)])
def test_export_format_follows_the_out_suffix(capsys, mesh_data, tmp_path, name, made):
    """`--out y.nc` used to fail with "vtu output ... must end in .vtu": the default was vtu whatever
    the suffix. Without a known suffix the default is still vtu, whose suffix check then names it."""
    code, _, err = run(capsys, "export", mesh_data / "poisson_fem/train/easy.h5", "--out", tmp_path / name)
    if made is None:
        assert code == 2 and "vtu output" in err and "must end in .vtu or .pvd" in err
    else:
        assert code == 0, err
        assert sorted(p.name for p in tmp_path.iterdir()) == made


def test_failed_write_leaves_no_partial(mesh_data, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(meshio, "write", boom)
    with pytest.raises(OSError):
        export_sample(mesh_data / "heat_fem/train/easy.h5", 0, "vtu", tmp_path / "s.pvd")
    # the parent directories an export makes go too
    with pytest.raises(OSError):
        export_sample(mesh_data / "heat_fem/train/easy.h5", 0, "vtu", tmp_path / "new" / "deeper" / "s.pvd")
    assert list(tmp_path.iterdir()) == []


def test_export_makes_missing_parent_directories(mesh_data, tmp_path):
    written = export_sample(mesh_data / "poisson_fem/train/easy.h5", 0, "vtu", tmp_path / "new" / "deeper" / "a.vtu")
    assert written == [tmp_path / "new" / "deeper" / "a.vtu"] and written[0].stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "new" / "deeper").iterdir()) == ["a.vtu"]


def test_xarray_and_read_mesh_of_a_mesh_file(mesh_data):
    from pde_lab.datasets import open_dataset
    from pde_lab.meshes import read_mesh
    from pde_lab.pdes import get_pde

    src = mesh_data / "poisson_fem/train/hard.h5"
    ds = open_dataset(src)
    mesh = read_mesh(src)
    assert ds["u"].dims == ("trajectory", "node")
    assert np.array_equal(ds["x"].values, mesh.nodes[:, 0]) and np.array_equal(ds["y"].values, mesh.nodes[:, 1])
    # The stored mesh is the one the PDE builds for the level, tags included.
    built = get_pde("poisson_fem").level_grid("hard", 10)
    assert np.array_equal(mesh.nodes, built.nodes) and np.array_equal(mesh.triangles, built.triangles)
    assert mesh.tag_names == built.tag_names and np.array_equal(mesh.facet_tags, built.facet_tags)
    # Stored data (contrast 1) satisfies the discrete equations up to float32 rounding; 0.1 % off does not.
    src = mesh_data / "poisson_fem/train/easy.h5"
    pde, mesh = get_pde("poisson_fem"), read_mesh(src)
    fields = {k: v.astype(np.float64) for k, v in open_dataset(src)[["a", "f", "u"]].items()}
    load = np.abs(pde.space(mesh).load(fields["f"][0])).max()
    assert np.abs(pde.residual(fields, {}, mesh)).max() < 1e-4 * load
    assert np.abs(pde.residual({**fields, "u": 1.001 * fields["u"]}, {}, mesh)).max() > 5e-4 * load


def test_export_never_replaces_the_source_or_existing_files(capsys, grid_data, tmp_path):
    src = tmp_path / "d.h5"
    shutil.copy(grid_data / "toy_decay/train/easy.h5", src)
    before = src.read_bytes()
    # XDMF writes its heavy data to <stem>.h5: next to the source that is the source itself.
    code, _, err = run(capsys, "export", src, "--format", "xdmf", "--out", tmp_path / "d.xdmf", "--overwrite")
    assert code == 2 and "the file being exported" in err
    code, _, err = run(capsys, "export", src, "--format", "the_well", "--out", src, "--overwrite")
    assert code == 2 and "the file being exported" in err
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]
    assert run(capsys, "export", src, "--format", "netcdf", "--out", tmp_path / "s.nc")[0] == 0
    stamp = (tmp_path / "s.nc").stat().st_mtime_ns
    code, _, err = run(capsys, "export", src, "--format", "netcdf", "--out", tmp_path / "s.nc")
    assert code == 2 and "s.nc exists; pass --overwrite" in err and (tmp_path / "s.nc").stat().st_mtime_ns == stamp
    # A frame file of a time series that is already there counts as well.
    (tmp_path / "v_0003.vtu").write_text("mine")
    code, _, err = run(capsys, "export", src, "--format", "vtu", "--out", tmp_path / "v.pvd")
    assert code == 2 and "v_0003.vtu exists" in err
    assert (tmp_path / "v_0003.vtu").read_text() == "mine" and not (tmp_path / "v.pvd").exists()
    assert run(capsys, "export", src, "--format", "vtu", "--out", tmp_path / "v.pvd", "--overwrite")[0] == 0
    assert (tmp_path / "v.pvd").is_file() and not list(tmp_path.glob(".*partial*"))


def test_export_well_refuses_mesh_files_and_leaves_nothing(capsys, mesh_data, tmp_path):
    code, _, err = run(capsys, "export-well", mesh_data / "poisson_fem/train/hard.h5", tmp_path / "w.hdf5")
    assert code == 2 and "The Well stores Cartesian grids only" in err
    assert list(tmp_path.iterdir()) == []


def test_operator_training_refuses_two_meshes_at_once(mesh_data, tmp_path, capsys):
    """Two levels are two geometries: one batch cannot hold both (tests/test_mesh_training.py trains on one)."""
    code = main(["train", "--data", str(mesh_data / "poisson_fem"), "--model", "galerkin_transformer", "--epochs",
                 "1", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "holds another mesh than" in err and "--levels NAME" in err, err
    assert not (tmp_path / "r").exists()
