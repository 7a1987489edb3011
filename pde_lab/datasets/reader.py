"""Read pde_lab HDF5 datasets as lazy torch Datasets of (input, target) pairs.

Which channels are inputs and which are targets follows from the fields' stored ``role`` and
``time_varying`` attributes and a :class:`~pde_lab.pdes.base.Task`, never from the PDE's name:

* static ``input`` fields (coefficients, masks) are input channels, repeated over the input frames;
* time-varying ``solution`` fields give input channels at the input frames and target channels at the
  output frames;
* static ``solution`` fields are targets (steady problems).

On an unstructured mesh (``grid_type = "mesh"``) the one space axis is the mesh's nodes and the
dataset's ``points`` are their coordinates, the second input of the point models.

Vector fields contribute one channel per component (``v_x``, ``v_y``). Physical parameters that vary
between samples (a viscosity, a Reynolds number) can be appended as constant input channels: without
them the map from input fields to targets is not a function. A parameter spec ``"nu"`` appends the
value, ``"log:nu"`` its logarithm (for parameters spanning decades). Items are shaped
``(T, *space, C)``. Each process opens its own file handles on first access, so the Dataset is safe
with DataLoader workers.

Memory stays bounded whatever the file size: an item reads only its own frames (one HDF5 chunk per
frame), each file handle gets a chunk cache of :data:`CHUNK_CACHE_BYTES` per dataset, and the item
index is arithmetic (offsets per file), not a list that grows with the number of windows. A
``trajectories`` selection restricts a dataset to chosen trajectories of each file (see
:mod:`pde_lab.datasets.mixing`).

``preload=True`` trades that bound for speed: the trajectories a dataset uses are read once, as
float32, into memory, and items are sliced from there. Reading an item from HDF5 costs milliseconds
(per-call overhead, one chunk per frame), which starves a GPU that takes a step in a few; a split
that fits in memory should be preloaded there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np
import torch

from ..errors import UserError
from ..meshes import lumped_mass
from ..pdes.base import Task
from . import schema
from .layout import in_level_order
from .validate import validate_file
from .writer import attr_value


# h5py's chunk cache, per open dataset. Items touch each chunk (one frame) once per epoch, so a cache
# cannot help across items; a small fixed size keeps a worker's memory independent of the file size.
CHUNK_CACHE_BYTES = 4 << 20
CHUNK_CACHE_SLOTS = 1021  # prime, as HDF5 recommends for its hash table
LEAD_TIME = "lead_time"
"""The extra input channel of the ``time`` task: target time minus the time of the last input frame."""


def open_h5(path: str | Path) -> h5py.File:
    """Open ``path`` read-only with the bounded chunk cache every reader here uses."""
    return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=CHUNK_CACHE_SLOTS)


@dataclass(frozen=True)
class _FieldRef:
    path: str  # dataset path inside the file
    role: str
    time_varying: bool
    rank: int
    name: str


def _field_refs(f: h5py.File) -> list[_FieldRef]:
    refs = []
    for rank, group in enumerate(schema.FIELD_GROUPS):
        for name in attr_value(f[group].attrs["field_names"]):
            d = f[f"{group}/{name}"]
            refs.append(_FieldRef(d.name, attr_value(d.attrs["role"]), attr_value(d.attrs["time_varying"]), rank, name))
    return refs


def _channel_names(ref: _FieldRef, n_dims: int) -> list[str]:
    if ref.rank == 0:
        return [ref.name]
    axes = "xyz"[:n_dims]
    return [f"{ref.name}_{a}" for a in axes] if ref.rank == 1 else [f"{ref.name}_{a}{b}" for a in axes for b in axes]


def list_files(data: str | Path, split: str | None, levels: Sequence[str] | None = None) -> list[Path]:
    """The files of ``split`` in a dataset directory, in generation order of their levels
    (:func:`~pde_lab.datasets.layout.in_level_order`), or those of ``levels`` in the order given.

    ``data`` may also be one file: it is returned if it holds ``split`` (``None``: any split) and one
    of ``levels``, else :class:`UserError` names what it holds, so a training file is never read as
    test data.
    """
    data = Path(data)
    if data.is_file():
        try:
            with h5py.File(data, "r") as f:
                holds = attr_value(f.attrs.get("split")), attr_value(f.attrs.get("level"))
        except OSError as err:
            raise UserError(f"{data} is not an HDF5 file ({err})") from None
        if split is not None and holds[0] != split:
            raise UserError(f"{data} holds the {holds[0]!r} split, not {split!r}; pass the dataset directory "
                            f"to use its {split} files")
        if levels and holds[1] not in levels:
            raise UserError(f"{data} holds level {holds[1]!r}, not {', '.join(map(repr, levels))}")
        return [data]
    if split is None:
        raise UserError(f"{data} is a dataset directory: name a split ({', '.join(schema.SPLITS)})")
    if split not in schema.SPLITS:
        raise UserError(f"unknown split {split!r}; allowed: {', '.join(schema.SPLITS)}")
    if not data.is_dir():
        raise UserError(f"dataset {data} does not exist")
    files = in_level_order(list((data / split).glob("*.h5")))
    have = [p.stem for p in files]
    if levels:
        missing = [lv for lv in levels if lv not in have]
        if missing:
            raise UserError(f"level(s) {', '.join(missing)} not in {data}/{split}; available: {', '.join(have) or 'none'}")
        files = [data / split / f"{lv}.h5" for lv in dict.fromkeys(levels)]
    if not files:
        raise UserError(f"no {split} files in {data}")
    return files


def mesh_nodes(f: h5py.File) -> np.ndarray | None:
    """``(N, d)`` node coordinates of a mesh file (``grid_type = "mesh"``), ``None`` on a Cartesian grid."""
    if attr_value(f.attrs.get("grid_type", "cartesian")) != "mesh":
        return None
    return np.asarray(f["mesh/nodes"][()], dtype=np.float64)


def unit_box(nodes: np.ndarray) -> np.ndarray:
    """``(N, d)`` points mapped into ``[0, 1]^d`` by one shift and one scale (the longest side of their
    bounding box becomes 1), so shapes keep their proportions: the coordinates the point models see
    (their grid form uses ``linspace(0, 1, n)``). float32."""
    lo = nodes.min(axis=0)
    span = float((nodes.max(axis=0) - lo).max())
    return ((nodes - lo) / (span if span > 0 else 1.0)).astype(np.float32)


def space_weights_name(ds: object) -> str:
    """What a dataset's errors weigh its space points by: ``"lumped_mass"`` when it has ``weights``
    (mesh nodes), else ``"uniform"``; recorded in checkpoints and ``metrics.json``."""
    return "uniform" if getattr(ds, "weights", None) is None else "lumped_mass"


def _default_task(pde_name: str) -> Task:
    from ..pdes import PDES, get_pde

    return get_pde(pde_name).default_task if pde_name in PDES else Task()


class FieldDataset(torch.utils.data.Dataset):
    """(input, target) pairs from one or more files of the same PDE.

    Items: ``x`` of shape ``(T_in, *space, C_in)`` and ``y`` of shape ``(T_out, *space, C_out)``,
    float32 tensors, in physical units.

    On a mesh file (``grid_type = "mesh"``) ``space`` is ``(N,)``, the nodes, and ``points`` holds
    their ``(N, d)`` coordinates mapped into ``[0, 1]^d`` by :func:`unit_box` (``None`` on a grid):
    what a point model (``forward(x, coords)``) is called with, and ``weights`` their ``(N,)``
    lumped-mass weights (:func:`pde_lab.meshes.lumped_mass`, ``None`` on a grid): what the evaluation
    metrics weigh the nodes by. All files must share the mesh.
    ``n_dims`` is the geometric dimension in both cases (it names vector components).

    ``trajectories``: file number → the trajectory indices of that file to use (files not named are
    used whole); ``None`` = every trajectory. Items are ordered by file, then trajectory (in the
    given order), then window start.

    ``preload``: read the used trajectories of every field into memory (float32) now, and serve
    items from there; the items are the same as without it (see the module docstring).
    """

    def __init__(self, files: Sequence[str | Path], task: Task | None = None, check: bool = True,
                 parameters: Sequence[str] = (), trajectories: Mapping[int, Sequence[int]] | None = None,
                 preload: bool = False):
        self.files = [Path(p) for p in files]
        if not self.files:
            raise UserError("no files given")
        if check:
            for p in self.files:
                errs = validate_file(p, check_values=False)
                if errs:
                    raise UserError(f"{p} is not a valid pde_lab file: {errs[0]}" +
                                    (f" (+{len(errs) - 1} more; run `pde-lab validate {p}`)" if len(errs) > 1 else ""))
        with h5py.File(self.files[0], "r") as f:
            self.pde_name = attr_value(f.attrs["pde"])
            self.spatial_shape = tuple(attr_value(f.attrs["spatial_resolution"]))
            self.n_dims = int(attr_value(f.attrs["n_spatial_dims"]))
            nodes = mesh_nodes(f)
            cells = None if nodes is None else np.asarray(f["mesh/cells"][()])
            refs = _field_refs(f)
            self.n_times = len(f["dimensions/time"]) if "time" in f["dimensions"] else None
            self.times = np.asarray(f["dimensions/time"][()], dtype=np.float64) if self.n_times else None
        self.task = task or _default_task(self.pde_name)
        if self.task.mode == "time" and (self.n_times is None or self.task.output_steps != 1):
            raise UserError("the time task needs time-dependent files and output_steps = 1 (one target frame "
                            f"per item), got {self.n_times} stored frames and output_steps {self.task.output_steps}")
        self._refs = refs
        self.inputs = [r for r in refs if r.role == "input" and not r.time_varying] + \
                      [r for r in refs if r.role == "solution" and r.time_varying]
        self.targets = [r for r in refs if r.role == "solution"]
        if not self.targets:
            raise UserError(f"{self.files[0]} holds no solution fields to learn")
        if any(r.role == "input" and r.time_varying for r in refs):
            raise UserError("time-varying input fields (forcing series) are not supported by this reader yet")
        nd = self.n_dims
        self.parameters = list(parameters)
        self.input_channels = [c for r in self.inputs for c in _channel_names(r, nd)] + self.parameters
        if self.task.mode == "time":
            self.input_channels.append(LEAD_TIME)
        self.target_channels = [c for r in self.targets for c in _channel_names(r, nd)]
        self.levels: list[str] = []
        self.points = None if nodes is None else torch.from_numpy(unit_box(nodes))
        self.weights = None if nodes is None else torch.from_numpy(lumped_mass(nodes, cells))
        self._trajs: list[np.ndarray] = []  # per file: the trajectories used, in item order
        self._param_values: list[np.ndarray] = []  # per file: (n_trajectories, n_parameters)
        trajectories = dict(trajectories or {})
        bad = sorted(set(trajectories) - set(range(len(self.files))))
        if bad:
            raise UserError(f"trajectory selection names file number(s) {bad}; "
                            f"there are {len(self.files)} files")
        for k, p in enumerate(self.files):
            with h5py.File(p, "r") as f:
                if attr_value(f.attrs["pde"]) != self.pde_name:
                    raise UserError(f"{p} holds PDE {attr_value(f.attrs['pde'])!r}, not {self.pde_name!r}")
                if k and nodes is not None and not np.array_equal(mesh_nodes(f), nodes):
                    # One batch, one set of points: a model with fixed sensors (DeepONet's mlp
                    # branch) could not take two meshes, and a batch could not stack them.
                    raise UserError(f"{p} holds another mesh than {self.files[0]} (a level's geometry is its "
                                    f"own); train and evaluate on one level at a time (--levels NAME)")
                if tuple(attr_value(f.attrs["spatial_resolution"])) != self.spatial_shape:
                    raise UserError(f"{p} has resolution {attr_value(f.attrs['spatial_resolution'])}, "
                                    f"not {list(self.spatial_shape)}")
                n_times = len(f["dimensions/time"]) if "time" in f["dimensions"] else None
                if n_times != self.n_times:
                    raise UserError(f"{p} holds {n_times} frames per trajectory, "
                                    f"{self.files[0]} holds {self.n_times}")
                if self.task.mode == "time" and not np.allclose(f["dimensions/time"][()], self.times, rtol=1e-12,
                                                                 atol=0.0):
                    raise UserError(f"{p} stores its frames at other times than {self.files[0]}; the time "
                                    f"task's lead-time input needs the same times in every file")
                n = attr_value(f.attrs["n_trajectories"])
                self.levels.append(attr_value(f.attrs["level"]))
                self._param_values.append(_parameter_values(f, self.parameters, p))
            sel = np.asarray(trajectories.get(k, np.arange(n)), dtype=np.int64).reshape(-1)
            if sel.size and (sel.min() < 0 or sel.max() >= n):
                raise UserError(f"trajectory selection for {p} has indices outside 0..{n - 1}")
            self._trajs.append(sel)
        self._window_starts = self._starts()
        counts = [len(t) * len(self._window_starts) for t in self._trajs]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # item offset of each file
        self._handles: dict[int, h5py.File] = {}
        self._pid = None
        # per file: field path -> (used trajectories, ...) float32, and trajectory -> row of that array
        self._memory: list[tuple[dict[str, np.ndarray], dict[int, int]]] | None = None
        if preload:
            self._memory = [self._load(p, trajs) for p, trajs in zip(self.files, self._trajs)]

    def _load(self, path: Path, trajs: np.ndarray) -> tuple[dict[str, np.ndarray], dict[int, int]]:
        used = np.unique(trajs)  # h5py reads a selection in increasing order, without repeats
        with open_h5(path) as f:
            n = attr_value(f.attrs["n_trajectories"])
            rows = slice(None) if used.size == n else used  # one contiguous read when every one is used
            arrays = {r.path: np.asarray(f[r.path][rows], dtype=np.float32) for r in self._refs}
        return arrays, {int(t): i for i, t in enumerate(used)}

    @property
    def preloaded(self) -> bool:
        """Whether items come from memory (``preload=True``) rather than from the files."""
        return self._memory is not None

    def _starts(self) -> list[int]:
        t = self.task
        if self.n_times is None:
            return [0]
        if t.mode == "one_shot":
            if t.input_steps + t.output_steps > self.n_times:
                raise UserError(f"task needs {t.input_steps}+{t.output_steps} frames but files hold {self.n_times}")
            return [0]
        if t.mode == "window":
            last = self.n_times - t.input_steps - t.output_steps
            if last < 0:
                raise UserError(f"window {t.input_steps}->{t.output_steps} is longer than the {self.n_times} stored frames")
            return list(range(last + 1))
        if t.mode == "time":
            if t.input_steps >= self.n_times:
                raise UserError(f"the time task needs more than {t.input_steps} stored frames, files hold {self.n_times}")
            return list(range(t.input_steps, self.n_times))  # the target frame of each item
        raise UserError(f"unknown task mode {t.mode!r}; allowed: one_shot, window, time")

    def lead_time(self, frame: int) -> float:
        """Time from the last input frame to stored frame ``frame`` (the time task's extra input)."""
        return float(self.times[frame] - self.times[self.task.input_steps - 1])

    def _file(self, k: int) -> h5py.File:
        if self._pid != os.getpid():  # a forked DataLoader worker must not share the parent's handles
            self._handles, self._pid = {}, os.getpid()
        if k not in self._handles:
            self._handles[k] = open_h5(self.files[k])
        return self._handles[k]

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def sample_index(self, item: int) -> tuple[int, int, int]:
        """(file number, trajectory, first frame) of an item."""
        n = len(self)
        if item < 0:
            item += n
        if not 0 <= item < n:
            raise IndexError(f"item {item} out of range for a dataset of {n} items")
        k = int(np.searchsorted(self._offsets, item, side="right")) - 1
        local = item - int(self._offsets[k])
        per = len(self._window_starts)
        return k, int(self._trajs[k][local // per]), self._window_starts[local % per]

    def file_items(self, k: int) -> range:
        """The items that come from file number ``k``."""
        return range(int(self._offsets[k]), int(self._offsets[k + 1]))

    def level_items(self) -> dict[str, np.ndarray]:
        """Level name → indices of its items (int64), over every file of that level."""
        out: dict[str, list[np.ndarray]] = {}
        for k, level in enumerate(self.levels):
            out.setdefault(level, []).append(np.arange(self._offsets[k], self._offsets[k + 1], dtype=np.int64))
        return {level: np.concatenate(parts) for level, parts in out.items()}

    def _frames(self, start: int) -> tuple[slice, slice]:
        t = self.task
        if self.n_times is None:
            return slice(0, 1), slice(0, 1)
        if t.mode == "one_shot":
            return slice(0, t.input_steps), slice(self.n_times - t.output_steps, self.n_times)
        if t.mode == "time":
            return slice(0, t.input_steps), slice(start, start + 1)
        return slice(start, start + t.input_steps), slice(start + t.input_steps, start + t.input_steps + t.output_steps)

    def _read(self, k: int, ref: _FieldRef, traj: int, frames: slice, n_frames: int) -> np.ndarray:
        if self._memory is None:
            d = self._file(k)[ref.path]
        else:
            arrays, rows = self._memory[k]
            d, traj = arrays[ref.path], rows[traj]
        a = d[traj, frames] if ref.time_varying else np.repeat(d[traj][None], n_frames, axis=0)
        if ref.rank == 0:
            return a[..., None]
        return a.reshape(*a.shape[: 1 + len(self.spatial_shape)], -1)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, traj, start = self.sample_index(item)
        fin, fout = self._frames(start)
        n_in, n_out = fin.stop - fin.start, fout.stop - fout.start
        parts = [self._read(k, r, traj, fin, n_in) for r in self.inputs]
        if self.parameters:
            values = self._param_values[k][traj]
            parts.append(np.broadcast_to(values, (n_in, *self.spatial_shape, len(values))))
        if self.task.mode == "time":
            parts.append(np.full((n_in, *self.spatial_shape, 1), self.lead_time(start)))
        x = np.concatenate(parts, axis=-1)
        y = np.concatenate([self._read(k, r, traj, fout, n_out) for r in self.targets], axis=-1)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), \
            torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))

    def stats(self) -> dict[str, np.ndarray]:
        """Per-channel mean and standard deviation over every stored frame of these files.

        Returns ``x_mean, x_std`` of shape ``(C_in,)`` and ``y_mean, y_std`` of shape ``(C_out,)``
        (float64), streamed one trajectory at a time so memory stays bounded. Only the trajectories
        this dataset uses count (see ``trajectories``).
        """
        acc: dict[str, list[float]] = {}  # channel → [count, mean, sum of squared deviations]
        nd = self.n_dims
        for p, trajs in zip(self.files, self._trajs):
            with open_h5(p) as f:
                for r in self._refs:
                    d = f[r.path]
                    for i in trajs:
                        a = np.asarray(d[i], dtype=np.float64)
                        a = a[..., None] if r.rank == 0 else a.reshape(*a.shape[: a.ndim - r.rank], -1)
                        flat = a.reshape(-1, a.shape[-1])
                        for c, name in enumerate(_channel_names(r, nd)):
                            merge_moments(acc.setdefault(name, [0, 0.0, 0.0]), flat[:, c])

        def ms(names):
            mean = np.array([acc[c][1] for c in names])
            return mean, np.sqrt(np.array([acc[c][2] / acc[c][0] for c in names]))

        # A parameter channel is constant per sample, so each trajectory counts once.
        values = (np.concatenate([v[t] for v, t in zip(self._param_values, self._trajs)]) if self.parameters
                  else np.zeros((1, 0)))
        for c, name in enumerate(self.parameters):
            acc[name] = merge_moments([0, 0.0, 0.0], values[:, c])
        if self.task.mode == "time":  # every trajectory has the same lead times
            acc[LEAD_TIME] = merge_moments([0, 0.0, 0.0], np.array([self.lead_time(j) for j in self._window_starts]))
        x_mean, x_std = ms(self.input_channels)
        y_mean, y_std = ms(self.target_channels)
        return {"x_mean": x_mean, "x_std": x_std, "y_mean": y_mean, "y_std": y_std}

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = {}, None
        return state


