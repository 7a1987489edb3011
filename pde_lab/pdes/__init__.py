"""PDE families, one module each, found by name through :data:`PDES`."""
from ..registry import Registry
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task

PDES: Registry = Registry("PDE")


def get_pde(name: str) -> PDE:
    """An instance of the PDE family registered as ``name``."""
    return PDES.get(name)()


# Importing the modules registers them.
from . import (advection, allen_cahn, burgers, burgers_2d, cavity, darcy, diffusion_sorption,  # noqa: E402,F401
               fisher_kpp, flow_obstacles, gray_scott, heat, helmholtz, kuramoto_sivashinsky, navier_stokes_2d, poisson)
from . import heat_fem, poisson_fem  # noqa: E402,F401  (unstructured meshes, scikit-fem)

__all__ = ["PDE", "PDES", "get_pde", "BoundaryCondition", "FieldSpec", "Instance", "Level",
           "Parameter", "SolveResult", "Task"]
