"""Per-panel text in napari's grid mode: a text overlay attached to a layer.

napari (0.6+) draws *layer* canvas overlays (``layer._overlays``, e.g. the layer-name
overlay) inside the grid viewbox of their layer, so one such overlay per layer gives each
grid panel its own label; viewer overlays (``viewer.text_overlay``) are either drawn once
or duplicated with the same text in every panel. napari has no generic text overlay for
layers yet, so we add one: an overlay model with a ``text`` field and a vispy visual for it,
registered in napari's overlay→visual table. Canvas overlays live in screen space, so the
text keeps its size and corner while the (shared) camera zooms and pans.
"""

from __future__ import annotations

from napari.components._viewer_constants import CanvasPosition
from napari.components.overlays import TextOverlay
from napari.layers import Layer

#: Key of our overlay in ``layer._overlays``.
OVERLAY_KEY = "care_losses_panel_text"
#: White text on a translucent black box: readable on any image and either napari theme.
TEXT_COLOR = (1.0, 1.0, 1.0, 1.0)
BOX_COLOR = (0.0, 0.0, 0.0, 0.65)


class PanelTextOverlay(TextOverlay):
    """Multi-line text drawn in the top-left corner of its layer's grid panel."""

    position: CanvasPosition = CanvasPosition.TOP_LEFT
    font_size: float = 9
    box: bool = True


_installed = False


def install() -> None:
    """Register the vispy visual of :class:`PanelTextOverlay` (idempotent)."""
    global _installed
    if _installed:
        return
    from napari._vispy.overlays.text import _VispyLayerTextOverlay
    from napari._vispy.utils import visual

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


def set_panel_text(layer: Layer, text: str, visible: bool = True) -> PanelTextOverlay:
    """Show ``text`` on ``layer``'s panel (creating the overlay on first use)."""
    install()
    overlay = layer._overlays.get(OVERLAY_KEY)
    if overlay is None:
        overlay = PanelTextOverlay(text=text, visible=visible, color=TEXT_COLOR,
                                   box_color=BOX_COLOR)
        layer._overlays[OVERLAY_KEY] = overlay
    else:
        overlay.text = text
        overlay.visible = visible
    return overlay


def panel_text(layer: Layer) -> str | None:
    """The text on ``layer``'s panel, or ``None`` if it has none (or it is hidden)."""
    overlay = layer._overlays.get(OVERLAY_KEY)
    return overlay.text if overlay is not None and overlay.visible else None


def remove_panel_text(layer: Layer) -> None:
    if OVERLAY_KEY in layer._overlays:
        del layer._overlays[OVERLAY_KEY]
