"""Every registered PDE family honours the contract generic code relies on (pdes/base.py)."""
import numpy as np
import pytest

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
    ds = open_split(out, "train")
    x, y = ds[0]
    assert np.isfinite(x.numpy()).all() and np.isfinite(y.numpy()).all()
