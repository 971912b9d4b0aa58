"""Model folders written by hand in the record format of napari-care-losses 0.2 (format 1,
as the trainer wrote it before the typed record), with stand-in weights."""

from __future__ import annotations

import json
from pathlib import Path

from napari_care_losses.models.folder import CSBDEEP_CONFIG, META_FILE, WEIGHTS_BEST

from ..conftest import tiny_config


def old_format_folder(path: Path, loss: str = "laplace", status: str = "finished",
                      **record) -> Path:
    """A complete model folder as the 0.2 trainer left it; ``record`` replaces entries."""
    cfg = tiny_config(loss)
    path.mkdir(parents=True)
    (path / WEIGHTS_BEST).write_bytes(b"stand-in weights")
    (path / CSBDEEP_CONFIG).write_text(json.dumps({
        "n_dim": 2, "axes": "YXC", "n_channel_in": 1, "n_channel_out": 1,
        "train_checkpoint": WEIGHTS_BEST, "probabilistic": cfg.loss.probabilistic,
        "unet_residual": True, "unet_n_depth": cfg.unet_n_depth,
        "unet_kern_size": cfg.unet_kern_size, "unet_n_first": cfg.unet_n_first,
        "unet_last_activation": "linear", "unet_input_shape": [None, None, 1],
        "train_loss": "laplace" if cfg.loss.probabilistic else "mae",
        "train_reduce_lr": None}))
    meta = {"format": 1, "status": status, "train": cfg.to_dict(),
            "data": {"n_train": 307, "n_val": 77, "low": "/data/low.tif",
                     "high": "/data/high.tif", "frames": 6},
            "versions": {"python": "3.11.7", "csbdeep": "0.8.2"},
            "precision_used": "float32",
            "budget": {"epochs": 3, "steps_per_epoch": 10},
            "history": {"loss": [0.5, 0.4], "val_loss": [0.6, 0.45]},
            "best_val_loss": 0.45}
    meta.update(record)
    (path / META_FILE).write_text(json.dumps(meta, indent=2))
    return path
