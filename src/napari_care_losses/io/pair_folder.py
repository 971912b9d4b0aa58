"""Folders of paired low/high-exposure images: find the pairs and stack them.

Two layouts are recognised (folder names, tags and file names are matched ignoring case,
``.tif``/``.tiff``/``.ome.tif`` alike):

* CSBDeep's: subfolders ``low/`` and ``high/`` (or ``GT/``, ``target/`` …) holding files
  with the same names, e.g. ``low/cell1.tif`` ↔ ``GT/cell1.tif``;
* flat: ``NAME_low.tif`` ↔ ``NAME_high.tif`` (also ``-``, ``.`` or space before the tag).

Each file is a 2D image or a stack of 2D frames; the frames of all pairs are stacked in
natural file-name order (``img2`` before ``img10``) into one low and one high stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, open_pair, release
from .tiff import empty

LOW_TAGS = ("low", "noisy", "input", "source", "raw")
HIGH_TAGS = ("high", "gt", "ground_truth", "groundtruth", "target", "clean")
_TIFF = re.compile(r"(\.ome)?\.tiff?$", re.IGNORECASE)
_FLAT = re.compile(r"^(?P<name>.+)[_\-. ](?P<tag>" + "|".join(LOW_TAGS + HIGH_TAGS) + r")$",
                   re.IGNORECASE)
HINT = ("expected subfolders low/ and high/ (or GT/) with the same file names, or files "
        "named NAME_low.tif and NAME_high.tif")


@dataclass(frozen=True)
class FolderPairs:
    """Matched files of a folder, in natural name order."""

    folder: Path
    low: tuple[Path, ...]
    high: tuple[Path, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.low]


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _tiff_entries(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(lower-case name without the TIFF suffix, path)`` of the visible TIFFs of ``folder``."""
    for path in folder.iterdir():
        if not path.name.startswith(".") and _TIFF.search(path.name) and path.is_file():
            yield _TIFF.sub("", path.name).lower(), path


def _tiffs(folder: Path) -> dict[str, Path]:
    """TIFF files of ``folder`` by their lower-case name without the suffix."""
    out: dict[str, Path] = {}
    for key, path in _tiff_entries(folder):
        if key in out:
            raise DataError(f"{folder}: {out[key].name} and {path.name} have the same name")
        out[key] = path
    return out


def _subfolders(folder: Path, tags: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() in tags)


def _flat(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    low: dict[str, Path] = {}
    high: dict[str, Path] = {}
    for key, path in _tiffs(folder).items():
        if m := _FLAT.match(key):
            side = low if m["tag"] in LOW_TAGS else high
            if m["name"] in side:
                raise DataError(f"{folder}: {side[m['name']].name} and {path.name} are both "
                                f"{m['tag']!r} images of {m['name']!r}")
            side[m["name"]] = path
    return low, high


def _match(folder: Path, low: dict[str, Path], high: dict[str, Path], what: str) -> FolderPairs:
    alone = sorted((low.get(k) or high[k]).name for k in set(low) ^ set(high))
    if alone:
        shown = ", ".join(alone[:5]) + (f" and {len(alone) - 5} more" if len(alone) > 5 else "")
        raise DataError(f"{folder}: {what}: no partner for {shown}")
    keys = sorted(low, key=_natural)
    return FolderPairs(folder, tuple(low[k] for k in keys), tuple(high[k] for k in keys))


def looks_like_pair_folder(folder: str | Path) -> bool:
    """Whether ``folder`` has a low/high subfolder or a tagged TIFF (cheap; no reading)."""
    folder = Path(folder)
    try:
        if _subfolders(folder, LOW_TAGS + HIGH_TAGS):
            return True
        return any(_FLAT.match(key) for key, _ in _tiff_entries(folder))
    except OSError:
        return False


def find_pairs(folder: str | Path) -> FolderPairs:
    """The low/high file pairs of ``folder``; :class:`DataError` if it holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    lows, highs = _subfolders(folder, LOW_TAGS), _subfolders(folder, HIGH_TAGS)
    if len(lows) == 1 and len(highs) == 1:
        return _match(folder, _tiffs(lows[0]), _tiffs(highs[0]),
                      f"{lows[0].name}/ and {highs[0].name}/")
    low, high = _flat(folder)
    if low or high:
        return _match(folder, low, high, "low/high files")
    if lows or highs:
        found = ", ".join(p.name + "/" for p in lows + highs)
        raise DataError(f"{folder}: need one low and one high subfolder, found {found}")
    raise DataError(f"{folder}: no paired TIFF images found; {HINT}")


def read_pairs(pairs: FolderPairs) -> tuple[np.ndarray, np.ndarray]:
    """All frames of the pairs as two ``TYX`` arrays (each pair checked like a training pair).

    Every pair is checked before anything is read, then frames go straight into the
    two output arrays.
    """
    counts, shapes, dtypes = [], set(), ([], [])
    for lo, hi in zip(pairs.low, pairs.high, strict=True):
        s_lo, s_hi = open_pair(lo, hi)  # headers only: checks the pair, reads no pixels
        counts.append(s_lo.n_frames)
        shapes.add(s_lo.frame_shape)
        dtypes[0].append(s_lo.dtype)
        dtypes[1].append(s_hi.dtype)
        release((s_lo, lo), (s_hi, hi))
    if len(shapes) > 1:
        raise DataError(f"{pairs.folder}: frames differ in size ({sorted(shapes)}); one "
                        "layer needs frames of one size")
    shape = (sum(counts), *shapes.pop())
    low, high = (empty(f"{pairs.folder} ({side})", shape, np.result_type(*d))
                 for side, d in zip(("low", "high"), dtypes, strict=True))
    start = 0
    for lo, hi, count in zip(pairs.low, pairs.high, counts, strict=True):
        s_lo, s_hi = open_pair(lo, hi)
        try:
            for i in range(count):
                low[start + i], high[start + i] = s_lo.frame(i), s_hi.frame(i)
        finally:
            release((s_lo, lo), (s_hi, hi))
        start += count
    return low, high
