"""The HDF5 dataset format (v1): generation, validation, readers and summaries."""
from .generate import GenerateConfig, generate, sample_seed
from .info import format_summary, summarize
from .reader import FieldDataset, list_files, open_split
from .validate import validate_file, validate_path
from .xarray_io import open_dataset

__all__ = ["GenerateConfig", "generate", "sample_seed", "summarize", "format_summary", "FieldDataset",
           "list_files", "open_split", "validate_file", "validate_path", "open_dataset"]
