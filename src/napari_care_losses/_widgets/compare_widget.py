"""Compare dock (issue #4): restorations side by side in grid mode, PSNR/SSIM on each panel.

Pick an input (low) layer, an optional ground truth (high) layer, trained models from the
session registry and the classical baselines; *Restore* runs each method in a
``thread_worker`` frame by frame. *Stop* is checked between frames: methods that finished
are kept, the method in progress is discarded, the remaining ones are not run.
"""

from __future__ import annotations

import threading
import weakref

import napari
import numpy as np
from napari.qt.threading import create_worker
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

from ..metrics import Score
from . import _compare_layers as L
from ._compare_jobs import (
    STRENGTH_CALIBRATE,
    STRENGTH_DEFAULT,
    MethodResult,
    MethodSpec,
    Progress,
    as_frames,
    baseline_spec,
    model_spec,
    run_method,
    score_many,
)
from ._compare_view import CompareView
from ._metrics_table import MetricsTable
from .model_registry import REGISTRY

NONE_GT = "none"


class CompareWidget(QWidget):
    """Dock widget: restore with several methods and compare them panel by panel."""

    #: Emitted when a restore run (or a re-scoring) has ended, finished or stopped.
    run_finished = Signal()

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.results: dict[str, MethodResult] = {}
        self._stop = threading.Event()
        self._queue: list[MethodSpec] = []
        self._worker = None
        self._run: dict = {}
        self._specs: dict[str, MethodSpec] = {}
        self._build_ui()
        self.view = CompareView(self)
        self._connect()
        self._refresh_layer_choices()
        self._refresh_methods()

    # ------------------------------------------------------------------ UI

    def _build_ui(self) -> None:
        self.input_combo, self.gt_combo = QComboBox(), QComboBox()
        self.method_list = QListWidget()
        self.method_list.setMaximumHeight(130)
        self.load_button = QPushButton("Load model…")
        self.strength_combo = QComboBox()
        self.strength_combo.addItems([STRENGTH_DEFAULT, STRENGTH_CALIBRATE])
        self.restore_button, self.stop_button = QPushButton("Restore"), QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m frames")
        self.status = QLabel("")
        self.status.setWordWrap(True)
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
        box.addWidget(self.load_button)
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

        self.destroyed.connect(disconnect)

    def _on_grid_changed(self, event=None) -> None:
        """Follow napari's own grid button, so the checkbox tells the truth."""
        self.grid_check.blockSignals(True)
        self.grid_check.setChecked(self.viewer.canvas.grid.enabled)
        self.grid_check.blockSignals(False)
        self.view.update_overlays()

    # ------------------------------------------------------------------ choices

    def _refresh_layer_choices(self, event=None) -> None:
        names = [lyr.name for lyr in L.image_layers(self.viewer)]
        for combo, extra in ((self.input_combo, []), (self.gt_combo, [NONE_GT])):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(extra + names)
            if current in extra + names:
                combo.setCurrentText(current)
            else:  # guess: "...low..." as input, "...high..."/"gt" as ground truth
                keys = ("low",) if combo is self.input_combo else ("high", "gt", "truth")
                guess = next((n for n in names if any(k in n.lower() for k in keys)), None)
                combo.setCurrentText(guess or (extra + names or [""])[0])
            combo.blockSignals(False)
        self._on_data_choice()

    def _refresh_methods(self) -> None:
        checked = {self.method_list.item(i).data(Qt.ItemDataRole.UserRole):
                   self.method_list.item(i).checkState() for i in range(self.method_list.count())}
        specs = {str(m.model_dir.resolve()): model_spec(m) for m in REGISTRY.models()}
        specs.update({f"baseline:{b}": baseline_spec(b) for b in ("tv", "nlm")})
        self._specs = specs
        self.method_list.clear()
        for key, spec in sorted(specs.items(), key=lambda kv: kv[1].rank):
            item = QListWidgetItem(spec.name)
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

    def _on_data_choice(self, *_) -> None:
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
        """Add a model folder to the session registry (and so to the method list)."""
        try:
            model = REGISTRY.add(path)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._say(f"could not load model {path}: {exc}", error=True)
            return None
        self._say(f"loaded {model.name}")
        return model_spec(model)

    def _load_model_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder")
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

    def restore(self) -> None:
        """Run every ticked method on the input stack, one after the other."""
        if self.is_running:
            return
        low, specs = self.input_frames(), self.checked_specs()
        if low is None or not specs:
            self._say("pick an input layer and at least one method", error=True)
            return
        gt = self.ground_truth_frames()
        if gt is not None and gt.shape != low.shape:
            self._say(f"ground truth {self.gt_combo.currentText()!r} {gt.shape} and input "
                      f"{self.input_combo.currentText()!r} {low.shape} differ in shape",
                      error=True)
            return
        calibrate = gt is not None and self.strength_combo.currentText() == STRENGTH_CALIBRATE
        self._run = {"low": low, "gt": gt, "gt_layer": self.gt_layer(), "done": [],
                     "cal": L.current_frame(self.viewer, len(low)) if calibrate else None,
                     "index": -1, "total": len(specs)}
        self._queue = sorted(specs, key=lambda s: s.rank)
        self._stop.clear()
        self.progress.setRange(0, len(specs) * len(low))
        self.progress.setValue(0)
        self._set_running(True)
        self._next_job()

    def stop(self) -> None:
        """Stop after the current frame; finished methods stay, the current one is dropped."""
        self._stop.set()
        self._queue.clear()

    def _set_running(self, running: bool) -> None:
        self.restore_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _next_job(self) -> None:
        if self._stop.is_set() or not self._queue:
            return self._end_run()
        spec = self._queue.pop(0)
        self._run["index"] += 1
        self._run["spec"] = spec
        cal = self._run["cal"] if spec.baseline else None
        self._start(run_method, spec, self._run["low"], self._run["gt"], self._stop, cal,
                    yielded=self._on_progress, returned=self._on_method_done,
                    finished=self._next_job)

    def _start(self, fn, *args, **connect) -> None:
        worker = create_worker(fn, *args, _ignore_errors=True)
        for name, slot in connect.items():
            getattr(worker, name).connect(slot)
        worker.errored.connect(self._on_error)
        self._worker = worker
        worker.start()

    def _on_progress(self, p: Progress) -> None:
        self.progress.setValue(self._run["index"] * p.total + p.done)
        self._say(p.message or f"{p.name}: frame {p.done}/{p.total} "
                  f"(method {self._run['index'] + 1} of {self._run['total']})")

    def _on_method_done(self, result: MethodResult | None) -> None:
        if result is None:  # stopped mid-way: discard the partial stack
            self._run["discarded"] = self._run["spec"].name
            return
        if self._run.get("gt_layer") is not self.gt_layer():
            result.scores = None  # ground truth changed meanwhile: rescore later
        self.results[result.spec.name] = result
        self._run["done"].append(result.spec.name)
        self.view.show_result(result)

    def _on_error(self, exc: Exception) -> None:
        self._stop.set()
        self._queue.clear()
        self._say(f"{self._run.get('spec', MethodSpec('scoring')).name} failed: {exc}",
                  error=True)

    def _end_run(self) -> None:
        self._worker = None
        self._set_running(False)
        if self._run:
            done, dropped = self._run["done"], self._run.get("discarded")
            if self._stop.is_set() and dropped:
                self._say(f"stopped: kept {len(done)} finished method(s), discarded the "
                          f"partial {dropped}")
            elif not self._stop.is_set():
                self._say(f"restored with {len(done)} method(s)")
                self.progress.setValue(self.progress.maximum())
        self._run = {}
        self._stop.clear()
        if not self.rescore():
            self.run_finished.emit()

    def rescore(self) -> bool:
        """Score, in a worker, every row whose per-frame scores are not all cached."""
        gt = self.ground_truth_frames()
        todo = self.view.unscored(gt) if self.results else {}
        if gt is None or not todo or self.is_running:
            return False

        def done() -> None:
            self._worker = None
            self._set_running(False)
            self.view.refresh_table()
            if not self._stop.is_set():
                self._say(f"{previous} · scored against {self.gt_combo.currentText()!r}"
                          if previous else f"scored against {self.gt_combo.currentText()!r}")
            self.run_finished.emit()

        previous = self.status.text() if not self.status.styleSheet() else ""
        self._run = {}
        self._stop.clear()
        self._set_running(True)
        self._say("scoring against the ground truth…")
        self._start(score_many, todo, gt, self._stop,
                    yielded=lambda item: self.view.store_scores(*item), finished=done)
        return True

    def scores(self, name: str) -> list[Score | None]:
        """Cached per-frame scores of a table row (``None`` where not computed)."""
        return self.view.cached_scores(name)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e0605a;" if error else "")
