"""Physics-informed training: ``train_pinn(PINNConfig(...))`` fits a network to a PDE's pointwise residual.

The loss is ``L(θ) = ½ ‖r(θ)‖²`` with ``r`` the interior residuals ``pde.pointwise_residual`` divided
by ``sqrt(N_int)`` stacked on the boundary residuals ``pde.boundary_residual`` divided by
``sqrt(N_bd)``, i.e. half the mean square interior residual plus half the mean square boundary
residual (see :mod:`pde_lab.optim.residual`). Nothing here knows which PDE it trains: any PDE module
with the pointwise-residual interface (``docs/pinns.md``) works.

Collocation points fill the box ``pde.pinn_domain(params)``: ``grid`` (cell centres of a uniform
grid, ``round(n_interior^(1/d))`` per axis; boundary: a grid of each face's cell centres, the
paper's set-up), ``uniform`` (i.i.d. uniform) or ``sobol`` (scrambled Sobol, ``scipy.stats.qmc``);
boundary points are spread evenly over the faces ``pde.pinn_boundary_faces(params)`` (all faces when
a PDE does not define it). They are drawn once, from ``seed``.

Optimizers: first order ``adam``, ``soap``, ``shampoo`` (:mod:`pde_lab.optim.first_order`),
``multiadam`` (per-term moments) and ``config`` (ConFIG's conflict-free direction, then Adam); ``lbfgs``
(strong-Wolfe, :mod:`pde_lab.optim.lbfgs`); ``adam+lbfgs`` (``adam_steps`` of Adam, then ``steps``
of L-BFGS); ``engd`` (energy natural gradient with grid line search); ``spring`` (ENGD with SPRING
momentum); ``gauss_newton``; ``lm`` (Levenberg–Marquardt); ``kfac`` (Kronecker-factored Gauss–Newton
for MLPs whose residual uses the forward Laplacian, :mod:`pde_lab.optim.kfac`). ``optimizer_args`` go to the optimizer's
constructor. ``multiadam`` and ``config`` see the loss as its terms (interior, boundary), each
``½ mean r²`` of its block. :func:`build_optimizers` constructs them all before anything runs, and
``train_pinn`` calls it before the run directory is touched, so bad ``optimizer_args`` fail early: a key
the constructor does not take is named with the ones it does (read from its signature), a bad value
with the constructor's own check.

Run directory::

    config.yaml     the resolved config (model arguments filled in; metrics.json has the point counts used)
    log.csv         step, phase, loss, rel_l2, seconds, step_size (every ``eval_every`` steps)
    model.pt        the trained network (``pde_lab.operators.load_model`` rebuilds it)
    metrics.json    final loss and relative L2 error, steps, optimisation time (wall and process
                    CPU seconds), stop reason; written last
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import qmc

from ..errors import UserError, check_choice, did_you_mean
from ..operators.base import Operator, build_model, model_parameters, models_taking, save_model
from ..optim import ENGD, KFAC, LBFGS, SPRING, ConFIG, GaussNewton, LevenbergMarquardt, MultiAdam, PointwiseResidual, model_terms
from ..optim.first_order import build_first_order
from .checkpoint import write_log
from .config import _DEVICE, YamlConfig, _coerce, _parse_scalar, _positive, check_model_args, resolve_device

FIRST_ORDER_PINN = ("adam", "soap", "shampoo", "multiadam", "config")
SECOND_ORDER_PINN = {"engd": ENGD, "spring": SPRING, "gauss_newton": GaussNewton, "lm": LevenbergMarquardt, "kfac": KFAC}
PINN_OPTIMIZERS = (*FIRST_ORDER_PINN, "lbfgs", "adam+lbfgs", *SECOND_ORDER_PINN)
SAMPLERS = ("grid", "uniform", "sobol")
LOG_COLUMNS = ("step", "phase", "loss", "rel_l2", "seconds", "step_size")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class PINNConfig(YamlConfig):
    """Everything a PINN run depends on; the run directory stores it resolved as ``config.yaml``.

    Problem:
        pde: registered PDE with the pointwise-residual interface (``poisson``).
        pde_args: constructor arguments of the PDE, e.g. ``{dim: 5}``.
        params: PDE parameters overriding its defaults, e.g. ``{wave_number: 2}``.
    Model:
        model: registered model name (``pinn_mlp``); model_args: its constructor arguments
            (``in_dim``, ``out_dim`` and ``dtype`` are filled in from the PDE and ``dtype``).
    Points:
        n_interior, n_boundary: collocation points (``grid`` rounds to a full grid).
        resample_every: residual-adaptive collocation (RAD, Wu et al. 2023): every this many
            steps the interior points are drawn anew from ``10 · n_interior`` uniform candidates with
            probability ∝ ``|r|/mean|r| + 1`` (:func:`resample_interior`); 0 = fixed points.
        hard_bc: impose the Dirichlet data exactly, ``u = g + d·N`` with ``d`` vanishing on the
            faces that carry conditions (:class:`HardBoundary`); the boundary points and loss term
            are dropped. Needs a single-field PDE whose ``boundary_value(x, params)`` extends the data
            smoothly into the domain.
        sampler: ``grid``, ``uniform`` or ``sobol``.
    Optimisation:
        optimizer: one of ``adam``, ``soap``, ``shampoo``, ``multiadam``, ``config``, ``lbfgs``,
            ``adam+lbfgs``, ``engd``, ``spring``, ``gauss_newton``, ``lm``, ``kfac``.
        optimizer_args: constructor arguments of the optimizer (e.g. ``{solver: lstsq,
            adaptive_damping: true}`` for ENGD, ``{history_size: 50}`` for L-BFGS, ``{betas: [0.9,
            0.999]}`` for Adam; for ``adam+lbfgs`` they go to L-BFGS).
        lr: the first-order optimizers' learning rate; lr_decay: it is multiplied by this every 1000 steps.
        steps: iterations of the optimizer (of L-BFGS for ``adam+lbfgs``).
        adam_steps: Adam iterations before L-BFGS in ``adam+lbfgs``.
        time_limit_minutes: stop after this much optimisation time (checked after every step; for
            L-BFGS after every ``eval_every`` iterations); ``None`` = no limit.
        clock: what ``seconds`` in the log and the time limit measure: ``wall`` (elapsed time) or
            ``process`` (CPU time of this process: on a machine shared with other jobs it is what a
            single-threaded run would take on an idle core, so budgets stay comparable across runs).
    Evaluation:
        eval_every: log the loss and the relative L2 error every this many steps.
        eval_points: test points: a grid of ``round(eval_points^(1/d))`` per axis for ``d ≤ 3``, else
            that many Sobol points.
    Run:
        seed, dtype (``float64`` or ``float32``), device (``cpu``, ``cuda``, ``cuda:N`` or ``auto``),
        out (run directory), overwrite, progress.
    """

    _kind = "PINN config"

    pde: str = "poisson"
    pde_args: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    model: str = "pinn_mlp"
    model_args: dict[str, Any] = field(default_factory=dict)
    n_interior: int = 900
    n_boundary: int = 120
    sampler: str = "grid"
    hard_bc: bool = False
    resample_every: int = 0
    optimizer: str = "engd"
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    lr_decay: float = 1.0
    steps: int = 500
    adam_steps: int = 0
    time_limit_minutes: float | None = None
    clock: str = "wall"
    eval_every: int = 10
    eval_points: int = 10000
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    out: str | None = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(PINNConfig)
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        check_choice("PINN optimizer", self.optimizer, PINN_OPTIMIZERS)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("dtype", self.dtype, _DTYPES)
        check_choice("clock", self.clock, ("wall", "process"))
        check_model_args(self.model, self.model_args)
        if not _DEVICE.match(self.device):
            raise UserError(f"unknown device {self.device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
        for name in ("n_interior", "n_boundary", "steps", "eval_every", "eval_points", "lr", "lr_decay"):
            _positive(name, getattr(self, name))
        for name in ("resample_every", "adam_steps", "seed"):  # numpy's generators take no negative seed
            _positive(name, getattr(self, name), allow_zero=True)
        if self.optimizer == "adam+lbfgs" and self.adam_steps == 0:
            raise UserError("optimizer 'adam+lbfgs' needs adam_steps > 0")
        if self.time_limit_minutes is not None:
            _positive("time_limit_minutes", self.time_limit_minutes)

    def apply_overrides(self, overrides: Sequence[str]) -> "PINNConfig":
        """A new config with ``key=value`` overrides; dict keys take ``model_args.width=64``."""
        values = self.to_dict()
        for item in overrides:
            head, sub, raw = self.split_override(item)
            if not sub:
                values[head] = raw.strip()
            elif isinstance(values[head], dict):
                values[head] = {**values[head], sub: _parse_scalar(raw.strip())}
            else:
                raise UserError(f"config key {head!r} has no sub-keys; use {head}=VALUE")
        return type(self).from_dict(values)


# ---- the PDE side ----------------------------------------------------------------------------------
def get_pinn_pde(name: str, **pde_args: Any) -> Any:
    """An instance of PDE ``name`` built with ``pde_args``; :class:`UserError` unless it has the
    pointwise-residual interface."""
    from ..pdes import PDES

    cls = PDES.get(name)
    try:
        pde = cls(**pde_args)
    except TypeError as err:
        raise UserError(f"PDE {name!r} rejects pde_args {pde_args}: {err}") from None
    missing = [m for m in ("pinn_domain", "pointwise_residual", "boundary_residual") if not hasattr(pde, m)]
    if missing:
        with_interface = [n for n in PDES.names() if hasattr(PDES.get(n), "pointwise_residual")]
        raise UserError(f"PDE {name!r} has no pointwise residual for PINNs (missing {', '.join(missing)}); "
                        f"PDEs that have one: {', '.join(with_interface)}")
    return pde


# ---- collocation points ----------------------------------------------------------------------------
def _faces(pde, params: Mapping[str, Any], dim: int) -> list[tuple[int, int]]:
    faces = getattr(pde, "pinn_boundary_faces", None)
    if faces is None:
        return [(axis, side) for axis in range(dim) for side in (0, 1)]
    return [(int(a), int(s)) for a, s in faces(params)]


def _unit_samples(n: int, dim: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
    """``(n, dim)`` points in the unit cube."""
    if dim == 0:
        return np.zeros((n, 0))
    if sampler == "grid":
        per_axis = max(1, round(n ** (1.0 / dim)))
        axis = (np.arange(per_axis) + 0.5) / per_axis
        return np.stack(np.meshgrid(*[axis] * dim, indexing="ij"), axis=-1).reshape(-1, dim)
    if sampler == "sobol":
        engine = qmc.Sobol(dim, scramble=True, seed=rng)
        # Sobol sequences are balanced at powers of two; take the first n of the next power.
        return engine.random(2 ** math.ceil(math.log2(max(n, 2))))[:n]
    return rng.random((n, dim))


def collocation_points(bounds: Sequence[tuple[float, float]], n_interior: int, n_boundary: int, sampler: str,
                       rng: np.random.Generator, faces: Sequence[tuple[int, int]] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Interior and boundary points of the box ``bounds``.

    Args:
        bounds: ``((lo, hi), ...)``, one pair per coordinate.
        n_interior, n_boundary: requested counts (``grid`` rounds to full grids).
        sampler: ``grid``, ``uniform`` or ``sobol``.
        rng: the only source of randomness.
        faces: ``(axis, side)`` pairs carrying boundary conditions (side 0 = ``lo``); default all.

    Returns:
        ``(x_interior (N_int, d), x_boundary (N_bd, d))`` float64 arrays.
    """
    check_choice("sampler", sampler, SAMPLERS)
    lo = np.array([b[0] for b in bounds], dtype=np.float64)
    hi = np.array([b[1] for b in bounds], dtype=np.float64)
    dim = len(bounds)
    faces = [(a, s) for a in range(dim) for s in (0, 1)] if faces is None else list(faces)
    interior = lo + (hi - lo) * _unit_samples(n_interior, dim, sampler, rng)
    if not faces or n_boundary == 0:
        return interior, np.zeros((0, dim))
    per_face = max(1, n_boundary // len(faces)) if sampler == "grid" else None
    if per_face is None:
        # Spread the points evenly: face k gets the points i with i % len(faces) == k.
        counts = [len(range(k, n_boundary, len(faces))) for k in range(len(faces))]
    else:
        counts = [per_face] * len(faces)
    parts = []
    for (axis, side), count in zip(faces, counts):
        on_face = _unit_samples(count, dim - 1, sampler, rng)
        pts = np.insert(on_face, axis, float(side), axis=1)
        parts.append(lo + (hi - lo) * pts)
    return interior, np.concatenate(parts)


def evaluation_points(bounds: Sequence[tuple[float, float]], n: int, seed: int) -> np.ndarray:
    """Evaluation points: a cell-centred grid for ``d ≤ 3``, else ``n`` Sobol points (own seed)."""
    dim = len(bounds)
    sampler = "grid" if dim <= 3 else "sobol"
    rng = np.random.default_rng([seed, 7919])
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    return lo + (hi - lo) * _unit_samples(n, dim, sampler, rng)


# ---- the run -----------------------------------------------------------------------------------------
@dataclass
class PINNProblem:
    """A PINN problem assembled from a config: network, residual, test data.

    Attributes:
        pde, params: the PDE instance and its resolved parameters.
        model: the network (what is saved); field: the function of the points that approximates
            the solution: ``model`` itself, or ``model`` inside :class:`HardBoundary`.
        resample_rng: the random source of residual-adaptive resampling.
        residual: the pointwise residual bound to the network's parameters.
        x_interior ``(N_int, d)``, x_boundary ``(N_bd, d)``, x_test ``(N_test, d)``, u_test
        ``(N_test, n_fields)``: the PDE's ``reference_solution`` if it has one, else its
        ``exact_solution`` (``None`` without either).
    """

    pde: Any
    params: dict[str, Any]
    model: Operator
    residual: PointwiseResidual
    x_interior: torch.Tensor
    x_boundary: torch.Tensor
    x_test: torch.Tensor
    u_test: torch.Tensor | None
    field: torch.nn.Module
    resample_rng: np.random.Generator | None = None

    def set_interior(self, x: torch.Tensor) -> None:
        """Replace the interior collocation points ``(N, d)`` and rebuild the residual on them."""
        self.x_interior = x
        self.residual = model_terms(self.field, _terms(self.pde, self.params, x, self.x_boundary))

    @torch.no_grad()
    def relative_l2(self) -> float:
        """``‖u_θ − u*‖ / ‖u*‖`` over the test points (NaN without a reference solution)."""
        if self.u_test is None:
            return float("nan")
        diff = self.field(self.x_test) - self.u_test
        return float(diff.norm() / self.u_test.norm())


def build_problem(config: PINNConfig) -> PINNProblem:
    """The PDE, the network (seeded with ``config.seed``), the points and the residual of ``config``."""
    pde = get_pinn_pde(config.pde, **config.pde_args)
    params = pde.with_params(config.params)
    bounds = pde.pinn_domain(params)
    dim = len(bounds)
    dtype = _DTYPES[config.dtype]
    device = resolve_device(config.device)
    n_fields = len(getattr(pde, "pinn_fields", ("u",)))
    accepted = set(model_parameters(config.model))
    if "in_dim" not in accepted:  # an operator of fields (FNO, U-Net, ...), not a network of points
        raise UserError(f"model {config.model!r} maps fields to fields; a physics-informed network maps "
                        f"coordinates to values: {', '.join(models_taking('in_dim'))} (or train "
                        f"{config.model!r} on a dataset with --data)")
    filled = {k: v for k, v in {"in_dim": dim, "out_dim": n_fields, "dtype": config.dtype}.items() if k in accepted}
    periodic_axes = getattr(pde, "pinn_periodic_axes", None)  # periodicity the network must carry itself
    if periodic_axes is not None and "periodic" in accepted and "periodic" not in config.model_args:
        filled["periodic"] = list(periodic_axes(params))
    for key, value in filled.items():
        if key in config.model_args and config.model_args[key] != value:
            raise UserError(f"model_args.{key}={config.model_args[key]!r} does not match the problem, "
                            f"which needs {value}; leave it out and it is filled in")
    torch.manual_seed(config.seed)
    model = build_model(config.model, **{**config.model_args, **filled}).to(device=device, dtype=dtype)
    rng = np.random.default_rng(config.seed)
    faces = _faces(pde, params, dim)
    xi, xb = collocation_points(bounds, config.n_interior, 0 if config.hard_bc else config.n_boundary,
                                config.sampler, rng, faces)
    as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    x_int, x_bd = as_tensor(xi), as_tensor(xb)
    field = HardBoundary(model, pde, params, bounds, faces) if config.hard_bc else model
    residual = model_terms(field, _terms(pde, params, x_int, x_bd))
    x_test = as_tensor(evaluation_points(bounds, config.eval_points, config.seed))
    # A PDE without a closed form may still have a reference (e.g. its solver's, see space_time_pinn).
    exact = getattr(pde, "reference_solution", None) or getattr(pde, "exact_solution", None)
    u_test = None
    if exact is not None:
        u_test = exact(x_test, params)
        u_test = None if u_test is None else u_test.to(dtype).reshape(len(x_test), -1)
    return PINNProblem(pde, params, model, residual, x_int, x_bd, x_test, u_test, field,
                       np.random.default_rng([config.seed, 104729]))


def _terms(pde, params: Mapping[str, Any], x_int: torch.Tensor, x_bd: torch.Tensor) -> list:
    """The loss terms: interior residual (and boundary residual when there are boundary points),
    each weighted by one over the square root of its point count."""
    terms = [(lambda u, x: pde.pointwise_residual(u, x, params), x_int, 1.0 / math.sqrt(len(x_int)), "interior")]
    if len(x_bd):
        terms.append((lambda u, x: pde.boundary_residual(u, x, params), x_bd, 1.0 / math.sqrt(len(x_bd)),
                      "boundary"))
    return terms


def resample_interior(problem: PINNProblem, rng: np.random.Generator, candidates_per_point: int = 10,
                      k: float = 1.0, c: float = 1.0) -> None:
    """Residual-based adaptive distribution (RAD; Wu, Zhu, Tan, Kartha & Lu 2023): draw the interior
    points anew, without replacement, from ``candidates_per_point · N`` uniform candidates with
    probability ``∝ |r|^k / mean |r|^k + c`` (``k = c = 1``: their recommended default), so points
    gather where the residual is large while every region keeps some."""
    bounds = problem.pde.pinn_domain(problem.params)
    n, dim = problem.x_interior.shape
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    cand = torch.as_tensor(lo + (hi - lo) * rng.random((candidates_per_point * n, dim)),
                           dtype=problem.x_interior.dtype, device=problem.x_interior.device)
    r = torch.cat([problem.pde.pointwise_residual(problem.field, chunk, problem.params).detach().reshape(len(chunk), -1)
                   for chunk in torch.split(cand, 4096)])
    weight = r.abs().sum(dim=1).double().cpu().numpy() ** k
    p = weight / max(weight.mean(), np.finfo(float).tiny) + c
    idx = rng.choice(len(cand), size=n, replace=False, p=p / p.sum())
    problem.set_interior(cand[np.sort(idx)])


class HardBoundary(torch.nn.Module):
    """``u(x) = g(x) + d(x) N(x)``: a network ``N`` with the Dirichlet data imposed exactly.

    ``g`` is the PDE's ``boundary_value`` (which must extend the data into the domain) and
    ``d(x) = Π_faces (x_a − lo_a)/(hi_a − lo_a)`` or ``(hi_a − x_a)/(hi_a − lo_a)`` over the faces
    that carry conditions, so ``d = 0`` there and ``d > 0`` inside (Lagaris et al. 1998; Sukumar &
    Srivastava 2022 for distance functions on general domains). Shapes: ``(N, d) -> (N, 1)``.
    """

    def __init__(self, net: torch.nn.Module, pde: Any, params: Mapping[str, Any],
                 bounds: Sequence[tuple[float, float]], faces: Sequence[tuple[int, int]]):
        super().__init__()
        if len(getattr(pde, "pinn_fields", ("u",))) != 1 or not hasattr(pde, "boundary_value"):
            raise UserError(f"hard_bc needs a single-field PDE with a boundary_value method; {pde.name!r} is not one")
        self.net, self.pde, self.params = net, pde, dict(params)
        self.bounds, self.faces = [tuple(map(float, b)) for b in bounds], list(faces)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """``d(x)`` ``(N,)``: zero on the constrained faces, positive inside."""
        d = torch.ones_like(x[:, 0])
        for axis, side in self.faces:
            lo, hi = self.bounds[axis]
            d = d * ((x[:, axis] - lo) if side == 0 else (hi - x[:, axis])) / (hi - lo)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pde.boundary_value(x, self.params)[:, None] + self.distance(x)[:, None] * self.net(x)


class _Logger:
    """Collects log rows, tracks the optimisation time (evaluations excluded) on both clocks, and
    the time limit on the configured one."""

    def __init__(self, problem: PINNProblem, config: PINNConfig):
        self.problem, self.config = problem, config
        self.rows: list[dict[str, Any]] = []
        self.wall = self.cpu = 0.0
        self._marks = (time.perf_counter(), time.process_time())
        self.bar = None
        if config.progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=config.steps + config.adam_steps, desc=f"pinn {config.optimizer}")

    @property
    def seconds(self) -> float:
        """Optimisation time so far on the configured clock (``wall`` or ``process``)."""
        wall, cpu = self._running()
        return cpu if self.config.clock == "process" else wall

    def _running(self) -> tuple[float, float]:
        if self._marks is None:
            return self.wall, self.cpu
        return (self.wall + time.perf_counter() - self._marks[0], self.cpu + time.process_time() - self._marks[1])

    def pause(self) -> None:
        self.wall, self.cpu = self._running()
        self._marks = None

    def resume(self) -> None:
        self._marks = (time.perf_counter(), time.process_time())

    def restart(self) -> None:
        """Zero both clocks (after the initial evaluation)."""
        self.wall = self.cpu = 0.0
        self.resume()

    def log(self, step: int, phase: str, loss: float | None = None, step_size: float = float("nan")) -> None:
        """Append a row; ``loss=None`` evaluates it here, off the clock."""
        self.pause()
        if loss is None:
            with torch.no_grad():
                loss = float(self.problem.residual.loss())
        row = dict(step=step, phase=phase, loss=float(loss), rel_l2=self.problem.relative_l2(),
                   seconds=self.seconds, step_size=float(step_size))
        self.rows.append(row)
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(loss=f"{row['loss']:.3e}", rel_l2=f"{row['rel_l2']:.3e}", refresh=True)
        self.resume()

    def out_of_time(self) -> bool:
        limit = self.config.time_limit_minutes
        return limit is not None and self.seconds >= 60.0 * limit

    def close(self) -> None:
        self.pause()
        if self.bar is not None:
            self.bar.close()


