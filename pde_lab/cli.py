"""The ``pde-lab`` command: parses arguments, then calls the library.

Bad input raises :class:`~pde_lab.errors.UserError` somewhere in the library; here it becomes one
line on stderr and exit status 2, with no traceback. A solve that fails on valid input
(:class:`~pde_lab.errors.SolverFailure`: a blow-up, naming the instance's parameters) is one line and
exit status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _key_values(items: list[str], flag: str) -> dict:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (numbers, booleans and none typed as in ``--set``)."""
    from .errors import UserError
    from .training.config import _parse_scalar

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} {item!r} is not of the form KEY=VALUE")
        out[key.strip()] = _parse_scalar(raw.strip())
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pde-lab", description="PDE solvers, datasets and neural operators.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="generate a multi-difficulty dataset into HDF5")
    g.add_argument("--pde", required=True, help="PDE family (see `pde-lab list`)")
    g.add_argument("--levels", type=_csv, default=None, help="comma-separated levels (default: every level of the PDE, paper-reproduction ones such as fno included: pde-lab list)")
    g.add_argument("--n-train", type=int, default=64, help="training trajectories per level (0 with --n-valid 0: a test set alone, same test trajectories)")
    g.add_argument("--n-valid", type=int, default=8, help="validation trajectories per level")
    g.add_argument("--n-test", type=int, default=16, help="test trajectories per level")
    g.add_argument("--resolution", type=int, default=None, help="grid points per axis (default: the PDE's)")
    g.add_argument("--seed", type=int, default=0, help="dataset seed; each sample's derives from it, its level, "
                   "split and index (default 0)")
    g.add_argument("--batch-size", type=int, default=16, help="instances solved together")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto (CUDA when available)")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--workers", type=int, default=1,
                   help="processes solving batches in parallel, one thread each (same bytes as 1)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="generate only shard I of N into --out, for `pde-lab merge` (any machine, any order)")
    g.add_argument("--solver-option", action="append", default=[], metavar="KEY=VALUE", dest="solver_options",
                   help="an argument of the PDE family's constructor, e.g. solver_factor=2 (repeatable; "
                        "recorded in the files)")

    m = sub.add_parser("merge", help="join the shard directories of `generate --shard` into one dataset")
    m.add_argument("shards", nargs="+", help="shard directories (all N of them)")
    m.add_argument("--out", required=True, help="output dataset directory")
    m.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    m.add_argument("--quiet", action="store_true", help="no progress bar")

    v = sub.add_parser("validate", help="check files against the HDF5 format and list every violation")
    v.add_argument("paths", nargs="+", help="files or dataset directories")
    v.add_argument("--no-values", action="store_true",
                   help="check structure only; skip reading fields (NaN/inf, checksums, constant trajectories)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="summarise a dataset file or directory")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")

    t = sub.add_parser("train", help="train a model on a dataset; writes a run directory")
    t.add_argument("--data", help="dataset directory")
    t.add_argument("--pde", help="train a physics-informed network for this PDE instead of an operator on --data "
                                 "(see docs/pinns.md)")
    t.add_argument("--steps", type=int, help="optimizer iterations (PINN runs; --epochs is an alias there)")
    t.add_argument("--model", help="model name (see `pde-lab list`)")
    t.add_argument("--config", help="YAML config; flags and --set override it")
    t.add_argument("--levels", type=_csv, default=None, help="training levels (default: all)")
    t.add_argument("--mix", help="fraction of training trajectories per level, e.g. easy=0.9,hard=0.1 "
                                 "(with --set n_train=N or --set compute_budget=SECONDS; docs/datasets.md)")
    t.add_argument("--epochs", type=int, help="training epochs (default 500; PINN runs: an alias of --steps)")
    t.add_argument("--batch-size", type=int, help="samples per step (default 20)")
    t.add_argument("--lr", type=float, help="learning rate (default 0.001)")
    t.add_argument("--optimizer", help="operator runs: adam (default), adamw, soap, shampoo; PINN runs (--pde): "
                   "engd (default), gauss_newton, lm, kfac, spring, adam, soap, shampoo, multiadam, config, lbfgs, adam+lbfgs "
                   "(docs/pinns.md); arguments go in --set optimizer_args.KEY=VALUE")
    t.add_argument("--time-limit", type=float, help="stop after this many minutes")
    t.add_argument("--seed", type=int, help="seed of the weights, sample order and mixing (default 0)")
    t.add_argument("--device", help="auto, cpu or cuda")
    t.add_argument("--out", help="run directory")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint, with the run's config.yaml "
                   "unless --config is given (flags and --set change only what they name)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model_args.width=32 (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="evaluate a run against ground truth; writes metrics.json")
    e.add_argument("--run", required=True, help="run directory")
    e.add_argument("--data", help="dataset directory (default: the run's training data)")
    e.add_argument("--split", default="test", help="train, valid or test (default test)")
    e.add_argument("--levels", type=_csv, default=None, help="comma-separated levels (default: all of the split)")
    e.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    e.add_argument("--batch-size", type=int, default=32, help="samples per forward pass (default 32)")
    e.add_argument("--checkpoint", default="best",
                   help="best (lowest validation loss; default), last (the final epoch's) or a checkpoint file")
    e.add_argument("--out", default=None,
                   help="directory for metrics.json and predictions_<split>.h5 (default: the run directory, "
                        "replacing an earlier evaluation's)")
    e.add_argument("--json", action="store_true", help="print the metrics JSON")

    d = sub.add_parser("demo", help="generate a small Burgers dataset, train an FNO, evaluate and plot")
    d.add_argument("--out", default="pde_lab_demo", help="directory for data, run and figures")
    d.add_argument("--minutes", type=float, default=1.0, help="training time budget")
    d.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    d.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")

    im = sub.add_parser("import", help="convert another project's HDF5 file (The Well, PDEBench) into a pde_lab file")
    im.add_argument("format", help="the_well or pdebench (see docs/interop.md)")
    im.add_argument("src", help="file to convert")
    im.add_argument("out", help="pde_lab file to write, e.g. data/NAME/train/LEVEL.h5")
    im.add_argument("--level", default=None, help="difficulty level stored in the file (default: 'default', or "
                    "the level of a file pde_lab exported)")
    im.add_argument("--split", default=None, help="train, valid or test (default: train, or the split of a file "
                    "pde_lab exported)")
    im.add_argument("--samples", default=None, metavar="START:STOP", help="pdebench: convert only these samples")
    im.add_argument("--periodic", action="store_true", help="pdebench: the domain is periodic on every axis")
    im.add_argument("--fields", type=_csv, default=None, help="pdebench group files: names of the channels")
    im.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    im.add_argument("--quiet", action="store_true", help="no progress bar")

    w = sub.add_parser("export-well", help="write a whole pde_lab file in The Well's HDF5 layout")
    w.add_argument("file", help="a pde_lab .h5 file")
    w.add_argument("out", help="The Well .hdf5 file to write")
    w.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    w.add_argument("--quiet", action="store_true", help="no progress bar")

    x = sub.add_parser("export", help="export one sample of a dataset file to VTU, XDMF or netCDF")
    x.add_argument("file", help="a pde_lab .h5 file")
    x.add_argument("--index", type=int, default=0, help="trajectory to export (default 0)")
    x.add_argument("--format", default=None, help="vtu (a .pvd + one .vtu per frame), xdmf, netcdf or the_well; "
                   "default: from the --out suffix (.vtu/.pvd, .xdmf, .nc), else vtu")
    x.add_argument("--out", required=True, help="output path (.vtu/.pvd, .xdmf or .nc)")
    x.add_argument("--overwrite", action="store_true", help="replace existing output files")

    sub.add_parser("list", help="list PDE families, levels and models")
    return p


