"""Folders of paired low/high-exposure images: find the pairs and stack them.

Two layouts are recognised (names are case-insensitive):

* CSBDeep's: subfolders ``low/`` and ``high/`` (or ``GT/``, ``target/`` …) holding files
  with the same names, e.g. ``low/cell1.tif`` ↔ ``GT/cell1.tif``;
* flat: ``NAME_low.tif`` ↔ ``NAME_high.tif`` (also ``-``, ``.`` or space before the tag).

Each file is a 2D image or a stack of 2D frames; the frames of all pairs are stacked in
file-name order into one low and one high stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, open_pair, release

LOW_TAGS = ("low", "noisy", "input", "source", "raw")
HIGH_TAGS = ("high", "gt", "ground_truth", "groundtruth", "target", "clean")
TIFF_SUFFIXES = (".tif", ".tiff")
_FLAT = re.compile(r"^(?P<name>.+)[_\-. ](?P<tag>[a-z_]+)$", re.IGNORECASE)
HINT = ("expected subfolders low/ and high/ (or GT/) with the same file names, or files "
        "named NAME_low.tif and NAME_high.tif")


@dataclass(frozen=True)
class FolderPairs:
    """Matched files of a folder, in name order."""

    folder: Path
    low: tuple[Path, ...]
    high: tuple[Path, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.low]


def _tiffs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES)


def _subfolder(folder: Path, tags: tuple[str, ...]) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() in tags]


def _match(folder: Path, low: dict[str, Path], high: dict[str, Path], what: str) -> FolderPairs:
    alone = sorted(set(low) ^ set(high))
    if alone:
        shown = ", ".join(alone[:5]) + (f" and {len(alone) - 5} more" if len(alone) > 5 else "")
        raise DataError(f"{folder}: {what}: no partner for {shown}")
    keys = sorted(low)
    return FolderPairs(folder, tuple(low[k] for k in keys), tuple(high[k] for k in keys))


def find_pairs(folder: str | Path) -> FolderPairs:
    """The low/high file pairs of ``folder``; :class:`DataError` if it holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    lows, highs = _subfolder(folder, LOW_TAGS), _subfolder(folder, HIGH_TAGS)
    if lows or highs:
        if len(lows) != 1 or len(highs) != 1:
            found = ", ".join(p.name + "/" for p in lows + highs)
            raise DataError(f"{folder}: need one low and one high subfolder, found {found}")
        low = {p.name: p for p in _tiffs(lows[0])}
        high = {p.name: p for p in _tiffs(highs[0])}
        if low or high:
            return _match(folder, low, high, f"{lows[0].name}/ and {highs[0].name}/")
    low, high = {}, {}
    for path in _tiffs(folder):
        m = _FLAT.match(path.stem)
        tag = m["tag"].lower() if m else ""
        side = low if tag in LOW_TAGS else high if tag in HIGH_TAGS else None
        if side is not None:
            side[m["name"] + path.suffix.lower()] = path
    if not low and not high:
        raise DataError(f"{folder}: no paired TIFF images found; {HINT}")
    return _match(folder, low, high, "low/high files")


def read_pairs(pairs: FolderPairs) -> tuple[np.ndarray, np.ndarray]:
    """All frames of the pairs as two ``TYX`` arrays (each pair checked like a training pair)."""
    lows, highs = [], []
    for lo, hi in zip(pairs.low, pairs.high, strict=True):
        s_lo, s_hi = open_pair(lo, hi)
        try:
            lows += list(s_lo)
            highs += list(s_hi)
        finally:
            release((s_lo, lo), (s_hi, hi))
    for stack, files in ((lows, pairs.low), (highs, pairs.high)):
        shapes = {f.shape for f in stack}
        dtypes = {f.dtype for f in stack}
        if len(shapes) > 1:
            raise DataError(f"{pairs.folder}: frames differ in size ({sorted(shapes)}); "
                            f"cannot stack {files[0].name} … {files[-1].name} into one layer")
        if len(dtypes) > 1:
            stack[:] = [f.astype(np.float32) for f in stack]
    return np.stack(lows), np.stack(highs)
