"""Export one sample of a pde_lab file to VTU (ParaView), XDMF or netCDF.

VTU and XDMF go through meshio; netCDF through xarray with the h5netcdf engine. Mesh files
(``grid_type = "mesh"``) export their triangles; Cartesian files become structured meshio meshes
whose points are the grid points (1D: ``line`` cells, 2D: ``quad`` cells), fields being point data
in either case. A time-dependent sample exports every stored frame: one ``.vtu`` per frame plus a
``.pvd`` collection, or an XDMF time series (``.xdmf`` + ``.h5``), or a ``time`` dimension in netCDF.

Files are written into a temporary directory next to the target and moved into place at the end,
so a failed export leaves nothing that looks finished. :data:`EXPORTERS` maps a format name to its
function; other formats register there.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from xml.sax.saxutils import quoteattr

import h5py
import numpy as np

from ..errors import UserError, check_choice
from . import schema
from .layout import file_in_the_way
from .validate import validate_file
from .writer import attr_value

__all__ = ["EXPORTERS", "Sample", "read_sample", "export_sample", "export_vtu", "export_xdmf", "export_netcdf"]


@dataclass
class Sample:
    """One trajectory of a file, ready for export.

    Attributes:
        points: ``(P, 3)`` float64 point coordinates (z = 0 in 1D/2D).
        cells: ``[(meshio cell type, (C, k) int connectivity)]``.
        static: field name → ``(P,)``, ``(P, D)`` or ``(P, D, D)`` values of time-independent fields.
        frames: field name → ``(T, P)``, ``(T, P, D)`` or ``(T, P, D, D)`` values of time-varying fields.
        times: ``(T,)`` stored times, or ``None`` for a steady file.
        scalars: the trajectory's parameters and dimensionless numbers.
        attrs: the file's root attributes (pde, level, ...).
        spatial_dims: names of the array axes of the fields (``("x", "y")`` or ``("node",)``).
        grid_shape: the fields' spatial shape in the file.
        coords: axis name → coordinates (Cartesian) or ``x``, ``y`` node coordinates (mesh).
        periodic: one bool per Cartesian axis (empty on a mesh).
    """

    points: np.ndarray
    cells: list[tuple[str, np.ndarray]]
    static: dict[str, np.ndarray]
    frames: dict[str, np.ndarray]
    times: np.ndarray | None
    scalars: dict[str, float]
    attrs: dict
    spatial_dims: tuple[str, ...]
    grid_shape: tuple[int, ...]
    coords: dict[str, np.ndarray]
    periodic: tuple[bool, ...] = ()


def _cartesian_geometry(coords: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Points (C order over the axes, as fields are raveled) and cells of a structured grid."""
    if len(coords) == 1:
        x = coords[0]
        n = len(x)
        pts = np.column_stack([x, np.zeros(n), np.zeros(n)])
        cells = np.column_stack([np.arange(n - 1), np.arange(1, n)])
        return pts, [("line", cells)]
    if len(coords) == 2:
        x, y = coords
        nx, ny = len(x), len(y)
        X, Y = np.meshgrid(x, y, indexing="ij")
        pts = np.column_stack([X.ravel(), Y.ravel(), np.zeros(X.size)])
        i, j = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1), indexing="ij")
        p00 = (i * ny + j).ravel()
        quads = np.column_stack([p00, p00 + ny, p00 + ny + 1, p00 + 1])  # counter-clockwise
        return pts, [("quad", quads)]
    raise UserError(f"export supports 1D and 2D Cartesian grids and triangle meshes, got a {len(coords)}D grid")


def read_sample(path: str | Path, index: int) -> Sample:
    """Trajectory ``index`` of a pde_lab file, with its geometry.

    Raises:
        UserError: not a valid pde_lab file, or ``index`` out of range.
    """
    path = Path(path)
    errs = validate_file(path, check_values=False)
    if errs:
        raise UserError(f"{path} is not a valid pde_lab file: {errs[0]}")
    with h5py.File(path, "r") as f:
        n = attr_value(f.attrs["n_trajectories"])
        if not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            raise UserError(f"sample index {index!r} out of range; {path} holds trajectories 0 .. {n - 1}")
        attrs = {k: attr_value(v) for k, v in f.attrs.items()}
        dims = tuple(attr_value(f["dimensions"].attrs["spatial_dims"]))
        times = f["dimensions/time"][()] if "time" in f["dimensions"] else None
        periodic: tuple[bool, ...] = ()
        if attrs.get("grid_type") == "mesh":
            nodes = f["mesh/nodes"][()]
            tri = f["mesh/cells"][()].astype(np.int64)
            points = np.column_stack([nodes, np.zeros(len(nodes))])
            cells = [("triangle", tri)]
            shape = (len(nodes),)
            coords = {"x": nodes[:, 0], "y": nodes[:, 1], "cells": tri}
        else:
            axes = [f[f"dimensions/{d}"][()] for d in dims]
            points, cells = _cartesian_geometry(axes)
            shape = tuple(len(a) for a in axes)
            coords = dict(zip(dims, axes))
            periodic = tuple(bool(p) for p in attr_value(f["dimensions"].attrs["periodic"]))
        static, frames = {}, {}
        for rank, group in enumerate(schema.FIELD_GROUPS):
            for name in attr_value(f[group].attrs["field_names"]):
                d = f[f"{group}/{name}"]
                data = np.asarray(d[index], dtype=np.float64)
                tv = bool(attr_value(d.attrs["time_varying"]))
                lead = (data.shape[0],) if tv else ()
                comp = data.shape[len(lead) + len(shape):]
                flat = data.reshape(*lead, int(np.prod(shape)), *comp)
                (frames if tv else static)[name] = flat
        scalars = {}
        for group in ("scalars", "dimensionless"):
            for name, d in f[group].items():
                scalars[name if name not in scalars else f"{group}_{name}"] = float(d[index])
    return Sample(points, cells, static, frames, times, scalars, attrs, dims, shape, coords, periodic)


