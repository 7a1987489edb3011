"""The truncated Fourier transforms of :class:`~.fno.SpectralConv` as products with DFT matrices.

An FNO keeps few modes per axis (12 of 64, 16 of 256), so the kept coefficients can be computed as a
product with a precomputed ``(n, modes)`` DFT basis instead of a full FFT followed by truncation,
and the inverse as a product with the transposed basis instead of zero-filling and an inverse FFT.
The work is ``O(n · modes)`` per axis instead of ``O(n log n)``, but it runs as one dense matmul
(BLAS) and the backward pass needs no full-size complex array; ``benchmarks/spectral_conv_variants.py``
measures the difference. The coefficients and their layout are exactly those of the FFT path:
last axis wave numbers ``0..m-1`` (real transform), every other axis ``0..m-1`` then ``-m..-1``.

The bases are built in float64, cast to the input's precision and cached per
``(n, modes, kind, dtype, device)``; they are constants, never parameters, so a model's
``state_dict`` does not depend on the transform it uses.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import torch

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


@functools.lru_cache(maxsize=128)
def _real_bases(n: int, m: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``fwd (n, 2m)``: ``x @ fwd = [Re | Im]`` of ``rfft(x)[:m]``; ``inv (2m, n)``: ``[Re | Im] @ inv``
    = ``irfft`` of those ``m`` coefficients at length ``n``."""
    j = torch.arange(n, dtype=torch.float64)
    k = torch.arange(m, dtype=torch.float64)
    angle = 2 * math.pi * j[:, None] * k[None, :] / n
    cos, sin = torch.cos(angle), torch.sin(angle)
    # irfft counts each wave number twice (k and -k) except the mean and, for even n, the Nyquist mode.
    weight = torch.full((m,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n % 2 == 0 and m > n // 2:
        weight[n // 2] = 1.0
    fwd = torch.cat([cos, -sin], dim=1)
    inv = torch.cat([cos.T * weight[:, None], -sin.T * weight[:, None]], dim=0) / n
    return fwd.to(device=device, dtype=dtype), inv.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=128)
def _complex_bases(n: int, m: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``fwd (n, 2m)``: ``fft`` restricted to wave numbers ``0..m-1, -m..-1``; ``inv (2m, n)``: the
    matching rows of ``ifft`` (with its ``1/n``)."""
    j = torch.arange(n, dtype=torch.float64)
    k = torch.cat([torch.arange(m), torch.arange(-m, 0)]).to(torch.float64)
    angle = 2 * math.pi * j[:, None] * k[None, :] / n
    ones = torch.ones_like(angle)
    fwd = torch.polar(ones, -angle)
    inv = torch.polar(ones, angle).T / n
    return fwd.to(device=device, dtype=dtype), inv.contiguous().to(device=device, dtype=dtype)


def _along(x: torch.Tensor, dim: int, matrix: torch.Tensor) -> torch.Tensor:
    """``x`` multiplied by ``matrix (n, K)`` along axis ``dim`` (length ``n`` -> ``K``)."""
    return (x.movedim(dim, -1) @ matrix).movedim(-1, dim)


def truncated_dft(x: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """Kept Fourier coefficients of ``x (B, C, *space)``: ``(B, C, 2m_0, ..., 2m_{d-2}, m_{d-1})`` complex."""
    n_dims = len(modes)
    space = x.shape[-n_dims:]
    m = modes[-1]
    fwd, _ = _real_bases(space[-1], m, x.dtype, x.device)
    h = x @ fwd
    x_hat = torch.complex(h[..., :m], h[..., m:])
    for axis in range(n_dims - 2, -1, -1):
        fwd_c, _ = _complex_bases(space[axis], modes[axis], _COMPLEX[x.dtype], x.device)
        x_hat = _along(x_hat, 2 + axis, fwd_c)
    return x_hat


def inverse_truncated_dft(out_hat: torch.Tensor, space: Sequence[int], modes: Sequence[int]) -> torch.Tensor:
    """The real field ``(B, C, *space)`` whose only non-zero Fourier coefficients are ``out_hat``
    (laid out as :func:`truncated_dft` returns them)."""
    n_dims = len(modes)
    real = out_hat.real.dtype
    for axis in range(n_dims - 1):
        _, inv_c = _complex_bases(space[axis], modes[axis], out_hat.dtype, out_hat.device)
        out_hat = _along(out_hat, 2 + axis, inv_c)
    _, inv = _real_bases(space[-1], modes[-1], real, out_hat.device)
    return torch.cat([out_hat.real, out_hat.imag], dim=-1) @ inv
