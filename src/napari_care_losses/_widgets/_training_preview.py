"""The training dock's live preview: the request sent to the training process (every how
many epochs, which frame) and the preview layer it fills in the viewer.

The frame follows the frame of the low layer that the viewer shows. The preview layer is
added (hidden) before training starts, so later previews only replace its data.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..training.jobs import PREVIEW_MAX_SIDE, PreviewReady, PreviewRequest

if TYPE_CHECKING:
    import napari

PREVIEW_LAYER = "CARE preview"


class TrainingPreview:
    """Preview request and layer of one training dock (owned by it; knows only the viewer
    and how to find the low layer picked while no run has started)."""

    def __init__(self, viewer: napari.Viewer, picked_low: Callable[[], object]) -> None:
        self.viewer = viewer
        self._picked_low = picked_low
        self.request = PreviewRequest()
        self._low_ref: weakref.ref | None = None

    def start(self, low_layer, frame_shape: tuple[int, int], every: int) -> PreviewRequest:
        """A new run on ``low_layer``: a fresh request (every ``every`` epochs, 0: never),
        the frame the viewer shows and, if previews are on, the layer made ready."""
        self.request = PreviewRequest(every, 0)
        self._low_ref = weakref.ref(low_layer)
        self.follow_frame()
        if self.request.every:
            self._prepare_layer(frame_shape)
        return self.request

    def follow_frame(self, *_args) -> None:
        """Keep the preview on the frame of the low layer that the viewer shows."""
        low = self._low_ref() if self._low_ref else self._picked_low()
        if low is None or low.ndim != 3:
            self.request.frame = 0
            return
        try:
            index = low.world_to_data(self.viewer.dims.point)[0]
            self.request.frame = int(min(max(round(index), 0), low.data.shape[0] - 1))
        except (IndexError, ValueError, TypeError):
            self.request.frame = 0

    def _prepare_layer(self, frame_shape: tuple[int, int]) -> None:
        """Add the preview layer (hidden until the first preview) before training starts:
        adding a layer is the slow part of showing a preview (~0.1 s); later previews only
        replace its data."""
        shape = tuple(min(s, PREVIEW_MAX_SIDE) for s in frame_shape)
        layers = self.viewer.layers
        if PREVIEW_LAYER in layers:
            if layers[PREVIEW_LAYER].data.shape == shape:
                return
            layers.remove(PREVIEW_LAYER)
        self.viewer.add_image(np.zeros(shape, np.float32), name=PREVIEW_LAYER, visible=False,
                              metadata={"care_preview": True})

    def show(self, ev: PreviewReady, label: str) -> str:
        """Show a preview image (``ev.image`` is not None) in the preview layer, placed over
        its crop of the low layer; returns the status line that describes it."""
        low = self._low_ref() if self._low_ref else None
        meta = {"care_preview": True, "loss": label, "epoch": ev.epoch, "frame": ev.frame}
        layers = self.viewer.layers
        if PREVIEW_LAYER in layers and layers[PREVIEW_LAYER].data.shape == ev.image.shape:
            layer = layers[PREVIEW_LAYER]
            layer.data = ev.image
            layer.metadata.update(meta)
            # the placeholder's range is [0, 1]: widen it first, or the limits stay clipped
            # to it and the first preview shows solid white
            layer.reset_contrast_limits_range()
            lo, hi = (float(v) for v in np.percentile(ev.image, [0.5, 99.8]))
            layer.contrast_limits = (lo, hi if hi > lo else lo + 1.0)
            layer.visible = True
        else:
            if PREVIEW_LAYER in layers:
                layers.remove(PREVIEW_LAYER)
            layer = self.viewer.add_image(ev.image, name=PREVIEW_LAYER, metadata=meta)
        if low is not None:
            layer.scale = tuple(low.scale[-2:])
            layer.translate = tuple(t + o * s for t, o, s in
                                    zip(low.translate[-2:], ev.offset, low.scale[-2:], strict=True))
        return f"Preview: {label}, best weights after epoch {ev.epoch}, frame {ev.frame}."
