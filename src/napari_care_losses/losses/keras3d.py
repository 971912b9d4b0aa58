"""TensorFlow bodies of the 3D loss forms, on volumes ``(batch, Z, Y, X, C)`` (CSBDeep's 3D
U-Net layout). :mod:`.keras_losses` registers them (one factory per loss, 2D or 3D by its
:class:`~.grid.Grid`); the NumPy references are :mod:`.reference3d`.

Gaussian filters are separable: three 1-D filters, one per axis (never a dense 3D kernel).
With static sizes each is a small matrix product along its axis (borders folded into the
matrix); with unknown sizes a 1-D ``conv3d`` per axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .._tf import ensure_tensorflow

ensure_tensorflow()  # Linux + napari's OpenGL: see .._tf

import tensorflow as tf  # noqa: E402

from .grid import Grid  # noqa: E402
from .kernels import (  # noqa: E402
    MSSSIM_WEIGHTS,
    SSIM_K1,
    SSIM_K2,
    SSIM_MAX_VAL,
    gaussian_kernel_1d,
)

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
#: Lower bound on per-scale SSIM / cs before the fractional powers of MS-SSIM.
MSSSIM_EPS = 1e-6


def check_rank(y: tf.Tensor, name: str) -> None:
    """``ValueError`` (one line) when ``y`` is not a 5-D volume batch."""
    if y.shape.rank is not None and y.shape.rank != 5:
        raise ValueError(f"the 3D {name} loss needs tensors (batch, Z, Y, X, channels), got "
                         f"shape {tuple(y.shape)}; use ndim=2 for images")


def to_volumes(x: tf.Tensor) -> tf.Tensor:
    """(B, Z, Y, X, C) -> (B*C, Z, Y, X): one single-channel volume per (b, c)."""
    shape = tf.shape(x)
    x = tf.transpose(x, [0, 4, 1, 2, 3])
    return tf.reshape(x, tf.stack([-1, shape[1], shape[2], shape[3]]))


def filter_matrix(kernel: np.ndarray, n: int, mode: str) -> np.ndarray:
    """``(n_out, n)`` matrix applying the 1-D ``kernel`` along an axis of length ``n``:
    ``"reflect"`` as scipy.ndimage (size kept), ``"valid"`` drops the borders."""
    r, g = (len(kernel) - 1) // 2, kernel.astype(np.float64)
    if mode == "valid":
        m = np.zeros((n - 2 * r, n))
        for i in range(n - 2 * r):
            m[i, i : i + 2 * r + 1] = g
    else:  # column j = filtered unit impulse e_j, reflections included
        from scipy.ndimage import correlate1d

        m = correlate1d(np.eye(n), g, axis=0, mode="reflect")
    return m.astype(np.float32)


class VolumeBlur:
    """Separable Gaussian filter of volumes ``(N, Z, Y, X)``, one sigma and radius per axis
    (radius 0: that axis untouched). ``mode`` ``"reflect"`` (scipy.ndimage) or ``"valid"``."""

    def __init__(self, sigmas: Sequence[float], radii: Sequence[int],
                 mode: str = "reflect") -> None:
        self.sigmas, self.radii, self.mode = tuple(sigmas), tuple(int(r) for r in radii), mode
        self.kernels = [gaussian_kernel_1d(s, r) for s, r in zip(self.sigmas, self.radii,
                                                                  strict=True)]
        self._matrices: dict[tuple[int, int], np.ndarray] = {}

    def matrix(self, axis: int, n: int) -> np.ndarray:
        if (axis, n) not in self._matrices:
            self._matrices[axis, n] = filter_matrix(self.kernels[axis], n, self.mode)
        return self._matrices[axis, n]

    def __call__(self, v: tf.Tensor) -> tf.Tensor:
        for axis in range(3):
            if self.radii[axis] > 0:
                v = self._along(v, axis)
        return v

    def _along(self, v: tf.Tensor, axis: int) -> tf.Tensor:
        n = v.shape[axis + 1]
        if n is None:
            return self._conv(v, axis)
        m = tf.constant(self.matrix(axis, n))
        if axis == 2:  # X: (N, Z, Y, X) @ M^T
            return tf.linalg.matmul(v, m, transpose_b=True)
        if axis == 1:  # Y: M @ (N, Z, Y, X) over Y
            return tf.linalg.matmul(m, v)
        s = tf.shape(v)  # Z: M @ (N, Z, Y*X)
        out = tf.linalg.matmul(m, tf.reshape(v, tf.stack([s[0], n, s[2] * s[3]])))
        return tf.reshape(out, tf.stack([s[0], m.shape[0], s[2], s[3]]))

    def _conv(self, v: tf.Tensor, axis: int) -> tf.Tensor:
        r = self.radii[axis]
        x = v[..., tf.newaxis]
        if self.mode != "valid":
            pads = [[0, 0]] * 5
            pads[axis + 1] = [r, r]
            x = tf.pad(x, pads, mode="SYMMETRIC")
        shape = [1, 1, 1, 1, 1]
        shape[axis] = 2 * r + 1
        kernel = tf.constant(self.kernels[axis].reshape(shape))
        return tf.nn.conv3d(x, kernel, strides=[1] * 5, padding="VALID")[..., 0]


# --- frequency losses ----------------------------------------------------------------


def fft3_loss() -> LossFn:
    """Mean modulus of the orthonormal FFT over Z, Y and X of the error."""

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        check_rank(y_pred, "fft")
        diff = tf.transpose(y_pred - y_true, [0, 4, 1, 2, 3])
        shape = tf.shape(diff)
        norm = tf.sqrt(tf.cast(shape[2] * shape[3] * shape[4], diff.dtype))
        spec = tf.signal.fft3d(tf.complex(diff, tf.zeros_like(diff)))  # grad: real part
        return tf.reduce_mean(tf.abs(spec)) / norm

    return loss


def bandpass3_loss(sigma1: float, sigma2: float, grid: Grid) -> LossFn:
    """Mean |DoG| of the error with per-axis sigmas (``grid.per_axis``); by linearity the
    DoG is applied once, to the error."""
    blur1 = VolumeBlur(grid.per_axis(sigma1), grid.gaussian_radii(sigma1))
    blur2 = VolumeBlur(grid.per_axis(sigma2), grid.gaussian_radii(sigma2))

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        check_rank(y_pred, "bandpass")
        vols = to_volumes(y_pred - y_true)
        return tf.reduce_mean(tf.abs(blur1(vols) - blur2(vols)))

    return loss


# --- structural losses ---------------------------------------------------------------


def ssim_window(grid: Grid) -> VolumeBlur:
    sigmas, radii = grid.ssim_window()
    return VolumeBlur(sigmas, radii, mode="valid")


def ssim_terms(x: tf.Tensor, y: tf.Tensor, window: VolumeBlur) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-volume mean SSIM and mean contrast-structure of ``(N, Z, Y, X)`` (VALID window).
    The five local moments are filtered in one pass."""
    c1 = (SSIM_K1 * SSIM_MAX_VAL) ** 2
    c2 = (SSIM_K2 * SSIM_MAX_VAL) ** 2
    mu_x, mu_y, xx, yy, xy = tf.split(window(tf.concat([x, y, x * x, y * y, x * y], 0)), 5)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    lum = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    return tf.reduce_mean(lum * cs, axis=[1, 2, 3]), tf.reduce_mean(cs, axis=[1, 2, 3])


