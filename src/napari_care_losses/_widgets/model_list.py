"""The "Models" box of the training dock: the shared registry, load, open and copy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QUrl
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..models.folder import FINISHED
from ..restore.predict import RestorationModel
from .model_registry import REGISTRY

_STAMP = re.compile(r"_(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})(?:_\d+)?$")


def model_title(model: RestorationModel) -> str:
    """'FFT · 11-25 14:03' from the folder's time stamp, plus how the run ended."""
    match = _STAMP.search(model.name)
    when = (f"{match[2]}-{match[3]} {match[4]}:{match[5]}:{match[6]}" if match
            else model.name)
    status, best = model.folder.status, model.folder.best_val_loss
    extra = f" · val {best:.4g}" if best is not None else ""
    if status in ("stopped", "training", "failed"):
        extra += f" ({status})"
    return f"{model.label} · {when}{extra}"


def model_tooltip(model: RestorationModel) -> str:
    """Loss, settings and data of a model, one per line."""
    cfg = model.config
    params = ", ".join(f"{k}={v:g}" for k, v in cfg.loss.params.items())
    epochs = len(model.folder.history.get("loss", [])) or "?"
    data = model.folder.data_info
    lines = [
        f"{model.label} loss" + (f" ({params})" if params else ""),
        f"folder: {model.model_dir}",
        f"status: {model.folder.status or '?'}, epochs done: {epochs}/{cfg.epochs}",
        f"patch {cfg.patch_size} px × {cfg.patches_per_image}/frame, batch {cfg.batch_size}, "
        f"lr {cfg.learning_rate:g}, {cfg.steps_per_epoch} steps/epoch, seed {cfg.seed}",
        f"U-Net depth {cfg.unet_n_depth}, {cfg.unet_n_first} first filters, "
        f"kernel {cfg.unet_kern_size}",
    ]
    if "low" in data:
        lines.append(f"data: {data['low']} → {data.get('high', '?')}")
    if "n_train" in data:
        lines.append(f"patches: {data['n_train']} train, {data.get('n_val', '?')} validation")
    return "\n".join(lines)


#: Files that stand for a model: a model folder's metadata, or a bioimage.io package.
MODEL_FILES = "Model (care_losses.json config.json rdf.yaml *.zip)"


def ask_model_path(parent: QWidget) -> str | None:
    """Ask for a model: a file inside a model folder (its folder is the model) or a
    bioimage.io package (``.zip``) exported by this plugin."""
    path, _ = QFileDialog.getOpenFileName(parent, "Load a model: a model folder's "
                                          "care_losses.json, or a bioimage.io .zip", "",
                                          MODEL_FILES)
    if not path:
        return None
    return path if path.lower().endswith(".zip") else str(Path(path).parent)


def is_package(path: str | Path) -> bool:
    """A bioimage.io package (``.zip`` or unpacked folder), not a model folder."""
    p = Path(path)
    return p.suffix.lower() == ".zip" or ((p / "rdf.yaml").is_file()
                                          and not (p / "care_losses.json").is_file())


def unpack_package(process, path: str | Path, on_folder, on_error):
    """Unpack a package in ``process`` (a RestoreProcess: rebuilding the weights loads
    TensorFlow, which never runs in napari's process), then ``on_folder(model_folder)``
    or ``on_error(message)`` in the GUI thread. Returns the worker."""
    from napari.qt.threading import create_worker

    from ..workers.protocol import ModelResolved

    def report(event) -> None:
        if isinstance(event, ModelResolved):
            on_folder(event.folder)
        else:
            on_error(getattr(event, "error", str(event)))

    worker = create_worker(process.resolve_package, str(path), _ignore_errors=True)
    worker.yielded.connect(report)
    worker.errored.connect(lambda exc: on_error(str(exc)))
    worker.start()
    return worker