def _loss_closure(problem: PINNProblem, optimizer: torch.optim.Optimizer):
    def closure() -> torch.Tensor:
        res = problem.residual  # read at each call: resampling replaces it
        optimizer.zero_grad(set_to_none=True)
        r = res.fn(tuple(res.params))  # through the live parameters, so autograd reaches them
        loss = 0.5 * torch.dot(r, r)
        loss.backward()
        return loss

    return closure


def _term_closure(problem: PINNProblem):
    """The loss split into its residual blocks, ``[½‖w_i ρ_i‖²]``, for the term-balancing optimizers."""
    def closure() -> list[torch.Tensor]:
        res = problem.residual  # read at each call: resampling replaces it
        theta = tuple(res.params)
        blocks = [t.weight * t.residual(theta, t.points).reshape(-1) for t in res.terms]
        return [0.5 * torch.dot(b, b) for b in blocks]

    return closure


def _constructor_args(cls: type) -> set[str]:
    """The keyword arguments ``cls`` takes by name, ``params`` aside; for an optimizer that passes
    ``**inner_args`` to an ``inner`` optimizer class (ConFIG) also the inner one's, ``inner`` itself aside
    (a config cannot name a class)."""
    sig = inspect.signature(cls)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in sig.parameters.values() if p.kind in named} - {"self", "params"}
    inner = sig.parameters.get("inner")
    if inner is not None and isinstance(inner.default, type):
        names = (names - {"inner"}) | _constructor_args(inner.default)
    return names


