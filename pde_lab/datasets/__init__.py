"""The HDF5 dataset format (v1): generation, validation, readers and summaries."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .generate import GenerateConfig, generate, sample_seed
from .info import format_summary, summarize
from .merge import merge_shards
from .reader import FieldDataset, list_files, open_split
from .validate import validate_file, validate_path

if TYPE_CHECKING:
    import xarray


def open_dataset(path: str | Path, split: str | None = None) -> "xarray.Dataset":
    """Open a file, or a split of a dataset directory (default ``train``), as an ``xarray.Dataset``
    (see :mod:`.xarray_io`); a file named with a ``split`` must hold that split.

    Each field is a variable with dims ``(trajectory, [time,] *spatial_dims[, component0[, component1]])``.
    """
    from .xarray_io import open_dataset as _open  # xarray is slow to import; load it only when asked

    return _open(path, split)


__all__ = ["GenerateConfig", "generate", "sample_seed", "summarize", "format_summary", "FieldDataset",
           "list_files", "open_split", "validate_file", "validate_path", "open_dataset", "merge_shards"]
