"""Radially averaged Fourier power spectra (Qt-free; used by the compare dock and reports).

Losses differ most in how much high-frequency detail they restore (FFT and bandpass losses
were designed for that), so a restoration's spectrum against the ground truth's spectrum is
a compact summary of blur and of hallucinated texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RadialSpectrum:
    """``power[k]`` is the mean power in the ring around spatial frequency ``freq[k]``.

    ``freq`` is in cycles per pixel (0 … 0.5, the Nyquist frequency).
    """

    freq: np.ndarray
    power: np.ndarray


def radial_power_spectrum(img: np.ndarray, n_bins: int | None = None,
                          window: bool = True) -> RadialSpectrum:
    """Radially averaged power spectrum of a 2D image.

    The mean is removed and (by default) a 2D Hann window applied, so that the image
    borders do not add a spurious cross of high frequencies. The power is
    ``|FFT|**2 / n_pixels`` averaged over rings of equal radial frequency; ``n_bins``
    rings between 0 and Nyquist (default: half the smaller side). The DC ring is dropped.
    """
    img = np.asarray(img, np.float64)
    if img.ndim != 2:
        raise ValueError(f"power spectrum needs a 2D image, got shape {img.shape}")
    if min(img.shape) < 4:
        raise ValueError(f"image too small for a power spectrum: {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or infinite values")
    ny, nx = img.shape
    img = img - img.mean()
    if window:
        img = img * np.outer(np.hanning(ny), np.hanning(nx))
    power = np.abs(np.fft.fft2(img)) ** 2 / img.size
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.fftfreq(nx)[None, :]
    radius = np.hypot(fy, fx)
    n_bins = int(n_bins or min(ny, nx) // 2)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    idx = np.digitize(radius.ravel(), edges) - 1  # ring k holds edges[k] <= r < edges[k+1]
    valid = (idx >= 0) & (idx < n_bins) & (radius.ravel() > 0)
    sums = np.bincount(idx[valid], weights=power.ravel()[valid], minlength=n_bins)
    counts = np.bincount(idx[valid], minlength=n_bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    keep = counts > 0
    return RadialSpectrum(centres[keep], sums[keep] / counts[keep])


def spectrum_ratio(restored: RadialSpectrum, reference: RadialSpectrum) -> np.ndarray:
    """``restored.power / reference.power`` per ring (1 = the reference's power)."""
    if restored.freq.shape != reference.freq.shape or not np.allclose(restored.freq,
                                                                        reference.freq):
        raise ValueError("spectra were computed on different frequency rings")
    return restored.power / np.maximum(reference.power, np.finfo(float).tiny)
