"""pde_lab: classical PDE solvers, multi-difficulty HDF5 datasets, neural operators and their evaluation.

The four verbs, from a script::

    import pde_lab as pl
    pl.generate(pl.GenerateConfig(pde="burgers", out="data/b", levels=["easy", "hard"]))
    run_dir = pl.train(pl.TrainConfig(data="data/b", model="fno", out="runs/b", epochs=50))
    metrics = pl.evaluate(run_dir, "data/b", split="test")
    fig = pl.plot_error_field(pl.load_run(run_dir), sample=3)
"""
__version__ = "0.2.2"

from .datasets import GenerateConfig, generate, open_dataset, open_split, validate_path  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .pdes import PDES, get_pde  # noqa: E402
from .plotting import (plot_error_by_level, plot_error_field, plot_loss_curve, plot_rollout_error,  # noqa: E402
                       plot_spectrum)
from .training import TrainConfig, train  # noqa: E402
from .training.checkpoint import load_run  # noqa: E402

__all__ = ["GenerateConfig", "generate", "open_dataset", "open_split", "validate_path", "evaluate", "PDES",
           "get_pde", "plot_error_field", "plot_error_by_level", "plot_loss_curve", "plot_rollout_error", "plot_spectrum",
           "TrainConfig", "train", "load_run", "__version__"]
