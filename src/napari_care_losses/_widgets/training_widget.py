"""Training dock (issue #3): pick low/high layers and losses, train, watch the curves.

Layers become arrays and settings a :class:`TrainConfig` here, at the edge; the background
job (:func:`..training.jobs.run_jobs`, in a child process: :mod:`..workers.training_runs`) sees
neither widgets nor layers. Finished and loaded models go to the shared :data:`REGISTRY`.
"""

from __future__ import annotations

import time
import warnings
import weakref
from typing import TYPE_CHECKING

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error
from napari.utils.theme import get_theme
from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..training.jobs import JobEvent, Preparing, PreviewReady
from ..training.trainer import BatchEnd, EpochEnd, Failed, Finished, Started, StopFlag
from ..workers.training_runs import run_jobs_in_process
from ._layers import (
    LayerPicker,
    image_problem,
    layer_array,
    pair_problem,
    partner_problem,
)
from ._training_form import TrainingForm
from ._training_preview import PREVIEW_LAYER, TrainingPreview
from .loss_plot import LossPlot
from .model_list import ModelList
from .model_registry import REGISTRY, models_folder, remember_models_folder

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_LAYER", "TrainingWidget"]


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class _ActiveRun:
    """Stop flag and worker of the running job; no reference to the widget, so the close
    hooks can use it even while the widget is being destroyed."""

    def __init__(self) -> None:
        self.stop: StopFlag | None = None
        self.worker = None

    def halt(self, *_args) -> None:
        """Stop after the current batch; the worker keeps reading until the training
        process has saved its model and exited."""
        if self.stop is not None:
            self.stop.set()

    def finish(self, *_args) -> None:
        """The worker is done (also connected on its own: it runs even if the widget is gone)."""
        self.worker = None


