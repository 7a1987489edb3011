"""Deep operator network (DeepONet; Lu, Jin, Pang, Zhang & Karniadakis 2021, Nature Machine
Intelligence, "Learning nonlinear operators via DeepONet") in 1 and 2D, with point queries.

    G(u)(y)_c = sum_k  b_{c,k}(u) · t_{c,k}(y) + bias_c

The branch net reads the input function ``u`` and gives ``out_channels · basis`` coefficients; the
trunk net (an MLP) reads a query point ``y`` in ``[0, 1]^d`` and gives as many basis functions; every
output channel has its own ``basis`` coefficients and basis functions (the "split" form of Lu et al.
2022 for several outputs).

Branch nets:

- ``branch="cnn"`` (default): a strided-convolution encoder with adaptive average pooling to a fixed
  ``4^d`` grid, then an MLP; it accepts the input on any grid (the coarse pooled summary is what the
  branch sees, so accuracy at an unseen resolution is not guaranteed).
- ``branch="mlp"``: the textbook DeepONet: the input at ``n_sensors`` fixed sensor points, flattened,
  through an MLP. The sensors need not form a grid: ``x`` of shape ``(batch, in_channels, n_sensors)``
  holds values at the nodes of any mesh, and the output is asked for at query points.

``forward(x)`` on a grid ``(batch, in_channels, *space)`` answers at the grid points (coordinates
``linspace(0, 1, n)`` per axis), so the model is a drop-in grid operator for the trainer;
``forward(x, coords)`` answers at arbitrary points, ``coords`` of shape ``(points, d)`` or
``(batch, points, d)``, giving ``(batch, out_channels, points)``. Extra input channels (coefficients,
masks, parameters broadcast as constant channels) are just more branch input.

Written by hand: it is two small networks and an einsum.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError, check_choice
from .base import Operator, register_model
from .layers import CONV, check_dims, check_counts, grid_coordinates

BRANCHES = ("cnn", "mlp")
_POOLED = 4  # side of the pooled grid the CNN branch summarises the input on


def mlp(sizes: Sequence[int], final_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with GELU between (and after, if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class CNNEncoder(nn.Module):
    """Strided convolutions, adaptive average pooling to ``4^d`` cells, then an MLP to ``out`` features.

    Shapes: ``(batch, c_in, *space)`` -> ``(batch, out)``, any ``space``.
    """

    def __init__(self, c_in: int, width: int, out: int, n_dims: int, depth: int = 3):
        super().__init__()
        conv = CONV[n_dims]
        chans = [c_in] + [width * 2 ** min(i, 2) for i in range(depth)]
        self.convs = nn.ModuleList(conv(a, b, 3, stride=2, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        self.pool = (nn.AdaptiveAvgPool1d if n_dims == 1 else nn.AdaptiveAvgPool2d)(_POOLED)
        self.head = mlp([chans[-1] * _POOLED ** n_dims, 4 * width, out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.gelu(conv(x))
        return self.head(self.pool(x).flatten(1))


@register_model("deeponet")
class DeepONet(Operator):
    """DeepONet with a CNN or MLP branch and an MLP trunk, for 1 or 2 spatial dimensions.

    Args:
        in_channels, out_channels: channel counts (filled in by the trainer).
        n_dims: dimension of the query points (1 or 2).
        basis: basis functions per output channel (``p`` in the paper).
        branch: ``cnn`` (any grid) or ``mlp`` (fixed ``n_sensors`` points, grid or mesh).
        n_sensors: number of sensor points of the ``mlp`` branch (the grid size, e.g. 128 or 64*64,
            or the number of mesh nodes; the trainer fills it in from the data); ignored by the
            ``cnn`` branch, which stores ``None``.
        width: hidden width of the trunk and branch MLPs (and base channels of the CNN branch).
        depth: hidden layers of the trunk MLP (and of the MLP branch).
        fourier_features: the trunk first maps ``y`` to ``[cos(2π j y_i), sin(2π j y_i)]`` for
            ``j = 1..fourier_features`` next to ``y`` itself (0: raw coordinates), which helps the
            trunk represent oscillatory outputs.

    Shapes: ``forward(x)``: ``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``;
    ``forward(x, coords)``: ``coords (points, n_dims)`` or ``(batch, points, n_dims)`` ->
    ``(batch, out_channels, points)``; the ``mlp`` branch also takes ``x (batch, in_channels, n_sensors)``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_dims: int = 1, basis: int = 64,
                 branch: str = "cnn", n_sensors: int | None = None, width: int = 128, depth: int = 3,
                 fourier_features: int = 0):
        super().__init__()
        n_dims = check_dims("DeepONet", n_dims)
        check_choice("DeepONet branch", branch, BRANCHES)
        check_counts("DeepONet", in_channels=in_channels, out_channels=out_channels, basis=basis,
                       width=width, depth=depth)
        if branch == "mlp":
            if n_sensors is None:
                raise UserError("DeepONet branch='mlp' needs n_sensors (the number of input points: "
                                "the grid size or the number of mesh nodes)")
            check_counts("DeepONet", n_sensors=n_sensors)
            n_sensors = int(n_sensors)
        else:
            n_sensors = None  # the trainer fills it in for every DeepONet; the CNN branch has no use for it
        check_counts("DeepONet", allow_zero=True, fourier_features=fourier_features)
        self.config = dict(in_channels=int(in_channels), out_channels=int(out_channels), n_dims=n_dims,
                           basis=int(basis), branch=branch, n_sensors=n_sensors, width=int(width),
                           depth=int(depth), fourier_features=int(fourier_features))
        self.n_dims, self.c_out, self.basis = n_dims, int(out_channels), int(basis)
        n_coef = self.c_out * self.basis
        if branch == "cnn":
            self.branch = CNNEncoder(int(in_channels), max(int(width) // 4, 8), n_coef, n_dims)
        else:
            self.branch = mlp([int(in_channels) * n_sensors] + [int(width)] * int(depth) + [n_coef])
        trunk_in = n_dims * (1 + 2 * int(fourier_features))
        # The trunk's last layer is activated: its outputs are basis functions, not coefficients.
        self.trunk = mlp([trunk_in] + [int(width)] * int(depth) + [n_coef], final_activation=True)
        self.bias = nn.Parameter(torch.zeros(self.c_out))
        self.register_buffer("frequencies", 2 * math.pi * torch.arange(1, int(fourier_features) + 1,
                                                                       dtype=torch.float32), persistent=False)

    def _trunk(self, coords: torch.Tensor) -> torch.Tensor:
        """``(..., P, d)`` -> ``(..., P, out_channels, basis)``."""
        if len(self.frequencies):
            phase = coords[..., None] * self.frequencies.to(coords.dtype)          # (..., P, d, J)
            coords = torch.cat([coords, torch.cos(phase).flatten(-2), torch.sin(phase).flatten(-2)], dim=-1)
        return self.trunk(coords).unflatten(-1, (self.c_out, self.basis))

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Grid: ``(B, C_in, *space)`` -> ``(B, C_out, *space)``; points: ``(B, C_in, ...)``,
        ``coords (P, d)`` or ``(B, P, d)`` -> ``(B, C_out, P)``."""
        cfg = self.config
        if x.dim() < 3 or x.shape[1] != cfg["in_channels"]:
            raise UserError(f"DeepONet expects input (batch, {cfg['in_channels']}, ...), got shape {tuple(x.shape)}")
        on_grid = coords is None
        if on_grid and x.dim() != 2 + self.n_dims:
            raise UserError(f"DeepONet on a grid expects input (batch, {cfg['in_channels']}, {self.n_dims} spatial "
                            f"axes), got shape {tuple(x.shape)}; pass coords for point queries")
        if cfg["branch"] == "mlp":
            n = math.prod(x.shape[2:])
            if n != cfg["n_sensors"]:
                raise UserError(f"DeepONet's mlp branch was built for n_sensors={cfg['n_sensors']} input points, "
                                f"got {n} (input shape {tuple(x.shape)}): it reads the grid or mesh it was trained on; "
                                f"branch='cnn' (grids) or the galerkin_transformer (grids and meshes) change resolution")
            coef = self.branch(x.flatten(1))
        else:
            if x.dim() != 2 + self.n_dims:
                raise UserError(f"DeepONet's cnn branch needs the input on a {self.n_dims}D grid, got shape "
                                f"{tuple(x.shape)}; use branch='mlp' for values at mesh nodes")
            coef = self.branch(x)
        coef = coef.unflatten(-1, (self.c_out, self.basis))                        # (B, C, K)
        if on_grid:
            space = x.shape[2:]
            coords = grid_coordinates(space, x.device, x.dtype).flatten(1).T        # (P, d)
        if coords.shape[-1] != self.n_dims or coords.dim() not in (2, 3):
            raise UserError(f"DeepONet coords must be (points, {self.n_dims}) or (batch, points, {self.n_dims}), "
                            f"got shape {tuple(coords.shape)}")
        basis = self._trunk(coords.to(x.dtype))
        if basis.dim() == 3:
            out = torch.einsum("bck,pck->bcp", coef, basis)
        else:
            if basis.shape[0] != x.shape[0]:
                raise UserError(f"DeepONet coords has batch {basis.shape[0]} but the input has {x.shape[0]}")
            out = torch.einsum("bck,bpck->bcp", coef, basis)
        out = out + self.bias[:, None]
        return out.unflatten(-1, tuple(space)) if on_grid else out
