"""Keras losses against their NumPy references, plus properties of each loss."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from napari_care_losses.losses import (  # noqa: E402
    LossName,
    msssim_scales,
    parse_loss_name,
    validate_params,
)
from napari_care_losses.losses.keras_losses import make_loss  # noqa: E402
from napari_care_losses.losses.reference import reference_loss  # noqa: E402

SHAPES = [(2, 32, 32, 1), (3, 64, 64, 1), (2, 48, 48, 2)]
ALL_LOSSES = list(LossName)
NON_PROBABILISTIC = [n for n in LossName if n is not LossName.LAPLACE]


def make_pair(shape: tuple[int, ...], name: LossName, seed: int = 0):
    """Smooth-ish target in [0, 1] and a noisy prediction (2C channels for Laplace)."""
    rng = np.random.default_rng(seed)
    b, h, w, c = shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    base = 0.5 + 0.3 * np.sin(6 * xx + 3 * yy)[None, :, :, None]
    y_true = np.clip(base + 0.1 * rng.standard_normal(shape), 0, 1)
    y_pred = y_true + 0.1 * rng.standard_normal(shape) + 0.02
    if name is LossName.LAPLACE:
        sigma = rng.uniform(0.05, 0.5, size=shape)
        y_pred = np.concatenate([y_pred, sigma], axis=-1)
    return y_true.astype(np.float32), y_pred.astype(np.float32)


def keras_value(name, y_true, y_pred, params=None, patch_size=None) -> float:
    fn = make_loss(name, params, patch_size=patch_size)
    return float(fn(tf.constant(y_true), tf.constant(y_pred)).numpy())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_keras_matches_reference(name: LossName, shape) -> None:
    y_true, y_pred = make_pair(shape, name)
    patch = shape[1]
    got = keras_value(name, y_true, y_pred, patch_size=patch)
    want = reference_loss(name, y_true, y_pred, patch_size=patch)
    assert np.isfinite(want) and abs(want) > 1e-3  # Laplace NLL may be < 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "name, params",
    [
        (LossName.BANDPASS, {"sigma1": 1.0, "sigma2": 3.0}),
        (LossName.FFT_BANDPASS, {"weight": 0.2, "sigma1": 1.5, "sigma2": 4.0}),
        (LossName.MSSSIM_L1, {"alpha": 0.5}),
    ],
)
def test_non_default_params_match_reference(name: LossName, params) -> None:
    y_true, y_pred = make_pair((2, 64, 64, 1), name, seed=3)
    got = keras_value(name, y_true, y_pred, params, patch_size=64)
    want = reference_loss(name, y_true, y_pred, params, patch_size=64)
    default = reference_loss(name, y_true, y_pred, patch_size=64)
    assert abs(want - default) > 1e-4  # the parameters really change the value
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_graph_mode_with_unknown_shapes(name: LossName) -> None:
    y_true, y_pred = make_pair((2, 64, 64, 1), name, seed=1)
    fn = make_loss(name)
    spec_t = tf.TensorSpec([None, None, None, y_true.shape[-1]], tf.float32)
    spec_p = tf.TensorSpec([None, None, None, y_pred.shape[-1]], tf.float32)
    graph_fn = tf.function(fn, input_signature=[spec_t, spec_p])
    got = float(graph_fn(tf.constant(y_true), tf.constant(y_pred)).numpy())
    np.testing.assert_allclose(got, reference_loss(name, y_true, y_pred), rtol=1e-4)


@pytest.mark.parametrize("identical", [False, True], ids=["noisy", "identical"])
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradients_finite(name: LossName, identical: bool) -> None:
    y_true, y_pred = make_pair((2, 32, 32, 2), name, seed=2)
    if identical:
        y_pred[..., :2] = y_true
    fn = make_loss(name, patch_size=32)
    pred = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = fn(tf.constant(y_true), pred)
    grad = tape.gradient(value, pred).numpy()
    assert value.shape == ()
    assert np.all(np.isfinite(grad))
    if not identical:
        assert np.abs(grad).max() > 0


@pytest.mark.parametrize("name", NON_PROBABILISTIC)
def test_zero_for_perfect_prediction(name: LossName) -> None:
    y_true, _ = make_pair((2, 32, 32, 1), name, seed=4)
    assert keras_value(name, y_true, y_true, patch_size=32) == pytest.approx(0.0, abs=1e-5)
    assert reference_loss(name, y_true, y_true, patch_size=32) == pytest.approx(0.0, abs=1e-9)


def test_laplace_minimised_at_mean_absolute_error() -> None:
    rng = np.random.default_rng(5)
    y_true = rng.uniform(size=(2, 32, 32, 1)).astype(np.float32)
    mu = y_true + 0.2 * rng.standard_normal(y_true.shape).astype(np.float32)
    best = float(np.mean(np.abs(mu - y_true)))

    def value(scale: float) -> float:
        y_pred = np.concatenate([mu, np.full_like(mu, scale)], axis=-1)
        return keras_value(LossName.LAPLACE, y_true, y_pred)

    assert value(best) < value(0.7 * best)
    assert value(best) < value(1.4 * best)


def test_fft_scale_independent_of_patch_size() -> None:
    rng = np.random.default_rng(6)
    values = {}
    for size in (32, 128):
        y_true = rng.uniform(size=(4, size, size, 1)).astype(np.float32)
        noise = 0.1 * rng.standard_normal(y_true.shape).astype(np.float32)
        values[size] = keras_value(LossName.FFT, y_true, y_true + noise)
    assert values[32] == pytest.approx(values[128], rel=0.10)
    # orthonormal FFT of white noise: |F| is Rayleigh with mean sigma * sqrt(pi) / 2
    assert values[128] == pytest.approx(0.1 * np.sqrt(np.pi) / 2, rel=0.05)


def test_bandpass_ignores_constant_offset() -> None:
    y_true, _ = make_pair((2, 32, 32, 1), LossName.BANDPASS, seed=7)
    shifted = y_true + 0.3
    assert keras_value(LossName.BANDPASS, y_true, shifted, patch_size=32) < 1e-5
    assert reference_loss(LossName.BANDPASS, y_true, shifted) < 1e-6
    assert keras_value(LossName.MAE, y_true, shifted) == pytest.approx(0.3, rel=1e-4)


def test_single_scale_msssim_equals_ssim() -> None:
    """With 16 px patches MS-SSIM has one scale: alpha=1 must reproduce tf.image.ssim."""
    y_true, y_pred = make_pair((3, 16, 16, 1), LossName.SSIM, seed=8)
    assert msssim_scales(16) == 1
    msssim = keras_value(LossName.MSSSIM_L1, y_true, y_pred, {"alpha": 1.0}, patch_size=16)
    ssim = keras_value(LossName.SSIM, y_true, y_pred, patch_size=16)
    np.testing.assert_allclose(msssim, ssim, rtol=1e-4)


@pytest.mark.parametrize(
    "patch, scales", [(None, 3), (11, 1), (21, 1), (22, 2), (32, 2), (64, 3), (128, 4),
                      (176, 5), (512, 5)]
)
def test_msssim_scales(patch, scales) -> None:
    assert msssim_scales(patch) == scales


def test_msssim_rejects_too_small_images() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        make_loss(LossName.MSSSIM_L1, patch_size=8)
    fn = make_loss(LossName.MSSSIM_L1)  # unknown patch size: 3 scales, needs 44 px
    y = tf.zeros((1, 32, 32, 1))
    with pytest.raises(ValueError, match="44 px"):
        fn(y, y)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_loss_names_readable(name: LossName) -> None:
    fn = make_loss(name)
    assert fn.__name__.startswith("loss_")
    assert fn.__name__.isidentifier()


@pytest.mark.parametrize(
    "name, params, patch, match",
    [
        ("bandpass", {"sigma1": 5.0, "sigma2": 2.0}, None, "sigma1 < sigma2"),
        ("bandpass", {"sigma1": 3.0, "sigma2": 3.0}, None, "sigma1 < sigma2"),
        ("fft+bandpass", {"sigma2": 10.0}, 32, "larger than the 32 px"),
        ("bandpass", {"sigma": 1.0}, None, "no parameter 'sigma'"),
        ("mae", {"alpha": 0.5}, None, "allowed: none"),
        ("msssim_l1", {"alpha": 1.5}, None, "alpha must lie"),
        ("fft+bandpass", {"weight": "heavy"}, None, "must be a number"),
    ],
)
def test_invalid_params(name, params, patch, match) -> None:
    with pytest.raises(ValueError, match=match):
        validate_params(name, params, patch)
    with pytest.raises(ValueError, match=match):
        make_loss(name, params, patch_size=patch)


def test_validate_params_merges_defaults() -> None:
    assert validate_params("bp", {"sigma2": 3}) == {"sigma1": 0.5, "sigma2": 3.0}
    assert validate_params("fft+bandpass", None, 32)["weight"] == 0.5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("BP", LossName.BANDPASS),
        (" fft_bandpass ", LossName.FFT_BANDPASS),
        ("FFT+BP".replace("BP", "bandpass"), LossName.FFT_BANDPASS),
        ("MS-SSIM+L1", LossName.MSSSIM_L1),
        ("Laplace", LossName.LAPLACE),
    ],
)
def test_parse_loss_name_aliases(text: str, expected: LossName) -> None:
    assert parse_loss_name(text) is expected


def test_parse_loss_name_unknown() -> None:
    with pytest.raises(ValueError, match="unknown loss 'l3'.*laplace.*fft\\+bandpass"):
        parse_loss_name("l3")


def test_every_record_has_a_keras_form_and_a_reference() -> None:
    from napari_care_losses.losses import loss_records
    from napari_care_losses.losses.keras_losses import KERAS_FORMS
    from napari_care_losses.losses.reference import REFERENCES

    names = {r.name for r in loss_records()}
    assert set(KERAS_FORMS.functions) == names == set(REFERENCES.functions)


def test_a_new_loss_is_a_record_a_keras_form_and_a_reference(monkeypatch) -> None:
    """Registered in the test only: make_loss and reference_loss find both from the name."""
    from napari_care_losses.losses import LOSSES, LossParam, LossRecord
    from napari_care_losses.losses.keras_losses import KERAS_FORMS
    from napari_care_losses.losses.reference import REFERENCES

    gamma = LossParam("gamma", 2.0, 0.5, 8.0, "exponent of the error", "γ")
    record = LossRecord("pow", "Power", "Pow", "mean |error|^γ", "mean |restored − gt|^γ",
                        rank=99, params=(gamma,))
    monkeypatch.setitem(LOSSES, record.name, record)
    monkeypatch.setattr(KERAS_FORMS, "functions", dict(KERAS_FORMS.functions))
    monkeypatch.setattr(REFERENCES, "functions", dict(REFERENCES.functions))

    @KERAS_FORMS.register("pow")
    def pow_loss(gamma):
        def loss(y_true, y_pred):
            return tf.reduce_mean(tf.abs(y_pred - y_true) ** gamma)
        return loss

    @REFERENCES.register("pow")
    def ref_pow(y_true, y_pred, gamma):
        return float(np.mean(np.abs(y_pred - y_true) ** gamma))

    y_true, y_pred = make_pair((2, 32, 32, 1), LossName.MAE, seed=9)
    for params in (None, {"gamma": 1.0}, {"gamma": 3.0}):
        got = keras_value("pow", y_true, y_pred, params)
        np.testing.assert_allclose(got, reference_loss("pow", y_true, y_pred, params), rtol=1e-4)
    assert keras_value("pow", y_true, y_pred, {"gamma": 1.0}) == pytest.approx(
        keras_value("mae", y_true, y_pred), rel=1e-5)
