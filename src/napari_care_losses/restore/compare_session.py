"""The compare dock's state, without Qt or napari: runs, their results, scores and failures.

A :class:`CompareSession` holds one run at a time. A run has an identity
(:class:`RunIdentity`: its number, the input and ground truth as they were when it started,
the methods, the frame count and the settings); every result, score, failure and spectrum
input is an :class:`Entry` of exactly one run. :meth:`CompareSession.begin` replaces the
last run: its entries go (``run_started`` names them, so that every panel, table row,
overlay and spectrum curve of them goes too). Events of an older run are ignored.

Results are scored only against a ground truth of the run's own input (same name and
shape), and only when the ground truth has the input's shape; results of another input say
so instead of a score. Failures are part of the run: a failed method's row, the run's
summary and the status text keep them until the next run; informational notes (re-scoring,
model loaded, a picker's problem) are shown *after* them, never in their place.

Observers connect to the session's signals (plain callbacks, run in the caller's thread):

* ``run_started(run, removed)``: a new run; ``removed`` are the last run's entries.
* ``entry_changed(entry)``: a method of the current run finished, failed or was discarded.
* ``scores_changed()``: scores were stored, or what can be scored changed.
* ``run_ended(run)``: the run is over (``outcome`` says how).
* ``status_changed(text, error)``: the status text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .engine import MethodResult, MethodSpec
from .metrics import Score, score

PENDING, RUNNING, DONE, FAILED, NOT_RUN, DISCARDED = (
    "pending", "running", "done", "failed", "not run", "discarded")


class Signal:
    """A list of callbacks (the session must not need Qt or psygnal)."""

    def __init__(self) -> None:
        self._slots: list[Callable] = []

    def connect(self, slot: Callable) -> None:
        self._slots.append(slot)

    def disconnect(self, slot: Callable) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args) -> None:
        for slot in list(self._slots):
            slot(*args)


@dataclass(frozen=True)
class Source:
    """An input or ground truth as a run (or the pickers) see it: its name and shape."""

    name: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, name: str | None, data) -> Source | None:
        return None if name is None or data is None else cls(name, tuple(np.shape(data)))


@dataclass(frozen=True)
class RunIdentity:
    number: int
    input: Source
    gt: Source | None
    methods: tuple[str, ...]
    n_frames: int
    settings: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        gt = f" against {self.gt.name!r}" if self.gt is not None else ""
        return f"run {self.number}: {self.input.name!r}{gt}"


@dataclass(eq=False)
class Entry:
    """One method of one run: its result (when done), its error (when failed), its scores
    per ground truth and frame, and cached inputs of its spectra."""

    spec: MethodSpec
    run: int
    state: str = PENDING
    result: MethodResult | None = None
    error: str | None = None
    scores: dict[Source, dict[int, Score]] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # e.g. spectra per (frame, gt)

    @property
    def name(self) -> str:
        return self.spec.name


class CompareSession:
    """The state the compare dock, its layers, table, overlays and spectra observe."""

    def __init__(self) -> None:
        self.run: RunIdentity | None = None
        self.outcome: str | None = None  # None while running: "done", "stopped", "failed"
        self.entries: dict[str, Entry] = {}
        self.input: Source | None = None  # what the pickers show now
        self.gt: Source | None = None
        self._summary = ""
        self._problem = ""
        self._notes = {"error": "", "info": ""}
        self._input_scores: dict[tuple[Source, Source], dict[int, Score]] = {}
        self._count = 0
        self.run_started, self.entry_changed = Signal(), Signal()
        self.scores_changed, self.run_ended, self.status_changed = Signal(), Signal(), Signal()

    # ------------------------------------------------------------------ a run

    def begin(self, input: Source, gt: Source | None, specs: Sequence[MethodSpec],
              n_frames: int, settings: dict | None = None) -> RunIdentity:
        """Start a new run; the last run's entries are removed."""
        self._count += 1
        specs = sorted(specs, key=lambda s: s.rank)
        run = RunIdentity(self._count, input, gt, tuple(s.name for s in specs), int(n_frames),
                          tuple(sorted((k, str(v)) for k, v in (settings or {}).items())))
        removed = list(self.entries.values())
        self.run, self.outcome = run, None
        self.entries = {s.name: Entry(s, run.number) for s in specs}
        self._summary = ""
        self.clear_notes()
        self.run_started.emit(run, removed)
        self._status()
        return run

    @property
    def running(self) -> bool:
        return self.run is not None and self.outcome is None

    def _entry(self, run: int, name: str) -> Entry | None:
        """The entry ``name`` of run ``run`` while that run is the current one."""
        if self.run is None or run != self.run.number:
            return None  # a late event of an older run
        return self.entries.get(name)

    def method_started(self, run: int, name: str) -> None:
        entry = self._entry(run, name)
        if entry is not None and entry.state == PENDING:
            entry.state = RUNNING

    def add_result(self, run: int, result: MethodResult) -> Entry | None:
        """Store a finished method's result; its scores count only against the run's own
        ground truth (the one it was restored with)."""
        entry = self._entry(run, result.spec.name)
        if entry is None or entry.state in (FAILED, DONE):
            return None
        entry.state, entry.result, entry.error = DONE, result, None
        if result.scores is not None and self.run.gt is not None:
            entry.scores[self.run.gt] = dict(enumerate(result.scores))
        self.entry_changed.emit(entry)  # observers show it with its scores
        return entry

    def fail(self, run: int, name: str, reason: str) -> Entry | None:
        """A method failed; its row and panel say so until the next run. A name that is
        not a method of the run (e.g. the whole process) fails every method not done."""
        entry = self._entry(run, name)
        if entry is None:
            if self.run is None or run != self.run.number:
                return None
            for e in self.entries.values():
                if e.state in (PENDING, RUNNING):
                    self._fail(e, reason)
            self._status()
            return None
        self._fail(entry, reason)
        self._status()
        return entry

    def _fail(self, entry: Entry, reason: str) -> None:
        entry.state, entry.error, entry.result = FAILED, reason, None
        self.entry_changed.emit(entry)

    def discard(self, run: int, name: str | None) -> None:
        entry = self._entry(run, name) if name else None
        if entry is not None and entry.state in (PENDING, RUNNING):
            entry.state = DISCARDED
            self.entry_changed.emit(entry)

    def end(self, run: int, stopped: bool = False) -> str:
        """The run is over: methods never reached are marked, the summary is composed."""
        if self.run is None or run != self.run.number or self.outcome is not None:
            return self._summary
        crashed = None
        for e in self.entries.values():
            if e.state == RUNNING:
                e.state = DISCARDED if stopped else NOT_RUN
            elif e.state == PENDING:
                e.state = NOT_RUN
            if e.state == FAILED and crashed is None:
                crashed = e
        failed = [e for e in self.entries.values() if e.state == FAILED]
        self.outcome = "stopped" if stopped else "failed" if failed else "done"
        self._summary = self.summary()
        self._notes["info"] = ""  # progress notes of the run (e.g. a baseline's strength)
        self._status()
        self.run_ended.emit(self.run)
        return self._summary

    def summary(self) -> str:
        entries = list(self.entries.values())
        done = [e.name for e in entries if e.state == DONE]
        parts = [f"restored with {len(done)} of {len(entries)} method(s)"]
        if self.outcome == "stopped":
            parts = [f"stopped: kept {len(done)} finished method(s)"]
            parts += [f"discarded the partial {e.name}" for e in entries
                      if e.state == DISCARDED]
        not_run = [e.name for e in entries if e.state == NOT_RUN]
        if not_run:
            parts.append(f"not run: {', '.join(not_run)}")
        return "\n".join(["; ".join(parts) + ".", *self._failure_lines()])

    def _failure_lines(self) -> list[str]:
        """``"A, B failed: reason"``, one line per distinct reason."""
        by_reason: dict[str, list[str]] = {}
        for e in self.failures():
            by_reason.setdefault(e.error or "", []).append(e.name)
        return [f"{', '.join(names)} failed: {why}" for why, names in by_reason.items()]

    # ------------------------------------------------------------------ status text

    def failures(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.state == FAILED]

    def note(self, text: str, error: bool = False) -> None:
        """A line shown after the run's summary and failures: an error note (e.g. a model
        that did not load) stays until :meth:`clear_notes` or the next run; an
        informational one (e.g. re-scoring) replaces only the last informational one."""
        self._notes["error" if error else "info"] = text
        self._status()

    def clear_notes(self) -> None:
        self._notes = {"error": "", "info": ""}

    def set_problem(self, text: str | None) -> None:
        """What is wrong with the pickers' choice now ('' or None: nothing)."""
        self._problem = text or ""
        self._status()

    def status(self) -> tuple[str, bool]:
        """``(text, is_error)``: the run's failures stay until the next run."""
        failures = self.failures()
        head = self._summary if self.outcome is not None else "\n".join(
            self._failure_lines())
        if self.outcome == "done" and not failures:
            head = ""  # a plain success is said by the progress bar
        notes = self._notes
        lines = [t for t in (head, self._problem, notes["error"], notes["info"]) if t]
        return "\n".join(lines), bool(failures or self._problem or notes["error"])

    def _status(self) -> None:
        self.status_changed.emit(*self.status())

    # ------------------------------------------------------------------ what is compared

    def set_context(self, input: Source | None, gt: Source | None) -> bool:
        """The pickers' input and ground truth now; ``True`` when they changed."""
        if (input, gt) == (self.input, self.gt):
            return False
        self.input, self.gt = input, gt
        self.scores_changed.emit()
        return True

    def same_input(self) -> bool:
        """The pickers' input is the one the run restored (same name and shape)."""
        return self.run is not None and self.input == self.run.input

    def gt_fits(self) -> bool:
        return self.gt is not None and self.input is not None and \
            self.gt.shape == self.input.shape

    def results(self) -> list[Entry]:
        """Finished methods of the run, in panel order."""
        return [e for e in self.entries.values() if e.state == DONE]

    def shown(self) -> list[Entry]:
        """Entries with a panel and a table row: finished and failed methods."""
        return [e for e in self.entries.values() if e.state in (DONE, FAILED)]

    def row_note(self, entry: Entry) -> str | None:
        """Why a row has no scores (``None``: it can be scored against the current gt)."""
        if entry.state == FAILED:
            return f"failed: {entry.error}"
        if entry.state != DONE:
            return entry.state
        if not self.same_input():
            return f"restored from {self.run.input.name!r}, not the current input"
        if self.gt is None:
            return "no ground truth"
        if not self.gt_fits():
            return f"ground truth {self.gt.name!r} does not fit the input"
        return None

    def scores(self, entry: Entry) -> list[Score | None]:
        """Per-frame scores against the current ground truth (``None``: not computed);
        empty when the entry cannot be scored (see :meth:`row_note`)."""
        if self.row_note(entry) is not None:
            return []
        cache = entry.scores.get(self.gt, {})
        return [cache.get(t) for t in range(self.run.n_frames)]

    def unscored(self) -> dict[str, np.ndarray]:
        """``{name: stack}`` of this run's results that can be scored against the current
        ground truth but are not yet (for a re-scoring worker)."""
        return {e.name: e.result.image for e in self.results()
                if None in self.scores(e)}

    def store_scores(self, run: int, name: str, gt: Source, scores: Sequence[Score]) -> None:
        entry = self._entry(run, name)
        if entry is None or entry.state != DONE or gt != self.gt or not self.same_input():
            return  # another run, another ground truth or input since: dropped
        entry.scores[gt] = dict(enumerate(scores))
        self.scores_changed.emit()

    def frame_score(self, entry: Entry, t: int, gt_frame: np.ndarray) -> Score | None:
        """Score of frame ``t`` (cached; computed here if no worker did)."""
        if self.row_note(entry) is not None or not 0 <= t < self.run.n_frames:
            return None
        cache = entry.scores.setdefault(self.gt, {})
        if t not in cache:
            cache[t] = score(entry.result.image[t], gt_frame)
        return cache[t]

    def input_score(self, t: int, low_frame: np.ndarray, gt_frame: np.ndarray
                    ) -> Score | str:
        """Score of the current input's frame ``t`` (cached), or why there is none."""
        if self.input is None or self.gt is None:
            return "no ground truth"
        if not self.gt_fits():
            return f"ground truth {self.gt.name!r} does not fit the input"
        cache = self._input_scores.setdefault((self.input, self.gt), {})
        if t not in cache:
            if not np.all(np.isfinite(low_frame)):
                return "the input has NaN or infinite pixels"
            cache[t] = score(low_frame, gt_frame)
        return cache[t]

    def cached_input_scores(self, n_frames: int) -> list[Score | None]:
        """Scores of the current input's frames computed so far (``None``: not yet)."""
        cache = self._input_scores.get((self.input, self.gt), {}) if self.gt_fits() else {}
        return [cache.get(t) for t in range(n_frames)]

    def store_input_scores(self, input: Source, gt: Source, scores: Sequence[Score]) -> None:
        if (input, gt) == (self.input, self.gt):
            self._input_scores[(input, gt)] = dict(enumerate(scores))
            self.scores_changed.emit()

    def forget_input_scores(self) -> None:
        """The layers' pixels may have changed (same names and shapes): score them anew."""
        self._input_scores.clear()
