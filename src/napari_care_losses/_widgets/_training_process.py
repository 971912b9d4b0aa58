"""Run the training dock's job (:func:`._training_run.run_jobs`) in a child process.

TensorFlow holds Python's global interpreter lock for long stretches while it builds and
compiles a model (hundreds of milliseconds on a CPU), which froze napari's event loop when
training ran in a thread of napari's own process. In a child process it never competes
with the viewer; a crash of TensorFlow (or the kernel's out-of-memory killer) ends the
child, not napari; and napari's OpenGL libraries never meet TensorFlow's LLVM.

Qt-free: the dock runs :func:`run_jobs_in_process` in a ``thread_worker``. The frames
travel as temporary ``.npy`` files that the child memory-maps (read one frame at a time);
events come back through a queue that a pump thread always drains (so the child can never
block on it); Stop is a process-shared event, checked after every batch; the frame to
preview is a shared integer that follows the viewer. An orphaned child (napari killed)
stops after its current batch and saves its model. The child runs at a lower scheduling
priority (``nice`` 10): on a busy machine napari's event loop gets the CPU first, on an idle
one training still uses every core.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..config import TrainConfig
from ..training import Failed, StopFlag
from ._training_run import JobEvent, Preparing, PreviewRequest

#: Seconds between checks of the Stop flag, the preview frame and the child's health.
POLL_S = 0.1
#: Scheduling priority of the training process (higher = yields the CPU to napari first).
CHILD_NICENESS = 10
#: What the child sends after its last event; ``_EMPTY`` stands for "nothing queued".
_DONE = "done"
_EMPTY = object()


def run_jobs_in_process(low: np.ndarray, high: np.ndarray, names: tuple[str, str],
                        configs: Sequence[TrainConfig], outdir: Path, stop: StopFlag,
                        preview: PreviewRequest) -> Iterator[JobEvent]:
    """Yield the :class:`JobEvent` objects of ``run_jobs`` run in a fresh process.

    ``stop`` ends training after the current batch, also when nobody iterates this
    generator any more (a pump thread watches it); closing the generator sets it. The
    child saves its model before it exits; the generator ends once the child has exited.
    """
    n, first = len(configs), configs[0].loss.label if configs else ""
    yield JobEvent(0, n, first, Preparing("starting the training process …"))
    tmp = Path(tempfile.mkdtemp(prefix="care-train-"))
    paths = []
    for name, data in (("low", low), ("high", high)):
        paths.append(str(tmp / f"{name}.npy"))
        np.save(paths[-1], np.asarray(data))
    ctx = mp.get_context("spawn")  # never fork a process that runs Qt and threads
    events, shared_stop = ctx.Queue(), ctx.Event()
    frame = ctx.Value("i", int(preview.frame))
    child = ctx.Process(target=_child_main, name="care-train", args=(
        paths, names, list(configs), str(outdir), shared_stop, frame, preview.every, events))
    child.start()
    received: queue.Queue = queue.Queue()
    pump = threading.Thread(target=_pump, name="care-train-pump", daemon=True, args=(
        child, events, received, stop, shared_stop, preview, frame, tmp, (0, n, first)))
    pump.start()
    try:
        while (item := received.get()) != _DONE:
            yield item
    except GeneratorExit:  # closed early: nobody listens, so stop the child (the pump
        stop.set()  # still waits for it and cleans up)
        raise
    pump.join()  # the child has exited and its temporary files are gone


def _pump(child, events, received: queue.Queue, stop: StopFlag, shared_stop, preview,
          frame, tmp: Path, job: tuple[int, int, str]) -> None:
    """Move the child's events into ``received`` until it is done, pass Stop and the
    preview frame on, report a child that died, and clean up after it."""
    try:
        while True:
            if stop.is_set():
                shared_stop.set()
            frame.value = int(preview.frame)
            item = _next(events, POLL_S)
            if item is _EMPTY and not child.is_alive():
                item = _next(events)  # it may have sent its last events as it ended
                if item is _EMPTY:
                    received.put(JobEvent(*job, Failed(_died(child.exitcode), None)))
                    break
            if isinstance(item, JobEvent):
                job = (item.job, item.n_jobs, item.label)  # a death is the running job's
            if item is not _EMPTY:
                received.put(item)
            if item == _DONE:
                return
    finally:
        received.put(_DONE)  # a second _DONE after a normal end is never read
        child.join()
        shutil.rmtree(tmp, ignore_errors=True)


def _next(events, timeout: float = 0.0):
    """The next queued item, or ``_EMPTY`` if none came within ``timeout`` seconds."""
    try:
        return events.get(timeout=timeout) if timeout else events.get_nowait()
    except queue.Empty:
        return _EMPTY


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        hint = " (killed: out of memory?)" if exitcode == -9 else ""
        return f"the training process was ended by signal {-exitcode}{hint}"
    return f"the training process exited unexpectedly (exit code {exitcode})"


class _StopOrOrphaned:
    """The child's stop event: set by the dock, or implied when napari's process is gone."""

    def __init__(self, event) -> None:
        self.event = event
        self.parent = mp.parent_process()

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set() or (self.parent is not None and not self.parent.is_alive())


class _SharedPreview:
    """The child's view of the dock's :class:`PreviewRequest` (frame shared live)."""

    def __init__(self, every: int, frame) -> None:
        self.every = every
        self._frame = frame

    @property
    def frame(self) -> int:
        return int(self._frame.value)


def _child_main(paths: list[str], names: tuple[str, str], configs: list[TrainConfig],
                outdir: str, stop_event, frame, every: int, events) -> None:
    """Entry point of the child process: run the jobs, send every event, then ``_DONE``."""
    import traceback

    from ..data import FrameStack
    from ._training_run import run_jobs

    with contextlib.suppress(OSError, AttributeError):  # not on every platform
        os.nice(CHILD_NICENESS)  # napari's event loop comes first when cores are scarce
    try:
        low, high = (FrameStack.from_array(np.load(p, mmap_mode="r"), name)
                     for p, name in zip(paths, names, strict=True))
        stop = StopFlag(_StopOrOrphaned(stop_event))
        for item in run_jobs(low, high, configs, Path(outdir), stop,
                             _SharedPreview(every, frame)):
            events.put(item)
    except BaseException as exc:  # noqa: BLE001 - reported to the dock, never lost
        label = configs[0].loss.label if configs else ""
        events.put(JobEvent(0, len(configs), label,
                            Failed(f"training process failed: {exc}", None,
                                   traceback.format_exc())))
    finally:
        events.put(_DONE)
        events.close()
        events.join_thread()  # everything sent, every model saved and closed
        sys.stdout.flush()
        sys.stderr.flush()
        # skip the interpreter's shutdown: TensorFlow's tf.data threads can spin in it for
        # tens of seconds ("Python interpreter state is not initialized")
        os._exit(0)
