"""TensorFlow implementations of the registered losses, for ``model.compile(loss=...)``.

Every factory returns ``loss(y_true, y_pred) -> scalar`` on channels-last tensors: in 2D
``(batch, H, W, C)``, in 3D (``make_loss(..., ndim=3)``) ``(batch, Z, Y, X, C)`` with the
3D bodies of :mod:`.keras3d`. The definitions match :mod:`napari_care_losses.losses.reference`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._tf import ensure_tensorflow

ensure_tensorflow()  # Linux + napari's OpenGL: see .._tf

import tensorflow as tf  # noqa: E402

from . import keras3d  # noqa: E402
from .grid import Grid  # noqa: E402
from .kernels import (  # noqa: E402
    SSIM_K1,
    SSIM_K2,
    SSIM_MAX_VAL,
    SSIM_WINDOW,
    gaussian_kernel_1d,
    gaussian_radius,
    msssim_scales,
)
from .records import Implementations  # noqa: E402

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

#: The Keras form of each loss, by name: ``factory(**params[, patch_size][, grid]) -> LossFn``.
KERAS_FORMS = Implementations("Keras form")


def _named(fn: LossFn, name: str, images: bool = False) -> LossFn:
    """``fn`` computed in float32 (whatever the network's precision), named ``name``; with
    ``images``, a tensor that is not ``(batch, H, W, C)`` is refused in one line."""

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        if images and y_pred.shape.rank is not None and y_pred.shape.rank != 4:
            raise ValueError(f"the 2D {name[5:]} loss needs tensors (batch, Y, X, channels), "
                             f"got shape {tuple(y_pred.shape)}; make_loss(..., ndim=3) "
                             "for volumes")
        return fn(tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32))

    loss.__name__ = loss.__qualname__ = name
    return loss


def _in_3d(grid: Grid | None) -> bool:
    return grid is not None and grid.ndim == 3


def _to_planes(x: tf.Tensor) -> tf.Tensor:
    """(B, H, W, C) -> (B*C, H, W, 1): one single-channel image per plane."""
    shape = tf.shape(x)
    x = tf.transpose(x, [0, 3, 1, 2])
    return tf.reshape(x, tf.stack([-1, shape[1], shape[2], 1]))


class GaussianBlur:
    """Separable Gaussian filter of single-channel planes ``(N, H, W, 1)``.

    ``mode="reflect"`` keeps the size (scipy.ndimage ``mode="reflect"``); ``mode="valid"``
    drops ``radius`` pixels at each border. With static H and W the filter is two small
    matrix products (boundary handling folded into the matrices), which on CPU is ~20x
    faster than a 1-channel convolution; with unknown sizes it falls back to convolution.
    """

    def __init__(self, sigma: float, radius: int, mode: str = "reflect") -> None:
        self.sigma, self.radius, self.mode = float(sigma), int(radius), mode
        self.kernel = gaussian_kernel_1d(sigma, radius)
        self._matrices: dict[int, np.ndarray] = {}  # NumPy: tensors would be graph-bound

    def matrix(self, n: int) -> np.ndarray:
        """``(n_out, n)`` matrix applying the 1D filter along one axis of length ``n``."""
        if n not in self._matrices:
            r, g = self.radius, self.kernel.astype(np.float64)
            if self.mode == "valid":
                m = np.zeros((n - 2 * r, n))
                for i in range(n - 2 * r):
                    m[i, i : i + 2 * r + 1] = g
            else:  # column j = filtered unit impulse e_j, reflections included
                from scipy.ndimage import correlate1d

                m = correlate1d(np.eye(n), g, axis=0, mode="reflect")
            self._matrices[n] = m.astype(np.float32)
        return self._matrices[n]

    def __call__(self, planes: tf.Tensor) -> tf.Tensor:
        h, w = planes.shape[1], planes.shape[2]
        if h is not None and w is not None:
            mh, mw = tf.constant(self.matrix(h)), tf.constant(self.matrix(w))
            out = tf.einsum("ij,njk,lk->nil", mh, planes[..., 0], mw)
            return out[..., tf.newaxis]
        r = self.radius
        if self.mode != "valid":
            planes = tf.pad(planes, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
        rows = tf.constant(self.kernel.reshape(-1, 1, 1, 1))
        cols = tf.constant(self.kernel.reshape(1, -1, 1, 1))
        out = tf.nn.conv2d(planes, rows, strides=1, padding="VALID")
        return tf.nn.conv2d(out, cols, strides=1, padding="VALID")


# --- pixel losses --------------------------------------------------------------------


@KERAS_FORMS.register("laplace")
def laplace_loss() -> LossFn:
    """Negative log-likelihood of a Laplace distribution (no log 2 constant)."""

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        n = y_true.shape[-1] if y_true.shape[-1] is not None else tf.shape(y_true)[-1]
        mu, sigma = y_pred[..., :n], y_pred[..., n:]
        y_true = tf.cast(y_true, y_pred.dtype)
        return tf.reduce_mean(tf.abs(y_true - mu) / sigma + tf.math.log(sigma))

    return _named(loss, "loss_laplace")


@KERAS_FORMS.register("mae")
def mae_loss() -> LossFn:
    """Mean absolute error."""

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.abs(y_pred - tf.cast(y_true, y_pred.dtype)))

    return _named(loss, "loss_mae")


@KERAS_FORMS.register("mse")
def mse_loss() -> LossFn:
    """Mean squared error."""

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.square(y_pred - tf.cast(y_true, y_pred.dtype)))

    return _named(loss, "loss_mse")


# --- frequency losses ----------------------------------------------------------------


@KERAS_FORMS.register("fft")
def fft_loss(grid: Grid | None = None) -> LossFn:
    """Mean modulus of the orthonormal 2D FFT of the error (patch-size independent scale);
    3D: over Z, Y and X."""
    if _in_3d(grid):
        return _named(keras3d.fft3_loss(), "loss_fft")

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        diff = tf.transpose(y_pred - tf.cast(y_true, y_pred.dtype), [0, 3, 1, 2])
        shape = tf.shape(diff)
        norm = tf.sqrt(tf.cast(shape[2] * shape[3], diff.dtype))
        spec = tf.signal.fft2d(tf.complex(diff, tf.zeros_like(diff)))  # grad: real part
        return tf.reduce_mean(tf.abs(spec)) / norm

    return _named(loss, "loss_fft", images=True)


@KERAS_FORMS.register("bandpass")
def bandpass_loss(sigma1: float = 0.5, sigma2: float = 5.0, grid: Grid | None = None) -> LossFn:
    """Mean absolute difference of difference-of-Gaussians (sigma1 - sigma2) images.

    Gaussian blur as ``scipy.ndimage.gaussian_filter(mode="reflect", truncate=4)``;
    by linearity the DoG is applied once, to the error. 3D: sigmas per axis
    (``grid.per_axis``).
    """
    if _in_3d(grid):
        return _named(keras3d.bandpass3_loss(sigma1, sigma2, grid), "loss_bandpass")
    blur1 = GaussianBlur(sigma1, gaussian_radius(sigma1))
    blur2 = GaussianBlur(sigma2, gaussian_radius(sigma2))

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        planes = _to_planes(y_pred - tf.cast(y_true, y_pred.dtype))
        return tf.reduce_mean(tf.abs(blur1(planes) - blur2(planes)))

    return _named(loss, "loss_bandpass", images=True)


@KERAS_FORMS.register("fft+bandpass")
def fft_bandpass_loss(weight: float = 0.5, sigma1: float = 0.5, sigma2: float = 5.0,
                      grid: Grid | None = None) -> LossFn:
    """``weight * fft + (1 - weight) * bandpass`` (both 2D, or both 3D)."""
    fft, bandpass = fft_loss(grid), bandpass_loss(sigma1, sigma2, grid)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return weight * fft(y_true, y_pred) + (1.0 - weight) * bandpass(y_true, y_pred)

    return _named(loss, "loss_fft_bandpass")


# --- structural losses ---------------------------------------------------------------


def _ssim_window() -> GaussianBlur:
    size, sigma = SSIM_WINDOW
    return GaussianBlur(sigma, (size - 1) // 2, mode="valid")


@KERAS_FORMS.register("ssim")
def ssim_loss(grid: Grid | None = None) -> LossFn:
    """``1 - mean SSIM`` (11-tap Gaussian window, sigma 1.5, VALID, as tf.image.ssim);
    3D: separable 3D window (``grid.ssim_window``)."""
    if _in_3d(grid):
        return _named(keras3d.ssim3_loss(grid), "loss_ssim")
    window = _ssim_window()

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        ssim, _ = _ssim_terms(_to_planes(tf.cast(y_true, y_pred.dtype)), _to_planes(y_pred),
                              window)
        return 1.0 - tf.reduce_mean(ssim)

    return _named(loss, "loss_ssim", images=True)


def _ssim_terms(x: tf.Tensor, y: tf.Tensor, window: GaussianBlur) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-plane mean SSIM and mean contrast-structure term (VALID window)."""
    c1 = (SSIM_K1 * SSIM_MAX_VAL) ** 2
    c2 = (SSIM_K2 * SSIM_MAX_VAL) ** 2
    mu_x, mu_y = window(x), window(y)
    var_x = window(x * x) - mu_x * mu_x
    var_y = window(y * y) - mu_y * mu_y
    cov = window(x * y) - mu_x * mu_y
    lum = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    axes = [1, 2, 3]
    return tf.reduce_mean(lum * cs, axis=axes), tf.reduce_mean(cs, axis=axes)


def ms_ssim(y_true: tf.Tensor, y_pred: tf.Tensor, scales: int, window: GaussianBlur) -> tf.Tensor:
    """Mean MS-SSIM over images and channels, with ``scales`` dyadic scales."""
    return keras3d.msssim_product(_to_planes(y_true), _to_planes(y_pred), scales,
                                  lambda a, b: _ssim_terms(a, b, window),
                                  lambda t, _j: tf.nn.avg_pool2d(t, 2, 2, "VALID"))


@KERAS_FORMS.register("msssim_l1")
def msssim_l1_loss(alpha: float = 0.84, patch_size: int | None = None,
                   grid: Grid | None = None) -> LossFn:
    """Zhao et al. (2017): ``alpha * (1 - MS-SSIM) + (1 - alpha) * MAE``.

    The number of scales follows from ``patch_size`` (:func:`msssim_scales`); when the
    patch size is unknown, 3 scales are used (patches must then be at least 44 px).
    3D: 3D windows, pooled as ``grid.msssim_pools()`` (Z only while it holds the window).
    """
    if _in_3d(grid):
        return _named(keras3d.msssim3_l1_loss(alpha, grid), "loss_msssim_l1")
    edge = min(grid.patch) if grid is not None and grid.patch is not None else patch_size
    scales = msssim_scales(edge)
    window = _ssim_window()
    min_size = SSIM_WINDOW[0] * 2 ** (scales - 1)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = tf.cast(y_true, y_pred.dtype)
        static = [d for d in y_pred.shape[1:3] if d is not None]
        if static and min(static) < min_size:
            raise ValueError(
                f"MS-SSIM with {scales} scales needs images of at least {min_size} px, "
                f"got {tuple(y_pred.shape[1:3])}; pass patch_size to make_loss"
            )
        msssim = ms_ssim(y_true, y_pred, scales, window)
        mae = tf.reduce_mean(tf.abs(y_pred - y_true))
        return alpha * (1.0 - msssim) + (1.0 - alpha) * mae

    return _named(loss, "loss_msssim_l1", images=True)


def make_loss(
    name: Any, params: Mapping[str, Any] | None = None,
    patch_size: int | Sequence[int] | None = None, *, ndim: int = 2,
    voxel_size: Sequence[float] | None = None,
) -> LossFn:
    """Build the Keras loss ``name`` (a name or a ``LossSpec``, whose parameters ``params``
    update) with ``params`` merged into its defaults.

    ``patch_size`` (training patch edge in px, or one per spatial axis) is used to validate
    the parameters (e.g. the bandpass sigmas) and by the losses that need it (the number of
    MS-SSIM scales). ``ndim=3``: the 3D form, on ``(batch, Z, Y, X, C)`` tensors, with
    ``voxel_size=(dz, dy, dx)`` (default isotropic) scaling lengths per axis.
    """
    if hasattr(name, "params") and hasattr(name, "name"):  # a LossSpec
        name, params = name.name, {**name.params, **(params or {})}
    return KERAS_FORMS.call(name, params, patch_size, ndim=ndim, voxel_size=voxel_size)


__all__ = [
    "KERAS_FORMS",
    "bandpass_loss",
    "fft_bandpass_loss",
    "fft_loss",
    "GaussianBlur",
    "gaussian_kernel_1d",
    "laplace_loss",
    "mae_loss",
    "make_loss",
    "ms_ssim",
    "msssim_l1_loss",
    "mse_loss",
    "ssim_loss",
]
