"""Write one (PDE, level, split) file in the pde_lab HDF5 format v1.

The writer fills a file at a temporary path and renames it into place only after the root attribute
``complete`` is set, so a reader never sees a half-written file under the final name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from .. import __version__
from ..grids import CartesianGrid
from ..pdes.base import PDE, Instance, SolveResult
from . import schema
from .parts import CHECKSUM_ALGORITHM, Batch, json_default


def attr_value(value: Any) -> Any:
    """An HDF5 attribute value read back as plain Python (str, int, float, bool, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return [attr_value(v) for v in value.tolist()]
    if isinstance(value, list):
        return [attr_value(v) for v in value]
    return value


def _str_list(values: Sequence[str]) -> np.ndarray:
    """``values`` as an HDF5 variable-length string array (the form of every name-list attribute)."""
    return np.array([str(v) for v in values], dtype=h5py.string_dtype())


class DatasetWriter:
    """Writes ``n`` trajectories of one PDE level and split, batch by batch.

    Args:
        path: final file path; data goes to ``path + '.partial'`` until :meth:`close`.
        pde, grid, level, split: what the file holds.
        n: number of trajectories.
        dataset_seed: the dataset seed every per-sample seed derives from.
        generation_config: the resolved generation config (stored as JSON).
    """

    def __init__(self, path: Path, pde: PDE, grid: CartesianGrid, level: str, split: str, n: int,
                 dataset_seed: int, generation_config: Mapping[str, Any]):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.pde, self.grid, self.n = pde, grid, n
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.partial, "w")
        self._created = False
        self._settings: dict[str, Any] | None = None
        a = self.f.attrs
        a["format"] = schema.FORMAT_NAME
        a["format_version"] = schema.FORMAT_VERSION
        a["complete"] = False
        a["pde"] = pde.name
        a["equation"] = pde.equation
        a["level"] = level
        a["split"] = split
        a["n_trajectories"] = n
        a["n_spatial_dims"] = grid.dim
        a["spatial_resolution"] = np.array(grid.shape, dtype=np.int64)
        a["grid_type"] = getattr(grid, "grid_type", "cartesian")
        a["solver"] = pde.solver
        lev = pde.level(level)
        a["level_definition"] = json.dumps({"name": lev.name, "ranges": {k: list(v) for k, v in lev.ranges.items()},
                                            "log_uniform": sorted(lev.log_uniform), "description": lev.description})
        a["generation_config"] = json.dumps(dict(generation_config), sort_keys=True)
        a["dataset_seed"] = int(dataset_seed)
        a["package_version"] = __version__
        try:
            self._write_static()
        except BaseException:  # a full disk: close and delete, so a retry can create the file again
            self.abort()
            raise

    def _write_static(self) -> None:
        f, grid = self.f, self.grid
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = _str_list(grid.axis_names)
        dims.attrs["periodic"] = np.array(grid.periodic)
        dims.attrs["bounds"] = np.array(grid.bounds, dtype=np.float64)
        for name, coord in grid.coordinates().items():
            d = dims.create_dataset(name, data=coord.astype(np.float64))
            d.attrs["sample_varying"] = False
            d.attrs["time_varying"] = False
        for g in schema.FIELD_GROUPS:
            names = [fs.name for fs in self.pde.fields if f"t{fs.rank}_fields" == g]
            f.create_group(g).attrs["field_names"] = _str_list(names)
        scal = f.create_group("scalars")
        scal.attrs["field_names"] = _str_list([p.name for p in self.pde.parameters])
        for p in self.pde.parameters:
            d = scal.create_dataset(p.name, shape=(self.n,), dtype=np.float64)
            d.attrs.update(sample_varying=True, time_varying=False, units=p.units, description=p.description)
        f.create_group("dimensionless")
        bcs = f.create_group("boundary_conditions")
        for bc in self.pde.boundary_conditions:
            g = bcs.create_group(bc.name)
            g.attrs["bc_type"] = bc.kind.upper()
            g.attrs["associated_dims"] = _str_list(bc.axes)
            g.attrs["associated_fields"] = _str_list(bc.fields)
            g.attrs["value"] = float(bc.value)
            # The points next to the boundary, per associated axis (the boundary of a cell-centred
            # grid carries no point of its own).
            if is_mesh(grid):
                _write_mesh_bc(g, grid, bc.axes)
                continue
            for axis in bc.axes:
                n = grid.shape[grid.axis_names.index(axis)]
                mask = np.zeros(n, dtype=bool)
                mask[[0, -1]] = True
                g.create_dataset(f"mask_{axis}", data=mask)
        if is_mesh(grid):
            _write_mesh(f, grid)
        tr = f.create_group("trajectories")
        dtypes = {"u": np.uint64, "i": np.int64, "f": np.float64}
        for name, kind in schema.TRAJECTORY_DATASETS.items():
            tr.create_dataset(name, shape=(self.n,), dtype=dtypes[kind])

    def _create_fields(self, result: SolveResult, dimless_names: Sequence[str]) -> None:
        f, grid = self.f, self.grid
        if result.times is not None:
            t = f["dimensions"].create_dataset("time", data=np.asarray(result.times, dtype=np.float64))
            t.attrs.update(sample_varying=False, time_varying=True)
        for fs in self.pde.fields:
            arr = result.fields[fs.name]
            tail = arr.shape[1:]
            shape = (self.n, *tail)
            # One chunk per frame: a reader of one time step of one trajectory touches one chunk.
            n_lead = 2 if fs.time_varying else 1
            chunks = (1,) * n_lead + tuple(tail[n_lead - 1:])
            d = f[f"t{fs.rank}_fields"].create_dataset(fs.name, shape=shape, dtype=np.float32, chunks=chunks)
            d.attrs.update(role=fs.role, time_varying=fs.time_varying, sample_varying=True,
                           dim_varying=np.ones(grid.dim, dtype=bool), units=fs.units, description=fs.description)
        for name in sorted(result.per_sample):
            f["trajectories"].create_dataset(name, shape=(self.n,), dtype=np.float64)
        f["trajectories"].attrs["solver_per_sample"] = _str_list(sorted(result.per_sample))
        # Per-trajectory checksums let the validator tell a damaged file from a merely unusual one.
        f["trajectories"].attrs["checksum_algorithm"] = CHECKSUM_ALGORITHM
        for fs in self.pde.fields:
            f["trajectories"].create_dataset(schema.checksum_name(fs.name), shape=(self.n,), dtype=np.uint32)
        dl = f["dimensionless"]
        dl.attrs["field_names"] = _str_list(dimless_names)
        for name in dimless_names:
            dl.create_dataset(name, shape=(self.n,), dtype=np.float64)
        self._created = True

    def write_batch(self, start: int, instances: Sequence[Instance], result: SolveResult, seeds: Sequence[int],
                    wall_time: float) -> None:
        """Store a solved batch as trajectories ``start .. start + len(instances) - 1``.

        ``wall_time`` is the seconds the batched solve took; each trajectory is charged an equal share.
        """
        self.write(start, Batch.from_solve(self.pde, instances, result, seeds, wall_time))

    def write(self, start: int, batch: Batch) -> None:
        """Store ``batch`` (already in stored dtypes, with checksums) as trajectories ``start .. start + B - 1``."""
        b = batch.size
        if not self._created:
            self._create_fields(batch, sorted(batch.dimensionless))
            self._settings = dict(batch.settings)
        elif batch.settings != self._settings:
            raise RuntimeError("solver settings changed between batches; per-instance values belong in "
                               f"SolveResult.per_sample: {batch.settings} != {self._settings}")
        else:
            # One time axis per file: a batch solved at other times would be stored under the first's.
            stored = self.f["dimensions/time"][()] if "time" in self.f["dimensions"] else None
            if (stored is None) != (batch.times is None) or (
                    stored is not None and not np.array_equal(stored, np.asarray(batch.times, dtype=np.float64))):
                raise RuntimeError(f"output times changed between batches of one file: {batch.times} != {stored}; "
                                   "parameters that fix the times must be the same for every sample of a level")
        sl = slice(start, start + b)
        tr = self.f["trajectories"]
        for fs in self.pde.fields:
            self.f[f"t{fs.rank}_fields/{fs.name}"][sl] = batch.fields[fs.name]
            tr[schema.checksum_name(fs.name)][sl] = batch.checksums[fs.name]
        for p in self.pde.parameters:
            self.f[f"scalars/{p.name}"][sl] = batch.params[p.name]
        for name in self.f["dimensionless"].attrs["field_names"]:
            self.f[f"dimensionless/{name}"][sl] = batch.dimensionless[attr_value(name)]
        tr["seed"][sl] = batch.seeds
        tr["index"][sl] = np.arange(start, start + b)
        tr["wall_time"][sl] = batch.wall_time / b
        tr["steps"][sl] = batch.steps
        tr["batch_size"][sl] = b
        for name in tr.attrs["solver_per_sample"]:
            tr[name][sl] = batch.per_sample[attr_value(name)]

    def close(self) -> Path:
        """Mark the file complete and move it to its final path."""
        self.f.attrs["solver_settings"] = json.dumps(self._settings or {}, sort_keys=True, default=json_default)
        self.f.attrs["complete"] = True
        self.f.close()
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            self.f.close()
        finally:
            self.partial.unlink(missing_ok=True)


