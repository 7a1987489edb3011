"""pde_lab: classical PDE solvers, multi-difficulty HDF5 datasets, neural operators and their evaluation."""
__version__ = "0.1.0"
