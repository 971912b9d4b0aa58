"""Independent NumPy / SciPy references for the 3D forms of the losses, on float64 arrays
``(batch, Z, Y, X, C)`` (:mod:`.reference` dispatches to them for ``ndim=3``).

Written from the definitions with ``scipy.ndimage`` and ``numpy.fft`` (whole-array filters,
cropping, block means), not from the TensorFlow code of :mod:`.keras3d`; they share only the
:class:`~.grid.Grid` (per-axis sigmas, window radii, MS-SSIM pooling plan).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import Grid
from .kernels import GAUSS_TRUNCATE, MSSSIM_WEIGHTS, SSIM_K1, SSIM_K2, SSIM_MAX_VAL


def _volumes(x: np.ndarray) -> list[np.ndarray]:
    """Split (B, Z, Y, X, C) into its volumes, in (b, c) order."""
    return [x[b, ..., c] for b in range(x.shape[0]) for c in range(x.shape[4])]


def fft3(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    axes = (1, 2, 3)
    diff = (np.fft.fftn(y_pred, axes=axes, norm="ortho")
            - np.fft.fftn(y_true, axes=axes, norm="ortho"))
    return float(np.mean(np.abs(diff)))


def dog3(x: np.ndarray, sigma1: float, sigma2: float, grid: Grid) -> np.ndarray:
    """Difference of Gaussians of (B, Z, Y, X, C) with per-axis sigmas (reflect, 4σ)."""

    def blur(s: float) -> np.ndarray:
        return ndimage.gaussian_filter(x, sigma=(0, *grid.per_axis(s), 0), mode="reflect",
                                       truncate=GAUSS_TRUNCATE)

    return blur(sigma1) - blur(sigma2)


def bandpass3(y_true: np.ndarray, y_pred: np.ndarray, sigma1: float, sigma2: float,
              grid: Grid) -> float:
    return float(np.mean(np.abs(dog3(y_true, sigma1, sigma2, grid)
                                - dog3(y_pred, sigma1, sigma2, grid))))


def _ssim_cs(x: np.ndarray, y: np.ndarray, grid: Grid) -> tuple[float, float]:
    """Mean SSIM and contrast-structure of two volumes: Gaussian window of the grid
    (``gaussian_filter`` with per-axis sigma and radius), borders cropped (VALID)."""
    sigmas, radii = grid.ssim_window()
    crop = tuple(slice(r, n - r) for r, n in zip(radii, x.shape, strict=True))

    def filt(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=sigmas, radius=radii, mode="reflect")[crop]

    c1, c2 = (SSIM_K1 * SSIM_MAX_VAL) ** 2, (SSIM_K2 * SSIM_MAX_VAL) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def _check_shape(x: np.ndarray, grid: Grid, scales: bool = False) -> None:
    need = grid.ssim_min_shape(scales)
    if any(s < n for s, n in zip(x.shape[1:4], need, strict=True)):
        raise ValueError(f"3D (MS-)SSIM needs volumes of at least {'×'.join(map(str, need))} "
                         f"(Z×Y×X), got {x.shape[1:4]}")


def ssim3(y_true: np.ndarray, y_pred: np.ndarray, grid: Grid) -> float:
    """Mean 3D SSIM over volumes and channels."""
    _check_shape(y_pred, grid)
    return float(np.mean([_ssim_cs(t, p, grid)[0]
                          for t, p in zip(_volumes(y_true), _volumes(y_pred), strict=True)]))


def _pool(a: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Block means of ``factors`` (trailing rows dropped)."""
    shape = [n // f for n, f in zip(a.shape, factors, strict=True)]
    a = a[tuple(slice(0, n * f) for n, f in zip(shape, factors, strict=True))]
    blocks = a.reshape([v for n, f in zip(shape, factors, strict=True) for v in (n, f)])
    return blocks.mean(axis=(1, 3, 5))


def msssim3(y_true: np.ndarray, y_pred: np.ndarray, grid: Grid, eps: float = 1e-6) -> float:
    """Mean 3D MS-SSIM over volumes and channels, pooled as ``grid.msssim_pools()``."""
    _check_shape(y_pred, grid, scales=True)
    pools = grid.msssim_pools()
    scales = len(pools) + 1
    weights = np.asarray(MSSSIM_WEIGHTS[:scales], dtype=np.float64)
    weights /= weights.sum()
    values = []
    for x, y in zip(_volumes(y_true), _volumes(y_pred), strict=True):
        value = 1.0
        for j in range(scales):
            ssim, cs = _ssim_cs(x, y, grid)
            value *= max(ssim if j == scales - 1 else cs, eps) ** weights[j]
            if j < scales - 1:
                x, y = _pool(x, pools[j]), _pool(y, pools[j])
        values.append(value)
    return float(np.mean(values))


__all__ = ["bandpass3", "dog3", "fft3", "msssim3", "ssim3"]
