"""The Well (both directions) and PDEBench (read) conversions, and `pde-lab import`."""
import h5py
import numpy as np
import pytest

from pde_lab.cli import main
from pde_lab.datasets import FieldDataset, GenerateConfig, generate, validate_file
from pde_lab.datasets.interop import import_file
from pde_lab.datasets.interop.pdebench import import_pdebench, parameters_from_name
from pde_lab.datasets.interop.the_well import check_well_file, export_well, import_well
from pde_lab.errors import UserError


def gen(tmp_path, pde):
    out = generate(GenerateConfig(pde=pde, out=str(tmp_path / pde), n_train=3, n_valid=0, n_test=0, batch_size=2,
                                  levels=["easy"], progress=False))
    return out / "train" / "easy.h5"


def h5_tree(path):
    """Every dataset's values and every attribute of a file, keyed by path."""
    items = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            for k, v in obj.attrs.items():
                items[f"{name}@{k}"] = np.asarray(v).tolist()
            if isinstance(obj, h5py.Dataset):
                items[name] = (obj.dtype.str, obj.shape, obj.chunks, obj[()].tobytes())
        for k, v in f.attrs.items():
            items[f"@{k}"] = np.asarray(v).tolist()
        f.visititems(visit)
    return items


@pytest.mark.parametrize("pde", ["toy_decay", "toy_scale"])
def test_pde_lab_to_well_to_pde_lab_is_lossless(tmp_path, pde):
    src = gen(tmp_path, pde)
    well = export_well(src, tmp_path / "well.hdf5")
    assert check_well_file(well) == []
    back = import_well(well, tmp_path / "back.h5")
    assert validate_file(back) == []
    a, b = h5_tree(src), h5_tree(back)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k


def test_export_well_never_replaces_its_source_nor_leaves_a_partial(tmp_path, monkeypatch):
    from pde_lab.datasets.interop import the_well

    src = gen(tmp_path, "toy_decay")
    before = src.read_bytes()
    with pytest.raises(UserError, match="the file being converted"):
        export_well(src, src, overwrite=True)
    with pytest.raises(UserError, match="the file being converted"):
        import_file("the_well", src, src, overwrite=True)
    assert src.read_bytes() == before
    # Another existing file is replaced only when asked, from Python as from the command line.
    well = export_well(src, tmp_path / "well.hdf5")
    kept = well.read_bytes()
    with pytest.raises(UserError, match=r"well.hdf5 exists; pass --overwrite \(overwrite=True\)"):
        export_well(src, well)
    other = tmp_path / "other.h5"
    other.write_bytes(b"keep me")
    with pytest.raises(UserError, match="other.h5 exists"):
        import_file("the_well", well, other)
    assert well.read_bytes() == kept and other.read_bytes() == b"keep me"
    assert validate_file(import_file("the_well", well, other, overwrite=True)) == []
    monkeypatch.setattr(the_well, "_TO_WELL_BC", {})  # fails half-way, after the partial file exists
    with pytest.raises(KeyError):
        export_well(src, tmp_path / "w.hdf5")
    assert not list(tmp_path.glob("w.hdf5*"))


