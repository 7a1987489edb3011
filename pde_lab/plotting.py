"""Figures for papers: error fields, loss curves, errors by difficulty level, rollout errors, energy spectra.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show``. Figures are
built on :class:`~matplotlib.figure.Figure` directly rather than through ``pyplot``, so they work
headless, are not kept alive by pyplot's global registry when a script makes hundreds of them, and
still display in a notebook when returned. Save them with ``fig.savefig(path)``.

Plotting never retrains or re-evaluates: figures read what the evaluator wrote into the run
directory (``predictions_<split>.h5``, ``metrics.json``) and what the trainer wrote (``log.csv``).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .errors import UserError
from .evaluation.metrics import energy_spectrum
from .meshes import lumped_mass

if TYPE_CHECKING:
    import torch

    from .grids import CartesianGrid
    from .meshes import TriangleMesh

__all__ = ["plot_error_field", "plot_error_by_level", "plot_loss_curve", "plot_rollout_error", "plot_spectrum"]

_PANEL_TITLES = ("truth", "prediction", "|prediction − truth|")
_EMPTY_SHELL = 1e-12
"""Shells whose truth energy is below this fraction of the peak shell are left off spectrum plots."""


class _RunLike(Protocol):
    """A run as the figures accept it: anything with a ``run_dir``, e.g. a
    :class:`pde_lab.training.checkpoint.Run` from :func:`~pde_lab.training.checkpoint.load_run`."""

    @property
    def run_dir(self) -> str | os.PathLike: ...


# --------------------------------------------------------------------------------------------------
# inputs


def _to_numpy(x) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _is_run_like(obj) -> bool:
    return isinstance(obj, (str, os.PathLike)) or hasattr(obj, "run_dir")


def _run_dir(run) -> Path:
    path = Path(run.run_dir if hasattr(run, "run_dir") else run)
    if not path.is_dir():
        raise UserError(f"run directory {str(path)!r} does not exist")
    return path


def _decode_names(raw) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, (str, bytes)):
        raw = [raw]
    return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]


def _read_predictions(run, split: str, level: str | None, index) -> dict[str, Any]:
    """Read ``truth`` and ``prediction`` rows ``index`` of one level from ``predictions_<split>.h5``.

    Returns a dict with ``truth``, ``prediction`` (``(*index_shape, T, *space, C)``), ``channels``,
    ``level``, ``n_samples`` and ``path``.
    """
    import h5py  # only the run form needs it

    run_dir = _run_dir(run)
    path = run_dir / f"predictions_{split}.h5"
    if not path.is_file():
        have = sorted(p.name for p in run_dir.glob("predictions_*.h5"))
        if have:  # an evaluation of another split is there (an --out directory holds only its own)
            raise UserError(f"no predictions file {str(path)!r}; {run_dir} holds {', '.join(have)}: "
                            f"pass split= one of {[h[len('predictions_'):-3] for h in have]}")
        raise UserError(
            f"no predictions file {str(path)!r}; run `pde-lab evaluate --run {run_dir} --split {split}` "
            "first to write it"
        )
    with h5py.File(path, "r") as f:
        levels = [name for name in f if isinstance(f[name], h5py.Group) and name != "coords"]
        if not levels:
            raise UserError(f"{str(path)!r} holds no level groups")
        if level is None:
            # Default to the first level the evaluator wrote; the figure title names it.
            level = levels[0]
        elif level not in levels:
            raise UserError(f"unknown level {level!r} in {str(path)!r}; allowed: {', '.join(levels)}")
        group = f[level]
        for name in ("prediction", "truth"):
            if name not in group:
                raise UserError(f"{str(path)!r} has no dataset {level}/{name}")
        n = group["truth"].shape[0]
        if isinstance(index, (int, np.integer)):
            if not -n <= index < n:
                raise UserError(f"sample {index} out of range: level {level!r} of {split} has {n} samples")
            index = int(index) % n
        return {
            "truth": np.asarray(group["truth"][index], dtype=np.float64),
            "prediction": np.asarray(group["prediction"][index], dtype=np.float64),
            "channels": _decode_names(group.attrs.get("channels")),
            "level": level,
            "coords": {k: d[()] for k, d in f["coords"].items()} if "coords" in f else None,
            "mesh": (group["mesh_nodes"][()], group["mesh_cells"][()]) if "mesh_nodes" in group else None,
            "n_samples": n,
            "path": path,
        }


def _coord_arrays(coords) -> tuple[list[np.ndarray] | None, list[str]]:
    """Normalise ``coords`` to a list of 1D arrays, one per space axis, and axis names if known."""
    if coords is None:
        return None, []
    if hasattr(coords, "axis") and hasattr(coords, "dim"):  # a CartesianGrid
        return [np.asarray(coords.axis(i), dtype=np.float64) for i in range(coords.dim)], list(coords.axis_names)
    if isinstance(coords, Mapping):
        return [_to_numpy(v).reshape(-1) for v in coords.values()], [str(k) for k in coords]
    if getattr(coords, "ndim", None) == 1:  # one array: the single axis of a 1D field
        return [_to_numpy(coords)], []
    items = list(coords)
    if all(np.ndim(c) == 0 for c in items):  # a plain list of numbers
        return [_to_numpy(items)], []
    return [_to_numpy(c).reshape(-1) for c in items], []


def _space_dims(ndim: int, space_dims: int | None) -> int:
    if space_dims is not None:
        if space_dims not in (1, 2):
            raise UserError(f"space_dims must be 1 or 2 for a field plot, got {space_dims}")
        return space_dims
    if ndim == 1:
        return 1
    if ndim == 2:
        return 2
    if ndim == 4:
        return 2
    raise UserError(
        f"cannot tell the layout of a {ndim}-axis array: a 3-axis array is (H, W, C) or (T, X, C); "
        "pass space_dims=2 or space_dims=1 (or coords)"
    )


def _select_frame(x: np.ndarray, d: int, time_index: int, channel: int, name: str) -> np.ndarray:
    """``(*space)``, ``(*space, C)`` or ``(T, *space, C)`` -> ``(*space)``."""
    if x.ndim == d + 2:
        T = x.shape[0]
        if not -T <= time_index < T:
            raise UserError(f"time_index {time_index} out of range for {name} with {T} time steps")
        x = x[time_index]
    if x.ndim == d + 1:
        C = x.shape[-1]
        if not -C <= channel < C:
            raise UserError(f"channel {channel} out of range for {name} with {C} channels")
        x = x[..., channel]
    if x.ndim != d:
        raise UserError(
            f"{name} has shape {x.shape}; expected (*space), (*space, C) or (T, *space, C) "
            f"with {d} space axes"
        )
    return x


def _limits(*arrays: np.ndarray, floor: float | None = None) -> tuple[float, float]:
    """Common (min, max) over the finite values of ``arrays``, widened if the range is empty."""
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if floor is not None:
        lo = floor
    if hi <= lo:
        # Matplotlib cannot map a zero-width range; widen it so a constant field still draws.
        pad = abs(hi) * 0.05 or 1.0
        hi = lo + pad if floor is not None else hi + pad
        lo = lo if floor is not None else lo - pad
    return lo, hi


def _take_axes(ax, n: int, what: str) -> list[Axes]:
    if isinstance(ax, Axes):
        ax = [ax]
    ax = list(ax)
    if len(ax) != n:
        raise UserError(f"{what} draws {n} panels: pass ax as a sequence of {n} Axes, got {len(ax)}")
    return ax


# --------------------------------------------------------------------------------------------------
# error field


def plot_error_field(
    truth: np.ndarray | torch.Tensor | str | os.PathLike | _RunLike,
    prediction: np.ndarray | torch.Tensor | None = None,
    *,
    sample: int = 0,
    split: str = "test",
    level: str | None = None,
    coords: np.ndarray | Sequence[Any] | Mapping[str, Any] | CartesianGrid | None = None,
    mesh: TriangleMesh | tuple[np.ndarray, np.ndarray] | None = None,
    space_dims: int | None = None,
    time_index: int = -1,
    channel: int | str = 0,
    title: str | None = None,
    cmap: str = "viridis",
    error_cmap: str = "magma",
    ax: Sequence[Axes] | None = None,
) -> Figure:
    """Truth | prediction | absolute error of one frame and channel, side by side.

    Two forms:

    * arrays: ``plot_error_field(truth, prediction)`` with numpy arrays or torch tensors shaped
      ``(*space)``, ``(*space, C)`` or ``(T, *space, C)``; ``time_index`` and ``channel`` pick the
      frame. The number of space axes comes from ``space_dims``, else from ``coords``, else from
      the number of array axes: 1 -> ``(X)``, 2 -> ``(H, W)``, 4 -> ``(T, H, W, C)``; a 3-axis
      array is ambiguous (``(H, W, C)`` or ``(T, X, C)``) and needs ``space_dims``.
    * a run: ``plot_error_field(run, sample=3, split="test", level="hard")`` where ``run`` is what
      :func:`pde_lab.training.checkpoint.load_run` returns (anything with a ``run_dir``) or a run
      directory path. Reads sample ``sample`` of ``RUN_DIR/predictions_<split>.h5`` (datasets
      ``<level>/truth`` and ``<level>/prediction``, ``(N, T_out, *space, C)``, written by
      ``pde-lab evaluate``); ``level=None`` takes the first level in the file; ``channel`` may be
      a name from the level's ``channels`` attribute.

    1D fields are line plots (truth and prediction share their y-range, the prediction panel
    repeats the truth dashed); 2D fields are images with shared colour limits for truth and
    prediction, a colour bar on each panel, and the error on its own scale from 0. Images assume a
    uniform grid; a field shaped ``(Nx, Ny)`` is indexed ``[x, y]`` and drawn with x across.
    Fields on the nodes of a triangle mesh (``mesh`` given, or a run evaluated on a mesh dataset,
    whose predictions file stores each level's mesh) are shaped ``(N)``, ``(N, C)`` or
    ``(T, N, C)`` and drawn on the triangles, linearly interpolated as the P1 solution is.

    Args:
        truth: the true field in the dataset layout without the batch axis (channels last):
            ``(*space)``, ``(*space, C)`` or ``(T, *space, C)``, numpy or torch; or a run / run directory.
        prediction: the predicted field, same shape as ``truth``; ``None`` in the run form.
        sample, split, level: which predictions to read, run form only.
        coords: coordinates of the space axes: a 1D array (1D fields), a sequence of 1D arrays,
            a mapping name -> array, or a :class:`pde_lab.grids.CartesianGrid`; ``None`` uses grid
            indices.
        mesh: for fields on mesh nodes: a :class:`pde_lab.meshes.TriangleMesh` or ``(nodes (N, 2),
            triangles (M, 3))``; the run form reads it from the predictions file.
        space_dims: number of space axes (1 or 2), when the shape alone does not say.
        time_index: frame to draw, for fields with a time axis.
        channel: channel index (or name, run form) to draw.
        title: figure title; by default one naming the sample, frame and channel.
        cmap, error_cmap: colour maps for the fields and for the error (2D).
        ax: three Axes to draw into (e.g. a row of a larger figure); a new figure when ``None``.

    Returns:
        The figure (``ax[0].figure`` when ``ax`` is given).
    """
    names: list[str] = []
    context = ""
    if _is_run_like(truth):
        if prediction is not None:
            raise UserError("pass either a run (with sample=, split=, level=) or truth and prediction arrays")
        data = _read_predictions(truth, split, level, sample)
        t, p, names = data["truth"], data["prediction"], data["channels"]
        space_dims = t.ndim - 2
        mesh = data["mesh"] if mesh is None else mesh
        if coords is None and mesh is None:
            coords = data["coords"]
        context = f"{data['level']} · {split} sample {sample}"
    else:
        if prediction is None:
            raise UserError("plot_error_field needs a prediction next to the truth (or a run)")
        t, p = _to_numpy(truth), _to_numpy(prediction)
        if t.shape != p.shape:
            raise UserError(f"truth and prediction shapes differ: {t.shape} vs {p.shape}")
    if isinstance(channel, str):
        if channel not in names:
            allowed = ", ".join(names) if names else "none known (pass an index)"
            raise UserError(f"unknown channel {channel!r}; allowed: {allowed}")
        channel = names.index(channel)

    nodes = cells = None
    if mesh is not None:
        if coords is not None:
            raise UserError("pass coords (grid axes) or mesh (nodes and triangles), not both; the predictions of "
                            "a run evaluated on a mesh dataset are drawn on its mesh without either")
        nodes, cells = _mesh_arrays(mesh)
        space_dims = 1  # one axis of nodes
    coord_list, axis_names = _coord_arrays(coords)
    if space_dims is None and coord_list is not None:
        space_dims = len(coord_list)
    d = _space_dims(t.ndim, space_dims)
    has_time = t.ndim == d + 2
    t = _select_frame(t, d, time_index, channel, "truth")
    p = _select_frame(p, d, time_index, channel, "prediction")
    if coord_list is not None:
        if len(coord_list) != d or any(len(c) != n for c, n in zip(coord_list, t.shape)):
            raise UserError(
                f"coords have lengths {[len(c) for c in coord_list]} but the field has shape {t.shape}"
            )
    if nodes is not None and len(t) != len(nodes):
        raise UserError(f"the field has {len(t)} values but the mesh {len(nodes)} nodes")
    axis_names = axis_names or ["x", "y"][:d]
    channel_name = names[channel] if names else f"channel {channel}"
    if title is None:
        parts = [context] if context else []
        if has_time:
            parts.append(f"time index {time_index}")
        parts.append(channel_name)
        title = " · ".join(parts)

    err = np.abs(p - t)
    # On a mesh each node weighs its share of the area, as in the evaluation metrics.
    w = 1.0 if nodes is None else lumped_mass(nodes, cells)
    # Plain sums: a NaN in a diverged prediction must show as "nan", not vanish from the number.
    rel = float(np.sqrt(np.sum(w * err**2))) / max(float(np.sqrt(np.sum(w * t**2))), 1e-12)
    err_title = f"{_PANEL_TITLES[2]}  (rel. L2 {rel:.2e})"

    if nodes is not None:
        return _error_field_mesh(t, p, err, nodes, cells, title, err_title, cmap, error_cmap, ax)
    if d == 1:
        return _error_field_1d(t, p, err, coord_list, axis_names, channel_name, title, err_title, ax)
    return _error_field_2d(t, p, err, coord_list, axis_names, title, err_title, cmap, error_cmap, ax)


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _error_field_1d(t, p, err, coord_list, axis_names, channel_name, title, err_title, ax) -> Figure:
    x = coord_list[0] if coord_list is not None else np.arange(t.shape[0])
    xlabel = axis_names[0] if coord_list is not None else f"{axis_names[0]} (grid index)"
    if ax is None:
        fig = _new_figure(13.0, 3.6)
        axes = list(fig.subplots(1, 3))
    else:
        axes = _take_axes(ax, 3, "plot_error_field")
        fig = axes[0].figure
    lo, hi = _limits(t, p)
    margin = 0.05 * (hi - lo)
    axes[0].plot(x, t, color="C0", lw=1.5)
    axes[1].plot(x, t, color="0.55", lw=1.0, ls="--", label="truth")
    axes[1].plot(x, p, color="C1", lw=1.5, label="prediction")
    axes[1].legend(loc="best", fontsize="small", frameon=False)
    axes[2].plot(x, err, color="C3", lw=1.2)
    for a in axes[:2]:
        a.set_ylim(lo - margin, hi + margin)
        a.set_ylabel(channel_name)
    axes[2].set_ylim(0.0, _limits(err, floor=0.0)[1] * 1.05)
    axes[2].set_ylabel("absolute error")
    for a, panel in zip(axes, (_PANEL_TITLES[0], _PANEL_TITLES[1], err_title)):
        a.set_title(panel, fontsize="medium")
        a.set_xlabel(xlabel)
        a.set_xlim(x[0], x[-1])
        a.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def _extent(coord_list, shape) -> tuple[list[float], bool]:
    """imshow extent from cell-centre coordinates (cells half a step beyond the end points)."""
    if coord_list is None:
        return [-0.5, shape[0] - 0.5, -0.5, shape[1] - 0.5], False
    ext = []
    for c in coord_list:
        h = (c[-1] - c[0]) / (len(c) - 1) if len(c) > 1 else 1.0
        ext += [float(c[0] - h / 2), float(c[-1] + h / 2)]
    return ext, True


def _mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    """``(nodes (N, 2), triangles (M, 3))`` of a TriangleMesh or a pair of arrays."""
    if hasattr(mesh, "nodes") and hasattr(mesh, "triangles"):
        nodes, cells = mesh.nodes, mesh.triangles
    else:
        try:
            nodes, cells = mesh
        except (TypeError, ValueError):
            raise UserError("mesh must be a TriangleMesh or a pair (nodes (N, 2), triangles (M, 3))") from None
    nodes, cells = np.asarray(nodes, dtype=np.float64), np.asarray(cells, dtype=np.int64)
    if nodes.ndim != 2 or nodes.shape[1] != 2 or cells.ndim != 2 or cells.shape[1] != 3:
        raise UserError(f"mesh must be nodes (N, 2) and triangles (M, 3), got {nodes.shape} and {cells.shape}")
    return nodes, cells


def _three_panels(aspect: float, ax) -> tuple[Figure, list[Axes]]:
    """A figure with three image panels for a domain of width/height ``aspect`` (or the given ``ax``)."""
    if ax is not None:
        axes = _take_axes(ax, 3, "plot_error_field")
        return axes[0].figure, axes
    # Wide domains (channels past an obstacle) become unreadable slivers in a row: stack them.
    if aspect > 2.2:
        panel_h = min(max(6.0 / aspect, 1.2), 4.0)
        fig = _new_figure(7.5, 3 * (panel_h + 0.6) + 0.4)
        return fig, list(fig.subplots(3, 1))
    # About 3.5 inches of image per panel once the colour bar takes its share of the width;
    # a taller figure would leave colour bars overhanging their images.
    panel_h = min(max(3.5 / aspect, 1.5), 5.0)
    fig = _new_figure(15.0, panel_h + 1.1)
    return fig, list(fig.subplots(1, 3))


def _image_panels(fig, axes, t, p, err, draw, labels, title, err_title, cmap, error_cmap) -> Figure:
    """Truth, prediction (one colour scale) and error (its own, from 0) drawn by ``draw(ax, field,
    cmap, lo, hi) -> mappable`` into ``axes``, each with a colour bar; ``labels``: the axis labels."""
    vmin, vmax = _limits(t, p)
    emin, emax = _limits(err, floor=0.0)
    panels = [(t, cmap, vmin, vmax), (p, cmap, vmin, vmax), (err, error_cmap, emin, emax)]
    for a, (field, cm, lo, hi), panel in zip(axes, panels, (_PANEL_TITLES[0], _PANEL_TITLES[1], err_title)):
        fig.colorbar(draw(a, field, cm, lo, hi), ax=a, shrink=0.9)
        a.set_title(panel, fontsize="medium")
        a.set_xlabel(labels[0])
        a.set_ylabel(labels[1])
    fig.suptitle(title)
    return fig


def _error_field_mesh(t, p, err, nodes, cells, title, err_title, cmap, error_cmap, ax) -> Figure:
    from matplotlib.tri import Triangulation

    span = nodes.max(axis=0) - nodes.min(axis=0)
    fig, axes = _three_panels(float(span[0] / span[1]) if span[1] > 0 else 1.0, ax)
    tri = Triangulation(nodes[:, 0], nodes[:, 1], cells)

    def draw(a, field, cm, lo, hi):
        a.set_aspect("equal")
        # gouraud: linear within each triangle, the P1 interpolant of the nodal values
        return a.tripcolor(tri, field, shading="gouraud", cmap=cm, vmin=lo, vmax=hi)

    return _image_panels(fig, axes, t, p, err, draw, ("x", "y"), title, err_title, cmap, error_cmap)


def _error_field_2d(t, p, err, coord_list, axis_names, title, err_title, cmap, error_cmap, ax) -> Figure:
    extent, physical = _extent(coord_list, t.shape)
    width, height = extent[1] - extent[0], extent[3] - extent[2]
    fig, axes = _three_panels(width / height, ax)
    suffix = "" if physical else " (grid index)"

    def draw(a, field, cm, lo, hi):
        # Fields are indexed [x, y]; imshow draws rows as y, hence the transpose and origin="lower".
        return a.imshow(field.T, origin="lower", extent=extent, cmap=cm, vmin=lo, vmax=hi,
                        aspect="equal", interpolation="nearest")

    return _image_panels(fig, axes, t, p, err, draw, [n + suffix for n in axis_names[:2]], title, err_title,
                         cmap, error_cmap)


# --------------------------------------------------------------------------------------------------
# loss curve


def _read_log(run_or_log) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(run_or_log, Mapping):
        return {k: np.asarray(v, dtype=np.float64) for k, v in run_or_log.items()}, ""
    if isinstance(run_or_log, (list, tuple)):  # rows, e.g. ``Run.log``
        keys = list(run_or_log[0]) if run_or_log else []
        return {k: np.array([float(r.get(k, math.nan)) for r in run_or_log]) for k in keys}, ""
    if hasattr(run_or_log, "run_dir"):
        path = Path(run_or_log.run_dir) / "log.csv"
    else:
        path = Path(run_or_log)
        if path.is_dir():
            path = path / "log.csv"
    if not path.is_file():
        raise UserError(f"no training log {str(path)!r}; train the run first (it writes log.csv)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                v = float(value) if value not in (None, "") else math.nan
            except ValueError:
                v = math.nan
            columns.setdefault(key, []).append(v)
    return {k: np.asarray(v) for k, v in columns.items()}, path.parent.name


def plot_loss_curve(
    run_or_log: str | os.PathLike | _RunLike | Mapping[str, Sequence[float] | np.ndarray] | Sequence[Mapping[str, Any]],
    *,
    show_lr: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Training and validation loss per epoch, on a log scale, with the learning rate.

    Args:
        run_or_log: a run (anything with ``run_dir``), a run directory, a path to ``log.csv``
            (columns ``epoch, train_loss, valid_loss, lr, seconds``; empty or ``nan`` cells are
            epochs without that value, e.g. no validation), a mapping column -> values, or a list
            of row dicts (``Run.log``).
        show_lr: draw the learning rate on a second, log-scaled y axis (grey, dotted).
        title: figure title; the run directory's name by default.
        ax: Axes to draw into; a new figure when ``None``.

    Returns:
        The figure.
    """
    log, name = _read_log(run_or_log)
    for column in ("epoch", "train_loss"):
        if column not in log:
            raise UserError(f"training log lacks column {column!r}; it has {', '.join(log) or 'none'}")
    if ax is None:
        fig = _new_figure(6.5, 4.0)
        ax = fig.subplots()
    fig = ax.figure
    epoch = log["epoch"]
    handles = []
    losses = []
    for column, label, style in (("train_loss", "train", "-"), ("valid_loss", "valid", "-o")):
        if column not in log:
            continue
        y = log[column]
        keep = np.isfinite(y)
        if not keep.any():
            continue
        # Markers only when validation is sparse enough for them to mark individual evaluations.
        marker = "o" if style == "-o" and keep.sum() <= 60 else None
        handles += ax.plot(epoch[keep], y[keep], marker=marker, ms=3, label=label)
        losses.append(y[keep])
    values = np.concatenate(losses) if losses else np.array([1.0])
    # A loss that can be zero or negative (e.g. a log-likelihood) cannot go on a log axis.
    ax.set_yscale("log" if (values > 0).all() else "linear")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    lr = log.get("lr")
    if show_lr and lr is not None and np.isfinite(lr).any():
        keep = np.isfinite(lr)
        twin = ax.twinx()
        handles += twin.plot(epoch[keep], lr[keep], color="0.5", ls=":", label="learning rate")
        if (lr[keep] > 0).all():
            twin.set_yscale("log")
        twin.set_ylabel("learning rate", color="0.4")
    ax.legend(handles=handles, loc="best", frameon=False)
    ax.set_title(title if title is not None else name)
    return fig


# --------------------------------------------------------------------------------------------------
# error by level


def _read_metrics(metrics) -> Mapping:
    if isinstance(metrics, Mapping):
        return metrics
    path = Path(metrics.run_dir if hasattr(metrics, "run_dir") else metrics)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise UserError(f"no metrics file {str(path)!r}; run `pde-lab evaluate` first")
    with open(path) as fh:
        return json.load(fh)


def plot_error_by_level(
    metrics: Mapping[str, Any] | str | os.PathLike | _RunLike,
    metric: str | Sequence[str] = "relative_l2",
    *,
    log: bool = False,
    baseline: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Bar chart of a metric's mean per difficulty level, with one-standard-deviation error bars.

    Args:
        metrics: ``{"levels": {level: {metric: {"mean": .., "std": .., ...}, ...}, ...}}`` as the
            evaluator writes it (a dict, a path to the JSON file, or a run / run directory holding
            ``metrics.json``). Levels are drawn in the order of the dict.
        metric: one metric name, or several for grouped bars (they share one y axis, so pick
            metrics of comparable size).
        log: logarithmic y axis, for levels whose errors differ by orders of magnitude.
        baseline: also mark, as a black dash across each bar, the level's persistence baseline of the
            same metric where the metrics have one (``"persistence"``, written for window tasks).
        title: axes title.
        ax: Axes to draw into; a new figure when ``None``.

    Returns:
        The figure. Error bars are clipped at zero so a wide spread never suggests a negative error.
    """
    data = _read_metrics(metrics)
    levels = data.get("levels") if isinstance(data, Mapping) else None
    if not levels:
        raise UserError('metrics need a non-empty "levels" mapping: {"levels": {level: {metric: {"mean", "std"}}}}')
    names = [metric] if isinstance(metric, str) else list(metric)
    for level_name, entry in levels.items():
        for name in names:
            if name not in entry:
                raise UserError(
                    f"level {level_name!r} has no metric {name!r}; it has {', '.join(entry) or 'none'}"
                )
    if ax is None:
        fig = _new_figure(max(4.5, 1.2 * len(levels) * max(1, len(names)) ** 0.5 + 2.0), 4.0)
        ax = fig.subplots()
    fig = ax.figure
    x = np.arange(len(levels))
    width = 0.8 / len(names)
    has_baseline = False
    for i, name in enumerate(names):
        mean = np.array([float(levels[lv][name]["mean"]) for lv in levels])
        std = np.array([float(levels[lv][name].get("std", 0.0)) for lv in levels])
        below = np.minimum(std, mean) if not log else np.minimum(std, 0.9 * mean)
        centre = x + (i - (len(names) - 1) / 2) * width
        ax.bar(centre, mean, width, yerr=np.vstack([below, std]), capsize=4, label=name, color=f"C{i}", alpha=0.85)
        for k, lv in enumerate(levels):
            if baseline and name in levels[lv].get("persistence", {}):
                # a line, not hlines: the legend's "best" place avoids lines, not collections
                level_value = float(levels[lv]["persistence"][name]["mean"])
                ax.plot([centre[k] - width / 2, centre[k] + width / 2], [level_value] * 2, "k--", lw=1.5,
                        label="_nolegend_" if has_baseline else "persistence")
                has_baseline = True
    ax.set_xticks(x, list(levels))
    ax.set_xlabel("level")
    ax.set_ylabel(names[0] if len(names) == 1 else "error")
    if log:
        ax.set_yscale("log")
    if len(names) > 1 or has_baseline:
        ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.set_axisbelow(True)
    if title is not None:
        ax.set_title(title)
    return fig


def plot_rollout_error(
    metrics: Mapping[str, Any] | str | os.PathLike | _RunLike,
    *,
    levels: Sequence[str] | None = None,
    log: bool = True,
    baseline: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Error against time, one curve per difficulty level: an autoregressive rollout's, or a
    time-conditioned model's per lead time.

    Args:
        metrics: the evaluator's output for a run trained on the ``window`` or ``time`` task (a
            dict, a path to ``metrics.json``, or a run / run directory holding it); each level
            needs its ``"error_vs_time"`` entry (``times``, ``rel_l2_mean``, ``rel_l2_median``,
            ``rel_l2_max``).
        levels: which levels to draw (default: all, in the file's order).
        log: logarithmic error axis (errors typically grow by orders of magnitude along a rollout);
            linear when every error is zero.
        baseline: also draw, dashed in the level's colour, the mean error of persistence (holding
            the first input's last frame) where the metrics have it (``persistence_rel_l2_mean``).
        title: axes title.
        ax: Axes to draw into; a new figure when ``None``.

    Returns:
        The figure: the mean relative L2 error per frame as a line (with a marker per frame for up
        to 30 frames, so a single frame shows), the band from the median to the maximum over
        trajectories shaded, and with ``baseline`` the persistence error dashed.
    """
    data = _read_metrics(metrics)
    entries = data.get("levels") if isinstance(data, Mapping) else None
    if not entries:
        raise UserError('metrics need a non-empty "levels" mapping written by `pde-lab evaluate`')
    names = list(entries) if levels is None else list(levels)
    if not names:
        raise UserError(f"levels must name at least one level; the metrics have {', '.join(entries)}")
    for name in names:
        if name not in entries:
            raise UserError(f"no level {name!r} in the metrics; they have {', '.join(entries)}")
        if "error_vs_time" not in entries[name]:
            raise UserError(f"level {name!r} has no error against time: evaluate a run trained on the "
                            f"window or time task")
    if ax is None:
        ax = _new_figure(5.5, 4.0).subplots()
    fig = ax.figure
    positive = False
    for i, name in enumerate(names):
        r = entries[name]["error_vs_time"]
        t = np.asarray(r["times"], dtype=float)
        mean = np.asarray(r["rel_l2_mean"], dtype=float)
        # A line through one frame (a rollout of a single block of one frame, one lead time) draws
        # nothing without markers; short curves get them, so every frame shows.
        marker = "o" if len(t) <= 30 else None
        ax.plot(t, mean, color=f"C{i}", marker=marker, ms=4, label=f"{name} (mean)")
        ax.fill_between(t, r["rel_l2_median"], r["rel_l2_max"], color=f"C{i}", alpha=0.2, linewidth=0)
        if baseline and "persistence_rel_l2_mean" in r:
            ax.plot(t, r["persistence_rel_l2_mean"], color=f"C{i}", ls="--", lw=1, marker=marker and "x", ms=4,
                    label=f"{name} (persistence)")
        positive = positive or bool((np.asarray(r["rel_l2_max"], dtype=float) > 0).any())
    ax.set_xlabel("t")
    ax.set_ylabel("relative L2 error")
    if log and positive:  # an exact model (all errors 0) has nothing to put on a log axis
        ax.set_yscale("log")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3, which="both")
    if title is not None:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------------------------------
# spectrum


def _dataset_layout(x: np.ndarray, space_dims: int | None, name: str) -> np.ndarray:
    """``(*space)``, ``(*space, C)``, ``(T, *space, C)`` or ``(B, T, *space, C)`` -> the last form."""
    if space_dims is None:
        if x.ndim < 4:
            raise UserError(
                f"{name} has shape {x.shape}: pass (B, T, *space, C), or say space_dims for a smaller array"
            )
        return x
    extra = x.ndim - space_dims
    if extra == 0:
        x = x[..., None]
        extra = 1
    if extra == 1:
        x = x[None]
        extra = 2
    if extra == 2:
        x = x[None]
        extra = 3
    if extra != 3:
        raise UserError(f"{name} has shape {x.shape}, too many axes for space_dims={space_dims}")
    return x


def plot_spectrum(
    truth: np.ndarray | torch.Tensor | str | os.PathLike | _RunLike,
    prediction: np.ndarray | torch.Tensor | None = None,
    *,
    lengths: float | Sequence[float] | None = None,
    space_dims: int | None = None,
    split: str = "test",
    level: str | None = None,
    max_samples: int | None = 64,
    title: str | None = None,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Energy spectra of truth and prediction, and the relative error per wavenumber shell.

    Left panel: the batch-mean energy spectrum ``E(k)`` (:func:`pde_lab.evaluation.metrics.energy_spectrum`)
    of the truth, the prediction and their difference, log-log. Right panel: the relative error per
    shell of the batch, ``sqrt(mean_b E_m(prediction − truth) / mean_b E_m(truth))``: where it nears
    1 the model has lost those scales (the per-sample mean of such ratios,
    :func:`pde_lab.evaluation.metrics.spectral_error`, is ruled by samples with little energy in a
    shell). The ``k = 0`` shell (the mean) is left off the log axes, and so are shells whose
    true energy is below ``1e-12`` of the peak shell's (empty but for round-off; the energy axis is
    cut there too). A dotted line marks the Nyquist wavenumber of the coarsest axis when shells
    beyond it exist (2D corners).

    Args:
        truth: ``(B, T, *space, C)`` periodic fields on a grid in the dataset layout (numpy or torch; a run
            evaluated on mesh nodes is refused), or a smaller array with
            ``space_dims`` (``(*space)``, ``(*space, C)``, ``(T, *space, C)``); or a run / run
            directory, whose ``predictions_<split>.h5`` level ``level`` is read (first
            ``max_samples`` samples).
        prediction: same shape as ``truth``; ``None`` draws the truth spectrum only (array form).
        lengths: period of each space axis (one number for all); ``None`` means ``2π`` (integer
            wavenumbers).
        space_dims: number of space axes for arrays smaller than ``(B, T, *space, C)``.
        split, level, max_samples: run form only (``max_samples=None`` reads every sample).
        title: figure title.
        ax: an Axes (spectra only) or two Axes (spectra, relative error); a new figure when ``None``.

    Returns:
        The figure.
    """
    if _is_run_like(truth):
        if prediction is not None:
            raise UserError("pass either a run (with split=, level=) or truth and prediction arrays")
        data = _read_predictions(truth, split, level, slice(0, max_samples))
        if data["mesh"] is not None:
            raise UserError(f"level {data['level']!r} of {data['path']} holds fields on mesh nodes; energy spectra "
                            f"need a Cartesian grid")
        t, p = data["truth"], data["prediction"]
        if title is None:
            title = f"{data['level']} · {split} · {t.shape[0]} of {data['n_samples']} samples"
    else:
        t = _dataset_layout(_to_numpy(truth), space_dims, "truth")
        p = None if prediction is None else _dataset_layout(_to_numpy(prediction), space_dims, "prediction")
        if p is not None and p.shape != t.shape:
            raise UserError(f"truth and prediction shapes differ: {t.shape} vs {p.shape}")

    k, e_true = energy_spectrum(t, lengths)
    k = k.numpy()
    n_panels = 1 if p is None else 2
    if ax is None:
        fig = _new_figure(5.5 * n_panels, 4.2)
        axes = list(np.atleast_1d(fig.subplots(1, n_panels)))
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        fig = axes[0].figure
    # Wavenumber of the last complete shell: the Nyquist mode of the coarsest axis.
    d = t.ndim - 3
    L = [2 * math.pi] * d if lengths is None else (
        [float(lengths)] * d if isinstance(lengths, (int, float)) else list(lengths)
    )
    k_nyquist = min(n // 2 * 2 * math.pi / length for n, length in zip(t.shape[2:-1], L))

    s = slice(1, None)
    spec = axes[0]
    spec.loglog(k[s], e_true.mean(0).numpy()[s], color="C0", lw=1.8, label="truth")
    if p is not None:
        e_error = energy_spectrum(p - t, lengths).value.mean(0).numpy()
        spec.loglog(k[s], energy_spectrum(p, lengths).value.mean(0).numpy()[s], color="C1", lw=1.4,
                    ls="--", label="prediction")
        spec.loglog(k[s], e_error[s], color="C3", lw=1.0, label="error")
    spec.set_xlabel("wavenumber |k|")
    spec.set_ylabel("energy E(k)")
    spec.set_title("energy spectrum", fontsize="medium")
    e_mean = e_true.mean(0).numpy()
    peak = float(e_mean[s].max()) if len(e_mean) > 1 else 0.0
    # Shells the truth leaves numerically empty (a band-limited field) carry no scale worth a ratio:
    # below float32 resolution their "relative error" is noise over noise and flattens the plot.
    empty = e_mean < _EMPTY_SHELL * peak
    if peak > 0 and empty[s].any():
        spec.set_ylim(bottom=_EMPTY_SHELL * peak)
    if p is not None and len(axes) > 1:
        # The ratio of the batch's energies, as the left panel draws them: a mean of per-sample ratios
        # (spectral_error) is ruled by the few samples with almost no energy in a shell (1.6e4 where
        # the batch ratio was 1.2, on a Burgers run).
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(empty, np.nan, np.sqrt(e_error / e_mean))
        axes[1].loglog(k[s], rel[s], color="C3", lw=1.4)
        axes[1].axhline(1.0, color="0.5", lw=0.8, ls="--")
        axes[1].set_xlabel("wavenumber |k|")
        axes[1].set_ylabel("relative error per shell")
        axes[1].set_title("relative error by scale", fontsize="medium")
    for a in axes:
        if k[-1] > k_nyquist * (1 + 1e-9):
            a.axvline(k_nyquist, color="0.4", lw=0.8, ls=":", label="Nyquist" if a is spec else None)
        a.grid(alpha=0.3, which="both")
    spec.legend(frameon=False)
    if title is not None:
        fig.suptitle(title)
    return fig
