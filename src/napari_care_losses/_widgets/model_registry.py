"""Models trained or loaded in this napari session, shared by the training and compare docks."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

from ..predict import RestorationModel


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
