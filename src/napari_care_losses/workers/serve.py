"""The worker process: ``python -m napari_care_losses.workers.serve --fd N [--nice K]``.

One serve loop for every request (:mod:`.protocol`): it imports TensorFlow, says
:class:`.protocol.Hello`, then reads one request at a time from the socket (file
descriptor ``N``, inherited from napari's process), runs its handler (dispatched by the
request's type) and sends each event, then :class:`.protocol.Done`. A restore worker stays
warm between requests and keeps every model it has loaded; a training worker gets one
:class:`.protocol.Train` and is closed after it.

While a request runs, :class:`Control` answers the handler's "stop?" and "which preview
frame?" by reading the control messages waiting on the socket (no extra thread). napari's
death reads as end-of-file there: the request stops (training after its batch, saving
its model), events are no longer sent, and the worker exits. SIGINT is ignored (napari
decides when to stop); the worker leaves through ``os._exit`` once every model is saved
(TensorFlow's interpreter shutdown can spin for tens of seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import functools
import os
import select
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from .protocol import (
    Done,
    Export,
    Hello,
    ModelResolved,
    PackageWritten,
    PreviewFrame,
    Request,
    Restore,
    RestoreFiles,
    Stop,
    Train,
    Unpack,
)

#: Seconds between looks at the socket while an event waits to be sent.
POLL_S = 0.2
#: Seconds a stopped worker waits for napari to read its events before it drops them.
UNREAD_GRACE_S = 5.0


class Control:
    """The running request's view of the control messages: ``is_set``/``set`` (a stop
    event for :class:`..training.trainer.StopFlag` and the restore engine), ``frame`` and
    ``every`` (a preview request). Read from the training thread and the main thread, so
    reading the socket is locked; only the serve loop sends."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._stop = False
        self.orphaned = False  # napari's end is closed: nobody reads our events
        self.dropping = False  # stopped while napari reads no events: drop the rest
        self.every = 0
        self._frame = 0

    def begin(self, request: Request) -> None:
        self._stop = self.dropping = False
        if isinstance(request, Train):
            self.every, self._frame = request.preview_every, request.preview_frame

    def _read(self) -> None:
        with self._lock:
            try:
                while not self.orphaned and self.conn.poll(0):
                    message = self.conn.recv()
                    if isinstance(message, Stop):
                        self._stop = True
                    elif isinstance(message, PreviewFrame):
                        self._frame = message.frame
            except (EOFError, OSError):
                self.orphaned = True

    def set(self) -> None:
        self._stop = True

    def is_set(self) -> bool:
        self._read()
        return self._stop or self.orphaned

    @property
    def frame(self) -> int:
        self._read()
        return self._frame

    def send(self, event: object) -> None:
        """Send an event; once napari is gone, drop it (the request still runs to its
        stop, so a training saves its model).

        Never blocked for good on a full socket: while napari does not read (its thread
        worker may leave the generator when a dock closes), a Stop it sends is still read
        here, and once stopped with events unread for :data:`UNREAD_GRACE_S` the rest are
        dropped so that the model is saved and the worker exits."""
        if self.orphaned or self.dropping:
            return
        fd, unread_s = self.conn.fileno(), 0.0
        while True:
            readable, writable, _ = select.select([fd], [fd], [], POLL_S)
            if writable:
                try:
                    self.conn.send(event)  # small events: a writable socket takes them
                except OSError:  # BrokenPipeError, ConnectionResetError: napari is gone
                    self.orphaned = True
                return
            if readable:
                self._read()  # a Stop (or napari's end closing)
            if self.orphaned:
                return
            if self._stop:
                unread_s += POLL_S
                if unread_s >= UNREAD_GRACE_S:
                    self.dropping = True
                    return


# ----------------------------------------------------------------------------- handlers


@functools.singledispatch
def handle(request: object, control: Control, cache: dict) -> Iterator:
    """The events of ``request``; one handler per request type."""
    raise TypeError(f"unknown request {type(request).__name__}")


@handle.register
def _train(request: Train, control: Control, cache: dict) -> Iterator:
    from ..io.data import FrameStack
    from ..training.jobs import PreviewReady, run_jobs
    from ..training.trainer import StopFlag

    arrays = [np.load(p, mmap_mode="r") for p in (request.low, request.high)]
    for p in (request.low, request.high):  # the maps keep the data: nothing left behind
        with contextlib.suppress(OSError):
            os.unlink(p)
    low, high = (FrameStack.from_array(a, name)
                 for a, name in zip(arrays, request.names, strict=True))
    folder = Path(request.low).parent  # napari's temporary folder for this run
    for n, item in enumerate(run_jobs(low, high, list(request.configs), Path(request.outdir),
                                      StopFlag(control), control)):
        if isinstance(item.event, PreviewReady) and item.event.image is not None:
            # a preview goes back as a file: every message stays small, so a worker whose
            # events nobody reads any more still gets its last ones out after a Stop
            path = folder / f"preview-{n}.npy"
            np.save(path, item.event.image)
            item = dataclasses.replace(item, event=dataclasses.replace(item.event,
                                                                       image=str(path)))
        yield item