def _generate(a) -> None:
    from .datasets import GenerateConfig, generate

    out = generate(GenerateConfig(pde=a.pde, out=a.out, levels=a.levels, n_train=a.n_train, n_valid=a.n_valid,
                                  n_test=a.n_test, resolution=a.resolution, seed=a.seed, batch_size=a.batch_size,
                                  device=a.device, overwrite=a.overwrite, progress=not a.quiet, workers=a.workers,
                                  shard=a.shard, solver_options=_key_values(a.solver_options, "--solver-option")))
    print(f"wrote {out}")


def _import(a) -> None:
    from .datasets.interop import IMPORT_FORMATS, import_file
    from .datasets.schema import SPLITS
    from .errors import UserError, check_choice

    check_choice("import format", a.format, IMPORT_FORMATS)
    if a.split is not None:
        check_choice("split", a.split, SPLITS)
    # Only what was given: each format has its defaults (a file pde_lab exported keeps its own).
    kwargs = {k: v for k, v in (("level", a.level), ("split", a.split)) if v is not None}
    kwargs.update(progress=not a.quiet, overwrite=a.overwrite)
    if a.format == "pdebench":
        if a.samples:
            start, sep, stop = a.samples.partition(":")
            if not sep or not start.strip().isdigit() or not stop.strip().isdigit():
                raise UserError(f"--samples {a.samples!r} is not START:STOP")
            kwargs["samples"] = (int(start), int(stop))
        kwargs.update(periodic=a.periodic, field_names=a.fields)
    elif a.samples or a.periodic or a.fields:
        raise UserError("--samples, --periodic and --fields apply to the pdebench format only")
    print(f"wrote {import_file(a.format, a.src, a.out, **kwargs)}")


