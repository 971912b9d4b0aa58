"""The compare dock's runs: Restore, Restore files and re-scoring, fed into the session.

Each run goes through the dock's :class:`..workers.restore_runs.RestoreProcess` (a warm
child process running the core's restore-and-score engine) in a ``thread_worker``; this
controller turns the engine's events into calls of the dock's
:class:`..restore.compare_session.CompareSession` (which the layers, the table and the
status line observe) and into the progress bar's text.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from napari.qt.threading import create_worker

from ..restore.compare_session import CompareSession, Source
from ..restore.engine import FrameDone, MethodDone, MethodFailed, MethodStarted, Stopped
from ..restore.files import FileWritten, tiff_files
from ._compare_jobs import first_bad_frame, score_many
from ._event_pacer import EventPacer

#: Seconds between frame-progress updates of the dock.
PROGRESS_S = 0.5
#: The progress bar's text between runs.
FRAMES_FORMAT = "%v / %m frames"


class _Failure:
    """The worker's exception, queued behind the events it raised after."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


_END = object()  # the worker has finished


def _reason(name: str, error: str) -> str:
    """An engine error without the method's name in front ("TV failed at frame 0: …" →
    "at frame 0: …"): the row and panel name the method already."""
    text = error[len(name):].lstrip(" :") if error.startswith(name) else error
    return text[len("failed"):].lstrip(" :") if text.startswith("failed") else text


