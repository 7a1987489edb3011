"""Convolutional Neural Operator (CNO; Raonić, Molinaro, De Ryck, Rohner, Bartolucci, Alaifari, Mishra
& de Bézenac, NeurIPS 2023, "Convolutional Neural Operators for robust and accurate learning of PDEs")
in 1 and 2D.

A U-shaped network of 3-point (3×3) convolutions whose nonlinearity is made alias-free: a pointwise
activation creates frequencies above the grid's Nyquist limit, so each activation is applied on a
grid refined twice per axis and the result is band-limited back:

    act(v) = down_2( leaky_relu( up_2(v) ) )

Choices, and how they differ from the paper's code:

- Up- and down-sampling are ideal band-limited (sinc) interpolation done in Fourier space
  (:func:`resample`): upsampling zero-pads the spectrum, downsampling truncates it, keeping wave
  numbers ``|k| < min(n_in, n_out) / 2`` (the Nyquist mode of the smaller grid is dropped, so a real
  field stays real and ``down(up(v)) == v`` exactly). The paper uses windowed-sinc (Kaiser) FIR
  filters from StyleGAN3's alias-free layers, which need a custom CUDA kernel to be fast; the FFT
  form is exact for periodic fields, needs nothing but ``torch.fft``, and is what the continuous
  operator definition of CNO describes. For non-periodic fields the implied periodic extension
  rings near the boundary (Gibbs), as any spectral interpolation does.
- Blocks, as in the paper: lifting (conv + act), encoder levels of a downsampling block (conv, act,
  halve the grid) followed by ``n_res`` residual blocks ``v + conv(act(conv(v)))`` whose output is the
  skip connection, a bottleneck of ``n_res_neck`` residual blocks, decoder levels of an upsampling
  block (conv, double the grid, act), concatenation with the skip and an invariant block (conv + act),
  and a final 3×3 projection.
- Normalisation: ``norm="batch"`` (the paper's BatchNorm) after every convolution but the last, or
  ``"none"``.
- The grid is halved with ``n // 2`` per level and restored to the exact input size on the way up, so
  any grid size works; the model also runs at another resolution (the convolutions act on cells, so
  like the paper's CNO it is meant to be evaluated at the training resolution, or resampled to it).

Written by hand: no maintained library ships a CNO.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError, check_choice
from .base import Operator, register_model
from .layers import CONV, check_dims, float32_under_autocast, check_input, check_counts

NORMS = ("batch", "none")
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


def _resample_axis(x: torch.Tensor, dim: int, n_out: int, last: bool) -> torch.Tensor:
    """Band-limited resampling of one axis (see :func:`resample`); ``last`` uses the real FFT."""
    n_in = x.shape[dim]
    if n_in == n_out:
        return x
    keep = (min(n_in, n_out) + 1) // 2  # wave numbers 0..keep-1 and -(keep-1)..-1
    if last:
        x_hat = torch.fft.rfft(x, dim=dim, norm="forward").narrow(dim, 0, keep)
        return torch.fft.irfft(x_hat, n=n_out, dim=dim, norm="forward")
    x_hat = torch.fft.fft(x, dim=dim, norm="forward")
    shape = list(x_hat.shape)
    shape[dim] = n_out - (2 * keep - 1)
    parts = [x_hat.narrow(dim, 0, keep), x_hat.new_zeros(shape), x_hat.narrow(dim, n_in - keep + 1, keep - 1)]
    return torch.fft.ifft(torch.cat(parts, dim=dim), dim=dim, norm="forward")


def resample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Band-limited (trigonometric) interpolation of ``(batch, channels, *space)`` onto ``size``.

    Keeps the Fourier modes ``|k| < min(n_in, n_out) / 2`` of each axis and evaluates the resulting
    trigonometric polynomial on the new uniform periodic grid; real in, real out.
    """
    n_dims = len(size)
    out = x
    # Non-last axes first, in complex arithmetic; the last axis goes through rfft/irfft.
    for axis in range(n_dims - 1):
        dim = x.dim() - n_dims + axis
        out = _resample_axis(out, dim, int(size[axis]), last=False)
    if out.is_complex():
        out = out.real
    return _resample_axis(out, x.dim() - 1, int(size[-1]), last=True)


