"""Restore images with a trained model: frame by frame, tiled, in the input's intensity scale."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.train import TrainConfig
from ..io.data import FrameStack, as_stack, release, restore_checked
from ..io.tiff import empty
from ..losses import LossSpec
from ..models.folder import ModelFolder
from ..models.package_import import resolve_model_source

#: Frames larger than this (per side, pixels) are split into tiles by default.
DEFAULT_TILE = 512


@dataclass
class Restoration:
    """Restored stack ``(T, Y, X)`` float32, and for Laplace models the per-pixel scale."""

    image: np.ndarray
    scale: np.ndarray | None = None


def auto_tiles(shape: tuple[int, int], tile_size: int = DEFAULT_TILE) -> tuple[int, int]:
    """Number of tiles per axis so that no tile exceeds ``tile_size`` pixels a side."""
    if tile_size < 16:
        raise ValueError(f"tile size must be at least 16 px, got {tile_size}")
    return tuple(max(1, math.ceil(s / tile_size)) for s in shape)  # type: ignore[return-value]


class RestorationModel:
    """A trained model folder (CSBDeep weights + our metadata), ready to predict."""

    def __init__(self, model_dir: str | Path) -> None:
        model_dir = resolve_model_source(model_dir)  # bioimage.io package -> model folder
        self.folder = ModelFolder.open(model_dir).require_usable()
        self.model_dir = self.folder.path
        self.config: TrainConfig = self.folder.config
        self._care = None

    @property
    def loss(self) -> LossSpec:
        return self.config.loss

    @property
    def name(self) -> str:
        return self.model_dir.name

    @property
    def label(self) -> str:
        return self.loss.label

    @property
    def probabilistic(self) -> bool:
        return self.loss.probabilistic

    @property
    def care(self):
        if self._care is None:
            from ..models.network import build_care

            try:
                with contextlib.redirect_stdout(io.StringIO()):  # CSBDeep prints "Loading"
                    self._care = build_care(None, self.model_dir.name, self.model_dir.parent)
            except (OSError, ValueError, KeyError) as exc:  # h5py: truncated or corrupt weights
                raise OSError(f"model folder {self.model_dir}: cannot load the network "
                              f"({type(exc).__name__}: {exc})") from None
        return self._care

    def restore_frame(self, img: np.ndarray, tile_size: int = DEFAULT_TILE
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """Restore one 2D frame; return (restoration, scale or None)."""
        from csbdeep.data import PercentileNormalizer

        img = np.asarray(img)
        if img.ndim != 2:
            raise ValueError(f"expected a 2D frame, got shape {img.shape}")
        normalizer = PercentileNormalizer(self.config.norm_pmin, self.config.norm_pmax,
                                          do_after=True)
        tiles = auto_tiles(img.shape, tile_size)
        with contextlib.redirect_stderr(io.StringIO()):  # tqdm bar for tiled prediction
            if self.probabilistic:
                prob = self.care.predict_probabilistic(img, "YX", normalizer=normalizer,
                                                       n_tiles=tiles)
                return prob.mean().astype(np.float32), prob.scale().astype(np.float32)
            out = self.care.predict(img, "YX", normalizer=normalizer, n_tiles=tiles)
        return out.astype(np.float32), None

    def iter_restore(self, stack, tile_size: int = DEFAULT_TILE
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """Yield ``(index, restoration, scale)`` frame by frame (for progress and Stop)."""
        frames: FrameStack = as_stack(stack)
        try:
            for i in range(frames.n_frames):
                img = frames.frame(i)
                try:
                    restored = restore_checked(lambda x: self.restore_frame(x, tile_size), img,
                                               frames.name, i)
                except Exception as exc:
                    if not (isinstance(exc, MemoryError)
                            or type(exc).__name__ == "ResourceExhaustedError"):
                        raise
                    raise MemoryError(
                        f"{frames.name}: frame {i} ({img.shape[0]}x{img.shape[1]} px) with "
                        f"{self.name}: {' '.join(str(exc).split())[:200]}; try smaller tiles "
                        f"(--tile-size, now {tile_size})") from None
                yield (i, *restored)
        finally:
            release((frames, stack))

    def restore(self, stack, tile_size: int = DEFAULT_TILE,
                progress: Callable[[int, int], None] | None = None) -> Restoration:
        """Restore a 2D image or a stack (path, array or :class:`FrameStack`)."""
        frames = as_stack(stack)
        try:
            shape = (frames.n_frames, *frames.frame_shape)
            out = empty(f"the restoration of {frames.name}", shape, np.float32)
            scale = (empty(f"the scale map of {frames.name}", shape, np.float32)
                     if self.probabilistic else None)
            for i, img, sc in self.iter_restore(frames, tile_size):
                out[i] = img
                if scale is not None:
                    scale[i] = sc
                if progress:
                    progress(i + 1, frames.n_frames)
        finally:
            release((frames, stack))
        return Restoration(out, scale)

    def __repr__(self) -> str:
        return f"RestorationModel({str(self.model_dir)!r}, loss={self.loss.name.value})"


def load_model(model_dir: str | Path) -> RestorationModel:
    return RestorationModel(model_dir)
