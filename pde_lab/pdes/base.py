"""The PDE specification: everything about one PDE family, declared once.

A PDE family is a subclass of :class:`PDE`. It declares its parameters, fields, boundary conditions
and difficulty levels as class attributes, and implements four methods:

* :meth:`PDE.grid` — the grid for a resolution;
* :meth:`PDE.sample` — one random instance (parameters and input fields) from a seeded generator;
* :meth:`PDE.solve` — the classical solver, batched over instances;
* :meth:`PDE.residual` — the discrete residual of the equation on a solution, used by physics
  metrics, PINN losses and constraint layers.

Generic code (dataset generation, readers, training, evaluation) only talks to this interface, so a
new PDE is a new module plus a registry entry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

import numpy as np

from ..errors import UserError, check_integer
from ..grids import CartesianGrid

if TYPE_CHECKING:
    import torch


def check_resolution(family: str, resolution: Any, minimum: int = 4, *, even: bool = False) -> int:
    """``resolution`` (points or cells per axis) as an ``int``, for :meth:`PDE.grid`.

    Raises:
        UserError: naming ``family``, the value and what is allowed, when ``resolution`` is not a whole
            number ``>= minimum`` (and even, if ``even``); ``32.0`` is accepted, ``32.5`` is not.
    """
    return check_integer(f"{family} resolution", resolution, minimum, even=even)


@dataclass(frozen=True)
class Parameter:
    """A physical parameter with its default, units and meaning."""

    name: str
    default: float
    units: str = "1"
    description: str = ""


@dataclass(frozen=True)
class FieldSpec:
    """A field stored for every sample.

    Attributes:
        name: dataset name, e.g. ``"u"``.
        role: ``"input"`` for data given to the solver that a model sees as input (a coefficient, a
            mask); ``"solution"`` for what the solver computes.
        time_varying: stored as ``(trajectory, time, *space)`` when true, ``(trajectory, *space)``
            when false.
        rank: 0 for a scalar field (stored under ``t0_fields/``), 1 for a vector field
            (``t1_fields/``, trailing component axis).
    """

    name: str
    role: Literal["input", "solution"]
    time_varying: bool
    rank: int = 0
    units: str = "1"
    description: str = ""


@dataclass(frozen=True)
class BoundaryCondition:
    """A boundary condition as stored in ``boundary_conditions/``.

    Attributes:
        name: group name, e.g. ``"x_periodic"``.
        kind: ``"periodic"``, ``"dirichlet"``, ``"neumann"`` or ``"open"``.
        axes: the axes whose boundaries it applies to.
        fields: the fields it constrains.
        value: the prescribed value for Dirichlet/Neumann conditions.
    """

    name: str
    kind: Literal["periodic", "dirichlet", "neumann", "open"]
    axes: tuple[str, ...]
    fields: tuple[str, ...]
    value: float = 0.0


@dataclass(frozen=True)
class Level:
    """A named difficulty level: a range for each randomised parameter.

    Parameters absent from ``ranges`` keep their defaults. A range ``(a, a)`` fixes the value. Names
    in ``log_uniform`` are drawn uniformly in ``log`` (viscosities, contrasts), the others uniformly.
    """

    name: str
    ranges: Mapping[str, tuple[float, float]]
    log_uniform: frozenset[str] = frozenset()
    description: str = ""

    def draw(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw one value per ranged parameter, in sorted name order (for reproducibility)."""
        out = {}
        for name in sorted(self.ranges):
            lo, hi = self.ranges[name]
            if lo == hi:
                out[name] = float(lo)
            elif name in self.log_uniform:
                out[name] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            else:
                out[name] = float(rng.uniform(lo, hi))
        return out


