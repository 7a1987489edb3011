"""Training loops, configs, checkpoints and run directories.

``train(TrainConfig(...))`` trains a registered model on a dataset directory and returns the run
directory; ``load_run(run_dir)`` brings a trained model back with its normaliser for prediction.
See ``docs/training.md``.
"""
from .checkpoint import (Normalizer, Run, from_model_layout, load_checkpoint, load_run, predict_batch,
                         save_checkpoint, to_model_layout)
from .config import TrainConfig
from .trainer import fit, relative_l2, train

__all__ = ["Normalizer", "Run", "TrainConfig", "fit", "from_model_layout", "load_checkpoint", "load_run",
           "predict_batch", "relative_l2", "save_checkpoint", "to_model_layout", "train"]
