"""The on-disk model folder: one typed class owns its layout, status and metadata.

A model folder holds CSBDeep's ``config.json`` (the network), the weights
(``weights_best.h5``, ``weights_last.h5``) and our record ``care_losses.json``
(:class:`~.meta.ModelMeta`: training settings, status, history, data, model id). No other
module spells these file names or the record's keys: readers use :class:`ModelFolder`'s
attributes (a test greps the source tree for them).

The folder is checked as a whole when it is opened: our record must parse and every entry
have its type (:meth:`ModelMeta.from_json`), CSBDeep's config must hold only keys CSBDeep
knows and describe the same network, and values outside the ranges that
:class:`~napari_care_losses.config.train.TrainConfig` allows are refused, each with
"model folder X: FILE: …" naming the key. A run that was killed outright keeps the status
``training`` that it wrote at its start, so every reader sees it as incomplete.

New folders are claimed atomically (:func:`claim_model_dir`: ``os.mkdir``, a numbered
suffix on collision), so two runs started in the same second never share one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config.train import TrainConfig
from .meta import DataInfo, MetaError, ModelMeta, Status

#: Our metadata file inside a model folder (CSBDeep writes ``config.json`` beside it).
META_FILE = "care_losses.json"
CSBDEEP_CONFIG = "config.json"
WEIGHTS_BEST = "weights_best.h5"
WEIGHTS_LAST = "weights_last.h5"

#: Statuses a model folder can have; only the two last are complete models.
TRAINING, FAILED, STOPPED, FINISHED = (Status.TRAINING, Status.FAILED, Status.STOPPED,
                                       Status.FINISHED)
STATUSES = tuple(Status)

#: CSBDeep config keys that must agree with our settings (theirs → ours, or a fixed value).
_NETWORK_KEYS = {"unet_n_depth": "unet_n_depth", "unet_n_first": "unet_n_first",
                 "unet_kern_size": "unet_kern_size"}
_FIXED = {"n_dim": 2, "n_channel_in": 1, "n_channel_out": 1}
#: Every key CSBDeep 0.8's ``Config`` writes (any other key reaches CSBDeep as an attribute
#: it does not know: refused as a damaged folder).
CSBDEEP_KEYS = frozenset({
    "n_dim", "axes", "n_channel_in", "n_channel_out", "train_checkpoint",
    "train_checkpoint_last", "train_checkpoint_epoch", "probabilistic", "unet_residual",
    "unet_n_depth", "unet_kern_size", "unet_n_first", "unet_last_activation",
    "unet_input_shape", "train_loss", "train_epochs", "train_steps_per_epoch",
    "train_learning_rate", "train_batch_size", "train_tensorboard", "train_reduce_lr"})

#: The time stamp in a folder name made by :func:`model_dir_name`.
_STAMP = re.compile(r"_(\d{8}-\d{6})(?:_\d+)?$")


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message starts with "model folder X:"."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"model folder {path}: {problem}")


def write_meta(model_dir: Path | str, meta: ModelMeta | dict[str, Any]) -> None:
    """Write the record atomically (a crash never leaves half a file); a dict is written
    as given (tests write damaged records with it)."""
    path = Path(model_dir) / META_FILE
    tmp = path.with_suffix(".tmp")
    data = meta.to_json() if isinstance(meta, ModelMeta) else meta
    try:
        tmp.write_text(json.dumps(data, indent=2, default=float))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(f"model folder {model_dir}: cannot write {META_FILE} "
                      f"({exc.strerror or exc})") from None


def read_meta(model_dir: Path | str) -> dict[str, Any]:
    """The record as raw JSON (no checks beyond JSON: use :meth:`ModelFolder.open`)."""
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


def model_dir_name(cfg: TrainConfig, when: datetime | None = None) -> str:
    """The folder name of a new model: loss + time stamp."""
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.loss.name.value.replace('+', '_')}_{stamp}"


def claim_model_dir(outdir: Path | str, base: str) -> Path:
    """Create and return a fresh folder ``outdir/base`` (``base_2``, ``base_3``, … if taken):
    ``os.mkdir`` either creates it or fails, so two runs never get the same folder."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = outdir / (base if n == 1 else f"{base}_{n}")
        try:
            os.mkdir(path)
        except FileExistsError:
            n += 1
            continue
        return path


def release_claim(path: Path | str) -> None:
    """Remove a claimed folder that a failed start left empty (anything in it stays)."""
    with contextlib.suppress(OSError):
        os.rmdir(path)


