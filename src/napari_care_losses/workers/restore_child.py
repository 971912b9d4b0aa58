"""Run :func:`..restore.engine.restore_and_score` in a warm child process.

napari's process never loads TensorFlow (TensorFlow and Mesa's software OpenGL both carry
LLVM and crash each other in one process), so the compare dock restores through a
:class:`RestoreProcess`: one child process that stays alive between runs and keeps each
model it has loaded. Frames travel as ``.npy`` files that the child memory-maps; results
come back the same way (the child writes each restored stack into a memory-mapped file,
the parent reads it whole once the method is done), never one pickle per frame. Events
come back through a one-way pipe: a child that dies (a TensorFlow crash, the kernel's
out-of-memory killer, a kill) shows as end-of-file and is reported as a failure of the
method it was running; the next run starts a fresh child. Stop is a process-shared event
checked between frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from ..restore.engine import (
    Calibration,
    MethodDone,
    MethodFailed,
    MethodResult,
    MethodSpec,
    MethodStarted,
    RestoreEvent,
    restore_and_score,
)
from .training_child import (
    POLL_S,
    died_message,
    spawn_context,
)

_DONE = "done"
#: Scheduling priority of the restore child. A restore is short and waited for: at a lower
#: priority (as training runs) napari's software-OpenGL redraws starve it (measured: 2x
#: slower than the CLI on 2 cores); override with NAPARI_CARE_LOSSES_RESTORE_NICE.
RESTORE_NICENESS = int(os.environ.get("NAPARI_CARE_LOSSES_RESTORE_NICE", "0"))


@dataclass(frozen=True)
class ModelResolved:
    """The package ``source`` was unpacked into the model folder ``folder``."""

    source: str
    folder: str


@dataclass(frozen=True)
class PackageWritten:
    """A bioimage.io package of model ``name`` was written to ``path``."""

    name: str
    path: str


class RestoreProcess:
    """A child process that restores and scores stacks; start it lazily, reuse it."""

    def __init__(self) -> None:
        self._proc = None
        self._requests = None
        self._events = None
        self._stop = None
        self._tmp: Path | None = None
        self._lock = threading.Lock()  # one run at a time

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def _ensure_child(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self._forget_child()
        ctx = spawn_context()
        self._tmp = Path(tempfile.mkdtemp(prefix="care-restore-"))
        req_read, req_write = ctx.Pipe(duplex=False)
        ev_read, ev_write = ctx.Pipe(duplex=False)
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_child_main, name="care-restore", daemon=True,
                                 args=(req_read, ev_write, self._stop))
        self._proc.start()
        req_read.close()
        ev_write.close()  # the child holds the only write end: its death reads as EOF
        self._requests, self._events = req_write, ev_read
        # a daemon: at napari's exit multiprocessing ends it (nothing to save), and an
        # orphan reads end-of-file on its request pipe and exits

    def _forget_child(self) -> None:
        for conn in (self._requests, self._events):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._proc = self._requests = self._events = self._tmp = None

    def run(self, specs: Sequence[MethodSpec], low: np.ndarray, gt: np.ndarray | None = None,
            calibration_frames: Sequence[int] | None = None, stop=None,
            ) -> Iterator[RestoreEvent]:
        """Yield the engine's events; :class:`MethodDone` results hold in-memory arrays.

        ``calibration_frames``: calibrate baselines without a fixed strength on these
        frames of (``low``, ``gt``). ``stop`` (``is_set``) is passed on between frames.
        """
        with self._lock:
            self._ensure_child()
            run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self._tmp))
            paths = {}
            for key, data in (("low", low), ("gt", gt)):
                if data is not None:
                    paths[key] = str(run_dir / f"{key}.npy")
                    np.save(paths[key], np.asarray(data))
            cal = tuple(calibration_frames) if calibration_frames else None
            first = specs[0].name if specs else ""
            yield from self._serve(("run", str(run_dir), list(specs), paths, cal), run_dir,
                                   first, stop)

    def run_files(self, specs: Sequence[MethodSpec], paths: Sequence[str | Path],
                  outdir: str | Path, stop=None) -> Iterator:
        """Restore TIFF files (or folders of them) on disk into ``outdir`` with each method
        (:func:`..restore.files.restore_files`, in the child)."""
        with self._lock:
            self._ensure_child()
            run_dir = Path(tempfile.mkdtemp(prefix="files-", dir=self._tmp))
            request = ("files", list(specs), [str(p) for p in paths], str(outdir))
            yield from self._serve(request, run_dir, specs[0].name if specs else "", stop)

    def export(self, model_dir: str | Path, output: str | Path, **options) -> Iterator:
        """Export a bioimage.io package (:func:`..export.bioimageio.export_package`) in the
        child; yields :class:`PackageWritten` or :class:`MethodFailed`."""
        with self._lock:
            self._ensure_child()
            run_dir = Path(tempfile.mkdtemp(prefix="export-", dir=self._tmp))
            request = ("export", str(model_dir), str(output), options)
            yield from self._serve(request, run_dir, Path(model_dir).name, None)

    def resolve_package(self, path: str | Path) -> Iterator:
        """Unpack a bioimage.io package exported by this plugin into a model folder, in
        the child (rebuilding its weights loads TensorFlow); yields :class:`ModelResolved`
        or :class:`MethodFailed`."""
        with self._lock:
            self._ensure_child()
            run_dir = Path(tempfile.mkdtemp(prefix="resolve-", dir=self._tmp))
            yield from self._serve(("resolve", str(path)), run_dir, Path(path).name, None)

    def _serve(self, request: tuple, run_dir: Path, first: str, stop
               ) -> Iterator[RestoreEvent]:
        """Send one request, then pass the child's events on until it is done."""
        current: tuple[str, int] = (first, 0)
        try:
            self._stop.clear()
            self._requests.send(request)
            while True:
                if stop is not None and stop.is_set():
                    self._stop.set()
                if not wait([self._events, self._proc.sentinel], POLL_S):
                    continue
                try:
                    item = self._events.recv()
                except (EOFError, OSError):
                    self._proc.join()
                    name, index = current
                    why = died_message(self._proc.exitcode, "restore")
                    yield MethodFailed(name, index, f"{name}: {why}; the next run starts a "
                                       "new one")
                    self._forget_child()
                    return
                if item == _DONE:
                    return
                if isinstance(item, MethodStarted):
                    current = (item.name, item.index)
                elif isinstance(item, MethodDone):
                    item = MethodDone(item.name, item.index, _load_result(item.result))
                yield item
        except GeneratorExit:
            if self._stop is not None:
                self._stop.set()
            self._drain()
            raise
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _drain(self) -> None:
        """After an abandoned run, read the child's events up to its end marker."""
        with contextlib.suppress(EOFError, OSError):
            while self._proc is not None and self._events.poll(30):
                if self._events.recv() == _DONE:
                    return

    def close(self) -> None:
        """End the child (it finishes the frame in progress first when stopping)."""
        if self._proc is not None and self._proc.is_alive():
            self._stop.set()
            with contextlib.suppress(OSError):
                self._requests.send(("quit",))
        self._forget_child()


