"""What the compare dock shows of its :class:`..restore.compare_session.CompareSession`:
result layers in grid order, panel texts, the metrics table and the spectra.

The view keeps no results or scores of its own: it follows the session's signals. A new run
removes the panels of methods it does not run; a method it runs again keeps its layer (a
new layer costs napari a grid rebuild), titled "restoring… (old result)" until its new result
or its failure replaces it. A failed method gets an empty panel that says why.
"""

from __future__ import annotations

import numpy as np

from ..restore.compare_session import DONE, FAILED, PENDING, RUNNING, CompareSession, Entry
from ..restore.spectra import RadialSpectrum, radial_power_spectrum
from . import _compare_layers as L
from ._compare_grid import GridArranger
from ._compare_jobs import (
    as_frames,
    error_map,
    first_bad_frame,
    format_score,
    panel_title,
    short_reason,
    spectrum_input,
)
from ._overlays import font_for_panel, remove_panel_text, set_panel_text

GT_LABEL = "Ground truth"
#: Opacity of a panel whose method is being restored again (its old result until then).


class CompareView(GridArranger):
    """Presentation of the session in the viewer and the dock's table and spectrum."""

    def __init__(self, widget, session: CompareSession) -> None:
        super().__init__(widget)
        self.session = session
        self._errors_on: set[str] = set()
        self._spectra: dict[tuple, RadialSpectrum] = {}
        self.spectrum = None
        self._table_args: tuple | None = None
        self._font = None  # the panel labels' font size
        self._input_check: tuple = (None, None)  # (input key, its problem)
        session.run_started.connect(self._on_run_started)
        session.entry_changed.connect(self._on_entry)
        session.scores_changed.connect(self._on_scores)
        session.run_ended.connect(self._on_run_ended)

    # ------------------------------------------------------------------ rows and scores

    def input_key(self) -> str | None:
        layer = self.w.input_layer()
        return f"Input ({layer.name})" if layer is not None else None

    def rows(self) -> dict[str, np.ndarray | None]:
        """Table rows: the input, then every finished or failed method of the run in panel
        order (name → stack; ``None`` for a failed method)."""
        rows = {}
        low = self.w.input_frames()
        if low is not None:
            rows[self.input_key()] = low
        for e in self.session.shown():
            rows[e.name] = e.result.image if e.state == DONE else None
        return rows

    def n_frames(self) -> int:
        low = self.w.input_frames()
        return len(low) if low is not None else 0

    def cached_scores(self, name: str) -> list:
        """Per-frame scores of a row (``None`` where not computed)."""
        if name == self.input_key():
            return self.session.cached_input_scores(self.n_frames())
        entry = self.session.entries.get(name)
        return self.session.scores(entry) if entry is not None else []

    def frame_text(self, name: str, t: int) -> str:
        """The score lines of a row's panel at frame ``t`` (or why it has none)."""
        gt, low = self.w.ground_truth_frames(), self.w.input_frames()
        if name == self.input_key():
            s = (self.session.input_score(t, low[t], gt[t])
                 if gt is not None and low is not None and gt.shape == low.shape
                 else "no ground truth" if gt is None else "ground truth does not fit")
            return short_reason(s) if isinstance(s, str) else format_score(s)
        entry = self.session.entries[name]
        note = self.session.row_note(entry)
        if note is not None:
            return note if note == "no ground truth" else short_reason(note)
        try:
            return format_score(self.session.frame_score(entry, t, gt[t]))
        except (ValueError, ArithmeticError) as exc:  # e.g. a constant ground truth
            return short_reason(f"not scored: {exc}")

    def input_problem(self) -> str | None:
        """Why the current input cannot be scored (NaN or infinite pixels), else ``None``;
        looked at once per input array."""
        layer = self.w.input_layer()
        if layer is None:
            return None
        key = (layer.name, id(layer.data))
        if self._input_check[0] != key:
            bad = first_bad_frame(as_frames(np.asarray(layer.data)))
            self._input_check = (key, None if bad is None else
                                 f"the input has NaN or infinite pixels in frame {bad}")
        return self._input_check[1]

    def on_data_changed(self) -> None:
        """The pickers changed: texts, table and error maps follow (scores are per gt)."""
        self._spectra.clear()
        gt_ok = self.w.ground_truth_frames() is not None and self.session.same_input()
        for name in list(self._errors_on):
            self.set_error_map(name, gt_ok)
        self.arrange()
        self.refresh_table()

    # ------------------------------------------------------------------ session events

    def _on_run_started(self, run, removed: list[Entry]) -> None:
        self._errors_on.clear()
        self._spectra.clear()
        for layer in list(self.viewer.layers):
            if L.role(layer) == "error":
                self.viewer.layers.remove(layer)
        for entry in removed:
            if entry.name not in run.methods:
                self._remove_layers(entry.name)
            # restored again: its old result stays, titled "restoring… (old result)" until
            # the new one comes (not dimmed: each opacity change is one more full redraw
            # of napari's canvas, measured 2.2x napari's own cost per warm run)
        self.arrange()
        self.refresh_table()
        self.update_spectrum()

    def _remove_layers(self, name: str) -> None:
        for suffix in ("", L.UNCERTAINTY_SUFFIX, L.ERROR_SUFFIX):
            layer = L.find(self.viewer, name + suffix)
            if layer is not None and L.role(layer) is not None:
                remove_panel_text(layer)
                self.viewer.layers.remove(layer)

    def _on_entry(self, entry: Entry) -> None:
        if entry.state == DONE:
            self.show_result(entry)
        elif entry.state == FAILED:
            self.show_failure(entry)
        else:  # discarded or not run: its previous result is not this run's
            self._remove_layers(entry.name)
            self.arrange()
            self.refresh_table()

    def _on_scores(self) -> None:
        self.refresh_table()
        self.update_overlays()

    def _on_run_ended(self, run) -> None:
        for entry in self.session.entries.values():
            if entry.state not in (DONE, FAILED):
                self._remove_layers(entry.name)
        self.arrange()
        self.refresh_table()
        self.update_spectrum()

    # ------------------------------------------------------------------ layers

    def show_result(self, entry: Entry) -> None:
        name, result = entry.name, entry.result
        layer = L.put_image(self.viewer, name, result.image, self.w.input_layer(), "result",
                            name, index=self._insert_index(name))
        if layer.opacity != 1.0:
            layer.opacity = 1.0
        self.update_uncertainty(self.w.uncertainty_check.isChecked(), arrange=False)
        self.arrange()
        self.refresh_table()

    def show_failure(self, entry: Entry) -> None:
        """An empty panel (no pixels allocated) whose text says why the method failed."""
        run = self.session.run
        shape = run.input.shape if run is not None else (1, 1)
        blank = np.broadcast_to(np.zeros((), np.float32), shape)
        layer = L.put_image(self.viewer, entry.name, blank, self.w.input_layer(), "failed",
                            entry.name, index=self._insert_index(entry.name),
                            contrast_limits=(0.0, 1.0))
        layer.opacity = 1.0
        L.remove(self.viewer, entry.name + L.UNCERTAINTY_SUFFIX)
        self.set_error_map(entry.name, False, arrange=False)
        self.arrange()
        self.refresh_table()

    def update_uncertainty(self, on: bool, arrange: bool = True) -> None:
        """Add (or remove) the per-pixel Laplace scale of each probabilistic result."""
        for entry in self.session.entries.values():
            name = entry.name + L.UNCERTAINTY_SUFFIX
            res = entry.result
            if on and entry.state == DONE and res.scale is not None:
                layer = L.put_image(self.viewer, name, res.scale, self.w.input_layer(),
                                    "uncertainty", entry.name, index=self._insert_index(name),
                                    colormap="viridis")
                if layer.opacity != 1.0:
                    layer.opacity = 1.0
            elif not (on and entry.state in (PENDING, RUNNING)):
                L.remove(self.viewer, name)
        if arrange:
            self.arrange()

    def set_error_map(self, name: str, on: bool, arrange: bool = True) -> None:
        """Toggle the ``|fit - gt|`` layer of a table row (needs a ground truth of the
        run's input)."""
        gt, stack = self.w.ground_truth_frames(), self.rows().get(name)
        entry = self.session.entries.get(name)
        fits = entry is None or self.session.row_note(entry) is None
        layer_name = name + L.ERROR_SUFFIX
        if on and fits and gt is not None and stack is not None and stack.shape == gt.shape:
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
        for entry in self.session.entries.values():
            name = entry.name
            names += [name, name + L.UNCERTAINTY_SUFFIX, name + L.ERROR_SUFFIX]
        return names

    def has_panels(self) -> bool:
        return bool(self.session.entries) and any(
            L.find(self.viewer, e.name) is not None for e in self.session.entries.values())

    # ------------------------------------------------------------------ panel texts

    def panel_texts(self, t: int) -> dict:
        """``{layer: text}`` for every panel of the comparison at frame ``t``."""
        texts = {}
        inp, gt = self.w.input_layer(), self.w.gt_layer()
        if inp is not None:
            texts[inp] = f"Input\n{self.frame_text(self.input_key(), t)}"
            err = L.find(self.viewer, self.input_key() + L.ERROR_SUFFIX)
            if err is not None:
                texts[err] = self._error_text("Input", err, t)
        for entry in self.session.entries.values():
            layer = L.find(self.viewer, entry.name)
            if layer is None or L.role(layer) is None:
                continue
            title = panel_title(entry.spec)
            if entry.state in (PENDING, RUNNING):
                texts[layer] = f"{title}\nrestoring… (old result)"
            elif entry.state == FAILED:
                texts[layer] = f"{title}\n{short_reason('failed: ' + (entry.error or ''))}"
            else:
                texts[layer] = f"{title}\n{self.frame_text(entry.name, t)}"
            unc = L.find(self.viewer, entry.name + L.UNCERTAINTY_SUFFIX)
            if unc is not None:
                texts[unc] = f"{title}\nuncertainty (Laplace scale)"
            err = L.find(self.viewer, entry.name + L.ERROR_SUFFIX)
            if err is not None:
                texts[err] = self._error_text(title, err, t)
        if gt is not None:
            texts[gt] = GT_LABEL
        return texts

    @staticmethod
    def _error_text(title: str, err, t: int) -> str:
        frame = np.asarray(err.data)[t] if err.data.ndim == 3 else err.data
        return f"{title}\n|error| vs ground truth\nmean {float(np.mean(frame)):.4f}"

    def update_overlays(self, event=None) -> None:
        t = L.current_frame(self.viewer, self.n_frames())
        texts = self.panel_texts(t) if self.has_panels() else {}
        grid = self.viewer.canvas.grid.enabled
        top = next((lyr for lyr in reversed(self.viewer.layers)
                    if lyr.visible and lyr in texts), None)
        for layer in list(self._overlaid):
            if layer not in texts:
                remove_panel_text(layer)
                self._overlaid.discard(layer)
        font = self._font = font_for_panel(
            self.viewer.canvas.viewbox_size(self.viewer.layers)[1])
        for layer, text in texts.items():  # outside grid mode only the top layer's text
            set_panel_text(layer, text, visible=grid or layer is top, font_size=font)
            self._overlaid.add(layer)

    def on_canvas_size(self, event=None) -> None:
        """The panels changed size: the labels' font follows (only when it changes)."""
        font = font_for_panel(self.viewer.canvas.viewbox_size(self.viewer.layers)[1])
        if font != self._font and self._overlaid:
            self.update_overlays()

    def show_frame(self) -> None:
        """Relabel the panels (and redraw the spectrum) for the current frame."""
        self.update_overlays()
        if self.spectrum is not None and self.w.spectrum_check.isChecked():
            self.update_spectrum()

    # ------------------------------------------------------------------ table

    def refresh_table(self) -> None:
        gt = self.w.ground_truth_frames()
        rows = self.rows()
        scores, notes = {}, {}
        for name in rows:
            entry = self.session.entries.get(name)
            note = (self.session.row_note(entry) if entry is not None
                    else self.input_problem() if gt is not None else None)
            if note is not None and note != "no ground truth":
                notes[name] = note
                scores[name] = None
                continue
            cached = self.cached_scores(name)
            scores[name] = None if None in cached else cached
        args = (list(rows), scores, self.n_frames(), gt is not None, set(self._errors_on),
                notes)
        if args == self._table_args:  # rebuilding the table costs ~50 ms: only on change
            return
        self._table_args = args
        self.w.table.set_scores(*args)

    # ------------------------------------------------------------------ spectrum

    def toggle_spectrum(self, on: bool) -> None:
        if self.spectrum is None and on:
            from ._spectrum import SpectrumPlot

            self.spectrum = SpectrumPlot(self.w)
            self.w.add_panel(self.spectrum)
            self.spectrum.set_theme(self.viewer.theme)
            self.viewer.events.theme.connect(lambda e: self.spectrum.set_theme(e.value))
        if self.spectrum is not None:
            self.spectrum.setVisible(on)
            if on:
                self.update_spectrum()

    def spectra(self, t: int) -> dict[str, RadialSpectrum]:
        """Radially averaged power spectra of frame ``t``: ground truth, input, and the
        run's results when they come from the current input."""
        gt_stack, low = self.w.ground_truth_frames(), self.w.input_frames()
        fits = gt_stack is not None and low is not None and gt_stack.shape == low.shape
        gt = gt_stack[t] if fits else None
        out = {}
        items = ({GT_LABEL: gt} if gt is not None else {}) | (
            {self.input_key(): low[t]} if low is not None and t < len(low) else {})
        for name, img in items.items():
            key = (name, t, gt is not None)
            if key not in self._spectra:
                try:
                    self._spectra[key] = radial_power_spectrum(spectrum_input(img, gt))
                except ValueError:  # NaN or infinite pixels: no curve (the row says why)
                    self._spectra[key] = None
            if self._spectra[key] is not None:
                out[name] = self._spectra[key]
        if not self.session.same_input():
            return out
        for entry in self.session.results():
            key = (t, self.session.gt)
            if key not in entry.cache and t < len(entry.result.image):
                entry.cache[key] = radial_power_spectrum(
                    spectrum_input(entry.result.image[t], gt))
            if key in entry.cache:
                out[entry.name] = entry.cache[key]
        return out

    def update_spectrum(self) -> None:
        if self.spectrum is None or not self.w.spectrum_check.isChecked():
            return
        if not self.n_frames():
            self.spectrum.plot({}, "")
            return
        t = L.current_frame(self.viewer, self.n_frames())
        self.spectrum.plot(self.spectra(t), f"power spectrum, frame {t}",
                           reference=GT_LABEL)