class TrainingWidget(QWidget):
    """Dock widget: data, losses and settings → Train/Stop → live curves → model list."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.low_picker = LayerPicker(napari_viewer, prefer="low", fallback=0,
                                      rule=image_problem)
        self.high_picker = LayerPicker(napari_viewer, prefer="high", fallback=1,
                                       rule=lambda lay: partner_problem(
                                           self.low_picker.layer(), lay))
        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        self.form = TrainingForm()
        self.form.outdir.setText(str(models_folder()))  # the folder chosen last
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("train one model per selected loss, in turn")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("end after the current batch; the best model is kept")
        self.stop_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        self.eta_label = QLabel(" ")
        self.status_label = QLabel("Pick the data and the losses, then Train.")
        self.status_label.setWordWrap(True)
        self.plot = LossPlot()
        self.models = ModelList()
        self.last_error: str | None = None
        self._active = _ActiveRun()
        self._preview = TrainingPreview(napari_viewer, self.low_picker.layer)
        self._jobs: list[tuple[int, int]] = []  # (first global step, steps) per job
        self._t0: float | None = None
        self._done0 = 0
        self._build_layout()
        self._connect()
        self._apply_theme()
        self._validate()
        REGISTRY.load_folder(self.form.output_dir())  # models trained in earlier sessions

    # ------------------------------------------------------------------ layout

    def _build_layout(self) -> None:
        data = QGroupBox("Data")
        form = QFormLayout(data)
        form.addRow("Low exposure", self.low_picker)
        form.addRow("High exposure", self.high_picker)
        form.addRow(self.data_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button, 2)
        buttons.addWidget(self.stop_button, 1)
        run = QGroupBox("Progress")
        lay = QVBoxLayout(run)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.eta_label)
        lay.addWidget(self.status_label)
        lay.addWidget(self.plot, 1)
        content = QWidget()
        col = QVBoxLayout(content)
        col.setContentsMargins(4, 4, 4, 4)
        for widget in (data, self.form, run, self.models):
            col.addWidget(widget)
        col.addStretch(0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        self._scroll = scroll
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        """As wide as the content (it scrolls vertically only), once styles are applied."""
        hint = super().minimumSizeHint()
        content = self._scroll.widget().minimumSizeHint().width()
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        return QSize(max(hint.width(), content + bar, 400), hint.height())

    def _connect(self) -> None:
        self.low_picker.layer_changed.connect(self.high_picker.refresh)
        self.low_picker.layer_changed.connect(self._validate)
        self.high_picker.layer_changed.connect(self._validate)
        self.form.changed.connect(self._validate)
        self.train_button.clicked.connect(self.start_training)
        self.stop_button.clicked.connect(self.stop_training)
        self.viewer.events.theme.connect(self._apply_theme)
        self.viewer.dims.events.current_step.connect(self._preview.follow_frame)
        self.destroyed.connect(self._active.halt)  # bound to _ActiveRun, not to self
        self._watched_window: QObject | None = None

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        """Once docked, watch napari's main window: closing it stops a running job."""
        window = self.window()
        if window is not self and window is not self._watched_window:
            window.installEventFilter(self)
            self._watched_window = window
        super().showEvent(event)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Close:  # napari may still ask "close?" and be cancelled:
            window = weakref.ref(obj)  # decide once the close has happened (or not)
            QTimer.singleShot(0, lambda: self._halt_if_closed(window()))
        return False

    def _halt_if_closed(self, window) -> None:
        if window is None or not window.isVisible():
            self._active.halt()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop a running job after its current batch (its model is saved)."""
        self._active.halt()

    # ------------------------------------------------------------------ state

    @property
    def is_running(self) -> bool:
        return self._active.worker is not None

    def _theme(self):
        with warnings.catch_warnings():  # "system" theme detection warns under Qt5
            warnings.simplefilter("ignore")
            return get_theme(self.viewer.theme)

    def _apply_theme(self, *_args) -> None:
        self.plot.set_theme(self._theme())
        self._validate()

    def _validate(self, *_args) -> bool:
        """Check layers and settings; explain problems in the data label; gate Train."""
        low, high = self.low_picker.layer(), self.high_picker.layer()
        problem = pair_problem(low, high, int(self.form.patch_size.currentText()))
        configs = []
        if problem is None:
            try:
                configs = self.form.configs()
            except ValueError as exc:
                problem = str(exc)
        if problem is None:
            n, (h, w) = (low.data.shape[0] if low.ndim == 3 else 1), low.data.shape[-2:]
            total = n * configs[0].patches_per_image
            n_val = max(1, round(total * configs[0].val_fraction))
            self.data_label.setText(f"{n} frame{'s' * (n > 1)} of {h}×{w} px → {total} "
                                    f"patches ({total - n_val} train, {n_val} validation)")
            self.data_label.setStyleSheet("")
        else:
            self.data_label.setText(f"⚠ {problem}")
            self.data_label.setStyleSheet(f"color: {self._theme().warning.as_hex()}")
        self.train_button.setEnabled(problem is None and not self.is_running)
        return problem is None

    def _set_running(self, running: bool) -> None:
        for widget in (self.form, self.low_picker, self.high_picker):
            widget.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self._validate()

    # ------------------------------------------------------------------ run

    def start_training(self) -> bool:
        """Start training the selected losses in a worker thread; False if not possible."""
        if self.is_running or not self._validate():
            return False
        low_layer, high_layer = self.low_picker.layer(), self.high_picker.layer()
        try:
            low, high = layer_array(low_layer), layer_array(high_layer)
            configs = self.form.configs()
        except ValueError as exc:
            show_error(str(exc))
            return False
        stop = StopFlag()
        preview = self._preview.start(low_layer, low.shape[-2:], self.form.preview_every_n())
        steps = [c.epochs * c.steps_per_epoch for c in configs]
        self._jobs = [(sum(steps[:i]), s) for i, s in enumerate(steps)]
        self._t0, self._done0, self.last_error = None, 0, None
        self.plot.clear()
        self.progress.setRange(0, sum(steps))
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.eta_label.setText(" ")
        self.status_label.setText("Starting the training process…")
        remember_models_folder(self.form.output_dir())
        worker = thread_worker(run_jobs_in_process, start_thread=False)(
            low, high, (low_layer.name, high_layer.name), configs, self.form.output_dir(),
            stop, preview)
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_crash)
        # the dock's end first, clearing the worker itself: each connection is a queued call
        # of its own, and between two of them the dock would read "not running" while its
        # Train button was still off; _active.finish also runs if the dock is gone
        worker.finished.connect(self._on_done)
        worker.finished.connect(self._active.finish)
        worker.aborted.connect(stop.set)
        self._active.stop, self._active.worker = stop, worker
        self._set_running(True)
        self._scroll.ensureWidgetVisible(self.plot)
        worker.start()
        return True

    def stop_training(self) -> None:
        """Ask the run to end after the current batch (the best weights are kept)."""
        if self._active.stop is not None:
            self._active.stop.set()
            self.stop_button.setEnabled(False)
            self.status_label.setText("Stopping after the current batch…")

    def _on_event(self, item: JobEvent) -> None:
        ev, key = item.event, f"{item.job}:{item.label}"
        name = f"{item.label} ({item.job + 1}/{item.n_jobs})" if item.n_jobs > 1 else item.label
        if isinstance(ev, Preparing):
            self.status_label.setText(f"{name}: {ev.message}")
        elif isinstance(ev, Started):
            self.plot.add_series(key, item.label)
            self.status_label.setText(f"{name}: training on {ev.n_train} patches "
                                      f"({ev.n_val} for validation) → {ev.model_dir.name}")
        elif isinstance(ev, BatchEnd):
            self._on_batch(item, ev, name, key)
        elif isinstance(ev, EpochEnd):
            self.plot.add_epoch(key, ev.epoch, ev.loss, ev.val_loss)
            self.status_label.setText(f"{name}: epoch {ev.epoch}/{ev.epochs} loss "
                                      f"{ev.loss:.4g}, validation {ev.val_loss:.4g} "
                                      f"({ev.seconds:.1f} s)")
        elif isinstance(ev, PreviewReady):
            if ev.image is None:
                self.eta_label.setText(ev.error)
            else:
                self.status_label.setText(self._preview.show(ev, item.label))
        elif isinstance(ev, Finished):
            model = REGISTRY.add(ev.model_dir)
            self.models.select(model.model_dir)
            how = f"stopped after {ev.epochs_done} epochs" if ev.stopped else "finished"
            self.status_label.setText(f"{name} {how}; best validation loss "
                                      f"{ev.best_val_loss:.4g}. Saved in {ev.model_dir}")
        elif isinstance(ev, Failed):
            self.last_error = ev.error
            self.status_label.setText(f"⚠ {ev.error}")
            show_error(ev.error)

    def _on_batch(self, item: JobEvent, ev: BatchEnd, name: str, key: str) -> None:
        first, _steps = self._jobs[item.job]
        done = first + ev.epoch * ev.steps_per_epoch + ev.step
        self.plot.add_batch(key, ev.epoch + ev.step / ev.steps_per_epoch, ev.loss)
        self.progress.setValue(done)
        epochs = (_steps // ev.steps_per_epoch) if ev.steps_per_epoch else 0
        self.progress.setFormat(f"{name} · epoch {ev.epoch + 1}/{epochs} · %p%")
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._done0 = now, done
        elif done > self._done0:
            left = (now - self._t0) / (done - self._done0) * (self.progress.maximum() - done)
            self.eta_label.setText(f"step {ev.step}/{ev.steps_per_epoch} · about "
                                   f"{_duration(left)} left")

    def _on_crash(self, exc: Exception) -> None:
        # napari's worker already reports the exception as a notification
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.status_label.setText(f"⚠ Training stopped by an unexpected error: {exc}")

    def _on_done(self) -> None:
        self._active.finish()
        stopped = self._active.stop is not None and self._active.stop.is_set()
        self._active.stop = None
        self._set_running(False)
        elapsed = f" in {_duration(time.perf_counter() - self._t0)}" if self._t0 else ""
        outcome = "failed" if self.last_error else "stopped" if stopped else "done"
        self.progress.setFormat(f"{outcome} · %p%")
        self.eta_label.setText(f"{outcome.capitalize()}{elapsed}.")
