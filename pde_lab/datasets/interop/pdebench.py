"""Read PDEBench HDF5 files (Takamoto et al., NeurIPS 2022) into pde_lab files.

PDEBench ships two layouts, both handled here:

* **Array files** (1D advection, Burgers, reaction–diffusion, compressible Navier–Stokes; 2D Darcy
  flow): root datasets ``x-coordinate`` (and ``y-``, ``z-coordinate``), usually ``t-coordinate``, and
  field arrays with a leading sample axis. ``tensor`` is ``(N, T, X)`` for the 1D scalar equations
  and ``(N, 1, X, Y)`` for Darcy flow, whose coefficient field is ``nu`` ``(N, X, Y)``; the CFD files
  have ``density``, ``pressure``, ``Vx``, ... each ``(N, T, *space)``. Each array becomes a scalar
  field (``tensor`` is renamed ``u``): time-varying arrays are ``solution`` fields, static ones
  (``nu``) ``input`` fields, and Darcy's single-frame ``tensor`` a static ``solution`` (a
  ``t-coordinate`` beside a single frame is ignored). The 1D files
  store one more ``t-coordinate`` than frames; the first ``T`` times are used.
* **Group files** (1D diffusion–sorption, 2D diffusion–reaction, shallow water): one group per sample
  (``0000``, ``0001``, ...) with ``data`` ``(T, *space, C)``, ``grid/x`` (``grid/y``) and ``grid/t``.
  The ``C`` channels become scalar fields named by ``field_names`` (default ``u`` for one channel,
  ``u0, u1, ...`` otherwise).

Physical parameters are not stored inside PDEBench files but in their names
(``1D_Burgers_Sols_Nu0.001.hdf5``, ``2D_DarcyFlow_beta1.0_Train.hdf5``): every ``_NameNumber`` token of
the file name becomes a per-trajectory scalar (``nu = 0.001``, ``beta = 1.0``). PDEBench records no
boundary conditions, seeds or costs: axes are non-periodic unless ``periodic`` says otherwise, and
costs are recorded as zero. ``samples=(start, stop)`` converts a range of samples, so one PDEBench
file can become pde_lab's train, valid and test files.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from ...errors import UserError
from ..engine import progress_bar
from .builder import FileBuilder, check_output, open_source

AXES = ("x", "y", "z")
_PARAM = re.compile(r"^([A-Za-z]+)([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


def parameters_from_name(name: str) -> dict[str, float]:
    """``_NameNumber`` tokens of a PDEBench file name: ``1D_Burgers_Sols_Nu0.001.hdf5`` → ``{"nu": 0.001}``."""
    out = {}
    for token in Path(name).stem.split("_"):
        m = _PARAM.match(token)
        if m:
            out[m.group(1).lower()] = float(m.group(2))
    return out


def _sample_range(samples: Sequence[int] | None, n: int, src) -> range:
    if samples is None:
        return range(n)
    if len(samples) != 2:
        raise UserError(f"samples must be (start, stop), got {samples!r}")
    start, stop = (int(s) for s in samples)
    if start >= stop:
        raise UserError(f"samples {start}:{stop} is empty: START must be less than STOP")
    if not 0 <= start < stop <= n:
        raise UserError(f"samples {start}:{stop} not within the {n} samples of {src}")
    return range(start, stop)


def import_pdebench(src: str | Path, out: str | Path, level: str = "default", split: str = "train",
                    pde: str | None = None, periodic: bool | Sequence[bool] = False,
                    field_names: Sequence[str] | None = None, samples: Sequence[int] | None = None,
                    progress: bool = False, overwrite: bool = False) -> Path:
    """Convert the PDEBench file ``src`` into the pde_lab file ``out`` (layouts: module docstring).

    Args:
        level, split: stored in the new file.
        pde: the ``pde`` attribute; default ``pdebench_<file stem>`` without parameter tokens.
        periodic: per axis (or one value for all), whether the domain wraps around.
        field_names: channel names for group files.
        samples: ``(start, stop)`` sample range to convert; ``None`` = all.
        progress: show a progress bar on stderr (arrays converted; trajectories for group files).
        overwrite: replace an existing ``out`` (never the source).
    Returns ``out``; the file validates.
    """
    check_output(Path(out), Path(src), overwrite)
    src, f = open_source(src)
    params = parameters_from_name(src.name)
    if pde is None:
        kept = [t for t in src.stem.split("_") if not _PARAM.match(t)]
        pde = "pdebench_" + "_".join(kept)
    meta = dict(level=level, split=split, pde=pde, solver="unknown (imported from PDEBench)",
                equation=f"not recorded (imported from PDEBench file {src.name})",
                generation_config={"source": "pdebench", "file": src.name, "parameters": params})
    with f:
        if "tensor" in f or any(k.endswith("-coordinate") for k in f.keys()):
            return _array_file(f, src, Path(out), meta, params, periodic, samples, progress)
        groups = sorted(k for k, v in f.items() if isinstance(v, h5py.Group) and "data" in v)
        if groups:
            return _group_file(f, groups, src, Path(out), meta, params, periodic, field_names, samples, progress)
        found = ", ".join(list(f.keys())[:8]) or "nothing"
    raise UserError(f"{src} is not a PDEBench file: it has neither a 'tensor'/'*-coordinate' dataset nor "
                    f"per-sample groups with 'data'; found: {found}")


def _periodic(periodic, d: int) -> list[bool]:
    if isinstance(periodic, (bool, np.bool_)):
        return [bool(periodic)] * d
    periodic = [bool(p) for p in periodic]
    if len(periodic) != d:
        raise UserError(f"periodic needs one value per axis ({d}), got {periodic}")
    return periodic


def _finish(b: FileBuilder, params: dict[str, float]) -> Path:
    for name, value in params.items():
        b.add_scalar(name, value)
    return b.close()


def _array_file(f: h5py.File, src: Path, out: Path, meta: dict, params: dict, periodic, samples,
                progress: bool) -> Path:
    coords = {ax: np.asarray(f[f"{ax}-coordinate"][()], dtype=np.float64).reshape(-1)
              for ax in AXES if f"{ax}-coordinate" in f}
    if not coords:
        raise UserError(f"{src}: no x-coordinate dataset; cannot place the fields on a grid")
    space = tuple(len(c) for c in coords.values())
    arrays = {k: v for k, v in f.items() if isinstance(v, h5py.Dataset) and not k.endswith("-coordinate")}
    if not arrays:
        raise UserError(f"{src}: holds coordinates but no field arrays")
    n = min(v.shape[0] for v in arrays.values())
    t_all = np.asarray(f["t-coordinate"][()], dtype=np.float64).reshape(-1) if "t-coordinate" in f else None
    kinds = {}  # name -> "time" (N, T, *space), "frame" (N, 1, *space) steady, "static" (N, *space)
    n_t = None
    for name, d in arrays.items():
        if d.shape[0] != n:
            raise UserError(f"{src}: {name!r} has {d.shape[0]} samples, other arrays {n}")
        if d.shape[1:] == space:
            kinds[name] = "static"
        elif d.ndim == len(space) + 2 and d.shape[2:] == space:
            # One frame is a steady solution (Darcy's ``tensor``), even where the file also stores a
            # ``t-coordinate`` (the released Darcy files hold 10 times for their one frame).
            if d.shape[1] == 1:
                kinds[name] = "frame"
            else:
                kinds[name] = "time"
                if n_t is not None and d.shape[1] != n_t:
                    raise UserError(f"{src}: {name!r} has {d.shape[1]} frames, other fields {n_t}")
                n_t = d.shape[1]
        else:
            raise UserError(f"{src}: array {name!r} of shape {d.shape} does not fit the grid {space} "
                            f"as (N, T, *space), (N, 1, *space) or (N, *space)")
    times = None
    if n_t is not None:
        if t_all is None:
            times = np.arange(n_t, dtype=np.float64)
        elif len(t_all) < n_t:
            raise UserError(f"{src}: t-coordinate has {len(t_all)} times for {n_t} frames")
        else:
            times = t_all[:n_t]
    rows = _sample_range(samples, n, src)
    b = FileBuilder(out, n=len(rows), coords=dict(zip(AXES, coords.values())), periodic=_periodic(periodic, len(space)),
                    times=times, **meta)
    bar = progress_bar(len(rows) * len(arrays), 0, f"import {src.name}", progress, unit="array")
    try:
        for name, d in arrays.items():
            kind = kinds[name]
            field = "u" if name == "tensor" else name
            b.add_field(field, role="input" if kind == "static" and name != "tensor" else "solution",
                        time_varying=kind == "time",
                        description=f"PDEBench dataset {name!r}")
            for j, i in enumerate(rows):
                v = d[i]
                b.write(field, j, v[0] if kind == "frame" else v)
                bar.update(1)
        b.set_trajectories(index_in_source=np.array(rows, dtype=np.float64))
        return _finish(b, params)
    except BaseException:
        b.abort()
        raise
    finally:
        bar.close()


def _group_file(f: h5py.File, groups: list[str], src: Path, out: Path, meta: dict, params: dict, periodic,
                field_names, samples, progress: bool) -> Path:
    first = f[groups[0]]
    grid = first.get("grid")
    if grid is None or "t" not in grid or "x" not in grid:
        raise UserError(f"{src}: sample group {groups[0]!r} has no grid/x and grid/t")
    coords = {ax: np.asarray(grid[ax][()], dtype=np.float64).reshape(-1) for ax in AXES if ax in grid}
    times = np.asarray(grid["t"][()], dtype=np.float64).reshape(-1)
    space = tuple(len(c) for c in coords.values())
    shape = first["data"].shape
    if len(shape) == 1 + len(space):  # no channel axis
        n_c = 1
    elif len(shape) == 2 + len(space):
        n_c = shape[-1]
    else:
        raise UserError(f"{src}: {groups[0]}/data has shape {shape}, expected (T, *space, C) with space {space}")
    if shape[0] != len(times) or tuple(shape[1:1 + len(space)]) != space:
        raise UserError(f"{src}: {groups[0]}/data has shape {shape}, not (T={len(times)}, *{space}, C)")
    names = list(field_names) if field_names else (["u"] if n_c == 1 else [f"u{c}" for c in range(n_c)])
    if len(names) != n_c:
        raise UserError(f"field_names {names} must name the {n_c} channels of {src}")
    rows = _sample_range(samples, len(groups), src)
    b = FileBuilder(out, n=len(rows), coords=dict(zip(AXES, coords.values())),
                    periodic=_periodic(periodic, len(space)), times=times, **meta)
    bar = progress_bar(len(rows), 0, f"import {src.name}", progress, unit="trajectory")
    try:
        for name in names:
            b.add_field(name, description="PDEBench data channel")
        for j, i in enumerate(rows):
            data = np.asarray(f[groups[i]]["data"][()])
            if data.shape[:1 + len(space)] != (len(times), *space):
                raise UserError(f"{src}: {groups[i]}/data has shape {data.shape}, the first sample {shape}")
            data = data.reshape(*data.shape[:1 + len(space)], n_c)
            for c, name in enumerate(names):
                b.write(name, j, data[..., c])
            bar.update(1)
        b.set_trajectories(index_in_source=np.array([int(g) if g.isdigit() else -1 for g in
                                                     (groups[i] for i in rows)], dtype=np.float64))
        return _finish(b, params)
    except BaseException:
        b.abort()
        raise
    finally:
        bar.close()
