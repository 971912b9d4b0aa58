"""Models trained or loaded in this napari session, shared by the training and compare docks.

The registry holds checked model folders (:class:`ListedModel`: a
:class:`~..models.folder.ModelFolder` and its display name), never predictors: napari's
process never imports the prediction module (TensorFlow runs only in the workers). Each
model gets a display name distinct within the registry ("Laplace 14:03", "Laplace 14:03
#2"), and a model is listed once: the same folder, a copy of it or a bioimage.io package
exported from it (same model id) is recognised as the model already listed.

The models folder (``~/napari-care-losses/models``, or the one chosen last) is remembered
in ``~/napari-care-losses/settings.json`` (``$NAPARI_CARE_LOSSES_HOME`` replaces
``~/napari-care-losses``); both docks list its finished models when they open.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal

from ..config.train import TrainConfig
from ..losses import LossSpec
from ..models.folder import ModelFolder, list_models
from ..models.meta import Status


def home() -> Path:
    return Path(os.environ.get("NAPARI_CARE_LOSSES_HOME")
                or Path.home() / "napari-care-losses").expanduser()


def _settings_file() -> Path:
    return home() / "settings.json"


def models_folder() -> Path:
    """The models folder chosen last (or the default one)."""
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        folder = json.loads(_settings_file().read_text()).get("models_folder")
        if folder:
            return Path(folder)
    return home() / "models"


def remember_models_folder(folder: str | Path) -> None:
    """Remember ``folder`` for the next session (silently skipped if it cannot be saved)."""
    path = _settings_file()
    with contextlib.suppress(OSError, ValueError, TypeError):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data["models_folder"] = str(Path(folder).expanduser().resolve())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)


@dataclass(frozen=True)
class ListedModel:
    """A usable model folder in the registry, with its display name (unique in the registry)."""

    folder: ModelFolder
    display_name: str

    @property
    def model_dir(self) -> Path:
        return self.folder.path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def label(self) -> str:
        return self.folder.config.loss.label

    @property
    def config(self) -> TrainConfig:
        return self.folder.config

    @property
    def loss(self) -> LossSpec:
        return self.folder.config.loss

    @property
    def status(self) -> Status:
        return self.folder.status

    @property
    def model_id(self) -> str:
        return self.folder.model_id


def _as_path(model) -> Path:
    if isinstance(model, ModelFolder):
        return model.path
    return Path(getattr(model, "model_dir", model))  # a path, or a model with a model_dir


class ModelRegistry:
    """Ordered set of :class:`ListedModel`, keyed by model folder; emits ``changed``.

    :attr:`problems` holds one line per damaged model folder that :meth:`load_folder` skipped.
    """

    changed = Signal()

    def __init__(self) -> None:
        self._models: dict[Path, ListedModel] = {}
        self._problems: dict[Path, list[str]] = {}  # by models folder, from its last listing

    @property
    def problems(self) -> list[str]:
        return [line for lines in self._problems.values() for line in lines]

    def find(self, folder: ModelFolder) -> ListedModel | None:
        """The listed model that is ``folder``: the same folder, or the same model id (a
        copy, or a package exported from it)."""
        key = folder.path.resolve()
        if key in self._models:
            return self._models[key]
        return next((m for m in self._models.values() if m.model_id == folder.model_id), None)

    def display_name(self, folder: ModelFolder, taken: set[str] | None = None) -> str:
        """A name no listed model has (nor any in ``taken``): the loss and the time training
        started, numbered (" #2", …) when another listed model has it already."""
        base = f"{folder.config.loss.label} {folder.created:%H:%M}"
        taken = {m.display_name for m in self._models.values()} | (taken or set())
        n, name = 1, base
        while name in taken:
            n += 1
            name = f"{base} #{n}"
        return name

    def add(self, model: ListedModel | ModelFolder | str | Path) -> ListedModel:
        """List a usable model folder (raises ``ModelFolderError``, a ``ValueError``, if it is
        not one); returns the listed model, which is the one listed already if ``model`` is
        the same model (check ``.model_dir`` to tell)."""
        folder = ModelFolder.open(_as_path(model)).require_usable()
        listed = self._put(folder)
        self.changed.emit()
        return listed

    def _put(self, folder: ModelFolder) -> ListedModel:
        listed = self.find(folder)
        if listed is None:
            listed = ListedModel(folder, self.display_name(folder))
            self._models[folder.path.resolve()] = listed
        return listed

    def load_folder(self, folder: str | Path | None = None) -> int:
        """Add every finished or stopped model directly inside ``folder`` (default: the
        remembered models folder); folders that are not models are skipped, damaged model
        folders are said in :attr:`problems`. Returns how many models were added."""
        problems: list[str] = []
        folder = Path(folder if folder is not None else models_folder()).expanduser()
        found = list_models(folder, problems)
        new: list[ListedModel] = []
        for entry in sorted(found, key=lambda m: m.created):  # the first of a minute: no #
            if self.find(entry) is None and all(m.model_id != entry.model_id for m in new):
                taken = {m.display_name for m in new}
                new.append(ListedModel(entry, self.display_name(entry, taken)))
        for listed in reversed(new):  # listed newest first
            self._models[listed.model_dir.resolve()] = listed
        self._problems[folder.resolve()] = problems
        added = len(new)
        if added or problems:
            self.changed.emit()
        return added

    def remove(self, model: ListedModel) -> None:
        if self._models.pop(model.model_dir.resolve(), None) is not None:
            self.changed.emit()

    def clear(self) -> None:
        self._models.clear()
        self._problems.clear()
        self.changed.emit()

    def models(self) -> list[ListedModel]:
        return list(self._models.values())

    def __len__(self) -> int:
        return len(self._models)


#: The process-wide registry both docks use.
REGISTRY = ModelRegistry()
