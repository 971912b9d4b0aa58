"""PSNR and SSIM between a restoration and its ground truth.

Two conventions:

* ``"care"`` (default, scale-invariant, as CARE's evaluation): the ground truth is
  percentile-normalised (0.1 / 99.9 → 0 / 1) and the restoration is mapped onto it by the
  least-squares affine fit (``csbdeep.utils.normalize_minmse``); PSNR and SSIM then use a
  data range of 1. Use it whenever input and target intensities differ by an unknown
  affine map (e.g. W2S, where each image was rescaled to 0–255 on its own).
* ``"raw"``: the arrays are compared as they are, with an explicit ``data_range``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

GT_PMIN, GT_PMAX = 0.1, 99.9
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ConstantGroundTruthError(ValueError):
    """PSNR/SSIM are undefined against a constant ground truth."""


@dataclass(frozen=True)
class Score:
    psnr: float
    ssim: float


def normalize_gt(gt: np.ndarray) -> np.ndarray:
    """Percentile-normalise a ground-truth frame as CARE's evaluation does."""
    from csbdeep.utils import normalize

    return normalize(np.asarray(gt, np.float32), GT_PMIN, GT_PMAX, clip=False)


def affine_fit(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``a * x + b`` with the least-squares ``a, b`` against ``target`` (float32)."""
    from csbdeep.utils import normalize_minmse

    x, target = np.asarray(x, np.float32), np.asarray(target, np.float32)
    if x.size and x.min() == x.max():  # the best fit of a constant is the target's mean
        return np.full(x.shape, target.mean(dtype=np.float64), np.float32)
    return normalize_minmse(x, target)


def _check_shapes(restored: np.ndarray, gt: np.ndarray) -> None:
    if restored.shape != gt.shape:
        raise ValueError(f"restoration {restored.shape} and ground truth {gt.shape} "
                         "differ in shape")


def _check(restored: np.ndarray, gt: np.ndarray) -> None:
    _check_shapes(restored, gt)
    if restored.ndim != 2:
        raise ValueError(f"metrics take 2D frames, got shape {restored.shape}")
    if not (np.all(np.isfinite(restored)) and np.all(np.isfinite(gt))):
        raise ValueError("restoration or ground truth contains NaN or infinite values")
    for what, img in (("restoration", restored), ("ground truth", gt)):
        top = float(np.max(np.abs(img))) if img.size and img.dtype.kind == "f" else 0.0
        if top > _FLOAT32_MAX:
            raise ValueError(f"{what}: values up to {top:.3g} do not fit float32")
    if gt.size and gt.min() == gt.max():
        raise ConstantGroundTruthError(
            f"PSNR/SSIM are undefined against a constant ground truth (all values "
            f"{gt.flat[0]}); use frames with structure")


def score(restored: np.ndarray, gt: np.ndarray, mode: str = "care",
          data_range: float | None = None) -> Score:
    """PSNR (dB) and SSIM of one 2D frame; see the module docstring for ``mode``."""
    restored, gt = np.asarray(restored), np.asarray(gt)
    _check(restored, gt)
    if mode == "care":
        lo, hi = np.percentile(gt, (GT_PMIN, GT_PMAX))
        if not hi > lo:
            raise ConstantGroundTruthError(
                f"PSNR/SSIM are undefined against a nearly constant ground truth (its "
                f"{GT_PMIN} and {GT_PMAX} percentiles are both {lo:g}); use --metric raw")
        gt_n = normalize_gt(gt)
        fit = affine_fit(restored, gt_n)
        rng = 1.0
        a, b = fit, gt_n
    elif mode == "raw":
        if data_range is None:
            raise ValueError("raw metrics need an explicit data_range (e.g. 255 for 8-bit)")
        if not (np.isfinite(data_range) and data_range > 0):
            raise ValueError(f"data_range must be a positive number, got {data_range}")
        a, b, rng = restored.astype(np.float64), gt.astype(np.float64), float(data_range)
    else:
        raise ValueError(f"unknown metric mode {mode!r}; use 'care' or 'raw'")
    with np.errstate(all="ignore"):
        psnr = float(peak_signal_noise_ratio(b, a, data_range=rng))
        ssim = float(structural_similarity(b, a, data_range=rng))
    # +inf PSNR is the exact answer for a perfect restoration; anything else is an error
    if not (np.isfinite(ssim) and (np.isfinite(psnr) or psnr == np.inf)):
        raise ValueError(f"PSNR/SSIM are not finite (PSNR {psnr}, SSIM {ssim}); the value "
                         "range is too large or too small for the metrics")
    return Score(psnr, ssim)


def score_stack(restored: np.ndarray, gt: np.ndarray, mode: str = "care",
                data_range: float | None = None) -> list[Score]:
    """Per-frame scores of a ``(T, Y, X)`` stack (a 2D frame counts as one)."""
    restored, gt = np.asarray(restored), np.asarray(gt)
    if restored.ndim == 2:
        restored, gt = restored[None], gt[None]
    _check_shapes(restored, gt)
    out = []
    for i, (r, g) in enumerate(zip(restored, gt, strict=True)):
        try:
            out.append(score(r, g, mode, data_range))
        except ValueError as exc:
            raise type(exc)(f"frame {i}: {exc}") from None
    return out
