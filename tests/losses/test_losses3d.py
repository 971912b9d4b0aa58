"""3D forms of the losses: Keras against the SciPy/NumPy references on small volumes
``(B, Z, Y, X, C)``, with isotropic and anisotropic voxels, and what makes them 3D."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from napari_care_losses.losses import LossName, LossSpec, loss_record  # noqa: E402
from napari_care_losses.losses.keras_losses import make_loss  # noqa: E402
from napari_care_losses.losses.reference import reference_loss  # noqa: E402

ALL_LOSSES = list(LossName)
NON_PROBABILISTIC = [n for n in LossName if n is not LossName.LAPLACE]
BANDPASS = (LossName.BANDPASS, LossName.FFT_BANDPASS)
#: (shape, voxel size (dz, dy, dx), bandpass parameters that fit the patch)
CASES = {
    "iso-2x16x32x32": ((2, 16, 32, 32, 1), None, {"sigma2": 3.0}),
    "aniso-2x8x32x32": ((2, 8, 32, 32, 1), (0.5, 0.16, 0.16), {}),
    "aniso2-1x16x64x64x2": ((1, 16, 64, 64, 2), (2.0, 1.0, 1.0), {}),
    "dy-1x12x32x48": ((1, 12, 32, 48, 1), (1.0, 0.8, 1.0), {"sigma2": 2.5}),
}


def make_pair(shape, name, seed=0):
    """Smooth-ish target volume in [0, 1] and a noisy prediction (2C channels for Laplace)."""
    rng = np.random.default_rng(seed)
    b, z, h, w, c = shape
    zz, yy, xx = np.mgrid[:z, :h, :w] / max(h, w)
    base = 0.5 + 0.3 * np.sin(6 * xx + 3 * yy + 4 * zz)[None, ..., None]
    y_true = np.clip(base + 0.1 * rng.standard_normal(shape), 0, 1)
    y_pred = y_true + 0.1 * rng.standard_normal(shape) + 0.02
    if name is LossName.LAPLACE:
        y_pred = np.concatenate([y_pred, rng.uniform(0.05, 0.5, size=shape)], axis=-1)
    return y_true.astype(np.float32), y_pred.astype(np.float32)


def params_for(name, bandpass):
    return dict(bandpass) if name in BANDPASS else None


def keras3(name, y_true, y_pred, params=None, patch=None, voxel=None) -> float:
    fn = make_loss(name, params, patch, ndim=3, voxel_size=voxel)
    return float(fn(tf.constant(y_true), tf.constant(y_pred)).numpy())


def ref3(name, y_true, y_pred, params=None, patch=None, voxel=None) -> float:
    return reference_loss(name, y_true, y_pred, params, patch, ndim=3, voxel_size=voxel)


def slice_mean_2d(name, y_true, y_pred, params=None) -> float:
    """Mean over Z of the 2D loss of each slice."""
    return float(np.mean([reference_loss(name, y_true[:, z], y_pred[:, z], params)
                          for z in range(y_true.shape[1])]))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_keras_3d_matches_reference(name, case) -> None:
    shape, voxel, bandpass = CASES[case]
    y_true, y_pred = make_pair(shape, name)
    params, patch = params_for(name, bandpass), shape[1:4]
    got = keras3(name, y_true, y_pred, params, patch, voxel)
    want = ref3(name, y_true, y_pred, params, patch, voxel)
    assert np.isfinite(want) and abs(want) > 1e-3
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name, params",
    [(LossName.BANDPASS, {"sigma1": 1.0, "sigma2": 2.0}),
     (LossName.FFT_BANDPASS, {"weight": 0.2, "sigma1": 0.8, "sigma2": 2.5}),
     (LossName.MSSSIM_L1, {"alpha": 0.5})])
def test_non_default_params_3d(name, params) -> None:
    shape, voxel = (2, 12, 64, 64, 1), (0.4, 0.2, 0.2)
    y_true, y_pred = make_pair(shape, name, seed=3)
    got = keras3(name, y_true, y_pred, params, shape[1:4], voxel)
    want = ref3(name, y_true, y_pred, params, shape[1:4], voxel)
    assert abs(want - ref3(name, y_true, y_pred, None, shape[1:4], voxel)) > 1e-4
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_msssim_pools_z_only_while_it_holds_the_window() -> None:
    """16 slices at anisotropy 2: the Z window has 2·round(5/2)+1 = 7 taps, so the first
    step halves Z (8 ≥ 7) and the second does not (4 < 7); the value follows the plan."""
    grid = loss_record("msssim_l1").grid((16, 64, 64), 3, (2.0, 1.0, 1.0))
    taps_z = 2 * grid.ssim_window()[1][0] + 1
    assert 16 // 2 >= taps_z > 16 // 4
    assert grid.msssim_pools() == ((2, 2, 2), (1, 2, 2))
    iso = loss_record("msssim_l1").grid((16, 64, 64), 3)
    assert iso.msssim_pools() == ((1, 2, 2), (1, 2, 2))  # 11 taps: Z never halved


def test_reference_ssim_3d_equals_scikit_image_when_isotropic() -> None:
    """scikit-image's n-D SSIM (Gaussian σ 1.5, 11 taps, cropped) on isotropic volumes."""
    from skimage.metrics import structural_similarity

    y_true, y_pred = make_pair((2, 14, 24, 24, 1), LossName.SSIM, seed=5)
    want = np.mean([structural_similarity(y_true[b, ..., 0].astype(np.float64),
                                          y_pred[b, ..., 0].astype(np.float64),
                                          gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1.0)
                    for b in range(2)])
    got = 1.0 - ref3(LossName.SSIM, y_true, y_pred)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(1.0 - keras3(LossName.SSIM, y_true, y_pred), want, rtol=1e-5)


