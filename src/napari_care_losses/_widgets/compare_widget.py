"""Compare dock: restorations side by side in grid mode, PSNR/SSIM on each panel.

Pick an input (low) layer, an optional ground truth (high) layer, trained models from the
session registry and the classical baselines; *Restore* runs the core's restore-and-score
engine in a warm child process (:class:`..workers.restore_runs.RestoreProcess`: TensorFlow never
loads in napari's process) and shows each method as it finishes. *Stop* is checked between
frames: methods that finished are kept, the method in progress is discarded, the remaining
ones are not run. A child that dies is reported and the next Restore starts a new one.
"""

from __future__ import annotations

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
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..restore.compare_session import CompareSession, Source
from ..restore.engine import MethodResult, MethodSpec
from ..restore.metrics import Score
from ..workers.restore_runs import RestoreProcess
from . import _compare_layers as L
from ._compare_jobs import STRENGTH_CALIBRATE, STRENGTH_DEFAULT, as_frames
from ._compare_pickers import (
    NONE_GT,
    ProgressBar,
    fill_layer_combos,
    fill_method_list,
    method_specs,
)
from ._compare_runs import FRAMES_FORMAT, RunControl
from ._compare_view import CompareView
from ._layers import image_problem, partner_problem
from ._metrics_table import MetricsTable
from .model_list import ask_model_path, is_package, unpack_package
from .model_registry import REGISTRY


