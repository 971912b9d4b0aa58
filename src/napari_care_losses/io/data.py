"""Paired low/high-exposure stacks: lazy loading, validation, normalisation and patches.

Frames are read one at a time (TIFF pages or a memory map), so long stacks never sit in
memory whole: only the training patches that were asked for do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tiff import DataError, check_layout, empty, open_tiff

__all__ = ["DataError", "FrameStack", "as_stack", "check_pair", "input_channel",
           "make_patches", "normalize", "open_pair", "release"]

#: CSBDeep's defaults for percentile normalisation at prediction time.
PMIN, PMAX = 2.0, 99.8
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: channel that :func:`as_stack` picks from files with channels (``--channel``).
_INPUT_CHANNEL: ContextVar[int | None] = ContextVar("input_channel", default=None)


@contextmanager
def input_channel(channel: int | None) -> Iterator[None]:
    """Within the block, files opened from a path read channel ``channel`` if they have
    channels (files without a channel axis are read as they are)."""
    token = _INPUT_CHANNEL.set(channel)
    try:
        yield
    finally:
        _INPUT_CHANNEL.reset(token)


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
        check_layout(name, array.shape, array.dtype)
        return cls(name, array.shape[0], array.shape[1:], array.dtype, lambda i: array[i])

    @classmethod
    def open(cls, path: str | Path, channel: int | None = None, *,
             if_channels: bool = False) -> FrameStack:
        """Open a TIFF lazily; raise :class:`DataError` naming the file if it is unusable.

        The file must hold every frame its metadata declare and its last frame must decode;
        a file with channels (``C``/``S`` axis) needs ``channel``. With ``if_channels``,
        ``channel`` is ignored for files without channels.
        """
        t = open_tiff(path, channel, if_channels)
        return cls(str(path), t.n_frames, t.frame_shape, t.dtype, t.read, closer=t.close)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as an array (float frames are checked for NaN/inf)."""
        if not -self.n_frames <= index < self.n_frames:
            raise IndexError(f"{self.name}: frame {index} out of range ({self.n_frames} frames)")
        img = np.asarray(self._reader(index % self.n_frames))
        if img.dtype.kind == "f":
            if not np.all(np.isfinite(img)):
                raise DataError(f"{self.name}: frame {index} contains NaN or infinite values")
            top = float(np.max(np.abs(img))) if img.size else 0.0
            if top > _FLOAT32_MAX:
                raise DataError(f"{self.name}: frame {index}: values up to {top:.3g} do not "
                                "fit float32; rescale the image")
        return img

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def to_array(self) -> np.ndarray:
        """All frames as one ``(T, Y, X)`` array (only for stacks that fit in memory).

        :class:`MemoryError` names the stack and the size it would need.
        """
        out = empty(self.name, (self.n_frames, *self.frame_shape), self.dtype)
        for i in range(self.n_frames):
            out[i] = self.frame(i)
        return out

    def close(self) -> None:
        if self._closer is not None:
            self._closer()

    def __repr__(self) -> str:
        return (f"FrameStack({self.name!r}, frames={self.n_frames}, "
                f"frame_shape={self.frame_shape}, dtype={self.dtype})")


def as_stack(source: str | Path | np.ndarray | FrameStack, name: str | None = None,
             channel: int | None = None) -> FrameStack:
    """Accept a path, an array or a :class:`FrameStack`.

    A path is opened with ``channel``, or else with the :func:`input_channel` in effect.
    """
    if isinstance(source, FrameStack):
        return source
    if isinstance(source, str | Path):
        if channel is not None:
            return FrameStack.open(source, channel)
        return FrameStack.open(source, _INPUT_CHANNEL.get(), if_channels=True)
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


def open_pair(low, high, patch_size: int | None = None,
              channel: int | None = None) -> tuple[FrameStack, FrameStack]:
    """Open and check a low/high pair given as paths, arrays or stacks."""
    low_s = as_stack(low, "low", channel)
    try:
        high_s = as_stack(high, "high", channel)
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


def _training_frame(stack: FrameStack, i: int) -> np.ndarray:
    """Frame ``i`` as float32 for CSBDeep; constant frames are refused.

    Frames with negative values are shifted to start at 0: CSBDeep's patch filter keeps
    patches above a fraction of the maximum, which fails for negative images, and the
    percentile normalisation that follows does not depend on the offset.
    """
    img = stack.frame(i)
    lo, hi = img.min(), img.max()
    if lo == hi:
        raise DataError(f"{stack.name}: frame {i} is constant (all values {lo}); nothing to "
                        "learn from")
    img = img.astype(np.float32)
    if lo < 0:
        img -= np.float32(lo)
    return img


def restore_checked(restore: Callable[[np.ndarray], tuple], img: np.ndarray, name: str,
                    i: int) -> tuple:
    """``restore(img)`` (a tuple of arrays or None) for frame ``i`` of ``name``.

    A constant frame has no percentile range: a method that normalises by it returns NaN.
    Such a frame is restored without numpy's warnings, and a result that is not finite is
    refused as what it is, a constant input (not a failing method); a finite one is kept.
    """
    lo, hi = np.min(img), np.max(img)
    if lo != hi:
        return restore(img)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = restore(img)
    if not all(a is None or np.all(np.isfinite(a)) for a in out):
        raise DataError(f"{name}: frame {i} is constant (all values {lo}); it has no "
                        "intensity range to normalise, so nothing can be restored")
    return out


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


def dihedral_augmenter(seed: int = 0) -> Callable[[np.ndarray, np.ndarray],
                                                  tuple[np.ndarray, np.ndarray]]:
    """A CSBDeep ``augmenter``: one of the 8 symmetries of the square (flips and 90°
    rotations), drawn at random, applied to a ``(Y, X, C)`` patch pair alike."""
    rng = np.random.default_rng(seed)

    def augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        x, y = np.rot90(x, k, axes=(0, 1)), np.rot90(y, k, axes=(0, 1))
        if flip:
            x, y = x[:, ::-1], y[:, ::-1]
        return x, y

    return augment


def make_patches(
    low, high, patch_size: int = 64, patches_per_image: int = 64, val_fraction: float = 0.2,
    seed: int = 0, frames: Sequence[int] | None = None, channel: int | None = None,
) -> PatchData:
    """Cut normalised patch pairs with CSBDeep's ``create_patches`` and split them 4:1.

    ``low``/``high`` are paths, arrays or :class:`FrameStack`; ``frames`` picks a subset;
    ``channel`` picks a channel of files with channels.
    Frames are fed lazily to CSBDeep, so memory holds only the requested patches.
    The split follows CARE: a seeded shuffle of all patches, ``val_fraction`` of them for
    validation (views, no copies).
    """
    from csbdeep.data import RawData, create_patches

    if patch_size < 8 or patch_size % 4:
        raise DataError(f"patch size must be a multiple of 4 (e.g. 32, 64, 128), got {patch_size}")
    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must lie in (0, 1), got {val_fraction}")
    low_s, high_s = open_pair(low, high, patch_size, channel)
    index = list(range(low_s.n_frames)) if frames is None else [int(f) for f in frames]
    if not index:
        raise DataError(f"{low_s.name}: no frames selected for training")
    n_total = len(index) * patches_per_image
    if n_total < 2:
        raise DataError("need at least 2 patches in total (1 training + 1 validation)")

    def pairs():
        for i in index:
            x, y = (_training_frame(s, i) for s in (low_s, high_s))
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
