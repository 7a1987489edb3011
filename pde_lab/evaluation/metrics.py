"""Per-sample error metrics and energy spectra for fields in the dataset layout.

Every metric takes ``pred`` and ``true`` shaped ``(B, T, *space, C)`` (batch, time, space axes,
channels: the layout at the dataset boundary) and returns one value per sample, shape ``(B,)``.
Work happens on the device the tensors live on; sums are accumulated in float64 so that float32
fields with millions of points per sample still give metrics accurate to many digits. The
definitions, as formulas, are in ``docs/metrics.md``.

Written here rather than taken from a library because each benchmark defines its normalisations
slightly differently (which axes are pooled, how channels are averaged); a metric in a paper is
only worth something if its definition is pinned down, and here each one is a few lines that say
exactly what they compute.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DEFAULT_EPS",
    "METRICS",
    "FieldLike",
    "Spectrum",
    "compute_metrics",
    "energy_spectrum",
    "max_error",
    "nrmse",
    "relative_l1",
    "relative_l2",
    "rmse",
    "space_weights",
    "spectral_error",
    "summarize",
]

FieldLike = Union[Tensor, np.ndarray]
"""A field in the dataset layout ``(B, T, *space, C)``: a torch tensor (any device) or a numpy array."""

DEFAULT_EPS = 1e-12
"""Floor for the norm of the truth in relative metrics: ``denominator = max(norm, eps)``.

