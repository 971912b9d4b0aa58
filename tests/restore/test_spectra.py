"""Radially averaged power spectrum (Qt-free core)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_care_losses.restore.spectra import radial_power_spectrum, spectrum_ratio


def test_sine_peaks_at_its_frequency():
    yy, xx = np.mgrid[:128, :128]
    img = np.sin(2 * np.pi * 0.125 * xx) + 0.01 * yy / 128  # 1 cycle per 8 px
    spec = radial_power_spectrum(img, n_bins=32)
    assert spec.freq.min() > 0 and spec.freq.max() < 0.5
    assert spec.freq[np.argmax(spec.power)] == pytest.approx(0.125, abs=0.5 / 32)


def test_white_noise_is_flat_and_blur_removes_high_frequencies():
    noise = np.random.default_rng(0).standard_normal((128, 128))
    flat = radial_power_spectrum(noise, window=False)
    high = flat.power[len(flat.power) // 2:]
    assert np.std(high) / np.mean(high) < 0.2  # flat up to sampling noise
    assert np.mean(high) == pytest.approx(1.0, rel=0.15)  # Parseval: variance 1
    ratio = spectrum_ratio(radial_power_spectrum(gaussian_filter(noise, 2)),
                           radial_power_spectrum(noise))
    assert ratio[-5:].max() < 1e-3 < ratio[0]


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="2D"):
        radial_power_spectrum(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        radial_power_spectrum(np.full((8, 8), np.nan))