def _export_well(a) -> None:
    from .datasets.interop.the_well import export_well

    print(f"wrote {export_well(a.file, a.out, progress=not a.quiet, overwrite=a.overwrite)}")


def _merge(a) -> None:
    from .datasets.merge import merge_shards

    print(f"wrote {merge_shards(a.shards, a.out, overwrite=a.overwrite, progress=not a.quiet)}")


def _validate(a) -> int:
    from .datasets import validate_path

    bad = 0
    for path in a.paths:
        for file, errs in validate_path(path, check_values=not a.no_values, progress=not a.quiet).items():
            if errs:
                bad += 1
                print(f"{file}: {len(errs)} violation(s)")
                for msg in errs:
                    print(f"  - {msg}")
            else:
                print(f"{file}: ok")
    return 1 if bad else 0


def _export(a) -> None:
    from .datasets.export import SUFFIXES, export_sample

    fmt = a.format or next((f for f, ends in SUFFIXES.items() if Path(a.out).suffix in ends), "vtu")
    for path in export_sample(a.file, a.index, fmt, a.out, overwrite=a.overwrite):
        print(f"wrote {path}")


def _info(a) -> None:
    from .datasets import format_summary, summarize

    s = summarize(a.path)
    print(json.dumps(s, indent=2) if a.json else format_summary(s))


def _train_config(a):
    import dataclasses

    from .errors import UserError
    from .training.config import TrainConfig

    if a.steps is not None:
        raise UserError("--steps counts a PINN's optimizer steps (--pde); operator training on --data counts --epochs")

    stored = Path(a.out) / "config.yaml" if a.out else None
    if a.resume and a.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite deletes it: give one of them")
    if a.resume and not a.config and stored is not None and not stored.is_file():
        raise UserError(f"cannot resume {a.out}: it holds no run (no config.yaml)")
    if a.config:
        cfg = TrainConfig.from_yaml(a.config)
    elif a.resume and stored is not None and stored.is_file():
        if not (stored.parent / "checkpoints" / "last.pt").is_file():
            raise UserError(f"cannot resume {a.out}: it has no checkpoints/last.pt (a PINN run, or a run that "
                            f"never finished an epoch)")
        # A resume continues the run as it was configured; the flags given change only what they name
        # (the progress bar is this call's: --quiet).
        cfg = dataclasses.replace(TrainConfig.from_yaml(stored), progress=True)
    else:
        cfg = TrainConfig()
    flags = {"data": a.data, "model": a.model, "levels": a.levels, "epochs": a.epochs, "batch_size": a.batch_size,
             "lr": a.lr, "optimizer": a.optimizer, "time_limit_minutes": a.time_limit, "seed": a.seed,
             "device": a.device, "out": a.out, "level_mix": a.mix}
    overrides = [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in flags.items() if v is not None]
    if a.overwrite:
        overrides.append("overwrite=true")
    if a.resume:
        overrides.append("resume=true")
    if a.quiet:
        overrides.append("progress=false")
    return cfg.apply_overrides(overrides + list(a.overrides))


