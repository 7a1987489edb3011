"""Evaluate a trained run against ground truth, per difficulty level.

Writes ``metrics.json`` (every metric of :mod:`pde_lab.evaluation.metrics`, per sample and
summarised, per level and overall, plus the model's and the classical solver's time for the same
samples; for a model trained on the ``window`` task also its autoregressive rollout error against
time per level and the metrics of the persistence baseline (every output frame = the last input frame),
for the ``time`` task its error per lead time, see :mod:`~pde_lab.evaluation.rollout`) and
``predictions_<split>.h5`` (predictions and truth, for plotting without re-running; on a mesh also
each level's ``mesh_nodes`` and ``mesh_cells``),
into the run directory or, with ``out``, a directory of their own: one per dataset when a model is
evaluated at several resolutions, since each evaluation replaces the files of the last.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

from ..datasets.reader import FieldDataset, list_files, space_weights_name
from ..datasets.writer import attr_value
from ..errors import UserError, check_integer
from ..pdes.base import Task
from ..training.checkpoint import load_run
from ..training.config import resolve_device
from .metrics import compute_metrics, summarize
from .rollout import persistence, persistence_channels, rollout, time_curve


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(run_dir: str | Path, data: str | Path, split: str = "test", levels: Sequence[str] | None = None,
             device: str = "auto", batch_size: int = 32, save_predictions: bool = True,
             out: str | Path | None = None, checkpoint: str = "best") -> dict:
    """Evaluate a checkpoint of ``run_dir`` on ``split`` of ``data``; returns the metrics dict.

    Model time is the wall time of the forward passes alone (after one warm-up batch, synchronised on
    CUDA); solver time is the generation wall time recorded for the same trajectories.

    ``checkpoint``: ``"best"`` (lowest validation loss, the default), ``"last"`` (the final epoch's,
    what a paper that trains for a fixed number of epochs reports) or a checkpoint file.

    ``levels``: the levels to evaluate; ``None``: every level of ``data``, or for a run trained on
    mesh nodes the levels it was trained on (each level of a mesh family is its own geometry).

    ``out``: the directory for ``metrics.json`` and ``predictions_<split>.h5`` (created; default
    ``run_dir``, whose files of an earlier evaluation are then replaced). The plotting functions take
    it where they take a run directory.
    """
    run_dir = Path(run_dir)
    batch_size = check_integer("batch_size", batch_size)
    dev = torch.device(resolve_device(device))
    run = load_run(run_dir, checkpoint=checkpoint, device=str(dev))
    dest = run_dir if out is None else Path(out)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"evaluation output {dest} exists and is not a directory")
    task = Task(**run.config.task) if isinstance(run.config.task, dict) else run.config.task
    if levels is None and run.on_mesh:
        # Each level of a mesh family is its own geometry; a run learnt one of them.
        levels = run.config.levels
    files = list_files(data, split, levels)
    # Made here, removed again if the evaluation fails: a failed run leaves no empty folders behind.
    made = [d for d in (dest, *dest.parents) if not d.exists()]
    dest.mkdir(parents=True, exist_ok=True)
    result: dict = {"run": str(run_dir), "data": str(data), "split": split, "device": str(dev),
                    "checkpoint": str(run.checkpoint_path), "levels": {}}
    pred_path = dest / f"predictions_{split}.h5"
    partial = pred_path.with_name(pred_path.name + ".partial")
    store = None
    all_metrics: dict[str, list[torch.Tensor]] = {}
    all_persistence: dict[str, list[torch.Tensor]] = {}
    totals = {"model_seconds": 0.0, "solver_seconds": 0.0, "n": 0}
    try:
        # track_order: readers list the levels as evaluated and the coordinates in axis order (the
        # default is alphabetical, which made figures default to another level and could swap axes)
        store = h5py.File(partial, "w", track_order=True) if save_predictions else None
        for path in files:
            trained_on = run.data.get("pde_name")
            try:
                ds = FieldDataset([path], task=task, parameters=run.config.parameters or ())
            except UserError as err:
                holds = _pde_of(path)
                if trained_on and holds and holds != trained_on:  # the likelier cause of whatever failed
                    raise UserError(f"{path} holds PDE {holds!r}, the run was trained on {trained_on!r}, and "
                                    f"its inputs do not fit the run: {err}") from None
                raise
            level = ds.levels[0]
            if run.on_mesh != (ds.points is not None):
                raise UserError(f"{path} holds fields on {'mesh nodes' if ds.points is not None else 'a grid'}, "
                                f"the run was trained on {'mesh nodes' if run.on_mesh else 'a grid'}")
            if trained_on and ds.pde_name != trained_on:
                # Maybe a transfer study, maybe a mistyped path: either way it must not pass unnoticed.
                warnings.warn(f"{path} holds PDE {ds.pde_name!r}, the run was trained on {trained_on!r}", stacklevel=2)
            loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
            copy = persistence_channels(ds)
            preds, trues, model_s = [], [], 0.0
            baseline: dict[str, list[torch.Tensor]] = {}  # per-sample metrics, not fields: less memory
            with torch.no_grad():
                warm = next(iter(loader))[0].to(dev)
                try:
                    run.predict(warm, points=ds.points)
                except UserError as err:
                    hint = "; pick the levels with --levels" if run.on_mesh else ""
                    raise UserError(f"level {level!r} ({path}): {err}{hint}") from None
                for x, y in loader:
                    x = x.to(dev)
                    _sync(dev)
                    t0 = time.perf_counter()
                    p = run.predict(x, points=ds.points)
                    _sync(dev)
                    model_s += time.perf_counter() - t0
                    y = y.to(dev)
                    preds.append(p.float())
                    trues.append(y)
                    if copy is not None:
                        for k, v in compute_metrics(persistence(x, copy, y.shape[1]), y, weights=ds.weights).items():
                            baseline.setdefault(k, []).append(v)
            pred, true = torch.cat(preds), torch.cat(trues)
            per_sample = compute_metrics(pred, true, weights=ds.weights)
            with h5py.File(path, "r") as f:
                trajectories = sorted({ds.sample_index(i)[1] for i in range(len(ds))})
                solver_s = float(f["trajectories/wall_time"][()][trajectories].sum())
                if store is not None:
                    _store_level(store, level, f, ds.target_channels, pred, true, on_mesh=ds.points is not None)
            entry = summarize(per_sample)
            entry.update(n=len(ds), space_weights=space_weights_name(ds),
                         model_seconds=model_s, solver_seconds=solver_s,
                         speedup=solver_s / model_s if model_s > 0 else None,
                         per_sample={k: v.double().cpu().tolist() for k, v in per_sample.items()})
            # ds.task: the reader's, which is the PDE's default when the run recorded none (a run of
            # `fit` on in-memory data), where `task` is None
            if baseline:
                copied = {k: torch.cat(v) for k, v in baseline.items()}
                entry["persistence"] = summarize(copied)
                for k, v in copied.items():
                    all_persistence.setdefault(k, []).append(v)
            if ds.task.mode == "window" and ds.n_times is not None:
                entry["error_vs_time"] = rollout(run, ds, batch_size=batch_size).summary()
            elif ds.task.mode == "time":
                entry["error_vs_time"] = time_curve(ds, per_sample["relative_l2"])
            result["levels"][level] = entry
            for k, v in per_sample.items():
                all_metrics.setdefault(k, []).append(v)
            totals["model_seconds"] += model_s
            totals["solver_seconds"] += solver_s
            totals["n"] += len(ds)
            ds.close()
        overall = summarize({k: torch.cat(v) for k, v in all_metrics.items()})
        overall.update(totals)
        overall["speedup"] = totals["solver_seconds"] / totals["model_seconds"] if totals["model_seconds"] else None
        if all_persistence and len(all_persistence["relative_l2"]) == len(files):
            overall["persistence"] = summarize({k: torch.cat(v) for k, v in all_persistence.items()})
        result["overall"] = overall
        if store is not None:
            store.close()
            partial.replace(pred_path)
    except BaseException:
        if store is not None:
            store.close()
            partial.unlink(missing_ok=True)
        for d in made:  # deepest first; stops at the first that is not empty
            try:
                d.rmdir()
            except OSError:
                break
        raise
    tmp = dest / "metrics.json.partial"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(dest / "metrics.json")
    return result


def _store_level(store: h5py.File, level: str, f: h5py.File, channels: Sequence[str], pred: torch.Tensor,
                 true: torch.Tensor, on_mesh: bool) -> None:
    """Write one level's predictions and truths (``(S, T, *space, C)``) into the predictions file, with
    the spatial axes of its data file ``f`` (once, so figures show physical coordinates) and, on a mesh,
    the level's own nodes and triangles (to draw its fields)."""
    if "coords" not in store:
        c = store.create_group("coords", track_order=True)
        for axis in f["dimensions"].attrs["spatial_dims"]:
            c.create_dataset(axis, data=f[f"dimensions/{axis}"][()])
    g = store.create_group(level)
    if on_mesh:
        g.create_dataset("mesh_nodes", data=f["mesh/nodes"][()])
        g.create_dataset("mesh_cells", data=f["mesh/cells"][()])
    g.attrs["channels"] = np.array(list(channels), dtype=h5py.string_dtype())
    g.create_dataset("prediction", data=pred.cpu().numpy().astype(np.float32))
    g.create_dataset("truth", data=true.cpu().numpy().astype(np.float32))


