"""Build a pde_lab HDF5 file (format v1) from plain arrays, one trajectory at a time.

:class:`~pde_lab.datasets.writer.DatasetWriter` writes what a registered PDE's solver returns; data
that arrives from elsewhere (another project's files, synthetic benchmark data) has no PDE object
behind it, only arrays, coordinates and names. :class:`FileBuilder` writes such data in the same
layout (docs/data_format.md) with the same guarantees: float32 fields stored one chunk per frame, a
``.partial`` file renamed into place only after ``complete`` is set, and trajectories written one at
a time so that converting a file larger than memory needs memory for one trajectory only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from ... import __version__
from ...errors import UserError
from .. import schema
from ..parts import CHECKSUM_ALGORITHM, trajectory_checksums
from ..layout import file_in_the_way
from ..validate import validate_file
from ..writer import _str_list


def check_output(out: Path, src: Path, overwrite: bool) -> None:
    """Refuse to write a converted file over its source, a directory, or (without ``overwrite``) any
    existing file, or a path below a file."""
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise UserError(f"{out} cannot be written: {blocking} is a file, not a directory")
    if not out.exists():
        return
    if out.resolve() == src.resolve():
        raise UserError(f"{out} is the file being converted; choose another output path")
    if out.is_dir():
        raise UserError(f"{out} is a directory; name the file to write")
    if not overwrite:
        raise UserError(f"{out} exists; pass --overwrite (overwrite=True) to replace it")


def open_source(src: str | Path) -> tuple[Path, h5py.File]:
    """``(path, open file)`` of a foreign HDF5 file to convert; :class:`UserError` when it is missing
    or not HDF5."""
    from ..reader import open_h5

    src = Path(src)
    if not src.is_file():
        raise UserError(f"{src}: no such file")
    try:
        return src, open_h5(src)
    except OSError as e:
        raise UserError(f"{src} is not an HDF5 file ({str(e).splitlines()[0]})") from None


class FileBuilder:
    """Writes one pde_lab file of ``n`` trajectories from arrays.

    Args:
        path: final file path (``.h5``); data goes to ``path + '.partial'`` until :meth:`close`.
        pde: name stored in the ``pde`` attribute (need not be a registered PDE).
        n: number of trajectories ``N``.
        coords: axis name (``x``, ``y``, ``z``) → float coordinates ``(n_axis,)``, strictly increasing.
        periodic: per axis, whether it wraps around.
        times: ``(T,)`` strictly increasing times, or ``None`` when no field varies in time.
        bounds: ``(D, 2)`` domain box; ``None`` = inferred from the coordinates (periodic axes:
            ``[x0, x_last + h]``, bounded axes: cell centres, ``[x0 - h/2, x_last + h/2]``).
        level, split: the file's difficulty level and split.
        equation, solver: free text stored in the root attributes.
        solver_settings, level_definition, generation_config: stored as JSON.
        dataset_seed: stored as ``dataset_seed``.
    """

    def __init__(self, path: str | Path, *, pde: str, n: int, coords: Mapping[str, np.ndarray],
                 periodic: Sequence[bool], times: np.ndarray | None = None,
                 bounds: Sequence[Sequence[float]] | None = None, level: str = "default", split: str = "train",
                 equation: str = "", solver: str = "unknown", solver_settings: Mapping[str, Any] | None = None,
                 level_definition: Mapping[str, Any] | None = None,
                 generation_config: Mapping[str, Any] | None = None, dataset_seed: int = 0):
        if split not in schema.SPLITS:
            raise UserError(f"unknown split {split!r}; allowed: {', '.join(schema.SPLITS)}")
        if n < 1:
            raise UserError(f"a file needs at least one trajectory, got n={n}")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.n = int(n)
        self.axes = list(coords)
        self.shape = tuple(len(np.asarray(c)) for c in coords.values())
        self.n_times = None if times is None else len(times)
        coords64 = [np.asarray(c, dtype=np.float64) for c in coords.values()]
        if bounds is None:
            bounds = []
            for c, per in zip(coords64, periodic):
                h = float(c[1] - c[0]) if len(c) > 1 else 1.0
                bounds.append([float(c[0]), float(c[-1] + h)] if per else [float(c[0] - h / 2), float(c[-1] + h / 2)])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.partial, "w")
        a = self.f.attrs
        a["format"] = schema.FORMAT_NAME
        a["format_version"] = schema.FORMAT_VERSION
        a["complete"] = False
        a["pde"] = pde
        a["equation"] = equation
        a["level"] = level
        a["split"] = split
        a["n_trajectories"] = self.n
        a["n_spatial_dims"] = len(self.axes)
        a["spatial_resolution"] = np.array(self.shape, dtype=np.int64)
        a["grid_type"] = "cartesian"
        a["solver"] = solver
        a["solver_settings"] = json.dumps(dict(solver_settings or {}), sort_keys=True)
        a["level_definition"] = json.dumps(dict(level_definition or {"name": level, "ranges": {}, "log_uniform": [],
                                                                      "description": ""}), sort_keys=True)
        a["generation_config"] = json.dumps(dict(generation_config or {}), sort_keys=True)
        a["dataset_seed"] = int(dataset_seed)
        a["package_version"] = __version__
        dims = self.f.create_group("dimensions")
        dims.attrs["spatial_dims"] = _str_list(self.axes)
        dims.attrs["periodic"] = np.array([bool(p) for p in periodic])
        dims.attrs["bounds"] = np.array(bounds, dtype=np.float64)
        for name, c in zip(self.axes, coords64):
            d = dims.create_dataset(name, data=c)
            d.attrs.update(sample_varying=False, time_varying=False)
        if times is not None:
            d = dims.create_dataset("time", data=np.asarray(times, dtype=np.float64))
            d.attrs.update(sample_varying=False, time_varying=True)
        self._field_names: dict[str, list[str]] = {g: [] for g in schema.FIELD_GROUPS}
        for g in schema.FIELD_GROUPS:
            self.f.create_group(g).attrs["field_names"] = _str_list([])
        for g in ("scalars", "dimensionless"):
            self.f.create_group(g).attrs["field_names"] = _str_list([])
        self.f.create_group("boundary_conditions")
        tr = self.f.create_group("trajectories")
        tr.attrs["solver_per_sample"] = _str_list([])
        tr.attrs["checksum_algorithm"] = CHECKSUM_ALGORITHM
        tr.create_dataset("seed", data=np.zeros(self.n, dtype=np.uint64))
        tr.create_dataset("index", data=np.arange(self.n, dtype=np.int64))
        tr.create_dataset("wall_time", data=np.zeros(self.n, dtype=np.float64))
        tr.create_dataset("steps", data=np.zeros(self.n, dtype=np.int64))
        tr.create_dataset("batch_size", data=np.ones(self.n, dtype=np.int64))

    # ---- fields --------------------------------------------------------------------------------
    def add_field(self, name: str, *, rank: int = 0, role: str = "solution", time_varying: bool = True,
                  units: str = "", description: str = "") -> h5py.Dataset:
        """Create field ``name``: float32 ``(N, T, *space, D^rank)`` (``(N, *space, ...)`` if static).

        Fill it trajectory by trajectory with :meth:`write` (or slice-assign the returned dataset).
        """
        if rank not in (0, 1, 2):
            raise UserError(f"field {name!r}: tensor rank {rank} not supported; allowed: 0, 1, 2")
        if role not in schema.FIELD_ROLES:
            raise UserError(f"field {name!r}: role {role!r} not allowed; allowed: {', '.join(schema.FIELD_ROLES)}")
        if time_varying and self.n_times is None:
            raise UserError(f"field {name!r} varies in time but the file was given no times")
        group = schema.FIELD_GROUPS[rank]
        if any(name in names for names in self._field_names.values()):
            raise UserError(f"field {name!r} added twice")
        tail = self.shape + (len(self.axes),) * rank
        lead = (self.n, self.n_times) if time_varying else (self.n,)
        # One chunk per frame: the reader touches exactly the chunks of the frames it returns.
        chunks = (1,) * len(lead) + tail
        d = self.f[group].create_dataset(name, shape=lead + tail, dtype=np.float32, chunks=chunks)
        d.attrs.update(role=role, time_varying=bool(time_varying), sample_varying=True,
                       dim_varying=np.ones(len(self.axes), dtype=bool), units=units, description=description)
        self._field_names[group].append(name)
        self.f[group].attrs["field_names"] = _str_list(self._field_names[group])
        self.f["trajectories"].create_dataset(schema.checksum_name(name), shape=(self.n,), dtype=np.uint32)
        return d

    def _field(self, name: str) -> h5py.Dataset:
        for g, names in self._field_names.items():
            if name in names:
                return self.f[f"{g}/{name}"]
        raise UserError(f"no field {name!r}; add it first with add_field")

    def write(self, name: str, index: int | slice, values: np.ndarray) -> None:
        """Store ``values`` (``(T, *space, ...)`` for one trajectory, or a leading batch axis for a
        slice) as trajectory ``index`` of field ``name`` with its checksum; non-finite values are refused."""
        values = np.asarray(values, dtype=np.float32)
        if not np.all(np.isfinite(values)):
            raise UserError(f"field {name!r}, trajectory {index}: NaN or inf values cannot be stored")
        d = self._field(name)
        d[index] = values
        batch = values if isinstance(index, slice) else values[None]
        self.f["trajectories"][schema.checksum_name(name)][index] = (
            trajectory_checksums(np.broadcast_to(batch, (len(batch), *d.shape[1:]))) if isinstance(index, slice)
            else trajectory_checksums(np.broadcast_to(values, d.shape[1:])[None])[0])

    # ---- per-trajectory values -----------------------------------------------------------------
    def _per_sample(self, group: str, name: str, values, units: str = "", description: str = "") -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 0:
            v = np.full(self.n, float(v))
        if v.shape != (self.n,):
            raise UserError(f"{group} {name!r}: expected one value per trajectory ({self.n},), got shape {v.shape}")
        g = self.f[group]
        d = g.create_dataset(name, data=v)
        d.attrs.update(sample_varying=True, time_varying=False, units=units, description=description)
        names = [str(s) for s in g.attrs["field_names"]] + [name]
        g.attrs["field_names"] = _str_list([s.decode() if isinstance(s, bytes) else s for s in names])

    def add_scalar(self, name: str, values: float | Sequence[float] | np.ndarray, units: str = "", description: str = "") -> None:
        """A physical parameter: ``(N,)`` values (or one value for all trajectories)."""
        self._per_sample("scalars", name, values, units, description)

    def add_dimensionless(self, name: str, values: float | Sequence[float] | np.ndarray) -> None:
        """A dimensionless number: ``(N,)`` values (or one value for all trajectories)."""
        self._per_sample("dimensionless", name, values)

    def add_boundary_condition(self, name: str, bc_type: str, axes: Sequence[str], fields: Sequence[str] = (),
                               value: float = 0.0, masks: Mapping[str, np.ndarray] | None = None) -> None:
        """A boundary condition (``bc_type`` one of ``PERIODIC``, ``DIRICHLET``, ``NEUMANN``, ``OPEN``)
        on ``axes``; ``masks`` default to the first and last point of each axis."""
        bc_type = bc_type.upper()
        if bc_type not in schema.BC_TYPES:
            raise UserError(f"boundary condition {name!r}: type {bc_type!r} not allowed; "
                            f"allowed: {', '.join(schema.BC_TYPES)}")
        g = self.f["boundary_conditions"].create_group(name)
        g.attrs["bc_type"] = bc_type
        g.attrs["associated_dims"] = _str_list(axes)
        g.attrs["associated_fields"] = _str_list(fields)
        g.attrs["value"] = float(value)
        for axis in axes:
            if masks is not None and axis in masks:
                mask = np.asarray(masks[axis], dtype=bool)
            else:
                mask = np.zeros(self.shape[self.axes.index(axis)], dtype=bool)
                mask[[0, -1]] = True
            g.create_dataset(f"mask_{axis}", data=mask)

    def set_trajectories(self, **values) -> None:
        """Overwrite ``trajectories/`` datasets (``seed``, ``wall_time``, ``steps``, ``batch_size``) or
        add per-sample solver settings (any other name, float64), each ``(N,)``."""
        tr = self.f["trajectories"]
        extra = [s.decode() if isinstance(s, bytes) else str(s) for s in tr.attrs["solver_per_sample"]]
        for name, v in values.items():
            v = np.asarray(v)
            if v.shape != (self.n,):
                raise UserError(f"trajectories/{name}: expected shape ({self.n},), got {v.shape}")
            if name == "index":
                raise UserError("trajectories/index is always 0 .. N-1 and cannot be set")
            if name in schema.TRAJECTORY_DATASETS:
                tr[name][...] = v.astype(tr[name].dtype)
            else:
                if name in tr:
                    del tr[name]
                tr.create_dataset(name, data=v.astype(np.float64))
                extra.append(name)
        tr.attrs["solver_per_sample"] = _str_list(sorted(set(extra)))

    def set_attrs(self, **attrs) -> None:
        """Extra root attributes (kept by pde_lab readers, ignored by the validator)."""
        for k, v in attrs.items():
            self.f.attrs[k] = v

    # ---- finishing -----------------------------------------------------------------------------
    def close(self, validate: bool = True) -> Path:
        """Mark the file complete, check it against the format (structure only) and move it into place.

        A file that fails validation is deleted and :class:`UserError` lists the first violations.
        """
        self.f.attrs["complete"] = True
        self.f.close()
        if validate:
            errs = validate_file(self.partial, check_values=False)
            if errs:
                self.partial.unlink(missing_ok=True)
                raise UserError(f"the converted file would not be valid: {'; '.join(errs[:3])}")
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            self.f.close()
        finally:
            self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "FileBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
