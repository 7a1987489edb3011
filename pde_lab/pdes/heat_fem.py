"""Heat equation ``u_t = ∇·(a∇u)`` on unstructured triangle meshes (``heat_fem``): P1 finite elements
in space, Crank–Nicolson with a Rannacher start in time.

Same geometries and contrast axis as :mod:`pde_lab.pdes.poisson_fem` (one mesh per level, see there
why), ``u = 0`` on the outer boundary and insulated holes. A sample is a random coefficient and a
random smooth initial state (zero on the outer boundary). The matrix ``M + (Δt/2) K`` is factorised
once per distinct coefficient and reused for every step, and across samples when they share the
coefficient (the ``easy`` level, contrast 1). See ``docs/pdes/heat_fem.md``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import UserError, check_positive
from ..meshes import TriangleMesh
from ..solvers import fem
from . import PDES
from .base import BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult, Task
from .poisson_fem import _COEF_PARAMS, MeshPDE, coefficient_field, node_random_field

__all__ = ["HeatFEM"]


@PDES.register("heat_fem")
class HeatFEM(MeshPDE):
    """``u_t = ∇·(a∇u)`` on a disk, an L-shape or a plate with holes; ``u = 0`` on the outer boundary,
    insulated holes. Input ``a`` ``(trajectory, n_nodes)``, solution ``u`` ``(trajectory, time, n_nodes)``
    with frame 0 the initial state."""

    name = "heat_fem"
    description = "Heat equation on unstructured meshes (disk, L-shape, plates with holes), P1 FEM + Crank-Nicolson"
    equation = "u_t = div(a grad u) in Omega, u = 0 on the outer boundary, a du/dn = 0 on holes"
    parameters = (
        Parameter("a_min", 0.02, "L^2/T", "smallest diffusivity"),
        *_COEF_PARAMS,
        Parameter("t_final", 1.0, "T", "final time; n_snapshots equally spaced frames in [0, t_final]"),
        Parameter("ic_length", 0.2, "L", "correlation length of the initial state"),
    )
    fields = (
        FieldSpec("a", "input", time_varying=False, units="L^2/T", description="diffusivity on the nodes"),
        FieldSpec("u", "solution", time_varying=True, description="temperature at the nodes; frame 0 is the initial state"),
    )
    boundary_conditions = (
        BoundaryCondition("outer_dirichlet", "dirichlet", ("outer",), ("u",), 0.0),
        BoundaryCondition("hole_neumann", "neumann", ("hole",), ("u",), 0.0),
    )
    levels = {
        "easy": Level("easy", {"contrast": (1.0, 1.0)},
                      description="unit disk, a = a_min everywhere (contrast 1); random initial state"),
        "lshape": Level("lshape", {"contrast": (10.0, 10.0), "corr_length": (0.2, 0.4)},
                        description="L-shape, lognormal a with contrast 10"),
        "medium": Level("medium", {"contrast": (10.0, 10.0), "corr_length": (0.15, 0.3)},
                        description="2 x 1 plate with one insulated hole, lognormal a with contrast 10"),
        "hard": Level("hard", {"contrast": (1000.0, 1000.0), "two_phase": (1.0, 1.0), "corr_length": (0.1, 0.2)},
                      description="2 x 1 plate with four insulated holes, two-phase a with contrast 1000"),
    }
    solver = "P1 finite elements (scikit-fem), Crank-Nicolson with Rannacher start, factorised once (SuperLU)"
    default_task = Task("one_shot", 1, 1)
    n_snapshots = 11
    steps_per_interval = 4

    def output_times(self, params: Mapping[str, float]) -> np.ndarray:
        """``(n_snapshots,)`` stored times, equally spaced in ``[0, t_final]``."""
        return np.linspace(0.0, float(params["t_final"]), self.n_snapshots)

    def sample(self, level: str, rng: np.random.Generator, grid: TriangleMesh) -> Instance:
        """Parameters from ``level``, then the coefficient and the initial state from ``rng``; the
        initial state is zero on the Dirichlet boundary and has unit RMS.

        Returns:
            ``Instance(params, inputs={"a": (N,), "u": (N,)})`` float64 nodal values.
        """
        params = self.draw_params(level, rng)
        x = grid.nodes
        a = coefficient_field(node_random_field(rng, x, params["corr_length"]), params["contrast"],
                              params["a_min"], params["two_phase"] >= 0.5)
        u0 = node_random_field(rng, x, params["ic_length"])
        for tag in self.dirichlet(grid):
            u0[grid.boundary_nodes(tag)] = 0.0
        return Instance(params=params, inputs={"a": a, "u": u0})

    def dimensionless(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Realised ``contrast``; Fourier numbers ``Fo_min = a_min t_final / L²`` and
        ``Fo_max = max(a) t_final / L²`` (``L = 1``): how far the slowest and fastest regions relax."""
        a = np.asarray(inputs["a"], dtype=np.float64)
        return {"contrast": float(a.max() / a.min()), "Fo_min": float(a.min() * params["t_final"]),
                "Fo_max": float(a.max() * params["t_final"])}

    def solve(self, instances: Sequence[Instance], grid: TriangleMesh, device: str = "cpu") -> SolveResult:
        """Crank–Nicolson with ``steps_per_interval`` steps per stored interval, one factorisation per
        distinct coefficient (on the CPU whatever ``device`` says).

        Returns:
            ``SolveResult`` with ``a`` ``(B, N)`` and ``u`` ``(B, T, N)`` float64 (frame 0 the given
            initial state with its Dirichlet nodes set to 0, as the boundary condition holds), ``times`` ``(T,)``, ``steps`` ``(B,)``, per sample ``dt`` and ``factorized``.
        """
        space = self.space(grid)
        inp = self._inputs(instances, grid, ("a", "u"))
        first = float(instances[0].params.get("t_final", self.default_params()["t_final"]))
        for i, inst in enumerate(instances):
            if float(inst.params.get("t_final", first)) != first:
                raise UserError(f"instances of one solve must share t_final: instance {i} has "
                                f"{inst.params['t_final']!r}, instance 0 has {first!r}")
        check_positive("t_final", first)
        times = self.output_times({"t_final": first})
        tags = self.dirichlet(grid)
        B = len(instances)
        u = np.empty((B, times.size, grid.n_nodes))
        steps = np.zeros(B, dtype=np.int64)
        factorized = np.zeros(B)
        for i in range(B):
            before = self.cache.n_factorizations
            u[i], steps[i] = fem.solve_heat(space, inp["u"][i], times, a=inp["a"][i], dirichlet_tags=tags,
                                            steps_per_interval=self.steps_per_interval, cache=self.cache)
            factorized[i] = self.cache.n_factorizations - before
        dt = (times[1] - times[0]) / self.steps_per_interval
        settings = {"scheme": fem.SCHEME, "time_stepping": "Crank-Nicolson, first step as two backward-Euler "
                    "half steps (Rannacher); matrix M + dt/2 K factorised once", **self.mesh_settings(grid),
                    "steps_per_interval": self.steps_per_interval, "solve_device": "cpu",
                    "requested_device": str(device)}
        return SolveResult(fields={"a": inp["a"], "u": u}, times=times, steps=steps, settings=settings,
                           per_sample={"dt": np.full(B, dt), "factorized": factorized})

    def residual(self, solution: Mapping[str, Any], params: Mapping[str, Any], grid: TriangleMesh,
                 times: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
        """Crank–Nicolson residual between consecutive stored frames,
        ``M (u_{k+1} − u_k)/Δt + K (u_{k+1} + u_k)/2``, at every node (zero at Dirichlet nodes).

        It is ``O(Δt_out²)`` on a solver output (the solver takes several steps per stored interval)
        and zero to round-off when the solver takes one step per interval after the start.

        Args:
            solution: ``{"a": (B, N), "u": (B, T, N)}``.
            params: ``t_final`` (scalar or ``(B,)``) when ``times`` is omitted.
            grid: the mesh.
            times: ``(T,)`` stored times; default :meth:`output_times` of ``t_final``.

        Returns:
            ``(B, T − 1, N)`` float64.
        """
        space = self.space(grid)
        a = np.atleast_2d(np.asarray(solution["a"], dtype=np.float64))
        u = np.asarray(solution["u"], dtype=np.float64)
        if u.ndim == 2:
            u = u[None]
        if times is None:
            tf = float(np.asarray(params.get("t_final", self.default_params()["t_final"])).reshape(-1)[0])
            times = self.output_times({"t_final": tf})
        t = np.asarray(times, dtype=np.float64)
        if t.size != u.shape[1]:
            raise UserError(f"heat_fem residual: {t.size} times for {u.shape[1]} frames")
        M = space.mass()
        D = space.boundary_dofs(self.dirichlet(grid))
        dt = np.diff(t)
        out = np.empty((u.shape[0], t.size - 1, u.shape[2]))
        for i in range(u.shape[0]):
            K = space.stiffness(a[i])
            du = (u[i, 1:] - u[i, :-1]) / dt[:, None]
            mid = 0.5 * (u[i, 1:] + u[i, :-1])
            r = (M @ du.T + K @ mid.T).T
            r[:, D] = 0.0
            out[i] = r
        return out
