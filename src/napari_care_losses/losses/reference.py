"""Independent NumPy / scipy / scikit-image references for the registered losses.

Used by the tests to cross-check :mod:`napari_care_losses.losses.keras_losses`; they work
in float64 on channels-last arrays ``(batch, H, W, C)`` and return Python floats; with
``ndim=3`` on ``(batch, Z, Y, X, C)`` through :mod:`.reference3d`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage, signal
from skimage.metrics import structural_similarity

from . import reference3d as r3
from .grid import Grid
from .kernels import GAUSS_TRUNCATE, MSSSIM_WEIGHTS, SSIM_WINDOW, msssim_scales
from .records import Implementations

_K1, _K2, _MAX_VAL = 0.01, 0.03, 1.0

#: The NumPy reference of each loss, by name: ``ref(y_true, y_pred, **params[, patch_size])``
#: on float64 arrays.
REFERENCES = Implementations("NumPy reference", leading=2)


def _planes(x: np.ndarray) -> list[np.ndarray]:
    """Split (B, H, W, C) into its 2D planes, in (b, c) order."""
    return [x[b, :, :, c] for b in range(x.shape[0]) for c in range(x.shape[3])]


@REFERENCES.register("laplace")
def ref_laplace(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    n = y_true.shape[-1]
    mu, sigma = y_pred[..., :n], y_pred[..., n:]
    return float(np.mean(np.abs(y_true - mu) / sigma + np.log(sigma)))


@REFERENCES.register("mae")
def ref_mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_pred - y_true)))


@REFERENCES.register("mse")
def ref_mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean((y_pred - y_true) ** 2))


def _in_3d(grid: Grid | None) -> bool:
    return grid is not None and grid.ndim == 3


@REFERENCES.register("fft")
def ref_fft(y_true: np.ndarray, y_pred: np.ndarray, grid: Grid | None = None) -> float:
    if _in_3d(grid):
        return r3.fft3(y_true, y_pred)
    f_pred = np.fft.fft2(y_pred, axes=(1, 2), norm="ortho")
    f_true = np.fft.fft2(y_true, axes=(1, 2), norm="ortho")
    return float(np.mean(np.abs(f_pred - f_true)))


def _dog(x: np.ndarray, sigma1: float, sigma2: float) -> np.ndarray:
    def blur(s: float) -> np.ndarray:
        return ndimage.gaussian_filter(x, sigma=(0, s, s, 0), mode="reflect",
                                       truncate=GAUSS_TRUNCATE)

    return blur(sigma1) - blur(sigma2)


@REFERENCES.register("bandpass")
def ref_bandpass(y_true: np.ndarray, y_pred: np.ndarray, sigma1: float, sigma2: float,
                 grid: Grid | None = None) -> float:
    if _in_3d(grid):
        return r3.bandpass3(y_true, y_pred, sigma1, sigma2, grid)
    return float(np.mean(np.abs(_dog(y_true, sigma1, sigma2) - _dog(y_pred, sigma1, sigma2))))


@REFERENCES.register("fft+bandpass")
def ref_fft_bandpass(y_true: np.ndarray, y_pred: np.ndarray, weight: float, sigma1: float,
                     sigma2: float, grid: Grid | None = None) -> float:
    return (weight * ref_fft(y_true, y_pred, grid)
            + (1.0 - weight) * ref_bandpass(y_true, y_pred, sigma1, sigma2, grid))


def ref_ssim(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean SSIM over images and channels (scikit-image, Gaussian window sigma 1.5)."""
    values = [
        structural_similarity(
            t, p, gaussian_weights=True, sigma=SSIM_WINDOW[1], use_sample_covariance=False,
            data_range=_MAX_VAL,
        )
        for t, p in zip(_planes(y_true), _planes(y_pred), strict=True)
    ]
    return float(np.mean(values))


@REFERENCES.register("ssim")
def ref_ssim_loss(y_true: np.ndarray, y_pred: np.ndarray, grid: Grid | None = None) -> float:
    if _in_3d(grid):
        return 1.0 - r3.ssim3(y_true, y_pred, grid)
    return 1.0 - ref_ssim(y_true, y_pred)


def _window() -> np.ndarray:
    size, sigma = SSIM_WINDOW
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def _ssim_cs(x: np.ndarray, y: np.ndarray, win: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and contrast-structure of two 2D images, VALID window."""

    def filt(a: np.ndarray) -> np.ndarray:
        return signal.convolve2d(a, win, mode="valid")

    c1, c2 = (_K1 * _MAX_VAL) ** 2, (_K2 * _MAX_VAL) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def _pool2(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    return 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])


def ref_msssim(y_true: np.ndarray, y_pred: np.ndarray, scales: int, eps: float = 1e-6) -> float:
    """Mean MS-SSIM over images and channels (Wang et al. 2003, truncated weights)."""
    weights = np.asarray(MSSSIM_WEIGHTS[:scales], dtype=np.float64)
    weights /= weights.sum()
    win = _window()
    values = []
    for x, y in zip(_planes(y_true), _planes(y_pred), strict=True):
        value = 1.0
        for j in range(scales):
            ssim, cs = _ssim_cs(x, y, win)
            term = ssim if j == scales - 1 else cs
            value *= max(term, eps) ** weights[j]
            x, y = _pool2(x), _pool2(y)
        values.append(value)
    return float(np.mean(values))


@REFERENCES.register("msssim_l1")
def ref_msssim_l1(y_true: np.ndarray, y_pred: np.ndarray, alpha: float,
                  patch_size: int | None = None, grid: Grid | None = None) -> float:
    if _in_3d(grid):
        msssim = r3.msssim3(y_true, y_pred, grid)
    else:
        edge = min(grid.patch) if grid is not None and grid.patch is not None else patch_size
        msssim = ref_msssim(y_true, y_pred, msssim_scales(edge))
    return alpha * (1.0 - msssim) + (1.0 - alpha) * ref_mae(y_true, y_pred)


def reference_loss(
    name: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    params: Mapping[str, Any] | None = None,
    patch_size: int | Sequence[int] | None = None,
    *,
    ndim: int = 2,
    voxel_size: Sequence[float] | None = None,
) -> float:
    """Value of loss ``name`` computed with NumPy / scipy / scikit-image; ``ndim=3``: the
    3D form on ``(batch, Z, Y, X, C)`` arrays, ``voxel_size=(dz, dy, dx)`` as ``make_loss``."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    rank = ndim + 2
    if ndim in (2, 3) and (y_pred.ndim != rank or y_true.ndim != rank):
        axes = "(batch, Z, Y, X, C)" if ndim == 3 else "(batch, Y, X, C)"
        raise ValueError(f"the {ndim}D {name} loss needs arrays {axes}, got shapes "
                         f"{y_true.shape} and {y_pred.shape}")
    return float(REFERENCES.call(name, params, patch_size, y_true, y_pred, ndim=ndim,
                                 voxel_size=voxel_size))


__all__ = ["REFERENCES", "ref_msssim", "ref_ssim", "reference_loss"]