def _load_result(result: MethodResult) -> MethodResult:
    """Read the stacks the child wrote (paths) into memory and delete the files."""
    arrays = {}
    for what in ("image", "scale"):
        path = getattr(result, what)
        if path is None:
            arrays[what] = None
            continue
        arrays[what] = np.load(path)
        with contextlib.suppress(OSError):
            os.unlink(path)
    return dataclasses.replace(result, **arrays)


def _child_main(requests, events, stop) -> None:
    """The child: serve ``run`` requests until ``quit`` or the parent's end."""
    import traceback

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # napari decides when to stop
    with contextlib.suppress(OSError, AttributeError):
        if RESTORE_NICENESS:
            os.nice(RESTORE_NICENESS)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no TensorFlow chatter in napari's log
    from .._tf import ensure_tensorflow

    ensure_tensorflow()
    cache: dict = {}  # model key → loaded model, kept between runs
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):  # napari is gone
            break
        if request[0] not in ("run", "files", "export", "resolve"):
            break
        try:
            if request[0] == "resolve":
                from ..models.package_import import resolve_model_source

                try:
                    events.send(ModelResolved(request[1], str(resolve_model_source(request[1]))))
                except (Exception, MemoryError) as exc:  # noqa: BLE001 - one clear line
                    events.send(MethodFailed(Path(request[1]).name, 0, str(exc)))
                continue
            if request[0] == "export":
                from ..export.bioimageio import export_package

                _, model_dir, output, options = request
                try:
                    done = export_package(model_dir, output, **options)
                    events.send(PackageWritten(Path(model_dir).name, str(done.path)))
                except (Exception, MemoryError) as exc:  # noqa: BLE001 - one clear line
                    events.send(MethodFailed(Path(model_dir).name, 0, str(exc)))
                continue
            if request[0] == "files":
                from ..restore.files import restore_files

                _, specs, paths, outdir = request
                for event in restore_files(specs, paths, outdir, stop, cache):
                    events.send(event)
                continue
            _, run_dir, specs, paths, cal_frames = request
            low = np.load(paths["low"], mmap_mode="r")
            gt = np.load(paths["gt"], mmap_mode="r") if "gt" in paths else None
            calibration = (Calibration(low, gt, cal_frames, "the ground truth")
                           if cal_frames and gt is not None else None)
            allocate = _file_allocator(Path(run_dir))
            for event in restore_and_score(specs, low, gt, stop, calibration, cache, allocate):
                if isinstance(event, MethodDone):
                    event = MethodDone(event.name, event.index, _as_paths(event.result))
                events.send(event)
        except BrokenPipeError:
            break
        except BaseException as exc:  # noqa: BLE001 - reported, the child lives on
            with contextlib.suppress(OSError):
                events.send(MethodFailed("restore", 0, f"restore process error: "
                                         f"{type(exc).__name__}: {exc}\n"
                                         f"{traceback.format_exc(limit=3)}"))
        finally:
            with contextlib.suppress(OSError):
                events.send(_DONE)
    with contextlib.suppress(OSError):
        events.close()
    os._exit(0)  # skip TensorFlow's slow interpreter shutdown


def _file_allocator(run_dir: Path):
    def allocate(spec: MethodSpec, what: str, shape: tuple[int, ...]) -> np.ndarray:
        stem = "".join(c if c.isalnum() else "_" for c in spec.key)[-60:]
        return np.lib.format.open_memmap(run_dir / f"{stem}_{what}.npy", mode="w+",
                                         dtype=np.float32, shape=shape)
    return allocate


def _as_paths(result: MethodResult) -> MethodResult:
    """Replace memory-mapped stacks by their file names (flushed) for the pipe."""
    out = {}
    for what in ("image", "scale"):
        arr = getattr(result, what)
        if isinstance(arr, np.memmap):
            arr.flush()
            out[what] = arr.filename
            del arr
        else:
            out[what] = arr
    return dataclasses.replace(result, **out)
