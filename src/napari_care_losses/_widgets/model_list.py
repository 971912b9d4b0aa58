"""The "Models" box of the training dock: the shared registry, load, open and copy."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QUrl
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..models.folder import FINISHED
from ..models.meta import Status
from ..models.package_import import is_package
from .model_registry import REGISTRY, ListedModel


def model_title(model: ListedModel) -> str:
    """'FFT 14:03 · 11-25 · val 0.12' (the display name, the day), plus how the run ended."""
    folder = model.folder
    extra = f" · val {folder.best_val_loss:.4g}" if folder.best_val_loss is not None else ""
    if folder.status != Status.FINISHED:
        extra += f" ({folder.status})"
    return f"{model.display_name} · {folder.created:%m-%d}{extra}"


def model_tooltip(model: ListedModel) -> str:
    """Loss, settings and data of a model, one per line."""
    cfg = model.config
    params = ", ".join(f"{k}={v:g}" for k, v in cfg.loss.params.items())
    epochs = model.folder.epochs_done or "?"
    data = model.folder.data_info
    lines = [
        f"{model.label} loss" + (f" ({params})" if params else ""),
        f"folder: {model.model_dir}",
        f"trained {model.folder.created:%Y-%m-%d %H:%M:%S}, model id {model.model_id}",
        f"status: {model.folder.status}, epochs done: {epochs}/{cfg.epochs}",
        f"patch {cfg.patch_size} px × {cfg.patches_per_image}/frame, batch {cfg.batch_size}, "
        f"lr {cfg.learning_rate:g}, {cfg.steps_per_epoch} steps/epoch, seed {cfg.seed}",
        f"U-Net depth {cfg.unet_n_depth}, {cfg.unet_n_first} first filters, "
        f"kernel {cfg.unet_kern_size}",
    ]
    if data.low is not None:
        lines.append(f"data: {data.low} → {data.high or '?'}")
    if data.n_train is not None:
        lines.append(f"patches: {data.n_train} train, {data.n_val or '?'} validation")
    return "\n".join(lines)


#: Files that stand for a model: a model folder's record, or a bioimage.io package.
MODEL_FILES = "Model (*.json rdf.yaml *.zip)"


def ask_model_path(parent: QWidget) -> str | None:
    """Ask for a model: a file inside a model folder (its folder is the model) or a
    bioimage.io package (``.zip``) exported by this plugin."""
    path, _ = QFileDialog.getOpenFileName(parent, "Load a model: a file in a model folder, "
                                          "or a bioimage.io .zip", "", MODEL_FILES)
    if not path:
        return None
    return path if path.lower().endswith(".zip") else str(Path(path).parent)


def _close_process(owned: dict, *_) -> None:
    """The widget is gone: end its export/unpack process (no reference to the widget)."""
    if owned.get("process") is not None:
        owned["process"].close()


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
        self._owned: dict = {"process": None}  # a RestoreProcess, started on the first export
        self._export_worker = None
        self.problems = QLabel()  # damaged model folders the registry skipped, one line
        self.problems.setStyleSheet("color: #e0a030")
        self.problems.setWordWrap(False)
        self.problems.hide()
        buttons = QHBoxLayout()
        for b in (self.load_button, self.open_button, self.copy_button, self.export_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.problems)
        layout.addLayout(buttons)
        self.load_button.clicked.connect(self._load_dialog)
        self.open_button.clicked.connect(self._open_folder)
        self.copy_button.clicked.connect(self._copy_dialog)
        self.export_button.clicked.connect(self._export_dialog)
        self.list.itemSelectionChanged.connect(self._sync_buttons)
        REGISTRY.changed.connect(self.refresh)
        self.destroyed.connect(partial(_close_process, self._owned))
        self.refresh()

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
        self._show_problems(REGISTRY.problems)
        self._sync_buttons()

    def _show_problems(self, problems: list[str]) -> None:
        """One line for the damaged model folders skipped (all of them in the tooltip)."""
        if not problems:
            self.problems.hide()
            return
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        line = f"skipped a damaged model folder{more}: {problems[0]}"
        self.problems.setText(line if len(line) <= 110 else line[:109] + "…")
        self.problems.setToolTip("\n".join(problems))
        self.problems.show()

    def titles(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def select(self, model_dir: str | Path) -> None:
        key = str(Path(model_dir).resolve())
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.UserRole) == key:
                self.list.setCurrentRow(i)
                return

    def selected(self) -> ListedModel | None:
        items = self.list.selectedItems()
        if not items:
            return None
        key = Path(items[0].data(Qt.UserRole))
        return next((m for m in REGISTRY.models() if m.model_dir.resolve() == key), None)

    def load_model_dir(self, path: str | Path, source: Path | None = None
                       ) -> ListedModel | None:
        """Add the model folder at ``path`` to the registry (errors become notifications);
        a bioimage.io package is unpacked first, in the background (returns None then; its
        folder comes back with ``source``, the package)."""
        path = Path(path)
        if is_package(path):
            show_info(f"Unpacking {path.name} …")
            self._unpack = unpack_package(self._restore_process(), path,
                                          partial(self._load_unpacked, path),
                                          lambda e: show_error(f"Could not load {path}: {e}"))
            return None
        try:
            model = REGISTRY.add(path)
        except (OSError, ValueError) as exc:
            show_error(f"Could not load a model from {path}: {exc}")
            return None
        if model.model_dir.resolve() != path.resolve():  # a copy, or a package of it
            show_info(f"{(source or path).name} is the model listed as "
                      f"{model.display_name!r} ({model.model_dir})")
        self.select(model.model_dir)
        return model

    def _load_unpacked(self, package: Path, folder: str | Path) -> None:
        self.load_model_dir(folder, source=package)

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
        if self._owned["process"] is None:
            from ..workers.restore_runs import RestoreProcess

            self._owned["process"] = RestoreProcess()
        return self._owned["process"]

    def _export_dialog(self) -> None:
        model = self.selected()
        if model is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, f"Export {model.name}",
                                              f"{model.name}.zip", "bioimage.io package (*.zip)")
        if path:
            self.export_model(model, path)

    def export_model(self, model: ListedModel, path: str | Path):
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

    def copy_model(self, model: ListedModel, dest: str | Path) -> Path | None:
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
