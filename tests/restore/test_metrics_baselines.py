"""Metrics (CARE-style and raw) and the classical baselines."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from napari_care_losses.restore.baselines import Baseline, parse_baseline
from napari_care_losses.restore.metrics import affine_fit, score, score_stack


@pytest.fixture
def clean_noisy():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    clean = (np.sin(xx / 5.0) * np.cos(yy / 7.0) + 1.5).astype(np.float32)
    noisy = clean + rng.normal(0, 0.3, clean.shape).astype(np.float32)
    return clean, noisy


def test_care_metrics_are_invariant_to_affine_maps(clean_noisy):
    clean, noisy = clean_noisy
    a = score(noisy, clean)
    b = score(7.0 * noisy - 3.0, 100 * clean + 5)
    assert a.psnr == pytest.approx(b.psnr, abs=1e-3)
    assert a.ssim == pytest.approx(b.ssim, abs=1e-3)
    assert score(clean, clean).psnr > 60 and score(clean, clean).ssim > 0.999


def test_raw_metrics_need_data_range_and_match_skimage(clean_noisy):
    clean, noisy = clean_noisy
    with pytest.raises(ValueError, match="data_range"):
        score(noisy, clean, mode="raw")
    raw = score(noisy, clean, mode="raw", data_range=3.0)
    assert raw.psnr == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=3.0))
    # raw is not scale invariant
    assert score(2 * noisy, clean, mode="raw", data_range=3.0).psnr < raw.psnr - 3


def test_affine_fit_minimises_mse(clean_noisy):
    clean, noisy = clean_noisy
    fit = affine_fit(3 * noisy + 1, clean)
    a, b = np.polyfit((3 * noisy + 1).ravel(), clean.ravel(), 1)
    np.testing.assert_allclose(fit, a * (3 * noisy + 1) + b, rtol=1e-4, atol=1e-4)


def test_metric_errors(clean_noisy):
    clean, noisy = clean_noisy
    with pytest.raises(ValueError, match="differ in shape"):
        score(noisy[:10], clean)
    bad = noisy.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        score(bad, clean)
    assert len(score_stack(np.stack([noisy, noisy]), np.stack([clean, clean]))) == 2


@pytest.mark.parametrize("name", ["tv", "nlm", "gaussian"])
def test_baselines_denoise_and_keep_intensity_scale(clean_noisy, name):
    clean, noisy = clean_noisy
    stack = np.stack([noisy * 100, noisy * 100])
    out = Baseline.create(name).restore(stack)
    assert out.shape == stack.shape and out.dtype == np.float32
    assert abs(out.mean() - stack.mean()) < 0.1 * stack.std()  # same intensity scale
    assert score(out[0], clean).psnr > score(stack[0], clean).psnr + 2


def test_calibration_picks_a_better_strength(clean_noisy):
    clean, noisy = clean_noisy
    weak = Baseline.create("tv", 0.25)
    cal = Baseline.calibrated("tv", noisy, clean, factors=(0.25, 1.0, 3.0))
    assert cal.factor in (1.0, 3.0)
    assert score(cal.restore_frame(noisy), clean).psnr > score(weak.restore_frame(noisy),
                                                               clean).psnr


def test_baseline_names():
    assert parse_baseline("NL-means").value == "nlm"
    with pytest.raises(ValueError, match="unknown baseline"):
        parse_baseline("bm3d")
    with pytest.raises(ValueError, match="> 0"):
        Baseline.create("tv", 0)
