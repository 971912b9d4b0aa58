"""Training configuration, saved as JSON beside the weights so a model reloads exactly."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .losses import LossSpec

#: Our metadata file inside a model folder (CSBDeep writes ``config.json`` beside it).
META_FILE = "care_losses.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the study's (batch 16, lr 4e-4,
    64x64 patches, Adam, 4:1 split) and CSBDeep's 2D U-Net."""

    loss: LossSpec = field(default_factory=lambda: LossSpec.create("laplace"))
    patch_size: int = 64
    patches_per_image: int = 64
    val_fraction: float = 0.2
    epochs: int = 50
    steps_per_epoch: int = 100
    batch_size: int = 16
    learning_rate: float = 4e-4
    seed: int = 0
    unet_n_depth: int = 2
    unet_n_first: int = 32
    unet_kern_size: int = 5
    reduce_lr_patience: int = 10  # halve the learning rate after this many flat epochs; 0 = off
    norm_pmin: float = 2.0  # percentiles used to normalise inputs at prediction time
    norm_pmax: float = 99.8

    def __post_init__(self) -> None:
        checks = {
            "patch_size": self.patch_size >= 16 and self.patch_size % 2**self.unet_n_depth == 0,
            "patches_per_image": self.patches_per_image >= 1,
            "val_fraction": 0 < self.val_fraction < 1,
            "epochs": self.epochs >= 1,
            "steps_per_epoch": self.steps_per_epoch >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": 0 < self.learning_rate < 1,
            "unet_n_depth": 1 <= self.unet_n_depth <= 5,
            "unet_n_first": self.unet_n_first >= 1,
            "unet_kern_size": self.unet_kern_size % 2 == 1,
            "reduce_lr_patience": self.reduce_lr_patience >= 0,
            "norm_pmin": 0 <= self.norm_pmin < self.norm_pmax <= 100,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{b}={getattr(self, b)!r}" for b in bad)
            raise ValueError(f"invalid training settings: {values}")
        # re-validate loss parameters against the patch size (e.g. bandpass sigma2)
        LossSpec.create(self.loss.name, self.loss.params, self.patch_size)

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


def write_meta(model_dir: Path, meta: dict[str, Any]) -> None:
    """Write the model's metadata atomically (a crash never leaves half a file)."""
    path = Path(model_dir) / META_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=float))
    tmp.replace(path)


def read_meta(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: not a napari-care-losses model (no {META_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt model metadata ({exc})") from None
