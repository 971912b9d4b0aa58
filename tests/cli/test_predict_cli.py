"""Prediction (tiling, normalisation, uncertainty) and the command line."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_care_losses.cli import main
from napari_care_losses.restore.predict import auto_tiles, load_model
from napari_care_losses.training.trainer import run_training

from ..conftest import tiny_config


@pytest.fixture(scope="module")
def mae_model(tiny_patches, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    return run_training(tiny_patches, tiny_config("mae", epochs=1, steps_per_epoch=2), out)


def test_auto_tiles():
    assert auto_tiles((512, 512)) == (1, 1)
    assert auto_tiles((2048, 1000), 512) == (4, 2)
    with pytest.raises(ValueError, match="at least 16"):
        auto_tiles((64, 64), 4)


@pytest.mark.slow
def test_tiled_prediction_matches_whole_frame(mae_model, sample_pair):
    model = load_model(mae_model.model_dir)
    frame = sample_pair[0][0]
    whole = model.restore(frame, tile_size=512).image[0]
    tiled = model.restore(frame, tile_size=96).image[0]
    assert whole.shape == frame.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-3 * float(np.ptp(whole)))
    # normalisation is undone: the restoration lives in the input's intensity range
    assert int(frame.min()) - 10 < np.median(whole) < int(frame.max())
    assert model.restore(frame).scale is None


@pytest.mark.slow
def test_cli_train_predict_evaluate(tmp_path, sample_pair, capsys):
    low, high = sample_pair
    tifffile.imwrite(tmp_path / "low.tif", low)
    tifffile.imwrite(tmp_path / "high.tif", high)
    rc = main(["train", str(tmp_path / "low.tif"), str(tmp_path / "high.tif"),
               "--loss", "bp", "--sigma2", "3", "--out", str(tmp_path / "runs"),
               "--patch-size", "32", "--patches-per-image", "8", "--epochs", "1",
               "--steps", "2", "--batch-size", "4", "--unet-depth", "1",
               "--unet-first", "8", "--unet-kernel", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "training bandpass" in out and "epoch   1/1" in out
    (model_dir,) = (tmp_path / "runs").iterdir()
    assert load_model(model_dir).loss.params["sigma2"] == 3.0

    rc = main(["predict", str(model_dir), str(tmp_path / "low.tif"),
               "-o", str(tmp_path / "restored.tif")])
    assert rc == 0 and tifffile.imread(tmp_path / "restored.tif").shape == low.shape

    rc = main(["evaluate", str(tmp_path / "low.tif"), str(tmp_path / "high.tif"),
               "--model", str(model_dir), "--baseline", "tv",
               "--restored", f"saved={tmp_path / 'restored.tif'}",
               "-o", str(tmp_path / "scores.csv")])
    assert rc == 0
    rows = list(csv.reader((tmp_path / "scores.csv").open()))
    assert rows[0][:3] == ["image", "Input PSNR", "Input SSIM"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "mean"]
    header = rows[0]
    model_col = next(i for i, h in enumerate(header) if h.startswith("BP (") and "PSNR" in h)
    saved_col = header.index("saved PSNR")
    assert rows[1][model_col] == rows[1][saved_col]  # same restoration, same score


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 64, 64), np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((3, 64, 64), np.uint8),
                     photometric="minisblack")  # 3 frames, not RGB
    assert main(["train", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "2 and 3 frames" in err and "Traceback" not in err
    assert main(["train", str(tmp_path / "a.tif"), str(tmp_path / "a.tif"),
                 "--loss", "l7"]) == 2
    assert "unknown loss 'l7'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nope"), str(tmp_path / "a.tif"), "-o",
                 str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "not found" in err
