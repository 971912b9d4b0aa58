"""Interrupted training leaves a truthful model folder (issue 9, class 6).

A run killed outright keeps the status ``training`` (refused as incomplete); a full disk while
saving weights or metadata ends the run with one line naming the folder, and never leaves a
truncated or zero-byte weights file that looks valid.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import tifffile

from napari_care_losses.cli import main
from napari_care_losses.models.folder import ModelFolder, ModelFolderError, read_meta
from napari_care_losses.models.weights import os_error_message
from napari_care_losses.training import trainer as training
from napari_care_losses.training.trainer import EpochEnd, Failed, train

from ..conftest import tiny_config

TINY_FLAGS = ["--patch-size", "32", "--patches-per-image", "16", "--steps", "3",
              "--batch-size", "4", "--lr", "2e-3", "--unet-depth", "1", "--unet-first", "8",
              "--reduce-lr-patience", "0", "--precision", "float32", "--seed", "1"]


@pytest.fixture
def pair_files(sample_pair, tmp_path):
    low, high = tmp_path / "low.tif", tmp_path / "high.tif"
    tifffile.imwrite(low, sample_pair[0])
    tifffile.imwrite(high, sample_pair[1])
    return low, high


def weight_files(model_dir):
    return sorted(p.name for p in model_dir.glob("*.h5"))


def full_disk(monkeypatch, writes_that_work: int = 0) -> list[str]:
    """Make the HDF5 weight writer (CSBDeep's, used by every ``save_weights`` of a CARE
    model) work ``writes_that_work`` times, then fail like h5py on a full disk: the file is
    created (a truncated HDF5 file) and the write raises ENOSPC. Returns the files written."""
    from napari_care_losses._tf import ensure_tensorflow

    ensure_tensorflow()  # not plainly through CSBDeep: a napari viewer may be open (Mesa)
    from csbdeep.models import base_model

    real = base_model.save_weights_to_hdf5_group
    calls: list[str] = []

    def save_weights_to_hdf5_group(f, model):
        calls.append(f.filename)
        if len(calls) <= writes_that_work:
            return real(f, model)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(base_model, "save_weights_to_hdf5_group", save_weights_to_hdf5_group)
    return calls


def one_line_disk_full(text: str, model_dir) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text
    assert f"model folder {model_dir}: disk full while saving weights" in text


@pytest.mark.slow
def test_a_killed_cli_run_is_refused_as_incomplete(pair_files, tmp_path):
    low, high = pair_files
    out = tmp_path / "models"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cli = [sys.executable, "-m", "napari_care_losses.cli"]
    proc = subprocess.Popen([*cli, "train", str(low), str(high), "--loss", "mae", "--out",
                             str(out), "--epochs", "500", *TINY_FLAGS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.monotonic() + 120
    try:
        for line in proc.stdout:  # kill once an epoch (and its checkpoint) is done
            lines.append(line)
            if "epoch" in line and "/500" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL and any("/500" in li for li in lines), lines
    (model_dir,) = out.iterdir()
    assert read_meta(model_dir)["status"] == "training"
    with pytest.raises(ModelFolderError, match="incomplete"):
        ModelFolder.open(model_dir).require_usable()

    restored = tmp_path / "restored.tif"
    res = subprocess.run([*cli, "predict", str(model_dir), str(low), "-o", str(restored)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in err and "incomplete" in err, err
    assert str(model_dir) in err and not restored.exists()


@pytest.mark.slow
def test_a_full_disk_at_the_first_checkpoint_is_one_line_from_the_cli(
        pair_files, tmp_path, monkeypatch, capsys):
    low, high = pair_files
    out = tmp_path / "models"
    calls = full_disk(monkeypatch)
    rc = main(["train", str(low), str(high), "--loss", "mae", "--out", str(out),
               "--epochs", "2", *TINY_FLAGS])
    captured = capsys.readouterr()
    (model_dir,) = out.iterdir()
    assert rc == 2 and calls[0].endswith(".saving.h5")  # the checkpoint, to a temporary file
    assert "FAILED" not in captured.out  # the error is said once, on stderr
    assert captured.err.startswith("napari-care-losses train: error: ")
    one_line_disk_full(captured.err, model_dir)
    assert "Traceback" not in captured.out + captured.err
    assert weight_files(model_dir) == []  # no zero-byte or partial weights left behind
    meta = read_meta(model_dir)
    assert meta["status"] == "failed" and "disk full" in meta["error"]
    with pytest.raises(ModelFolderError, match="training failed"):
        ModelFolder.open(model_dir).require_usable()


@pytest.mark.slow
def test_a_full_disk_later_keeps_the_earlier_best_weights_intact(
        tiny_patches, tmp_path, monkeypatch, capsys):
    # CSBDeep's epoch-1 checkpoints (weights_best, weights_now) are written, then the disk
    # is full
    calls = full_disk(monkeypatch, writes_that_work=2)
    events = list(train(tiny_patches, tiny_config("mae", epochs=6), tmp_path))
    last = events[-1]
    assert isinstance(last, Failed) and last.model_dir is not None, last
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1]
    one_line_disk_full(last.error, last.model_dir)
    assert "Traceback" not in "".join(capsys.readouterr()) and len(calls) >= 3
    # the epoch-1 checkpoints, intact; no partial file of the failed saves
    assert weight_files(last.model_dir) == ["weights_best.h5", "weights_now.h5"]
    check = training.build_care(tiny_config("mae"), "check", tmp_path / "check")
    check.keras_model.load_weights(last.model_dir / "weights_best.h5")  # complete, loadable
    assert read_meta(last.model_dir)["status"] == "failed"


@pytest.mark.slow
def test_a_full_disk_for_the_final_metadata_leaves_the_run_incomplete(
        tiny_patches, tmp_path, monkeypatch):
    real = training.write_meta

    def write_meta(model_dir, meta):
        if meta.status == "training":
            return real(model_dir, meta)
        raise OSError(f"model folder {model_dir}: cannot write care_losses.json "
                      "(No space left on device)")  # as model_folder.write_meta says it

    monkeypatch.setattr(training, "write_meta", write_meta)
    last = list(train(tiny_patches, tiny_config("mae", epochs=1), tmp_path))[-1]
    assert isinstance(last, Failed) and last.model_dir is not None
    assert last.error.startswith(f"model folder {last.model_dir}: disk full while writing "
                                 "care_losses.json (No space left on device)"), last.error
    assert "\n" not in last.error and not last.details
    assert read_meta(last.model_dir)["status"] == "training"
    with pytest.raises(ModelFolderError, match="incomplete"):
        ModelFolder.open(last.model_dir).require_usable()


def test_disk_errors_read_as_one_line(tmp_path):
    msg = os_error_message(tmp_path, "saving weights",
                           OSError(errno.ENOSPC, "No space left on device"))
    assert msg == (f"model folder {tmp_path}: disk full while saving weights (No space left "
                   "on device); free some space and train again")
    h5py_like = OSError("Unable to synchronously create file (file write failed: errno = 28,"
                        "\n error message = 'No space left on device')")
    assert "disk full" in os_error_message(tmp_path, "saving weights", h5py_like)
    other = os_error_message(tmp_path, "saving weights",
                             PermissionError(errno.EACCES, "Permission denied"))
    assert other == f"model folder {tmp_path}: cannot finish saving weights (Permission denied)"