def _independent_slices(seed=6, z=8):
    """Target volumes whose Z slices are independent images, and a per-slice error image
    ``e0`` (one per volume)."""
    rng = np.random.default_rng(seed)
    y_true = rng.uniform(size=(2, z, 32, 32, 1))
    e0 = 0.1 * rng.standard_normal((2, 1, 32, 32, 1))
    return y_true, e0, (-1.0) ** np.arange(z)[None, :, None, None, None]


@pytest.mark.parametrize("name", [LossName.MAE, LossName.MSE, LossName.LAPLACE])
def test_elementwise_3d_is_the_mean_of_the_slices(name) -> None:
    y_true, e0, sign = _independent_slices()
    rng = np.random.default_rng(7)
    y_pred = y_true + sign * e0 + 0.05 * rng.standard_normal(y_true.shape)
    if name is LossName.LAPLACE:
        y_pred = np.concatenate([y_pred, rng.uniform(0.05, 0.5, y_true.shape)], axis=-1)
    want = slice_mean_2d(name, y_true, y_pred)
    np.testing.assert_allclose(ref3(name, y_true, y_pred), want, rtol=1e-12)
    np.testing.assert_allclose(keras3(name, y_true.astype(np.float32),
                                      y_pred.astype(np.float32)), want, rtol=1e-5)


