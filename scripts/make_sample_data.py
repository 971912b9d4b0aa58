"""Cut the small W2S crops bundled as sample data (run once by maintainers).

Usage: python scripts/make_sample_data.py ../shared/data/w2s

Writes ``src/napari_care_losses/sample_data/w2s_ch{C}_{train,test}_{low,high}.tif``: for each
of the three channels, 6 training fields and 2 held-out (validation) fields, each a 256x256
crop, uint8, zlib-compressed. The crop of each field is the 256x256 window with the most
signal in the high-SNR image, so every crop shows structure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

CROP = 256
TRAIN_FIELDS = (0, 13, 26, 40, 53, 66)
TEST_FIELDS = (3, 14)
OUT = Path(__file__).resolve().parents[1] / "src" / "napari_care_losses" / "sample_data"


def best_window(high: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the CROP window (on a 64 px grid) with the highest mean."""
    best, corner = -1.0, (0, 0)
    for y in range(0, high.shape[0] - CROP + 1, 64):
        for x in range(0, high.shape[1] - CROP + 1, 64):
            m = float(high[y : y + CROP, x : x + CROP].mean())
            if m > best:
                best, corner = m, (y, x)
    return corner


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for ch in range(3):
        for split, fields, name in (("train", TRAIN_FIELDS, "train"), ("val", TEST_FIELDS, "test")):
            low = tifffile.imread(src / f"{split}_ch{ch}_low.tif")
            high = tifffile.imread(src / f"{split}_ch{ch}_high.tif")
            lows, highs = [], []
            for f in fields:
                y, x = best_window(high[f])
                lows.append(low[f, y : y + CROP, x : x + CROP])
                highs.append(high[f, y : y + CROP, x : x + CROP])
            for kind, frames in (("low", lows), ("high", highs)):
                path = OUT / f"w2s_ch{ch}_{name}_{kind}.tif"
                tifffile.imwrite(path, np.stack(frames), compression="zlib",
                                 metadata={"axes": "TYX"})
                print(path.name, np.stack(frames).shape)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