def ssim3_loss(grid: Grid) -> LossFn:
    window = ssim_window(grid)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        check_rank(y_pred, "ssim")
        check_shape(y_pred, grid, "ssim")
        ssim, _ = ssim_terms(to_volumes(y_true), to_volumes(y_pred), window)
        return 1.0 - tf.reduce_mean(ssim)

    return loss


def _pool(v: tf.Tensor, factors: tuple[int, ...]) -> tf.Tensor:
    k = [1, *factors, 1]
    return tf.nn.avg_pool3d(v[..., tf.newaxis], k, k, "VALID")[..., 0]


def check_shape(y: tf.Tensor, grid: Grid, name: str, scales: bool = False) -> None:
    """``ValueError`` (one line) when a static (Z, Y, X) is smaller than the (MS-)SSIM
    window of ``grid`` needs."""
    need, shape = grid.ssim_min_shape(scales), tuple(y.shape[1:4])
    if any(s is not None and s < n for s, n in zip(shape, need, strict=True)):
        raise ValueError(f"the 3D {name} loss needs volumes of at least "
                         f"{'×'.join(map(str, need))} (Z×Y×X), got {shape}; pass patch_size "
                         "to make_loss")


def msssim_product(x: tf.Tensor, y: tf.Tensor, scales: int, terms, pool) -> tf.Tensor:
    """Wang et al.'s MS-SSIM of 2D planes or volumes: the contrast-structure term of each
    coarser scale and the SSIM of the last, weighted; ``terms(x, y)`` gives (ssim, cs) per
    image, ``pool(t, j)`` downsamples after scale ``j``."""
    weights = np.asarray(MSSSIM_WEIGHTS[:scales], dtype=np.float64)
    weights = (weights / weights.sum()).astype(np.float32)
    value = 1.0
    for j in range(scales):
        ssim, cs = terms(x, y)
        term = ssim if j == scales - 1 else cs
        value = value * tf.pow(tf.maximum(term, MSSSIM_EPS), float(weights[j]))
        if j < scales - 1:
            x, y = pool(x, j), pool(y, j)
    return tf.reduce_mean(value)


def ms_ssim3(y_true: tf.Tensor, y_pred: tf.Tensor, grid: Grid) -> tf.Tensor:
    """Mean MS-SSIM over volumes and channels, pooled as ``grid.msssim_pools()``."""
    pools = grid.msssim_pools()
    window = ssim_window(grid)
    return msssim_product(to_volumes(y_true), to_volumes(y_pred), len(pools) + 1,
                          lambda a, b: ssim_terms(a, b, window),
                          lambda t, j: _pool(t, pools[j]))


def msssim3_l1_loss(alpha: float, grid: Grid) -> LossFn:

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        check_rank(y_pred, "msssim_l1")
        check_shape(y_pred, grid, "msssim_l1", scales=True)
        msssim = ms_ssim3(y_true, y_pred, grid)
        mae = tf.reduce_mean(tf.abs(y_pred - y_true))
        return alpha * (1.0 - msssim) + (1.0 - alpha) * mae

    return loss


__all__ = ["VolumeBlur", "bandpass3_loss", "fft3_loss", "check_shape", "filter_matrix",
           "ms_ssim3", "msssim3_l1_loss", "ssim3_loss", "to_volumes"]
