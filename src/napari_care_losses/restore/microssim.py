"""MicroSSIM (Ashesh, Deschamps & Jug 2024): SSIM made fair to microscopy restorations.

Plain SSIM compares intensities as they are: a restoration whose background offset or
intensity range differs from the ground truth's (as every network output and every
separately rescaled acquisition does) is penalised although its structures are right.
MicroSSIM, from the paper's definition:

1. subtract each set's background, its 3rd intensity percentile (ground truth and
   restoration each their own);
2. divide both by one value, the largest background-subtracted ground-truth intensity;
3. compare with SSIM in which the restoration is multiplied by one factor ``α``, fitted
   once per dataset to maximise the mean SSIM over all its images. As the reference
   package (``microssim`` 0.0.5) does: the fit uses a 7-pixel box window, each score
   Wang et al.'s 11-tap Gaussian window (σ 1.5); both use sample covariances,
   ``K1 = 0.01``, ``K2 = 0.03``, the data range of the normalised ground truth, and leave
   out a border of half a window, as scikit-image does. (The package fits with the last
   image's ``C1``, ``C2`` for all images; here each image keeps its own, which gives the
   same ``α`` when the images share a range.)

:func:`fit_microssim` fits the offsets, the maximum and ``α`` on a set of images (frames
of a stack, or volumes); :func:`microssim` scores one image (2D, or 3D with a 3D window)
with a fit; :func:`microssim_stack` does both for a ``(T, …)`` stack. NumPy/SciPy only:
``tests/restore/test_microssim.py`` checks this against the ``microssim`` package where
it is installed (the ``microssim`` extra; it needs PyTorch, so it is not a default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

BACKGROUND_PERCENTILE = 3.0
WINDOW = 7  # box window of the α fit
SIGMA, TRUNCATE = 1.5, 3.5  # Gaussian window of the score: 11 taps
GAUSSIAN_WINDOW = 2 * int(TRUNCATE * SIGMA + 0.5) + 1
K1, K2 = 0.01, 0.03


@dataclass(frozen=True)
class MicroSSIMFit:
    """What :func:`fit_microssim` found for one dataset."""

    offset_gt: float
    offset_restored: float
    max_value: float
    alpha: float


@dataclass(frozen=True)
class _Elements:
    """Local means, variances and covariance of (gt, restored), borders cropped."""

    ux: np.ndarray
    uy: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vxy: np.ndarray
    c1: float
    c2: float


def _elements(gt: np.ndarray, restored: np.ndarray, gaussian: bool) -> _Elements:
    """``gaussian``: Wang et al.'s 11-tap Gaussian window (σ 1.5), else a 7-pixel box."""
    x = np.asarray(gt, np.float64)
    y = np.asarray(restored, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"MicroSSIM: shapes differ, {x.shape} and {y.shape}")
    window = GAUSSIAN_WINDOW if gaussian else WINDOW
    if min(x.shape) < window:
        raise ValueError(f"MicroSSIM needs images of at least {window} pixels a side, "
                         f"got {x.shape}")
    n = window ** x.ndim
    cov = n / (n - 1)

    def mean(a: np.ndarray) -> np.ndarray:
        if gaussian:
            return ndimage.gaussian_filter(a, SIGMA, truncate=TRUNCATE, mode="reflect")
        return ndimage.uniform_filter(a, WINDOW)

    ux, uy = mean(x), mean(y)
    vx = cov * (mean(x * x) - ux * ux)
    vy = cov * (mean(y * y) - uy * uy)
    vxy = cov * (mean(x * y) - ux * uy)
    r = float(x.max() - x.min())
    inner = tuple(slice(window // 2, -(window // 2)) for _ in range(x.ndim))
    return _Elements(ux[inner], uy[inner], vx[inner], vy[inner], vxy[inner],
                     (K1 * r) ** 2, (K2 * r) ** 2)


def _ssim_map(alpha: float, e: _Elements) -> np.ndarray:
    """SSIM of gt against ``alpha`` × restored, from the local statistics."""
    luminance = (2 * alpha * e.ux * e.uy + e.c1) / (e.ux ** 2 + alpha ** 2 * e.uy ** 2 + e.c1)
    structure = (2 * alpha * e.vxy + e.c2) / (e.vx + alpha ** 2 * e.vy + e.c2)
    return luminance * structure


def _normalise(img: np.ndarray, offset: float, max_value: float) -> np.ndarray:
    return (np.asarray(img, np.float64) - offset) / max_value


def fit_microssim(gts: Sequence[np.ndarray], restored: Sequence[np.ndarray]) -> MicroSSIMFit:
    """Fit background offsets, the normalising maximum and ``α`` on a set of image pairs."""
    gts = [np.asarray(g) for g in gts]
    restored = [np.asarray(r) for r in restored]
    if not gts or len(gts) != len(restored):
        raise ValueError(f"MicroSSIM: {len(gts)} ground truths for {len(restored)} images")
    all_gt = np.concatenate([g.ravel() for g in gts])
    all_r = np.concatenate([r.ravel() for r in restored])
    offset_gt = float(np.percentile(all_gt, BACKGROUND_PERCENTILE))
    offset_r = float(np.percentile(all_r, BACKGROUND_PERCENTILE))
    max_value = float(all_gt.max() - offset_gt)
    if not np.isfinite(max_value) or max_value <= 0:
        raise ValueError("MicroSSIM: the ground truth is constant (nothing to compare)")
    elements = [_elements(_normalise(g, offset_gt, max_value),
                          _normalise(r, offset_r, max_value), gaussian=False)
                for g, r in zip(gts, restored, strict=True)]
    pooled = _Elements(*(np.concatenate([getattr(e, f).ravel() for e in elements])
                         for f in ("ux", "uy", "vx", "vy", "vxy")), 0.0, 0.0)
    c1 = np.concatenate([np.full(e.ux.size, e.c1) for e in elements])
    c2 = np.concatenate([np.full(e.ux.size, e.c2) for e in elements])
    pooled = _Elements(pooled.ux, pooled.uy, pooled.vx, pooled.vy, pooled.vxy, c1, c2)
    # the mean SSIM has one maximum in α > 0: search it on a log scale
    result = optimize.minimize_scalar(lambda t: -float(_ssim_map(np.exp(t), pooled).mean()),
                                      bounds=(-12.0, 12.0), method="bounded",
                                      options={"xatol": 1e-7})
    return MicroSSIMFit(offset_gt, offset_r, max_value, float(np.exp(result.x)))


def microssim(gt: np.ndarray, restored: np.ndarray, fit: MicroSSIMFit) -> float:
    """MicroSSIM of one image (2D, or a 3D volume with a 3D window) under ``fit``."""
    e = _elements(_normalise(gt, fit.offset_gt, fit.max_value),
                  _normalise(restored, fit.offset_restored, fit.max_value), gaussian=True)
    return float(_ssim_map(fit.alpha, e).mean())


def microssim_stack(gt: np.ndarray, restored: np.ndarray) -> tuple[list[float], MicroSSIMFit]:
    """Per-image MicroSSIM of a ``(T, …)`` stack, fitted on the whole stack."""
    gt, restored = np.asarray(gt), np.asarray(restored)
    if gt.shape != restored.shape:
        raise ValueError(f"MicroSSIM: shapes differ, {gt.shape} and {restored.shape}")
    fit = fit_microssim(list(gt), list(restored))
    return [microssim(g, r, fit) for g, r in zip(gt, restored, strict=True)], fit
