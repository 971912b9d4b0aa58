"""Shared fixtures: offscreen Qt, quiet TensorFlow, tiny training configs and data."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from napari_care_losses.config import TrainConfig  # noqa: E402
from napari_care_losses.data import make_patches  # noqa: E402
from napari_care_losses.losses import LossSpec  # noqa: E402
from napari_care_losses.sample_data import load_sample  # noqa: E402


def tiny_config(loss: str = "mae", **overrides) -> TrainConfig:
    """A U-Net small enough to train in seconds on 2 CPU cores."""
    settings = dict(patch_size=32, patches_per_image=16, epochs=2, steps_per_epoch=3,
                    batch_size=4, learning_rate=2e-3, unet_n_depth=1, unet_n_first=8,
                    unet_kern_size=3, reduce_lr_patience=0, seed=1)
    settings.update(overrides)
    return TrainConfig(loss=LossSpec.create(loss, patch_size=settings["patch_size"]),
                       **settings)


@pytest.fixture(scope="session")
def sample_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two real W2S training fields (bundled crops), uint8 (2, 256, 256)."""
    low, high = load_sample(0, "train")
    return low[:2], high[:2]


@pytest.fixture(scope="session")
def tiny_patches(sample_pair):
    low, high = sample_pair
    return make_patches(low, high, patch_size=32, patches_per_image=16, seed=0)
