"""U-Net (Ronneberger, Fischer & Brox 2015) with residual blocks, GroupNorm and GELU, in 1 and 2D.

The modern form used as a neural-PDE baseline (Gupta & Brandstetter 2022, "Towards multi-spatiotemporal-
scale generalized PDE modeling"; PDEArena): every level holds ``blocks`` residual blocks

    h = conv(gelu(norm(x)));  h = conv(gelu(norm(h)));  out = h + skip(x)

(``skip`` is a 1×1 convolution where the channel count changes), the encoder halves the grid with a
stride-2 convolution after each level but the last, the decoder doubles it with a transposed
convolution, concatenates the encoder's features of that level, and runs residual blocks again.

Grid sizes not divisible by ``2**(levels-1)`` are padded at the end of each axis up to the next
multiple (``pad_mode``: ``replicate`` by default, ``circular`` for periodic data, ``zeros``) and the
output is cropped back, so any size works. Convolutions are local in cells: the model runs at any
resolution, but a grid of a different spacing changes what it computes (no discretisation invariance).

Written with ``torch.nn`` layers only; the conv class is chosen by ``n_dims``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError, check_choice
from .base import Operator, register_model
from .layers import CONV, check_dims, check_input, check_counts, crop, group_count

PAD_MODES = {"replicate": "replicate", "circular": "circular", "zeros": "constant"}
_CONV_PAD = {"replicate": "replicate", "circular": "circular", "zeros": "zeros"}
_TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}


class ResBlock(nn.Module):
    """Pre-activation residual block: two ``GroupNorm -> GELU -> conv3`` stages plus a (1×1) skip.

    Shapes: ``(batch, c_in, *space)`` -> ``(batch, c_out, *space)``.
    """

    def __init__(self, c_in: int, c_out: int, n_dims: int, pad_mode: str = "replicate"):
        super().__init__()
        conv = CONV[n_dims]
        self.norm1 = nn.GroupNorm(group_count(c_in), c_in)
        self.conv1 = conv(c_in, c_out, 3, padding=1, padding_mode=_CONV_PAD[pad_mode])
        self.norm2 = nn.GroupNorm(group_count(c_out), c_out)
        self.conv2 = conv(c_out, c_out, 3, padding=1, padding_mode=_CONV_PAD[pad_mode])
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.gelu(self.norm1(x)))
        h = self.conv2(F.gelu(self.norm2(h)))
        return h + self.skip(x)


@register_model("unet")
class UNet(Operator):
    """Residual U-Net for 1 or 2 spatial dimensions.

    Args:
        in_channels, out_channels: channel counts (filled in by the trainer).
        n_dims: 1 or 2.
        widths: channels per level, finest first (``len(widths)`` levels; the grid is halved
            ``len(widths) - 1`` times). Default ``[32, 64, 128, 256]``.
        blocks: residual blocks per level in the encoder and in the decoder.
        pad_mode: how the grid is padded to a multiple of ``2**(levels-1)`` and how the convolutions
            pad: ``replicate``, ``circular`` (periodic data) or ``zeros``.

    Shapes: ``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``, any size.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_dims: int = 2,
                 widths: Sequence[int] = (32, 64, 128, 256), blocks: int = 1, pad_mode: str = "replicate"):
        super().__init__()
        n_dims = check_dims("U-Net", n_dims)
        widths = [widths] if isinstance(widths, int) else list(widths)
        if not widths:
            raise UserError("U-Net widths must list at least one level's channels, got []")
        check_counts("U-Net", in_channels=in_channels, out_channels=out_channels, blocks=blocks)
        for w in widths:
            check_counts("U-Net", widths=w)
        check_choice("U-Net pad_mode", pad_mode, PAD_MODES)
        widths = [int(w) for w in widths]
        self.config = dict(in_channels=int(in_channels), out_channels=int(out_channels), n_dims=n_dims,
                           widths=widths, blocks=int(blocks), pad_mode=pad_mode)
        self.n_dims, self.pad_mode = n_dims, pad_mode
        conv = CONV[n_dims]
        conv_pad = _CONV_PAD[pad_mode]
        self.lift = conv(int(in_channels), widths[0], 3, padding=1, padding_mode=conv_pad)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, w in enumerate(widths):
            c_in = widths[max(level - 1, 0)]
            self.down_blocks.append(nn.Sequential(*[ResBlock(c_in if b == 0 else w, w, n_dims, pad_mode)
                                                    for b in range(int(blocks))]))
            if level < len(widths) - 1:
                self.downsample.append(conv(w, w, 3, stride=2, padding=1, padding_mode=conv_pad))
        self.upsample = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            w, below = widths[level], widths[level + 1]
            self.upsample.append(_TRANSPOSED[n_dims](below, w, 2, stride=2))
            self.up_blocks.append(nn.Sequential(*[ResBlock(2 * w if b == 0 else w, w, n_dims, pad_mode)
                                                  for b in range(int(blocks))]))
        self.norm_out = nn.GroupNorm(group_count(widths[0]), widths[0])
        self.proj = conv(widths[0], int(out_channels), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``."""
        check_input("U-Net", x, self.config["in_channels"], self.n_dims)
        space = x.shape[2:]
        factor = 2 ** (len(self.config["widths"]) - 1)
        pads = [(-n) % factor for n in space]
        if any(pads):
            mode = PAD_MODES[self.pad_mode]
            if mode == "circular" and any(p > n for p, n in zip(pads, space)):
                mode = "replicate"  # circular padding cannot wrap more than the axis once
            x = F.pad(x, [p for pad in reversed(pads) for p in (0, pad)], mode=mode)
        h = self.lift(x)
        skips = []
        for level, block in enumerate(self.down_blocks):
            h = block(h)
            if level < len(self.downsample):
                skips.append(h)
                h = self.downsample[level](h)
        for up, block in zip(self.upsample, self.up_blocks):
            h = block(torch.cat([up(h), skips.pop()], dim=1))
        out = self.proj(F.gelu(self.norm_out(h)))
        return crop(out, space)