A truth that is identically zero then gives ``0`` for a perfect prediction and ``norm(error) / eps``
(a huge, visibly wrong number) otherwise, instead of NaN or infinity.
"""


def _as_float64(x, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.is_complex():
        raise ValueError(f"{name} must be real, got dtype {x.dtype}")
    return x.to(torch.float64)


def _prepare(pred: FieldLike, true: FieldLike, *, min_ndim: int = 3) -> tuple[Tensor, Tensor]:
    """Validate a ``(pred, true)`` pair and return both as float64 tensors on their device."""
    pred = _as_float64(pred, "pred")
    true = _as_float64(true, "true")
    if pred.shape != true.shape:
        raise ValueError(
            f"pred and true must have the same shape, got {tuple(pred.shape)} and {tuple(true.shape)}"
        )
    if pred.device != true.device:
        raise ValueError(f"pred is on {pred.device} but true is on {true.device}")
    if pred.ndim < min_ndim:
        raise ValueError(
            f"expected fields shaped (B, T, *space, C) with at least {min_ndim} axes, "
            f"got shape {tuple(pred.shape)}"
        )
    if any(n == 0 for n in pred.shape[1:]):
        raise ValueError(f"every sample needs at least one value, got shape {tuple(pred.shape)}")
    return pred, true


def _check_eps(eps: float) -> float:
    """``eps`` as a float; a negative, zero or non-finite floor would let ``x / max(norm, eps)`` divide
    by zero (NaN or infinity for a zero truth), which the floor is there to prevent."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"eps must be a positive finite number (the floor of the truth's norm), got {eps!r}")
    return value


def space_weights(weights: FieldLike | None, space: Sequence[int],
                  device: torch.device | str = "cpu") -> Tensor | None:
    """Quadrature weights of the space points, ready to multiply a ``(B, T, *space, C)`` field.

    Args:
        weights: ``space``-shaped non-negative weights with a positive sum, e.g. the lumped-mass
            weights of a mesh's nodes (:func:`pde_lab.meshes.lumped_mass`); ``None``: every point alike.
        space: the shape of the space axes of the fields they weigh.
        device: where the result lives.

    Returns:
        ``(1, 1, *space, 1)`` float64, rescaled to mean 1 (so that a weighted RMSE stays in the
        field's units and uniform weights change nothing); ``None`` for ``None``.
    """
    if weights is None:
        return None
    w = _as_float64(weights, "weights").to(device)
    space = tuple(space)
    if tuple(w.shape) != space:
        raise ValueError(f"weights must have the shape of the space axes {space}, got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError("weights must be finite and non-negative with a positive sum")
    return (w / w.mean()).reshape(1, 1, *space, 1)


def _weigh(x: Tensor, w: Tensor | None, power: float) -> Tensor:
    """``x · w^power`` (``x`` itself without weights): ``power`` ½ inside a 2-norm, 1 inside a 1-norm."""
    return x if w is None else x * w.pow(power)


def _flat(x: Tensor) -> Tensor:
    """``(B, ...)`` -> ``(B, N)``: all of time, space and channels of each sample."""
    return x.reshape(x.shape[0], -1)


def relative_l2(pred: FieldLike, true: FieldLike, *, eps: float = DEFAULT_EPS,
                weights: FieldLike | None = None) -> Tensor:
    """Relative L2 error of each sample: ``‖pred − true‖₂ / max(‖true‖₂, eps)``.

    The norms run over all of time, space and channels of a sample at once, so a channel with
    large values dominates (see :func:`nrmse` for a per-channel normalisation).

    Args:
        pred, true: ``(B, T, *space, C)``, tensors or arrays.
        eps: floor for the norm of the truth (:data:`DEFAULT_EPS`).
        weights: ``space``-shaped quadrature weights in the sums over space (:func:`space_weights`);
            ``None``: every point alike.

    Returns:
        ``(B,)`` float64 on the input's device.
    """
    eps = _check_eps(eps)
    pred, true = _prepare(pred, true)
    w = space_weights(weights, pred.shape[2:-1], pred.device)
    err = torch.linalg.vector_norm(_flat(_weigh(pred - true, w, 0.5)), ord=2, dim=1)
    ref = torch.linalg.vector_norm(_flat(_weigh(true, w, 0.5)), ord=2, dim=1)
    return err / ref.clamp_min(eps)


def relative_l1(pred: FieldLike, true: FieldLike, *, eps: float = DEFAULT_EPS,
                weights: FieldLike | None = None) -> Tensor:
    """Relative L1 error of each sample: ``Σ|pred − true| / max(Σ|true|, eps)``.

    Sums run over all of time, space and channels of a sample.

    Args:
        pred, true: ``(B, T, *space, C)``.
        eps: floor for the L1 norm of the truth.
        weights: ``space``-shaped quadrature weights (:func:`space_weights`); ``None``: uniform.

    Returns:
        ``(B,)`` float64.
    """
    eps = _check_eps(eps)
    pred, true = _prepare(pred, true)
    w = space_weights(weights, pred.shape[2:-1], pred.device)
    err = _flat(_weigh((pred - true).abs(), w, 1.0)).sum(dim=1)
    ref = _flat(_weigh(true.abs(), w, 1.0)).sum(dim=1)
    return err / ref.clamp_min(eps)


def nrmse(pred: FieldLike, true: FieldLike, *, per_frame: bool = False, eps: float = DEFAULT_EPS,
          weights: FieldLike | None = None) -> Tensor:
    """Normalised RMSE, PDEBench style: normalised per channel, then averaged over channels.

    For each channel ``c`` of a sample, the RMSE over time and space is divided by the RMS of the
    true channel over time and space, which is ``‖e_c‖₂ / ‖u_c‖₂`` (the point counts cancel); the
    ratios are then averaged over the ``C`` channels::

        nrmse = (1/C) Σ_c ‖pred_c − true_c‖₂ / max(‖true_c‖₂, eps)

    Unlike :func:`relative_l2`, every channel counts equally whatever its scale: a pressure of
    order 1e5 does not hide the error of a velocity of order 1.

    PDEBench's reference code (``metric_func``) goes one step further and normalises every time
    step separately before averaging over time and channels; ``per_frame=True`` computes exactly
    that: ``(1/(T C)) Σ_t Σ_c ‖e_{t,c}‖₂ / ‖u_{t,c}‖₂`` with norms over space only.

    Args:
        pred, true: ``(B, T, *space, C)``.
        per_frame: normalise each time step separately (PDEBench's code) instead of pooling time.
        eps: floor for each channel's (or frame's) norm of the truth.
        weights: ``space``-shaped quadrature weights (:func:`space_weights`); ``None``: uniform.

    Returns:
        ``(B,)`` float64.
    """
    eps = _check_eps(eps)
    pred, true = _prepare(pred, true)
    w = space_weights(weights, pred.shape[2:-1], pred.device)
    pred, true = _weigh(pred, w, 0.5), _weigh(true, w, 0.5)
    B, T, C = pred.shape[0], pred.shape[1], pred.shape[-1]
    # Group by the axes that are normalised together: (B, C) pooled, or (B, T, C) per frame.
    shape = (B, T, -1, C) if per_frame else (B, -1, C)
    pooled = 2 if per_frame else 1
    err = torch.linalg.vector_norm((pred - true).reshape(shape), ord=2, dim=pooled)
    ref = torch.linalg.vector_norm(true.reshape(shape), ord=2, dim=pooled)
    ratio = err / ref.clamp_min(eps)
    return ratio.reshape(B, -1).mean(dim=1)


def max_error(pred: FieldLike, true: FieldLike, *, weights: FieldLike | None = None) -> Tensor:
    """Largest pointwise error of each sample: ``max |pred − true|`` over time, space and channels.

    Args:
        pred, true: ``(B, T, *space, C)``.
        weights: accepted for a common signature and checked; a maximum does not depend on them.

    Returns:
        ``(B,)`` float64.
    """
    pred, true = _prepare(pred, true)
    space_weights(weights, pred.shape[2:-1], pred.device)
    return _flat(pred - true).abs().amax(dim=1)


def rmse(pred: FieldLike, true: FieldLike, *, weights: FieldLike | None = None) -> Tensor:
    """Root-mean-square error of each sample: ``sqrt(mean((pred − true)²))`` over time, space, channels.

    Args:
        pred, true: ``(B, T, *space, C)``.
        weights: ``space``-shaped quadrature weights (:func:`space_weights`, mean 1 after rescaling,
            so the mean becomes ``Σ w e² / Σ w`` over space); ``None``: uniform.

    Returns:
        ``(B,)`` float64.
    """
    pred, true = _prepare(pred, true)
    w = space_weights(weights, pred.shape[2:-1], pred.device)
    return _flat(_weigh((pred - true).square(), w, 1.0)).mean(dim=1).sqrt()


METRICS: dict[str, Callable[..., Tensor]] = {
    "relative_l2": relative_l2,
    "relative_l1": relative_l1,
    "nrmse": nrmse,
    "max_error": max_error,
    "rmse": rmse,
}
"""Metric name -> function ``(pred, true, *, weights=None) -> (B,)``; the names used in ``metrics.json``."""


def compute_metrics(pred: FieldLike, true: FieldLike, names: Sequence[str] | None = None, *,
                    weights: FieldLike | None = None) -> dict[str, Tensor]:
    """Every metric of :data:`METRICS` (or those in ``names``) on one batch.

    Args:
        pred, true: ``(B, T, *space, C)``.
        names: metric names to compute; all of :data:`METRICS` when ``None``.
        weights: ``space``-shaped quadrature weights for every metric (:func:`space_weights`), e.g.
            a mesh's lumped-mass weights; ``None``: every point alike.

    Returns:
        name -> ``(B,)`` float64 tensor, in the order of ``names`` (or of :data:`METRICS`).
    """
    names = list(METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; allowed: {', '.join(sorted(METRICS))}")
    # Convert once, so the metrics below do not each copy the batch to float64 again.
    pred, true = _prepare(pred, true)
    return {name: METRICS[name](pred, true, weights=weights) for name in names}


def summarize(per_sample: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Reduce per-sample metric values to statistics over the samples.

    Args:
        per_sample: name -> values, each ``(N,)`` (tensor, array or list), e.g. the output of
            :func:`compute_metrics` concatenated over batches.

    Returns:
        name -> ``{"mean", "std", "median", "min", "max"}`` as Python floats, ready for
        ``json.dump``. ``std`` is the population standard deviation (divides by ``N``), so a single
        sample gives ``0.0`` rather than NaN; ``median`` is the midpoint of the two middle values
        for even ``N``. A NaN among the samples (a diverged prediction) propagates to every
        statistic rather than being hidden.
    """
    out: dict[str, dict[str, float]] = {}
    for name, values in per_sample.items():
        v = torch.as_tensor(values).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        if v.numel() == 0:
            raise ValueError(f"metric {name!r} has no samples to summarize")
        out[name] = {
            "mean": float(v.mean()),
            "std": float(v.std(correction=0)),
            "median": float(torch.quantile(v, 0.5)),
            "min": float(v.min()),
            "max": float(v.max()),
        }
    return out


class Spectrum(NamedTuple):
    """A radially binned spectrum: ``wavenumber`` ``(K,)`` and ``value`` ``(..., K)``."""

    wavenumber: Tensor
    value: Tensor


def _lengths(lengths, ndim_space: int) -> tuple[float, ...]:
    if lengths is None:
        return (2 * math.pi,) * ndim_space
    if isinstance(lengths, (int, float)):
        lengths = (float(lengths),) * ndim_space
    lengths = tuple(float(L) for L in lengths)
    if len(lengths) != ndim_space:
        raise ValueError(f"need one length per space axis ({ndim_space}), got {lengths}")
    if any(not L > 0 for L in lengths):
        raise ValueError(f"domain lengths must be positive, got {lengths}")
    return lengths


def _shell_index(space_shape: Sequence[int], lengths: Sequence[float], device) -> tuple[Tensor, float]:
    """Shell of every Fourier mode, flattened in ``fftn`` order, and the shell width ``dk``."""
    axes = [
        2 * math.pi / L * torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
        for n, L in zip(space_shape, lengths)
    ]
    kk = torch.stack(torch.meshgrid(*axes, indexing="ij")).square().sum(dim=0).sqrt()
    # The fundamental wavenumber of the longest axis: on a square box every shell then holds the
    # modes with |k| within half a fundamental of an integer multiple, the usual turbulence binning.
    dk = 2 * math.pi / max(lengths)
    return torch.round(kk / dk).to(torch.long).reshape(-1), dk


def energy_spectrum(u: FieldLike, lengths: float | Sequence[float] | None = None, *,
                    per_frame: bool = False) -> Spectrum:
    """Radially binned energy spectrum of periodic fields.

    With the normalised Fourier coefficients ``û_k = (1/N) Σ_x u(x) e^{-i k·x}`` (``N`` grid points),
    the spectrum sums ``|û_k|²`` over the channels and over the modes of each shell
    ``round(|k| / dk) = m``, with ``dk = 2π / max(lengths)``. In 1D a shell is the pair ``±k``; in
    2D and 3D it is a ring or spherical shell. Every mode falls in some shell, so Parseval holds
    exactly: ``Σ_m E_m = mean over the grid of Σ_c u_c²`` (shells past the Nyquist wavenumber of
    the coarsest axis hold only the corners of the Fourier box, so they are incomplete).

    Args:
        u: ``(B, T, *space, C)`` with at least one space axis, periodic on every space axis.
        lengths: period of each space axis (one number for all); ``None`` means ``2π``, which makes
            the wavenumbers the integer mode numbers.
        per_frame: keep the time axis instead of averaging the spectrum over it.

    Returns:
        :class:`Spectrum` with ``wavenumber`` ``(K,)`` (``m · dk``, float64) and ``value``
        ``(B, K)`` (or ``(B, T, K)`` with ``per_frame``), float64 on the input's device.
    """
    u = _as_float64(u, "u")
    if u.ndim < 4:
        raise ValueError(f"expected (B, T, *space, C) with at least one space axis, got {tuple(u.shape)}")
    space_dims = tuple(range(2, u.ndim - 1))
    space_shape = u.shape[2:-1]
    L = _lengths(lengths, len(space_dims))
    uh = torch.fft.fftn(u, dim=space_dims, norm="forward")
    power = uh.abs().square().sum(dim=-1).reshape(u.shape[0], u.shape[1], -1)  # (B, T, modes)
    shell, dk = _shell_index(space_shape, L, u.device)
    n_shells = int(shell.max()) + 1
    energy = power.new_zeros(u.shape[0], u.shape[1], n_shells).index_add_(2, shell, power)
    if not per_frame:
        energy = energy.mean(dim=1)
    k = torch.arange(n_shells, dtype=torch.float64, device=u.device) * dk
    return Spectrum(k, energy)


def spectral_error(pred: FieldLike, true: FieldLike, lengths: float | Sequence[float] | None = None, *,
                   eps: float = DEFAULT_EPS) -> Spectrum:
    """Relative error per wavenumber shell, averaged over the batch: which scales a model misses.

    For each sample and shell ``m``, ``sqrt(E_m(pred − true) / E_m(true))`` with ``E`` from
    :func:`energy_spectrum` (time-averaged); this is the relative L2 error of both fields
    band-passed to that shell. The denominator's square root is floored at ``eps``. The ratios are
    then averaged over the ``B`` samples.

    Args:
        pred, true: ``(B, T, *space, C)``, periodic on every space axis.
        lengths: period of each space axis, as in :func:`energy_spectrum`.
        eps: floor for ``sqrt(E_m(true))``.

    Returns:
        :class:`Spectrum` with ``wavenumber`` ``(K,)`` and ``value`` ``(K,)``, float64.
    """
    eps = _check_eps(eps)
    pred, true = _prepare(pred, true, min_ndim=4)
    k, e_err = energy_spectrum(pred - true, lengths)
    _, e_true = energy_spectrum(true, lengths)
    return Spectrum(k, (e_err.sqrt() / e_true.sqrt().clamp_min(eps)).mean(dim=0))