class _Staging:
    """A temporary directory next to ``target``; :meth:`commit` moves its files beside ``target``.

    Missing parent directories are made, as the converters make them; :meth:`abort` removes the
    ones it made, so a failed export leaves nothing behind."""

    def __init__(self, target: Path):
        self.target = target
        blocking = file_in_the_way(target)
        if blocking is not None:
            raise UserError(f"{target} cannot be written: {blocking} is a file, not a directory")
        missing = [p for p in target.parents if not p.exists()]
        self.made = missing[-1] if missing else None
        target.parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))

    def path(self, name: str) -> Path:
        return self.dir / name

    def commit(self, names: list[str]) -> list[Path]:
        out = []
        # The index file (.pvd/.xdmf) last, so it never points at frames that are not there yet.
        for name in sorted(names, key=lambda s: s.endswith((".pvd", ".xdmf"))):
            dest = self.target.parent / name
            os.replace(self.dir / name, dest)
            out.append(dest)
        shutil.rmtree(self.dir, ignore_errors=True)
        return out

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.made is not None:
            shutil.rmtree(self.made, ignore_errors=True)


def _point_data(s: Sample, frame: int | None) -> dict[str, np.ndarray]:
    data = dict(s.static)
    if frame is not None:
        data.update({k: v[frame] for k, v in s.frames.items()})
    return data


def _mesh(s: Sample, frame: int | None):
    import meshio

    return meshio.Mesh(s.points, s.cells, point_data=_point_data(s, frame))


#: The file endings each format writes (the_well takes any name).
SUFFIXES = {"vtu": (".vtu", ".pvd"), "xdmf": (".xdmf",), "netcdf": (".nc", ".nc4", ".netcdf")}


def _check_suffix(fmt: str, out: Path) -> None:
    if fmt in SUFFIXES and out.suffix not in SUFFIXES[fmt]:
        raise UserError(f"{fmt} output {out} must end in {' or '.join(SUFFIXES[fmt])}")


def _staged(out: Path, write: Callable[[_Staging], list[str]]) -> list[Path]:
    stage = _Staging(out)
    try:
        names = write(stage)
        return stage.commit(names)
    except BaseException:
        stage.abort()
        raise


def export_vtu(s: Sample, out: Path) -> list[Path]:
    """A steady sample to ``out`` (``.vtu``); a time series to ``<stem>.pvd`` plus ``<stem>_NNNN.vtu``
    per frame. Returns the written paths."""
    import meshio

    _check_suffix("vtu", out)

    def write(stage: _Staging) -> list[str]:
        if s.times is None:
            name = out.with_suffix(".vtu").name
            meshio.write(stage.path(name), _mesh(s, None), file_format="vtu")
            return [name]
        names, entries = [], []
        for k, t in enumerate(s.times):
            name = f"{out.stem}_{k:04d}.vtu"
            meshio.write(stage.path(name), _mesh(s, k), file_format="vtu")
            names.append(name)
            entries.append(f'    <DataSet timestep="{float(t)!r}" part="0" file={quoteattr(name)}/>')
        pvd = out.with_suffix(".pvd").name
        stage.path(pvd).write_text('<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n'
                                   "  <Collection>\n" + "\n".join(entries) + "\n  </Collection>\n</VTKFile>\n")
        return names + [pvd]

    return _staged(out, write)