def _train_pinn(a) -> None:
    from .errors import UserError
    from .training.pinn import PINNConfig, train_pinn

    if a.data is not None:
        raise UserError("give either --data (train an operator on a dataset) or --pde (train a PINN), not both")
    if a.resume:
        raise UserError("PINN runs cannot be resumed; start a new run or use --overwrite")
    ignored = [flag for flag, value in (("--batch-size", a.batch_size), ("--levels", a.levels), ("--mix", a.mix))
               if value is not None]
    if ignored:
        raise UserError(f"{', '.join(ignored)} apply to operator training on --data, not to a PINN (--pde)")
    if a.steps is not None and a.epochs is not None:
        raise UserError("give --steps or --epochs (its alias for PINN runs), not both")
    cfg = PINNConfig.from_yaml(a.config) if a.config else PINNConfig()
    flags = {"pde": a.pde, "model": a.model, "optimizer": a.optimizer, "lr": a.lr,
             "steps": a.steps if a.steps is not None else a.epochs, "time_limit_minutes": a.time_limit,
             "seed": a.seed, "device": a.device, "out": a.out}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if a.overwrite:
        overrides.append("overwrite=true")
    if a.quiet:
        overrides.append("progress=false")
    cfg = cfg.apply_overrides(overrides + list(a.overrides))
    if not cfg.out:
        raise UserError("train needs --out (or 'out' in --config)")
    print(f"run directory: {train_pinn(cfg)}")


def _train(a) -> None:
    from .errors import UserError
    from .training import train
    from .training.distributed import env_rank

    if a.pde is not None:
        return _train_pinn(a)
    cfg = _train_config(a)
    for key in ("data", "model", "out"):
        if not getattr(cfg, key):
            raise UserError(f"train needs --{key} (or '{key}' in --config)")
    run = train(cfg)
    if env_rank() == 0:  # under torchrun every rank returns here: one line, from the one that wrote the run
        print(f"run directory: {run}")


def _evaluate(a) -> None:
    from .evaluation import evaluate, format_metrics
    from .training.checkpoint import load_run
    from .training.config import resolve_device

    resolve_device(a.device)  # a bad --device fails here, before the run is loaded
    data = a.data or load_run(a.run, device="cpu").config.data
    res = evaluate(a.run, data, split=a.split, levels=a.levels, device=a.device, batch_size=a.batch_size,
                   out=a.out, checkpoint=a.checkpoint)
    print(json.dumps(res, indent=2) if a.json else format_metrics(res))
    # with --json, stdout holds the JSON alone so that it pipes into a parser
    print(f"wrote {Path(a.out or a.run) / 'metrics.json'}", file=sys.stderr if a.json else sys.stdout)


def _list(a) -> None:
    from .operators import MODELS
    from .pdes import PDES, get_pde

    print("PDE families:")
    for name in PDES.names():
        pde = get_pde(name)
        # Equations run to 200 characters and names to 23: one block per family keeps them readable.
        print(f"  {name}\n      {pde.equation}\n      levels: {', '.join(pde.levels)}")
    print("models:", ", ".join(MODELS.names()))


def _demo(a) -> None:
    from .demo import run_demo

    run_demo(a.out, minutes=a.minutes, device=a.device, overwrite=a.overwrite)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pde-lab``; returns the exit status."""
    from .errors import SolverFailure, TrainingFailure, UserError

    args = _parser().parse_args(argv)
    # One thread per process: on few cores, threads fighting over them make every FFT several times slower.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    if os.environ.get("OMP_NUM_THREADS") == "1":
        torch.set_num_threads(1)
    handlers = {"generate": _generate, "validate": _validate, "info": _info, "train": _train,
                "evaluate": _evaluate, "demo": _demo, "list": _list, "merge": _merge, "import": _import,
                "export-well": _export_well, "export": _export}
    def one_line(message, category, filename, lineno, file=None, line=None):
        # A user reads "pde-lab import: warning: ...", not Python's file, line number and source line.
        print(f"pde-lab {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return handlers[args.command](args) or 0
    except UserError as e:
        print(f"pde-lab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (SolverFailure, TrainingFailure) as e:  # valid input a solve or a training run could not handle
        print(f"pde-lab {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of our output went away (`pde-lab list | head`): not an error
        # Python would report the pipe again when flushing stdout at exit; point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # file-system trouble (unwritable output, disk full): the OS's message says which path
        print(f"pde-lab {args.command}: error: {e}", file=sys.stderr)
        return 1
    except MemoryError as e:  # e.g. a mistyped --resolution: say so in one line, not a NumPy traceback
        size = getattr(args, "resolution", None)
        hint = f" (--resolution {size}: try a smaller one)" if size else ""
        print(f"pde-lab {args.command}: error: out of memory{hint}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = "; run the same command again to resume" if args.command == "generate" else ""
        print(f"interrupted{resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
