"""napari-care-losses: restore low-light fluorescence images with CARE and compare losses.

The public API, importable without a display and without TensorFlow (each name is imported
from its subpackage on first use)::

    from napari_care_losses import FrameStack, TrainConfig, LossSpec, train, load_model, score

Subpackages by job: ``io`` (TIFF files, frame stacks, pair folders), ``losses``, ``config``
(setting records, :class:`TrainConfig`), ``models`` (model folders, the CARE network,
bioimage.io packages read as models), ``training``, ``restore`` (prediction, baselines,
metrics, the restore-and-score engine), ``export`` (bioimage.io packages), ``workers``
(the docks' child processes), ``experiments``, ``_widgets`` (napari docks, Qt).
"""

from __future__ import annotations

import importlib

#: public name -> module that defines it
_PUBLIC = {
    "FrameStack": "io.data", "DataError": "io.data", "open_pair": "io.data",
    "make_patches": "io.data", "PatchData": "io.data", "normalize": "io.data",
    "LossName": "losses", "LossSpec": "losses",
    "TrainConfig": "config.train",
    "train": "training.trainer", "run_training": "training.trainer",
    "StopFlag": "training.trainer", "Started": "training.trainer", "BatchEnd": "training.trainer",
    "EpochEnd": "training.trainer", "Finished": "training.trainer", "Failed": "training.trainer",
    "load_model": "restore.predict", "RestorationModel": "restore.predict",
    "Restoration": "restore.predict",
    "score": "restore.metrics", "score_stack": "restore.metrics", "Score": "restore.metrics",
    "Baseline": "restore.baselines", "BaselineName": "restore.baselines",
    "load_sample": "sample_data", "sample_path": "sample_data",
    "ModelFolder": "models.folder",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
