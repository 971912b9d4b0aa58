"""Paired low/high-exposure stacks: lazy loading, validation, normalisation and patches.

Frames are read one at a time (TIFF pages or a memory map), so long stacks never sit in
memory whole: only the training patches that were asked for do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

#: CSBDeep's defaults for percentile normalisation at prediction time.
PMIN, PMAX = 2.0, 99.8


class DataError(ValueError):
    """Bad input data; the message names the file or layer and what is wrong."""


class FrameStack:
    """A 2D image or a stack of 2D frames (``TYX``/``ZYX``) read frame by frame."""

    def __init__(self, name: str, n_frames: int, frame_shape: tuple[int, int], dtype: np.dtype,
                 reader, closer=None) -> None:
        self.name = name
        self.n_frames = int(n_frames)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.dtype = np.dtype(dtype)
        self._reader = reader
        self._closer = closer

    @classmethod
    def from_array(cls, array: np.ndarray, name: str = "array") -> FrameStack:
        """Wrap an in-memory (or memory-mapped) 2D image or 3D stack."""
        array = np.asarray(array) if not isinstance(array, np.ndarray) else array
        if array.ndim == 2:
            array = array[np.newaxis]
        _check_layout(name, array.shape, array.dtype)
        return cls(name, array.shape[0], array.shape[1:], array.dtype, lambda i: array[i])

    @classmethod
    def open(cls, path: str | Path) -> FrameStack:
        """Open a TIFF lazily; raise :class:`DataError` naming the file if it is unusable."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises several types for non-TIFFs
            raise DataError(f"{path}: not a readable TIFF file ({exc})") from None
        series = tif.series[0]
        shape, dtype = tuple(series.shape), series.dtype
        if len(shape) == 2:
            shape = (1, *shape)
        try:
            _check_layout(str(path), shape, dtype, axes=series.axes)
        except DataError:
            tif.close()
            raise
        pages = series.pages
        if len(pages) == shape[0] and all(p is not None for p in pages):
            def read(i: int) -> np.ndarray:
                return pages[i].asarray().reshape(shape[1:])
        else:  # one page holding several frames: read it once
            data = series.asarray().reshape(shape)

            def read(i: int) -> np.ndarray:
                return data[i]
        return cls(str(path), shape[0], shape[1:], dtype, read, closer=tif.close)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as an array (float frames are checked for NaN/inf)."""
        if not -self.n_frames <= index < self.n_frames:
            raise IndexError(f"{self.name}: frame {index} out of range ({self.n_frames} frames)")
        img = np.asarray(self._reader(index % self.n_frames))
        if img.dtype.kind == "f" and not np.all(np.isfinite(img)):
            raise DataError(f"{self.name}: frame {index} contains NaN or infinite values")
        return img

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def to_array(self) -> np.ndarray:
        """All frames as one ``(T, Y, X)`` array (only for stacks that fit in memory)."""
        return np.stack(list(self))

    def close(self) -> None:
        if self._closer is not None:
            self._closer()

    def __repr__(self) -> str:
        return (f"FrameStack({self.name!r}, frames={self.n_frames}, "
                f"frame_shape={self.frame_shape}, dtype={self.dtype})")


def _check_layout(name: str, shape: Sequence[int], dtype, axes: str | None = None) -> None:
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise DataError(f"{name}: unsupported pixel type {dtype}; expected integers or floats")
    if len(shape) != 3:
        what = f"axes {axes!r}, " if axes else ""
        raise DataError(
            f"{name}: expected a 2D image (YX) or a stack of 2D frames (TYX/ZYX), got "
            f"{what}shape {tuple(shape)}; split channels or colours into separate files"
        )
    if axes and axes[-1] == "S":
        raise DataError(f"{name}: RGB/colour image {tuple(shape)}; save one channel per file")
    if min(shape[1:]) < 8:
        raise DataError(f"{name}: frames of shape {tuple(shape[1:])} are too small")


def as_stack(source: str | Path | np.ndarray | FrameStack, name: str | None = None) -> FrameStack:
    """Accept a path, an array or a :class:`FrameStack`."""
    if isinstance(source, FrameStack):
        return source
    if isinstance(source, str | Path):
        return FrameStack.open(source)
    return FrameStack.from_array(source, name or "array")


def check_pair(low: FrameStack, high: FrameStack, patch_size: int | None = None) -> None:
    """Check that two stacks form training/evaluation pairs; raise :class:`DataError` if not."""
    if low.frame_shape != high.frame_shape:
        raise DataError(
            f"{low.name} and {high.name} do not pair: frames are {low.frame_shape} and "
            f"{high.frame_shape} pixels"
        )
    if low.n_frames != high.n_frames:
        raise DataError(
            f"{low.name} and {high.name} do not pair: {low.n_frames} and {high.n_frames} frames"
        )
    if patch_size is not None and min(low.frame_shape) < patch_size:
        raise DataError(
            f"{low.name}: frames of {low.frame_shape} pixels are smaller than the "
            f"{patch_size}x{patch_size} training patches; choose a smaller patch size"
        )


def open_pair(low, high, patch_size: int | None = None) -> tuple[FrameStack, FrameStack]:
    """Open and check a low/high pair given as paths, arrays or stacks."""
    low_s = as_stack(low, "low")
    try:
        high_s = as_stack(high, "high")
    except DataError:
        release((low_s, low))
        raise
    try:
        check_pair(low_s, high_s, patch_size)
    except DataError:
        release((low_s, low), (high_s, high))
        raise
    return low_s, high_s


def release(*opened: tuple[FrameStack, object]) -> None:
    """Close each ``(stack, source)`` stack that was opened from a path (not passed in)."""
    for stack, source in opened:
        if stack is not source:
            stack.close()


def normalize(img: np.ndarray, pmin: float = PMIN, pmax: float = PMAX) -> np.ndarray:
    """CSBDeep percentile normalisation to float32 (``pmin`` → 0, ``pmax`` → 1)."""
    from csbdeep.utils import normalize as _normalize

    return _normalize(np.asarray(img, dtype=np.float32), pmin, pmax, clip=False)


@dataclass
class PatchData:
    """Normalised training and validation patches, ``(S, Y, X, C)`` float32."""

    X: np.ndarray
    Y: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray

    @property
    def patch_size(self) -> int:
        return int(self.X.shape[1])

    def __repr__(self) -> str:
        return (f"PatchData(train={len(self.X)}, val={len(self.X_val)}, "
                f"patch={self.X.shape[1]}x{self.X.shape[2]})")


def make_patches(
    low, high, patch_size: int = 64, patches_per_image: int = 64, val_fraction: float = 0.2,
    seed: int = 0, frames: Sequence[int] | None = None,
) -> PatchData:
    """Cut normalised patch pairs with CSBDeep's ``create_patches`` and split them 4:1.

    ``low``/``high`` are paths, arrays or :class:`FrameStack`; ``frames`` picks a subset.
    Frames are fed lazily to CSBDeep, so memory holds only the requested patches.
    The split follows CARE: a seeded shuffle of all patches, ``val_fraction`` of them for
    validation (views, no copies).
    """
    from csbdeep.data import RawData, create_patches

    if patch_size < 8 or patch_size % 4:
        raise DataError(f"patch size must be a multiple of 4 (e.g. 32, 64, 128), got {patch_size}")
    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must lie in (0, 1), got {val_fraction}")
    low_s, high_s = open_pair(low, high, patch_size)
    index = list(range(low_s.n_frames)) if frames is None else [int(f) for f in frames]
    if not index:
        raise DataError(f"{low_s.name}: no frames selected for training")
    n_total = len(index) * patches_per_image
    if n_total < 2:
        raise DataError("need at least 2 patches in total (1 training + 1 validation)")

    def pairs():
        for i in index:
            x, y = low_s.frame(i), high_s.frame(i)
            if x.dtype.kind != "f" and x.max() == x.min():
                raise DataError(f"{low_s.name}: frame {i} is constant; nothing to learn from")
            yield x, y, "YX", None

    raw = RawData(pairs, len(index), f"{low_s.name} → {high_s.name}")
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        X, Y, axes = create_patches(raw, (patch_size, patch_size), patches_per_image,
                                    shuffle=True, verbose=False)
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"{low_s.name} / {high_s.name}: could not cut {patch_size}px patches "
                        f"({exc})") from None
    finally:
        np.random.set_state(state)
        release((low_s, low), (high_s, high))
    X, Y = np.moveaxis(X, 1, -1), np.moveaxis(Y, 1, -1)  # SCYX -> SYXC
    # patches are already shuffled (seeded); keep at least one on each side
    n_val = min(max(1, int(round(len(X) * val_fraction))), len(X) - 1)
    return PatchData(X[n_val:], Y[n_val:], X[:n_val], Y[:n_val])
