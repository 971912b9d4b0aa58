"""The compare dock's runs: Restore, Restore files, re-scoring (a mixin of CompareWidget).

Each run goes through the dock's :class:`..workers.restore_runs.RestoreProcess` (a warm child
process running the core's restore-and-score engine) in a ``thread_worker``; this part
turns the engine's events into progress, status text and result layers.
"""

from __future__ import annotations

import time

from napari.qt.threading import create_worker
from qtpy.QtWidgets import QFileDialog

from ..restore.engine import (
    FrameDone,
    MethodDone,
    MethodFailed,
    MethodResult,
    MethodStarted,
    Stopped,
)
from ..restore.files import FileWritten, tiff_files
from . import _compare_layers as L
from ._compare_jobs import STRENGTH_CALIBRATE, score_many

#: Seconds between frame-progress updates of the dock.
PROGRESS_S = 0.5
#: The progress bar's text between runs.
FRAMES_FORMAT = "%v / %m frames"


class _Failure:
    """The worker's exception, queued behind the events it raised after."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


_END = object()  # the worker has finished


class CompareRuns:
    """Run control of :class:`.compare_widget.CompareWidget` (uses its widgets and state)."""

    def restore(self) -> None:
        """Run every ticked method on the input stack, in a child process."""
        if self.is_running:
            return
        problem = self.data_problem()
        low, specs = self.input_frames(), self.checked_specs()
        if problem is None and not specs:
            problem = "tick at least one method"
        if problem is not None:
            self._say(problem, error=True)
            return
        gt = self.ground_truth_frames()
        calibrate = gt is not None and self.strength_combo.currentText() == STRENGTH_CALIBRATE
        cal = (L.current_frame(self.viewer, len(low)),) if calibrate else None
        specs = sorted(specs, key=lambda s: s.rank)
        self._run = {"gt_layer": self.gt_layer(), "done": [], "failed": [], "n": len(low),
                     "total": len(specs), "discarded": None,
                     "earlier": [n for n in self.results if n not in {s.name for s in specs}]}
        self._stop.clear()
        self.progress.setRange(0, len(specs) * len(low))
        self.progress.setValue(0)
        self._set_running(True)
        self.view.pin_grid(specs)
        # progress goes to the bar's text: a new status text re-lays the dock out, which
        # costs napari several repaints (see _event_pacer); the first method replaces it
        self.progress.setFormat("starting the restore process…" if self._process.pid is None
                                else "restoring · %v/%m frames")
        self._say("")
        self._start_run(self._process.run, specs, low, gt, cal, self._stop)

    def _start_run(self, job, *args) -> None:
        """Run a :class:`RestoreProcess` job in a worker thread; its events, an error and
        the end come, in order and paced (:class:`._event_pacer.EventPacer`), to
        :meth:`_on_event`, :meth:`_on_error` and :meth:`_end_run`."""
        worker = create_worker(job, *args, _ignore_errors=True)
        worker.yielded.connect(self._pacer.push)
        worker.errored.connect(lambda exc: self._pacer.push(_Failure(exc)))
        worker.finished.connect(self._finish_run)
        self._worker = worker
        worker.start()

    def _finish_run(self) -> None:
        """The worker is done: end the run once the queued events are handed over."""
        self._pacer.finish(_END)

    def _paced(self, item) -> None:
        if item is _END:
            self._end_run()
        elif isinstance(item, _Failure):
            self._on_error(item.exc)
        else:
            self._on_event(item)

    def stop(self) -> None:
        """Stop after the current frame; finished methods stay, the current one is dropped."""
        self._stop.set()

    def _set_running(self, running: bool) -> None:
        self.restore_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _on_event(self, ev) -> None:
        run = self._run
        if isinstance(ev, FrameDone) and not self._progress_due(ev):
            return  # frame progress at most every PROGRESS_S: each repaint costs napari
        if isinstance(ev, MethodStarted):
            run["current"] = ev.name
            if run.get("files"):
                self._say(f"{ev.name}: starting (file {ev.index + 1} of {run['total']})")
            else:
                name = ev.name if len(ev.name) <= 30 else ev.name[:29] + "…"
                self.progress.setFormat(f"{name} · method {ev.index + 1}/{ev.n_methods}"
                                        " · %v/%m frames")
            if ev.note:
                self._say(f"{ev.name}: {ev.note}")
        elif isinstance(ev, FrameDone) and run.get("files"):
            self.progress.setRange(0, ev.n_frames)
            self.progress.setValue(ev.frame + 1)
            self._say(f"{ev.name}: frame {ev.frame + 1}/{ev.n_frames} "
                      f"(file {ev.index + 1} of {run['total']})")
        elif isinstance(ev, FileWritten):
            run["done"].append(ev.image)
        elif isinstance(ev, FrameDone):
            self.progress.setValue(ev.index * ev.n_frames + ev.frame + 1)
        elif isinstance(ev, MethodDone):
            self.progress.setValue((ev.index + 1) * run["n"])
            self._on_method_done(ev.result)
        elif isinstance(ev, MethodFailed):
            run["failed"].append(ev.error)
            self._say(ev.error, error=True)
        elif isinstance(ev, Stopped):
            run["discarded"] = ev.discarded

    def _progress_due(self, ev: FrameDone) -> bool:
        """Repaints of the dock are slow where napari draws with software OpenGL (the
        window is recomposited): show frame progress at most every PROGRESS_S seconds,
        the end of a method through its MethodDone."""
        if ev.frame + 1 == ev.n_frames and not self._run.get("files"):
            return False  # MethodDone follows at once and moves the bar
        now = time.monotonic()
        if now - self._run.get("shown", 0.0) < PROGRESS_S:
            return False
        self._run["shown"] = now
        return True

    def _on_method_done(self, result: MethodResult) -> None:
        if self._run.get("gt_layer") is not self.gt_layer():
            result.scores = None  # ground truth changed meanwhile: rescore later
        self.results[result.spec.name] = result
        self._run["done"].append(result.spec.name)
        self.view.show_result(result)

    def _on_error(self, exc: Exception) -> None:
        self._stop.set()
        self._run.setdefault("failed", []).append(f"restore failed: {exc}")
        self._say(f"restore failed: {exc}", error=True)

    def _end_run(self) -> None:
        self._worker = None
        self._set_running(False)
        self.progress.setFormat(FRAMES_FORMAT)
        self.view.unpin_grid()
        run, self._run = self._run, {}
        if run:
            done, failed = run["done"], run["failed"]
            parts = [f"restored with {len(done)} of {run['total']} method(s)"]
            if run.get("files"):
                parts = [f"wrote {len(done)} of {run['total']} restored file(s)"
                         + (f", e.g. {done[-1]}" if done else "")]
            if self._stop.is_set():
                parts[0] = f"stopped: kept {len(done)} finished method(s)"
                if run["discarded"]:
                    parts.append(f"discarded the partial {run['discarded']}")
            earlier = [n for n in run["earlier"] if n in self.results]
            if earlier and (self._stop.is_set() or failed):
                parts.append(f"still shown from an earlier run: {', '.join(earlier)}")
            text = "; ".join(parts) + "."
            if failed:
                text += "\n" + "\n".join(failed)
            if self._stop.is_set() or failed or run.get("files"):
                self._say(text, error=bool(failed))
            else:  # a plain success is said by the bar (the status text is left empty)
                self.progress.setFormat(f"{text[:-1]} · %v/%m frames")
                self.progress.setValue(self.progress.maximum())
                self._say("")
        self._stop.clear()
        if not self.rescore():
            self.run_finished.emit()

    def rescore(self) -> bool:
        """Score, in a worker, every row whose per-frame scores are not all cached."""
        gt = self.ground_truth_frames()
        todo = self.view.unscored(gt) if self.results else {}
        if gt is None or not todo or self.is_running:
            return False

        def done() -> None:
            self._worker = None
            self._set_running(False)
            self.view.refresh_table()
            if not self._stop.is_set():
                self._say(f"{previous} · scored against {self.gt_combo.currentText()!r}"
                          if previous else f"scored against {self.gt_combo.currentText()!r}")
            self.run_finished.emit()

        previous = self.status.text() if not self.status.styleSheet() else ""
        self._run = {}
        self._stop.clear()
        self._set_running(True)
        self._say("scoring against the ground truth…")
        worker = create_worker(score_many, todo, gt, self._stop, _ignore_errors=True)
        worker.yielded.connect(lambda item: self.view.store_scores(*item))
        worker.finished.connect(done)
        worker.errored.connect(lambda exc: self._say(f"scoring failed: {exc}", error=True))
        self._worker = worker
        worker.start()
        return True

    def _files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "TIFF files to restore", "",
                                                "TIFF (*.tif *.tiff)")
        if not files:
            return
        outdir = QFileDialog.getExistingDirectory(self, "Folder for the restored files")
        if outdir:
            self.restore_files(files, outdir)

    def restore_files(self, paths: list, outdir: str) -> None:
        """Restore TIFF files (or folders of them) on disk with the ticked methods, in the
        restore process; progress, Stop and errors as for Restore."""
        specs = sorted(self.checked_specs(), key=lambda s: s.rank)
        if self.is_running or not specs:
            if not specs:
                self._say("tick at least one method", error=True)
            return
        files = tiff_files(paths)  # a folder stands for the TIFFs in it
        self._run = {"done": [], "failed": [], "total": len(files) * len(specs),
                     "discarded": None, "earlier": [], "files": True}
        self._stop.clear()
        self.progress.setRange(0, 0)  # frame counts are known file by file
        self._set_running(True)
        self._say(f"restoring {len(files)} file(s) into {outdir} …")
        self._start_run(self._process.run_files, specs, files, outdir, self._stop)
