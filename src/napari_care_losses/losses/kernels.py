"""Window and kernel sizes shared by the Keras losses and their NumPy references: the
bandpass loss's truncated Gaussians and the (MS-)SSIM window and scales. TensorFlow-free."""

from __future__ import annotations

#: Gaussian kernels are truncated at this many standard deviations (as scipy.ndimage).
GAUSS_TRUNCATE = 4.0


def gaussian_radius(sigma: float) -> int:
    """Half-width of the truncated Gaussian kernel used by the bandpass loss."""
    return int(GAUSS_TRUNCATE * float(sigma) + 0.5)


#: MS-SSIM scale weights of Wang et al. (2003); truncated and renormalised for small patches.
MSSSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: SSIM Gaussian window (taps, sigma), as tf.image.ssim and Wang et al.
SSIM_WINDOW: tuple[int, float] = (11, 1.5)
#: Number of MS-SSIM scales used when the patch size is unknown (needs patches >= 44 px).
MSSSIM_DEFAULT_SCALES = 3


def msssim_scales(patch_size: int | None = None) -> int:
    """Number of MS-SSIM scales: the largest m <= 5 with ``patch_size / 2**(m-1) >= 11``.

    Without a patch size, :data:`MSSSIM_DEFAULT_SCALES` is used (5 scales need 176 px).
    """
    if patch_size is None:
        return MSSSIM_DEFAULT_SCALES
    window = SSIM_WINDOW[0]
    scales = 0
    for m in range(1, len(MSSSIM_WEIGHTS) + 1):
        if patch_size / 2 ** (m - 1) >= window:
            scales = m
    if scales == 0:
        raise ValueError(f"MS-SSIM needs patches of at least {window} px, got {patch_size}")
    return scales

#: SSIM constants (Wang et al. 2004), for images scaled to [0, 1].
SSIM_MAX_VAL, SSIM_K1, SSIM_K2 = 1.0, 0.01, 0.03


def gaussian_kernel_1d(sigma: float, radius: int):
    """Normalised 1D Gaussian (float32 NumPy) with taps at -radius..radius (scipy.ndimage's
    kernel); ``radius`` 0 is the identity."""
    import numpy as np

    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2.0 * float(sigma) ** 2))
    return (g / g.sum()).astype(np.float32)
