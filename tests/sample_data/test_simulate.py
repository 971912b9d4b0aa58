"""The 3D simulator: reproducible, photon-conserving, anisotropic, and the bundle it wrote."""

from __future__ import annotations

import numpy as np
import pytest

from napari_care_losses.sample_data import (
    VOLUME_SHAPE,
    VOLUME_SPLITS,
    load_volume_sample,
    napari_sample_volumes,
)
from napari_care_losses.sample_data.simulate import (
    Camera,
    Optics,
    simulate_pair,
    simulate_pairs,
    widefield_psf,
)

SMALL = (12, 48, 48)


def _fwhm_um(profile: np.ndarray, step_um: float) -> float:
    above = np.flatnonzero(profile >= profile.max() / 2)
    return (above[-1] - above[0] + 1) * step_um


def test_psf_conserves_photons_and_is_anisotropic():
    optics = Optics()
    psf = widefield_psf(optics)
    assert psf.sum() == pytest.approx(1.0)
    assert all(s % 2 == 1 for s in psf.shape)
    cz, cy, cx = (s // 2 for s in psf.shape)
    axial = _fwhm_um(psf[:, cy, cx], optics.voxel_um[0])
    lateral = _fwhm_um(psf[cz, cy, :], optics.voxel_um[2])
    assert axial > 2.5 * lateral  # widefield: ~0.3 µm laterally, ~1 µm axially
    # out-of-focus light: a plane 1.5 µm from focus still carries light, spread wider
    off = cz + int(round(1.5 / optics.voxel_um[0]))
    assert psf[off].sum() > 0.02 * psf[cz].sum()
    assert psf[off].max() < 0.1 * psf[cz].max()


def test_same_seed_same_pair_other_seed_other_pair():
    a, b = simulate_pair(SMALL, seed=3), simulate_pair(SMALL, seed=3)
    np.testing.assert_array_equal(a.low, b.low)
    np.testing.assert_array_equal(a.high, b.high)
    c = simulate_pair(SMALL, seed=4)
    assert not np.array_equal(a.high, c.high)
    assert [p.seed for p in simulate_pairs(2, SMALL, seed=7)] == [7, 8]


def test_low_exposure_has_the_photon_ratio_and_lower_snr():
    cam = Camera()
    pair = simulate_pair(SMALL, seed=0, camera=cam)
    assert pair.low.dtype == pair.high.dtype == np.uint16
    assert pair.low.shape == pair.high.shape == SMALL
    signal_low = pair.low.astype(float).mean() - cam.offset_adu
    signal_high = pair.high.astype(float).mean() - cam.offset_adu
    assert signal_high / signal_low == pytest.approx(cam.exposure_ratio, rel=0.1)

    def snr(img):
        truth = pair.truth / cam.exposure_ratio if img is pair.low else pair.truth
        noise = img.astype(float) - cam.offset_adu - truth
        return truth.std() / noise.std()

    assert snr(pair.high) > 3 * snr(pair.low)  # Poisson: √20 ≈ 4.5 better


def test_bundled_volumes_are_what_the_generator_makes():
    for split, (n, seed) in VOLUME_SPLITS.items():
        low, high, voxel = load_volume_sample(split)
        assert low.shape == high.shape == (n, *VOLUME_SHAPE)
        assert voxel == pytest.approx(Optics().voxel_um)
        first = simulate_pair(VOLUME_SHAPE, seed=seed)
        for bundled, made in ((low[0], first.low), (high[0], first.high)):
            # bit for bit on the machine that wrote them; elsewhere the FFT's last bits may
            # shift a Poisson draw, so the same noise-free volume is all that is required
            if not np.array_equal(bundled, made):
                assert np.corrcoef(bundled.ravel(), made.ravel())[0, 1] > 0.9
                assert bundled.mean() == pytest.approx(made.mean(), rel=0.01)


def test_napari_sample_has_voxel_scale():
    layers = napari_sample_volumes()
    assert [kw["name"] for _, kw, _ in layers] == ["sim3d train low", "sim3d train high"]
    for data, kw, kind in layers:
        assert kind == "image" and data.ndim == 4
        assert kw["scale"] == pytest.approx((1.0, *Optics().voxel_um))
