"""Issue 18, the bad-input probe's classes 2, 5 and 6 through the command line: a full disk
while training, messages that name the right thing, and no temporary files left behind
(SIGTERM in every command). Class 4 (packages as models) is in tests/export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_care_losses import cli
from napari_care_losses.models.folder import ModelFolder, ModelFolderError, read_meta

from ..conftest import tiny_config

TINY_FLAGS = ["--patch-size", "32", "--patches-per-image", "16", "--steps", "2",
              "--batch-size", "4", "--unet-depth", "1", "--unet-first", "8",
              "--precision", "float32", "--seed", "1"]
CLI = [sys.executable, "-m", "napari_care_losses.cli"]
#: runs the CLI with every file limited to ARGV[1] bytes (writes beyond fail: EFBIG)
LIMITED = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
           " resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), -1));"
           " sys.argv = sys.argv[1:]; runpy.run_module('napari_care_losses.cli', "
           "run_name='__main__')")


def env() -> dict:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def pair_files(sample_pair, tmp_path):
    low, high = tmp_path / "low.tif", tmp_path / "high.tif"
    tifffile.imwrite(low, sample_pair[0])
    tifffile.imwrite(high, sample_pair[1])
    return low, high


# -- 2. a full disk while training ----------------------------------------------------------

@pytest.mark.slow
def test_weights_that_cannot_be_written_end_with_one_line_and_exit_code_2(pair_files, tmp_path):
    """A real write failure of the operating system (every file limited to 20 kB: the weights
    do not fit) while the checkpoint is written: one line, exit code 2, a truthful folder."""
    low, high = pair_files
    out = tmp_path / "models"
    res = subprocess.run([sys.executable, "-c", LIMITED, "20000", "train", str(low), str(high),
                          "--loss", "mae", "--out", str(out), "--epochs", "2", *TINY_FLAGS],
                         env=env(), capture_output=True, text=True, timeout=300)
    (model_dir,) = out.iterdir()
    line = one_error_line(res.stderr)
    assert res.returncode == 2, res
    assert line.startswith(f"napari-care-losses train: error: model folder {model_dir}: "
                           "cannot finish saving weights (File too large)"), line
    assert "FAILED" not in res.stdout
    assert sorted(p.name for p in model_dir.iterdir()) == ["care_losses.json", "config.json"]
    assert read_meta(model_dir)["status"] == "failed"
    with pytest.raises(ModelFolderError, match="training failed"):
        ModelFolder.open(model_dir).require_usable()


@pytest.mark.slow
def test_after_a_full_disk_nothing_more_is_written(tiny_patches, tmp_path, monkeypatch):
    """The epoch-1 checkpoints are written, epoch 2's hits the full disk: the best weights
    stay, and the last weights are not written again to the full disk (h5py crashed there)."""
    from ..training.test_interruptions import full_disk

    from napari_care_losses.training.trainer import Failed, train

    calls = full_disk(monkeypatch, writes_that_work=2)
    last = list(train(tiny_patches, tiny_config("mae", epochs=4), tmp_path))[-1]
    assert isinstance(last, Failed) and "disk full" in last.error
    names = [Path(c).name for c in calls]  # epoch 1: best, now; epoch 2: the failed one
    assert len(names) == 3 and "weights_last.saving.h5" not in names, names
    assert sorted(p.name for p in last.model_dir.glob("*.h5")) == [
        "weights_best.h5", "weights_now.h5"]
