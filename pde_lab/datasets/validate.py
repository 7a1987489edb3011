"""Check files against the pde_lab HDF5 format v1 and list every violation.

The checks follow docs/data_format.md section by section; each violation is one line that names the
object and what was expected, so a user can fix a foreign or damaged file.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .parts import CHECKSUM_ALGORITHM, trajectory_checksums
from .writer import attr_value


def validate_file(path: str | Path, check_values: bool = True) -> list[str]:
    """All violations of the format in one file (empty list: the file is valid).

    ``check_values=False`` skips reading every field (NaN/inf, per-trajectory checksums, constant
    trajectories): structure only, fast.
    """
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file"]
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return [f"not an HDF5 file or unreadable ({e.__class__.__name__}: {str(e).splitlines()[0]})"]
    with f:
        v = _Validator(f, check_values)
        try:
            return v.run()
        except Exception as e:  # noqa: BLE001
            # A truncated or overwritten file can open yet fail anywhere: on a chunk it no longer holds,
            # or on an object header turned to noise. The exception's type and text still show here.
            return v.errors + [f"file is damaged: reading it failed ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})"]


def validate_path(path: str | Path, check_values: bool = True) -> dict[str, list[str]]:
    """Validate one file, or every ``*.h5`` file of a dataset directory; file → violations."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.h5"))
        if not files:
            return {str(path): ["directory holds no .h5 files"]}
        out = {}
        for file in files:
            errs = validate_file(file, check_values)
            split, level = file.parent.name, file.stem
            if not errs:
                with h5py.File(file, "r") as f:
                    if attr_value(f.attrs["split"]) != split or attr_value(f.attrs["level"]) != level:
                        errs.append(f"file is at {split}/{level}.h5 but its attributes say split="
                                    f"{attr_value(f.attrs['split'])!r}, level={attr_value(f.attrs['level'])!r}")
            out[str(file)] = errs
        return out
    return {str(path): validate_file(path, check_values)}


