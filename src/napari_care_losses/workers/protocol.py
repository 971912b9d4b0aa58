"""What napari's process and a worker process say to each other: frozen dataclasses only.

A worker is ``python -m napari_care_losses.workers.serve`` (:mod:`.serve`), started by the
one parent-side client (:class:`.client.WorkerClient`), never through ``multiprocessing``:
its ``spawn`` start re-imports the user's ``__main__``, and a napari script without an
``if __name__ == "__main__":`` guard then opened a second napari inside the worker, which
never served a request. The two ends share one Unix socket pair
(:func:`socket.socketpair`, the child's end inherited as a file descriptor) carrying
:class:`multiprocessing.connection.Connection` messages (pickles of the classes below).

Why a socket pair and not a ``Listener`` on a named socket or two pipes: it has no name in
the file system, so no other process can connect and no authkey is needed; there is no
``accept`` to wait on (a worker that never starts cannot hang the parent in it: the start
watchdog only waits for :class:`Hello` on an already connected socket, with a timeout);
it is duplex (requests, Stop and the preview frame one way, events the other, one file
descriptor); and either end's death reads as end-of-file at the other: napari sees a
crashed or killed worker, an orphaned worker sees napari gone and stops after its batch,
saving its model.

Messages. Parent → child: one request at a time (:class:`Train`, :class:`Restore`,
:class:`RestoreFiles`, :class:`Export`, :class:`Unpack`), and while it runs the control
messages :class:`Stop` and :class:`PreviewFrame`. Child → parent: :class:`Hello` once,
then per request its events (the engine's and the training jobs' own event classes, plus
:class:`ModelResolved` and :class:`PackageWritten`) and :class:`Done`. Each request knows
how to word its own failure (:meth:`Request.failure`) in the events its dock reads, so a
worker that never started, died, or raised ends the run in the dock's own terms.

The path of one batch-end event (:class:`..training.trainer.BatchEnd`), napari to Keras:

* before (``multiprocessing`` spawn, two plumbings): Keras fit thread (callback) → queue
  → child main thread (the training generator) → one-way pipe → pump thread in napari's
  process → second queue → napari worker thread (the dock's ``thread_worker``) → Qt signal
  → GUI thread: 2 processes, 5 threads, 3 queues (2 queues + the pipe).
* after: Keras fit thread (callback) → queue → child main thread (the training generator,
  in :func:`.serve.serve`) → socket → napari worker thread (the dock's ``thread_worker``,
  whose generator reads the socket itself, :meth:`.client.WorkerClient.replies`) → Qt
  signal → GUI thread: 2 processes, 4 threads, 2 queues (1 queue + the socket). Stop and
  the preview frame travel back on the same socket: Stop sent by the thread that sets the
  dock's flag (:meth:`..training.trainer.StopFlag.when_set`), the frame by that worker
  thread between two waits of at most :data:`.client.POLL_S`; the child reads them when
  the trainer asks whether to stop (after every batch) or the previewer asks for the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config.train import TrainConfig
from ..restore.engine import MethodFailed, MethodSpec
from ..training.jobs import JobEvent
from ..training.trainer import Failed

# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """A job for the worker; the child answers with events and then :class:`Done`."""

    def failure(self, error: str, details: str = "", current: object = None) -> object:
        """The event that ends this request in failure (``current``: the last event seen,
        so a death is reported against the job or method that was running)."""
        raise NotImplementedError

    @property
    def title(self) -> str:
        """The name the first failure event carries."""
        return ""


@dataclass(frozen=True)
class Train(Request):
    """Train one model per config (:func:`..training.jobs.run_jobs`); ``low``/``high``
    are ``.npy`` files the child memory-maps and unlinks."""

    low: str
    high: str
    names: tuple[str, str]
    configs: tuple[TrainConfig, ...]
    outdir: str
    preview_every: int = 0
    preview_frame: int = 0

    @property
    def title(self) -> str:
        return self.configs[0].loss.label if self.configs else ""

    def failure(self, error: str, details: str = "", current: object = None) -> JobEvent:
        job, label = (current.job, current.label) if isinstance(current, JobEvent) else (
            0, self.title)
        return JobEvent(job, len(self.configs), label, Failed(error, None, details))


@dataclass(frozen=True)
class _MethodRequest(Request):
    def failure(self, error: str, details: str = "", current: object = None) -> MethodFailed:
        name, index = self.title, 0
        if current is not None and hasattr(current, "name") and hasattr(current, "index"):
            name, index = current.name, current.index
        return MethodFailed(name, index, error)


@dataclass(frozen=True)
class Restore(_MethodRequest):
    """Restore and score ``low`` (and ``gt``: ``.npy`` files) with each method; results
    are written as ``.npy`` files into ``run_dir`` and sent back as paths."""

    specs: tuple[MethodSpec, ...]
    run_dir: str
    low: str
    gt: str | None = None
    calibration_frames: tuple[int, ...] | None = None

    @property
    def title(self) -> str:
        return self.specs[0].name if self.specs else ""


@dataclass(frozen=True)
class RestoreFiles(_MethodRequest):
    """Restore TIFF files or folders on disk into ``outdir``
    (:func:`..restore.files.restore_files`)."""

    specs: tuple[MethodSpec, ...]
    paths: tuple[str, ...]
    outdir: str

    @property
    def title(self) -> str:
        return self.specs[0].name if self.specs else ""


@dataclass(frozen=True)
class Export(_MethodRequest):
    """Write a bioimage.io package (:func:`..export.bioimageio.export_package`)."""

    model_dir: str
    output: str
    options: dict = field(default_factory=dict, hash=False)

    @property
    def title(self) -> str:
        return Path(self.model_dir).name


@dataclass(frozen=True)
class Unpack(_MethodRequest):
    """Unpack a bioimage.io package into a model folder (rebuilding its weights loads
    TensorFlow): :func:`..models.package_import.resolve_model_source`."""

    path: str

    @property
    def title(self) -> str:
        return Path(self.path).name


# ----------------------------------------------------------------------------- control


@dataclass(frozen=True)
class Stop:
    """End the running request: training after its batch, a restore after its frame."""


@dataclass(frozen=True)
class PreviewFrame:
    """The frame the training preview restores (it follows napari's frame slider)."""

    frame: int


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Hello:
    """The worker is up (TensorFlow imported) and serves requests."""

    pid: int


@dataclass(frozen=True)
class Done:
    """The request's last event was sent."""


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
