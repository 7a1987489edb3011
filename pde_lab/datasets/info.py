"""Summaries of dataset files: what ``pde-lab info`` prints."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import UserError
from .layout import dataset_files
from .validate import placement_error, validate_file
from .writer import attr_value


def summarize(path: str | Path) -> dict:
    """PDE, levels, counts per split, resolution, parameter ranges and generation cost of a file or directory."""
    path = Path(path)
    files = dataset_files(path)
    if not files:
        raise UserError(f"{path} holds no .h5 files")
    out: dict = {"path": str(path), "pde": None, "levels": {}, "resolution": None, "total_wall_time_s": 0.0}
    params: dict[str, list[float]] = {}
    for p in files:
        errs = validate_file(p, check_values=False)
        if errs:
            raise UserError(f"{p} is not a valid pde_lab file: {errs[0]}")
        misplaced = placement_error(p) if path.is_dir() else None
        if misplaced:  # counts are keyed by the attributes: a misplaced file would skew them silently
            raise UserError(f"{p}: {misplaced}; move or rename it (pde-lab validate checks the whole dataset)")
        with h5py.File(p, "r") as f:
            pde, level, split = (attr_value(f.attrs[k]) for k in ("pde", "level", "split"))
            if out["pde"] not in (None, pde):
                raise UserError(f"{path} mixes PDEs {out['pde']!r} and {pde!r}")
            out["pde"] = pde
            out["equation"] = attr_value(f.attrs["equation"])
            out["solver"] = attr_value(f.attrs["solver"])
            out["resolution"] = attr_value(f.attrs["spatial_resolution"])
            out["grid_type"] = attr_value(f.attrs.get("grid_type", "cartesian"))
            out["n_times"] = len(f["dimensions/time"]) if "time" in f["dimensions"] else None
            wall = f["trajectories/wall_time"][()]
            lv = out["levels"].setdefault(level, {"splits": {}, "wall_time_s": 0.0, "parameters": {},
                                                  "definition": json.loads(attr_value(f.attrs["level_definition"]))})
            lv["splits"][split] = len(wall)
            lv["wall_time_s"] += float(wall.sum())
            out["total_wall_time_s"] += float(wall.sum())
            for group in ("scalars", "dimensionless"):
                for name, d in f[group].items():
                    v = d[()]
                    lo, hi = lv["parameters"].get(name, (np.inf, -np.inf))
                    lv["parameters"][name] = (min(lo, float(v.min())), max(hi, float(v.max())))
                    params.setdefault(name, []).extend(v.tolist())
    out["parameters"] = {k: (min(v), max(v)) for k, v in params.items()}
    return out


def format_summary(s: dict) -> str:
    """Human-readable text of :func:`summarize`'s result."""
    lines = [f"{s['path']}: PDE {s['pde']}  ({s['equation']})",
             f"  solver: {s['solver']}",
             (f"  mesh: {s['resolution'][0]} nodes" if s.get("grid_type") == "mesh" else
              f"  resolution: {' x '.join(map(str, s['resolution']))}") +
             (f", {s['n_times']} stored times" if s.get("n_times") else ", steady"),
             f"  total generation cost: {s['total_wall_time_s']:.2f} s"]
    for level, lv in s["levels"].items():
        counts = ", ".join(f"{k} {v}" for k, v in lv["splits"].items())
        lines.append(f"  level {level}: {counts}; cost {lv['wall_time_s']:.2f} s")
        for name, (lo, hi) in sorted(lv["parameters"].items()):
            rng = f"{lo:.4g}" if lo == hi else f"{lo:.4g} .. {hi:.4g}"
            lines.append(f"      {name:<14} {rng}")
    return "\n".join(lines)
