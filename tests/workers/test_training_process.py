"""The training dock's child-process runner, without Qt: events, Stop, a crashed child."""

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

from napari_care_losses.models.folder import read_meta
from napari_care_losses.restore.predict import load_model
from napari_care_losses.training.jobs import Preparing, PreviewReady, PreviewRequest
from napari_care_losses.training.trainer import (
    BatchEnd,
    EpochEnd,
    Failed,
    Finished,
    Started,
    StopFlag,
)
from napari_care_losses.workers.training_runs import run_jobs_in_process

from ..conftest import tiny_config
from .processes import workers

pytestmark = pytest.mark.slow  # each test starts a Python + TensorFlow process


def children() -> list[int]:
    return workers()


def test_two_losses_in_a_child_process(sample_pair, tmp_path):
    low, high = sample_pair
    configs = [tiny_config("mae"), tiny_config("fft")]
    preview = PreviewRequest(every=1, frame=1)
    events = []
    for item in run_jobs_in_process(low, high, ("low layer", "high layer"), configs,
                                    tmp_path, StopFlag(), preview):
        events.append(item)
        if isinstance(item.event, Finished):
            preview.frame = 0  # the viewer moved: the second loss previews frame 0
    kinds = [type(e.event) for e in events]
    assert kinds[0] is Preparing and kinds.count(Started) == 2 and Failed not in kinds
    assert kinds.count(EpochEnd) == 4 and kinds.count(BatchEnd) == 2 * 2 * 3
    previews = [e.event for e in events if isinstance(e.event, PreviewReady)]
    assert [p.frame for p in previews] == [1, 1, 0, 0]
    assert all(p.image.shape == (256, 256) for p in previews)
    done = [e for e in events if isinstance(e.event, Finished)]
    assert [e.job for e in done] == [0, 1] and [e.label for e in done] == ["MAE", "FFT"]
    for e in done:
        meta = read_meta(e.event.model_dir)
        assert meta["status"] == "finished" and meta["data"]["low"] == "low layer"
        assert load_model(e.event.model_dir).restore(low[0, :64, :64]).image.shape == (1, 64, 64)
    assert not children()


def test_stop_flag_reaches_the_child(sample_pair, tmp_path):
    low, high = sample_pair
    stop = StopFlag()
    configs = [tiny_config("mae", epochs=500), tiny_config("fft")]
    events = []
    for item in run_jobs_in_process(low, high, ("low", "high"), configs, tmp_path, stop,
                                    PreviewRequest()):
        events.append(item.event)
        if isinstance(item.event, EpochEnd):
            stop.set()
    finished = [e for e in events if isinstance(e, Finished)]
    assert len(finished) == 1 and finished[0].stopped  # the second loss never started
    assert read_meta(finished[0].model_dir)["status"] == "stopped"
    assert not children()


def test_a_killed_child_is_reported(sample_pair, tmp_path):
    low, high = sample_pair
    events = []
    gen = run_jobs_in_process(low, high, ("low", "high"), [tiny_config("mae", epochs=500)],
                              tmp_path, StopFlag(), PreviewRequest())
    for item in gen:
        events.append(item.event)
        if isinstance(item.event, BatchEnd) and "killed" not in events:
            (child,) = children()
            threading.Timer(0.2, os.kill, (child, signal.SIGKILL)).start()
            events.append("killed")
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 1 and "signal 9" in failed[0].error
    assert "out of memory" in failed[0].error
    assert not children()
    again = [item.event for item in run_jobs_in_process(  # the next run starts afresh
        low, high, ("low", "high"), [tiny_config("mae")], tmp_path, StopFlag(),
        PreviewRequest())]
    assert isinstance(again[-1], Finished) and not any(isinstance(e, Failed) for e in again)
    assert not children()


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_the_worker_saves_its_model_when_napari_ends(tmp_path, how):
    """napari killed: the orphaned worker stops after its batch and saves its model;
    napari exiting: its exit handler stops the worker and waits for the save."""
    script = Path(__file__).with_name("train_parent.py")
    env = {**os.environ, "NAPARI_CARE_LOSSES_HOME": str(tmp_path / "home")}
    parent = subprocess.Popen([sys.executable, str(script), how, str(tmp_path / "models")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    try:
        line = parent.stdout.readline()
        (worker,) = (int(p) for p in line.split())
        if how == "kill":
            parent.kill()
        assert parent.wait(120) == (-signal.SIGKILL if how == "kill" else 0)
        if how == "exit":  # the exit handler waited for the worker to save and exit
            assert not _alive(worker)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived napari by 120 s"
    finally:
        parent.kill()
        parent.wait()
    (model,) = (tmp_path / "models").iterdir()
    meta = read_meta(model)
    assert meta["status"] == "stopped", (meta["status"], parent.stderr.read()[-3000:])
    assert load_model(model).restore(np.zeros((32, 32), np.float32)).image.shape == (1, 32, 32)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_reaches_a_worker_whose_events_nobody_reads(sample_pair, tmp_path):
    """napari's thread worker may leave the generator when its dock closes: Stop still
    reaches the worker, which gets its last events (previews too) out, saves and exits."""
    low, high = sample_pair
    stop = StopFlag()
    gen = run_jobs_in_process(low, high, ("low", "high"), [tiny_config("mae", epochs=500)],
                              tmp_path, stop, PreviewRequest(every=1, frame=0))
    for item in gen:
        if isinstance(item.event, PreviewReady):
            break  # nobody reads from here on (the generator is not closed either)
    (worker,) = children()
    time.sleep(3)  # epochs and previews pile up unread
    stop.set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.2)
    assert not _alive(worker), "the worker did not stop while its events went unread"
    (model,) = tmp_path.iterdir()
    assert read_meta(model)["status"] == "stopped"
    gen.close()
