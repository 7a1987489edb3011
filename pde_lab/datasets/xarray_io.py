"""pde_lab files as xarray Datasets with named dimensions and coordinates."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from . import schema
from .reader import list_files
from .writer import attr_value


def _open_file(path: Path) -> xr.Dataset:
    with h5py.File(path, "r") as f:
        dims = attr_value(f["dimensions"].attrs["spatial_dims"])
        coords = {d: f[f"dimensions/{d}"][()] for d in dims}
        if "time" in f["dimensions"]:
            coords["time"] = f["dimensions/time"][()]
        if isinstance(f.get("mesh"), h5py.Group):  # fields on mesh nodes: positions as node coordinates
            nodes = f["mesh/nodes"][()]
            coords["x"], coords["y"] = ("node", nodes[:, 0]), ("node", nodes[:, 1])
        n = attr_value(f.attrs["n_trajectories"])
        coords["trajectory"] = np.arange(n)
        data_vars = {}
        for rank, group in enumerate(schema.FIELD_GROUPS):
            for name in attr_value(f[group].attrs["field_names"]):
                d = f[f"{group}/{name}"]
                names = ["trajectory"] + (["time"] if attr_value(d.attrs["time_varying"]) else []) + list(dims)
                names += [f"component{i}" for i in range(rank)]
                data_vars[name] = xr.Variable(names, d[()], attrs={k: attr_value(v) for k, v in d.attrs.items()})
        for group in ("scalars", "dimensionless", "trajectories"):
            for name, d in f[group].items():
                key = name if name not in data_vars else f"{group}_{name}"
                data_vars[key] = xr.Variable(["trajectory"], d[()], attrs={"group": group})
        attrs = {k: attr_value(v) for k, v in f.attrs.items()}
    attrs = {k: (str(v) if isinstance(v, list) else v) for k, v in attrs.items()}
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return ds.assign_coords(level=("trajectory", [attrs["level"]] * n))


def open_dataset(path: str | Path, split: str | None = None) -> xr.Dataset:
    """Open a pde_lab file, or the ``split`` of a dataset directory (default ``train``), as an
    ``xarray.Dataset``; a file named with a ``split`` must hold that split.

    Fields get dims ``(trajectory, [time,] x[, y])``; parameters, dimensionless numbers, seeds and
    costs are variables along ``trajectory``; a ``level`` coordinate names each trajectory's level.
    A directory's levels are concatenated along ``trajectory`` (renumbered from 0).
    """
    files = list_files(path, "train" if split is None and Path(path).is_dir() else split)
    parts = [_open_file(p) for p in files]
    if len(parts) == 1:
        return parts[0]
    ds = xr.concat(parts, dim="trajectory", combine_attrs="drop_conflicts")
    return ds.assign_coords(trajectory=np.arange(ds.sizes["trajectory"]))