def check_new_model_dir(path: Path | str) -> Path:
    """A folder given for a new model (``train(..., model_dir=…)``): refused if it holds a
    complete model (never overwritten) or other files; created if missing."""
    path = Path(path)
    if (path / META_FILE).exists():
        try:
            folder = ModelFolder.open(path)
        except ModelFolderError:
            folder = None
        if folder is None or folder.complete:
            what = "a trained model" if folder is not None else "a model record"
            raise ModelFolderError(path, f"already holds {what}; it is never overwritten "
                                   "(choose another folder, or delete it first)")
    elif path.is_dir() and any(path.iterdir()):
        raise ModelFolderError(path, "exists and is not empty; a new model needs a new folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ModelFolder:
    """A checked model folder. Use :meth:`open`; :attr:`usable` says whether it can predict."""

    path: Path
    meta: ModelMeta = field(repr=False)

    # ------------------------------------------------------------------ layout

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> TrainConfig:
        return self.meta.train

    @property
    def weights_best(self) -> Path:
        return self.path / WEIGHTS_BEST

    @property
    def weights_last(self) -> Path:
        return self.path / WEIGHTS_LAST

    @property
    def record_files(self) -> tuple[Path, Path]:
        """Our record and CSBDeep's network description (what a package carries along)."""
        return self.path / META_FILE, self.path / CSBDEEP_CONFIG

    @property
    def status(self) -> Status:
        return self.meta.status

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
        return self.meta.history

    @property
    def epochs_done(self) -> int:
        return len(self.meta.history.get("loss", []))

    @property
    def best_val_loss(self) -> float | None:
        return self.meta.best_val_loss

    @property
    def data_info(self) -> DataInfo:
        return self.meta.data

    @property
    def error(self) -> str | None:
        return self.meta.error

    @property
    def versions(self) -> dict[str, str]:
        return self.meta.versions

    @property
    def precision(self) -> str | None:
        """The precision training used (``auto`` resolved); None in older records."""
        return self.meta.precision

    @property
    def budget(self) -> dict[str, Any] | None:
        """The time-budget plan of a ``minutes`` run."""
        return self.meta.budget

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def axes(self) -> str:
        return self.meta.axes

    @property
    def created(self) -> datetime:
        """When training started: from the record, else the folder's time stamp, else the
        record file's time."""
        when = self.meta.created_time
        if when is None and (match := _STAMP.search(self.name)):
            when = datetime.strptime(match[1], "%Y%m%d-%H%M%S")
        if when is None:
            try:
                when = datetime.fromtimestamp((self.path / META_FILE).stat().st_mtime)
            except OSError:
                when = datetime.now()
        return when

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
        try:
            meta = ModelMeta.from_json(read_meta(path))
        except MetaError as exc:
            raise ModelFolderError(path, f"{META_FILE}: {exc}") from None
        folder = cls(path, meta)
        folder._check_network()
        return folder

    def _check_network(self) -> None:
        """CSBDeep's ``config.json`` must hold only CSBDeep's keys and describe the network
        our settings describe."""
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
        unknown = sorted(set(theirs) - CSBDEEP_KEYS)
        if unknown:
            raise ModelFolderError(self.path, f"{CSBDEEP_CONFIG}: unknown key {unknown[0]!r} "
                                   "(damaged, or not written by CSBDeep)")
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
            raise ModelFolderError(self.path, f"training failed ({self.error or 'unknown error'})")
        if self.status == TRAINING:
            raise ModelFolderError(self.path, "incomplete: training is still running, or the "
                                   "run was killed before it ended")
        if not self.has_weights:
            raise ModelFolderError(self.path, f"no {WEIGHTS_BEST} (training never saved)")
        return self

    # ------------------------------------------------------------------ writing

    def write_meta(self, meta: ModelMeta) -> None:
        write_meta(self.path, meta)
        self.meta = meta


def list_models(folder: Path | str, problems: list[str] | None = None) -> list[ModelFolder]:
    """The complete model folders directly inside ``folder``, newest first; folders that
    are not models, or not usable, are skipped (never an error). Damaged model folders (a
    record that does not check) are said in ``problems``, one line each, if given."""
    out = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    for entry in entries:
        try:
            model = ModelFolder.open(entry)
        except (ModelFolderError, OSError) as exc:
            if problems is not None and (entry / META_FILE).is_file():
                problems.append(str(exc))
            continue
        if model.complete:
            out.append(model)
    return sorted(out, key=lambda m: m.weights_best.stat().st_mtime, reverse=True)