class ModelList(QGroupBox):
    """Lists every model in :data:`REGISTRY`; loads model folders from disk."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Models (shared with the compare dock)", parent)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SingleSelection)
        self.list.setMinimumHeight(72)
        self.load_button = QPushButton("Load model…")
        self.load_button.setToolTip("add a model folder trained earlier (CLI or this dock)")
        self.open_button = QPushButton("Open folder")
        self.open_button.setToolTip("show the selected model's folder in the file manager")
        self.copy_button = QPushButton("Copy to…")
        self.copy_button.setToolTip("copy the selected model folder somewhere else")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("write a bioimage.io model package (.zip) that other "
                                      "tools can run; checked with bioimage.io's own test")
        self._process = None  # a RestoreProcess, started on the first export
        self._export_worker = None
        buttons = QHBoxLayout()
        for b in (self.load_button, self.open_button, self.copy_button, self.export_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.load_button.clicked.connect(self._load_dialog)
        self.open_button.clicked.connect(self._open_folder)
        self.copy_button.clicked.connect(self._copy_dialog)
        self.export_button.clicked.connect(self._export_dialog)
        self.list.itemSelectionChanged.connect(self._sync_buttons)
        REGISTRY.changed.connect(self.refresh)
        self.refresh()

    def teardown(self) -> None:
        REGISTRY.changed.disconnect(self.refresh)
        if self._process is not None:
            self._process.close()

    def refresh(self) -> None:
        """Mirror the registry, keeping the selection."""
        try:
            keep = self.selected()
            self.list.clear()
        except RuntimeError:  # the Qt side is gone: stop listening
            REGISTRY.changed.disconnect(self.refresh)
            return
        for model in REGISTRY.models():
            item = QListWidgetItem(model_title(model))
            item.setToolTip(model_tooltip(model))
            item.setData(Qt.UserRole, str(model.model_dir.resolve()))
            self.list.addItem(item)
        if keep is not None:
            self.select(keep.model_dir)
        self._sync_buttons()

    def titles(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def select(self, model_dir: str | Path) -> None:
        key = str(Path(model_dir).resolve())
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.UserRole) == key:
                self.list.setCurrentRow(i)
                return

    def selected(self) -> RestorationModel | None:
        items = self.list.selectedItems()
        if not items:
            return None
        key = Path(items[0].data(Qt.UserRole))
        return next((m for m in REGISTRY.models() if m.model_dir.resolve() == key), None)

    def load_model_dir(self, path: str | Path) -> RestorationModel | None:
        """Add the model folder at ``path`` to the registry (errors become notifications);
        a bioimage.io package is unpacked first, in the background (returns None then)."""
        path = Path(path)
        if is_package(path):
            show_info(f"Unpacking {path.name} …")
            self._unpack = unpack_package(self._restore_process(), path, self.load_model_dir,
                                          lambda e: show_error(f"Could not load {path}: {e}"))
            return None
        try:
            model = RestorationModel(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            show_error(f"Could not load a model from {path}: {exc}")
            return None
        model = REGISTRY.add(model)
        self.select(model.model_dir)
        return model

    def _sync_buttons(self) -> None:
        has = bool(self.list.selectedItems())
        self.open_button.setEnabled(has)
        self.copy_button.setEnabled(has)
        self.export_button.setEnabled(has and self._export_worker is None)

    def _load_dialog(self) -> None:
        path = ask_model_path(self)
        if path:
            self.load_model_dir(path)

    def _open_folder(self) -> None:
        if (model := self.selected()) is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(model.model_dir)))

    def _restore_process(self):
        """The child process for exports and package imports (started when first needed)."""
        if self._process is None:
            from ..workers.restore_runs import RestoreProcess

            self._process = RestoreProcess()
        return self._process

    def _export_dialog(self) -> None:
        model = self.selected()
        if model is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, f"Export {model.name}",
                                              f"{model.name}.zip", "bioimage.io package (*.zip)")
        if path:
            self.export_model(model, path)

    def export_model(self, model: RestorationModel, path: str | Path):
        """Export in the restore child process (TensorFlow never loads in napari's); the
        result is a notification. Returns the worker."""
        from napari.qt.threading import create_worker

        from ..workers.protocol import PackageWritten

        force = model.folder.status != FINISHED  # a stopped model: the user chose it

        def report(event) -> None:
            if isinstance(event, PackageWritten):
                show_info(f"Exported {event.name} to {event.path} (bioimage.io test passed)")
            else:
                show_error(f"Could not export {model.name}: {getattr(event, 'error', event)}")

        def done() -> None:
            self._export_worker = None
            self._sync_buttons()

        worker = create_worker(self._restore_process().export, model.model_dir, path, force=force,
                               _ignore_errors=True)
        worker.yielded.connect(report)
        worker.errored.connect(lambda exc: show_error(f"Could not export: {exc}"))
        worker.finished.connect(done)
        self._export_worker = worker
        self._sync_buttons()
        show_info(f"Exporting {model.name} … (bioimage.io's model test runs first)")
        worker.start()
        return worker

    def _copy_dialog(self) -> None:
        model = self.selected()
        if model is None:
            return
        dest = QFileDialog.getExistingDirectory(self, f"Copy {model.name} into…")
        if dest:
            self.copy_model(model, dest)

    def copy_model(self, model: RestorationModel, dest: str | Path) -> Path | None:
        """Copy the model folder into ``dest``; returns the new folder."""
        target = Path(dest) / model.name
        try:
            if target.exists():
                raise FileExistsError(f"{target} already exists")
            shutil.copytree(model.model_dir, target)
        except OSError as exc:
            show_error(f"Could not copy {model.name}: {exc}")
            return None
        show_info(f"Copied {model.name} to {target}")
        return target
