"""The spatial grid a loss is evaluated on: 2D or 3D, the patch shape and the voxel size.

Losses take lengths in pixels along X (the bandpass sigmas, SSIM's window sigma 1.5). In 3D
a length ``s`` becomes ``s * dx / d`` pixels along an axis of voxel size ``d``: along Z
``s / anisotropy`` with ``anisotropy = dz / dx`` (1 without a voxel size), so a Gaussian has
the same physical width along every axis. TensorFlow-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

from .kernels import SSIM_WINDOW, gaussian_radius, msssim_scales

#: Spatial dimensions a loss can be evaluated in.
DIMS = (2, 3)
#: Names of the spatial axes (the last ``ndim``).
AXES = ("Z", "Y", "X")


def _positive(values: Sequence, what: str, ndim: int, kind: type) -> tuple:
    try:
        out = tuple(kind(v) for v in values)
        whole = all(float(v) == o for v, o in zip(values, out, strict=True))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be {ndim} numbers, got {values!r}") from None
    if kind is int and not whole:
        raise ValueError(f"{what} must be whole numbers of pixels, got {tuple(values)}")
    if len(out) != ndim or not all(v > 0 for v in out):
        raise ValueError(f"{what} must be {ndim} positive numbers "
                         f"({', '.join(AXES[-ndim:])}), got {tuple(values)}")
    return out


@dataclass(frozen=True)
class Grid:
    """Spatial dimensions (2: ``(B, Y, X, C)`` tensors, 3: ``(B, Z, Y, X, C)``), patch shape
    per spatial axis (None: unknown) and voxel size per spatial axis (None: isotropic)."""

    ndim: int = 2
    patch: tuple[int, ...] | None = None
    voxel_size: tuple[float, ...] | None = None

    @classmethod
    def make(cls, ndim: int = 2, patch_size: int | Sequence[int] | None = None,
             voxel_size: Sequence[float] | None = None) -> Grid:
        """Checked grid; ``patch_size`` one edge (a square / cube) or one per spatial axis.
        ``ValueError`` (one line) for a bad dimension, patch or voxel size."""
        if ndim not in DIMS:
            raise ValueError(f"losses are 2D or 3D (ndim 2 or 3), got ndim={ndim!r}")
        patch = None
        if patch_size is not None:
            try:  # one per axis (a tuple, a list, an array) or one edge for all
                edges = list(patch_size)
            except TypeError:  # one edge: name it as given
                if not isinstance(patch_size, Real) or patch_size < 1 \
                        or patch_size != int(patch_size):
                    raise ValueError("patch size must be a positive whole number of pixels, "
                                     f"got {patch_size!r}") from None
                edges = [patch_size] * ndim
            patch = _positive(edges, "patch size", ndim, int)
        if voxel_size is not None:
            if ndim == 2:
                raise ValueError("a voxel size applies to 3D losses (ndim=3); 2D losses take "
                                 "square pixels")
            voxel_size = _positive(voxel_size, "voxel size", ndim, float)
        return cls(ndim, patch, voxel_size)

    @property
    def axes(self) -> tuple[str, ...]:
        return AXES[-self.ndim:]

    @property
    def scale(self) -> tuple[float, ...]:
        """Pixels along each axis per pixel along X: ``dx / d`` (all 1 when isotropic)."""
        if self.voxel_size is None:
            return (1.0,) * self.ndim
        return tuple(self.voxel_size[-1] / d for d in self.voxel_size)

    @property
    def anisotropy(self) -> float:
        """``dz / dx`` (1 in 2D and without a voxel size)."""
        return 1.0 / self.scale[0]

    def per_axis(self, length: float) -> tuple[float, ...]:
        """A length in X pixels as pixels along each spatial axis."""
        return tuple(float(length) * s for s in self.scale)

    def gaussian_radii(self, sigma: float) -> tuple[int, ...]:
        """Per-axis radius of the truncated Gaussian of ``sigma`` (X px) (bandpass)."""
        return tuple(gaussian_radius(s) for s in self.per_axis(sigma))

    def ssim_window(self) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """Per-axis sigma and radius of the SSIM window: sigma 1.5 and 11 taps along X and Y,
        both scaled by ``dx / d`` along other axes (radius rounded half up)."""
        size, sigma = SSIM_WINDOW
        half = (size - 1) // 2
        return self.per_axis(sigma), tuple(int(half * s + 0.5) for s in self.scale)

    def msssim_pools(self) -> tuple[tuple[int, ...], ...]:
        """Pooling factors per axis between the MS-SSIM scales (one tuple per step).

        The number of scales comes from the smaller of the Y and X patch edges (as in 2D,
        :func:`msssim_scales`); Y and X are halved at every step; Z is halved only while the
        halved Z patch still holds the SSIM window along Z, else kept (small Z stacks are
        downsampled in Y and X only). Without a patch, 3 scales and Z is never halved.
        """
        yx = None if self.patch is None else min(self.patch[-2:])
        steps = msssim_scales(yx) - 1
        if self.ndim == 2:
            return ((2, 2),) * steps
        taps = 2 * self.ssim_window()[1][0] + 1
        z = None if self.patch is None else self.patch[0]
        pools = []
        for _ in range(steps):
            fz = 2 if z is not None and z // 2 >= taps else 1
            pools.append((fz, 2, 2))
            z = None if z is None else z // fz
        return tuple(pools)

    def ssim_min_shape(self, scales: bool = False) -> tuple[int, ...]:
        """Smallest image / volume per axis on which SSIM (with ``scales``: this grid's
        MS-SSIM, every pooling step included) is defined."""
        taps = [2 * r + 1 for r in self.ssim_window()[1]]
        for pool in self.msssim_pools() if scales else ():
            taps = [t * f for t, f in zip(taps, pool, strict=True)]
        return tuple(taps)

    def too_small(self, radii: Sequence[int], taps: bool = False) -> list[str]:
        """The axes whose patch cannot hold a kernel of ``radii`` (``radius < patch``, or
        with ``taps`` ``2 * radius + 1 <= patch``), as ``"Z"``...; none without a patch."""
        if self.patch is None:
            return []
        need = [2 * r + 1 if taps else r + 1 for r in radii]
        return [a for a, n, p in zip(self.axes, need, self.patch, strict=True) if p < n]


__all__ = ["AXES", "DIMS", "Grid"]
