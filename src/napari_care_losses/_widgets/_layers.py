"""Layer helpers for the docks: an Image-layer picker and layer → array conversion."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QSizePolicy, QWidget

from ..io.data import DataError, FrameStack, check_pair

if TYPE_CHECKING:
    import napari


def layer_array(layer: Image) -> np.ndarray:
    """The layer's pixels as a 2D/3D array (raises :class:`DataError` naming the layer if
    they are not a usable image or stack)."""
    _check_kind(layer)
    data = np.asarray(layer.data)
    FrameStack.from_array(data, layer.name)  # checks the layout and the pixel type
    return data


def pair_problem(low: Image | None, high: Image | None, patch_size: int | None) -> str | None:
    """Why ``low``/``high`` cannot be trained on, or ``None`` when they pair.

    Only shapes and pixel types are looked at: nothing is read into memory.
    """
    if low is None or high is None:
        return "Add a low- and a high-exposure image layer (drag the TIFF stacks into napari)."
    if low is high:
        return f"Low and high are both {low.name!r}; pick two different layers."
    try:
        stacks = [_shape_only(layer) for layer in (low, high)]
        check_pair(*stacks, patch_size)
    except DataError as exc:
        return str(exc)
    return None


def image_problem(layer: Image) -> str | None:
    """Why ``layer`` is not a usable image or stack, or ``None``."""
    try:
        _shape_only(layer)
    except DataError as exc:
        return str(exc)
    return None


def partner_problem(low: Image | None, layer: Image) -> str | None:
    """Why ``layer`` cannot be the ground truth of ``low`` (shapes only), or ``None``."""
    if low is None:
        return image_problem(layer)
    if layer is low:
        return "this is the low-exposure layer"
    return pair_problem(low, layer, None)


def _offered(layer) -> bool:
    """Image layers the pickers list (the dock's own live preview excluded)."""
    return isinstance(layer, Image) and not layer.metadata.get("care_preview")


def _check_kind(layer: Image) -> None:
    if layer.multiscale:
        raise DataError(f"{layer.name}: multiscale (pyramid) images are not supported")
    if layer.rgb:
        raise DataError(f"{layer.name}: RGB image; split the colours into separate layers")


def _shape_only(layer: Image) -> FrameStack:
    """A stack with the layer's shape and dtype that allocates nothing (for checks)."""
    _check_kind(layer)
    data = layer.data
    return FrameStack.from_array(np.broadcast_to(np.zeros((), data.dtype), data.shape), layer.name)


class LayerPicker(QComboBox):
    """Combo box of the viewer's Image layers, kept in sync with the layer list.

    ``prefer`` pre-selects the first layer whose name contains it (e.g. ``"low"``);
    ``fallback`` is the index picked otherwise. ``rule`` says why a layer cannot be picked
    (or ``None`` when it can): such layers are listed greyed out with the reason as tooltip,
    and a usable layer is selected in their place when there is one.
    """

    layer_changed = Signal()

    def __init__(self, viewer: napari.Viewer, prefer: str = "", fallback: int = 0,
                 rule: Callable[[Image], str | None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._prefer = prefer.lower()
        self._fallback = fallback
        self._rule = rule
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self._last: int | None = None
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.moved.connect(self.refresh)
        for layer in viewer.layers:
            self._watch(layer)
        self.currentIndexChanged.connect(self._on_index)
        self.refresh()

    def layer(self) -> Image | None:
        """The selected layer, or ``None``."""
        key = self.currentData()
        for layer in self._images():
            if id(layer) == key:
                return layer
        return None

    def set_layer(self, layer: Image | str) -> None:
        """Select a layer (or its name)."""
        for lay in self._images():
            if lay is layer or lay.name == layer:
                self.setCurrentIndex(self.findData(id(lay)))
                return
        raise ValueError(f"no image layer {layer!r} to pick")

    def _images(self) -> list[Image]:
        return [lay for lay in self._viewer.layers if _offered(lay)]

    def refresh(self, *_args) -> None:
        """Rebuild the choices, keeping the selection while the layer exists and is usable."""
        layers = self._images()
        keys = [id(lay) for lay in layers]
        reasons = [self._rule(lay) if self._rule else None for lay in layers]
        usable = [i for i, why in enumerate(reasons) if why is None]
        keep = self.currentData()
        self.blockSignals(True)
        self.clear()
        for i, (layer, why) in enumerate(zip(layers, reasons, strict=True)):
            self.addItem(layer.name, id(layer))
            if why is not None:
                item = self.model().item(i)
                item.setEnabled(False)
                item.setToolTip(why)
        hits = [i for i in usable if self._prefer and self._prefer in layers[i].name.lower()]
        if keep in keys and keys.index(keep) in usable:
            index = keys.index(keep)
        elif usable:
            index = hits[0] if hits else min(usable, key=lambda i: abs(i - self._fallback))
        elif keep in keys:  # nothing usable: keep the choice, the dock says what is wrong
            index = keys.index(keep)
        else:
            index = min(self._fallback, len(layers) - 1)
        self.setCurrentIndex(index)
        self.blockSignals(False)
        self._on_index()

    def _on_index(self, *_args) -> None:
        key = self.currentData()
        if key != self._last:
            self._last = key
            self.layer_changed.emit()

    def _on_inserted(self, event) -> None:
        self._watch(event.value)
        self.refresh()

    def _watch(self, layer) -> None:
        if _offered(layer):  # not the live preview: its updates never change the choices
            layer.events.name.connect(self.refresh)
            layer.events.data.connect(self._on_data)

    def _on_data(self, event) -> None:
        if self._rule is not None:  # a new shape may make a layer (un)usable
            self.refresh()
        if getattr(event, "source", None) is self.layer():
            self.layer_changed.emit()


def matching_pair(layers: list) -> tuple[str | None, str | None]:
    """A default (input, ground truth): a "low" layer and a "high"/"gt" layer that pairs
    with it (same frames and size), the most recently added pair first."""
    def has(layer, keys) -> bool:
        return any(k in layer.name.lower() for k in keys)

    lows = [lyr for lyr in reversed(layers) if has(lyr, ("low",))]
    highs = [lyr for lyr in reversed(layers) if has(lyr, ("high", "gt", "truth"))]
    for low in lows:
        if image_problem(low) is not None:
            continue
        twin = low.name.lower().replace("low", "high")
        fits = [h for h in highs if h is not low and partner_problem(low, h) is None]
        fits.sort(key=lambda h: h.name.lower() != twin)
        if fits:
            return low.name, fits[0].name
    return (lows[0].name if lows else None), None
