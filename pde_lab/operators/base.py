"""The model registry, and saving/rebuilding a model from its name and constructor arguments.

Every neural operator is an :class:`Operator`: an ``nn.Module`` registered under a name with
:func:`register_model`, whose constructor arguments are stored in ``self.config`` (plain Python
values only: numbers, strings, bools, lists, dicts). A model is then fully described by
``{"name": ..., "args": model.config}`` plus its ``state_dict``, so a checkpoint rebuilds the model
without the code that trained it (:func:`load_model`).

Data-dependent arguments. The trainer fills in the constructor arguments ``in_channels``,
``out_channels``, ``n_dims`` and ``n_sensors`` (the number of input points) from the dataset when a
model's constructor accepts them (see :func:`data_arguments`); a model that takes other shapes
declares its own arguments.

Point models. A model whose ``forward`` takes ``coords`` (``forward(x, coords)``: values
``(B, C_in, P)`` at points ``(P, d)`` -> ``(B, C_out, P)``) also learns on unstructured meshes
(:func:`takes_points`); the others read grids only.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry

MODELS: Registry = Registry("model")


class Operator(nn.Module):
    """Base class of the registered models.

    Subclasses set ``self.config`` in ``__init__`` to the dict of their resolved constructor
    arguments (defaults filled in), so ``type(self)(**self.config)`` rebuilds the same architecture.
    ``model_name`` is set by :func:`register_model`.
    """

    model_name: str = ""
    config: dict[str, Any]

    @classmethod
    def stored_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments from the ``args`` a checkpoint stored; a model whose arguments changed
        translates what older checkpoints hold here (:func:`load_model` calls it)."""
        return dict(args)

    def spec(self) -> dict[str, Any]:
        """``{"name": registered name, "args": constructor arguments}``, enough to rebuild the model."""
        if not self.model_name:
            raise TypeError(f"{type(self).__name__} is not registered with register_model")
        return {"name": self.model_name, "args": _plain(self.config)}


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: register an :class:`Operator` subclass in :data:`MODELS` under ``name``."""

    def deco(cls: type) -> type:
        cls.model_name = name
        return MODELS.register(name)(cls)

    return deco


def _plain(value: Any) -> Any:
    """A copy of ``value`` made of plain Python types, so YAML and ``torch.load(weights_only=True)`` accept it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"model argument {value!r} of type {type(value).__name__} is not a plain value")


def model_parameters(name: str) -> list[str]:
    """Names of the constructor arguments of the model registered as ``name``."""
    cls = MODELS.get(name)
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def models_taking(argument: str) -> list[str]:
    """The registered models whose constructor takes ``argument`` (``in_channels``: operators of
    fields; ``in_dim``: networks of points)."""
    return [n for n in MODELS.names() if argument in model_parameters(n)]


def takes_points(name: str) -> bool:
    """Whether the model registered as ``name`` answers at given points: ``forward(x, coords)``."""
    return "coords" in inspect.signature(MODELS.get(name).forward).parameters


def data_arguments(name: str, in_channels: int, out_channels: int, n_dims: int, n_points: int) -> dict[str, int]:
    """The data-dependent constructor arguments that model ``name`` accepts, with their values:
    ``in_channels``, ``out_channels``, ``n_dims`` (the geometric dimension) and ``n_sensors``
    (``n_points``, the number of grid points or mesh nodes a sample holds)."""
    accepted = set(model_parameters(name))
    values = {"in_channels": in_channels, "out_channels": out_channels, "n_dims": n_dims, "n_sensors": n_points}
    return {k: v for k, v in values.items() if k in accepted}


def build_model(name: str, **kwargs: Any) -> Operator:
    """Instantiate the model registered as ``name`` with constructor arguments ``kwargs``.

    Raises :class:`UserError` for an unknown model name or an argument the model does not take
    (naming the arguments it does take).
    """
    cls = MODELS.get(name)
    allowed = model_parameters(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise UserError(f"model {name!r} has no argument {', '.join(map(repr, unknown))}; "
                        f"allowed: {', '.join(allowed)}")
    return cls(**kwargs)


def model_payload(model: Operator) -> dict[str, Any]:
    """``{"name", "args", "state_dict"}`` of ``model``: what :func:`load_model` rebuilds it from, on its
    own or under a checkpoint's ``"model"`` key."""
    return {**model.spec(), "state_dict": model.state_dict()}


def save_model(model: Operator, path: str | os.PathLike) -> None:
    """Write :func:`model_payload` of ``model`` to ``path`` (atomically)."""
    atomic_torch_save(model_payload(model), path)


def load_model(source: str | os.PathLike | Mapping[str, Any], map_location: str | torch.device = "cpu") -> Operator:
    """Rebuild a model from a file written by :func:`save_model`, a training checkpoint, or a dict.

    ``source`` is a path or a mapping holding ``name``, ``args`` and ``state_dict`` (either at the top
    level or under the key ``"model"``, as in training checkpoints). The model comes back in eval mode.
    """
    if isinstance(source, Mapping):
        payload = source
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"model file {str(path)!r} does not exist")
        payload = torch.load(path, map_location=map_location, weights_only=True)
    if "model" in payload and isinstance(payload["model"], Mapping):
        payload = payload["model"]
    missing = [k for k in ("name", "args", "state_dict") if k not in payload]
    if missing:
        raise UserError(f"not a model checkpoint: missing {', '.join(missing)}")
    model = build_model(payload["name"], **MODELS.get(payload["name"]).stored_args(payload["args"]))
    model.load_state_dict(payload["state_dict"])
    model.to(map_location)
    return model.eval()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file and a rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
