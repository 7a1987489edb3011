"""PDE families, one module each, found by name through :data:`PDES`."""
import inspect
from typing import Any

from ..errors import UserError
from ..registry import Registry
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task

PDES: Registry = Registry("PDE")


def get_pde(name: str, **options: Any) -> PDE:
    """An instance of the PDE family registered as ``name``.

    Args:
        name: registered family name (``pde-lab list``).
        **options: keyword arguments of the family's constructor, i.e. its solver settings (e.g.
            ``solver_factor=2`` for ``navier_stokes_2d``); an unknown name raises ``UserError``
            listing the allowed ones.
    """
    cls = PDES.get(name)
    allowed = [p.name for p in inspect.signature(cls).parameters.values()
               if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(f"{name} has no solver option(s) {unknown}; allowed: {allowed or 'none'}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise UserError(f"bad solver option for {name} ({options}): {err}") from None


# Importing the modules registers them.
from . import (advection, allen_cahn, burgers, burgers_2d, cavity, darcy, diffusion_sorption,  # noqa: E402,F401
               fisher_kpp, flow_obstacles, gray_scott, heat, helmholtz, kuramoto_sivashinsky, navier_stokes_2d, poisson)
from . import heat_fem, poisson_fem  # noqa: E402,F401  (unstructured meshes, scikit-fem)

__all__ = ["PDE", "PDES", "get_pde", "BoundaryCondition", "FieldSpec", "Instance", "Level",
           "Parameter", "SolveResult", "Task"]
