"""The compare dock's runs: :class:`RestoreProcess`, a warm worker process that restores,
scores, restores files, exports and unpacks packages.

napari's process never loads TensorFlow (TensorFlow and Mesa's software OpenGL both carry
LLVM and crash each other in one process), so the compare dock restores through one worker
(:mod:`.serve`) that stays alive between runs and keeps each model it has loaded. Frames
travel as ``.npy`` files that the worker memory-maps; results come back the same way (the
worker writes each restored stack into a memory-mapped file, this side reads it whole once
the method is done), never one pickle per frame. A worker that does not start in time or
dies (a TensorFlow crash, the kernel's out-of-memory killer, a kill) is reported as a
failure of the method it was running, and the next run starts a fresh one. Stop is passed
on between reads and checked by the worker between frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..restore.engine import MethodDone, MethodResult, MethodSpec, MethodStarted, RestoreEvent
from .client import WorkerClient, WorkerFailed
from .protocol import (
    Done,
    Export,
    ModelResolved,
    PackageWritten,
    Request,
    Restore,
    RestoreFiles,
    Unpack,
)

__all__ = ["ModelResolved", "PackageWritten", "RestoreProcess"]


def _restore_niceness() -> int:
    try:
        return int(os.environ.get("NAPARI_CARE_LOSSES_RESTORE_NICE", "0"))
    except ValueError:
        return 0


#: Scheduling priority of the restore worker. A restore is short and waited for: at a lower
#: priority (as training runs) napari's software-OpenGL redraws starve it (measured: 2x
#: slower than the CLI on 2 cores); override with NAPARI_CARE_LOSSES_RESTORE_NICE.
RESTORE_NICENESS = _restore_niceness()
#: Seconds an abandoned run waits for the worker to finish its frame before ending it.
DRAIN_S = 30.0


class RestoreProcess:
    """A worker process that restores and scores stacks; started lazily, then reused."""

    def __init__(self) -> None:
        self._worker: WorkerClient | None = None
        self._lock = threading.Lock()  # one run at a time

    @property
    def pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    def run(self, specs: Sequence[MethodSpec], low: np.ndarray, gt: np.ndarray | None = None,
            calibration_frames: Sequence[int] | None = None, stop=None,
            ) -> Iterator[RestoreEvent]:
        """Yield the engine's events; :class:`MethodDone` results hold in-memory arrays.

        ``calibration_frames``: calibrate baselines without a fixed strength on these
        frames of (``low``, ``gt``). ``stop`` (``is_set``) is passed on between frames.
        """
        with self._lock:
            run_dir = Path(tempfile.mkdtemp(prefix="care-restore-"))
            paths = {}
            for key, data in (("low", low), ("gt", gt)):
                if data is not None:
                    paths[key] = str(run_dir / f"{key}.npy")
                    np.save(paths[key], np.asarray(data))
            cal = tuple(calibration_frames) if calibration_frames else None
            yield from self._serve(Restore(tuple(specs), str(run_dir), paths["low"],
                                           paths.get("gt"), cal), stop, run_dir)

    def run_files(self, specs: Sequence[MethodSpec], paths: Sequence[str | Path],
                  outdir: str | Path, stop=None) -> Iterator:
        """Restore TIFF files (or folders of them) on disk into ``outdir`` with each method
        (:func:`..restore.files.restore_files`, in the worker)."""
        with self._lock:
            yield from self._serve(RestoreFiles(tuple(specs), tuple(str(p) for p in paths),
                                                str(outdir)), stop)

    def export(self, model_dir: str | Path, output: str | Path, **options) -> Iterator:
        """Export a bioimage.io package (:func:`..export.bioimageio.export_package`) in the
        worker; yields :class:`PackageWritten` or :class:`MethodFailed`."""
        with self._lock:
            yield from self._serve(Export(str(model_dir), str(output), dict(options)), None)

    def resolve_package(self, path: str | Path) -> Iterator:
        """Unpack a bioimage.io package exported by this plugin into a model folder, in
        the worker (rebuilding its weights loads TensorFlow); yields
        :class:`ModelResolved` or :class:`MethodFailed`."""
        with self._lock:
            yield from self._serve(Unpack(str(path)), None)

    def _serve(self, request: Request, stop, run_dir: Path | None = None) -> Iterator:
        """Send one request, then pass the worker's events on until it is done."""
        worker, current = None, None
        sent_stop = False

        def poll() -> None:
            nonlocal sent_stop
            if stop is not None and not sent_stop and stop.is_set():
                worker.stop()
                sent_stop = True

        try:
            worker = self._ensure_worker()
            worker.send(request)
            for item in worker.replies(poll):
                if isinstance(item, MethodStarted):
                    current = item
                elif isinstance(item, MethodDone):
                    item = MethodDone(item.name, item.index, _load_result(item.result))
                yield item
        except (WorkerFailed, OSError) as exc:  # OSError: it died before the request
            self._forget(worker)
            name = current.name if current is not None else request.title
            yield request.failure(f"{name}: {exc}; the next run starts a new one",
                                  current=current)
        except GeneratorExit:  # abandoned: let the worker finish its frame, stay warm
            if worker is not None:
                worker.stop()
                if not _drain(worker):
                    self._forget(worker)
            raise
        finally:
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)

    def _ensure_worker(self) -> WorkerClient:
        if self._worker is not None and self._worker.alive:
            return self._worker
        self._forget(self._worker)
        worker = WorkerClient("restore", RESTORE_NICENESS)
        worker.start()  # WorkerFailed: nothing kept, the next run starts afresh
        self._worker = worker
        return worker

    def _forget(self, worker: WorkerClient | None) -> None:
        if worker is not None:
            worker.close(kill=not worker.alive)
        if worker is self._worker:
            self._worker = None

    def close(self) -> None:
        """End the worker (it finishes the frame in progress first when stopping)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            worker.close()


def _drain(worker: WorkerClient) -> bool:
    """After an abandoned run, read the worker's events up to :class:`Done`."""
    deadline = time.monotonic() + DRAIN_S
    with contextlib.suppress(EOFError, OSError):
        while worker.conn.poll(max(0.0, deadline - time.monotonic())):
            if isinstance(worker.conn.recv(), Done):
                return True
    return False


def _load_result(result: MethodResult) -> MethodResult:
    """Read the stacks the worker wrote (paths) into memory and delete the files."""
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