def is_mesh(grid: object) -> bool:
    """Whether ``grid`` is an unstructured mesh (:class:`pde_lab.meshes.TriangleMesh`): fields on its nodes."""
    return getattr(grid, "grid_type", "cartesian") == "mesh"


def _write_mesh(f: h5py.File, mesh) -> None:
    """The ``mesh`` group: nodes, triangles and tagged boundary facets (docs/data_format.md, "Meshes")."""
    g = f.create_group("mesh")
    g.attrs["cell_type"] = mesh.cell_type
    g.attrs["geometry"] = mesh.geometry
    g.attrs["geometry_params"] = json.dumps(mesh.geometry_params, sort_keys=True, default=json_default)
    g.attrs["resolution"] = int(mesh.resolution)
    g.attrs["tag_names"] = _str_list(mesh.tag_names)
    g.create_dataset("nodes", data=np.asarray(mesh.nodes, dtype=np.float64))
    g.create_dataset("cells", data=np.asarray(mesh.triangles, dtype=np.int64))
    g.create_dataset("boundary_facets", data=np.asarray(mesh.boundary_facets, dtype=np.int64))
    g.create_dataset("boundary_facet_tags", data=np.asarray(mesh.facet_tags, dtype=np.int64))


def _write_mesh_bc(g: h5py.Group, mesh, tags) -> None:
    """On a mesh a condition applies to boundary tags (``BoundaryCondition.axes``) present in the mesh;
    ``mask_<tag>`` marks their nodes."""
    present = [t for t in tags if t in mesh.tag_names]
    g.attrs["associated_dims"] = _str_list(present)
    for tag in present:
        g.create_dataset(f"mask_{tag}", data=mesh.node_mask(tag))
