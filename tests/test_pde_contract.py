"""Every registered PDE family honours the contract generic code relies on (pdes/base.py)."""
import h5py
import numpy as np
import pytest

from pde_lab.errors import UserError
from pde_lab.datasets import GenerateConfig, generate, open_split, validate_path
from pde_lab.pdes import PDES, get_pde

NAMES = PDES.names()


@pytest.mark.parametrize("name", NAMES)
def test_declarations_are_consistent(name):
    pde = get_pde(name)
    params = {p.name for p in pde.parameters}
    assert pde.fields and pde.levels and pde.equation and pde.solver
    assert any(f.role == "solution" for f in pde.fields)
    for level in pde.levels.values():
        assert set(level.ranges) <= params, f"level {level.name} ranges unknown parameters"
        for lo, hi in level.ranges.values():
            assert lo <= hi
    field_names = {f.name for f in pde.fields}
    for bc in pde.boundary_conditions:
        assert set(bc.fields) <= field_names


@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_a_function_of_the_seed(name):
    pde = get_pde(name)
    level = next(iter(pde.levels))
    grid = pde.grid(16)
    a, b = (pde.sample(level, np.random.default_rng(123), grid) for _ in range(2))
    assert a.params == b.params
    for k in a.inputs:
        assert np.array_equal(a.inputs[k], b.inputs[k])


@pytest.mark.parametrize("name", NAMES)
def test_generates_a_valid_file_in_several_batches(name, tmp_path):
    pde = get_pde(name)
    level = next(iter(pde.levels))
    out = generate(GenerateConfig(pde=name, out=str(tmp_path / name), levels=[level], n_train=3, n_valid=0,
                                  n_test=1, resolution=16, batch_size=2, progress=False))
    assert all(errs == [] for errs in validate_path(out).values())
    with h5py.File(out / "train" / f"{level}.h5") as f:
        n_nodes = len(f["mesh/nodes"]) if f.attrs["grid_type"] == "mesh" else None
    ds = open_split(out, "train")
    x, y = ds[0]
    assert np.isfinite(x.numpy()).all() and np.isfinite(y.numpy()).all()
    # a mesh's nodes are one axis, with their coordinates beside the items for the point models
    assert (ds.points is None) == (n_nodes is None)
    if n_nodes is not None:
        assert x.shape[1] == n_nodes and tuple(ds.points.shape) == (n_nodes, 2)


def test_get_pde_accepts_the_options_a_constructor_forwards_to_its_base():
    """Families whose constructor passes ``**kwargs`` on (the periodic semilinear ones) accept the base's
    solver options by name through ``get_pde`` (the CLI's ``--solver-option``), and still refuse
    unknown names listing every allowed one."""
    pde = get_pde("burgers_2d", spectral_tol=1e-10, min_steps_per_interval=2, cfl=0.5)
    assert (pde.spectral_tol, pde.min_steps_per_interval, pde.cfl) == (1e-10, 2, 0.5)
    assert get_pde("allen_cahn_1d", max_solver_resolution=512).max_solver_resolution == 512
    with pytest.raises(UserError, match=r"no solver option\(s\) \['tol'\]; allowed: \['reaction_number', "
                                        r"'resolution_factor', 'min_steps_per_interval', 'spectral_tol'"):
        get_pde("gray_scott_2d", tol=1e-9)
    with pytest.raises(UserError, match="spectral_tol must lie in"):
        get_pde("fisher_kpp_1d", spectral_tol=2.0)


_INTEGER_OPTIONS = [(name, option, value, least)
                    for name, options in (("heat_1d", ("min_steps_per_interval", "n_contour", "max_solver_resolution")),
                                          ("kuramoto_sivashinsky_1d", ("min_steps_per_interval", "n_contour")),
                                          ("burgers", ("min_steps_per_interval", "n_contour", "max_solver_resolution")),
                                          ("navier_stokes_2d", ("min_steps_per_interval", "max_steps_per_interval",
                                                                "n_contour")))
                    for option in options
                    for value, least in {"min_steps_per_interval": ((0.5, 1), (2.5, 1)),
                                         "max_steps_per_interval": ((0.5, 1),),
                                         "n_contour": ((4, 8),),
                                         "max_solver_resolution": ((-1, 4), (511.9, 4))}[option]]


@pytest.mark.parametrize("name, option, value, least", _INTEGER_OPTIONS)
def test_integer_solver_options_must_be_whole_numbers(name, option, value, least):
    """Step counts, contour points and resolution bounds are whole numbers: ``int()`` made
    ``min_steps_per_interval=0.5`` a silent 0 and 2.5 a silent 2, and ``n_contour=4`` or a negative
    ``max_solver_resolution`` were accepted and only failed inside ``solve``."""
    with pytest.raises(UserError, match=rf"{option} must be an integer >= {least}, got {value!r}"):
        get_pde(name, **{option: value})
    assert getattr(get_pde(name, **{option: 16.0}), option) == 16


@pytest.mark.parametrize("name", [n for n in NAMES if PDES.get(n).__module__.startswith("pde_lab.")])
@pytest.mark.parametrize("resolution", [1, 16.5, "16"])
def test_grid_refuses_a_bad_resolution_naming_it(name, resolution):
    with pytest.raises(UserError, match=f"resolution must be .*got {resolution!r}"):
        get_pde(name).grid(resolution)
