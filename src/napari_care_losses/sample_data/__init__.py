"""Bundled sample data: W2S crops (see README.md here for provenance and citation) and
simulated widefield volumes (:mod:`.simulate`, written by ``scripts/make_sample_volumes.py``).

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


#: Simulated 3D sample: split -> (number of volumes, first seed).
VOLUME_SPLITS = {"train": (3, 0), "test": (1, 100)}
VOLUME_SHAPE = (32, 128, 128)


def volume_sample_path(split: str = "train", kind: str = "low") -> Path:
    """Path of one bundled simulated ``(T, Z, Y, X)`` stack."""
    if split not in VOLUME_SPLITS or kind not in ("low", "high"):
        raise ValueError(f"no volume sample for split={split!r}, kind={kind!r}: splits "
                         f"{tuple(VOLUME_SPLITS)}, kinds low/high")
    return SAMPLE_DIR / f"sim3d_{split}_{kind}.tif"


def write_volume(path: Path, volumes: list[np.ndarray], voxel_um: tuple[float, float, float]
                 ) -> None:
    """Write ``(T, Z, Y, X)`` uint16 as an ImageJ hyperstack with the voxel size."""
    data = np.stack(volumes).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, compression="zlib",
                     resolution=(1 / voxel_um[2], 1 / voxel_um[1]),
                     metadata={"axes": "TZYX", "spacing": voxel_um[0], "unit": "um"})


def load_volume_sample(split: str = "train") -> tuple[np.ndarray, np.ndarray, tuple]:
    """(low, high, voxel size (z, y, x) in µm) of the simulated 3D sample."""
    arrays, voxel = [], None
    for kind in ("low", "high"):
        with tifffile.TiffFile(volume_sample_path(split, kind)) as tif:
            data = tif.asarray()
            arrays.append(data.reshape(-1, *data.shape[-3:]))  # (T, Z, Y, X), also T = 1
            ij = tif.imagej_metadata or {}
            x_res = tif.pages[0].tags["XResolution"].value
            y_res = tif.pages[0].tags["YResolution"].value
            voxel = (float(ij.get("spacing", 1.0)), y_res[1] / y_res[0], x_res[1] / x_res[0])
    return arrays[0], arrays[1], voxel


def napari_sample_volumes() -> list[tuple]:
    """napari sample data: simulated widefield Z-stacks, 3 training volumes (T, Z, Y, X)."""
    low, high, voxel = load_volume_sample("train")
    meta = {"metadata": {"source": "simulated (napari_care_losses.sample_data.simulate)"},
            "scale": (1.0, *voxel), "units": ("", "um", "um", "um")}
    return [(low, {"name": "sim3d train low", **meta}, "image"),
            (high, {"name": "sim3d train high", **meta}, "image")]