def _check_loop_args(name: str, args: Mapping[str, Any], set_by_loop: Mapping[str, Any],
                     allowed: Sequence[str] = ()) -> None:
    """:class:`UserError` for an ``optimizer_args`` key the training loop sets itself (``allowed``: the
    keys that may be given, for the message)."""
    for key in set_by_loop:
        if key not in args:
            continue
        if key == "lr":
            raise UserError(f"optimizer {name!r} does not use optimizer_args.lr: its learning rate is the config's "
                            f"lr, multiplied by lr_decay every 1000 steps; set lr={args['lr']!r} instead")
        raise UserError(f"optimizer {name!r} takes no optimizer_args key {key!r}: the training loop sets it "
                        f"({key}={set_by_loop[key]!r}); allowed: {', '.join(sorted(allowed))}")


def _construct(name: str, cls: type, params: Sequence[torch.Tensor], args: Mapping[str, Any],
               set_by_loop: Mapping[str, Any] | None = None) -> Any:
    """``cls(params, **set_by_loop, **args)``, with a :class:`UserError` that names a key of ``args``
    the constructor does not take (and the keys it does), or the ``args`` it rejected and why. The
    values are checked by the constructor alone, not restated here."""
    set_by_loop = dict(set_by_loop or {})
    allowed = _constructor_args(cls) - set(set_by_loop)
    _check_loop_args(name, args, set_by_loop, allowed)
    for key in args:
        if key not in allowed:
            hint = did_you_mean(key, sorted(allowed))
            raise UserError(f"optimizer {name!r} takes no optimizer_args key {key!r}{hint}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    try:
        return cls(params, **set_by_loop, **args)
    except UserError:
        raise
    except (TypeError, ValueError) as err:
        raise UserError(f"optimizer {name!r} rejects optimizer_args {dict(args)}: {err}") from None


def build_optimizers(problem: PINNProblem, config: PINNConfig) -> dict[str, Any]:
    """The optimizer of every phase of ``config.optimizer`` over ``problem``'s parameters, in run
    order: ``{config.optimizer: opt}``, or ``{"adam": Adam, "lbfgs": LBFGS}`` for ``adam+lbfgs`` (whose
    ``optimizer_args`` go to L-BFGS).

    Constructing an optimizer changes neither the parameters nor any random state, so this can run
    before the run directory is made. The loop sets ``lr`` of the first-order methods (``config.lr``
    with ``lr_decay``) and MultiAdam's ``n_terms``; ``optimizer_args`` may not.

    Raises:
        UserError: for an ``optimizer_args`` key the optimizer does not take, or a value it rejects.
    """
    params = problem.residual.params
    name, args = config.optimizer, dict(config.optimizer_args)
    if name == "adam+lbfgs":
        return {"adam": build_first_order("adam", params, lr=config.lr, weight_decay=0.0),
                "lbfgs": _construct("lbfgs", LBFGS, params, args)}
    if name == "lbfgs":
        return {name: _construct(name, LBFGS, params, args)}
    if name in SECOND_ORDER_PINN:
        return {name: _construct(name, SECOND_ORDER_PINN[name], params, args)}
    if name == "multiadam":
        set_by_loop = {"n_terms": len(problem.residual.terms), "lr": config.lr}
        return {name: _construct(name, MultiAdam, params, args, set_by_loop)}
    if name == "config":
        return {name: _construct(name, ConFIG, params, args, {"lr": config.lr})}
    _check_loop_args(name, args, {"lr": config.lr})
    # no weight decay unless asked: SOAP's default of 0.01 would pull a PINN off its solution;
    # build_first_order names unknown keys and wraps the optimizer's own complaints
    return {name: build_first_order(name, params, **{"lr": config.lr, "weight_decay": 0.0, **args})}


def _run_first_order(problem: PINNProblem, config: PINNConfig, logger: _Logger, steps: int, start: int,
                     name: str, opt: torch.optim.Optimizer) -> tuple[int, str]:
    closure = _term_closure(problem) if name in ("multiadam", "config") else _loss_closure(problem, opt)
    for k in range(steps):
        for group in opt.param_groups:
            group["lr"] = config.lr * config.lr_decay ** (k / 1000.0)
        loss = opt.step(closure).detach()
        step = start + k + 1
        if not math.isfinite(float(loss)):
            logger.log(step, name, float(loss))
            return step, "non-finite loss"
        _maybe_resample(problem, config, step - 1, step)
        out_of_time = logger.out_of_time()
        if out_of_time or step % config.eval_every == 0 or k == steps - 1:
            logger.log(step, name, None, opt.param_groups[0]["lr"])
            if out_of_time:
                return step, "time limit"
    return start + steps, "max steps"


def _maybe_resample(problem: PINNProblem, config: PINNConfig, before: int, after: int) -> None:
    """Resample the interior points when the steps ``before → after`` crossed a multiple of
    ``resample_every``."""
    every = config.resample_every
    if every and after // every > before // every:
        resample_interior(problem, problem.resample_rng)


def _run_lbfgs(problem: PINNProblem, config: PINNConfig, logger: _Logger, steps: int, start: int,
               lbfgs: LBFGS) -> tuple[int, str]:
    closure = _loss_closure(problem, lbfgs.optimizer)
    done = 0
    while done < steps:
        report = lbfgs.run(closure, min(config.eval_every, steps - done))
        done += report.iterations
        _maybe_resample(problem, config, start + done - report.iterations, start + done)
        logger.log(start + done, "lbfgs", report.loss)
        if report.stopped_early:
            return start + done, f"lbfgs: {report.reason}"
        if logger.out_of_time():
            return start + done, "time limit"
    return start + done, "max steps"


def _run_second_order(problem: PINNProblem, config: PINNConfig, logger: _Logger, opt: Any) -> tuple[int, str]:
    for k in range(config.steps):
        opt.step(problem.residual)
        step = k + 1
        new_loss = opt.last.get("new_loss", float("nan"))
        if not math.isfinite(new_loss):
            logger.log(step, config.optimizer, new_loss)
            return step, "non-finite loss"
        _maybe_resample(problem, config, step - 1, step)
        stalled = config.optimizer == "lm" and not opt.last["accepted"]
        out_of_time = logger.out_of_time()
        if out_of_time or stalled or step % config.eval_every == 0 or step == config.steps:
            # the step size for ENGD / Gauss-Newton, the damping for Levenberg-Marquardt
            size = opt.last.get("eta", opt.last.get("damping", float("nan")))
            logger.log(step, config.optimizer, new_loss, size)
            if stalled:
                return step, "lm: no acceptable step (stationary to working precision)"
            if out_of_time:
                return step, "time limit"
    return config.steps, "max steps"


def fit_pinn(problem: PINNProblem, config: PINNConfig, optimizers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``config.optimizer`` on ``problem`` in place; returns the metrics and the log rows.

    ``optimizers``: what :func:`build_optimizers` returned for this ``problem`` and ``config`` (built
    here when not given).

    Returns:
        ``{"metrics": {...}, "log": [rows]}``; ``metrics`` has ``loss``, ``rel_l2``, ``steps``,
        ``seconds`` (optimisation time on ``config.clock``, evaluations excluded; ``wall_seconds`` and
        ``process_seconds`` give both clocks), ``stop_reason`` and the problem sizes.
    """
    opts = build_optimizers(problem, config) if optimizers is None else optimizers
    logger = _Logger(problem, config)
    logger.log(0, "init")
    logger.restart()  # the clocks start with the optimiser, after the initial evaluation
    if config.optimizer in FIRST_ORDER_PINN:
        steps, reason = _run_first_order(problem, config, logger, config.steps, 0, config.optimizer,
                                         opts[config.optimizer])
    elif config.optimizer == "lbfgs":
        steps, reason = _run_lbfgs(problem, config, logger, config.steps, 0, opts["lbfgs"])
    elif config.optimizer == "adam+lbfgs":
        steps, reason = _run_first_order(problem, config, logger, config.adam_steps, 0, "adam", opts["adam"])
        if reason == "max steps":
            steps, reason = _run_lbfgs(problem, config, logger, config.steps, steps, opts["lbfgs"])
    else:
        steps, reason = _run_second_order(problem, config, logger, opts[config.optimizer])
    logger.close()
    final = logger.rows[-1]
    metrics = dict(pde=config.pde, optimizer=config.optimizer, loss=final["loss"], rel_l2=final["rel_l2"],
                   best_rel_l2=min(r["rel_l2"] for r in logger.rows), steps=steps, seconds=logger.seconds,
                   clock=config.clock, wall_seconds=logger.wall, process_seconds=logger.cpu,
                   stop_reason=reason, n_interior=len(problem.x_interior), n_boundary=len(problem.x_boundary),
                   n_test=len(problem.x_test), n_params=problem.residual.numel, seed=config.seed)
    return {"metrics": metrics, "log": logger.rows}


def train_pinn(config: PINNConfig) -> Path:
    """Train a PINN as ``config`` says and write the run directory ``config.out``; returns it.

    The config stored in ``config.yaml`` has the model's data-dependent arguments (``in_dim``,
    ``out_dim``, ``dtype``) filled in. ``metrics.json`` is written last, so a run directory without it
    is incomplete.
    """
    if config.out is None:
        raise UserError("no run directory: set out=PATH")
    run_dir = Path(config.out)
    from .trainer import check_run_dir, prepare_run_dir

    check_run_dir(run_dir, config.overwrite, resume=False, resumable=False)
    # Built before the run directory is touched: a bad PDE, model or optimizer argument must not leave
    # a half-made directory, nor delete the previous run under overwrite=true.
    problem = build_problem(config)
    optimizers = build_optimizers(problem, config)
    for opt in optimizers.values():  # what an optimizer would refuse at its first step (KFAC's tape)
        if hasattr(opt, "check"):
            opt.check(problem.residual)
    prepare_run_dir(run_dir, config.overwrite, resume=False, subdirs=())
    resolved = dataclasses.replace(config, model_args=dict(problem.model.config))
    resolved.to_yaml(run_dir / "config.yaml")
    result = fit_pinn(problem, resolved, optimizers)
    write_log(run_dir / "log.csv", result["log"], LOG_COLUMNS)
    save_model(problem.model, run_dir / "model.pt")
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(result["metrics"], indent=2) + "\n")
    os.replace(tmp, run_dir / "metrics.json")
    return run_dir