class AliasFreeAct(nn.Module):
    """``down_2(leaky_relu(up_2(v)))``: the activation on a twice-refined grid, band-limited back."""

    def __init__(self, slope: float = 0.01):
        super().__init__()
        self.slope = slope

    @float32_under_autocast
    def forward(self, v: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """``(B, C, *space)`` -> ``(B, C, *size)`` (``size`` defaults to ``space``)."""
        space = list(v.shape[2:])
        size = space if size is None else list(size)
        fine = [2 * max(a, b) for a, b in zip(space, size)]
        return resample(F.leaky_relu(resample(v, fine), self.slope), size)


class ConvNorm(nn.Module):
    """3-point (3×3) convolution, then BatchNorm (or nothing). ``(B, c_in, *s)`` -> ``(B, c_out, *s)``."""

    def __init__(self, c_in: int, c_out: int, n_dims: int, norm: str):
        super().__init__()
        self.conv = CONV[n_dims](c_in, c_out, 3, padding=1)
        self.norm = _BATCHNORM[n_dims](c_out) if norm == "batch" else nn.Identity()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(v))


class ResidualBlock(nn.Module):
    """``v + conv(act(conv(v)))`` at a fixed resolution."""

    def __init__(self, c: int, n_dims: int, norm: str):
        super().__init__()
        self.conv1, self.conv2, self.act = ConvNorm(c, c, n_dims, norm), ConvNorm(c, c, n_dims, norm), AliasFreeAct()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v + self.conv2(self.act(self.conv1(v)))


@register_model("cno")
class CNO(Operator):
    """Convolutional neural operator for 1 or 2 spatial dimensions.

    Args:
        in_channels, out_channels: channel counts (filled in by the trainer).
        n_dims: 1 or 2.
        width: channels after the lifting (the finest level).
        levels: number of times the grid is halved.
        channel_multiplier: channels grow by this factor per level.
        n_res: residual blocks on each skip connection.
        n_res_neck: residual blocks in the bottleneck.
        norm: ``batch`` (BatchNorm after each convolution, as in the paper) or ``none``.

    Shapes: ``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``, any size whose
    coarsest level keeps at least one point per axis (``space[d] >= 2**levels``).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_dims: int = 2, width: int = 16,
                 levels: int = 3, channel_multiplier: int = 2, n_res: int = 2, n_res_neck: int = 2,
                 norm: str = "batch"):
        super().__init__()
        n_dims = check_dims("CNO", n_dims)
        check_counts("CNO", in_channels=in_channels, out_channels=out_channels, width=width, levels=levels,
                       channel_multiplier=channel_multiplier, n_res=n_res, n_res_neck=n_res_neck)
        check_choice("CNO norm", norm, NORMS)
        self.config = dict(in_channels=int(in_channels), out_channels=int(out_channels), n_dims=n_dims,
                           width=int(width), levels=int(levels), channel_multiplier=int(channel_multiplier),
                           n_res=int(n_res), n_res_neck=int(n_res_neck), norm=norm)
        self.n_dims, self.levels = n_dims, int(levels)
        chans = [int(width) * int(channel_multiplier) ** level for level in range(self.levels + 1)]
        self.lift = ConvNorm(int(in_channels), chans[0], n_dims, norm)
        self.act = AliasFreeAct()
        self.down = nn.ModuleList(ConvNorm(chans[l], chans[l + 1], n_dims, norm) for l in range(self.levels))
        self.skip_res = nn.ModuleList(nn.Sequential(*[ResidualBlock(chans[l], n_dims, norm) for _ in range(int(n_res))])
                                      for l in range(self.levels))
        self.neck = nn.Sequential(*[ResidualBlock(chans[-1], n_dims, norm) for _ in range(int(n_res_neck))])
        self.up = nn.ModuleList(ConvNorm(chans[l + 1], chans[l], n_dims, norm) for l in range(self.levels))
        self.merge = nn.ModuleList(ConvNorm(2 * chans[l], chans[l], n_dims, norm) for l in range(self.levels))
        self.proj = CONV[n_dims](chans[0], int(out_channels), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``."""
        check_input("CNO", x, self.config["in_channels"], self.n_dims)
        if min(x.shape[2:]) < 2 ** self.levels:  # coarser, levels would stack on one point and repeat it
            raise UserError(f"CNO with levels={self.levels} halves the grid {self.levels} times and needs at least "
                            f"{2 ** self.levels} points per axis, got spatial shape {tuple(x.shape[2:])}; "
                            f"use fewer levels or a finer grid")
        sizes = [list(x.shape[2:])]
        for _ in range(self.levels):
            sizes.append([max(n // 2, 1) for n in sizes[-1]])
        v = self.act(self.lift(x))
        skips = []
        for level in range(self.levels):
            skips.append(self.skip_res[level](v))
            v = self.act(self.down[level](v), sizes[level + 1])
        v = self.neck(v)
        for level in range(self.levels - 1, -1, -1):
            v = self.act(self.up[level](v), sizes[level])
            v = self.act(self.merge[level](torch.cat([v, skips[level]], dim=1)))
        return self.proj(v)
