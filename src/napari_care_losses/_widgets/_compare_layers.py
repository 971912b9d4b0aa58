"""Layer bookkeeping for the compare dock: result layers, grid order, frame index.

napari's grid (``viewer.canvas.grid``, stride 1) fills panels row by row in *layer-list
index* order: ``layers[0]`` — the bottom row of the layer-list widget — is the top-left
panel. So the panel order we want is written into the list from index 0 upwards.
"""

from __future__ import annotations

import napari
import numpy as np
from napari.layers import Image, Layer

#: ``layer.metadata`` key tagging the layers this dock created.
META_KEY = "care_losses_compare"
UNCERTAINTY_SUFFIX = " uncertainty"
ERROR_SUFFIX = " |error|"


def role(layer: Layer) -> str | None:
    """``"result"``, ``"uncertainty"`` or ``"error"`` for our layers, else ``None``."""
    tag = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
    return tag.get("role") if isinstance(tag, dict) else None


def find(viewer: napari.Viewer, name: str) -> Layer | None:
    return viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401


def image_layers(viewer: napari.Viewer) -> list[Image]:
    """2D/3D grey-level Image layers that can serve as input or ground truth."""
    return [lyr for lyr in viewer.layers if isinstance(lyr, Image) and not lyr.rgb
            and lyr.ndim in (2, 3) and role(lyr) is None]


def put_image(viewer: napari.Viewer, name: str, data: np.ndarray, like: Layer | None,
              layer_role: str, method: str, index: int | None = None, **kwargs) -> Image:
    """Add an image layer (at list ``index``; ``None``: on top), or replace the data of the
    layer of the same name.

    ``like`` (the input layer) supplies scale/translate and the 2D-or-stack shape.
    """
    if like is not None and like.ndim == 2 and data.ndim == 3 and len(data) == 1:
        data = data[0]
    meta = {META_KEY: {"role": layer_role, "method": method}}
    lo, hi = np.percentile(data[::max(1, len(data) // 8)] if data.ndim == 3 else data,
                           [0.5, 99.8])
    limits = kwargs.pop("contrast_limits", (float(lo), float(hi) if hi > lo else float(lo) + 1))
    layer = find(viewer, name)
    if isinstance(layer, Image) and layer.ndim == data.ndim and not layer.rgb:
        layer.data = data
        layer.metadata = {**layer.metadata, **meta}
        layer.contrast_limits = limits
        for key, value in kwargs.items():
            setattr(layer, key, value)
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    geometry = {"scale": like.scale, "translate": like.translate} if like is not None else {}
    layer = Image(data, name=name, metadata=meta, contrast_limits=limits, **geometry, **kwargs)
    viewer.layers.insert(len(viewer.layers) if index is None else index, layer)
    return layer


def remove(viewer: napari.Viewer, name: str) -> None:
    layer = find(viewer, name)
    if layer is not None:
        viewer.layers.remove(layer)


def reorder(viewer: napari.Viewer, first: list[Layer]) -> None:
    """Put ``first`` at list indices 0, 1, … (grid panels left→right, top→bottom)."""
    layers = viewer.layers
    first = [lyr for lyr in dict.fromkeys(first) if lyr in layers]
    indices = [layers.index(lyr) for lyr in first]
    if indices != list(range(len(first))):
        # only the panels are moved (to the front, in order; the rest keep theirs): napari
        # 0.9's move_multiple fails ("pop index out of range") on some full permutations
        layers.move_multiple(indices, 0)


def grid_panels(viewer: napari.Viewer) -> list[str]:
    """Names of the layers in grid-panel order (row by row), for checks and tests."""
    grid, layers = viewer.canvas.grid, viewer.layers
    placed = [(grid.position(i, layers), lyr.name) for i, lyr in enumerate(layers)
              if lyr.visible]
    return [name for _, name in sorted(placed)]


def frame_axis(viewer: napari.Viewer) -> int | None:
    """World axis that indexes frames of ``(T, Y, X)`` stacks (``None`` for 2D data)."""
    return viewer.dims.ndim - 3 if viewer.dims.ndim >= 3 else None


def current_frame(viewer: napari.Viewer, n_frames: int) -> int:
    """Frame shown by the dims slider, clipped to ``[0, n_frames)``."""
    axis = frame_axis(viewer)
    if axis is None or n_frames <= 1:
        return 0
    return int(min(max(viewer.dims.current_step[axis], 0), n_frames - 1))
