"""Registry of the training losses compared by the study.

This module is TensorFlow-free so that widgets and config files can list losses and
validate their parameters without importing Keras. The Keras implementations live in
:mod:`napari_care_losses.losses.keras_losses`, the NumPy references in
:mod:`napari_care_losses.losses.reference`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class LossName(StrEnum):
    """Names of the registered losses (the keys used in configs, CLI and GUI)."""

    LAPLACE = "laplace"
    MAE = "mae"
    MSE = "mse"
    FFT = "fft"
    BANDPASS = "bandpass"
    SSIM = "ssim"
    MSSSIM_L1 = "msssim_l1"
    FFT_BANDPASS = "fft+bandpass"


#: Human-readable labels, used for table columns and panel titles.
LOSS_LABELS: dict[LossName, str] = {
    LossName.LAPLACE: "Laplace",
    LossName.MAE: "MAE",
    LossName.MSE: "MSE",
    LossName.FFT: "FFT",
    LossName.BANDPASS: "BP",
    LossName.SSIM: "SSIM",
    LossName.MSSSIM_L1: "MS-SSIM+L1",
    LossName.FFT_BANDPASS: "FFT+BP",
}

#: Default parameters of each loss; a loss accepts exactly these keys.
DEFAULT_PARAMS: dict[LossName, dict[str, float]] = {
    LossName.LAPLACE: {},
    LossName.MAE: {},
    LossName.MSE: {},
    LossName.FFT: {},
    LossName.BANDPASS: {"sigma1": 0.5, "sigma2": 5.0},
    LossName.SSIM: {},
    LossName.MSSSIM_L1: {"alpha": 0.84},
    LossName.FFT_BANDPASS: {"weight": 0.5, "sigma1": 0.5, "sigma2": 5.0},
}

#: Every loss parameter: (lowest, highest) allowed value and a help text (CLI and dock).
LOSS_PARAM_INFO: dict[str, tuple[tuple[float, float], str]] = {
    "sigma1": ((0.1, 20.0), "band-pass: inner Gaussian sigma (px), below sigma2"),
    "sigma2": ((0.2, 30.0), "band-pass: outer Gaussian sigma (px)"),
    "weight": ((0.0, 1.0), "FFT+BP: weight of the FFT term"),
    "alpha": ((0.0, 1.0), "MS-SSIM+L1: weight of the MS-SSIM term"),
}

#: Gaussian kernels are truncated at this many standard deviations (as scipy.ndimage).
GAUSS_TRUNCATE = 4.0


def gaussian_radius(sigma: float) -> int:
    """Half-width of the truncated Gaussian kernel used by the bandpass loss."""
    return int(GAUSS_TRUNCATE * float(sigma) + 0.5)


#: MS-SSIM scale weights of Wang et al. (2003); truncated and renormalised for small patches.
MSSSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: SSIM Gaussian window (taps, sigma), as tf.image.ssim and Wang et al.
SSIM_WINDOW: tuple[int, float] = (11, 1.5)
#: Number of MS-SSIM scales used when the patch size is unknown (needs patches >= 44 px).
MSSSIM_DEFAULT_SCALES = 3


def msssim_scales(patch_size: int | None = None) -> int:
    """Number of MS-SSIM scales: the largest m <= 5 with ``patch_size / 2**(m-1) >= 11``.

    Without a patch size, :data:`MSSSIM_DEFAULT_SCALES` is used (5 scales need 176 px).
    """
    if patch_size is None:
        return MSSSIM_DEFAULT_SCALES
    window = SSIM_WINDOW[0]
    scales = 0
    for m in range(1, len(MSSSIM_WEIGHTS) + 1):
        if patch_size / 2 ** (m - 1) >= window:
            scales = m
    if scales == 0:
        raise ValueError(f"MS-SSIM needs patches of at least {window} px, got {patch_size}")
    return scales


def is_probabilistic(name: LossName | str) -> bool:
    """True for losses whose network predicts a distribution (mean and scale channels)."""
    return LossName(name) is LossName.LAPLACE


def parse_loss_name(name: str) -> LossName:
    """Turn a user string into a :class:`LossName`, with a clear error listing valid names."""
    key = str(name).strip().lower()
    aliases = {"bp": "bandpass", "fft_bandpass": "fft+bandpass", "ms-ssim+l1": "msssim_l1"}
    key = aliases.get(key, key)
    try:
        return LossName(key)
    except ValueError:
        valid = ", ".join(n.value for n in LossName)
        raise ValueError(f"unknown loss {name!r}; choose one of: {valid}") from None


def validate_params(
    name: LossName | str, params: Mapping[str, Any] | None = None, patch_size: int | None = None
) -> dict[str, float]:
    """Merge ``params`` into the loss defaults and check them; return the full parameter dict.

    Raises ``ValueError`` naming the loss and the offending parameter.
    """
    loss = parse_loss_name(name)
    merged = dict(DEFAULT_PARAMS[loss])
    for key, value in (params or {}).items():
        if key not in merged:
            allowed = ", ".join(merged) or "none"
            raise ValueError(f"loss {loss.value!r} has no parameter {key!r} (allowed: {allowed})")
        try:
            merged[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"loss {loss.value!r}: parameter {key!r} must be a number") from None
    for key, value in merged.items():
        lo, hi = LOSS_PARAM_INFO[key][0]
        if not lo <= value <= hi:
            raise ValueError(f"loss {loss.value!r}: {key} must lie in [{lo:g}, {hi:g}], "
                             f"got {value:g}")
    if "sigma1" in merged:
        s1, s2 = merged["sigma1"], merged["sigma2"]
        if not (0 < s1 < s2):
            raise ValueError(
                f"loss {loss.value!r}: need 0 < sigma1 < sigma2 for a bandpass, got {s1}, {s2}"
            )
        if patch_size is not None and gaussian_radius(s2) >= patch_size:
            raise ValueError(
                f"loss {loss.value!r}: sigma2={s2} needs a kernel of radius "
                f"{gaussian_radius(s2)} px, larger than the {patch_size} px patches; "
                "lower sigma2 or use larger patches"
            )
    return merged


@dataclass(frozen=True)
class LossSpec:
    """A loss and its parameters: what a training run is configured with."""

    name: LossName
    params: dict[str, float] = field(default_factory=dict)

    @classmethod
    def create(
        cls, name: LossName | str, params: Mapping[str, Any] | None = None,
        patch_size: int | None = None,
    ) -> LossSpec:
        loss = parse_loss_name(name)
        return cls(loss, validate_params(loss, params, patch_size))

    @property
    def label(self) -> str:
        return LOSS_LABELS[self.name]

    @property
    def probabilistic(self) -> bool:
        return is_probabilistic(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name.value, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossSpec:
        return cls.create(data["name"], data.get("params"))


__all__ = [
    "DEFAULT_PARAMS",
    "GAUSS_TRUNCATE",
    "LOSS_LABELS",
    "LOSS_PARAM_INFO",
    "MSSSIM_DEFAULT_SCALES",
    "MSSSIM_WEIGHTS",
    "SSIM_WINDOW",
    "LossName",
    "LossSpec",
    "gaussian_radius",
    "is_probabilistic",
    "msssim_scales",
    "parse_loss_name",
    "validate_params",
]
