"""The training dock's runs: :func:`run_jobs_in_process` trains in a fresh worker process.

Qt-free: the dock iterates the generator in a ``thread_worker``. The frames travel as
temporary ``.npy`` files that the worker memory-maps (one frame read at a time) and unlinks
at once; the events come back over the worker's socket (:mod:`.protocol`), read by this
generator itself, which passes Stop and the preview frame on between reads. The worker
runs at a lower scheduling priority (``nice`` :data:`CHILD_NICENESS`): on a busy machine
napari's event loop gets the CPU first, on an idle one training still uses every core.
An orphaned worker stops after its current batch and saves its model; napari's exit asks a
running worker to stop and waits :data:`.client.EXIT_GRACE_S` seconds for it to save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..config.train import TrainConfig
from ..training.jobs import JobEvent, Preparing, PreviewReady, PreviewRequest
from ..training.trainer import StopFlag
from .client import EXIT_GRACE_S, WorkerClient, WorkerFailed
from .protocol import PreviewFrame, Train

#: Scheduling priority of the training process (higher = yields the CPU to napari first).
CHILD_NICENESS = 10


def run_jobs_in_process(low: np.ndarray, high: np.ndarray, names: tuple[str, str],
                        configs: Sequence[TrainConfig], outdir: Path, stop: StopFlag,
                        preview: PreviewRequest) -> Iterator[JobEvent]:
    """Yield the :class:`JobEvent` objects of ``run_jobs`` run in a fresh worker process.

    ``stop`` ends training after the current batch; closing the generator sets it and
    waits for the worker to save its model. A worker that does not start or dies ends
    the run with one :class:`..training.trainer.Failed` event; the generator ends once the
    worker has exited.
    """
    n, first = len(configs), configs[0].loss.label if configs else ""
    yield JobEvent(0, n, first, Preparing("starting the training process …"))
    tmp = Path(tempfile.mkdtemp(prefix="care-train-"))
    worker = WorkerClient("training", CHILD_NICENESS, save_on_exit=True)
    forget_stop = None
    try:
        for name, data in (("low", low), ("high", high)):
            np.save(tmp / f"{name}.npy", np.asarray(data))
        request = Train(str(tmp / "low.npy"), str(tmp / "high.npy"), tuple(names),
                        tuple(configs), str(outdir), int(preview.every), int(preview.frame))
        sent = {"frame": request.preview_frame}

        def poll() -> None:  # between two reads: pass the preview frame on
            with contextlib.suppress(OSError):  # a dead worker shows as end-of-file
                if (frame := int(preview.frame)) != sent["frame"]:
                    worker.send(PreviewFrame(frame))
                    sent["frame"] = frame

        current = None
        try:
            if not worker.start(cancel=stop.is_set):
                return  # stopped before the worker said hello: nothing was trained
            with contextlib.suppress(OSError):  # died after its hello: read as EOF below
                worker.send(request)
            # Stop goes to the worker when it is set, also once nobody iterates this
            # generator any more (napari's thread worker may leave it when its dock closes)
            forget_stop = stop.when_set(worker.stop)
            if stop.is_set():
                worker.stop()
            for item in worker.replies(poll):
                current = item if isinstance(item, JobEvent) else current
                yield _load_preview(item)
        except WorkerFailed as exc:
            yield request.failure(str(exc), exc.log, current)
    except GeneratorExit:  # closed early: nobody listens, so stop the worker (its model
        stop.set()  # is saved while close() below waits for it)
        worker.stop()
        raise
    finally:
        if forget_stop is not None:
            forget_stop()
        worker.close(EXIT_GRACE_S)
        shutil.rmtree(tmp, ignore_errors=True)


def _load_preview(item: JobEvent) -> JobEvent:
    """A preview's image comes as a ``.npy`` file: read it and delete the file."""
    ev = item.event
    if not isinstance(ev, PreviewReady) or not isinstance(ev.image, str):
        return item
    image = np.load(ev.image)
    with contextlib.suppress(OSError):
        os.unlink(ev.image)
    return dataclasses.replace(item, event=dataclasses.replace(ev, image=image))