def format_metrics(result: dict) -> str:
    """A table of the headline numbers per level."""
    rows = [f"{'level':<10} {'n':>5} {'rel L2':>10} {'rel L1':>10} {'nRMSE':>10} {'max err':>10} {'model s':>9} {'solver s':>9} {'speed-up':>9}"]
    items = list(result["levels"].items()) + [("all", result["overall"])]
    for name, m in items:
        sp = m.get("speedup")
        rows.append(f"{name:<10} {m['n']:>5} {m['relative_l2']['mean']:>10.4g} {m['relative_l1']['mean']:>10.4g} "
                    f"{m['nrmse']['mean']:>10.4g} {m['max_error']['mean']:>10.4g} {m['model_seconds']:>9.3g} "
                    f"{m['solver_seconds']:>9.3g} {(f'{sp:.3g}x' if sp else '-'):>9}")
    copied = [(name, m["persistence"]["relative_l2"]["mean"]) for name, m in items if "persistence" in m]
    if copied:
        rows.append("persistence (every output frame = the last input frame), rel L2: "
                    + ", ".join(f"{name} {value:.4g}" for name, value in copied))
    return "\n".join(rows)


def _pde_of(path: Path) -> str | None:
    """The ``pde`` root attribute of a pde_lab file, or ``None`` if it cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            return str(attr_value(f.attrs["pde"]))
    except (OSError, KeyError):
        return None
