"""The typed record of a model folder (:class:`ModelMeta`), checked as a whole when read.

Only :mod:`.folder` reads and writes it (``ModelFolder.meta``); every other module uses its
attributes, never the JSON keys. Records written before the typed form (no ``model_id``,
``created`` or ``axes``) keep loading: their id is derived from what they hold, so a
bioimage.io package exported from such a folder is still recognised as the same model.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..config.train import TrainConfig

#: The record's format: 2 adds model_id, created and axes (format 1 records still load).
FORMAT = 2

#: Image axes a model takes; today's CARE networks are 2D, single channel.
SUPPORTED_AXES = ("YX",)


class Status(StrEnum):
    """How a training run ended (``training``: still running, or killed outright)."""

    TRAINING = "training"
    FAILED = "failed"
    STOPPED = "stopped"
    FINISHED = "finished"


class MetaError(ValueError):
    """A record that does not check: ``key`` names the entry, ``problem`` says what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key!r}: {problem}")
        self.key, self.problem = key, problem


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _opt(data: dict, key: str, kind: type | tuple, what: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise MetaError(key, f"expected {what}, got {type(value).__name__} {value!r:.60}")
    return value


@dataclass(frozen=True)
class DataInfo:
    """What a model was trained on (file or layer names, frames, patch counts, run ids)."""

    low: str | None = None
    high: str | None = None
    frames: int | None = None
    n_train: int | None = None
    n_val: int | None = None
    job: str | None = None  # experiment job key
    run_id: str | None = None  # experiment run that wrote the folder
    extra: dict[str, Any] = field(default_factory=dict)  # other scalar entries, kept as-is

    @classmethod
    def from_dict(cls, data: Any) -> DataInfo:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise MetaError("data", f"expected an object, got {type(data).__name__}")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra" or f.name not in data:
                continue
            kind = int if f.name in ("frames", "n_train", "n_val") else str
            try:
                kw[f.name] = _opt(data, f.name, kind, "a number" if kind is int else "text")
            except MetaError as exc:
                raise MetaError(f"data.{f.name}", exc.problem) from None
        extra = {k: v for k, v in data.items() if k not in kw and k not in _DATA_FIELDS}
        for k, v in extra.items():
            if not (v is None or isinstance(v, str | int | float | bool)):
                raise MetaError(f"data.{k}", f"expected a plain value, got {type(v).__name__}")
        return cls(**kw, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}

    def items(self) -> list[tuple[str, Any]]:
        """The recorded entries, for documentation."""
        return list(self.to_dict().items())

    def but(self, **changes) -> DataInfo:
        return replace(self, **changes)


_DATA_FIELDS = {f.name for f in fields(DataInfo)} - {"extra"}


@dataclass(frozen=True)
class ModelMeta:
    """Everything we record about a model besides CSBDeep's network and weights."""

    status: Status
    train: TrainConfig
    data: DataInfo = field(default_factory=DataInfo)
    model_id: str = ""  # stable across copies and bioimage.io packages
    created: str | None = None  # ISO time the training started (None: older records)
    axes: str = "YX"
    history: dict[str, list[float]] = field(default_factory=dict)
    best_val_loss: float | None = None
    error: str | None = None
    precision: str | None = None  # the precision training used (auto resolved)
    budget: dict[str, Any] | None = None  # the time-budget plan
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    @classmethod
    def new(cls, cfg: TrainConfig, data: DataInfo | dict | None = None, **kw) -> ModelMeta:
        """The record of a run that starts now (status ``training``, a fresh model id)."""
        from ..config.train import versions

        if not isinstance(data, DataInfo):
            data = DataInfo.from_dict(data)
        kw.setdefault("versions", versions())
        return cls(Status.TRAINING, cfg, data, model_id=uuid.uuid4().hex,
                   created=datetime.now().isoformat(timespec="seconds"), **kw)

    def but(self, **changes) -> ModelMeta:
        """A copy with ``changes`` (e.g. ``status=Status.FINISHED``)."""
        return replace(self, **changes)

    @property
    def created_time(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.created) if self.created else None
        except ValueError:
            return None

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format, "status": Status(self.status).value, "model_id": self.model_id,
            "created": self.created, "axes": self.axes, "train": self.train.to_dict(),
            "data": self.data.to_dict(), "versions": dict(self.versions)}
        if self.precision is not None:
            out["precision_used"] = self.precision
        if self.budget is not None:
            out["budget"] = self.budget
        if self.error is not None:
            out["error"] = self.error
        if self.history:
            out["history"] = self.history
        if self.best_val_loss is not None:
            out["best_val_loss"] = self.best_val_loss
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelMeta:
        """Check a record as a whole; raise :class:`MetaError` naming the first bad key."""
        unknown = sorted(set(raw) - KEYS)
        if unknown:
            raise MetaError(unknown[0], "unknown key (damaged, or written by a newer version)")
        fmt = raw.get("format", 1)
        if not isinstance(fmt, int) or isinstance(fmt, bool) or not 1 <= fmt <= FORMAT:
            raise MetaError("format", f"unsupported format {fmt!r}")
        try:
            status = Status(raw.get("status"))
        except ValueError:
            raise MetaError("status", f"unknown status {raw.get('status')!r}") from None
        train = raw.get("train")
        if not isinstance(train, dict):
            raise MetaError("train", "no training settings")
        try:
            cfg = TrainConfig.from_dict(train)
        except (KeyError, TypeError, ValueError) as exc:
            raise MetaError("train", f"unusable training settings ({exc})") from None
        axes = raw.get("axes", "YX")
        if axes not in SUPPORTED_AXES:
            raise MetaError("axes", f"{axes!r} is not supported (this version takes "
                            f"{', '.join(SUPPORTED_AXES)})")
        best = raw.get("best_val_loss")
        if best is not None and not _is_number(best):
            raise MetaError("best_val_loss", f"expected a number, got {best!r:.60}")
        meta = cls(
            status=status, train=cfg, data=DataInfo.from_dict(raw.get("data")),
            model_id=_opt(raw, "model_id", str, "text") or "",
            created=_opt(raw, "created", str, "text"), axes=axes,
            history=_history(raw.get("history")),
            best_val_loss=float(best) if best is not None else None,
            error=_opt(raw, "error", str, "text"),
            precision=_opt(raw, "precision_used", str, "text"),
            budget=_opt(raw, "budget", dict, "an object"),
            versions=_versions(raw.get("versions")), format=fmt)
        return meta if meta.model_id else replace(meta, model_id=_legacy_id(raw))


#: The record's top-level JSON keys (no other module spells them: a test greps for them).
KEYS = {"format", "status", "model_id", "created", "axes", "train", "data", "versions",
         "precision_used", "budget", "error", "history", "best_val_loss"}


def _history(value: Any) -> dict[str, list[float]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MetaError("history", f"expected an object of lists, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if not isinstance(v, list) or not all(_is_number(x) for x in v):
            raise MetaError(f"history.{k}", "expected a list of numbers")
        out[str(k)] = [float(x) for x in v]
    return out


def _versions(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MetaError("versions", "expected an object of version texts")
    return dict(value)


def _legacy_id(raw: dict[str, Any]) -> str:
    """A stable id for a record written before ids existed, from what cannot change once the
    run ended (settings, history, versions): the same for the folder and its package."""
    keep = {k: raw.get(k) for k in ("train", "history", "best_val_loss", "versions")}
    text = json.dumps(keep, sort_keys=True, default=str)
    return "legacy-" + hashlib.sha256(text.encode()).hexdigest()[:24]
