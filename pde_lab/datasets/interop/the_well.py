"""The Well's HDF5 layout (PolymathicAI/the_well), in both directions.

The Well stores one dataset per file much as pde_lab does (pde_lab's layout was modelled on it), with
these differences, which the converters bridge:

===========================  ===================================  ======================================
                             The Well                             pde_lab
===========================  ===================================  ======================================
name of the system           root ``dataset_name``                root ``pde``
physical parameters          root ``simulation_parameters`` and   ``scalars/`` ``(N,)`` per trajectory
                             one root attribute each (constant
                             per file), ``scalars/`` (any of
                             sample/time varying)
coordinates, time            float32, may be sample-varying       float64, shared by all trajectories
fields                       may be constant over samples or      always one value per trajectory and
                             along an axis (``dim_varying``)      grid point, ``role`` input/solution
boundary conditions          ``bc_type`` wall/open/periodic,      PERIODIC/DIRICHLET/NEUMANN/OPEN,
                             one ``mask`` over the associated     ``mask_<axis>`` per axis, ``value``
                             axes, ``values``
provenance, seeds, cost      --                                   ``trajectories/``, ``dimensionless/``
===========================  ===================================  ======================================

Export (:func:`export_well`) writes every group and attribute The Well's specification and its
``WellDataset`` reader use, and keeps what The Well has no place for (seeds, costs, dimensionless
numbers, exact float64 coordinates, field roles, Dirichlet/Neumann data) in an extra group
``/pde_lab``, which Well readers do not look at. Import (:func:`import_well`) reads any Well file;
when ``/pde_lab`` is present it restores that metadata, so pde_lab → Well → pde_lab is lossless.
Import from a foreign Well file: time-varying fields become ``solution`` fields and constant ones
``input`` fields; values constant over samples or axes are broadcast; a ``wall`` boundary becomes
``DIRICHLET`` with its Well type kept in the attribute ``well_bc_type``; time-varying scalars have no
place in pde_lab and are left out with a warning; costs are unknown and recorded as zero.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from ...errors import UserError
from .. import schema
from ..engine import progress_bar
from ..reader import open_h5
from ..validate import validate_file
from ..writer import attr_value
from .builder import FileBuilder, _str_list, check_output, open_source

if TYPE_CHECKING:
    from ..export import Sample

EXTRA = "pde_lab"  # the group holding what The Well has no place for
_TO_WELL_BC = {"PERIODIC": "periodic", "OPEN": "open", "DIRICHLET": "wall", "NEUMANN": "wall"}


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _names(obj, attr: str = "field_names") -> list[str]:
    return [_s(v) for v in np.atleast_1d(obj.attrs.get(attr, []))]


# ---- pde_lab -> The Well ----------------------------------------------------------------------------
def export_well(src: str | Path, out: str | Path, progress: bool = False, overwrite: bool = False) -> Path:
    """Write the pde_lab file ``src`` as a The Well HDF5 file ``out``.

    Fields keep their shapes ``(N, T, *space[, D[, D]])``; time and coordinates are stored as float32
    as the Well specification asks. Parameters constant over the file are listed in the root
    ``simulation_parameters`` (each also a root attribute); every parameter is also in ``scalars/``
    with ``sample_varying = True``. A steady file (no time axis) gets ``time = [0]`` and keeps its
    fields ``time_varying = False``. ``progress``: a progress bar over the arrays copied.
    ``overwrite``: replace an existing ``out`` (never ``src``). Returns ``out``.
    """
    src, out = Path(src), Path(out)
    errs = validate_file(src, check_values=False)
    if errs:
        raise UserError(f"{src} is not a valid pde_lab file: {errs[0]}")
    check_output(out, src, overwrite)
    with open_h5(src) as f:
        if attr_value(f.attrs["grid_type"]) != "cartesian":
            raise UserError(f"{src} is on a triangle mesh (grid_type {attr_value(f.attrs['grid_type'])!r}); The Well "
                            "stores Cartesian grids only (export a sample as vtu or xdmf instead)")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        _write_well(src, partial, progress)
    except BaseException:
        partial.unlink(missing_ok=True)  # nothing half-written is left beside the output
        raise
    partial.replace(out)
    return out


def _write_well(src: Path, partial: Path, progress: bool) -> None:
    """The body of :func:`export_well`: ``src`` in The Well's layout, written to ``partial``."""
    with open_h5(src) as f, h5py.File(partial, "w") as g:
        n = attr_value(f.attrs["n_trajectories"])
        axes = attr_value(f["dimensions"].attrs["spatial_dims"])
        shape = attr_value(f.attrs["spatial_resolution"])
        params = _names(f["scalars"])
        constant = [p for p in params if np.all(f[f"scalars/{p}"][()] == f[f"scalars/{p}"][0])]
        g.attrs["dataset_name"] = attr_value(f.attrs["pde"])
        g.attrs["grid_type"] = "cartesian"
        g.attrs["n_spatial_dims"] = len(axes)
        g.attrs["n_trajectories"] = n
        g.attrs["simulation_parameters"] = _str_list(constant)
        for p in constant:
            g.attrs[p] = float(f[f"scalars/{p}"][0])

        dims = g.create_group("dimensions")
        dims.attrs["spatial_dims"] = _str_list(axes)
        has_time = "time" in f["dimensions"]
        t = f["dimensions/time"][()] if has_time else np.zeros(1)
        d = dims.create_dataset("time", data=t.astype(np.float32))
        d.attrs.update(sample_varying=False, time_varying=True)
        for ax in axes:
            d = dims.create_dataset(ax, data=f[f"dimensions/{ax}"][()].astype(np.float32))
            d.attrs.update(sample_varying=False, time_varying=False)

        bcs = g.create_group("boundary_conditions")
        for name, bc in f["boundary_conditions"].items():
            kind = attr_value(bc.attrs["bc_type"])
            bc_axes = attr_value(bc.attrs["associated_dims"])
            w = bcs.create_group(name)
            w.attrs["bc_type"] = _TO_WELL_BC[kind]
            w.attrs["associated_dims"] = _str_list(bc_axes)
            w.attrs["associated_fields"] = _str_list(attr_value(bc.attrs["associated_fields"]))
            w.attrs.update(sample_varying=False, time_varying=False)
            # The Well's mask spans the associated axes together: a point is on this boundary if it
            # is next to the boundary along any of them.
            sub = [shape[axes.index(a)] for a in bc_axes]
            mask = np.zeros(sub, dtype=bool)
            for j, a in enumerate(bc_axes):
                along = bc[f"mask_{a}"][()] if f"mask_{a}" in bc else np.eye(1, sub[j], 0, dtype=bool)[0] | \
                    np.eye(1, sub[j], sub[j] - 1, dtype=bool)[0]
                mask |= along.reshape([-1 if k == j else 1 for k in range(len(sub))])
            w.create_dataset("mask", data=mask)
            w.create_dataset("values", data=np.full(int(mask.sum()), attr_value(bc.attrs.get("value", 0.0)),
                                                    dtype=np.float32))

        sc = g.create_group("scalars")
        sc.attrs["field_names"] = _str_list(params)
        for p in params:
            d = sc.create_dataset(p, data=f[f"scalars/{p}"][()].astype(np.float32))
            d.attrs.update(sample_varying=True, time_varying=False)

        n_fields = sum(len(_names(f[group])) for group in schema.FIELD_GROUPS)
        with progress_bar(n * n_fields, 0, f"export {src.name}", progress, unit="array") as bar:
            for group in schema.FIELD_GROUPS:
                names = _names(f[group])
                wg = g.create_group(group)
                wg.attrs["field_names"] = _str_list(names)
                for name in names:
                    src_d = f[f"{group}/{name}"]
                    tv = bool(attr_value(src_d.attrs["time_varying"]))
                    d = wg.create_dataset(name, shape=src_d.shape, dtype=np.float32, chunks=src_d.chunks)
                    sym = antisym = group == "t2_fields"
                    for i in range(n):  # one trajectory at a time: memory for one trajectory only
                        block = src_d[i]
                        d[i] = block
                        bar.update(1)
                        if sym or antisym:
                            sym = sym and np.array_equal(block, np.swapaxes(block, -1, -2))
                            antisym = antisym and np.array_equal(block, -np.swapaxes(block, -1, -2))
                    d.attrs.update(sample_varying=True, time_varying=tv, dim_varying=np.ones(len(axes), dtype=bool))
                    if group == "t2_fields":
                        d.attrs.update(symmetric=bool(sym), antisymmetric=bool(antisym))

        x = g.create_group(EXTRA)
        for k, v in f.attrs.items():
            x.attrs[k] = v
        x.attrs["has_time"] = has_time
        for group in ("dimensions", "scalars", "dimensionless", "trajectories", "boundary_conditions"):
            f.copy(f[group], x, name=group)
        fa = x.create_group("field_attrs")
        for group in schema.FIELD_GROUPS:
            for name in _names(f[group]):
                h = fa.create_group(name)
                for k, v in f[f"{group}/{name}"].attrs.items():
                    h.attrs[k] = v


