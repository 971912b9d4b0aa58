"""Per-panel text in napari's grid mode: a text overlay attached to a layer.

napari draws *layer* canvas overlays inside the grid viewbox of their layer, so one text
overlay per layer gives each grid panel its own label; viewer overlays
(``viewer.canvas.overlays.text``) are either drawn once or duplicated with the *same* text
in every panel (``gridded``).

Public API in napari 0.9.2 (checked in the installed source): a layer exposes only
``layer.bounding_box`` and ``layer.name_overlay`` (which always shows ``layer.name``); there
is no public way to add a text overlay with our own text to one layer or one grid panel
(napari issue #9250 asks for one; PR #8236 left "how do we expose this?" open). So the
per-panel text needs napari's private layer-overlay machinery: ``layer._overlays`` and the
overlay→visual table of ``napari._vispy``. All of that private access is in
:func:`_private_layer_overlays` and :func:`install` below, nowhere else. If a napari release
drops it, :func:`set_panel_text` degrades to the public ``layer.name_overlay`` (the panel
shows the layer's name, which is the method name) and keeps the text for
:func:`panel_text`, instead of failing.

Canvas overlays live in screen space, so the text keeps its size and corner while the
(shared) camera zooms and pans. The font is small (8 pt, 6–7 pt in narrow panels:
:func:`font_for_panel`) and the text short (a title of a few words, PSNR and SSIM lines)
so that a label stays in a corner of a panel of a 1280×800 window with 9 panels.
"""

from __future__ import annotations

import re
import warnings
import weakref
from typing import Any

from napari.components._viewer_constants import CanvasPosition
from napari.components.overlays import TextOverlay
from napari.layers import Layer

#: Key of our overlay in the layer's overlay dict.
OVERLAY_KEY = "care_losses_panel_text"
#: White text on a translucent black box: readable on any image and either napari theme.
TEXT_COLOR = (1.0, 1.0, 1.0, 1.0)
BOX_COLOR = (0.0, 0.0, 0.0, 0.65)
FONT_SIZE = 8
#: Smaller fonts for narrow grid panels: (least panel width in px, font size), widest first.
FONT_STEPS = ((240, FONT_SIZE), (170, 7), (0, 6))


def font_for_panel(width_px: float) -> float:
    """The font size for a grid panel ``width_px`` wide (a 1280×800 window with 9 panels
    gets 6 pt, so that a label covers a corner, not half the panel)."""
    return next(size for least, size in FONT_STEPS if width_px >= least)

#: Texts kept when napari's private overlays are unavailable (the public fallback).
_fallback: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class PanelTextOverlay(TextOverlay):
    """Multi-line text drawn in the top-left corner of its layer's grid panel."""

    position: CanvasPosition = CanvasPosition.TOP_LEFT
    font_size: float = FONT_SIZE
    box: bool = True


# ---------------------------------------------------------------- private napari access


def _private_layer_overlays(layer: Layer) -> Any | None:
    """napari's PRIVATE per-layer overlay dict (``layer._overlays``, an ``EventedDict``
    whose changes the vispy canvas follows), or ``None`` if this napari has none."""
    with warnings.catch_warnings():
        # a plugin's layers are napari proxies that warn on each private access (napari
        # printed it hundreds of times a session): this one access is deliberate (see the
        # module docstring), so only its warning is silenced, here and nowhere else
        warnings.filterwarnings("ignore", message=_OVERLAYS_WARNING, category=FutureWarning)
        overlays = getattr(layer, "_overlays", None)
    return overlays if hasattr(overlays, "get") and install() else None


#: napari's warning on ``layer._overlays`` through its plugin proxy (napari.utils._proxies).
_OVERLAYS_WARNING = re.escape("Private attribute access ('") + r"\w+" + re.escape(
    "._overlays')")


_installed: bool | None = None


def install() -> bool:
    """Register the vispy visual of :class:`PanelTextOverlay` in napari's PRIVATE
    overlay→visual table (idempotent); ``False`` if this napari lacks that machinery."""
    global _installed
    if _installed is not None:
        return _installed
    try:
        from napari._vispy.overlays.text import _VispyLayerTextOverlay
        from napari._vispy.utils import visual
    except ImportError:
        _installed = False
        return False

    class VispyPanelTextOverlay(_VispyLayerTextOverlay):
        overlay: PanelTextOverlay

        def _connect_events(self) -> None:
            self.overlay.events.text.connect(self._on_text_change)

        def _on_text_change(self) -> None:
            self.node.text = self.overlay.text
            self._on_position_change()

        def close(self) -> None:
            self.overlay.events.text.disconnect(self._on_text_change)
            super().close()

    visual.overlay_to_visual[PanelTextOverlay] = VispyPanelTextOverlay
    _installed = True
    return True


# ---------------------------------------------------------------- API of this module


def set_panel_text(layer: Layer, text: str, visible: bool = True,
                   font_size: float = FONT_SIZE) -> PanelTextOverlay | None:
    """Show ``text`` on ``layer``'s panel (creating the overlay on first use)."""
    overlays = _private_layer_overlays(layer)
    if overlays is None:  # public fallback: the panel shows the layer's name
        _fallback[layer] = (text, visible)
        layer.name_overlay.visible = visible
        return None
    overlay = overlays.get(OVERLAY_KEY)
    if overlay is None:
        overlay = PanelTextOverlay(text=text, visible=visible, color=TEXT_COLOR,
                                   box_color=BOX_COLOR, font_size=font_size)
        overlays[OVERLAY_KEY] = overlay
    else:
        if overlay.font_size != font_size:
            overlay.font_size = font_size
        if overlay.text != text:
            overlay.text = text
        if overlay.visible != visible:
            overlay.visible = visible
    return overlay


def panel_text(layer: Layer) -> str | None:
    """The text on ``layer``'s panel, or ``None`` if it has none (or it is hidden)."""
    overlays = _private_layer_overlays(layer)
    if overlays is None:
        text, visible = _fallback.get(layer, (None, False))
        return text if visible else None
    overlay = overlays.get(OVERLAY_KEY)
    return overlay.text if overlay is not None and overlay.visible else None


def panel_overlay(layer: Layer) -> PanelTextOverlay | None:
    """The overlay model of ``layer``'s panel text (for checks), or ``None``."""
    overlays = _private_layer_overlays(layer)
    return overlays.get(OVERLAY_KEY) if overlays is not None else None


def remove_panel_text(layer: Layer) -> None:
    overlays = _private_layer_overlays(layer)
    if overlays is None:
        if _fallback.pop(layer, None) is not None:
            layer.name_overlay.visible = False
        return
    if OVERLAY_KEY in overlays:
        del overlays[OVERLAY_KEY]