def test_exported_file_follows_the_well_spec(tmp_path):
    src = gen(tmp_path, "toy_scale")
    well = export_well(src, tmp_path / "well.hdf5")
    with h5py.File(well) as f, h5py.File(src) as s:
        assert f.attrs["dataset_name"] == "toy_scale" and f.attrs["grid_type"] == "cartesian"
        assert f.attrs["n_spatial_dims"] == 2 and f.attrs["n_trajectories"] == 3
        assert list(f["dimensions"].attrs["spatial_dims"]) == [b"x", b"y"] or \
            list(f["dimensions"].attrs["spatial_dims"]) == ["x", "y"]
        assert f["dimensions/x"].dtype == np.float32 and not f["dimensions/time"].attrs["sample_varying"]
        v = f["t1_fields/v"]
        assert v.shape == (3, 8, 8, 2) and v.dtype == np.float32
        assert not v.attrs["time_varying"] and v.attrs["sample_varying"]
        assert list(v.attrs["dim_varying"]) == [True, True]
        np.testing.assert_array_equal(v[()], s["t1_fields/v"][()])
        bc = f["boundary_conditions/xy_wall"]
        assert bc.attrs["bc_type"] == "wall"
        mask = bc["mask"][()]
        assert mask.shape == (8, 8) and mask[0].all() and mask[:, -1].all() and not mask[1:-1, 1:-1].any()
        assert bc["values"].shape == (int(mask.sum()),)
        c = f["scalars/c"]
        assert c.attrs["sample_varying"] and not c.attrs["time_varying"]
        np.testing.assert_allclose(c[()], s["scalars/c"][()], rtol=1e-7)
        assert list(f.attrs["simulation_parameters"]) == []  # c varies between samples
    # A file missing what The Well's reader needs is reported.
    with h5py.File(well, "a") as f:
        del f["t1_fields/v"].attrs["dim_varying"]
        del f.attrs["grid_type"]
    errs = check_well_file(well)
    assert any("grid_type" in e for e in errs)
    with h5py.File(well, "a") as f:
        f.attrs["grid_type"] = "cartesian"
    assert any("dim_varying" in e for e in check_well_file(well))


