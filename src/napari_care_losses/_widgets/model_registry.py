"""Models trained or loaded in this napari session, shared by the training and compare docks.

The models folder (``~/napari-care-losses/models``, or the one chosen last) is remembered
in ``~/napari-care-losses/settings.json`` (``$NAPARI_CARE_LOSSES_HOME`` replaces
``~/napari-care-losses``); both docks list its finished models when they open.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from psygnal import Signal

from ..models.folder import list_models
from ..restore.predict import RestorationModel


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


class ModelRegistry:
    """Ordered set of :class:`RestorationModel`, keyed by model folder; emits ``changed``."""

    changed = Signal()

    def __init__(self) -> None:
        self._models: dict[Path, RestorationModel] = {}

    def add(self, model: RestorationModel | str | Path) -> RestorationModel:
        if not isinstance(model, RestorationModel):
            model = RestorationModel(model)
        key = model.model_dir.resolve()
        self._models[key] = self._models.get(key, model)
        self.changed.emit()
        return self._models[key]

    def load_folder(self, folder: str | Path | None = None) -> int:
        """Add every finished or stopped model directly inside ``folder`` (default: the
        remembered models folder); folders that are not usable models are skipped."""
        added = 0
        for entry in list_models(folder if folder is not None else models_folder()):
            key = entry.path.resolve()
            if key in self._models:
                continue
            try:
                self._models[key] = RestorationModel(entry.path)
            except (OSError, ValueError):
                continue
            added += 1
        if added:
            self.changed.emit()
        return added

    def remove(self, model: RestorationModel) -> None:
        if self._models.pop(model.model_dir.resolve(), None) is not None:
            self.changed.emit()

    def clear(self) -> None:
        self._models.clear()
        self.changed.emit()

    def models(self) -> list[RestorationModel]:
        return list(self._models.values())

    def __len__(self) -> int:
        return len(self._models)


#: The process-wide registry both docks use.
REGISTRY = ModelRegistry()
