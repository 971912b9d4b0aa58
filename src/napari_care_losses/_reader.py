"""napari reader for folders of paired low/high-exposure images (see :mod:`.io.pair_folder`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .io.pair_folder import find_pairs, looks_like_pair_folder, read_pairs

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """A reader for a folder that looks like low/high pairs, or ``None``.

    The folder is only glanced at here; a near miss (say a file without partner) is
    accepted so that reading it tells the user exactly what is wrong.
    """
    if isinstance(path, list) or not Path(path).is_dir() or not looks_like_pair_folder(path):
        return None
    return read_pair_folder


def read_pair_folder(path: str) -> list[LayerData]:
    """Two image layers, ``NAME low`` and ``NAME high``, stacking all pairs of the folder."""
    pairs = find_pairs(path)
    low, high = read_pairs(pairs)
    name = pairs.folder.resolve().name
    meta = {"care_pair_files": pairs.names, "care_pair_folder": str(pairs.folder)}
    return [(low, {"name": f"{name} low", "metadata": meta}, "image"),
            (high, {"name": f"{name} high", "metadata": meta}, "image")]