class CompareWidget(QWidget):
    """Dock widget: restore with several methods and compare them panel by panel.

    Its state is a :class:`..restore.compare_session.CompareSession` (runs, results,
    scores, failures); :class:`._compare_runs.RunControl` feeds it, and the layers, table,
    overlays, spectra and status line (:class:`._compare_view.CompareView`) follow it."""

    #: Emitted when a restore run (or a re-scoring) has ended, finished or stopped.
    run_finished = Signal()

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._specs: dict[str, MethodSpec] = {}
        self._process = RestoreProcess()  # started on the first Restore, then kept warm
        self.session = CompareSession()
        self._build_ui()
        self.control = RunControl(self, self.session, self._process)
        self.view = CompareView(self, self.session)
        self.session.status_changed.connect(self._show_status)
        self._connect()
        REGISTRY.load_folder()  # finished models of earlier sessions
        self._refresh_layer_choices()
        self._refresh_methods()

    # ------------------------------------------------------------------ UI

    def _build_ui(self) -> None:
        self.input_combo, self.gt_combo = QComboBox(), QComboBox()
        for combo in (self.input_combo, self.gt_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.method_list = QListWidget()
        self.method_list.setMaximumHeight(130)
        self.method_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # full name: tooltip
        self.method_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.load_button = QPushButton("Load model…")
        self.files_button = QPushButton("Restore files…")
        self.files_button.setToolTip("restore TIFF files on disk (stacks too large to open) "
                                     "with the ticked methods; writes <file>_<method>.tif")
        self.strength_combo = QComboBox()
        self.strength_combo.addItems([STRENGTH_DEFAULT, STRENGTH_CALIBRATE])
        self.strength_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.restore_button, self.stop_button = QPushButton("Restore"), QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress = ProgressBar()
        self.progress.setFormat(FRAMES_FORMAT)
        self.status = QLabel("")
        self.status.setWordWrap(True)  # the whole message, never cut off
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hidden_label = QLabel("")  # which layers the grid hides
        self.hidden_label.setWordWrap(True)
        self.hidden_label.setVisible(False)
        self.grid_check = QCheckBox("Grid view")
        self.grid_check.setChecked(True)
        self.uncertainty_check = QCheckBox("Uncertainty (Laplace)")
        self.uncertainty_check.setToolTip("show the per-pixel Laplace scale (uncertainty) of "
                                          "each Laplace model as its own panel")
        self.table = MetricsTable()
        self.export_button = QPushButton("Export CSV…")
        self.spectrum_check = QCheckBox("Power spectrum")
        self.spectrum_check.setToolTip("radially averaged power spectra of the current frame")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Input (low)", self.input_combo)
        form.addRow("Ground truth", self.gt_combo)
        form.addRow("Baselines", self.strength_combo)
        self.strength_combo.setToolTip("strength of the classical baselines (TV, NL-means)")
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
        for check in (self.grid_check, self.uncertainty_check, self.spectrum_check):
            view_row.addWidget(check)
        view_row.addStretch(1)
        # the dock scrolls instead of squeezing the docks beside it (or cutting its labels)
        inner = QWidget()
        self._content = QVBoxLayout(inner)
        for item in (form, models, run_row, self.progress, self.status, view_row,
                     self.hidden_label, self.table, self.export_button):
            (self._content.addLayout if isinstance(item, QHBoxLayout | QFormLayout)
             else self._content.addWidget)(item)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

    def add_panel(self, widget: QWidget) -> None:
        """Add a widget (e.g. the spectrum plot) at the end of the dock's scrolled content."""
        self._content.addWidget(widget)

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
                 (self.viewer.dims.events.current_step, self.view.on_frame),
                 (self.viewer.dims.events.range, self.view.fit_frame_range),
                 (self.viewer.canvas.grid.events.enabled, self._on_grid_changed),
                 (self.viewer.canvas.events.size, self.view.on_canvas_size)]
        for signal, slot in hooks:
            signal.connect(slot)
        me = weakref.ref(self)

        def disconnect(*_) -> None:  # the C++ widget is gone: drop our callbacks
            self_ = me()
            for signal, slot in hooks:
                signal.disconnect(slot)
            if self_ is not None:
                self_.control.stop()
            process.close()

        process = self._process
        self.destroyed.connect(disconnect)

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
        fill_layer_combos(self.viewer, self.input_combo, self.gt_combo)
        self._on_data_choice()

    def _refresh_methods(self) -> None:
        self._specs = method_specs()
        fill_method_list(self.method_list, self._specs)

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
        self.session.set_problem(self.data_problem())
        has_gt = self.gt_layer() is not None
        item = self.strength_combo.model().item(1)
        item.setEnabled(has_gt)
        if not has_gt:
            self.strength_combo.setCurrentIndex(0)
        if hasattr(self, "view"):
            self.session.set_context(_source(self.input_layer()), _source(self.gt_layer()))
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
        return self.control.is_running

    @property
    def results(self) -> dict[str, MethodResult]:
        """The current run's finished methods (name → result), in panel order."""
        return {e.name: e.result for e in self.session.results()}

    def restore(self) -> None:
        """Run every ticked method on the input stack, in a child process: a new run that
        replaces the last one's panels, rows, overlays and spectra."""
        if self.is_running:
            return
        problem = self.data_problem()
        specs = self.checked_specs()
        if problem is None and not specs:
            problem = "tick at least one method"
        if problem is not None:
            self.session.note(problem, error=True)
            return
        low, gt = self.input_frames(), self.ground_truth_frames()
        strength = self.strength_combo.currentText()
        calibrate = gt is not None and strength == STRENGTH_CALIBRATE
        frame = L.current_frame(self.viewer, len(low)) if calibrate else None
        settings = {"baseline strength": strength} | (
            {"calibration frame": frame} if calibrate else {})
        self.control.restore(specs, low, gt, frame, settings)

    def stop(self) -> None:
        """Stop after the current frame; finished methods stay, the current one is dropped."""
        self.control.stop()

    def rescore(self) -> bool:
        """Score this run's results against the picked ground truth, where it fits."""
        return self.control.rescore()

    def _files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "TIFF files to restore", "",
                                                "TIFF (*.tif *.tiff)")
        if not files:
            return
        outdir = QFileDialog.getExistingDirectory(self, "Folder for the restored files")
        if outdir:
            self.restore_files(files, outdir)

    def restore_files(self, paths: list, outdir: str) -> None:
        """Restore TIFF files (or folders of them) on disk with the ticked methods, in the
        restore process; one distinct file per (file, method), none overwritten."""
        specs = sorted(self.checked_specs(), key=lambda s: s.rank)
        if not specs:
            self.session.note("tick at least one method", error=True)
        elif not self.is_running:
            self.control.restore_files(specs, paths, outdir)

    def set_running(self, running: bool) -> None:
        self.restore_button.setEnabled(not running)
        self.files_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def notify_error(self, text: str) -> None:
        """A napari notification (a worker crash is said beyond the dock too)."""
        from napari.utils.notifications import show_error

        show_error(text)

    def on_hidden_changed(self, names: list[str]) -> None:
        """Say which of the user's layers the grid hides (they come back without it)."""
        text = (f"Grid view shows the compared layers only; hidden: {', '.join(names)} "
                "(untick Grid view to see them)") if names else ""
        if self.hidden_label.text() != text:
            self.hidden_label.setText(text)
            self.hidden_label.setToolTip(text)
            self.hidden_label.setVisible(bool(names))

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
        self.session.note(text, error)

    def _show_status(self, text: str, error: bool) -> None:
        style = "color: #e0605a;" if error else ""
        if self.status.styleSheet() != style:  # restyling re-polishes and re-lays out
            self.status.setStyleSheet(style)
        if self.status.text() != text:
            self.status.setText(text)


def _source(layer) -> Source | None:
    """A layer as the session knows it: its name and its ``(T, Y, X)`` shape."""
    if layer is None:
        return None
    shape = tuple(layer.data.shape)
    return Source(layer.name, (1, *shape) if len(shape) == 2 else shape)
