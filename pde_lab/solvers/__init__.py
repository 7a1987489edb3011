"""PDE-agnostic numerical building blocks: spectral time stepping, finite volumes, sparse solves."""
