"""PDE families, one module each, found by name through :data:`PDES`."""
import inspect
from typing import Any

from ..errors import UserError
from ..registry import Registry
from .base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task

PDES: Registry = Registry("PDE")


def constructor_options(cls: type) -> list[str]:
    """Names of the keyword arguments ``cls(...)`` accepts: its ``__init__``'s named parameters and, where
    that ``__init__`` forwards ``**kwargs`` to a base class (the periodic semilinear families pass
    ``spectral_tol``, ``min_steps_per_interval``, ... on to :class:`PeriodicSemilinearPDE`), the base's,
    following the method resolution order until a constructor without ``**kwargs``."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name != "self" and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def get_pde(name: str, **options: Any) -> PDE:
    """An instance of the PDE family registered as ``name``.

    Args:
        name: registered family name (``pde-lab list``).
        **options: keyword arguments of the family's constructor, i.e. its solver settings (e.g.
            ``solver_factor=2`` for ``navier_stokes_2d``); an unknown name raises ``UserError``
            listing the allowed ones.
    """
    cls = PDES.get(name)
    allowed = constructor_options(cls)
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