class RunControl:
    """Starts the dock's runs and feeds their events to the session, in paced batches.

    ``ui`` is the dock: its ``progress`` bar, ``set_running(bool)``, ``view`` and
    ``run_finished`` signal, and what its pickers hold (``input_layer()`` …).
    """

    def __init__(self, ui, session: CompareSession, process) -> None:
        self.ui, self.session, self.process = ui, session, process
        self.stop_event = threading.Event()
        self._worker = None
        self._run = None  # RunIdentity of the restore run in progress
        self._files: dict | None = None  # the Restore files run in progress
        self._shown = 0.0
        self.pacer = EventPacer(self._paced, parent=ui)

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    # ------------------------------------------------------------------ Restore

    def restore(self, specs, low: np.ndarray, gt: np.ndarray | None, calibrate_frame,
                settings: dict) -> None:
        """Run ``specs`` on ``low`` (the pickers' input) as a new run of the session."""
        ui, session = self.ui, self.session
        inp, gt_layer = ui.input_layer(), ui.gt_layer()
        run = session.begin(Source(inp.name, low.shape),
                            Source(gt_layer.name, gt.shape) if gt is not None else None,
                            specs, len(low), settings)
        self.stop_event.clear()
        bad = first_bad_frame(low)
        if bad is not None:  # nothing restores NaN: every method fails with the reason
            session.fail(run.number, "input", f"input {inp.name!r} has NaN or infinite "
                         f"pixels in frame {bad}")
            session.end(run.number)
            ui.progress.setRange(0, 1)
            ui.progress.setValue(0)
            ui.progress.setFormat(f"run {run.number}: nothing restored")
            ui.run_finished.emit()
            return
        specs = sorted(specs, key=lambda s: s.rank)  # the session's (panel) order
        self._run, self._shown = run, 0.0
        ui.progress.setRange(0, len(specs) * len(low))
        ui.progress.setValue(0)
        ui.set_running(True)
        ui.view.pin_grid(specs)
        # progress goes to the bar's text: a new status text re-lays the dock out, which
        # costs napari several repaints (see _event_pacer); the first method replaces it
        ui.progress.setFormat("starting the restore process…" if self.process.pid is None
                              else "restoring · %v/%m frames")
        cal = (calibrate_frame,) if calibrate_frame is not None else None
        self._start(self.process.run, specs, low, gt, cal, self.stop_event)

    def _start(self, job, *args) -> None:
        """Run a :class:`RestoreProcess` job in a worker thread; its events, an error and
        the end come, in order and paced, to :meth:`_paced`."""
        worker = create_worker(job, *args, _ignore_errors=True)
        worker.yielded.connect(self.pacer.push)
        worker.errored.connect(lambda exc: self.pacer.push(_Failure(exc)))
        worker.finished.connect(lambda: self.pacer.finish(_END))
        self._worker = worker
        worker.start()

    def stop(self) -> None:
        """Stop after the current frame; finished methods stay, the current one is dropped."""
        self.stop_event.set()

    def _paced(self, item) -> None:
        if self._files is not None:
            self._on_file_event(item)
        elif item is _END:
            self._end_run()
        elif isinstance(item, _Failure):
            self.stop_event.set()
            self.session.fail(self._run.number, "restore", f"restore failed: {item.exc}")
        else:
            self._on_event(item)

    def _on_event(self, ev) -> None:
        run, session, bar = self._run.number, self.session, self.ui.progress
        if isinstance(ev, FrameDone):
            if self._progress_due(ev):
                bar.setValue(ev.index * ev.n_frames + ev.frame + 1)
        elif isinstance(ev, MethodStarted):
            session.method_started(run, ev.name)
            name = ev.name if len(ev.name) <= 30 else ev.name[:29] + "…"
            bar.setFormat(f"{name} · method {ev.index + 1}/{ev.n_methods} · %v/%m frames")
            if ev.note:
                session.note(f"{ev.name}: {ev.note}")
        elif isinstance(ev, MethodDone):
            bar.setValue((ev.index + 1) * self._run.n_frames)
            session.add_result(run, ev.result)
        elif isinstance(ev, MethodFailed):
            session.fail(run, ev.name, _reason(ev.name, ev.error))
            if self.process.pid is None:  # the child died: say it beyond the dock too
                self.ui.notify_error(f"Compare restorations: {ev.error}")
        elif isinstance(ev, Stopped):
            session.discard(run, ev.discarded)

    def _progress_due(self, ev: FrameDone) -> bool:
        """Repaints of the dock are slow where napari draws with software OpenGL (the
        window is recomposited): show frame progress at most every PROGRESS_S seconds,
        the end of a method through its MethodDone."""
        if ev.frame + 1 == ev.n_frames:
            return False  # MethodDone follows at once and moves the bar
        now = time.monotonic()
        if now - self._shown < PROGRESS_S:
            return False
        self._shown = now
        return True

    def _end_run(self) -> None:
        run, self._run = self._run, None
        self._worker = None
        self.ui.set_running(False)
        self.ui.view.unpin_grid()
        self.session.end(run.number, stopped=self.stop_event.is_set())
        done = len(self.session.results())
        bar = self.ui.progress
        bar.setFormat(f"run {run.number}: restored with {done} of {len(run.methods)} "
                      "method(s) · %v/%m frames")
        bar.setValue(done * run.n_frames)
        bar.setToolTip(self.session.summary())  # the whole of it, should the bar cut it
        self.stop_event.clear()
        if not self.rescore():
            self.ui.run_finished.emit()

    # ------------------------------------------------------------------ re-scoring

    def rescore(self) -> bool:
        """Score, in a worker, this run's results (and the input) that the current ground
        truth fits but that are not scored against it yet."""
        ui, session = self.ui, self.session
        gt, low = ui.ground_truth_frames(), ui.input_frames()
        if (self.is_running or session.run is None or gt is None or low is None
                or not session.gt_fits()):
            return False  # nothing compared yet, or nothing to score against
        todo = session.unscored()
        key = ui.view.input_key()
        if None in session.cached_input_scores(len(low)) and first_bad_frame(low) is None:
            todo = {key: low, **todo}
        if not todo:
            return False
        run = session.run.number if session.run is not None else 0
        inp, gt_src = session.input, session.gt

        def store(item) -> None:
            name, scores = item
            if name == key:
                session.store_input_scores(inp, gt_src, scores)
            else:
                session.store_scores(run, name, gt_src, scores)

        def done() -> None:
            self._worker = None
            ui.set_running(False)
            if not self.stop_event.is_set():
                session.note(f"scored against {gt_src.name!r}")
            self.stop_event.clear()
            ui.run_finished.emit()

        self.stop_event.clear()
        ui.set_running(True)
        worker = create_worker(score_many, todo, gt, self.stop_event, _ignore_errors=True)
        worker.yielded.connect(store)
        worker.finished.connect(done)
        worker.errored.connect(lambda exc: session.note(f"scoring failed: {exc}", error=True))
        self._worker = worker
        worker.start()
        return True

    # ------------------------------------------------------------------ Restore files

    def restore_files(self, specs, paths: list, outdir: str) -> None:
        """Restore TIFF files (or folders of them) on disk with ``specs``, in the restore
        process; progress, Stop and errors as for Restore. Not part of the comparison."""
        files = tiff_files(paths)  # a folder stands for the TIFFs in it
        if not files:
            self.session.note(f"no TIFF files in {', '.join(map(str, paths))}", error=True)
            return
        self.session.clear_notes()
        self._files = {"done": [], "failed": [], "notes": [],
                       "total": len(set(files)) * len(specs)}
        self.stop_event.clear()
        self.ui.progress.setRange(0, 0)  # frame counts are known file by file
        self.ui.set_running(True)
        self.session.note(f"restoring {len(files)} file(s) into {outdir} …")
        self._start(self.process.run_files, specs, files, outdir, self.stop_event)

    def _on_file_event(self, ev) -> None:
        run, bar = self._files, self.ui.progress
        if isinstance(ev, MethodStarted):
            self.session.note(f"{ev.name}: starting (file {ev.index + 1} of {run['total']})")
        elif isinstance(ev, FrameDone) and self._progress_due(ev):
            bar.setRange(0, ev.n_frames)
            bar.setValue(ev.frame + 1)
        elif isinstance(ev, FileWritten):
            run["done"].append(ev.image)
            if ev.note:
                run["notes"].append(ev.note)
        elif isinstance(ev, MethodFailed):
            run["failed"].append(ev.error)
            if self.process.pid is None:
                self.ui.notify_error(f"Restore files: {ev.error}")
        elif isinstance(ev, _Failure):
            self.stop_event.set()
            run["failed"].append(f"restore failed: {ev.exc}")
        elif ev is _END:
            self._end_files()

    def _end_files(self) -> None:
        run, self._files = self._files, None
        self._worker = None
        self.ui.set_running(False)
        done, failed = run["done"], run["failed"]
        text = f"wrote {len(done)} of {run['total']} restored file(s)"
        if done:
            text += f", e.g. {done[-1]}"
        if self.stop_event.is_set():
            text = f"stopped: {text}"
        lines = [text + ".", *run["notes"], *failed]
        self.ui.progress.setRange(0, 1)
        self.ui.progress.setValue(1 if done else 0)
        self.ui.progress.setFormat(f"wrote {len(done)} of {run['total']} file(s)")
        self.session.note("\n".join(lines), error=bool(failed))
        self.stop_event.clear()
        self.ui.run_finished.emit()