def export_sample_well(sample: Sample, out: Path) -> list[Path]:
    """One trajectory, as read by :func:`pde_lab.datasets.export.read_sample`, as a Well file of one
    trajectory at ``out`` (the ``the_well`` entry of ``pde_lab.datasets.export.EXPORTERS``).

    A sample carries no roles or boundary conditions beyond its periodic axes (one ``PERIODIC``
    condition on them, e.g. ``x_periodic``, for all fields): time-varying fields
    are written as solution fields, static ones as inputs, and parameters and dimensionless numbers
    all go to ``scalars/``.
    For a whole file with all its metadata use :func:`export_well`.
    """
    import tempfile

    if sample.attrs.get("grid_type") == "mesh":
        raise UserError("The Well stores Cartesian grids only; this file is on a triangle mesh "
                        "(export it as vtu or xdmf)")
    out = Path(out)
    d = len(sample.spatial_dims)
    with tempfile.TemporaryDirectory(prefix=".well-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        b = FileBuilder(Path(tmp) / "sample.h5", pde=str(sample.attrs.get("pde", "pde_lab")), n=1,
                        coords={ax: sample.coords[ax] for ax in sample.spatial_dims},
                        periodic=list(sample.periodic) or [False] * d, times=sample.times, level=str(sample.attrs.get("level", "default")),
                        split=str(sample.attrs.get("split", "train")))
        try:
            for fields, tv in ((sample.frames, True), (sample.static, False)):
                for name, flat in fields.items():
                    lead = flat.shape[:1] if tv else ()
                    comp = flat.shape[len(lead) + 1:]
                    rank = len(comp)
                    b.add_field(name, rank=rank, role="solution" if tv else "input", time_varying=tv)
                    b.write(name, 0, flat.reshape(*lead, *sample.grid_shape, *comp))
            for name, value in sample.scalars.items():
                b.add_scalar(name, value)
            # The Well knows periodicity only as a boundary condition, not from the coordinates
            wrapped = [ax for ax, per in zip(sample.spatial_dims, sample.periodic) if per]
            if wrapped:
                b.add_boundary_condition("".join(wrapped) + "_periodic", "PERIODIC", wrapped,
                                         [*sample.frames, *sample.static])
            src = b.close()
        except BaseException:
            b.abort()
            raise
        export_well(src, out)
    return [out]


