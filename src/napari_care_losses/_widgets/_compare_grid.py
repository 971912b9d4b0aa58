"""Grid arrangement of the compare dock's panels (base of :class:`._compare_view.CompareView`).

Puts the compared layers first in the layer list (napari's grid fills panels in list order),
switches grid mode, shows only the compared layers while the grid is on (the others come
back when it is off, and the dock says which ones it hid) and fixes the grid's shape while
a run fills it.
"""

from __future__ import annotations

import weakref
from functools import partial

import numpy as np

from . import _compare_layers as L


class GridArranger:
    """Needs ``panel_names()``, ``has_panels()``, ``n_frames()``, ``show_frame()`` and
    ``update_overlays()`` of its subclass."""

    def __init__(self, widget) -> None:  # the CompareWidget that owns the view
        self.w = widget
        self.viewer = widget.viewer
        self._overlaid: weakref.WeakSet = weakref.WeakSet()
        self._n_panels = 0
        self._hidden: weakref.WeakSet = weakref.WeakSet()  # layers the grid hid
        self._pinned: tuple[int, int] | None = None  # grid shape fixed for a run
        self._full_range = None  # napari's frame range while the grid narrows it

    def on_frame(self, event=None) -> None:
        """Keep the frame slider inside the compared stacks, then relabel the panels."""
        n = self.n_frames() if self.has_panels() else 0
        axis = L.frame_axis(self.viewer)
        if n and axis is not None and self.viewer.dims.current_step[axis] >= n:
            self.viewer.dims.set_current_step(axis, n - 1)  # re-enters with a valid frame
            return
        self.show_frame()

    def fit_frame_range(self, event=None) -> None:
        """While the grid compares results, the frame slider spans the compared stacks only
        (napari spans every layer, hidden ones too); napari's own range comes back after."""
        axis = L.frame_axis(self.viewer)
        if axis is None:
            return
        dims, r = self.viewer.dims, self.viewer.dims.range[axis]
        n = (self.n_frames() if self.has_panels() and self.viewer.canvas.grid.enabled
             else 0)
        if n:
            last = r.start + (n - 1) * r.step
            if r.stop > last + 1e-9 * max(1.0, abs(r.step)):
                self._full_range = r
                dims.set_range(axis, (r.start, last, r.step))
        elif self._full_range is not None:
            full, self._full_range = self._full_range, None
            if r.stop < full.stop:
                dims.set_range(axis, tuple(full))

    def panel_layers(self) -> list:
        """Layers of the comparison in panel order."""
        return [lyr for lyr in map(partial(L.find, self.viewer), self.panel_names())
                if lyr is not None]

    def _insert_index(self, name: str) -> int | None:
        """Where a new layer ``name`` goes in the layer list: right after the panel before it
        (so :meth:`arrange` need not move it: napari redraws the canvas on every insert and
        every move); on top when no panel comes before it."""
        names = self.panel_names()
        before = names[:names.index(name)] if name in names else []
        layers = self.viewer.layers
        for prev in reversed(before):
            if prev in layers:
                return layers.index(layers[prev]) + 1
        return None

    def hidden_names(self) -> list[str]:
        """Layers the grid hides now (they come back when the grid is off)."""
        return [lyr.name for lyr in self.viewer.layers if lyr in self._hidden]

    def arrange(self) -> None:
        """Reorder the layer list for the grid, switch grid mode, show only the compared
        layers while the grid is on (the others come back when it is off), refresh texts."""
        if not self.has_panels():  # nothing to compare: leave the user's layers alone
            self._show_hidden()
            self.fit_frame_range()
            self.update_overlays()
            self.w.on_hidden_changed(self.hidden_names())
            return
        panels = self.panel_layers()
        L.reorder(self.viewer, panels)
        grid = self.viewer.canvas.grid
        grid.enabled = self.w.grid_check.isChecked()
        if grid.enabled:
            for layer in self.viewer.layers:
                if layer not in panels and layer.visible:
                    layer.visible = False
                    self._hidden.add(layer)
            for layer in panels:
                if layer in self._hidden:  # compared again: show it
                    layer.visible = True
                    self._hidden.discard(layer)
        else:
            self._show_hidden()
        if grid.enabled and grid.spacing == 0:
            grid.spacing = 6  # px between panels
        n_panels = grid.actual_shape(self.viewer.layers) if grid.enabled else (1, 1)
        if n_panels != self._n_panels:
            self._n_panels = n_panels
            self.viewer.reset_view()
        self.fit_frame_range()
        self.update_overlays()
        self.w.on_hidden_changed(self.hidden_names())

    def pin_grid(self, specs: list) -> None:
        """Fix the grid's shape to the panels a run will fill, where napari sizes the grid
        itself: napari rebuilds every panel when the grid gains a row or a column (about
        0.3 s of its event loop with software OpenGL), which would otherwise happen as
        results arrive. :meth:`unpin_grid` gives the shape back to napari."""
        grid = self.viewer.canvas.grid
        if tuple(grid.shape) != (-1, -1):
            return  # the user chose a shape
        uncertainty = self.w.uncertainty_check.isChecked()
        new = [s for s in specs if L.find(self.viewer, s.name) is None]
        n = len(self.panel_layers()) + len(new) + sum(s.probabilistic for s in new
                                                      if uncertainty)
        cols = int(np.ceil(np.sqrt(max(n, 1))))
        shape = (int(np.ceil(max(n, 1) / cols)), cols)
        if grid.enabled and grid.actual_shape(self.viewer.layers) == shape:
            return  # already that shape: setting it would only cost napari a redraw
        self._pinned = grid.shape = shape

    def unpin_grid(self) -> None:
        """Give the grid's shape back to napari after a run (unless the user changed it)."""
        grid = self.viewer.canvas.grid
        if self._pinned is not None and tuple(grid.shape) == self._pinned:
            grid.shape = (-1, -1)
            if grid.enabled and grid.actual_shape(self.viewer.layers) != self._n_panels:
                self.arrange()  # fewer results than planned (stopped, failed)
        self._pinned = None

    def _show_hidden(self) -> None:
        for layer in list(self._hidden):
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden.clear()
