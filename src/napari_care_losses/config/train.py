"""Training configuration, saved as JSON beside the weights so a model reloads exactly."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..losses import LossSpec
from .settings import BY_NAME, DEFAULT_PRESET, SETTINGS, defaults, loss_specs, problems


def _d(name: str):
    return BY_NAME[name].default


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults, bounds and help texts come from
    :mod:`napari_care_losses.config.settings` (the ``fast`` preset; ``study`` = the paper's)."""

    loss: LossSpec = field(default_factory=lambda: LossSpec.create("laplace"))
    patch_size: int = _d("patch_size")
    patches_per_image: int = _d("patches_per_image")
    val_fraction: float = _d("val_fraction")
    epochs: int = _d("epochs")
    steps_per_epoch: int = _d("steps_per_epoch")
    batch_size: int = _d("batch_size")
    learning_rate: float = _d("learning_rate")
    augment: str = _d("augment")  # none, flips (flips and 90° rotations)
    seed: int = _d("seed")
    unet_n_depth: int = _d("unet_n_depth")
    unet_n_first: int = _d("unet_n_first")
    unet_kern_size: int = _d("unet_kern_size")
    reduce_lr_patience: int = _d("reduce_lr_patience")  # halve the lr after flat epochs
    norm_pmin: float = _d("norm_pmin")  # percentiles used to normalise inputs
    norm_pmax: float = _d("norm_pmax")
    precision: str = _d("precision")  # auto, float32, bfloat16, float16
    minutes: float = _d("minutes")  # time budget; 0 = epochs x steps as given

    def __post_init__(self) -> None:
        bad = problems({f.name: getattr(self, f.name) for f in fields(self) if f.name != "loss"})
        if bad:
            values = ", ".join(f"{b}={getattr(self, b)!r} ({why})" for b, why in bad.items())
            raise ValueError(f"invalid training settings: {values}")
        # re-validate loss parameters against the patch size (e.g. bandpass sigma2)
        LossSpec.create(self.loss.name, self.loss.params, self.patch_size)

    @classmethod
    def preset(cls, name: str = DEFAULT_PRESET, **overrides) -> TrainConfig:
        """The settings of preset ``name`` (``fast`` or ``study``), with ``overrides``."""
        return cls(**{**defaults(name), **overrides})

    def with_loss(self, name: str, params: dict | None = None) -> TrainConfig:
        return replace(self, loss=LossSpec.create(name, params, self.patch_size))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["loss"] = self.loss.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        kwargs = dict(data)
        kwargs.setdefault("precision", "float32")  # folders from before precision existed
        kwargs.setdefault("augment", "none")  # ... and before augmentation
        if "loss" in kwargs:
            loss = kwargs["loss"]
            kwargs["loss"] = (LossSpec.create(loss) if isinstance(loss, str)
                              else LossSpec.from_dict(loss))
        return cls(**kwargs)


MODEL_PACKAGES = ("napari-care-losses", "csbdeep", "tensorflow", "tensorflow-cpu", "keras",
                  "numpy")


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the packages that shape a trained model (recorded with it), then of
    ``extra`` packages; those not installed are left out."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (*MODEL_PACKAGES, *extra):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def config_from_args(args) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``train`` arguments (preset + given flags), for the
    first ``--loss``; use :func:`.settings.loss_specs` for all of them."""
    values = defaults(getattr(args, "preset", None) or DEFAULT_PRESET)
    values.update({s.name: getattr(args, s.name) for s in SETTINGS
                   if getattr(args, s.name, None) is not None})
    specs = loss_specs(args, values["patch_size"], note=False)  # the CLI notes once
    return TrainConfig(loss=specs[0], **values)
