"""Fourier Neural Operator (Li et al. 2021, "Fourier Neural Operator for Parametric PDEs") in 1, 2 and 3D.

Architecture, for an input ``(batch, in_channels, *space)``:

1. optionally append the grid coordinates as ``n_dims`` extra channels (the paper does this; it lets
   the network tell positions apart on non-periodic domains);
2. lift pointwise to ``width`` channels;
3. optionally zero-pad the end of every spatial axis (``padding``), so that the FFT's implied
   periodicity does not wrap a non-periodic field onto itself;
4. ``n_layers`` Fourier layers ``v <- act(K v + W v)``: ``K`` multiplies the lowest ``modes`` Fourier
   coefficients per axis by learned complex matrices, ``W`` is a pointwise linear map; no activation
   after the last layer (as in the paper);
5. crop the padding, project pointwise through a hidden layer of ``proj_width`` (128 in the paper)
   to ``out_channels``.

Written by hand: it is small, and writing it lets the spectral weights be REAL tensors with a
trailing axis of 2 (real, imaginary), viewed as complex only inside ``forward``, because complex
parameters break some optimizers (their state and preconditioners) and DDP's gradient buckets.

One class serves every dimension (``n_dims``) under the registered name ``"fno"``; the trainer fills
``n_dims`` from the data, so ``--model fno`` works for 1D and 2D datasets alike.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError, check_choice
from .base import Operator, register_model
from .dft import inverse_truncated_dft, truncated_dft
from .layers import (append_coordinates, check_dims, check_flag, check_input, check_padding, check_counts, crop,
                     float32_under_autocast, pad_cells, pad_end, per_axis)

TRANSFORMS = ("fft", "dft")

# Defaults of the paper: FNO-1D (Burgers) width 64 / 16 modes, FNO-2D (Darcy) width 32 / 12 modes,
# FNO-3D (Navier-Stokes space-time) width 20 / 8 modes.
DEFAULT_WIDTH = {1: 64, 2: 32, 3: 20}
DEFAULT_MODES = {1: 16, 2: 12, 3: 8}

_SUPPORTED_DIMS = (1, 2, 3)


class Pointwise(nn.Module):
    """The same affine map ``c_in -> c_out`` at every grid point (a 1x1 convolution).

    Shapes: ``(batch, c_in, *space)`` -> ``(batch, c_out, *space)``; weight ``(c_out, c_in)``, bias
    ``(c_out,)``, initialised like ``nn.Linear``. Computed as one batched matrix product over the
    flattened grid instead of ``nn.Conv2d(kernel_size=1)``: on one CPU thread, forward plus backward
    at 20x32x85x85 took 28 ms against 82 ms for the convolution (32 -> 128 channels: 139 against 306).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(c_in)
        self.weight = nn.Parameter(torch.empty(c_out, c_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, c_in, *space)`` -> ``(batch, c_out, *space)``."""
        b = x.shape[0]
        out = torch.baddbmm(self.bias[:, None], self.weight.expand(b, -1, -1), x.reshape(b, x.shape[1], -1))
        return out.reshape(b, -1, *x.shape[2:])

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}"


class SpectralConv(nn.Module):
    """Spectral convolution: keep the lowest ``modes`` Fourier coefficients per axis, mix channels.

    ``out_hat[k] = W[k] @ x_hat[k]`` for the kept wave numbers ``k``; all other coefficients of the
    output are zero. Along the last axis the real FFT stores only non-negative wave numbers, so the
    kept set there is ``0..m-1``; along every other axis both the positive ``0..m-1`` and the
    negative ``-m..-1`` wave numbers are kept (the ``2**(n_dims-1)`` corner blocks of ``rfftn``).

    The transform is done one axis at a time and truncated as it goes: ``rfft`` along the last axis,
    keep ``m`` columns, then ``fft`` along the next axis on those columns only, keep ``2m`` rows, and
    so on; the inverse zero-fills one axis at a time. This gives exactly ``rfftn``'s coefficients but
    skips the FFTs of rows that are thrown away: an FNO-2D training step (batch 20, 85x85, 12 modes)
    took about 10% less time on one CPU thread than with full ``rfftn``/``irfftn`` and corner blocks.

    Args:
        in_channels, out_channels: channel counts.
        modes: kept modes per spatial axis (its length is the number of spatial dimensions).
        transform: ``"fft"`` (above) or ``"dft"``: the same coefficients as products with cached
            DFT matrices (:mod:`.dft`), faster on CPU for few modes; the weights are the same.

    Shapes: input ``(batch, in_channels, *space)`` real; output ``(batch, out_channels, *space)`` real.
    Needs ``space[i] >= 2*modes[i]`` on every axis but the last (so the positive and negative blocks
    do not overlap) and ``space[-1] // 2 + 1 >= modes[-1]`` on the last.

    Weights: ``weight`` is real, shape ``(in_channels, out_channels, 2*modes[0], ..., 2*modes[-2],
    modes[-1], 2)``; along a two-sided axis, index ``j < m`` is wave number ``j`` and ``j >= m`` is
    wave number ``j - 2m``; the trailing 2 holds the real and imaginary parts.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int], transform: str = "fft"):
        super().__init__()
        check_choice("FNO transform", transform, TRANSFORMS)
        check_counts("SpectralConv", in_channels=in_channels, out_channels=out_channels)
        self.transform = transform
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.modes = tuple(per_axis("SpectralConv", "modes", list(modes), len(modes)))
        self.n_dims = len(self.modes)
        kept = [2 * m for m in self.modes[:-1]] + [self.modes[-1]]
        # The paper's initialisation: uniform in [0, 1/(in*out)) for real and imaginary parts, which
        # keeps the spectral branch small next to the pointwise branch at the start of training.
        scale = 1.0 / (self.in_channels * self.out_channels)
        self.weight = nn.Parameter(scale * torch.rand(self.in_channels, self.out_channels, *kept, 2))

    def check_resolution(self, space: Sequence[int]) -> None:
        """Raise :class:`UserError` when the grid ``space`` is too coarse for the kept modes."""
        for axis, (n, m) in enumerate(zip(space, self.modes)):
            last = axis == self.n_dims - 1
            available = n // 2 + 1 if last else n // 2
            if m > available:
                needed = 2 * (m - 1) if last else 2 * m
                raise UserError(
                    f"FNO keeps {m} modes along spatial axis {axis} but the input has only {n} points "
                    f"there; use a resolution of at least {needed} or fewer modes")

    @float32_under_autocast
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``."""
        space = x.shape[-self.n_dims:]
        self.check_resolution(space)
        if self.transform == "dft":
            x_hat = truncated_dft(x, self.modes)
            out_hat = torch.einsum("bi...,io...->bo...", x_hat, torch.view_as_complex(self.weight))
            return inverse_truncated_dft(out_hat, space, self.modes)
        # Forward transform, truncating after each axis: last axis first (real FFT), then inwards.
        x_hat = torch.fft.rfft(x, dim=-1)[..., : self.modes[-1]]
        for axis in range(self.n_dims - 2, -1, -1):
            dim, m = 2 + axis, self.modes[axis]
            x_hat = torch.fft.fft(x_hat, dim=dim)
            x_hat = torch.cat([x_hat.narrow(dim, 0, m), x_hat.narrow(dim, space[axis] - m, m)], dim=dim)
        out_hat = torch.einsum("bi...,io...->bo...", x_hat, torch.view_as_complex(self.weight))
        # Inverse: zero-fill the dropped wave numbers one axis at a time, outwards.
        for axis in range(self.n_dims - 1):
            dim, m, n = 2 + axis, self.modes[axis], space[axis]
            shape = list(out_hat.shape)
            shape[dim] = n - 2 * m
            gap = out_hat.new_zeros(shape)
            out_hat = torch.cat([out_hat.narrow(dim, 0, m), gap, out_hat.narrow(dim, m, m)], dim=dim)
            out_hat = torch.fft.ifft(out_hat, dim=dim)
        # irfft zero-pads the missing high columns itself.
        return torch.fft.irfft(out_hat, n=space[-1], dim=-1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}, transform={self.transform}"


@register_model("fno")
class FNO(Operator):
    """Fourier Neural Operator for 1, 2 or 3 spatial dimensions.

    Args:
        in_channels: input channels (the trainer passes ``input_steps * input fields``).
        out_channels: output channels (``output_steps * target fields``).
        n_dims: number of spatial dimensions of the data (1, 2 or 3).
        width: channels of the Fourier layers; default 64 in 1D, 32 in 2D, 20 in 3D (the paper's).
        modes: kept Fourier modes per axis, an int for all axes or one per axis; default 16 in 1D,
            12 in 2D, 8 in 3D.
        n_layers: number of Fourier layers (4 in the paper).
        proj_width: hidden width of the projection (128 in the paper).
        grid: append the coordinates ``linspace(0, 1, n)`` of each axis as input channels.
        padding: zero padding appended to the end of each spatial axis inside the Fourier layers,
            for non-periodic data; an ``int`` is a number of cells, a ``float`` a fraction of the
            axis length (rounded up), or a list with one such value per axis (0 on periodic axes).
            0 for periodic data.
        transform: how the spectral layers compute their truncated Fourier transforms: ``fft``
            (default) or ``dft`` (matmuls with cached DFT matrices; same weights, same outputs to
            rounding; see :class:`SpectralConv`).

    Shapes: input ``(batch, in_channels, *space)``, output ``(batch, out_channels, *space)``, at any
    resolution with at least ``2 * modes`` points per axis (train coarse, evaluate fine).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_dims: int = 1,
                 width: int | None = None, modes: int | Sequence[int] | None = None,
                 n_layers: int = 4, proj_width: int = 128, grid: bool = True,
                 padding: int | float | Sequence[int | float] = 0, transform: str = "fft"):
        super().__init__()
        n_dims = check_dims("FNO", n_dims, _SUPPORTED_DIMS)
        width = DEFAULT_WIDTH[n_dims] if width is None else width
        modes = per_axis("FNO", "modes", DEFAULT_MODES[n_dims] if modes is None else modes, n_dims)
        check_counts("FNO", in_channels=in_channels, out_channels=out_channels, width=width, n_layers=n_layers,
                       proj_width=proj_width)
        grid = check_flag("FNO", "grid", grid)
        padding = check_padding("FNO", padding, n_dims)
        check_choice("FNO transform", transform, TRANSFORMS)
        width = int(width)

        self.config = dict(in_channels=int(in_channels), out_channels=int(out_channels), n_dims=n_dims,
                           width=width, modes=modes, n_layers=int(n_layers), proj_width=int(proj_width),
                           grid=grid, padding=padding, transform=transform)
        self.n_dims = n_dims
        self.grid = grid
        self.padding = padding
        lift_in = int(in_channels) + (n_dims if self.grid else 0)
        self.lift = Pointwise(lift_in, width)
        self.spectral = nn.ModuleList(SpectralConv(width, width, modes, transform) for _ in range(int(n_layers)))
        self.skip = nn.ModuleList(Pointwise(width, width) for _ in range(int(n_layers)))
        self.proj_hidden = Pointwise(width, int(proj_width))
        self.proj_out = Pointwise(int(proj_width), int(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``."""
        check_input("FNO", x, self.config["in_channels"], self.n_dims)
        space = x.shape[2:]
        if self.grid:
            x = append_coordinates(x)
        v = pad_end(self.lift(x), pad_cells(self.padding, space))
        last = len(self.spectral) - 1
        for i, (spectral, skip) in enumerate(zip(self.spectral, self.skip)):
            v = spectral(v) + skip(v)
            if i < last:
                v = F.gelu(v)
        return self.proj_out(F.gelu(self.proj_hidden(crop(v, space))))
