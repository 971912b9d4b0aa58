"""What the compare dock shows: layers in grid order, panel texts, metrics table, spectra.

Scores are cached per table row and frame (``score`` is the core's CARE-style metric);
the cache is dropped when the input or ground-truth layer changes, and per row when a
method's result is replaced.
"""

from __future__ import annotations

import weakref
from functools import partial

import numpy as np

from ..restore.engine import MethodResult
from ..restore.metrics import Score, score
from ..restore.spectra import RadialSpectrum, radial_power_spectrum
from . import _compare_layers as L
from ._compare_jobs import error_map, format_score, panel_title, spectrum_input
from ._overlays import remove_panel_text, set_panel_text

GT_LABEL = "Ground truth"


class CompareView:
    """Presentation state of the compare dock (kept apart to keep files small)."""

    def __init__(self, widget) -> None:  # the CompareWidget that owns this view
        self.w = widget
        self.viewer = widget.viewer
        self._scores: dict[str, dict[int, Score]] = {}
        self._context: tuple = (None, None)
        self._errors_on: set[str] = set()
        self._overlaid: weakref.WeakSet = weakref.WeakSet()
        self._n_panels = 0
        self._hidden: weakref.WeakSet = weakref.WeakSet()  # layers the grid hid
        self._spectra: dict[tuple, RadialSpectrum] = {}
        self.spectrum = None
        self._table_args: tuple | None = None
        self._pinned: tuple[int, int] | None = None  # grid shape fixed for a run

    # ------------------------------------------------------------------ rows and scores

    def input_key(self) -> str | None:
        layer = self.w.input_layer()
        return f"Input ({layer.name})" if layer is not None else None

    def rows(self) -> dict[str, np.ndarray]:
        """Table rows: the input, then every result in panel order (name → stack)."""
        rows = {}
        low = self.w.input_frames()
        if low is not None:
            rows[self.input_key()] = low
        for res in sorted(self.w.results.values(), key=lambda r: r.spec.rank):
            rows[res.spec.name] = res.image
        return rows

    def n_frames(self) -> int:
        low = self.w.input_frames()
        return len(low) if low is not None else 0

    def cached_scores(self, name: str) -> list[Score | None]:
        cache = self._scores.get(name, {})
        return [cache.get(t) for t in range(self.n_frames())]

    def store_scores(self, name: str, scores: list[Score]) -> None:
        self._scores[name] = dict(enumerate(scores))
        self.refresh_table()
        self.update_overlays()

    def unscored(self, gt: np.ndarray | None) -> dict[str, np.ndarray]:
        if gt is None:
            return {}
        return {name: img for name, img in self.rows().items()
                if img.shape == gt.shape and None in self.cached_scores(name)}

    def frame_score(self, name: str, stack: np.ndarray, t: int) -> Score | None:
        """Score of one frame (cached; computed here if the workers have not yet)."""
        gt = self.w.ground_truth_frames()
        if gt is None or gt.shape != stack.shape:
            return None
        cache = self._scores.setdefault(name, {})
        if t not in cache:
            cache[t] = score(stack[t], gt[t])
        return cache[t]

    def on_data_changed(self) -> None:
        context = (self.w.input_layer(), self.w.gt_layer())
        if context != self._context:
            self._context = context
            self._scores.clear()
            self._spectra.clear()
            for name in list(self._errors_on):
                self.set_error_map(name, context[1] is not None)
        self.arrange()
        self.refresh_table()

    # ------------------------------------------------------------------ layers

    def show_result(self, result: MethodResult) -> None:
        name = result.spec.name
        self._scores.pop(name, None)
        self._spectra = {k: v for k, v in self._spectra.items() if k[0] != name}
        if result.scores is not None:
            self._scores[name] = dict(enumerate(result.scores))
        L.put_image(self.viewer, name, result.image, self.w.input_layer(), "result", name,
                    index=self._insert_index(name))
        self.update_uncertainty(self.w.uncertainty_check.isChecked(), arrange=False)
        if name in self._errors_on:
            self.set_error_map(name, True, arrange=False)
        self.arrange()
        self.refresh_table()

    def update_uncertainty(self, on: bool, arrange: bool = True) -> None:
        """Add (or remove) the per-pixel Laplace scale of each probabilistic result."""
        for res in self.w.results.values():
            name = res.spec.name + L.UNCERTAINTY_SUFFIX
            if on and res.scale is not None:
                L.put_image(self.viewer, name, res.scale, self.w.input_layer(), "uncertainty",
                            res.spec.name, index=self._insert_index(name), colormap="viridis")
            else:
                L.remove(self.viewer, name)
        if arrange:
            self.arrange()

    def set_error_map(self, name: str, on: bool, arrange: bool = True) -> None:
        """Toggle the ``|fit - gt|`` layer of a table row (needs ground truth)."""
        gt, stack = self.w.ground_truth_frames(), self.rows().get(name)
        layer_name = name + L.ERROR_SUFFIX
        if on and gt is not None and stack is not None and stack.shape == gt.shape:
            self._errors_on.add(name)
            L.put_image(self.viewer, layer_name, error_map(stack, gt), self.w.input_layer(),
                        "error", name, index=self._insert_index(layer_name), colormap="magma")
            errs = [lyr for lyr in self.viewer.layers if L.role(lyr) == "error"]
            hi = max(float(np.percentile(np.asarray(e.data), 99.5)) for e in errs)
            for e in errs:  # one scale for all error maps, so they compare
                e.contrast_limits = (0.0, max(hi, 1e-6))
        else:
            if not on:
                self._errors_on.discard(name)
            L.remove(self.viewer, layer_name)
        if arrange:
            self.arrange()

    def panel_names(self) -> list[str]:
        """Names of the comparison's layers in panel order (those that exist or may come);
        derived maps follow their source."""
        inp, gt = self.w.input_layer(), self.w.gt_layer()
        names = [lyr.name for lyr in (inp, gt) if lyr is not None]
        if inp is not None:
            names.append(self.input_key() + L.ERROR_SUFFIX)
        for res in sorted(self.w.results.values(), key=lambda r: r.spec.rank):
            name = res.spec.name
            names += [name, name + L.UNCERTAINTY_SUFFIX, name + L.ERROR_SUFFIX]
        return names

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

    def arrange(self) -> None:
        """Reorder the layer list for the grid, switch grid mode, show only the compared
        layers while the grid is on (the others come back when it is off), refresh texts."""
        if not self.w.results:  # nothing to compare yet: leave the user's layers alone
            self._show_hidden()
            self.w.fit_frame_range()
            self.update_overlays()
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
        self.w.fit_frame_range()
        self.update_overlays()

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
        cols = int(np.ceil(np.sqrt(n)))
        shape = (int(np.ceil(n / cols)), cols)
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

    # ------------------------------------------------------------------ panel texts

    def panel_texts(self, t: int) -> dict:
        """``{layer: text}`` for every panel of the comparison at frame ``t``."""
        texts = {}
        inp, gt = self.w.input_layer(), self.w.gt_layer()
        rows = self.rows()
        input_key = self.input_key()
        for name, stack in rows.items():
            layer = inp if name == input_key else L.find(self.viewer, name)
            result = self.w.results.get(name)
            title = ("Input" if name == input_key else
                     panel_title(result.spec) if result is not None else name)
            if layer is not None:
                texts[layer] = f"{title}\n{format_score(self.frame_score(name, stack, t))}"
            unc = L.find(self.viewer, name + L.UNCERTAINTY_SUFFIX)
            if unc is not None:
                texts[unc] = f"{title}\nuncertainty (Laplace scale)"
            err = L.find(self.viewer, name + L.ERROR_SUFFIX)
            if err is not None:
                frame = np.asarray(err.data)[t] if err.data.ndim == 3 else err.data
                texts[err] = (f"{title}\n|error| vs ground truth\nmean "
                              f"{float(np.mean(frame)):.4f}")
        if gt is not None:
            texts[gt] = GT_LABEL
        return texts

    def update_overlays(self, event=None) -> None:
        t = L.current_frame(self.viewer, self.n_frames())
        texts = self.panel_texts(t) if self.w.results else {}
        grid = self.viewer.canvas.grid.enabled
        top = next((lyr for lyr in reversed(self.viewer.layers)
                    if lyr.visible and lyr in texts), None)
        for layer in list(self._overlaid):
            if layer not in texts:
                remove_panel_text(layer)
                self._overlaid.discard(layer)
        for layer, text in texts.items():  # outside grid mode only the top layer's text
            set_panel_text(layer, text, visible=grid or layer is top)
            self._overlaid.add(layer)

    def on_frame(self, event=None) -> None:
        self.update_overlays()
        if self.spectrum is not None and self.w.spectrum_check.isChecked():
            self.update_spectrum()

    # ------------------------------------------------------------------ table

    def refresh_table(self) -> None:
        gt = self.w.ground_truth_frames()
        rows = self.rows()
        scores = {}
        for name in rows:
            cached = self.cached_scores(name)
            scores[name] = None if None in cached else cached
        args = (list(rows), scores, self.n_frames(), gt is not None, set(self._errors_on))
        if args == self._table_args:  # rebuilding the table costs ~50 ms: only on change
            return
        self._table_args = args
        self.w.table.set_scores(*args)

    # ------------------------------------------------------------------ spectrum

    def toggle_spectrum(self, on: bool) -> None:
        if self.spectrum is None and on:
            from ._spectrum import SpectrumPlot

            self.spectrum = SpectrumPlot(self.w)
            self.w.layout().addWidget(self.spectrum)
            self.spectrum.set_theme(self.viewer.theme)
            self.viewer.events.theme.connect(lambda e: self.spectrum.set_theme(e.value))
        if self.spectrum is not None:
            self.spectrum.setVisible(on)
            if on:
                self.update_spectrum()

    def spectra(self, t: int) -> dict[str, RadialSpectrum]:
        """Radially averaged power spectra of frame ``t``: ground truth, input, results."""
        gt_stack = self.w.ground_truth_frames()
        gt = gt_stack[t] if gt_stack is not None else None
        items = ({GT_LABEL: gt} if gt is not None else {}) | {
            n: s[t] for n, s in self.rows().items()}
        out = {}
        for name, img in items.items():
            key = (name, t, gt is not None)
            if key not in self._spectra:
                self._spectra[key] = radial_power_spectrum(spectrum_input(img, gt))
            out[name] = self._spectra[key]
        return out

    def update_spectrum(self) -> None:
        if self.spectrum is None or not self.n_frames():
            return
        t = L.current_frame(self.viewer, self.n_frames())
        self.spectrum.plot(self.spectra(t), f"power spectrum, frame {t}",
                           reference=GT_LABEL)
