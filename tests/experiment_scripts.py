"""Import an experiment script (``experiments/<name>/<file>.py``) as a module, for the tests that
check the reproduction scripts at a toy scale."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(relative: str) -> ModuleType:
    """The script at ``experiments/<relative>`` (e.g. ``"pinn_poisson/kfac_paper_draw.py"``), imported
    under a name of its own; it is registered in ``sys.modules`` because dataclasses resolve the
    script's annotations through it."""
    path = EXPERIMENTS / relative
    name = "experiment_" + relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
