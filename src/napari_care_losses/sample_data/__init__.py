"""Bundled W2S sample crops (see README.md here for provenance and citation).

Qt-free: the napari sample-data hooks in ``_widgets.sample`` wrap these functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

SAMPLE_DIR = Path(__file__).resolve().parent
CHANNELS = (0, 1, 2)
SPLITS = ("train", "test")
CITATION = ("W2S: Zhou et al., 'W2S: Microscopy Data with Joint Denoising and "
            "Super-Resolution for Widefield to SIM Mapping', ECCV Workshops 2020")


def sample_path(channel: int = 0, split: str = "train", kind: str = "low") -> Path:
    """Path of one bundled stack, e.g. ``sample_path(1, "test", "high")``."""
    if channel not in CHANNELS or split not in SPLITS or kind not in ("low", "high"):
        raise ValueError(f"no sample for channel={channel!r}, split={split!r}, kind={kind!r}: "
                         f"channels {CHANNELS}, splits {SPLITS}, kinds low/high")
    return SAMPLE_DIR / f"w2s_ch{channel}_{split}_{kind}.tif"


def load_sample(channel: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(low, high) uint8 stacks ``(T, 256, 256)`` of one channel and split."""
    return (tifffile.imread(sample_path(channel, split, "low")),
            tifffile.imread(sample_path(channel, split, "high")))


def _layers(channel: int, split: str) -> list[tuple]:
    low, high = load_sample(channel, split)
    meta = {"metadata": {"source": CITATION}}
    return [(low, {"name": f"W2S ch{channel} {split} low", **meta}, "image"),
            (high, {"name": f"W2S ch{channel} {split} high", **meta}, "image")]


def napari_sample_ch0() -> list[tuple]:
    """napari sample data: channel 0 training pairs (6 fields)."""
    return _layers(0, "train")


def napari_sample_ch1() -> list[tuple]:
    """napari sample data: channel 1 training pairs (6 fields)."""
    return _layers(1, "train")


def napari_sample_ch2() -> list[tuple]:
    """napari sample data: channel 2 training pairs (6 fields)."""
    return _layers(2, "train")


def napari_sample_test_ch0() -> list[tuple]:
    """napari sample data: channel 0 held-out pairs (2 fields)."""
    return _layers(0, "test")
