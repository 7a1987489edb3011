"""Check files against the pde_lab HDF5 format v1 and list every violation.

The checks follow docs/data_format.md section by section; each violation is one line that names the
object and what was expected, so a user can fix a foreign or damaged file.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from . import schema
from .layout import dataset_files
from .parts import CHECKSUM_ALGORITHM, trajectory_checksums
from .writer import attr_value


def validate_file(path: str | Path, check_values: bool = True, progress: bool = False) -> list[str]:
    """All violations of the format in one file (empty list: the file is valid).

    ``check_values=False`` skips reading every field (NaN/inf, per-trajectory checksums, constant
    trajectories): structure only, fast. ``progress``: a progress bar over the trajectories read.
    """
    path = Path(path)
    if path.is_dir():
        return [f"{path} is a directory, not a pde_lab file (.h5)"]
    if not path.is_file():
        return [f"{path}: no such file"]
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return [f"not an HDF5 file or unreadable ({e.__class__.__name__}: {str(e).splitlines()[0]})"]
    with f:
        v = _Validator(f, check_values, progress, path.name)
        try:
            return v.run()
        except Exception as e:  # noqa: BLE001
            # A truncated or overwritten file can open yet fail anywhere: on a chunk it no longer holds,
            # or on an object header turned to noise. The exception's type and text still show here.
            return v.errors + [f"file is damaged: reading it failed ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})"]
        finally:
            v.bar.close()


def validate_path(path: str | Path, check_values: bool = True, progress: bool = False) -> dict[str, list[str]]:
    """Validate one file, or every ``*.h5`` file of a dataset directory; file → violations.

    Raises :class:`~pde_lab.errors.UserError` when ``path`` does not exist or is a training run directory.

    ``progress``: a progress bar per file over the trajectories whose values are read.
    """
    path = Path(path)
    if path.is_dir():
        files = dataset_files(path)
        if not files:
            return {str(path): ["directory holds no .h5 files"]}
        out = {}
        for file in files:
            errs = validate_file(file, check_values, progress)
            if not errs:
                errs = [e for e in [placement_error(file)] if e]
            out[str(file)] = errs
        return out
    dataset_files(path)  # a missing path is a usage error (exit 2), not a violation of the format
    return {str(path): validate_file(path, check_values, progress)}


def placement_error(file: Path) -> str | None:
    """Where a valid file of a dataset directory sits (``SPLIT/LEVEL.h5``) against the split and level
    its attributes name: the message when they differ, else ``None``."""
    split, level = file.parent.name, file.stem
    with h5py.File(file, "r") as f:
        says = attr_value(f.attrs["split"]), attr_value(f.attrs["level"])
    if says != (split, level):
        return f"file is at {split}/{level}.h5 but its attributes say split={says[0]!r}, level={says[1]!r}"
    return None


class _Validator:
    def __init__(self, f: h5py.File, check_values: bool = True, progress: bool = False, name: str = ""):
        self.f = f
        self.check_values = check_values
        self.errors: list[str] = []
        # Reading every trajectory of a large file takes minutes: the bar counts (field, trajectory) reads.
        self.bar = tqdm(total=0, desc=f"validate {name}", unit="trajectory", disable=not (progress and check_values),
                        leave=False, dynamic_ncols=True)

    def err(self, msg: str) -> None:
        self.errors.append(msg)

    def attr(self, obj, name: str, types=None):
        if name not in obj.attrs:
            self.err(f"{obj.name}: missing attribute {name!r}")
            return None
        value = attr_value(obj.attrs[name])
        if types and not isinstance(value, types):
            self.err(f"{obj.name}: attribute {name!r} is {type(value).__name__}, expected "
                     f"{' or '.join(t.__name__ for t in types)}")
            return None
        return value

    def run(self) -> list[str]:
        f = self.f
        fmt = attr_value(f.attrs.get("format"))
        if fmt != schema.FORMAT_NAME:
            return [f"not a pde_lab file: root attribute 'format' is {fmt!r}, expected {schema.FORMAT_NAME!r}"]
        version = attr_value(f.attrs.get("format_version"))
        if isinstance(version, bool) or version != schema.FORMAT_VERSION:  # True == 1
            return [f"unsupported format_version {version!r}; this reader knows {schema.FORMAT_VERSION}"]
        root = {name: self.attr(f, name, types) for name, types in schema.ROOT_ATTRS.items()}
        if root["complete"] is False:
            self.err("file is incomplete: root attribute 'complete' is false (the writer did not finish)")
        parsed = {}
        for name in schema.JSON_ATTRS:
            if isinstance(root[name], str):
                try:
                    parsed[name] = json.loads(root[name])
                except json.JSONDecodeError:
                    self.err(f"/: attribute {name!r} is not valid JSON")
                    continue
                if not isinstance(parsed[name], dict):
                    self.err(f"/: attribute {name!r} must be a JSON object, got {type(parsed[name]).__name__}")
        self.check_level_definition(parsed.get("level_definition"), root["level"])
        if root["split"] is not None and root["split"] not in schema.SPLITS:
            self.err(f"/: split {root['split']!r} is not one of {', '.join(schema.SPLITS)}")
        if root["grid_type"] is not None and root["grid_type"] not in schema.GRID_TYPES:
            self.err(f"/: grid_type {root['grid_type']!r} is not one of {', '.join(schema.GRID_TYPES)}")
        if root["dataset_seed"] is not None and root["dataset_seed"] < 0:
            self.err(f"/: dataset_seed {root['dataset_seed']} is negative")
        if root["n_trajectories"] is not None and root["n_trajectories"] < 1:
            self.err(f"/: n_trajectories is {root['n_trajectories']}, a file holds at least one trajectory")
            return self.errors
        res = root["spatial_resolution"]
        if res is not None and not (res and all(isinstance(r, int) and not isinstance(r, bool) and r >= 1
                                                for r in res)):
            # Floats would pass every shape comparison (16.0 == 16) and break readers later.
            self.err(f"/: spatial_resolution must be a non-empty array of positive integers, got {res}")
            root["spatial_resolution"] = None
        missing = [g for g in schema.REQUIRED_GROUPS if not isinstance(f.get(g), h5py.Group)]
        for g in missing:
            self.err(f"missing group /{g}")
        n, res = root["n_trajectories"], root["spatial_resolution"]
        if missing or n is None or res is None:
            return self.errors
        mesh = root["grid_type"] == "mesh"
        if mesh:
            self.check_mesh(res)
        elif root["n_spatial_dims"] is not None and len(res) != root["n_spatial_dims"]:
            self.err(f"/: spatial_resolution {res} has {len(res)} entries but n_spatial_dims is {root['n_spatial_dims']}")
        n_dims = root["n_spatial_dims"]
        n_time = self.check_dimensions(res, n_dims, mesh)
        field_names = self.check_fields(n, res, n_time, n_dims)
        self.check_per_trajectory(n)
        self.check_checksums(field_names, n)
        self.check_boundary_conditions(field_names, res)
        return self.errors

    def check_level_definition(self, definition, level) -> None:
        """``level_definition`` is ``{"name", "ranges": {param: [lo, hi]}, "log_uniform", "description"}``
        and names the file's ``level``."""
        if not isinstance(definition, dict):
            return  # not JSON, or not an object: reported already
        missing = [k for k in schema.LEVEL_DEFINITION_KEYS if k not in definition]
        if missing:
            self.err(f"/: level_definition lacks key(s) {missing}; expected {list(schema.LEVEL_DEFINITION_KEYS)}")
        if "name" in definition and level is not None and definition["name"] != level:
            self.err(f"/: level_definition names level {definition['name']!r} but the file's level is {level!r}")
        ranges = definition.get("ranges", {})
        if not isinstance(ranges, dict) or not all(isinstance(r, list) and len(r) == 2 for r in ranges.values()):
            self.err(f"/: level_definition 'ranges' must map parameter names to [lo, hi], got {ranges!r}")

    def check_dimensions(self, res, n_dims: int | None, mesh: bool) -> int | None:
        dims = self.f["dimensions"]
        names = self.attr(dims, "spatial_dims", (list,))
        if names is None:
            return None
        if len(names) != len(res):
            self.err(f"/dimensions: spatial_dims {names} do not match spatial_resolution {res}")
        periodic = self.attr(dims, "periodic", (list,))
        if periodic is not None and (len(periodic) != len(names) or not all(isinstance(p, bool) for p in periodic)):
            self.err(f"/dimensions: attribute 'periodic' must hold one bool per axis of {names}, got {periodic}")
            periodic = None
        bounds = np.asarray(dims.attrs["bounds"], dtype=float) if "bounds" in dims.attrs else None
        if bounds is None:
            self.err("/dimensions: missing attribute 'bounds'")
        elif (n_dims is not None and bounds.shape != (n_dims, 2)) or bounds.ndim != 2 or bounds.shape[-1:] != (2,) \
                or not (np.all(np.isfinite(bounds)) and np.all(bounds[:, 0] < bounds[:, 1])):
            self.err(f"/dimensions: attribute 'bounds' must be finite [lo, hi] pairs, lo < hi, of shape "
                     f"({n_dims}, 2), got {bounds.tolist()}")
            bounds = None
        for k, (name, n) in enumerate(zip(names, res)):
            d = dims.get(name)
            if not isinstance(d, h5py.Dataset):
                self.err(f"/dimensions: missing coordinate dataset {name!r}")
                continue
            self.check_coordinate_attrs(d, time_varying=False)
            c = d[()]
            if c.shape != (n,):
                self.err(f"/dimensions/{name}: shape {c.shape}, expected ({n},)")
            elif not (np.all(np.isfinite(c)) and np.all(np.diff(c) > 0)):
                self.err(f"/dimensions/{name}: coordinates must be finite and strictly increasing")
            elif mesh:
                if not np.array_equal(c, np.arange(n)):
                    self.err(f"/dimensions/{name}: a mesh file's node coordinate must be 0 .. {n - 1}")
            elif bounds is not None and periodic is not None and k < len(bounds):
                self.check_uniform(name, c, bounds[k], periodic[k])
        if "time" in dims:
            self.check_coordinate_attrs(dims["time"], time_varying=True)
            t = dims["time"][()]
            if t.ndim != 1 or not (np.all(np.isfinite(t)) and np.all(np.diff(t) > 0)):
                self.err("/dimensions/time: must be a 1D, finite, strictly increasing array")
            return len(t)
        return None

    def check_coordinate_attrs(self, d: h5py.Dataset, time_varying: bool) -> None:
        """A coordinate is float64 with ``sample_varying = false`` and ``time_varying`` true for ``time`` only."""
        if d.dtype != np.float64:
            self.err(f"{d.name}: dtype {d.dtype}, expected float64")
        for key, expected in (("sample_varying", False), ("time_varying", time_varying)):
            value = attr_value(d.attrs[key]) if key in d.attrs else None
            if value is not expected:
                self.err(f"{d.name}: attribute {key!r} is {value!r}, expected {expected}")

    def check_uniform(self, name: str, c: np.ndarray, bounds: np.ndarray, periodic: bool) -> None:
        """Points ``a + i h`` on a periodic axis, cell centres ``a + (i + 1/2) h`` on a bounded one.

        The tolerance (a thousandth of a cell) admits coordinates that went through float32 (files
        imported from The Well) and still catches a half-cell shift or bounds that do not fit.
        """
        (a, b), n = bounds, len(c)
        h = (b - a) / n
        expected = a + (np.arange(n) + (0.0 if periodic else 0.5)) * h
        if not np.allclose(c, expected, rtol=0.0, atol=1e-3 * h):
            where = "a + i h (periodic axis)" if periodic else "cell centres a + (i + 1/2) h (bounded axis)"
            self.err(f"/dimensions/{name}: coordinates are not {where} for bounds [{a:g}, {b:g}] and {n} points "
                     f"(largest deviation {np.max(np.abs(c - expected)):.3g}, cell size {h:.3g})")

    def check_fields(self, n: int, res, n_time, n_dims: int | None) -> set[str]:
        seen: set[str] = set()
        for rank, group in enumerate(schema.FIELD_GROUPS):
            g = self.f[group]
            names = self.attr(g, "field_names", (list,))
            if names is None:
                continue
            extra = set(g.keys()) - set(names)
            if extra:
                self.err(f"/{group}: datasets {sorted(extra)} are not listed in field_names")
            for name in names:
                d = g.get(name)
                if not isinstance(d, h5py.Dataset):
                    self.err(f"/{group}: field {name!r} listed but missing")
                    continue
                seen.add(name)
                self.check_field(d, n, res, n_time, rank, n_dims)
        if not seen:
            self.err("file holds no fields")
        return seen

    def check_field(self, d: h5py.Dataset, n: int, res, n_time, rank: int, n_dims: int | None) -> None:
        where = d.name
        if d.dtype != np.float32:
            self.err(f"{where}: dtype {d.dtype}, expected float32")
        attrs = {k: (self.attr(d, k) if k in d.attrs else self.err(f"{where}: missing attribute {k!r}"))
                 for k in schema.FIELD_ATTRS}
        if attrs["role"] is not None and attrs["role"] not in schema.FIELD_ROLES:
            self.err(f"{where}: role {attrs['role']!r} is not one of {', '.join(schema.FIELD_ROLES)}")
        for key in ("units", "description"):
            if attrs[key] is not None and not isinstance(attrs[key], str):
                self.err(f"{where}: attribute {key!r} must be a string, got {attrs[key]!r}")
        if attrs["sample_varying"] is not None and attrs["sample_varying"] is not True:
            self.err(f"{where}: attribute 'sample_varying' is {attrs['sample_varying']!r}, expected True "
                     "(every field holds one value per trajectory)")
        dv = attrs["dim_varying"]
        if dv is not None and (not isinstance(dv, list) or not all(v is True for v in dv)
                               or (n_dims is not None and len(dv) != n_dims)):
            self.err(f"{where}: attribute 'dim_varying' must hold True for each spatial dimension ({n_dims}; every "
                     f"field varies along every axis), got {dv!r}")
        tv = attrs["time_varying"]
        if tv is not None and not isinstance(tv, bool):
            self.err(f"{where}: attribute 'time_varying' must be a bool, got {tv!r}")
            return
        if tv and n_time is None:
            self.err(f"{where}: time-varying field but /dimensions/time is missing")
            return
        lead = (n, n_time) if tv else (n,)
        # a component axis has one entry per spatial dimension: on a mesh, res is (n_nodes,) but a
        # vector still has n_spatial_dims components
        expected = (*lead, *res) + ((n_dims if n_dims is not None else len(res),) * rank)
        if d.shape != expected:
            self.err(f"{where}: shape {d.shape}, expected {expected}")
            return
        frame = (1,) * len(lead) + tuple(d.shape[len(lead):])
        if d.chunks != frame:
            self.err(f"{where}: chunks {d.chunks}, expected one chunk per frame {frame}")
        if self.check_values:
            self.check_values_of(d, n, attrs["role"])

    def check_values_of(self, d: h5py.Dataset, n: int, role) -> None:
        """Per trajectory: finite values, the stored checksum, and a solution that is not one value at
        every point and time (what a solver returning a fill value, or a never-written slot, looks
        like). A constant frame is allowed, and so is a spatially uniform state that changes in time:
        a fluid at rest, a saturated front, or a uniform state relaxing are physics."""
        where, name = d.name, d.name.rsplit("/", 1)[-1]
        sums = self.f["trajectories"].get(schema.checksum_name(name))
        sums = sums[()] if isinstance(sums, h5py.Dataset) and sums.shape == (n,) and sums.dtype.kind == "u" else None
        problems = {"nan": ("holds NaN or inf", "hold NaN or inf"),
                    "sum": ("does not match its checksum (damaged or edited after writing)",
                            "do not match their checksums (damaged or edited after writing)"),
                    "constant": ("is one constant value at every point and time",
                                 "are each one constant value at every point and time")}
        bad: dict[str, list[int]] = {}
        self.bar.total += n
        self.bar.refresh()
        for i in range(n):
            self.bar.update(1)
            block = d[i]
            if not np.all(np.isfinite(block)):
                bad.setdefault("nan", []).append(i)
            if sums is not None and trajectory_checksums(block[None])[0] != sums[i]:
                bad.setdefault("sum", []).append(i)
            if role == "solution" and block.min() == block.max():
                bad.setdefault("constant", []).append(i)
        for kind, idx in bad.items():
            one, many = problems[kind]
            shown = ", ".join(map(str, idx[:10])) + (f" and {len(idx) - 10} more" if len(idx) > 10 else "")
            self.err(f"{where}: trajectory {shown} {one}" if len(idx) == 1 else f"{where}: trajectories {shown} {many}")

    def check_checksums(self, field_names: set[str], n: int) -> None:
        tr = self.f["trajectories"]
        algo = attr_value(tr.attrs.get("checksum_algorithm"))
        if algo != CHECKSUM_ALGORITHM:
            self.err(f"/trajectories: attribute 'checksum_algorithm' is {algo!r}, expected {CHECKSUM_ALGORITHM!r}")
        for name in sorted(field_names):
            key = schema.checksum_name(name)
            d = tr.get(key)
            if not isinstance(d, h5py.Dataset):
                self.err(f"/trajectories: missing dataset {key!r} (per-trajectory checksums of field {name!r})")
            elif d.shape != (n,) or d.dtype != np.uint32:
                self.err(f"/trajectories/{key}: expected uint32 of shape ({n},), got {d.dtype} {d.shape}")
        stray = sorted(k for k in tr.keys() if k.startswith(schema.CHECKSUM_PREFIX)
                       and k[len(schema.CHECKSUM_PREFIX):] not in field_names)
        if stray:
            self.err(f"/trajectories: checksums {stray} belong to no field")

    def check_per_trajectory(self, n: int) -> None:
        for group in ("scalars", "dimensionless"):
            g = self.f[group]
            names = self.attr(g, "field_names", (list,)) or []
            extra = set(g.keys()) - set(names)
            if extra:
                self.err(f"/{group}: datasets {sorted(extra)} are not listed in field_names")
            for name in names:
                d = g.get(name)
                if not isinstance(d, h5py.Dataset):
                    self.err(f"/{group}: {name!r} listed but missing")
                    continue
                if d.shape != (n,) or d.dtype != np.float64:
                    self.err(f"/{group}/{name}: expected a float64 array of shape ({n},), got {d.dtype} {d.shape}")
                if group == "scalars":
                    for key in ("units", "description"):
                        if not isinstance(attr_value(d.attrs.get(key)), str):
                            self.err(f"/{group}/{name}: missing string attribute {key!r}")
        tr = self.f["trajectories"]
        for name, kind in schema.TRAJECTORY_DATASETS.items():
            d = tr.get(name)
            if not isinstance(d, h5py.Dataset):
                self.err(f"/trajectories: missing dataset {name!r}")
                continue
            if d.shape != (n,) or d.dtype.kind != kind:
                self.err(f"/trajectories/{name}: expected shape ({n},) of kind {kind!r}, got {d.dtype} {d.shape}")
                continue
            if name == "seed" and d.dtype != np.uint64:  # a narrower type would have cut the 64-bit seeds
                self.err(f"/trajectories/seed: expected uint64, got {d.dtype}")
            if name == "index" and not np.array_equal(d[()], np.arange(n)):
                self.err("/trajectories/index: expected 0 .. n_trajectories-1 in order")
            if name == "wall_time" and not np.all(np.isfinite(d[()]) & (d[()] >= 0)):
                self.err("/trajectories/wall_time: negative, NaN or infinite times")
        per_sample = self.attr(tr, "solver_per_sample", (list,))
        if per_sample is None:
            return
        for name in per_sample:
            d = tr.get(name)
            if not isinstance(d, h5py.Dataset):
                self.err(f"/trajectories: {name!r} listed in solver_per_sample but missing")
            elif d.shape != (n,) or d.dtype != np.float64:
                self.err(f"/trajectories/{name}: expected a float64 array of shape ({n},), got {d.dtype} {d.shape}")
        known = set(schema.TRAJECTORY_DATASETS) | set(per_sample)
        extra = sorted(k for k in tr.keys() if k not in known and not k.startswith(schema.CHECKSUM_PREFIX))
        if extra:
            self.err(f"/trajectories: datasets {extra} are not listed in solver_per_sample")

    def check_mesh(self, res) -> None:
        """A ``grid_type = "mesh"`` file: the ``mesh`` group is a valid triangle mesh and fields hold
        one value per node (``spatial_resolution = [n_nodes]``)."""
        g = self.f.get("mesh")
        if not isinstance(g, h5py.Group):
            self.err("grid_type is 'mesh' but group /mesh is missing")
            return
        for name in ("nodes", "cells", "boundary_facets", "boundary_facet_tags"):
            if not isinstance(g.get(name), h5py.Dataset):
                self.err(f"/mesh: missing dataset {name!r}")
                return
        cell_type = self.attr(g, "cell_type", (str,))
        tags = self.attr(g, "tag_names", (list,))
        self.attr(g, "geometry", (str,))
        self.attr(g, "resolution", (int,))
        params = self.attr(g, "geometry_params", (str,))
        if params is not None:
            try:
                json.loads(params)
            except json.JSONDecodeError:
                self.err("/mesh: attribute 'geometry_params' is not valid JSON")
        for name, kind in (("nodes", "f"), ("cells", "i"), ("boundary_facets", "i"), ("boundary_facet_tags", "i")):
            if g[name].dtype.kind != kind:
                self.err(f"/mesh/{name}: dtype {g[name].dtype}, expected {'float64' if kind == 'f' else 'int64'}")
        nodes, cells = g["nodes"][()], g["cells"][()]
        facets, ftags = g["boundary_facets"][()], g["boundary_facet_tags"][()]
        if nodes.ndim != 2 or nodes.shape[1] != 2 or not np.all(np.isfinite(nodes)):
            self.err(f"/mesh/nodes: expected a finite (n_nodes, 2) array, got shape {nodes.shape}")
            return
        n = nodes.shape[0]
        if len(res) != 1 or res[0] != n:
            self.err(f"/: spatial_resolution {res} must be [n_nodes] = [{n}] for a mesh file")
        if cell_type != "triangle" or cells.ndim != 2 or cells.shape[1] != 3 or cells.dtype.kind not in "iu":
            self.err(f"/mesh/cells: expected integer (n_cells, 3) triangles, got cell_type {cell_type!r}, "
                     f"{cells.dtype} {cells.shape}")
            return
        if cells.size == 0 or cells.min() < 0 or cells.max() >= n:
            self.err(f"/mesh/cells: node indices must lie in [0, {n - 1}]")
            return
        p = nodes[cells]
        area = 0.5 * ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1])
                      - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1]))
        if not np.all(area > 0):
            self.err(f"/mesh/cells: {int(np.sum(~(area > 0)))} triangles have non-positive area "
                     "(degenerate or clockwise)")
        if facets.ndim != 2 or facets.shape[1:] != (2,) or (facets.size and (facets.min() < 0 or facets.max() >= n)):
            self.err(f"/mesh/boundary_facets: expected (n_facets, 2) node indices in [0, {n - 1}]")
        elif ftags.shape != (facets.shape[0],) or (tags is not None and ftags.size and
                                                   (ftags.min() < 0 or ftags.max() >= len(tags))):
            self.err("/mesh/boundary_facet_tags: expected one index into tag_names per boundary facet")

    def check_boundary_conditions(self, field_names: set[str], res) -> None:
        bcs = self.f["boundary_conditions"]
        axis_names = list(attr_value(self.f["dimensions"].attrs.get("spatial_dims", [])) or [])
        # Points along each axis, which a mask_<axis> must match.
        lengths = dict(zip(axis_names, res))
        if isinstance(self.f.get("mesh"), h5py.Group):  # on a mesh, conditions name boundary tags
            tags = list(attr_value(self.f["mesh"].attrs.get("tag_names", [])) or [])
            lengths = {t: res[0] for t in tags} if len(res) == 1 else {}
        for name, g in bcs.items():
            where = g.name
            if not isinstance(g, h5py.Group):
                self.err(f"{where}: expected a group per boundary condition, found a dataset")
                continue
            kind = self.attr(g, "bc_type", (str,))
            if kind is not None and kind not in schema.BC_TYPES:
                self.err(f"{where}: bc_type {kind!r} is not one of {', '.join(schema.BC_TYPES)}")
            if kind in ("DIRICHLET", "NEUMANN"):
                value = self.attr(g, "value", (float, int))
                if value is not None and not np.isfinite(value):
                    self.err(f"{where}: attribute 'value' is {value}, expected a finite number")
            axes = self.attr(g, "associated_dims", (list,)) or []
            if set(axes) - set(lengths):
                self.err(f"{where}: associated_dims {axes} not among spatial dims {sorted(lengths)}")
            fields = self.attr(g, "associated_fields", (list,)) or []
            if set(fields) - field_names:
                self.err(f"{where}: associated_fields {fields} not among fields {sorted(field_names)}")
            for axis in axes:
                if axis not in lengths:
                    continue
                m = g.get(f"mask_{axis}")
                if not isinstance(m, h5py.Dataset):
                    self.err(f"{where}: missing dataset 'mask_{axis}'")
                elif m.dtype != np.bool_ or m.shape != (lengths[axis],):
                    self.err(f"{where}/mask_{axis}: expected bool of shape ({lengths[axis]},), got {m.dtype} {m.shape}")
