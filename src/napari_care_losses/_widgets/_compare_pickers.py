"""The compare dock's pickers: input / ground-truth combos (with the layers left out and
why) and the method list; and its progress bar."""

from __future__ import annotations

import napari
from napari.layers import Image, Labels
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QListWidget, QListWidgetItem, QProgressBar

from ..restore.engine import MethodSpec
from . import _compare_layers as L
from ._layers import matching_pair
from .model_registry import REGISTRY

NONE_GT = "none"


def left_out(viewer: napari.Viewer) -> list[tuple[str, str]]:
    """``(name, why)`` of the user's layers that cannot be an input or a ground truth."""
    offered = set(map(id, L.image_layers(viewer)))
    out = []
    for lyr in viewer.layers:
        if id(lyr) in offered or L.role(lyr) is not None:
            continue
        if isinstance(lyr, Labels):
            why = "a labels layer, not an image"
        elif not isinstance(lyr, Image):
            why = f"a {type(lyr).__name__.lower()} layer, not an image"
        elif lyr.rgb:
            why = "an RGB image: split the colours into separate layers"
        elif getattr(lyr, "metadata", {}).get("care_preview"):
            continue  # the training dock's live preview
        else:
            why = (f"{lyr.ndim}D: the dock compares 2D images or (T, Y, X) stacks; "
                   "split the other axes into layers")
        out.append((lyr.name, why))
    return out


def fill_layer_combos(viewer: napari.Viewer, input_combo: QComboBox, gt_combo: QComboBox
                      ) -> None:
    """Offer the usable image layers (keeping the choice while it exists, else guessing a
    low/high pair); the layers left out are listed greyed out, with the reason as
    tooltip and in their text."""
    layers = L.image_layers(viewer)
    names = [lyr.name for lyr in layers]
    skipped = left_out(viewer)
    keep = (input_combo.currentText(), gt_combo.currentText())
    guess = matching_pair(layers)
    for combo, extra, kept, guessed in ((input_combo, [], keep[0], guess[0]),
                                        (gt_combo, [NONE_GT], keep[1], guess[1])):
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(extra + names)
        for name, why in skipped:
            combo.addItem(f"{name} (left out: {why.split(':')[0]})")
            item = combo.model().item(combo.count() - 1)
            item.setEnabled(False)
            item.setToolTip(f"{name}: {why}")
        if kept in extra + names:
            combo.setCurrentText(kept)
        else:
            combo.setCurrentText(guessed or (extra + names or [""])[0])
        combo.blockSignals(False)


def method_specs() -> dict[str, MethodSpec]:
    """The session's models (those still usable) and the baselines, by key."""
    specs = {}
    for model in REGISTRY.models():
        try:
            spec = MethodSpec.for_model(model.model_dir, model.display_name)
        except (OSError, ValueError):  # deleted or damaged since it was added
            continue
        specs[spec.key] = spec
    specs.update({s.key: s for s in map(MethodSpec.for_baseline, ("tv", "nlm"))})
    return specs


def fill_method_list(method_list: QListWidget, specs: dict[str, MethodSpec]) -> None:
    """List ``specs`` in panel order, keeping each method's tick (new ones ticked)."""
    checked = {method_list.item(i).data(Qt.ItemDataRole.UserRole):
               method_list.item(i).checkState() for i in range(method_list.count())}
    method_list.clear()
    for key, spec in sorted(specs.items(), key=lambda kv: kv[1].rank):
        item = QListWidgetItem(spec.name)
        item.setToolTip(f"{spec.name}\n{spec.model_dir}" if spec.model_dir
                        else f"classical baseline: {spec.name}")
        item.setData(Qt.ItemDataRole.UserRole, key)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(checked.get(key, Qt.CheckState.Checked))
        method_list.addItem(item)


class ProgressBar(QProgressBar):
    """A progress bar whose ``setValue`` schedules its repaint with the window's next one.

    QProgressBar repaints at once when its text changes, and with software OpenGL each
    repaint recomposites the whole napari window; a scheduled repaint is merged with the
    others of the same event-loop pass."""

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt API
        self.setUpdatesEnabled(False)
        super().setValue(value)
        self.setUpdatesEnabled(True)  # schedules update()