@pytest.mark.parametrize("sign_flips", [True, False], ids=["alternating", "constant"])
def test_fft_3d_uses_z(sign_flips) -> None:
    """Slices independent, the same error image on every slice (or with alternating sign):
    all its energy lies at one Z frequency, so the orthonormal 3D value is the 2D slice
    mean / √Z (the 2D slice mean cannot tell these errors from independent ones)."""
    y_true, e0, sign = _independent_slices()
    y_pred = y_true + (sign if sign_flips else 1.0) * e0
    two_d = slice_mean_2d(LossName.FFT, y_true, y_pred)
    want = two_d / np.sqrt(y_true.shape[1])
    np.testing.assert_allclose(ref3(LossName.FFT, y_true, y_pred), want, rtol=1e-10)
    got = keras3(LossName.FFT, y_true.astype(np.float32), y_pred.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bandpass_3d_uses_z() -> None:
    """A Z-constant error passes the Z Gaussians unchanged (normalised kernels, reflect):
    3D = 2D slice mean. An error alternating in sign along Z is smoothed away by the outer
    Gaussian along Z but not in 2D: the values differ."""
    params = {"sigma1": 0.5, "sigma2": 2.0}
    y_true, e0, sign = _independent_slices(z=12)
    flat = y_true + e0
    np.testing.assert_allclose(ref3(LossName.BANDPASS, y_true, flat, params),
                               slice_mean_2d(LossName.BANDPASS, y_true, flat, params),
                               rtol=1e-10)
    np.testing.assert_allclose(
        keras3(LossName.BANDPASS, y_true.astype(np.float32), flat.astype(np.float32), params),
        slice_mean_2d(LossName.BANDPASS, y_true, flat, params), rtol=1e-5)
    alternating = y_true + sign * e0
    three_d = keras3(LossName.BANDPASS, y_true.astype(np.float32),
                     alternating.astype(np.float32), params)
    two_d = slice_mean_2d(LossName.BANDPASS, y_true, alternating, params)
    assert abs(three_d / two_d - 1) > 0.1
    np.testing.assert_allclose(three_d, ref3(LossName.BANDPASS, y_true, alternating, params),
                               rtol=1e-5)


def test_only_the_voxel_shape_matters_and_anisotropy_changes_the_value() -> None:
    y_true, y_pred = make_pair((2, 16, 32, 32, 1), LossName.BANDPASS, seed=8)
    for name in (LossName.BANDPASS, LossName.SSIM):
        params = {"sigma2": 3.0} if name is LossName.BANDPASS else None
        fine = keras3(name, y_true, y_pred, params, voxel=(0.4, 0.2, 0.2))
        np.testing.assert_allclose(keras3(name, y_true, y_pred, params, voxel=(2.0, 1.0, 1.0)),
                                   fine, rtol=1e-6)
        iso = keras3(name, y_true, y_pred, params)
        assert abs(fine / iso - 1) > 1e-3


def test_fft_3d_scale_independent_of_patch_shape() -> None:
    rng = np.random.default_rng(9)
    for shape in ((4, 8, 32, 32, 1), (2, 16, 64, 64, 1)):
        y_true = rng.uniform(size=shape).astype(np.float32)
        noise = 0.1 * rng.standard_normal(shape).astype(np.float32)
        # orthonormal FFT of white noise: |F| is Rayleigh with mean sigma * sqrt(pi) / 2
        assert keras3(LossName.FFT, y_true, y_true + noise) == pytest.approx(
            0.1 * np.sqrt(np.pi) / 2, rel=0.03)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_graph_mode_with_unknown_shapes_3d(name) -> None:
    """Unknown sizes take the 1-D conv3d path: same value as the references."""
    shape, voxel = (2, 16, 64, 64, 1), (0.5, 0.25, 0.25)
    y_true, y_pred = make_pair(shape, name, seed=1)
    fn = make_loss(name, None, shape[1:4], ndim=3, voxel_size=voxel)
    spec_t = tf.TensorSpec([None] * 4 + [y_true.shape[-1]], tf.float32)
    spec_p = tf.TensorSpec([None] * 4 + [y_pred.shape[-1]], tf.float32)
    graph_fn = tf.function(fn, input_signature=[spec_t, spec_p])
    got = float(graph_fn(tf.constant(y_true), tf.constant(y_pred)).numpy())
    np.testing.assert_allclose(got, ref3(name, y_true, y_pred, None, shape[1:4], voxel),
                               rtol=2e-5)


@pytest.mark.parametrize("identical", [False, True], ids=["noisy", "identical"])
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradients_finite_3d(name, identical) -> None:
    shape, voxel = (1, 8, 32, 32, 2), (0.5, 0.16, 0.16)
    y_true, y_pred = make_pair(shape, name, seed=2)
    if identical:
        y_pred[..., :2] = y_true
    fn = make_loss(name, patch_size=shape[1:4], ndim=3, voxel_size=voxel)
    pred = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = fn(tf.constant(y_true), pred)
    grad = tape.gradient(value, pred).numpy()
    assert value.shape == () and np.all(np.isfinite(grad))
    if not identical:
        assert np.abs(grad).max() > 0


@pytest.mark.parametrize("name", NON_PROBABILISTIC)
def test_zero_for_perfect_prediction_3d(name) -> None:
    y_true, _ = make_pair((1, 8, 32, 32, 1), name, seed=4)
    patch, voxel = y_true.shape[1:4], (0.5, 0.16, 0.16)
    assert keras3(name, y_true, y_true, None, patch, voxel) == pytest.approx(0.0, abs=1e-5)
    assert ref3(name, y_true, y_true, None, patch, voxel) == pytest.approx(0.0, abs=1e-9)


def test_make_loss_takes_a_spec() -> None:
    y_true, y_pred = make_pair((1, 12, 32, 32, 1), LossName.BANDPASS, seed=10)
    spec = LossSpec.create("bandpass", {"sigma2": 2.0}, (12, 32, 32), ndim=3)
    fn = make_loss(spec, ndim=3, voxel_size=None)
    assert float(fn(tf.constant(y_true), tf.constant(y_pred))) == pytest.approx(
        ref3("bandpass", y_true, y_pred, {"sigma2": 2.0}), rel=2e-5)


@pytest.mark.parametrize(
    "name, params, patch, voxel, match",
    [("bandpass", None, (16, 64, 64), None,
      r"radius 20 px along Z \(patch 16 px\).*anisotropy dz/dx = 1 \(no voxel size"),
     ("fft+bandpass", {"sigma2": 3.0}, (16, 8, 64), None, r"radius 12 px along Y \(patch 8"),
     ("ssim", None, (8, 64, 64), (0.2, 0.2, 0.2), r"needs 11 px along Z \(patch 8 px\)"),
     ("msssim_l1", None, (4, 64, 64), (0.6, 0.2, 0.2), r"needs 5 px along Z \(patch 4 px\)"),
     ("mae", None, None, (0.5, 0.0, 0.1), "voxel size must be 3 positive numbers"),
     ("mse", None, (8, 32), None, "patch size must be 3 positive numbers"),
     ("fft", None, None, (0.5, "a", 0.1), "voxel size must be 3 numbers")])
def test_invalid_3d_settings_one_line(name, params, patch, voxel, match) -> None:
    with pytest.raises(ValueError, match=match) as err:
        make_loss(name, params, patch, ndim=3, voxel_size=voxel)
    assert "\n" not in str(err.value) and f"loss {loss_record(name).name!r}" in str(err.value)
    with pytest.raises(ValueError, match=match):
        reference_loss(name, np.zeros((1, 8, 8, 8, 1)), np.zeros((1, 8, 8, 8, 1)), params,
                       patch, ndim=3, voxel_size=voxel)


def test_anisotropy_makes_a_short_stack_fit() -> None:
    """The default bandpass does not fit 16 isotropic slices; with dz = 3.125 dx it does."""
    with pytest.raises(ValueError, match="along Z"):
        LossSpec.create("bandpass", None, (16, 64, 64), ndim=3)
    spec = LossSpec.create("bandpass", None, (16, 64, 64), ndim=3, voxel_size=(0.5, 0.16, 0.16))
    assert spec.params == loss_record("bandpass").defaults


def test_wrong_rank_and_too_small_volumes_one_line() -> None:
    images = tf.zeros((2, 32, 32, 1))
    with pytest.raises(ValueError, match=r"3D fft loss needs tensors \(batch, Z, Y, X"):
        make_loss("fft", ndim=3)(images, images)
    with pytest.raises(ValueError, match=r"2D mae loss needs arrays \(batch, Y, X, C\)"):
        reference_loss("mae", np.zeros((1, 4, 8, 8, 1)), np.zeros((1, 4, 8, 8, 1)))
    small = tf.zeros((1, 6, 32, 32, 1))  # isotropic SSIM window: 11 slices
    with pytest.raises(ValueError, match=r"at least 11×11×11 \(Z×Y×X\), got \(6, 32, 32\)"):
        make_loss("ssim", ndim=3)(small, small)
    with pytest.raises(ValueError, match="at least 11×11×11"):
        reference_loss("ssim", np.zeros((1, 6, 32, 32, 1)), np.zeros((1, 6, 32, 32, 1)),
                       ndim=3)
    volumes = tf.zeros((1, 12, 32, 32, 1))
    for name in NON_PROBABILISTIC:
        if name in (LossName.MAE, LossName.MSE):  # elementwise: any shape
            assert float(make_loss(name)(volumes, volumes)) == 0.0
            continue
        with pytest.raises(ValueError, match=r"2D \S+ loss needs tensors \(batch, Y, X, ch.*"
                                             r"got shape \(1, 12, 32, 32, 1\); make_loss\("):
            make_loss(name, patch_size=32)(volumes, volumes)
    with pytest.raises(ValueError, match="2D or 3D"):
        make_loss("mae", ndim=4)
    with pytest.raises(ValueError, match="voxel size applies to 3D"):
        make_loss("bandpass", voxel_size=(1.0, 1.0))


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_3d_loss_trains_a_keras_3d_network(name) -> None:
    """``model.compile(loss=make_loss(..., ndim=3))`` on a small Conv3D network whose input
    has unknown Z, Y, X (as CSBDeep's 3D U-Net): fit runs, the loss is finite and falls."""
    import keras

    shape, voxel = (4, 8, 32, 32, 1), (0.5, 0.16, 0.16)
    y_true, _ = make_pair(shape, LossName.MAE, seed=11)
    rng = np.random.default_rng(12)
    x = (y_true + 0.2 * rng.standard_normal(shape)).astype(np.float32)
    inp = keras.Input((None, None, None, 1))
    hidden = keras.layers.Conv3D(4, 3, padding="same", activation="relu")(inp)
    out = keras.layers.Conv3D(1, 3, padding="same")(hidden)
    if name is LossName.LAPLACE:
        scale = keras.layers.Conv3D(1, 1, activation="softplus")(hidden)
        out = keras.layers.Concatenate()([out, scale])
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(3e-3),
                  loss=make_loss(name, None, shape[1:4], ndim=3, voxel_size=voxel))
    history = model.fit(x, y_true, batch_size=2, epochs=6, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]