def check_well_file(path: str | Path) -> list[str]:
    """What a file lacks of The Well's specification (the attributes ``WellDataset`` reads); [] if none."""
    errs = []
    with h5py.File(path, "r") as f:
        for a in ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories", "simulation_parameters"):
            if a not in f.attrs:
                errs.append(f"/: missing attribute {a!r}")
        for p in _names(f, "simulation_parameters"):
            if p not in f.attrs:
                errs.append(f"/: simulation parameter {p!r} has no root attribute")
        for group in ("dimensions", "boundary_conditions", "scalars", *schema.FIELD_GROUPS):
            if group not in f:
                errs.append(f"missing group /{group}")
        if errs:
            return errs
        dims = f["dimensions"]
        axes = _names(dims, "spatial_dims")
        if len(axes) != int(f.attrs["n_spatial_dims"]):
            errs.append("/dimensions: spatial_dims do not match n_spatial_dims")
        for name in ["time", *axes]:
            if name not in dims:
                errs.append(f"/dimensions: missing {name!r}")
            elif "sample_varying" not in dims[name].attrs:
                errs.append(f"/dimensions/{name}: missing attribute 'sample_varying'")
        shape = [dims[a].shape[-1] for a in axes if a in dims]
        for name, bc in f["boundary_conditions"].items():
            for a in ("bc_type", "associated_dims", "associated_fields"):
                if a not in bc.attrs:
                    errs.append(f"/boundary_conditions/{name}: missing attribute {a!r}")
            if "bc_type" in bc.attrs and _s(bc.attrs["bc_type"]).upper() not in ("WALL", "OPEN", "PERIODIC"):
                errs.append(f"/boundary_conditions/{name}: bc_type {_s(bc.attrs['bc_type'])!r} "
                            f"is not wall/open/periodic")
            if "mask" not in bc:
                errs.append(f"/boundary_conditions/{name}: missing dataset 'mask'")
        for name in _names(f["scalars"]):
            if name not in f["scalars"]:
                errs.append(f"/scalars: {name!r} listed but missing")
                continue
            for a in ("sample_varying", "time_varying"):
                if a not in f["scalars"][name].attrs:
                    errs.append(f"/scalars/{name}: missing attribute {a!r}")
        n, n_t = int(f.attrs["n_trajectories"]), dims["time"].shape[-1] if "time" in dims else None
        for rank, group in enumerate(schema.FIELD_GROUPS):
            for name in _names(f[group]):
                if name not in f[group]:
                    errs.append(f"/{group}: {name!r} listed but missing")
                    continue
                d = f[group][name]
                missing = [a for a in ("dim_varying", "sample_varying", "time_varying") if a not in d.attrs]
                if missing:
                    errs.append(f"{d.name}: missing attribute(s) {missing}")
                    continue
                if d.dtype != np.float32:
                    errs.append(f"{d.name}: dtype {d.dtype}, expected float32")
                dv = np.atleast_1d(d.attrs["dim_varying"]).astype(bool)
                expected = ((n,) if d.attrs["sample_varying"] else ()) + ((n_t,) if d.attrs["time_varying"] else ()) \
                    + tuple(s for s, v in zip(shape, dv) if v) + (len(axes),) * rank
                if d.shape != expected:
                    errs.append(f"{d.name}: shape {d.shape}, expected {expected}")
    return errs


