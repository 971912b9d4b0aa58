"""The training and compare docks share napari's right-hand dock area as tabs.

Stacked one above the other at 1280×800 the compare dock (about 550 px tall at its
smallest) left the training dock a ~130–180 px strip, its Export… out of reach. As tabs each
gets the whole height; the user can still drag them apart (once split, they stay so).
"""

from __future__ import annotations

import weakref

from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

#: Class names of the plugin's docks that share an area as tabs.
CARE_DOCKS = ("TrainingWidget", "CompareWidget")


def dock_of(widget: QWidget) -> QDockWidget | None:
    """The dock widget that holds ``widget`` (None while it is not docked)."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _care_docks(window: QMainWindow) -> list[QDockWidget]:
    return [d for d in window.findChildren(QDockWidget)
            if d.widget() is not None and (type(d.widget()).__name__ in CARE_DOCKS or any(
                type(w).__name__ in CARE_DOCKS for w in d.widget().findChildren(QWidget)))]


class DockTabs:
    """Puts the plugin's docks in one dock area into tabs, once per pair (a pair the user
    split again is left as it is); the newest dock is shown."""

    def __init__(self) -> None:
        self._done: weakref.WeakSet = weakref.WeakSet()

    def arrange(self, window: QMainWindow) -> None:
        if not isinstance(window, QMainWindow):
            return
        docks = [d for d in _care_docks(window) if not d.isFloating() and not d.isHidden()]
        for i, new in enumerate(docks):
            if new in self._done:
                continue
            area = window.dockWidgetArea(new)
            others = [d for d in docks[:i] + docks[i + 1:] if window.dockWidgetArea(d) == area
                      and new not in window.tabifiedDockWidgets(d)]
            if others:
                window.tabifyDockWidget(others[0], new)
                new.raise_()
            self._done.add(new)
