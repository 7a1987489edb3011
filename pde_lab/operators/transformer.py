"""Galerkin transformer (Cao, NeurIPS 2021, "Choose a Transformer: Fourier or Galerkin"): a
transformer operator with softmax-free linear attention, in 1 and 2D and on point clouds.

Why this one, rather than a ViT-style patch operator (scOT) or Transolver:

- Resolution-agnostic by construction. Galerkin attention is
  ``Attn(z) = Q (K̃ᵀ Ṽ) / N`` with ``K̃, Ṽ`` layer-normalised per head: the ``dh × dh`` matrix
  ``K̃ᵀṼ / N`` is a mean over the points, i.e. a quadrature of ``∫ k(x) v(x)ᵀ dx``, so the same
  weights evaluate the same continuous operator on any grid, and the output converges as the grid is
  refined (the tests check this). A patch transformer is tied to its patch size and position
  embeddings, so it cannot change resolution without interpolating them.
- Cost ``O(N · dh²)`` per head instead of the softmax's ``O(N²)``: a 128² grid is 16 384 tokens,
  which full attention cannot afford on a CPU; Galerkin attention costs about as much as a few
  pointwise layers there.
- Points need not form a grid: tokens are ``(field values, coordinates)`` per point, so the model
  takes values at mesh nodes and answers there (``forward(x, coords)``). Transolver (Wu et al. 2024)
  shares these properties but adds a learned slicing into physical states; Galerkin attention is the
  smaller, better-understood building block (its approximation properties are analysed as a
  Petrov–Galerkin projection in Cao's paper).

Architecture: tokens ``[u(x_i), x_i]`` lifted by an MLP to ``width``; ``n_layers`` blocks of
``z <- z + W_o Attn(z)`` and ``z <- z + FFN(z)`` (GELU); a pointwise MLP projection to the output
channels. As in the paper, the query/key/value maps start near a small multiple of the identity
(Xavier-uniform with a small gain plus ``delta · I``), and no layer norm sits on the residual stream:
the normalisation of ``K`` and ``V`` is what keeps the attention bounded. The paper's model adds a
spectral-convolution decoder; this one ends with the pointwise projection so that it stays a pure
point-cloud operator.

Written by hand: the attention is a few einsums; no maintained package ships it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import Operator, register_model
from .deeponet import mlp
from .layers import check_dims, check_counts, grid_coordinates


class GalerkinAttention(nn.Module):
    """Multi-head softmax-free attention ``Q (LN(K)ᵀ LN(V)) / N``.

    Shapes: ``(batch, N, width)`` -> ``(batch, N, width)``; ``width`` must be a multiple of ``heads``.
    """

    def __init__(self, width: int, heads: int, delta: float = 1e-2):
        super().__init__()
        self.heads, self.dh = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        # Per-head layer norm of K and V (own scale and shift per head).
        self.k_scale, self.k_shift = nn.Parameter(torch.ones(heads, self.dh)), nn.Parameter(torch.zeros(heads, self.dh))
        self.v_scale, self.v_shift = nn.Parameter(torch.ones(heads, self.dh)), nn.Parameter(torch.zeros(heads, self.dh))
        with torch.no_grad():
            for block in self.qkv.weight.view(3, width, width):
                nn.init.xavier_uniform_(block, gain=delta)
                block.add_(delta * torch.eye(width))
            self.qkv.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, n, _ = z.shape
        q, k, v = self.qkv(z).view(b, n, 3, self.heads, self.dh).unbind(2)      # each (B, N, H, dh)
        k = F.layer_norm(k, (self.dh,)) * self.k_scale + self.k_shift
        v = F.layer_norm(v, (self.dh,)) * self.v_scale + self.v_shift
        kv = torch.einsum("bnhd,bnhe->bhde", k, v) / n                           # mean over points
        att = torch.einsum("bnhd,bhde->bnhe", q, kv)
        return self.out(att.reshape(b, n, self.heads * self.dh))


@register_model("galerkin_transformer")
class GalerkinTransformer(Operator):
    """Galerkin-attention transformer operator for 1 or 2 spatial dimensions or point clouds.

    Args:
        in_channels, out_channels: channel counts (filled in by the trainer).
        n_dims: dimension of the coordinates (1 or 2).
        width: token width.
        heads: attention heads (``width`` must be divisible by it).
        n_layers: attention + feed-forward blocks.
        ff_width: hidden width of the feed-forwards; default ``2 * width``.
        proj_width: hidden width of the output projection.

    Shapes: ``forward(x)``: ``(batch, in_channels, *space)`` -> ``(batch, out_channels, *space)``,
    any resolution (coordinates ``linspace(0, 1, n)`` per axis); ``forward(x, coords)``:
    ``x (batch, in_channels, points)``, ``coords (points, n_dims)`` or ``(batch, points, n_dims)``
    -> ``(batch, out_channels, points)``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, n_dims: int = 1, width: int = 64,
                 heads: int = 4, n_layers: int = 4, ff_width: int | None = None, proj_width: int = 128):
        super().__init__()
        n_dims = check_dims("Galerkin transformer", n_dims)
        ff_width = 2 * int(width) if ff_width is None else ff_width
        check_counts("Galerkin transformer", in_channels=in_channels, out_channels=out_channels, width=width,
                       heads=heads, n_layers=n_layers, ff_width=ff_width, proj_width=proj_width)
        if int(width) % int(heads):
            raise UserError(f"Galerkin transformer width {width} must be a multiple of heads {heads}")
        self.config = dict(in_channels=int(in_channels), out_channels=int(out_channels), n_dims=n_dims,
                           width=int(width), heads=int(heads), n_layers=int(n_layers), ff_width=int(ff_width),
                           proj_width=int(proj_width))
        self.n_dims = n_dims
        width = int(width)
        self.lift = mlp([int(in_channels) + n_dims, width, width])
        self.attention = nn.ModuleList(GalerkinAttention(width, int(heads)) for _ in range(int(n_layers)))
        self.ff = nn.ModuleList(mlp([width, int(ff_width), width]) for _ in range(int(n_layers)))
        self.proj = mlp([width, int(proj_width), int(out_channels)])

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Grid: ``(B, C_in, *space)`` -> ``(B, C_out, *space)``; points: ``(B, C_in, P)`` with
        ``coords (P, d)`` or ``(B, P, d)`` -> ``(B, C_out, P)``."""
        c_in = self.config["in_channels"]
        on_grid = coords is None
        expected = 2 + self.n_dims if on_grid else 3
        if x.dim() != expected or x.shape[1] != c_in:
            axes = f"{self.n_dims} spatial axes" if on_grid else "points"
            raise UserError(f"Galerkin transformer expects input (batch, {c_in}, {axes}), got shape {tuple(x.shape)}")
        b = x.shape[0]
        if on_grid:
            space = x.shape[2:]
            coords = grid_coordinates(space, x.device, x.dtype).flatten(1).T          # (P, d)
        if coords.dim() == 2:
            coords = coords.unsqueeze(0).expand(b, -1, -1)
        values = x.flatten(2).transpose(1, 2)                                         # (B, P, C_in)
        if coords.dim() != 3 or coords.shape[0] != b or coords.shape[1] != values.shape[1] \
                or coords.shape[2] != self.n_dims:
            raise UserError(f"Galerkin transformer coords must be ({values.shape[1]}, {self.n_dims}) or "
                            f"({b}, {values.shape[1]}, {self.n_dims}), got shape {tuple(coords.shape)}")
        z = self.lift(torch.cat([values, coords.to(x.dtype)], dim=-1))
        for attention, ff in zip(self.attention, self.ff):
            z = z + attention(z)
            z = z + ff(z)
        out = self.proj(z).transpose(1, 2)                                            # (B, C_out, P)
        return out.unflatten(-1, tuple(space)) if on_grid else out