# ---- The Well -> pde_lab ----------------------------------------------------------------------------
def import_well(src: str | Path, out: str | Path, level: str | None = None, split: str | None = None,
                progress: bool = False, overwrite: bool = False) -> Path:
    """Convert The Well file ``src`` into the pde_lab file ``out`` (see the module docstring).

    ``level`` and ``split`` are stored in the new file; left ``None``, a file exported by pde_lab keeps
    its own and any other gets ``"default"`` and ``"train"``. A file exported by pde_lab keeps its level
    (its ``level_definition`` names it): another ``level`` is refused.
    ``progress``: a progress bar over the arrays converted. ``overwrite``: replace an existing ``out``
    (never ``src``). Returns ``out``; the file validates.
    """
    check_output(Path(out), Path(src), overwrite)
    src, f = open_source(src)
    with f:
        errs = check_well_file(src)
        if errs:
            raise UserError(f"{src} does not follow The Well's layout: {errs[0]}"
                            + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""))
        if _s(f.attrs["grid_type"]) != "cartesian":
            raise UserError(f"{src} has grid_type {_s(f.attrs['grid_type'])!r}; pde_lab reads cartesian grids only")
        extra = f.get(EXTRA)
        builder = _builder_from_well(f, src, Path(out), level, split, extra)
        try:
            _copy_fields(f, builder, extra, progress)
            if extra is not None:
                _restore_extra(builder, extra)
            else:
                _scalars_and_bcs(f, builder)
        except BaseException:
            builder.abort()
            raise
    return builder.close()


def _dim(f: h5py.File, name: str, src) -> np.ndarray:
    d = f[f"dimensions/{name}"]
    v = np.asarray(d[()], dtype=np.float64)
    if d.attrs.get("sample_varying", False) and v.ndim > 1:
        if not np.all(v == v[:1]):
            raise UserError(f"{src}: /dimensions/{name} differs between trajectories; pde_lab needs one shared grid")
        v = v[0]
    return v.reshape(-1)


def _builder_from_well(f: h5py.File, src: Path, out: Path, level: str | None, split: str | None,
                       extra) -> FileBuilder:
    axes = _names(f["dimensions"], "spatial_dims")
    n = int(f.attrs["n_trajectories"])
    if extra is not None:
        a = {k: attr_value(v) for k, v in extra.attrs.items()}
        if level is not None and level != a["level"]:
            # The level's definition (its parameter ranges) travels with the file under its name.
            raise UserError(f"{src} holds level {a['level']!r} of a pde_lab dataset, whose level_definition "
                            f"names it; it cannot be stored as level {level!r} (leave out the level)")
        coords = {ax: extra[f"dimensions/{ax}"][()] for ax in axes}
        times = extra["dimensions/time"][()] if a["has_time"] else None
        b = FileBuilder(out, pde=a["pde"], n=n, coords=coords,
                        periodic=list(attr_value(extra["dimensions"].attrs["periodic"])),
                        times=times, bounds=extra["dimensions"].attrs["bounds"], level=level or a["level"],
                        split=split or a["split"])
        # The original root attributes verbatim (JSON text included, byte for byte), but for a split
        # the caller names.
        b.set_attrs(**{k: v for k, v in extra.attrs.items()
                       if k not in ("complete", "has_time") and not (k == "split" and split is not None)})
        return b
    periodic_axes = set()
    for bc in f["boundary_conditions"].values():
        if _s(bc.attrs["bc_type"]).upper() == "PERIODIC":
            periodic_axes.update(_names(bc, "associated_dims"))
    coords = {ax: _dim(f, ax, src) for ax in axes}
    times = _dim(f, "time", src)
    sim = {p: attr_value(f.attrs[p]) for p in _names(f, "simulation_parameters")}
    return FileBuilder(out, pde=_s(f.attrs["dataset_name"]), n=n, coords=coords,
                       periodic=[ax in periodic_axes for ax in axes], times=times, level=level or "default",
                       split=split or "train",
                       solver="unknown (imported from The Well)",
                       equation=f"not recorded (imported from The Well file {src.name})",
                       generation_config={"source": "the_well", "file": src.name, "simulation_parameters": sim})


