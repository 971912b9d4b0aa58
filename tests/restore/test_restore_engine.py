"""The restore-and-score engine and its child process (no Qt)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_care_losses.restore.engine import (
    Calibration,
    FrameDone,
    MethodDone,
    MethodFailed,
    MethodSpec,
    MethodStarted,
    Stopped,
    restore_all,
    restore_and_score,
)
from napari_care_losses.workers.restore_runs import RestoreProcess

from ..conftest import tiny_config


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_patches):
    from napari_care_losses.training.trainer import run_training

    out = tmp_path_factory.mktemp("models")
    return run_training(tiny_patches, tiny_config("laplace"), out).model_dir


def test_baselines_scored_per_frame(sample_pair):
    low, high = sample_pair
    specs = [MethodSpec.for_baseline("tv"), MethodSpec.for_baseline("nlm", factor=1.0)]
    events = list(restore_and_score(specs, low, high,
                                    calibration=Calibration(low, high, (0,), "train")))
    kinds = [type(e) for e in events]
    assert kinds == [MethodStarted, FrameDone, FrameDone, MethodDone] * 2
    tv, nlm = (e.result for e in events if isinstance(e, MethodDone))
    assert tv.image.shape == low.shape and tv.image.dtype == np.float32
    assert len(tv.scores) == 2 and all(np.isfinite(s.psnr) for s in tv.scores)
    assert "calibrated on train frame 0" in tv.note and nlm.note == "strength x1 (fixed)"
    started = [e for e in events if isinstance(e, MethodStarted)]
    assert [s.index for s in started] == [0, 1] and started[0].n_frames == 2


def test_non_finite_restoration_fails_naming_method_and_frame(sample_pair, monkeypatch):
    from napari_care_losses.restore import baselines

    low, high = sample_pair
    real = baselines.Baseline.restore_frame

    def broken(self, img):
        out = real(self, img)
        out[3, 3] = np.nan
        return out

    monkeypatch.setattr(baselines.Baseline, "restore_frame", broken)
    results, errors = restore_all([MethodSpec.for_baseline("tv", 1.0)], low, high)
    assert results == {} and len(errors) == 1
    assert "TV failed at frame 0" in errors[0] and "NaN" in errors[0]


def test_stop_discards_the_method_in_progress(sample_pair):
    low, high = sample_pair
    stop = threading.Event()
    seen = []
    for event in restore_and_score([MethodSpec.for_baseline("tv", 1.0)] * 2, low, high, stop):
        seen.append(event)
        if isinstance(event, FrameDone):
            stop.set()
    assert isinstance(seen[-1], Stopped) and seen[-1].discarded == "TV"
    assert not any(isinstance(e, MethodDone) for e in seen)


def test_mismatched_pair_is_refused(sample_pair):
    low, high = sample_pair
    with pytest.raises(ValueError, match="differ"):
        list(restore_and_score([MethodSpec.for_baseline("tv")], low, high[:1]))


@pytest.mark.slow
def test_child_process_matches_in_process_and_survives_a_kill(tiny_model, sample_pair):
    """Models restore in the warm child exactly as in-process; a killed child is reported
    as the running method's failure and the next run works."""
    low, high = sample_pair
    specs = [MethodSpec.for_model(tiny_model), MethodSpec.for_baseline("tv", 1.0)]
    proc = RestoreProcess()
    try:
        events = list(proc.run(specs, low, high))
        done = {e.name: e.result for e in events if isinstance(e, MethodDone)}
        assert set(done) == {s.name for s in specs}, events
        model_res = done[specs[0].name]
        assert model_res.scale is not None and np.all(np.isfinite(model_res.image))
        local, errors = restore_all(specs[:1], low, high)
        assert not errors
        np.testing.assert_allclose(model_res.image, local[specs[0].name].image, rtol=1e-4,
                                   atol=1e-3)
        assert [s.psnr for s in model_res.scores] == pytest.approx(
            [s.psnr for s in local[specs[0].name].scores], abs=1e-3)
        pid = proc.pid

        # kill the child while it restores: a failure event, no exception, no hang
        failed = []
        for event in proc.run(specs[:1] * 3, np.concatenate([low] * 4), None):
            if isinstance(event, FrameDone) and event.frame == 1:
                os.kill(proc.pid, signal.SIGKILL)
            failed += [event] if isinstance(event, MethodFailed) else []
        assert failed and "ended by signal 9" in failed[-1].error

        again = [e for e in proc.run(specs[1:], low, high) if isinstance(e, MethodDone)]
        assert len(again) == 1 and proc.pid != pid
    finally:
        proc.close()


def test_the_parent_never_loads_tensorflow(tmp_path):
    """Importing the engine and the process runner loads no TensorFlow (napari's process)."""
    code = ("import sys; import napari_care_losses.workers.restore_runs, "
            "napari_care_losses.restore.engine, napari_care_losses.workers.training_runs, "
            "napari_care_losses.models.folder, napari_care_losses.restore.predict; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_close_ends_an_idle_child(sample_pair):
    low, high = sample_pair
    proc = RestoreProcess()
    list(proc.run([MethodSpec.for_baseline("tv", 1.0)], low[:1], high[:1]))
    pid = proc.pid
    assert pid is not None
    proc.close()
    time.sleep(0.2)
    assert proc.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_restore_files_writes_whole_files_or_nothing(sample_pair, tmp_path):
    import tifffile

    from napari_care_losses.restore.files import FileWritten, restore_files

    low, _ = sample_pair
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(src / f"{name}.tif", low, photometric="minisblack")
    spec = MethodSpec.for_baseline("tv", 1.0)
    written = [e for e in restore_files([spec], [src], tmp_path / "out")
               if isinstance(e, FileWritten)]
    assert [Path(e.image).name for e in written] == ["a_TV.tif", "b_TV.tif"]
    expected, _ = restore_all([spec], low)
    np.testing.assert_allclose(tifffile.imread(written[0].image), expected["TV"].image)

    stop = threading.Event()
    events = []
    for event in restore_files([spec], [src / "a.tif"], tmp_path / "stopped", stop):
        events.append(event)
        if isinstance(event, FrameDone):
            stop.set()
    assert isinstance(events[-1], Stopped)
    assert list((tmp_path / "stopped").iterdir()) == []  # no partial file left

    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    failed = [e for e in restore_files([spec], [bad], tmp_path / "out")
              if isinstance(e, MethodFailed)]
    assert len(failed) == 1 and "bad.tif" in failed[0].error