@handle.register
def _restore(request: Restore, control: Control, cache: dict) -> Iterator:
    from ..restore.engine import Calibration, MethodDone, restore_and_score

    low = np.load(request.low, mmap_mode="r")
    gt = np.load(request.gt, mmap_mode="r") if request.gt else None
    calibration = (Calibration(low, gt, request.calibration_frames, "the ground truth")
                   if request.calibration_frames and gt is not None else None)
    allocate = _file_allocator(Path(request.run_dir))
    for event in restore_and_score(list(request.specs), low, gt, control, calibration,
                                   cache, allocate):
        if isinstance(event, MethodDone):  # the stacks go back as files, not pickles
            event = MethodDone(event.name, event.index, _as_paths(event.result))
        yield event


@handle.register
def _restore_files(request: RestoreFiles, control: Control, cache: dict) -> Iterator:
    from ..restore.files import restore_files

    yield from restore_files(list(request.specs), list(request.paths), request.outdir,
                             control, cache)


@handle.register
def _export(request: Export, control: Control, cache: dict) -> Iterator:
    from ..export.bioimageio import export_package

    try:
        done = export_package(request.model_dir, request.output, **request.options)
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - one clear line
        yield request.failure(str(exc))
        return
    yield PackageWritten(Path(request.model_dir).name, str(done.path))


@handle.register
def _unpack(request: Unpack, control: Control, cache: dict) -> Iterator:
    from ..models.package_import import resolve_model_source

    try:
        folder = resolve_model_source(request.path)
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - one clear line
        yield request.failure(str(exc))
        return
    yield ModelResolved(request.path, str(folder))


def _file_allocator(run_dir: Path):
    def allocate(spec, what: str, shape: tuple[int, ...]) -> np.ndarray:
        stem = "".join(c if c.isalnum() else "_" for c in spec.key)[-60:]
        return np.lib.format.open_memmap(run_dir / f"{stem}_{what}.npy", mode="w+",
                                         dtype=np.float32, shape=shape)
    return allocate


def _as_paths(result):
    """Replace memory-mapped stacks by their file names (flushed) for the socket."""
    out = {}
    for what in ("image", "scale"):
        arr = getattr(result, what)
        if isinstance(arr, np.memmap):
            arr.flush()
            out[what] = arr.filename
        else:
            out[what] = arr
    return dataclasses.replace(result, **out)


# ----------------------------------------------------------------------------- serve loop


def serve(conn: Connection) -> None:
    """Say hello, then serve requests until napari closes its end."""
    from .._tf import ensure_tensorflow

    ensure_tensorflow()  # before Hello: the start watchdog covers the import
    conn.send(Hello(os.getpid()))
    control, cache = Control(conn), {}  # cache: model key → loaded model, kept warm
    while not control.orphaned:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # napari closed its end (or is gone)
            break
        if not isinstance(request, Request):
            continue  # a Stop or preview frame that came after its request ended
        control.begin(request)
        last = None
        try:
            for event in handle(request, control, cache):
                control.send(event)
                last = event
        except BaseException as exc:  # noqa: BLE001 - reported, the worker lives on
            control.send(request.failure(
                f"worker error: {type(exc).__name__}: {exc}", traceback.format_exc(), last))
        control.send(Done())
        if isinstance(request, Train):
            break  # a training worker is used once: it exits (its memory goes back) even
            # if nobody reads its events any more


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="napari-care-losses worker process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # napari (the parent) decides when to stop
    with contextlib.suppress(AttributeError, ValueError, RuntimeError):  # not everywhere
        faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: every thread's stack → log
    if args.nice:
        with contextlib.suppress(OSError, AttributeError):  # not on every platform
            os.nice(args.nice)  # napari's event loop comes first when cores are scarce
    os.set_inheritable(args.fd, False)  # no grandchild keeps napari's socket open
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    conn = Connection(args.fd)
    code = 0
    try:
        serve(conn)
    except BaseException:  # noqa: BLE001 - into the log napari shows the tail of
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(OSError):
            conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # every model is saved and closed: skip the interpreter's shutdown, in which
        # TensorFlow's tf.data threads can spin for tens of seconds
        os._exit(code)


if __name__ == "__main__":
    main()
