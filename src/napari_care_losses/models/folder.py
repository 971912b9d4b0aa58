"""The on-disk model folder: one typed class owns its layout, status and metadata.

A model folder holds CSBDeep's ``config.json`` (the network), the weights
(``weights_best.h5``, ``weights_last.h5``) and our metadata ``care_losses.json`` (training
settings, status, history, data). No other module spells these file names.

The folder is checked as a whole when it is opened: our metadata must parse and hold valid
settings, CSBDeep's config must describe the same network, and values outside the ranges
that :class:`~napari_care_losses.config.train.TrainConfig` allows are refused, each with
"model folder X: …". A run that was killed outright keeps the status ``training`` that it
wrote at its start, so every reader sees it as incomplete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.train import TrainConfig

#: Our metadata file inside a model folder (CSBDeep writes ``config.json`` beside it).
META_FILE = "care_losses.json"
CSBDEEP_CONFIG = "config.json"
WEIGHTS_BEST = "weights_best.h5"
WEIGHTS_LAST = "weights_last.h5"

#: Statuses a model folder can have; only the two last are complete models.
TRAINING, FAILED, STOPPED, FINISHED = "training", "failed", "stopped", "finished"
STATUSES = (TRAINING, FAILED, STOPPED, FINISHED)

#: CSBDeep config keys that must agree with our settings (theirs → ours, or a fixed value).
_NETWORK_KEYS = {"unet_n_depth": "unet_n_depth", "unet_n_first": "unet_n_first",
                 "unet_kern_size": "unet_kern_size"}
_FIXED = {"n_dim": 2, "n_channel_in": 1, "n_channel_out": 1}


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message starts with "model folder X:"."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"model folder {path}: {problem}")


def write_meta(model_dir: Path | str, meta: dict[str, Any]) -> None:
    """Write our metadata atomically (a crash never leaves half a file)."""
    path = Path(model_dir) / META_FILE
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(meta, indent=2, default=float))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(f"model folder {model_dir}: cannot write {META_FILE} "
                      f"({exc.strerror or exc})") from None


def read_meta(model_dir: Path | str) -> dict[str, Any]:
    """Our metadata as a dict (no checks beyond JSON: use :meth:`ModelFolder.open`)."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise ModelFolderError(model_dir, f"not a napari-care-losses model (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(model_dir, f"corrupt {META_FILE} ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFolderError(model_dir, f"{META_FILE} is not a JSON object")
    return meta


@dataclass
class ModelFolder:
    """A checked model folder. Use :meth:`open`; :attr:`usable` says whether it can predict."""

    path: Path
    meta: dict[str, Any] = field(repr=False)
    config: TrainConfig = field(repr=False)

    # ------------------------------------------------------------------ layout

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def weights_best(self) -> Path:
        return self.path / WEIGHTS_BEST

    @property
    def weights_last(self) -> Path:
        return self.path / WEIGHTS_LAST

    @property
    def status(self) -> str:
        return str(self.meta.get("status", ""))

    @property
    def complete(self) -> bool:
        """Training ended (finished, or stopped by the user) and saved its weights."""
        return self.status in (FINISHED, STOPPED) and self.has_weights

    @property
    def has_weights(self) -> bool:
        try:
            return self.weights_best.stat().st_size > 0
        except OSError:
            return False

    @property
    def history(self) -> dict[str, list[float]]:
        return self.meta.get("history") or {}

    @property
    def best_val_loss(self) -> float | None:
        value = self.meta.get("best_val_loss")
        return float(value) if isinstance(value, int | float) else None

    @property
    def data_info(self) -> dict[str, Any]:
        return self.meta.get("data") or {}

    # ------------------------------------------------------------------ checks

    @classmethod
    def open(cls, path: Path | str) -> ModelFolder:
        """Read and cross-check a model folder; raise :class:`ModelFolderError` if unusable
        as a description (weights are checked by :meth:`require_usable`)."""
        path = Path(path)
        if not path.exists():
            raise ModelFolderError(path, "not found")
        if not path.is_dir():
            raise ModelFolderError(path, "is a file, not a model folder")
        meta = read_meta(path)
        status = meta.get("status")
        if status not in STATUSES:
            raise ModelFolderError(path, f"unknown status {status!r} in {META_FILE}")
        train = meta.get("train")
        if not isinstance(train, dict):
            raise ModelFolderError(path, f"{META_FILE} has no training settings")
        try:
            config = TrainConfig.from_dict(train)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFolderError(path, f"unusable training settings ({exc})") from None
        folder = cls(path, meta, config)
        folder._check_network()
        return folder

    def _check_network(self) -> None:
        """CSBDeep's ``config.json`` must describe the network our settings describe."""
        file = self.path / CSBDEEP_CONFIG
        if not file.is_file():
            if self.status == TRAINING:
                return  # written with the first weights
            raise ModelFolderError(self.path, f"no {CSBDEEP_CONFIG} (the network description)")
        try:
            theirs = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFolderError(self.path, f"corrupt {CSBDEEP_CONFIG} ({exc})") from None
        if not isinstance(theirs, dict):
            raise ModelFolderError(self.path, f"{CSBDEEP_CONFIG} is not a JSON object")
        expected = {k: getattr(self.config, ours) for k, ours in _NETWORK_KEYS.items()}
        expected.update(_FIXED, probabilistic=self.config.loss.probabilistic)
        wrong = [f"{k}={theirs.get(k)!r} (expected {v!r})" for k, v in expected.items()
                 if theirs.get(k) != v]
        if wrong:
            raise ModelFolderError(self.path, f"{CSBDEEP_CONFIG} disagrees with {META_FILE}: "
                                   + ", ".join(wrong))

    def require_usable(self) -> ModelFolder:
        """Raise unless the folder can predict: weights saved, training not failed or
        still running (or killed)."""
        if self.status == FAILED:
            error = self.meta.get("error", "unknown error")
            raise ModelFolderError(self.path, f"training failed ({error})")
        if self.status == TRAINING:
            raise ModelFolderError(self.path, "incomplete: training is still running, or the "
                                   "run was killed before it ended")
        if not self.has_weights:
            raise ModelFolderError(self.path, f"no {WEIGHTS_BEST} (training never saved)")
        return self

    # ------------------------------------------------------------------ writing

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_meta(self.path, meta)
        self.meta = meta


def list_models(folder: Path | str) -> list[ModelFolder]:
    """The complete model folders directly inside ``folder``, newest first; folders that
    are not models, or not usable, are skipped (never an error)."""
    out = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    for entry in entries:
        try:
            model = ModelFolder.open(entry)
        except (ModelFolderError, OSError):
            continue
        if model.complete:
            out.append(model)
    return sorted(out, key=lambda m: m.weights_best.stat().st_mtime, reverse=True)