class _Validator:
    def __init__(self, f: h5py.File, check_values: bool = True):
        self.f = f
        self.check_values = check_values
        self.errors: list[str] = []

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
        if version != schema.FORMAT_VERSION:
            return [f"unsupported format_version {version!r}; this reader knows {schema.FORMAT_VERSION}"]
        root = {name: self.attr(f, name, types) for name, types in schema.ROOT_ATTRS.items()}
        if root["complete"] is False:
            self.err("file is incomplete: root attribute 'complete' is false (the writer did not finish)")
        for name in schema.JSON_ATTRS:
            if isinstance(root[name], str):
                try:
                    json.loads(root[name])
                except json.JSONDecodeError:
                    self.err(f"/: attribute {name!r} is not valid JSON")
        if root["split"] is not None and root["split"] not in schema.SPLITS:
            self.err(f"/: split {root['split']!r} is not one of {', '.join(schema.SPLITS)}")
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
        n_time = self.check_dimensions(res)
        field_names = self.check_fields(n, res, n_time)
        self.check_per_trajectory(n)
        self.check_checksums(field_names, n)
        self.check_boundary_conditions(field_names)
        return self.errors

    def check_dimensions(self, res) -> int | None:
        dims = self.f["dimensions"]
        names = self.attr(dims, "spatial_dims", (list,))
        if names is None:
            return None
        if len(names) != len(res):
            self.err(f"/dimensions: spatial_dims {names} do not match spatial_resolution {res}")
        for name, n in zip(names, res):
            d = dims.get(name)
            if not isinstance(d, h5py.Dataset):
                self.err(f"/dimensions: missing coordinate dataset {name!r}")
                continue
            c = d[()]
            if c.shape != (n,):
                self.err(f"/dimensions/{name}: shape {c.shape}, expected ({n},)")
            elif not (np.all(np.isfinite(c)) and np.all(np.diff(c) > 0)):
                self.err(f"/dimensions/{name}: coordinates must be finite and strictly increasing")
        if "time" in dims:
            t = dims["time"][()]
            if t.ndim != 1 or not (np.all(np.isfinite(t)) and np.all(np.diff(t) > 0)):
                self.err("/dimensions/time: must be a 1D, finite, strictly increasing array")
            return len(t)
        return None

    def check_fields(self, n: int, res, n_time) -> set[str]:
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
                self.check_field(d, n, res, n_time, rank)
        if not seen:
            self.err("file holds no fields")
        return seen

    def check_field(self, d: h5py.Dataset, n: int, res, n_time, rank: int) -> None:
        where = d.name
        if d.dtype != np.float32:
            self.err(f"{where}: dtype {d.dtype}, expected float32")
        attrs = {k: (self.attr(d, k) if k in d.attrs else self.err(f"{where}: missing attribute {k!r}"))
                 for k in schema.FIELD_ATTRS}
        if attrs["role"] is not None and attrs["role"] not in schema.FIELD_ROLES:
            self.err(f"{where}: role {attrs['role']!r} is not one of {', '.join(schema.FIELD_ROLES)}")
        tv = attrs["time_varying"]
        if tv and n_time is None:
            self.err(f"{where}: time-varying field but /dimensions/time is missing")
            return
        lead = (n, n_time) if tv else (n,)
        expected = (*lead, *res) + ((len(res),) * rank)
        if d.shape != expected:
            self.err(f"{where}: shape {d.shape}, expected {expected}")
            return
        frame = (1,) * len(lead) + tuple(d.shape[len(lead):])
        if d.chunks != frame:
            self.err(f"{where}: chunks {d.chunks}, expected one chunk per frame {frame}")
        if self.check_values:
            self.check_values_of(d, n, attrs["role"], bool(tv))

    def check_values_of(self, d: h5py.Dataset, n: int, role, time_varying: bool) -> None:
        """Per trajectory: finite values, the stored checksum, and a solution that is not constant in
        every frame (what a solver returning a fill value, or a never-written slot, looks like). A
        single constant frame is allowed: a fluid at rest or a saturated front is physics."""
        where, name = d.name, d.name.rsplit("/", 1)[-1]
        sums = self.f["trajectories"].get(schema.checksum_name(name))
        sums = sums[()] if isinstance(sums, h5py.Dataset) and sums.shape == (n,) and sums.dtype.kind == "u" else None
        problems = {"nan": ("holds NaN or inf", "hold NaN or inf"),
                    "sum": ("does not match its checksum (damaged or edited after writing)",
                            "do not match their checksums (damaged or edited after writing)"),
                    "constant": ("is constant in every frame", "are constant in every frame")}
        bad: dict[str, list[int]] = {}
        for i in range(n):
            block = d[i]
            if not np.all(np.isfinite(block)):
                bad.setdefault("nan", []).append(i)
            if sums is not None and trajectory_checksums(block[None])[0] != sums[i]:
                bad.setdefault("sum", []).append(i)
            frames = block.reshape(block.shape[0], -1) if time_varying else block.reshape(1, -1)
            if role == "solution" and np.all(frames.min(axis=1) == frames.max(axis=1)):
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

    def check_per_trajectory(self, n: int) -> None:
        for group in ("scalars", "dimensionless"):
            g = self.f[group]
            names = self.attr(g, "field_names", (list,)) or []
            for name in names:
                d = g.get(name)
                if not isinstance(d, h5py.Dataset):
                    self.err(f"/{group}: {name!r} listed but missing")
                elif d.shape != (n,) or d.dtype.kind not in "fiu":
                    self.err(f"/{group}/{name}: expected a numeric array of shape ({n},), got {d.dtype} {d.shape}")
        tr = self.f["trajectories"]
        for name, kind in schema.TRAJECTORY_DATASETS.items():
            d = tr.get(name)
            if not isinstance(d, h5py.Dataset):
                self.err(f"/trajectories: missing dataset {name!r}")
                continue
            if d.shape != (n,) or d.dtype.kind != kind:
                self.err(f"/trajectories/{name}: expected shape ({n},) of kind {kind!r}, got {d.dtype} {d.shape}")
                continue
            if name == "index" and not np.array_equal(d[()], np.arange(n)):
                self.err("/trajectories/index: expected 0 .. n_trajectories-1 in order")
            if name == "wall_time" and not np.all(d[()] >= 0):
                self.err("/trajectories/wall_time: negative or NaN times")

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

    def check_boundary_conditions(self, field_names: set[str]) -> None:
        bcs = self.f["boundary_conditions"]
        dims = set(attr_value(self.f["dimensions"].attrs.get("spatial_dims", [])) or [])
        if isinstance(self.f.get("mesh"), h5py.Group):  # on a mesh, conditions name boundary tags
            dims = set(attr_value(self.f["mesh"].attrs.get("tag_names", [])) or [])
        for name, g in bcs.items():
            where = g.name
            kind = self.attr(g, "bc_type", (str,))
            if kind is not None and kind not in schema.BC_TYPES:
                self.err(f"{where}: bc_type {kind!r} is not one of {', '.join(schema.BC_TYPES)}")
            axes = self.attr(g, "associated_dims", (list,)) or []
            if set(axes) - dims:
                self.err(f"{where}: associated_dims {axes} not among spatial dims {sorted(dims)}")
            fields = self.attr(g, "associated_fields", (list,)) or []
            if set(fields) - field_names:
                self.err(f"{where}: associated_fields {fields} not among fields {sorted(field_names)}")
