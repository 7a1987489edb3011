"""Neural operators, registered by name in :data:`MODELS`.

``build_model("fno", in_channels=1, out_channels=1, n_dims=2)`` builds one; ``load_model(path)``
rebuilds one from a saved file or training checkpoint without the training code.
"""
from .base import (MODELS, Operator, build_model, data_arguments, load_model, model_parameters,
                   model_payload, register_model, save_model)

# Importing the modules registers their models.
from . import cno, deeponet, ffno, fno, pinn, transformer, unet  # noqa: E402,F401
from .cno import CNO  # noqa: E402
from .deeponet import DeepONet  # noqa: E402
from .ffno import FFNO, FactorizedSpectralConv  # noqa: E402
from .fno import FNO, SpectralConv  # noqa: E402
from .pinn import PINNMLP  # noqa: E402
from .transformer import GalerkinTransformer  # noqa: E402
from .unet import UNet  # noqa: E402

__all__ = ["MODELS", "Operator", "build_model", "data_arguments", "load_model", "model_parameters",
           "model_payload", "register_model", "save_model", "FNO", "SpectralConv", "PINNMLP", "FFNO",
           "FactorizedSpectralConv", "UNet", "DeepONet", "CNO", "GalerkinTransformer"]
