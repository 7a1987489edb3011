"""Factorised Fourier Neural Operator (F-FNO; Tran, Mathews, Xie & Ong, ICLR 2023, "Factorized
Fourier Neural Operators") in 1 and 2D.

Where the FNO multiplies the lowest ``modes^d`` coefficients of the d-dimensional Fourier transform
by a dense complex tensor, the F-FNO transforms one axis at a time with its own 1D weights and sums:

    K(v) = sum_d  IFFT_d( R_d · FFT_d(v) ),   R_d of shape (width, width, modes_d)

so a layer has ``d · width² · modes`` spectral weights instead of ``width² · modes^d``, and the
operator is no longer a low-pass in 2D: a field that varies only along ``x`` is seen by the
``y``-transform at wave number 0 (the tests check exactly this). Each layer is a residual block

    v <- v + W_2 gelu(W_1 K(v) + b_1) + b_2

(the feed-forward after the spectral mixing replaces the FNO's pointwise skip ``W v``, which is what
lets F-FNOs go deep). ``share_weights=True`` uses one set of ``R_d`` for all layers (the paper's
"weight sharing" variant); the feed-forwards stay per layer.

As in :mod:`.fno`, the spectral weights are REAL tensors with a trailing axis of 2 (real,
imaginary), viewed as complex only inside ``forward``; ``padding`` zero-pads the end of the axes
before the spectral layers and crops after, for non-periodic data. Written by hand for the same
reasons as the FNO (small; real weight storage).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import Operator, register_model
from .fno import Pointwise
from .layers import (append_coordinates, check_dims, check_flag, check_input, check_padding, check_counts, crop,
                     float32_under_autocast, pad_cells, pad_end, per_axis)

DEFAULT_WIDTH = {1: 64, 2: 32}
DEFAULT_MODES = {1: 16, 2: 12}


class FactorizedSpectralConv(nn.Module):
    """Sum over spatial axes of 1D spectral convolutions along that axis.

    Along axis ``d`` the real FFT keeps wave numbers ``0..modes[d]-1`` of that axis only (all wave
    numbers of the other axes pass), multiplies them by ``R_d[k]: (in, out)`` and transforms back.

    Args:
        in_channels, out_channels: channel counts.
        modes: kept modes per spatial axis (its length is the number of spatial dimensions).

    Shapes: ``(batch, in_channels, *space)`` real -> ``(batch, out_channels, *space)`` real; needs
    ``space[d] // 2 + 1 >= modes[d]``. Weights: ``weight{d}`` real, ``(in, out, modes[d], 2)``.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]):
        super().__init__()
        check_counts("FactorizedSpectralConv", in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.modes = tuple(per_axis("FactorizedSpectralConv", "modes", list(modes), len(modes)))
        self.n_dims = len(self.modes)
        # The FNO paper's initialisation scale, so the spectral branch starts small.
        scale = 1.0 / (self.in_channels * self.out_channels)
        self.weights = nn.ParameterList(
            nn.Parameter(scale * torch.rand(self.in_channels, self.out_channels, m, 2)) for m in self.modes)

    @float32_under_autocast
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``."""
        space = x.shape[-self.n_dims:]
        out = None
        for axis, (m, w) in enumerate(zip(self.modes, self.weights)):
            n = space[axis]
            if m > n // 2 + 1:
                raise UserError(f"F-FNO keeps {m} modes along spatial axis {axis} but the input has only {n} "
                                f"points there; use a resolution of at least {2 * (m - 1)} or fewer modes")
            # Put the transformed axis last so one einsum serves every axis.
            xt = x.transpose(2 + axis, -1)
            x_hat = torch.fft.rfft(xt, dim=-1)[..., :m]
            y_hat = torch.einsum("bi...k,iok->bo...k", x_hat, torch.view_as_complex(w))
            y = torch.fft.irfft(y_hat, n=n, dim=-1).transpose(2 + axis, -1)
            out = y if out is None else out + y
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"


@register_model("ffno")
class FFNO(Operator):
    """Factorised FNO for 1 or 2 spatial dimensions.

    Args:
        in_channels, out_channels: channel counts (filled in by the trainer).
        n_dims: 1 or 2.
        width: channels of the spectral layers; default 64 in 1D, 32 in 2D.
        modes: kept modes per axis, an int or one per axis; default 16 in 1D, 12 in 2D.
        n_layers: residual F-FNO layers.
        ff_width: hidden width of each layer's feed-forward; default ``2 * width``.
        share_weights: one set of spectral weights for all layers.
        proj_width: hidden width of the output projection.
        grid: append the coordinates ``linspace(0, 1, n)`` of each axis as input channels.
        padding: zero cells appended to each axis inside the spectral layers (non-periodic data):
            an int (cells), a float (fraction of the axis, rounded up), or one such value per axis
            (0 on periodic axes).

    Shapes: ``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)`` at any resolution
    with ``space[d] // 2 + 1 >= modes[d]``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_dims: int = 1,
                 width: int | None = None, modes: int | Sequence[int] | None = None, n_layers: int = 4,
                 ff_width: int | None = None, share_weights: bool = False, proj_width: int = 128,
                 grid: bool = True, padding: int | float | Sequence[int | float] = 0):
        super().__init__()
        n_dims = check_dims("F-FNO", n_dims)
        width = DEFAULT_WIDTH[n_dims] if width is None else width
        ff_width = 2 * int(width) if ff_width is None else ff_width
        modes = per_axis("F-FNO", "modes", DEFAULT_MODES[n_dims] if modes is None else modes, n_dims)
        check_counts("F-FNO", in_channels=in_channels, out_channels=out_channels, width=width,
                       n_layers=n_layers, ff_width=ff_width, proj_width=proj_width)
        padding = check_padding("F-FNO", padding, n_dims)
        share_weights, grid = check_flag("F-FNO", "share_weights", share_weights), check_flag("F-FNO", "grid", grid)
        self.config = dict(in_channels=int(in_channels), out_channels=int(out_channels), n_dims=n_dims,
                           width=int(width), modes=modes, n_layers=int(n_layers), ff_width=int(ff_width),
                           share_weights=bool(share_weights), proj_width=int(proj_width), grid=bool(grid),
                           padding=padding)
        self.n_dims, self.grid, self.padding = n_dims, bool(grid), padding
        width, n_layers = int(width), int(n_layers)
        self.lift = Pointwise(int(in_channels) + (n_dims if self.grid else 0), width)
        n_spectral = 1 if share_weights else n_layers
        self.spectral = nn.ModuleList(FactorizedSpectralConv(width, width, modes) for _ in range(n_spectral))
        self.ff_in = nn.ModuleList(Pointwise(width, int(ff_width)) for _ in range(n_layers))
        self.ff_out = nn.ModuleList(Pointwise(int(ff_width), width) for _ in range(n_layers))
        self.proj_hidden = Pointwise(width, int(proj_width))
        self.proj_out = Pointwise(int(proj_width), int(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``."""
        check_input("F-FNO", x, self.config["in_channels"], self.n_dims)
        space = x.shape[2:]
        if self.grid:
            x = append_coordinates(x)
        v = self.lift(x)
        pads = pad_cells(self.padding, space)
        v = pad_end(v, pads)
        for i, (ff_in, ff_out) in enumerate(zip(self.ff_in, self.ff_out)):
            spectral = self.spectral[0 if len(self.spectral) == 1 else i]
            v = v + ff_out(F.gelu(ff_in(spectral(v))))
        v = crop(v, space)
        return self.proj_out(F.gelu(self.proj_hidden(v)))