def test_bandpass_sigma_along_z_is_sigma_over_anisotropy() -> None:
    """Written out with scipy.ndimage (not through the Grid): σ·dx/dz along Z, σ·dx/dy
    along Y, σ along X; 4σ truncation, reflect."""
    from scipy import ndimage

    dz, dy, dx = 0.6, 0.25, 0.2
    s1, s2 = 0.7, 2.5
    y_true, y_pred = make_pair((2, 16, 40, 40, 1), LossName.BANDPASS, seed=13)

    def dog(x):
        def blur(s):
            return ndimage.gaussian_filter(x.astype(np.float64), (0, s * dx / dz, s * dx / dy,
                                                                  s, 0), truncate=4.0)
        return blur(s1) - blur(s2)

    want = float(np.mean(np.abs(dog(y_pred) - dog(y_true))))
    params = {"sigma1": s1, "sigma2": s2}
    voxel = (dz, dy, dx)
    np.testing.assert_allclose(ref3("bandpass", y_true, y_pred, params, voxel=voxel), want,
                               rtol=1e-12)
    np.testing.assert_allclose(keras3("bandpass", y_true, y_pred, params, voxel=voxel), want,
                               rtol=2e-5)


def _smooth_field(dz: float, nz: int, size: int = 32, seed: int = 14) -> np.ndarray:
    """A smooth random field (12 plane waves, wavelengths ≥ ~6 px) sampled every ``dz``
    along Z and every 1 along Y and X, over the same physical extent: (1, Z, Y, X, 1)."""
    rng = np.random.default_rng(seed)
    waves = [(rng.uniform(-1, 1, 3) * 2 * np.pi / 10, rng.uniform(0, 2 * np.pi))
             for _ in range(12)]
    zz, yy, xx = np.meshgrid((np.arange(nz) + 0.5) * dz, np.arange(size) + 0.5,
                             np.arange(size) + 0.5, indexing="ij")
    field = sum(np.cos(k[0] * zz + k[1] * yy + k[2] * xx + phase) for k, phase in waves)
    return (0.05 * field[None, ..., None]).astype(np.float32)


@pytest.mark.parametrize("name, params", [(LossName.BANDPASS, {"sigma2": 3.0}),
                                          (LossName.SSIM, None)])
def test_same_physical_volume_at_two_z_samplings(name, params) -> None:
    """An error field sampled with dz = dx (32 slices) and with dz = 2·dx (16 slices over
    the same depth): given the voxel size, the 3D loss is about the same physical quantity;
    taking the coarse stack as isotropic is off by several times more."""
    fine, coarse = _smooth_field(1.0, 32), _smooth_field(2.0, 16)
    base_f, base_c = np.full_like(fine, 0.5), np.full_like(coarse, 0.5)
    at_fine = keras3(name, base_f, base_f + fine, params)
    with_voxel = keras3(name, base_c, base_c + coarse, params, voxel=(2.0, 1.0, 1.0))
    as_isotropic = keras3(name, base_c, base_c + coarse, params)
    assert abs(with_voxel - at_fine) < abs(as_isotropic - at_fine) / 3
