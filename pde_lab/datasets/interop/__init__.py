"""Read and write other projects' PDE data layouts.

* :mod:`.the_well`: The Well (PolymathicAI) HDF5 files, both directions.
* :mod:`.pdebench`: PDEBench HDF5 files (1D ``tensor`` files such as advection and Burgers, 2D Darcy
  flow, and per-sample group files such as diffusion–sorption), read only.

Each importer writes a pde_lab file (docs/data_format.md) that validates, one trajectory at a time,
so converting a file larger than memory works. See docs/interop.md.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import check_choice

IMPORT_FORMATS = ("the_well", "pdebench")


def import_file(fmt: str, src: str | Path, out: str | Path, **kwargs) -> Path:
    """Convert ``src`` in format ``fmt`` (``the_well`` or ``pdebench``) into the pde_lab file ``out``;
    ``kwargs`` go to the format's importer (all take ``level``, ``split``, ``progress`` and
    ``overwrite``, default ``False``: an existing ``out`` is refused)."""
    check_choice("import format", fmt, IMPORT_FORMATS)
    if fmt == "the_well":
        from .the_well import import_well

        return import_well(src, out, **kwargs)
    if fmt == "pdebench":
        from .pdebench import import_pdebench

        return import_pdebench(src, out, **kwargs)
    raise AssertionError(f"import format {fmt!r} has no importer")  # unreachable: checked above


__all__ = ["IMPORT_FORMATS", "import_file"]
