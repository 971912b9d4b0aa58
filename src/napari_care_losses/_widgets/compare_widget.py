"""Compare dock: restorations side by side in grid mode, PSNR/SSIM on each panel.

Pick an input (low) layer, an optional ground truth (high) layer, trained models from the
session registry and the classical baselines; *Restore* runs the core's restore-and-score
engine in a warm child process (:class:`..workers.restore_runs.RestoreProcess`: TensorFlow never
loads in napari's process) and shows each method as it finishes. *Stop* is checked between
frames: methods that finished are kept, the method in progress is discarded, the remaining
ones are not run. A child that dies is reported and the next Restore starts a new one.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..restore.engine import (
    MethodResult,
    MethodSpec,
)
from ..restore.metrics import Score
from ..workers.restore_runs import RestoreProcess
from . import _compare_layers as L
from ._compare_jobs import STRENGTH_CALIBRATE, STRENGTH_DEFAULT, as_frames
from ._compare_runs import FRAMES_FORMAT, CompareRuns
from ._compare_view import CompareView
from ._event_pacer import EventPacer
from ._layers import image_problem, matching_pair, partner_problem
from ._metrics_table import MetricsTable
from .model_list import ask_model_path, is_package, unpack_package
from .model_registry import REGISTRY

NONE_GT = "none"


class CompareWidget(CompareRuns, QWidget):
    """Dock widget: restore with several methods and compare them panel by panel."""

    #: Emitted when a restore run (or a re-scoring) has ended, finished or stopped.
    run_finished = Signal()

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.results: dict[str, MethodResult] = {}
        self._stop = threading.Event()
        self._worker = None
        self._run: dict = {}
        self._full_range = None  # napari's frame range while the grid narrows it
        self._specs: dict[str, MethodSpec] = {}
        self._process = RestoreProcess()  # started on the first Restore, then kept warm
        self._pacer = EventPacer(self._paced, parent=self)  # a run's events, in batches
        self._build_ui()
        self.view = CompareView(self)
        self._connect()
        REGISTRY.load_folder()  # finished models of earlier sessions
        self._refresh_layer_choices()
        self._refresh_methods()

    # ------------------------------------------------------------------ UI

    def _build_ui(self) -> None:
        self.input_combo, self.gt_combo = QComboBox(), QComboBox()
        self.method_list = QListWidget()
        self.method_list.setMaximumHeight(130)
        self.load_button = QPushButton("Load model…")
        self.files_button = QPushButton("Restore files…")
        self.files_button.setToolTip("restore TIFF files on disk (stacks too large to open) "
                                     "with the ticked methods; writes <file>_<method>.tif")
        self.strength_combo = QComboBox()
        self.strength_combo.addItems([STRENGTH_DEFAULT, STRENGTH_CALIBRATE])
        self.restore_button, self.stop_button = QPushButton("Restore"), QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress = _ProgressBar()
        self.progress.setFormat(FRAMES_FORMAT)
        self.status = QLabel("")
        self.status.setWordWrap(True)  # the whole message, never cut off
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.grid_check = QCheckBox("Grid view")
        self.grid_check.setChecked(True)
        self.uncertainty_check = QCheckBox("Show uncertainty (Laplace)")
        self.table = MetricsTable()
        self.export_button = QPushButton("Export CSV…")
        self.spectrum_check = QCheckBox("Power spectrum (current frame)")

        form = QFormLayout()
        form.addRow("Input (low)", self.input_combo)
        form.addRow("Ground truth", self.gt_combo)
        form.addRow("Baseline strength", self.strength_combo)
        models = QGroupBox("Methods")
        box = QVBoxLayout(models)
        box.addWidget(self.method_list)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.files_button)
        box.addLayout(buttons)
        run_row = QHBoxLayout()
        run_row.addWidget(self.restore_button)
        run_row.addWidget(self.stop_button)
        view_row = QHBoxLayout()
        view_row.addWidget(self.grid_check)
        view_row.addWidget(self.uncertainty_check)
        layout = QVBoxLayout(self)
        for item in (form, models, run_row, self.progress, self.status, view_row,
                     self.table, self.export_button, self.spectrum_check):
            (layout.addLayout if isinstance(item, QHBoxLayout | QFormLayout)
             else layout.addWidget)(item)

    def _connect(self) -> None:
        self.restore_button.clicked.connect(self.restore)
        self.stop_button.clicked.connect(self.stop)
        self.load_button.clicked.connect(self._load_model_dialog)
        self.files_button.clicked.connect(self._files_dialog)
        self.export_button.clicked.connect(self._export_dialog)
        self.input_combo.currentIndexChanged.connect(self._on_data_choice)
        self.gt_combo.currentIndexChanged.connect(self._on_data_choice)
        self.grid_check.toggled.connect(lambda on: self.view.arrange())
        self.uncertainty_check.toggled.connect(self.view.update_uncertainty)
        self.table.error_map_toggled.connect(self.view.set_error_map)
        self.spectrum_check.toggled.connect(self.view.toggle_spectrum)
        layers = self.viewer.layers.events
        hooks = [(REGISTRY.changed, self._refresh_methods),
                 (layers.inserted, self._refresh_layer_choices),
                 (layers.removed, self._refresh_layer_choices),
                 (self.viewer.dims.events.current_step, self._on_frame),
                 (self.viewer.dims.events.range, self.fit_frame_range),
                 (self.viewer.canvas.grid.events.enabled, self._on_grid_changed)]
        for signal, slot in hooks:
            signal.connect(slot)
        me = weakref.ref(self)

        def disconnect(*_) -> None:  # the C++ widget is gone: drop our callbacks
            self_ = me()
            for signal, slot in hooks:
                signal.disconnect(slot)
            if self_ is not None:
                self_._stop.set()
            process.close()

        process = self._process
        self.destroyed.connect(disconnect)

    def _on_frame(self, event=None) -> None:
        """Keep the frame slider inside the compared stacks, then relabel the panels."""
        n = self.view.n_frames() if self.results else 0
        axis = L.frame_axis(self.viewer)
        if n and axis is not None and self.viewer.dims.current_step[axis] >= n:
            self.viewer.dims.set_current_step(axis, n - 1)  # re-enters with a valid frame
            return
        self.view.on_frame()

    def fit_frame_range(self, event=None) -> None:
        """While the grid compares results, the frame slider spans the compared stacks only
        (napari spans every layer, hidden ones too); napari's own range comes back after."""
        axis = L.frame_axis(self.viewer)
        if axis is None:
            return
        dims, r = self.viewer.dims, self.viewer.dims.range[axis]
        n = self.view.n_frames() if self.results and self.viewer.canvas.grid.enabled else 0
        if n:
            last = r.start + (n - 1) * r.step
            if r.stop > last + 1e-9 * max(1.0, abs(r.step)):
                self._full_range = r
                dims.set_range(axis, (r.start, last, r.step))
        elif self._full_range is not None:
            full, self._full_range = self._full_range, None
            if r.stop < full.stop:
                dims.set_range(axis, tuple(full))

    def _on_grid_changed(self, event=None) -> None:
        """Follow napari's own grid button, so the checkbox tells the truth."""
        self.grid_check.blockSignals(True)
        self.grid_check.setChecked(self.viewer.canvas.grid.enabled)
        self.grid_check.blockSignals(False)
        self.view.arrange()

    # ------------------------------------------------------------------ choices

    def _refresh_layer_choices(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and L.role(layer) is not None:
            return  # our own result layers are never offered: nothing to refresh
        layers = L.image_layers(self.viewer)
        names = [lyr.name for lyr in layers]
        keep = (self.input_combo.currentText(), self.gt_combo.currentText())
        guess = matching_pair(layers)
        for combo, extra, kept, guessed in ((self.input_combo, [], keep[0], guess[0]),
                                            (self.gt_combo, [NONE_GT], keep[1], guess[1])):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(extra + names)
            if kept in extra + names:
                combo.setCurrentText(kept)
            else:
                combo.setCurrentText(guessed or (extra + names or [""])[0])
            combo.blockSignals(False)
        self._on_data_choice()

    def _refresh_methods(self) -> None:
        checked = {self.method_list.item(i).data(Qt.ItemDataRole.UserRole):
                   self.method_list.item(i).checkState() for i in range(self.method_list.count())}
        specs = {}
        for model in REGISTRY.models():
            try:
                spec = MethodSpec.for_model(model.model_dir, model.display_name)
            except (OSError, ValueError):  # deleted or damaged since it was added
                continue
            specs[spec.key] = spec
        specs.update({s.key: s for s in map(MethodSpec.for_baseline, ("tv", "nlm"))})
        self._specs = specs
        self.method_list.clear()
        for key, spec in sorted(specs.items(), key=lambda kv: kv[1].rank):
            item = QListWidgetItem(spec.name)
            item.setToolTip(spec.model_dir or f"classical baseline: {spec.name}")
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(checked.get(key, Qt.CheckState.Checked))
            self.method_list.addItem(item)

    def set_input(self, name: str) -> None:
        self.input_combo.setCurrentText(name)

    def set_ground_truth(self, name: str | None) -> None:
        self.gt_combo.setCurrentText(name or NONE_GT)

    def set_checked_methods(self, names: list[str]) -> None:
        """Tick exactly the methods with these display names."""
        for i in range(self.method_list.count()):
            item = self.method_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names
                               else Qt.CheckState.Unchecked)

    def checked_specs(self) -> list[MethodSpec]:
        items = [self.method_list.item(i) for i in range(self.method_list.count())]
        return [self._specs[it.data(Qt.ItemDataRole.UserRole)] for it in items
                if it.checkState() == Qt.CheckState.Checked]

    def input_layer(self):
        return L.find(self.viewer, self.input_combo.currentText())

    def gt_layer(self):
        name = self.gt_combo.currentText()
        return None if name == NONE_GT else L.find(self.viewer, name)

    def data_problem(self) -> str | None:
        """Why the chosen input / ground truth cannot be compared (or ``None``)."""
        inp, gt = self.input_layer(), self.gt_layer()
        if inp is None:
            return "Add or pick an input (low) image layer."
        problem = image_problem(inp)
        if problem is None and gt is not None:
            problem = partner_problem(inp, gt)
            if problem is not None:
                problem = f"ground truth {gt.name!r} does not fit input {inp.name!r}: {problem}"
        return problem

    def _on_data_choice(self, *_) -> None:
        problem = self.data_problem()
        if problem is not None:
            self._say(problem, error=True)
        elif self.status.styleSheet():
            self._say("")
        has_gt = self.gt_layer() is not None
        item = self.strength_combo.model().item(1)
        item.setEnabled(has_gt)
        if not has_gt:
            self.strength_combo.setCurrentIndex(0)
        if hasattr(self, "view"):
            self.view.on_data_changed()
            if not self.is_running:
                self.rescore()

    # ------------------------------------------------------------------ models

    def load_model(self, path: str) -> MethodSpec | None:
        """Add a model folder to the session registry (and so to the method list); a
        bioimage.io package is unpacked first, in the restore process (returns None then)."""
        if is_package(path):
            self._say(f"unpacking {Path(path).name} …")
            self._unpack = unpack_package(self._process, path, self.load_model,
                                          lambda e: self._say(f"could not load {path}: {e}",
                                                              error=True))
            return None
        try:
            model = REGISTRY.add(path)
            spec = MethodSpec.for_model(model.model_dir, model.display_name)
        except (OSError, ValueError) as exc:
            self._say(f"could not load model {path}: {exc}", error=True)
            return None
        same = model.model_dir.resolve() != Path(path).resolve()
        self._say(f"{Path(path).name} is the model listed as {model.display_name!r}" if same
                  else f"loaded {model.display_name} ({model.name})")
        return spec

    def _load_model_dialog(self) -> None:
        path = ask_model_path(self)
        if path:
            self.load_model(path)

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics", "metrics.csv",
                                              "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path) -> None:
        self.table.export_csv(path)
        self._say(f"metrics written to {path}")

    # ------------------------------------------------------------------ running

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def ground_truth_frames(self) -> np.ndarray | None:
        gt = self.gt_layer()
        return as_frames(np.asarray(gt.data)) if gt is not None else None

    def input_frames(self) -> np.ndarray | None:
        layer = self.input_layer()
        return as_frames(np.asarray(layer.data)) if layer is not None else None

    def scores(self, name: str) -> list[Score | None]:
        """Cached per-frame scores of a table row (``None`` where not computed)."""
        return self.view.cached_scores(name)

    def message(self) -> str:
        """What the dock says now: the status text, else the progress bar's."""
        return self.status.text() or self.progress.text()

    def _say(self, text: str, error: bool = False) -> None:
        style = "color: #e0605a;" if error else ""
        if self.status.styleSheet() != style:  # restyling re-polishes and re-lays out
            self.status.setStyleSheet(style)
        if self.status.text() != text:
            self.status.setText(text)


class _ProgressBar(QProgressBar):
    """A progress bar whose ``setValue`` schedules its repaint with the window's next one.

    QProgressBar repaints at once when its text changes, and with software OpenGL each
    repaint recomposites the whole napari window; a scheduled repaint is merged with the
    others of the same event-loop pass."""

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt API
        self.setUpdatesEnabled(False)
        super().setValue(value)
        self.setUpdatesEnabled(True)  # schedules update()