def foreign_well(path, n=2, nt=4, nx=6, ny=5):
    """A Well file as PolymathicAI writes them, with none of pde_lab's extras."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs.update(dataset_name="shear_toy", grid_type="cartesian", n_spatial_dims=2, n_trajectories=n,
                       simulation_parameters=["Reynolds"], Reynolds=100.0)
        d = f.create_group("dimensions")
        d.attrs["spatial_dims"] = ["x", "y"]
        t = d.create_dataset("time", data=np.linspace(0, 1.5, nt).astype(np.float32))
        t.attrs["sample_varying"] = False
        for ax, m in (("x", nx), ("y", ny)):
            c = d.create_dataset(ax, data=np.linspace(0, 1, m, endpoint=False).astype(np.float32))
            c.attrs.update(sample_varying=False, time_varying=False)
        bcs = f.create_group("boundary_conditions")
        g = bcs.create_group("x_periodic")
        g.attrs.update(associated_dims=["x"], associated_fields=[], bc_type="periodic", sample_varying=False,
                       time_varying=False)
        g.create_dataset("mask", data=np.array([1, 0, 0, 0, 0, 1], dtype=bool))
        g.create_dataset("values", data=np.zeros(2, np.float32))
        g = bcs.create_group("y_wall")
        g.attrs.update(associated_dims=["y"], associated_fields=["tracer"], bc_type="WALL", sample_varying=False,
                       time_varying=False)
        g.create_dataset("mask", data=np.array([1, 0, 0, 0, 1], dtype=bool))
        g.create_dataset("values", data=np.full(2, 0.5, np.float32))
        s = f.create_group("scalars")
        s.attrs["field_names"] = ["Reynolds", "energy"]
        s.create_dataset("Reynolds", data=np.float32(100.0)).attrs.update(sample_varying=False, time_varying=False)
        s.create_dataset("energy", data=rng.random(nt).astype(np.float32)).attrs.update(sample_varying=False,
                                                                                         time_varying=True)
        fields = {}
        t0 = f.create_group("t0_fields")
        t0.attrs["field_names"] = ["tracer", "profile"]
        fields["tracer"] = rng.random((n, nt, nx, ny)).astype(np.float32)
        t0.create_dataset("tracer", data=fields["tracer"]).attrs.update(dim_varying=[True, True],
                                                                         sample_varying=True, time_varying=True)
        fields["profile"] = rng.random(ny).astype(np.float32)  # constant over samples, time and x
        t0.create_dataset("profile", data=fields["profile"]).attrs.update(dim_varying=[False, True],
                                                                           sample_varying=False, time_varying=False)
        t1 = f.create_group("t1_fields")
        t1.attrs["field_names"] = ["velocity"]
        fields["velocity"] = rng.random((n, nt, nx, ny, 2)).astype(np.float32)
        t1.create_dataset("velocity", data=fields["velocity"]).attrs.update(dim_varying=[True, True],
                                                                             sample_varying=True, time_varying=True)
        f.create_group("t2_fields").attrs["field_names"] = []
    return fields


def test_import_foreign_well_file(tmp_path):
    src = tmp_path / "shear_toy_Reynolds_100.hdf5"
    fields = foreign_well(src)
    assert check_well_file(src) == []
    with pytest.warns(UserWarning, match="'energy' varies in time"):
        out = import_well(src, tmp_path / "imported" / "train" / "easy.h5", level="easy")
    assert validate_file(out) == []
    with h5py.File(out) as f:
        assert f.attrs["pde"] == "shear_toy" and f.attrs["level"] == "easy"
        np.testing.assert_array_equal(f["t0_fields/tracer"][()], fields["tracer"])
        np.testing.assert_array_equal(f["t1_fields/velocity"][()], fields["velocity"])
        profile = f["t0_fields/profile"]
        assert profile.shape == (2, 6, 5) and profile.attrs["role"] == "input"
        np.testing.assert_array_equal(profile[()], np.broadcast_to(fields["profile"], (2, 6, 5)))
        assert f["t0_fields/tracer"].attrs["role"] == "solution"
        assert f["scalars/Reynolds"][()].tolist() == [100.0, 100.0] and "energy" not in f["scalars"]
        assert list(f["dimensions"].attrs["periodic"]) == [True, False]
        wall = f["boundary_conditions/y_wall"]
        assert wall.attrs["bc_type"] == "DIRICHLET" and wall.attrs["well_bc_type"] == "WALL"
        assert wall.attrs["value"] == 0.5 and wall["mask_y"][()].tolist() == [True, False, False, False, True]
    ds = FieldDataset([out])
    assert ds.input_channels == ["profile", "tracer", "velocity_x", "velocity_y"]
    x, _ = ds[1]
    np.testing.assert_array_equal(x[0, ..., 1].numpy(), fields["tracer"][1, 0])


def test_well_import_errors(tmp_path):
    src = tmp_path / "w.hdf5"
    foreign_well(src)
    with h5py.File(src, "a") as f:
        f.attrs["grid_type"] = "spherical"
    with pytest.raises(UserError, match="grid_type 'spherical'"):
        import_well(src, tmp_path / "o.h5")
    with h5py.File(src, "a") as f:
        del f.attrs["dataset_name"]
    with pytest.raises(UserError, match="does not follow The Well's layout: /: missing attribute 'dataset_name'"):
        import_well(src, tmp_path / "o.h5")
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(UserError, match="not an HDF5 file"):
        import_well(tmp_path / "junk.hdf5", tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o.h5.partial").exists()


# ---- PDEBench ------------------------------------------------------------------------------------
def pdebench_1d(path, n=4, nt=5, nx=16):
    rng = np.random.default_rng(1)
    u = rng.standard_normal((n, nt, nx)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tensor"] = u
        f["x-coordinate"] = ((np.arange(nx) + 0.5) / nx).astype(np.float32)
        f["t-coordinate"] = np.linspace(0, 2.0, nt + 1).astype(np.float32)  # PDEBench stores one extra time
    return u


def test_pdebench_1d_burgers(tmp_path):
    src = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    u = pdebench_1d(src)
    out = import_pdebench(src, tmp_path / "b.h5", periodic=True)
    assert validate_file(out) == []
    with h5py.File(out) as f:
        assert f.attrs["pde"] == "pdebench_1D_Burgers_Sols"
        np.testing.assert_array_equal(f["t0_fields/u"][()], u)
        np.testing.assert_allclose(f["dimensions/time"][()], np.linspace(0, 2.0, 6)[:5], rtol=1e-6)
        assert f["scalars/nu"][()].tolist() == [0.01] * 4
        assert f["t0_fields/u"].chunks == (1, 1, 16)
    # A sample range makes a split.
    part = import_pdebench(src, tmp_path / "valid.h5", split="valid", samples=(1, 3))
    with h5py.File(part) as f:
        np.testing.assert_array_equal(f["t0_fields/u"][()], u[1:3])
        assert f["trajectories/index_in_source"][()].tolist() == [1.0, 2.0]
    with pytest.raises(UserError, match="samples 2:9 not within the 4 samples"):
        import_pdebench(src, tmp_path / "x.h5", samples=(2, 9))


@pytest.mark.parametrize("t_coordinate", [False, True])
def test_pdebench_darcy_static_input_and_solution(tmp_path, t_coordinate):
    """The released Darcy files also hold a ``t-coordinate`` (10 times) for their single frame: the
    solution is still static (a one-frame time series would leave no target frame to learn)."""
    src = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    rng = np.random.default_rng(2)
    nu = rng.choice([0.1, 1.0], size=(3, 8, 8)).astype(np.float32)
    sol = rng.random((3, 1, 8, 8)).astype(np.float32)
    with h5py.File(src, "w") as f:
        f["nu"], f["tensor"] = nu, sol
        f["x-coordinate"] = np.linspace(1 / 16, 1 - 1 / 16, 8).astype(np.float32)
        f["y-coordinate"] = np.linspace(1 / 16, 1 - 1 / 16, 8).astype(np.float32)
        if t_coordinate:
            f["t-coordinate"] = np.linspace(0, 1, 10).astype(np.float32)
    out = import_file("pdebench", src, tmp_path / "darcy.h5")
    assert validate_file(out) == []
    ds = FieldDataset([out])
    assert ds.input_channels == ["nu"] and ds.target_channels == ["u"]
    x, y = ds[2]
    np.testing.assert_array_equal(x[0, ..., 0].numpy(), nu[2])
    np.testing.assert_array_equal(y[0, ..., 0].numpy(), sol[2, 0])
    with h5py.File(out) as f:
        assert "time" not in f["dimensions"] and f["scalars/beta"][()].tolist() == [1.0] * 3


def test_pdebench_group_file_diffusion_sorption(tmp_path):
    src = tmp_path / "1D_diff-sorp_NA_NA.h5"
    rng = np.random.default_rng(3)
    data = {}
    with h5py.File(src, "w") as f:
        for i in range(3):
            g = f.create_group(f"{i:04d}")
            data[i] = rng.random((6, 10, 1)).astype(np.float32)
            g["data"] = data[i]
            g["grid/x"] = np.linspace(0.05, 0.95, 10).astype(np.float32)
            g["grid/t"] = np.linspace(0, 5, 6).astype(np.float32)
    out = import_pdebench(src, tmp_path / "ds.h5", level="easy")
    assert validate_file(out) == []
    with h5py.File(out) as f:
        for i in range(3):
            np.testing.assert_array_equal(f["t0_fields/u"][i], data[i][..., 0])
        assert f["t0_fields/u"].attrs["role"] == "solution" and f.attrs["level"] == "easy"
    with pytest.raises(UserError, match=r"field_names \['a', 'b'\] must name the 1 channels"):
        import_pdebench(src, tmp_path / "x.h5", field_names=["a", "b"])


def test_pdebench_parameter_names_and_bad_files(tmp_path):
    assert parameters_from_name("1D_Advection_Sols_beta0.4.hdf5") == {"beta": 0.4}
    assert parameters_from_name("ReacDiff_Nu0.5_Rho1e-1.hdf5") == {"nu": 0.5, "rho": 0.1}
    assert parameters_from_name("1D_diff-sorp_NA_NA.h5") == {}
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(UserError, match="not a PDEBench file.*found: something"):
        import_pdebench(bad, tmp_path / "x.h5")
    with h5py.File(bad, "w") as f:
        f["tensor"] = np.zeros((2, 3, 7), np.float32)
        f["x-coordinate"] = np.linspace(0, 1, 8)
    with pytest.raises(UserError, match=r"'tensor' of shape \(2, 3, 7\) does not fit the grid \(8,\)"):
        import_pdebench(bad, tmp_path / "x.h5")


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_import_and_errors(tmp_path, capsys):
    src = tmp_path / "1D_Advection_Sols_beta0.1.hdf5"
    pdebench_1d(src)
    out = tmp_path / "data" / "train" / "easy.h5"
    assert main(["import", "pdebench", str(src), str(out), "--level", "easy", "--periodic"]) == 0
    assert validate_file(out) == []
    assert main(["validate", str(tmp_path / "data")]) == 0
    capsys.readouterr()
    assert main(["import", "netcdf", str(src), str(tmp_path / "o.h5")]) == 2
    assert "unknown import format 'netcdf'; allowed: pdebench, the_well" in capsys.readouterr().err
    assert main(["import", "pdebench", str(src), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    well = tmp_path / "w.hdf5"
    foreign_well(well)
    assert main(["import", "the_well", str(well), str(tmp_path / "w.h5"), "--split", "test"]) == 0
    err = capsys.readouterr().err
    # Python's warning format (file, line number, source line) is for programmers; users get one line.
    assert "pde-lab import: warning: " in err and "UserWarning" not in err
    assert main(["import", "pdebench", str(src), str(tmp_path / "s.h5"), "--samples", "3:1"]) == 2
    assert "samples 3:1 is empty: START must be less than STOP" in capsys.readouterr().err


def test_a_split_given_on_import_replaces_an_exported_files_own_and_another_level_is_refused(tmp_path, capsys):
    """Both options were ignored for files pde_lab exported: the file landed in test/ saying 'train'."""
    src = gen(tmp_path, "toy_decay")
    well = export_well(src, tmp_path / "well.hdf5")
    with h5py.File(src) as s:
        level, split = s.attrs["level"], s.attrs["split"]
    assert split != "test"
    out = tmp_path / "data" / "test" / f"{level}.h5"
    out.parent.mkdir(parents=True)
    assert main(["import", "the_well", str(well), str(out), "--level", "hard", "--quiet"]) == 2
    assert f"holds level {level!r} of a pde_lab dataset" in capsys.readouterr().err and not out.exists()
    assert main(["import", "the_well", str(well), str(out), "--split", "test", "--quiet"]) == 0
    with h5py.File(out) as f:
        assert (f.attrs["level"], f.attrs["split"]) == (level, "test")
    assert validate_file(out) == []


def test_cli_exports_a_sample_and_a_whole_file_to_the_well(tmp_path, capsys):
    src = gen(tmp_path, "toy_decay")
    one = tmp_path / "one.hdf5"
    assert main(["export", str(src), "--index", "2", "--format", "the_well", "--out", str(one)]) == 0
    assert check_well_file(one) == []
    with h5py.File(one) as f, h5py.File(src) as s:
        assert f.attrs["n_trajectories"] == 1
        np.testing.assert_array_equal(f["t0_fields/u"][0], s["t0_fields/u"][2])
        assert f["scalars/k"][0] == np.float32(s["scalars/k"][2])
    # the periodic axis stays periodic, at the same points (it came back bounded, half a cell shifted),
    # also for a reader of The Well's own groups alone, which learns periodicity from its boundary conditions
    with h5py.File(one) as f:
        assert list(f["boundary_conditions"]) == ["x_periodic"]
        assert f["boundary_conditions/x_periodic"].attrs["bc_type"] == "periodic"
        assert list(f["boundary_conditions/x_periodic"].attrs["associated_fields"]) == list(f["t0_fields"].attrs["field_names"])
    bare = tmp_path / "bare.hdf5"  # without the pde_lab group: The Well's groups alone
    bare.write_bytes(one.read_bytes())
    with h5py.File(bare, "a") as f:
        del f["pde_lab"]
    for name, path in (("back", one), ("back_bare", bare)):
        back = import_well(path, tmp_path / f"{name}.h5")
        with h5py.File(back) as b, h5py.File(src) as s:
            assert list(b["dimensions"].attrs["periodic"]) == list(s["dimensions"].attrs["periodic"]) == [True]
            np.testing.assert_allclose(b["dimensions/x"][()], s["dimensions/x"][()], rtol=0, atol=1e-12)
    whole = tmp_path / "whole.hdf5"
    assert main(["export-well", str(src), str(whole)]) == 0
    assert check_well_file(whole) == []
    assert main(["export-well", str(src), str(whole)]) == 2
    assert "exists" in capsys.readouterr().err


def test_pdebench_cfd_named_arrays(tmp_path):
    src = tmp_path / "1D_CFD_Rand_Eta0.01_Zeta0.1_periodic_Train.hdf5"
    rng = np.random.default_rng(4)
    arrays = {k: rng.random((2, 3, 12)).astype(np.float32) + 1 for k in ("density", "pressure", "Vx")}
    with h5py.File(src, "w") as f:
        for k, v in arrays.items():
            f[k] = v
        f["x-coordinate"] = np.linspace(0, 1, 12, endpoint=False)
        f["t-coordinate"] = np.linspace(0, 1, 4)
    out = import_pdebench(src, tmp_path / "cfd.h5")
    assert validate_file(out) == []
    ds = FieldDataset([out])
    assert sorted(ds.target_channels) == ["Vx", "density", "pressure"]
    with h5py.File(out) as f:
        for k, v in arrays.items():
            np.testing.assert_array_equal(f[f"t0_fields/{k}"][()], v)
        assert f["scalars/eta"][0] == 0.01 and f["scalars/zeta"][0] == 0.1


def test_rank2_tensor_field_round_trip_and_symmetry_flag(tmp_path):
    from pde_lab.datasets.interop.builder import FileBuilder

    rng = np.random.default_rng(5)
    a = rng.random((2, 3, 4, 5, 2, 2)).astype(np.float32)
    sym = a + np.swapaxes(a, -1, -2)
    b = FileBuilder(tmp_path / "t.h5", pde="stress_toy", n=2, coords={"x": np.arange(4.0), "y": np.arange(5.0)},
                    periodic=[False, True], times=np.arange(3.0))
    b.add_field("sigma", rank=2)
    b.add_field("rot", rank=2)
    for i in range(2):
        b.write("sigma", i, sym[i])
        b.write("rot", i, a[i])
    b.add_boundary_condition("x_wall", "NEUMANN", ["x"], ["sigma"], value=0.25)
    src = b.close()
    well = export_well(src, tmp_path / "t.hdf5")
    assert check_well_file(well) == []
    with h5py.File(well) as f:
        assert f["t2_fields/sigma"].attrs["symmetric"] and not f["t2_fields/sigma"].attrs["antisymmetric"]
        assert not f["t2_fields/rot"].attrs["symmetric"]
        assert f["boundary_conditions/x_wall"].attrs["bc_type"] == "wall"
    back = import_well(well, tmp_path / "back.h5")
    assert h5_tree(back) == h5_tree(src)
    ds = FieldDataset([back])
    assert ds.target_channels[:4] == ["sigma_xx", "sigma_xy", "sigma_yx", "sigma_yy"]


def test_the_wells_own_reader_reads_an_exported_file(tmp_path):
    """Runs where the-well is installed (not a pde_lab dependency: `pip install the-well einops`)."""
    well_data = pytest.importorskip("the_well.data", reason="the-well is not installed")
    src = gen(tmp_path, "toy_decay")
    split_dir = tmp_path / "well" / "data" / "train"
    split_dir.mkdir(parents=True)
    export_well(src, split_dir / "toy.hdf5")
    ds = well_data.WellDataset(path=str(tmp_path / "well"), well_split_name="train", n_steps_input=2,
                               n_steps_output=1, use_normalization=False)
    assert len(ds) == 3 * 3  # 3 trajectories x 3 windows of 2 + 1 of the 5 frames
    sample = ds[4]  # trajectory 1, window 1
    with h5py.File(src) as f:
        u = f["t0_fields/u"][()]
        k = f["scalars/k"][()]
    np.testing.assert_array_equal(sample["input_fields"][..., 0].numpy(), u[1, 1:3])
    np.testing.assert_array_equal(sample["output_fields"][..., 0].numpy(), u[1, 3:4])
    assert sample["constant_scalars"][0].item() == pytest.approx(k[1], rel=1e-6)
