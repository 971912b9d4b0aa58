"""The training losses compared by the study: one record each (:mod:`.records`).

TensorFlow-free, so that widgets and config files can list losses and validate their
parameters without importing Keras. The Keras forms live in
:mod:`napari_care_losses.losses.keras_losses`, the NumPy references in
:mod:`napari_care_losses.losses.reference`; both are found from the record's name.
Everything below is derived from the records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .grid import DIMS, Grid
from .kernels import (
    GAUSS_TRUNCATE,
    MSSSIM_DEFAULT_SCALES,
    MSSSIM_WEIGHTS,
    SSIM_WINDOW,
    gaussian_radius,
    msssim_scales,
)
from .records import (
    LOSSES,
    LossParam,
    LossRecord,
    loss_params,
    loss_record,
    loss_records,
    param_users,
    register,
)

_ADDED: dict[str, StrEnum] = {}  # members of losses registered after this module


class _LossNames(StrEnum):
    @classmethod
    def _missing_(cls, value: object) -> StrEnum | None:
        """A loss registered after import (a plugin, a test) gets a member on demand while
        it is registered."""
        record = next((r for r in loss_records() if r.name == str(value)), None)
        if record is None:
            return None
        member = _ADDED.get(record.name)
        if member is None or type(member) is not cls:
            member = str.__new__(cls, record.name)
            member._name_, member._value_ = record.member, record.name
            _ADDED[record.name] = member
        return member


#: Names of the registered losses (the keys used in configs, CLI and GUI): one member per
#: record, the name upper-cased with ``+`` → ``_`` (``LossName.FFT_BANDPASS``), panel order.
LossName = _LossNames("LossName", [(r.member, r.name) for r in loss_records()],
                      module=__name__, qualname="LossName")

#: Panel order of the losses registered at import (:func:`loss_records` is always current).
LOSS_ORDER: tuple[LossName, ...] = tuple(LossName)


class _RecordView(Mapping):
    """A read-only mapping computed from the current records."""

    def __init__(self, keys: Callable[[], Iterable], value: Callable[[Any], Any]) -> None:
        self._keys, self._value = keys, value

    def __getitem__(self, key: Any) -> Any:
        if key not in set(self._keys()):
            raise KeyError(key)
        return self._value(key)

    def __iter__(self) -> Iterator:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(list(self._keys()))

    def __repr__(self) -> str:
        return repr(dict(self))


def _names() -> list[LossName]:
    return [LossName(r.name) for r in loss_records()]


#: Short labels (table columns, panel titles) by :class:`LossName`.
LOSS_LABELS: Mapping[LossName, str] = _RecordView(_names, lambda n: loss_record(n).short)
#: Default parameters of each loss; a loss accepts exactly these keys.
DEFAULT_PARAMS: Mapping[LossName, dict[str, float]] = _RecordView(
    _names, lambda n: loss_record(n).defaults)
#: Every loss parameter: (lowest, highest) allowed value and a help text (CLI and dock).
LOSS_PARAM_INFO: Mapping[str, tuple[tuple[float, float], str]] = _RecordView(
    lambda: list(loss_params()), lambda k: ((loss_params()[k].lo, loss_params()[k].hi),
                                            loss_params()[k].tip))


def is_probabilistic(name: LossName | str) -> bool:
    """True for losses whose network predicts a distribution (mean and scale channels)."""
    return loss_record(name).probabilistic


def parse_loss_name(name: str) -> LossName:
    """Turn a user string into a :class:`LossName`, with a clear error listing valid names."""
    return LossName(loss_record(name).name)


def validate_params(
    name: LossName | str, params: Mapping[str, Any] | None = None,
    patch_size: int | Sequence[int] | None = None, *, ndim: int = 2,
    voxel_size: Sequence[float] | None = None,
) -> dict[str, float]:
    """Merge ``params`` into the loss defaults and check them; return the full parameter dict.

    ``patch_size``: one edge or one per spatial axis; ``ndim=3`` checks the 3D form with
    ``voxel_size=(dz, dy, dx)`` (see :class:`Grid`). Raises ``ValueError`` naming the loss
    and the offending parameter (or axis).
    """
    return loss_record(name).validate(params, patch_size, ndim=ndim, voxel_size=voxel_size)


@dataclass(frozen=True)
class LossSpec:
    """A loss and its parameters: what a training run is configured with."""

    name: LossName
    params: dict[str, float] = field(default_factory=dict)

    @classmethod
    def create(
        cls, name: LossName | str, params: Mapping[str, Any] | None = None,
        patch_size: int | Sequence[int] | None = None, *, ndim: int = 2,
        voxel_size: Sequence[float] | None = None,
    ) -> LossSpec:
        """A checked spec (:func:`validate_params`; ``ndim``/``voxel_size`` only check)."""
        record = loss_record(name)
        return cls(LossName(record.name), record.validate(params, patch_size, ndim=ndim,
                                                          voxel_size=voxel_size))

    @property
    def record(self) -> LossRecord:
        return loss_record(self.name)

    @property
    def label(self) -> str:
        return self.record.short

    @property
    def probabilistic(self) -> bool:
        return self.record.probabilistic

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name.value, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossSpec:
        return cls.create(data["name"], data.get("params"))


__all__ = [
    "DEFAULT_PARAMS",
    "DIMS",
    "GAUSS_TRUNCATE",
    "LOSSES",
    "LOSS_LABELS",
    "LOSS_ORDER",
    "LOSS_PARAM_INFO",
    "MSSSIM_DEFAULT_SCALES",
    "MSSSIM_WEIGHTS",
    "SSIM_WINDOW",
    "Grid",
    "LossName",
    "LossParam",
    "LossRecord",
    "LossSpec",
    "gaussian_radius",
    "is_probabilistic",
    "loss_params",
    "loss_record",
    "loss_records",
    "msssim_scales",
    "param_users",
    "parse_loss_name",
    "register",
    "validate_params",
]
