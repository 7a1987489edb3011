"""Constants of the pde_lab HDF5 format, version 1 (written up in docs/data_format.md).

One file holds the trajectories of one PDE, one difficulty level and one split. A dataset directory
holds ``<split>/<level>.h5`` files. Writers and the validator both read their names from here so the
specification lives in one place.
"""
from __future__ import annotations

from pathlib import Path

FORMAT_NAME = "pde_lab"
FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
GRID_TYPES = ("cartesian", "mesh")

# Root attributes every file carries, with the Python types they must have once read back.
ROOT_ATTRS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "complete": (bool,),
    "pde": (str,),
    "equation": (str,),
    "level": (str,),
    "split": (str,),
    "n_trajectories": (int,),
    "n_spatial_dims": (int,),
    "spatial_resolution": (list,),
    "grid_type": (str,),
    "solver": (str,),
    "solver_settings": (str,),  # JSON
    "level_definition": (str,),  # JSON: the level's parameter ranges
    "generation_config": (str,),  # JSON: the resolved generation config
    "dataset_seed": (int,),
    "package_version": (str,),
}
JSON_ATTRS = ("solver_settings", "level_definition", "generation_config")

# Groups of fields by tensor rank, as in The Well: t0 scalars, t1 vectors, t2 tensors.
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
REQUIRED_GROUPS = ("dimensions", *FIELD_GROUPS, "scalars", "dimensionless", "boundary_conditions", "trajectories")
FIELD_ATTRS = ("role", "time_varying", "sample_varying", "dim_varying", "units", "description")
FIELD_ROLES = ("input", "solution")
BC_TYPES = ("PERIODIC", "DIRICHLET", "NEUMANN", "OPEN")

# Per-trajectory bookkeeping in ``trajectories/``: name → numpy dtype kind ('u' unsigned, 'i' int, 'f' float).
TRAJECTORY_DATASETS = {"seed": "u", "index": "i", "wall_time": "f", "steps": "i", "batch_size": "i"}
# Keys every ``level_definition`` JSON object carries.
LEVEL_DEFINITION_KEYS = ("name", "ranges", "log_uniform", "description")


def file_path(root: str | Path, split: str, level: str) -> Path:
    """Where the file for ``split`` and ``level`` lives inside a dataset directory."""
    return Path(root) / split / f"{level}.h5"


# Per-trajectory CRC-32 of each field's float32 bytes, in ``trajectories/checksum_<field>`` (uint32).
CHECKSUM_PREFIX = "checksum_"


def checksum_name(field: str) -> str:
    """The ``trajectories/`` dataset holding the per-trajectory checksums of ``field``."""
    return CHECKSUM_PREFIX + field