@dataclass
class Instance:
    """One random problem: parameter values and the input fields the solver starts from.

    ``inputs`` maps names to arrays of shape ``grid.shape`` (``(*space)``), e.g. an initial state or a
    coefficient field.
    """

    params: dict[str, float]
    inputs: dict[str, np.ndarray]

    def field(self, name: str, shape: tuple[int, ...], index: int = 0) -> np.ndarray:
        """Input field ``name`` as float64 of ``shape``; :class:`UserError` naming instance ``index``
        when it is missing, has another shape or is not finite."""
        if name not in self.inputs:
            raise UserError(f"instance {index}: missing input field {name!r} (has {sorted(self.inputs)})")
        a = np.asarray(self.inputs[name], dtype=np.float64)
        if a.shape != tuple(shape):
            raise UserError(f"instance {index}: field {name!r} has shape {a.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            raise UserError(f"instance {index}: field {name!r} is not finite (params {self.params})")
        return a


@dataclass
class SolveResult:
    """The output of a batched solve of ``B`` instances.

    Attributes:
        fields: every field of the PDE's ``fields``, as ``(B, T, *space)`` float arrays for
            time-varying fields and ``(B, *space)`` for static ones (vector fields add a trailing axis).
        times: ``(T,)`` output times, or ``None`` for a steady problem.
        steps: ``(B,)`` solver steps (time steps or iterations) taken per instance.
        settings: solver settings shared by the batch (scheme, tolerances), JSON-serialisable.
        per_sample: numeric settings that differ between instances (time step, solver resolution),
            name → ``(B,)`` array; stored per trajectory.
    """

    fields: dict[str, np.ndarray]
    times: np.ndarray | None
    steps: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """What a model learns from a dataset of this PDE.

    ``mode="one_shot"``: input = input fields + solution fields at the first ``input_steps`` stored
    times; target = solution fields at the last stored time (steady problems: the solution itself).
    ``mode="window"``: sliding windows of ``input_steps`` → ``output_steps`` consecutive frames.
    ``mode="time"`` (time-conditioned): input = the first ``input_steps`` frames plus a constant
    ``lead_time`` channel; target = the frame that lead time after the last input frame, one item
    per later stored frame (``output_steps = 1``).
    """

    mode: Literal["one_shot", "window", "time"] = "one_shot"
    input_steps: int = 1
    output_steps: int = 1


class PDE(ABC):
    """Base class of a PDE family; see the module docstring for what a subclass declares."""

    name: ClassVar[str]
    description: ClassVar[str]
    equation: ClassVar[str]
    parameters: ClassVar[tuple[Parameter, ...]]
    fields: ClassVar[tuple[FieldSpec, ...]]
    boundary_conditions: ClassVar[tuple[BoundaryCondition, ...]]
    levels: ClassVar[dict[str, Level]]
    solver: ClassVar[str]
    default_resolution: ClassVar[int]
    default_task: ClassVar[Task] = Task()

    # ---- declared data, derived helpers -------------------------------------------------------
    @property
    def time_dependent(self) -> bool:
        """Whether any field varies in time (stored ``(trajectory, time, *space)``)."""
        return any(f.time_varying for f in self.fields)

    def level(self, name: str) -> Level:
        """The level called ``name``; ``UserError`` listing the levels otherwise."""
        if name not in self.levels:  # listed in declared order (easy to hard), not alphabetically
            raise UserError(f"unknown level {name!r} of PDE {self.name!r}; allowed: {', '.join(self.levels)}")
        return self.levels[name]

    def default_params(self) -> dict[str, float]:
        """Every declared parameter's default, name → float."""
        return {p.name: float(p.default) for p in self.parameters}

    def with_params(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """The defaults with ``overrides`` applied; a name that is not a parameter of this family is a
        :class:`UserError` (a misspelt ``kapa`` would otherwise leave the default in force silently)."""
        params = self.default_params()
        unknown = sorted(set(overrides or {}) - set(params))
        if unknown:
            raise UserError(f"PDE {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                            f"allowed: {', '.join(sorted(params))}")
        params.update(overrides or {})
        return params

    def param(self, params: Mapping[str, Any] | None, name: str) -> float:
        """Parameter ``name`` from ``params`` (a possibly partial mapping, or ``None``), else its
        default, as a float: how the pointwise (PINN, TENG) methods read scalar parameters."""
        return float((params or {}).get(name, self.default_params()[name]))

    def draw_params(self, level: str, rng: np.random.Generator) -> dict[str, float]:
        """Defaults overridden by a draw from ``level``'s ranges."""
        params = self.default_params()
        params.update(self.level(level).draw(rng))
        return params

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Dimensionless numbers (Reynolds, contrast, ...) of an instance, stored with every sample."""
        return {}

    def level_grid(self, level: str, resolution: int) -> CartesianGrid:
        """The grid the samples of ``level`` live on; :meth:`grid` unless the geometry depends on the
        level (unstructured meshes: a disk for ``easy``, a plate with holes for ``hard``)."""
        self.level(level)
        return self.grid(resolution)

    # ---- what each PDE implements ------------------------------------------------------------
    @abstractmethod
    def grid(self, resolution: int) -> CartesianGrid:
        """The grid with ``resolution`` points per axis."""

    @abstractmethod
    def sample(self, level: str, rng: np.random.Generator, grid: CartesianGrid) -> Instance:
        """Draw one instance of difficulty ``level`` using only ``rng``; its ``inputs`` are
        ``grid.shape`` (``(*space)``) arrays."""

    @abstractmethod
    def solve(self, instances: Sequence[Instance], grid: CartesianGrid, device: str = "cpu") -> SolveResult:
        """Solve a batch of ``B = len(instances)`` instances with this PDE's classical solver.

        Returns:
            ``SolveResult`` with every field as ``(B, T, *space)`` (time-varying) or ``(B, *space)``
            (static), dataset layout (vector fields add a trailing component axis).
        """

    @abstractmethod
    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: CartesianGrid,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray | torch.Tensor:
        """Discrete residual of the equation evaluated on a solution.

        ``solution`` holds every field of one or more samples in the dataset layout (leading batch
        axis); returns an array whose norm measures how far the fields are from solving the PDE.

        Args:
            solution: field name → ``(B, T, *space)`` (time-varying) or ``(B, *space)`` (static) array,
                dataset layout (vector fields add a trailing component axis); numpy, or torch where the
                family says so (the result is then a differentiable tensor).
            params: each parameter a scalar or ``(B,)``.
            grid: the grid (or mesh) of the fields.
            times: ``(T,)`` stored times of a time-dependent family; ``None`` lets the family derive them
                from ``params`` (or refuse); unused by steady families.

        Returns:
            The family's residual array with leading ``B`` axis (e.g. ``(B, T − 2, *space)`` for a
            three-point time difference, ``(B, *space)`` for a steady problem); each family documents its
            shape.
        """