def export_xdmf(s: Sample, out: Path) -> list[Path]:
    """The sample to ``out`` (``.xdmf``) and its heavy data ``<stem>.h5``; a time series when the
    file is time-dependent. Returns the written paths."""
    import meshio

    _check_suffix("xdmf", out)

    def write(stage: _Staging) -> list[str]:
        target = stage.path(out.name)
        if s.times is None:
            meshio.write(target, _mesh(s, None), file_format="xdmf")
        else:
            # meshio's TimeSeriesWriter puts its .h5 in the working directory, whatever the .xdmf path.
            cwd = os.getcwd()
            os.chdir(stage.dir)
            try:
                with meshio.xdmf.TimeSeriesWriter(target.name) as w:
                    w.write_points_cells(s.points, s.cells)
                    for k, t in enumerate(s.times):
                        w.write_data(float(t), point_data=_point_data(s, k))
            finally:
                os.chdir(cwd)
        return sorted(p.name for p in stage.dir.iterdir())

    return _staged(out, write)


def export_netcdf(s: Sample, out: Path) -> list[Path]:
    """The sample as a netCDF-4 file (xarray, h5netcdf engine): fields with dims ``([time,] *space)``
    plus ``<name>_component`` for a vector field or ``<name>_component0``, ``<name>_component1`` for a
    rank-2 tensor (``node`` on a mesh, with ``x``, ``y`` node coordinates and ``cells (cell, vertex)``), the
    trajectory's parameters as 0-d variables, the file's attributes as global attributes."""
    import xarray as xr

    _check_suffix("netcdf", out)
    mesh = s.attrs.get("grid_type") == "mesh"
    coords: dict = {}
    if mesh:
        coords["x"] = ("node", s.coords["x"])
        coords["y"] = ("node", s.coords["y"])
    else:
        coords.update({d: s.coords[d] for d in s.spatial_dims})
    if s.times is not None:
        coords["time"] = s.times
    data_vars: dict = {}
    for name, v in {**s.static, **s.frames}.items():
        lead = ["time"] if name in s.frames else []
        # One dimension per component axis: a vector has one, a rank-2 tensor two.
        n_comp = v.ndim - len(lead) - 1
        comp = [f"{name}_component"] if n_comp == 1 else [f"{name}_component{i}" for i in range(n_comp)]
        # the format stores float32 (read_sample widens it for the mesh writers): keep the source's size
        arr = v.reshape(*v.shape[: len(lead)], *s.grid_shape, *v.shape[len(lead) + 1:]).astype(np.float32)
        data_vars[name] = (lead + list(s.spatial_dims) + comp, arr)
    if mesh:
        data_vars["cells"] = (("cell", "vertex"), s.coords["cells"])
    for name, value in s.scalars.items():
        data_vars.setdefault(name, ((), value))
    attrs = {k: (str(v) if isinstance(v, (list, bool)) else v) for k, v in s.attrs.items()}
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def write(stage: _Staging) -> list[str]:
        ds.to_netcdf(stage.path(out.name), engine="h5netcdf")
        return [out.name]

    return _staged(out, write)


EXPORTERS: dict[str, Callable[[Sample, Path], list[Path]]] = {
    "vtu": export_vtu,
    "xdmf": export_xdmf,
    "netcdf": export_netcdf,
}


def _export_the_well(sample: Sample, out: Path) -> list[Path]:
    """One trajectory as a The Well HDF5 file (see :mod:`pde_lab.datasets.interop.the_well`)."""
    from .interop.the_well import export_sample_well  # loaded only when asked for

    return export_sample_well(sample, Path(out))


EXPORTERS["the_well"] = _export_the_well


def _check_target(dest: Path, source: Path, overwrite: bool) -> None:
    """Refuse to write ``dest`` over the file being exported, a directory, or (without ``overwrite``)
    an existing file."""
    if not dest.exists():
        return
    if dest.resolve() == source:
        raise UserError(f"exporting would overwrite {dest}, the file being exported; choose another --out")
    if dest.is_dir():
        raise UserError(f"{dest} is a directory; --out must name a file")
    if not overwrite:
        raise UserError(f"{dest} exists; pass --overwrite to replace it")


def export_sample(path: str | Path, index: int, fmt: str, out: str | Path, overwrite: bool = False) -> list[Path]:
    """Export trajectory ``index`` of the pde_lab file ``path`` in format ``fmt`` (a key of
    :data:`EXPORTERS`) to ``out``; returns the files written.

    A format may write files besides ``out`` (``<stem>.h5`` for XDMF, ``<stem>_NNNN.vtu`` frames):
    all of them are written to a hidden directory first and moved into place only when none would
    replace the source file, and none an existing file unless ``overwrite``. Raises
    :class:`UserError` otherwise.
    """
    check_choice("export format", fmt, EXPORTERS)
    out, source = Path(out), Path(path).resolve()
    _check_suffix(fmt, out)  # here, not only in the exporter, which sees the hidden staging path
    sample = read_sample(path, index)
    _check_target(out, source, overwrite)
    stage = _Staging(out)
    try:
        names = [p.name for p in EXPORTERS[fmt](sample, stage.path(out.name))]
        for name in names:
            _check_target(out.parent / name, source, overwrite)
        return stage.commit(names)
    except BaseException:
        stage.abort()
        raise
