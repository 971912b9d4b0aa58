"""Classical denoising baselines: total variation, non-local means, Gaussian blur.

Each runs on the percentile-normalised frame and returns the input's intensity scale. The
strength is set from the frame's noise estimate (``estimate_sigma``), or calibrated on a
validation pair (the value with the best PSNR), so the comparison with CARE is fair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..io.data import PMAX, PMIN, as_stack, open_pair, release
from .metrics import score


class BaselineName(StrEnum):
    TV = "tv"
    NLM = "nlm"
    GAUSSIAN = "gaussian"


BASELINE_LABELS = {BaselineName.TV: "TV", BaselineName.NLM: "NL-means",
                   BaselineName.GAUSSIAN: "Gaussian"}

#: Multipliers of the noise-based strength tried when calibrating on a validation pair.
CALIBRATION_FACTORS = (0.25, 0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0, 4.0)


def parse_baseline(name: str) -> BaselineName:
    key = str(name).strip().lower()
    key = {"nl-means": "nlm", "nlmeans": "nlm", "total_variation": "tv", "blur": "gaussian"}.get(
        key, key)
    try:
        return BaselineName(key)
    except ValueError:
        raise ValueError(f"unknown baseline {name!r}; choose one of: "
                         f"{', '.join(b.value for b in BaselineName)}") from None


def _normalize(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    img = np.asarray(img, np.float32)
    lo, hi = np.percentile(img, [PMIN, PMAX])
    scale = float(hi - lo) or 1.0
    return (img - lo) / scale, float(lo), scale


def noise_sigma(img: np.ndarray) -> float:
    """Gaussian noise level of a normalised frame (wavelet estimate, needs PyWavelets)."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(img))


def _apply(name: BaselineName, x: np.ndarray, factor: float) -> np.ndarray:
    """Denoise a normalised frame; strength = ``factor`` x the noise-based default."""
    if name is BaselineName.GAUSSIAN:
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(x, sigma=1.5 * factor)
    sigma = max(noise_sigma(x), 1e-4)
    if name is BaselineName.TV:
        from skimage.restoration import denoise_tv_chambolle

        return denoise_tv_chambolle(x, weight=sigma * factor)
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(x, h=0.8 * sigma * factor, sigma=sigma, fast_mode=True,
                            patch_size=5, patch_distance=6)


@dataclass(frozen=True)
class Baseline:
    """A classical method and its strength factor (1 = the noise-based default)."""

    name: BaselineName
    factor: float = 1.0

    @classmethod
    def create(cls, name: str, factor: float = 1.0) -> Baseline:
        if not factor > 0:
            raise ValueError(f"baseline strength factor must be > 0, got {factor}")
        return cls(parse_baseline(name), float(factor))

    @property
    def label(self) -> str:
        return BASELINE_LABELS[self.name]

    def restore_frame(self, img: np.ndarray) -> np.ndarray:
        x, lo, scale = _normalize(img)
        return (_apply(self.name, x, self.factor) * scale + lo).astype(np.float32)

    def restore(self, stack) -> np.ndarray:
        """Denoise a 2D image or stack (path, array or FrameStack) frame by frame."""
        frames = as_stack(stack)
        try:
            return np.stack([self.restore_frame(f) for f in frames])
        finally:
            release((frames, stack))

    @classmethod
    def calibrated(cls, name: str, low, high, frames: Sequence[int] | None = None,
                   factors: Sequence[float] = CALIBRATION_FACTORS) -> Baseline:
        """Pick the strength factor with the best mean PSNR on validation pairs."""
        lows, highs = open_pair(low, high)
        try:
            idx = list(frames) if frames is not None else list(range(min(3, lows.n_frames)))
            pairs = [(lows.frame(i), highs.frame(i)) for i in idx]
        finally:
            release((lows, low), (highs, high))
        best = max(factors, key=lambda f: np.mean(
            [score(cls.create(name, f).restore_frame(lo), hi).psnr for lo, hi in pairs]))
        return cls.create(name, best)
