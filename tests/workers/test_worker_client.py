"""Starting and ending worker processes: the start watchdog, a worker that dies while
starting, Stop during a restore, and the next run after each (no TensorFlow training)."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from napari_care_losses.restore.engine import (
    FrameDone,
    MethodDone,
    MethodFailed,
    MethodSpec,
    Stopped,
)
from napari_care_losses.training.jobs import PreviewRequest
from napari_care_losses.training.trainer import Failed, StopFlag
from napari_care_losses.workers import client
from napari_care_losses.workers.restore_runs import RestoreProcess
from napari_care_losses.workers.training_runs import run_jobs_in_process

from ..conftest import tiny_config
from .processes import child_processes

STUCK = [sys.executable, "-c", "import sys, time; print('stuck in the user script', "
         "file=sys.stderr, flush=True); time.sleep(600)"]
BROKEN = [sys.executable, "-c", "import sys; print('Traceback: ImportError: no module "
          "named tensorflow', file=sys.stderr); sys.exit(3)"]
TV = MethodSpec.for_baseline("tv", 1.0)


@pytest.fixture
def stuck_worker(monkeypatch):
    """Workers that never say hello; the start limit is 2 s."""
    monkeypatch.setattr(client, "SERVE_COMMAND", STUCK)
    monkeypatch.setenv("NAPARI_CARE_LOSSES_WORKER_START_S", "2")
    return monkeypatch


@pytest.mark.slow  # the next run starts a real worker (TensorFlow)
def test_a_restore_worker_that_never_says_hello_is_ended(stuck_worker, sample_pair):
    low, high = sample_pair
    before = set(child_processes())
    proc = RestoreProcess()
    try:
        events = list(proc.run([TV], low[:1], high[:1]))
        assert len(events) == 1 and isinstance(events[0], MethodFailed), events
        error = events[0].error
        assert "\n" not in error and error.startswith("TV: ")
        assert "did not start within 2 s" in error and "stuck in the user script" in error
        assert set(child_processes()) == before  # the stuck process was ended
        assert proc.pid is None

        stuck_worker.undo()  # the real worker again: the next run starts afresh and works
        again = list(proc.run([TV], low[:1], high[:1]))
        assert [type(e) for e in again][-1] is MethodDone, again
        assert proc.pid is not None
    finally:
        proc.close()
    assert set(child_processes()) == before


def test_a_training_worker_that_never_says_hello_is_ended(stuck_worker, sample_pair,
                                                          tmp_path):
    low, high = sample_pair
    before = set(child_processes())
    events = [item.event for item in run_jobs_in_process(
        low, high, ("low", "high"), [tiny_config("mae")], tmp_path, StopFlag(),
        PreviewRequest())]
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 1 and events[-1] is failed[0], events
    assert "training process did not start within 2 s" in failed[0].error
    assert "stuck in the user script" in failed[0].error and "\n" not in failed[0].error
    assert "stuck in the user script" in failed[0].details
    assert set(child_processes()) == before and not list(tmp_path.iterdir())


def test_a_worker_that_dies_while_starting_is_reported(monkeypatch, sample_pair):
    monkeypatch.setattr(client, "SERVE_COMMAND", BROKEN)
    low, high = sample_pair
    proc = RestoreProcess()
    try:
        (event,) = list(proc.run([TV], low[:1], high[:1]))
    finally:
        proc.close()
    assert isinstance(event, MethodFailed)
    assert "exited unexpectedly (exit code 3) while starting" in event.error
    assert "no module named tensorflow" in event.error


@pytest.mark.slow  # a real worker (TensorFlow)
def test_stop_reaches_the_restore_worker_which_stays_warm(sample_pair):
    low, high = sample_pair
    stack = np.concatenate([low] * 4)
    stop = threading.Event()
    proc = RestoreProcess()
    try:
        events = []
        for event in proc.run([TV, TV], stack, None, stop=stop):
            events.append(event)
            if isinstance(event, FrameDone):
                stop.set()
        assert isinstance(events[-1], Stopped) and events[-1].discarded == "TV", events
        assert sum(isinstance(e, FrameDone) for e in events) < len(stack)
        pid = proc.pid
        again = list(proc.run([TV], low[:1], high[:1]))  # Stop does not linger
        assert isinstance(again[-1], MethodDone) and proc.pid == pid
    finally:
        proc.close()