def merge_moments(acc: list, values: np.ndarray) -> list:
    """Fold ``values`` (any shape, float64) into ``acc = [count, mean, M2]`` in place (M2: the sum of
    squared deviations from the mean) and return it; the variance is ``M2 / count``.

    Each batch is centred on its own mean before squaring and batches are combined with Chan, Golub
    and LeVeque's update, so a constant channel gets a variance of (numerically) zero. The one-pass
    ``E[x²] − E[x]²`` leaves round-off of order ``eps·mean²``: 2e-16 for a constant 0.3, a standard
    deviation of 1.5e-8 that passes the normaliser's 1e-12 floor and scales the channel by 1e8
    wherever it is not exactly 0.3."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    n_b = values.size
    if n_b == 0:
        return acc
    mean_b = values.mean()
    m2_b = float(np.square(values - mean_b).sum())
    n_a, mean_a, m2_a = acc
    n = n_a + n_b
    delta = mean_b - mean_a
    acc[0], acc[1], acc[2] = n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n
    return acc


def _parameter_values(f: h5py.File, specs: Sequence[str], path) -> np.ndarray:
    """``(n_trajectories, len(specs))`` float64 values of parameter specs (``name`` or ``log:name``)."""
    cols = []
    for spec in specs:
        log, _, name = spec.rpartition(":")
        if log not in ("", "log"):
            raise UserError(f"parameter spec {spec!r} is not NAME or log:NAME")
        if name not in f["scalars"]:
            have = ", ".join(f["scalars"].keys())
            raise UserError(f"{path} has no parameter {name!r}; it has: {have}")
        v = np.asarray(f[f"scalars/{name}"][()], dtype=np.float64)
        if log:
            if np.any(v <= 0):
                raise UserError(f"parameter {name!r} has non-positive values in {path}; log:{name} needs them positive")
            v = np.log(v)
        cols.append(v)
    n = attr_value(f.attrs["n_trajectories"])
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))


def varying_parameters(files: Sequence[str | Path], log_span: float = 10.0) -> list[str]:
    """Parameter specs for every scalar that varies across ``files``.

    A positive parameter spanning more than ``log_span`` (max/min) enters as its logarithm.
    """
    values: dict[str, list[np.ndarray]] = {}
    for p in files:
        with h5py.File(p, "r") as f:
            for name, d in f["scalars"].items():
                values.setdefault(name, []).append(np.asarray(d[()], dtype=np.float64))
    specs = []
    for name in sorted(values):
        v = np.concatenate(values[name])
        lo, hi = v.min(), v.max()
        if hi > lo:
            specs.append(f"log:{name}" if lo > 0 and hi / lo > log_span else name)
    return specs


def open_split(data: str | Path, split: str, levels: Sequence[str] | None = None, task: Task | None = None,
               parameters: Sequence[str] = (),
               trajectories: Mapping[int, Sequence[int]] | None = None, preload: bool = False) -> FieldDataset:
    """The ``split`` of a dataset directory (or a single file) as a :class:`FieldDataset`.

    ``parameters``: parameter specs appended as constant input channels (see the module docstring).
    ``trajectories``: file number (in :func:`list_files` order) → trajectories to use; ``None`` = all.
    ``preload``: hold the used trajectories in memory (see :class:`FieldDataset`).
    """
    return FieldDataset(list_files(data, split, levels), task=task, parameters=parameters,
                        trajectories=trajectories, preload=preload)
