"""Child processes for the napari docks: TensorFlow never runs in napari's process.

This module holds what both kinds of job share (the spawn context, the exit handler, how a
death is reported) and runs the training job (:func:`..training.jobs.run_jobs`) in a child;
:mod:`.restore_child` runs the restore-and-score engine in a warm one.

TensorFlow holds Python's global interpreter lock for long stretches while it builds and
compiles a model (hundreds of milliseconds on a CPU), which froze napari's event loop when
training ran in a thread of napari's own process. In a child process it never competes
with the viewer; a crash of TensorFlow (or the kernel's out-of-memory killer) ends the
child, not napari; and napari's OpenGL libraries never meet TensorFlow's LLVM.

Qt-free: the dock runs :func:`run_jobs_in_process` in a ``thread_worker``. The frames
travel as temporary ``.npy`` files that the child memory-maps (read one frame at a time)
and unlinks at once. Events come back through a one-way pipe that a pump thread always
drains; only the child holds its write end, so a child that dies (even mid-message) shows
as end-of-file, and a child whose napari died gets a broken pipe. Stop is a process-shared
event, checked after every batch; the frame to preview is a shared integer that follows the
viewer. An orphaned child stops after its current batch and saves its model. The child runs
at a lower scheduling priority (``nice`` 10): on a busy machine napari's event loop gets the
CPU first, on an idle one training still uses every core. When napari exits, running
children are asked to stop and given :data:`EXIT_GRACE_S` seconds to save their model.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from multiprocessing import util as _mp_util  # noqa: F401 - registers its exit handler
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from ..config.train import TrainConfig
from ..training.jobs import JobEvent, Preparing, PreviewRequest
from ..training.trainer import Failed, StopFlag

#: Seconds between checks of the Stop flag, the preview frame and the child's health.
POLL_S = 0.1
#: Scheduling priority of the training process (higher = yields the CPU to napari first).
CHILD_NICENESS = 10
#: Seconds napari's exit waits for a stopping child to finish its batch and save.
EXIT_GRACE_S = 120.0
#: What the child sends after its last event.
_DONE = "done"
#: Running children and their stop events (for the exit handler).
_RUNNING: dict = {}


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
    ctx = spawn_context()
    tmp = Path(tempfile.mkdtemp(prefix="care-train-"))
    try:
        paths = []
        for name, data in (("low", low), ("high", high)):
            paths.append(str(tmp / f"{name}.npy"))
            np.save(paths[-1], np.asarray(data))
        reader, writer = ctx.Pipe(duplex=False)
        shared_stop, frame = ctx.Event(), ctx.Value("i", int(preview.frame))
        child = ctx.Process(target=_child_main, name="care-train", args=(
            paths, names, list(configs), str(outdir), shared_stop, frame, preview.every,
            writer))
        child.start()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    writer.close()  # the child holds the only write end: its death reads as end-of-file
    register_child(child, shared_stop)
    received: queue.Queue = queue.Queue()
    pump = threading.Thread(target=_pump, name="care-train-pump", daemon=True, args=(
        child, reader, received, stop, shared_stop, preview, frame, tmp, (0, n, first)))
    pump.start()
    try:
        while (item := received.get()) != _DONE:
            yield item
    except GeneratorExit:  # closed early: nobody listens, so stop the child (the pump
        stop.set()  # still waits for it and cleans up)
        raise
    pump.join()  # the child has exited and its temporary files are gone


def _pump(child, reader, received: queue.Queue, stop: StopFlag, shared_stop, preview,
          frame, tmp: Path, job: tuple[int, int, str]) -> None:
    """Move the child's events into ``received`` until it is done, pass Stop and the
    preview frame on, report a child that died, and clean up after it."""
    try:
        while True:
            if stop.is_set():
                shared_stop.set()
            frame.value = int(preview.frame)
            if not wait([reader, child.sentinel], POLL_S):
                continue
            try:
                item = reader.recv()  # what it sent before it exited is still read first
            except (EOFError, OSError):  # exited (or died mid-message) without _DONE
                child.join()
                received.put(JobEvent(*job, Failed(died_message(child.exitcode), None)))
                return
            if item == _DONE:
                return
            if isinstance(item, JobEvent):
                job = (item.job, item.n_jobs, item.label)  # a death is the running job's
            received.put(item)
    finally:
        received.put(_DONE)  # a second _DONE after a normal end is never read
        reader.close()
        child.join()
        unregister_child(child)
        shutil.rmtree(tmp, ignore_errors=True)


def spawn_context():
    """Never fork a process that runs Qt and threads: spawn a fresh interpreter."""
    return mp.get_context("spawn")


def register_child(child, stop_event) -> None:
    """Let the exit handler stop ``child`` (and wait for it to save) when napari exits."""
    _RUNNING[child] = stop_event


def unregister_child(child) -> None:
    _RUNNING.pop(child, None)


def died_message(exitcode: int | None, job: str = "training") -> str:
    if exitcode is not None and exitcode < 0:
        hint = " (killed: out of memory?)" if exitcode == -9 else ""
        return f"the {job} process was ended by signal {-exitcode}{hint}"
    return f"the {job} process exited unexpectedly (exit code {exitcode})"


@atexit.register  # after multiprocessing.util's handler, so it runs before it (LIFO)
def _stop_children() -> None:
    """At exit (before multiprocessing joins its children without a timeout): ask running
    children to stop, give them time to save, then end those that hang."""
    for shared_stop in list(_RUNNING.values()):
        shared_stop.set()
    for child in list(_RUNNING):
        if not child.is_alive():
            continue
        child.join(EXIT_GRACE_S)
        if child.is_alive():
            child.kill()
            child.join()


class _SharedPreview:
    """The child's view of the dock's :class:`PreviewRequest` (frame shared live)."""

    def __init__(self, every: int, frame) -> None:
        self.every = every
        self._frame = frame

    @property
    def frame(self) -> int:
        return int(self._frame.value)


class _StopOrOrphaned:
    """The child's stop event: set by the dock, or implied when napari's process is gone."""

    def __init__(self, event) -> None:
        self.event = event
        self.parent = mp.parent_process()

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set() or (self.parent is not None and not self.parent.is_alive())


def _child_main(paths: list[str], names: tuple[str, str], configs: list[TrainConfig],
                outdir: str, stop_event, frame, every: int, writer) -> None:
    """Entry point of the child process: run the jobs, send every event, then ``_DONE``."""
    import traceback

    from ..io.data import FrameStack
    from ..training.jobs import run_jobs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # napari (the parent) decides when to stop
    with contextlib.suppress(OSError, AttributeError):  # not on every platform
        os.nice(CHILD_NICENESS)  # napari's event loop comes first when cores are scarce
    try:
        arrays = [np.load(p, mmap_mode="r") for p in paths]
        for p in paths:  # the maps keep the data; nothing is left behind if we die
            with contextlib.suppress(OSError):
                os.unlink(p)
        low, high = (FrameStack.from_array(a, name)
                     for a, name in zip(arrays, names, strict=True))
        stop = StopFlag(_StopOrOrphaned(stop_event))
        for item in run_jobs(low, high, configs, Path(outdir), stop,
                             _SharedPreview(every, frame)):
            writer.send(item)
    except BrokenPipeError:
        pass  # napari is gone: the job saw the orphaned stop flag and saved its model
    except BaseException as exc:  # noqa: BLE001 - reported to the dock, never lost
        label = configs[0].loss.label if configs else ""
        with contextlib.suppress(OSError):
            writer.send(JobEvent(0, len(configs), label, Failed(
                f"training process failed: {type(exc).__name__}: {exc}", None,
                traceback.format_exc())))
    finally:
        with contextlib.suppress(OSError):
            writer.send(_DONE)
        writer.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # every model is saved and closed: skip the interpreter's shutdown, in which
        # TensorFlow's tf.data threads can spin for tens of seconds
        os._exit(0)
