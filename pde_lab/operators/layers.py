"""Small pieces shared by the operator models: argument checks, coordinates, padding, convolutions.

Kept apart from the model files so each model module holds only its own architecture.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def check_dims(model: str, n_dims: Any, allowed: Sequence[int] = (1, 2)) -> int:
    """``n_dims`` as an int; :class:`UserError` naming ``model`` unless it is one of ``allowed``
    (a non-integer such as ``2.5`` or ``"2"`` is refused, not truncated)."""
    if isinstance(n_dims, bool) or not isinstance(n_dims, numbers.Real) or n_dims not in allowed:
        raise UserError(f"{model} supports n_dims {', '.join(map(str, allowed))}, got {n_dims!r}")
    return int(n_dims)


def check_flag(model: str, name: str, value: Any) -> bool:
    """``value`` as a bool; :class:`UserError` unless it is ``True``/``False`` (or ``1``/``0``).

    ``bool(value)`` would turn the string ``"false"`` (or ``"no"`` from a command line) into ``True``.
    """
    if type(value).__module__ == "numpy":  # numpy.bool_ / integer scalars
        value = value.item()
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise UserError(f"{model} {name} must be true or false, got {value!r}")


def check_counts(model: str, *, allow_zero: bool = False, **values: Any) -> None:
    """:class:`UserError` for the first of ``values`` that is not a positive (with ``allow_zero``:
    non-negative) integer; an integral float such as ``4.0`` passes, ``2.5`` does not."""
    for name, value in values.items():
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or int(value) != value or value < (0 if allow_zero else 1)):
            kind = "non-negative" if allow_zero else "positive"
            raise UserError(f"{model} {name} must be a {kind} integer, got {value!r}")


def per_axis(model: str, name: str, value: int | Sequence[int], n_dims: int) -> list[int]:
    """An int for every axis or one value per axis, as a list of ``n_dims`` positive ints."""
    if isinstance(value, str) or not isinstance(value, (numbers.Real, Sequence)):
        raise UserError(f"{model} {name} must be a positive integer or one per spatial axis, got {value!r}")
    values = [value] * n_dims if isinstance(value, numbers.Real) else list(value)
    if len(values) != n_dims:
        raise UserError(f"{model} {name} needs one value per spatial axis ({n_dims}), got {value!r}")
    for v in values:
        check_counts(model, **{name: v})
    return [int(v) for v in values]


def check_padding(model: str, padding: Any, n_dims: int) -> int | float | list:
    """Validate a domain padding: an int (cells), a float (fraction of the axis), or one per axis."""
    values = padding if isinstance(padding, (list, tuple)) else [padding]
    if isinstance(padding, (list, tuple)) and len(values) != n_dims:
        raise UserError(f"{model} padding needs one value per spatial axis ({n_dims}), got {padding!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UserError(f"{model} padding must be a non-negative int (cells) or float (fraction of the "
                            f"axis), or a list of those with one per axis; got {padding!r}")
    return list(padding) if isinstance(padding, (list, tuple)) else padding


def pad_cells(padding: int | float | Sequence[int | float], space: Sequence[int]) -> list[int]:
    """Number of zero cells appended to each axis of ``space``: floats are fractions (rounded up)."""
    values = list(padding) if isinstance(padding, (list, tuple)) else [padding] * len(space)
    return [math.ceil(p * n) if isinstance(p, float) else int(p) for p, n in zip(values, space)]


def pad_end(v: torch.Tensor, pads: Sequence[int]) -> torch.Tensor:
    """Zero-pad the end of each spatial axis of ``(B, C, *space)`` by ``pads`` cells."""
    if not any(pads):
        return v
    # F.pad lists (left, right) pairs starting from the last axis.
    return F.pad(v, [p for pad in reversed(pads) for p in (0, pad)])


def crop(v: torch.Tensor, space: Sequence[int]) -> torch.Tensor:
    """The leading ``space`` block of the spatial axes of ``(B, C, *space')``."""
    return v[(slice(None), slice(None), *[slice(0, n) for n in space])]


def grid_coordinates(space: Sequence[int], device: torch.device | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(len(space), *space)``: the coordinate ``linspace(0, 1, n)`` of every grid point per axis."""
    axes = [torch.linspace(0.0, 1.0, n, device=device, dtype=dtype) for n in space]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def append_coordinates(x: torch.Tensor) -> torch.Tensor:
    """``(batch, C, *space)`` -> ``(batch, C + len(space), *space)``: the grid coordinates
    (:func:`grid_coordinates`, in ``x``'s dtype and device) appended as channels."""
    space = x.shape[2:]
    coords = grid_coordinates(space, x.device, x.dtype)
    return torch.cat([x, coords.unsqueeze(0).expand(x.shape[0], *coords.shape)], dim=1)


def check_input(model: str, x: torch.Tensor, in_channels: int, n_dims: int) -> None:
    """:class:`UserError` unless ``x`` is ``(batch, in_channels, *space)`` with ``n_dims`` spatial axes."""
    if x.dim() != 2 + n_dims or x.shape[1] != in_channels:
        raise UserError(f"{model} expects input (batch, {in_channels}, {n_dims} spatial axes), "
                        f"got shape {tuple(x.shape)}")


def group_count(channels: int, preferred: int = 8) -> int:
    """The largest divisor of ``channels`` not above ``preferred``: GroupNorm needs an exact split."""
    return math.gcd(int(channels), int(preferred))


def float32_under_autocast(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``fn(self, x, ...)`` in float32 with autocast off when autocast is on.

    Mixed precision (``amp: true`` in training) runs the convolutions and linear layers in bfloat16,
    but the FFTs reject bfloat16 (and half precision needs power-of-two sizes), and a truncated
    spectrum in 8 mantissa bits would lose the small modes anyway; so the spectral pieces opt out.
    """

    @functools.wraps(fn)
    def wrapped(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return fn(self, x, *args, **kwargs)
        with torch.autocast(x.device.type, enabled=False):
            return fn(self, x.float(), *args, **kwargs)

    return wrapped

