"""What the incompressible-flow families solved by the MAC projection solver share.

The lid-driven cavity and the channel flow past obstacles differ in domain, boundary conditions and
inputs; how their samples are stepped, checked and recorded is the same and lives here.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UserError, check_integer, check_positive
from ..grids import CartesianGrid
from ..solvers import projection as proj
from .base import PDE, Instance

PER_SAMPLE = ("dt_min", "dt_max", "max_courant", "max_divergence", "factor_time")


class ProjectionFlowPDE(PDE):
    """Base of PDE families whose ground truth comes from :class:`~pde_lab.solvers.projection.ProjectionSolver`.

    Args:
        n_snapshots: stored frames including ``t = 0``.
        cfl, diffusion_number, pe_max, max_courant: solver options (see the solver).
    """

    def __init__(self, n_snapshots: int = 21, cfl: float = 0.5, diffusion_number: float = 0.8,
                 pe_max: float = 10.0, max_courant: float = 1.5):
        self.n_snapshots = check_integer("n_snapshots", n_snapshots, 2)
        proj.check_step_options(cfl=cfl, diffusion_number=diffusion_number, pe_max=pe_max, max_courant=max_courant)
        self.solver_options = {"cfl": float(cfl), "diffusion_number": float(diffusion_number),
                               "pe_max": float(pe_max), "max_courant": float(max_courant)}

    def snapshot_times(self, instances: Sequence[Instance]) -> np.ndarray:
        """``(n_snapshots,)`` output times in ``[0, t_final]``; instances of one solve share ``t_final``."""
        if len(instances) == 0:
            raise ValueError(f"{self.name}.solve needs at least one instance")
        default = self.default_params()["t_final"]
        t_finals = {float(inst.params.get("t_final", default)) for inst in instances}
        if len(t_finals) != 1:
            raise UserError(f"instances solved together need one t_final, got {sorted(t_finals)}")
        t_final = t_finals.pop()
        check_positive("t_final", t_final)
        return np.linspace(0.0, t_final, self.n_snapshots)

    def run_samples(self, instances: Sequence[Instance], grid: CartesianGrid, times: np.ndarray,
                    make_solver: Callable[[dict[str, float], Instance], proj.ProjectionSolver]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
        """Run each instance from rest through ``times``, one solver (and factorisation) per geometry.

        Args:
            instances: the ``B`` instances.
            grid: the stored grid (``*space`` = ``grid.shape``).
            times: ``(T,)`` output times, from :meth:`snapshot_times`.
            make_solver: ``(parameters with defaults filled in, instance) → ProjectionSolver``.

        Returns:
            ``velocity`` ``(B, T, *space, 2)``, ``pressure`` ``(B, T, *space)``, ``steps`` ``(B,)``,
            per-sample diagnostics (name → ``(B,)``) and the solver's settings.

        Raises:
            FlowBlowUpError: a sample blew up; the message names its parameters.
        """
        B, n = len(instances), tuple(grid.shape)
        velocity = np.zeros((B, times.size, *n, 2))
        pressure = np.zeros((B, times.size, *n))
        steps = np.zeros(B, dtype=np.int64)
        per: dict[str, Any] = {k: np.zeros(B) for k in PER_SAMPLE}
        settings: dict[str, Any] = {}
        defaults = self.default_params()
        for b, inst in enumerate(instances):
            solver = make_solver({**defaults, **inst.params}, inst)
            solver.set_state()
            try:
                res = solver.run(times)
            except proj.FlowBlowUpError as err:
                raise proj.FlowBlowUpError(f"{self.name} sample with parameters {inst.params} blew up: {err}") from err
            velocity[b] = np.stack([res.u, res.v], axis=-1)
            pressure[b] = res.p
            steps[b] = res.steps
            per["dt_min"][b], per["dt_max"][b] = res.dt_min, res.dt_max
            per["max_courant"][b], per["max_divergence"][b] = res.max_courant, res.max_divergence
            per["factor_time"][b] = solver.factor_time
            settings = solver.settings()
        return velocity, pressure, steps, per, settings