def _copy_fields(f: h5py.File, b: FileBuilder, extra, progress: bool = False) -> None:
    n = b.n
    n_fields = sum(len(_names(f[group])) for group in schema.FIELD_GROUPS)
    with progress_bar(n * n_fields, 0, f"import {Path(f.filename).name}", progress, unit="array") as bar:
        for rank, group in enumerate(schema.FIELD_GROUPS):
            for name in _names(f[group]):
                d = f[group][name]
                tv, sv = bool(d.attrs["time_varying"]), bool(d.attrs["sample_varying"])
                dv = np.atleast_1d(d.attrs["dim_varying"]).astype(bool)
                if extra is not None and name in extra["field_attrs"]:
                    fa = extra["field_attrs"][name].attrs
                    role, units, desc = attr_value(fa["role"]), attr_value(fa["units"]), attr_value(fa["description"])
                else:
                    role, units, desc = ("solution" if tv else "input"), "", ""
                if tv and b.n_times is None:
                    raise UserError(f"field {name!r} varies in time but the exported file was steady")
                b.add_field(name, rank=rank, role=role, time_varying=tv if b.n_times is not None else False,
                            units=units, description=desc)
                # Axes a Well field does not vary along are absent from its shape: restore them.
                lead = 1 if tv and b.n_times is not None else 0
                full = ((b.n_times,) if lead else ()) + b.shape + (len(b.axes),) * rank
                expand = [slice(None)] * lead + [slice(None) if v else None for v in dv] + [slice(None)] * rank
                constant = None if sv else np.broadcast_to(d[()][tuple(expand)], full)
                for i in range(n):
                    a = constant if constant is not None else np.broadcast_to(d[i][tuple(expand)], full)
                    b.write(name, i, a)
                    bar.update(1)


def _scalars_and_bcs(f: h5py.File, b: FileBuilder) -> None:
    n = b.n
    done = set()
    for name in _names(f["scalars"]):
        d = f["scalars"][name]
        if d.attrs["time_varying"]:
            warnings.warn(f"scalar {name!r} varies in time; pde_lab has no place for it and leaves it out",
                          stacklevel=3)
            continue
        v = np.asarray(d[()], dtype=np.float64).reshape(-1)
        values = v if d.attrs["sample_varying"] and v.size == n else np.full(n, v[0])
        b.add_scalar(name, values)
        done.add(name)
    for p in _names(f, "simulation_parameters"):
        if p not in done:
            b.add_scalar(p, float(np.asarray(f.attrs[p]).reshape(-1)[0]))
    fields = {nm for g in schema.FIELD_GROUPS for nm in _names(f[g])}
    for name, bc in f["boundary_conditions"].items():
        kind = _s(bc.attrs["bc_type"]).upper()
        axes = _names(bc, "associated_dims")
        mask = np.asarray(bc["mask"][()], dtype=bool)
        masks = {}
        if mask.ndim == len(axes):
            for j, ax in enumerate(axes):
                masks[ax] = mask.any(axis=tuple(k for k in range(mask.ndim) if k != j))
        values = bc["values"][()] if "values" in bc else np.zeros(1)
        value = float(np.asarray(values).reshape(-1)[0]) if np.size(values) else 0.0
        b.add_boundary_condition(name, {"WALL": "DIRICHLET"}.get(kind, kind), axes,
                                 [x for x in _names(bc, "associated_fields") if x in fields], value, masks)
        if kind == "WALL":
            b.f[f"boundary_conditions/{name}"].attrs["well_bc_type"] = "WALL"


def _restore_extra(b: FileBuilder, extra) -> None:
    for group in ("scalars", "dimensionless", "trajectories", "boundary_conditions"):
        del b.f[group]
        extra.file.copy(extra[group], b.f, name=group)
