"""MicroSSIM: invariant to background and range, lowered by noise, equal to the package."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from napari_care_losses.restore.microssim import fit_microssim, microssim, microssim_stack


def _structures(shape=(4, 64, 64), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spots = (rng.random(shape) > 0.97).astype(float)
    return ndimage.gaussian_filter(spots, [0] + [1.5] * (len(shape) - 1)) * 50 + 1.0


def test_offset_and_scale_do_not_count_but_noise_does():
    gt = _structures()
    shifted = 0.4 * gt + 30.0  # right structures, another background and range
    scores, fit = microssim_stack(gt, shifted)
    assert np.allclose(scores, 1.0, atol=1e-3)
    plain = [structural_similarity(g, s, data_range=float(g.max() - g.min()))
             for g, s in zip(gt, shifted, strict=True)]
    assert max(plain) < 0.9  # plain SSIM calls the right structures wrong
    rng = np.random.default_rng(1)
    previous = 1.0
    for sigma in (0.5, 2.0, 8.0):
        noisy = shifted + rng.normal(scale=sigma, size=gt.shape)
        score = float(np.mean(microssim_stack(gt, noisy)[0]))
        assert score < previous
        previous = score


def test_volumes_use_a_3d_window():
    gt = _structures((2, 16, 32, 32), seed=2)
    noisy = gt + np.random.default_rng(3).normal(scale=2.0, size=gt.shape)
    scores, _ = microssim_stack(gt, noisy)
    assert len(scores) == 2 and all(0 < s < 1 for s in scores)
    with pytest.raises(ValueError, match="pixels a side"):
        microssim_stack(gt[:, :4], noisy[:, :4])


def test_constant_ground_truth_is_refused():
    with pytest.raises(ValueError, match="constant"):
        fit_microssim([np.ones((16, 16))], [np.random.default_rng(0).random((16, 16))])


def test_same_as_the_microssim_package():
    package = pytest.importorskip("microssim")
    gt = _structures((3, 64, 64), seed=4)
    restored = 0.7 * gt + 5 + np.random.default_rng(5).normal(scale=1.0, size=gt.shape)
    ours, fit = microssim_stack(gt, restored)
    ref = package.MicroSSIM().fit(list(gt), list(restored))
    theirs = [ref.score(g, r) for g, r in zip(gt, restored, strict=True)]
    assert ours == pytest.approx(theirs, abs=2e-3)
    assert microssim(gt[0], restored[0], fit) == pytest.approx(ours[0])
