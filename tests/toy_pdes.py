"""Small PDEs with closed-form solutions that exercise the generic dataset code in milliseconds."""
from __future__ import annotations

import numpy as np

from pde_lab.grids import CartesianGrid
from pde_lab.pdes import PDES
from pde_lab.pdes.base import PDE, BoundaryCondition, FieldSpec, Instance, Level, Parameter, SolveResult


class Decay(PDE):
    """u_t = -k u on a periodic interval; u = u0 exp(-k t)."""

    name = "toy_decay"
    description = "exponential decay"
    equation = "u_t = -k u"
    parameters = (Parameter("k", 1.0, "1/s", "decay rate"),)
    fields = (FieldSpec("u", "solution", time_varying=True),)
    boundary_conditions = (BoundaryCondition("x_periodic", "periodic", ("x",), ("u",)),)
    levels = {"easy": Level("easy", {"k": (0.5, 1.0)}), "hard": Level("hard", {"k": (2.0, 4.0)}, frozenset({"k"}))}
    solver = "closed form"
    default_resolution = 16

    def grid(self, resolution):
        return CartesianGrid(((0.0, 1.0),), (resolution,), (True,))

    def sample(self, level, rng, grid):
        params = self.draw_params(level, rng)
        return Instance(params, {"u": np.sin(2 * np.pi * grid.axis(0) + rng.uniform(0, 2 * np.pi))})

    def solve(self, instances, grid, device="cpu"):
        t = np.linspace(0.0, 1.0, 5)
        k = np.array([i.params["k"] for i in instances])
        u0 = np.stack([i.inputs["u"] for i in instances])
        u = u0[:, None, :] * np.exp(-k[:, None, None] * t[None, :, None])
        return SolveResult({"u": u}, t, np.full(len(instances), 4), {"scheme": "exact"}, {"dt": np.full(len(instances), 0.25)})

    def dimensionless(self, params, inputs):
        return {"decay_number": params["k"] * 1.0}

    def residual(self, solution, params, grid, times=None):
        u = solution["u"]
        return np.gradient(u, times, axis=1) + np.asarray(params["k"])[:, None, None] * u


class Scale(PDE):
    """Steady 2D toy: u = c · a, with a coefficient field a as input."""

    name = "toy_scale"
    description = "pointwise scaling"
    equation = "u = c a"
    parameters = (Parameter("c", 2.0),)
    fields = (FieldSpec("a", "input", time_varying=False), FieldSpec("u", "solution", time_varying=False),
              FieldSpec("v", "solution", time_varying=False, rank=1))
    boundary_conditions = (BoundaryCondition("xy_wall", "dirichlet", ("x", "y"), ("u",)),)
    levels = {"easy": Level("easy", {"c": (1.0, 2.0)})}
    solver = "closed form"
    default_resolution = 8

    def grid(self, resolution):
        return CartesianGrid(((0.0, 1.0), (0.0, 2.0)), (resolution, resolution), (False, False))

    def sample(self, level, rng, grid):
        return Instance(self.draw_params(level, rng), {"a": rng.uniform(1, 2, grid.shape)})

    def solve(self, instances, grid, device="cpu"):
        a = np.stack([i.inputs["a"] for i in instances])
        c = np.array([i.params["c"] for i in instances])[:, None, None]
        v = np.stack([c * a, -c * a], axis=-1)
        return SolveResult({"a": a, "u": c * a, "v": v}, None, np.ones(len(instances), dtype=int), {"scheme": "exact"})

    def residual(self, solution, params, grid, times=None):
        return solution["u"] - np.asarray(params["c"])[:, None, None] * solution["a"]


for cls in (Decay, Scale):
    if cls.name not in PDES:
        PDES.register(cls.name)(cls)
