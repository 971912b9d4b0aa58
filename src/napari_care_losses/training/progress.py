"""Progress of a sequence of trainings, from their events: what the training dock shows.

Qt-free (the dock only observes a :class:`RunProgress`): fed every :class:`JobEvent` with
the time it arrived, it answers how far the whole run is (0–1), which epoch of how many
the running job is in, what the job is doing and how much time is left — all from the
fitted plans. A job with a time budget lasts its budget (the trainer fits warm-up, epochs,
validations and end phases into it: :class:`~.trainer.Planned`); a job that has not started
yet counts its whole budget. A job of epochs x steps is timed from its own batches (or,
before its first one, from an earlier job's pace).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..config.train import TrainConfig
from .events import BatchEnd, EpochEnd, Failed, Finished, Finishing, Planned, Started
from .jobs import JobEvent, Preparing


@dataclass
class JobProgress:
    """What is known of one job: its plan and how far it got (times in seconds of the
    clock the events were stamped with)."""

    label: str
    budget_s: float  # 0: epochs x steps, no time budget
    epochs: int  # planned (re-planned after every epoch with a budget)
    steps_per_epoch: int
    start: float | None = None  # when its budget started counting
    end: float | None = None  # when its last event (Finished/Failed) came
    expected_s: float | None = None  # the plan's duration from ``start`` (budget jobs)
    epoch: int = 0  # 1-based epoch in progress (0: none yet)
    steps_done: int = 0  # batches done (all epochs)
    first_batch: tuple[float, int] | None = None  # (time, steps_done) of its first batch
    phase: str = ""  # what it is doing ("warm-up", "training", "saving the weights", …)
    note: str = ""  # e.g. a budget that cannot be met

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def elapsed(self, now: float) -> float:
        if self.start is None:
            return 0.0
        return max(0.0, (self.end if self.end is not None else now) - self.start)


class RunProgress:
    """The progress of ``configs`` trained in turn (one :class:`JobProgress` each)."""

    def __init__(self, configs: Sequence[TrainConfig]) -> None:
        self.jobs = [JobProgress(c.loss.label, 60.0 * c.minutes, c.epochs, c.steps_per_epoch)
                     for c in configs]
        self.current = 0  # index of the job the last event was about
        self.done = False  # every job ended (or the run stopped early)

    # ------------------------------------------------------------------ events

    def update(self, item: JobEvent, now: float) -> None:
        """Take one event of job ``item.job`` that arrived at ``now``."""
        if not 0 <= item.job < len(self.jobs):
            return
        self.current = item.job
        job, ev = self.jobs[item.job], item.event
        if isinstance(ev, Preparing):
            if ev.begins_job and job.start is None:
                job.start = now
                self._end_earlier(item.job, now)
            job.phase = ev.message.rstrip(" …")
        elif isinstance(ev, Planned):
            job.start = now - ev.elapsed_s
            self._end_earlier(item.job, job.start)
            job.epochs, job.steps_per_epoch = ev.epochs, ev.steps_per_epoch
            job.expected_s = ev.expected_s if ev.budget_s else None
            job.note = ev.note
            job.phase = "training"
        elif isinstance(ev, Started):
            if job.start is None:
                job.start = now
            job.epochs, job.steps_per_epoch = ev.epochs, ev.steps_per_epoch
            job.phase = "training"
        elif isinstance(ev, BatchEnd):
            job.steps_per_epoch = ev.steps_per_epoch
            job.epoch = ev.epoch + 1
            job.steps_done = ev.epoch * ev.steps_per_epoch + ev.step
            if job.first_batch is None:
                job.first_batch = (now, job.steps_done)
            job.epochs = max(job.epochs, job.epoch)
            job.phase = "training"
        elif isinstance(ev, EpochEnd):
            job.epochs = max(ev.epochs, ev.epoch)
        elif isinstance(ev, Finishing):
            job.phase = ev.what
        elif isinstance(ev, Finished | Failed):
            if job.start is None:
                job.start = now
            job.end = now
            job.phase = "stopped" if isinstance(ev, Finished) and ev.stopped else (
                "done" if isinstance(ev, Finished) else "failed")

    def _end_earlier(self, index: int, now: float) -> None:
        """A job started: every earlier one is over (also one that never said so)."""
        for job in self.jobs[:index]:
            if job.start is None:
                job.start = now
            if job.end is None:
                job.end = now

    def finish(self, now: float) -> None:
        """The run is over (all jobs ended, or it stopped or failed)."""
        for job in self.jobs:
            if job.start is not None and job.end is None:
                job.end = now
        self.done = True

    # ------------------------------------------------------------------ answers

    def _pace(self, now: float) -> float | None:
        """Seconds per step of epochs-x-steps jobs: of the latest one that ended (its whole
        time), else of the running one (its batches so far)."""
        for job in reversed(self.jobs):
            if job.budget_s or job.start is None:
                continue
            if job.end is not None and job.steps_done:
                return (job.end - job.start) / job.steps_done
            if job.first_batch is not None and job.steps_done > job.first_batch[1]:
                return (now - job.first_batch[0]) / (job.steps_done - job.first_batch[1])
        return None

    def expected_s(self, index: int, now: float) -> float | None:
        """How long job ``index`` lasts in all (None: not known yet)."""
        job = self.jobs[index]
        if job.end is not None:
            return job.elapsed(now)
        elapsed = job.elapsed(now)
        if job.budget_s:
            return max(job.expected_s or job.budget_s, elapsed)
        if job.first_batch is not None and job.steps_done > job.first_batch[1]:
            t1, s1 = job.first_batch
            rate = (now - t1) / (job.steps_done - s1)
            return elapsed + rate * max(0, job.total_steps - job.steps_done)
        pace = self._pace(now)
        return None if pace is None else max(elapsed, pace * job.total_steps)

    def fraction(self, now: float) -> float:
        """How far the whole run is, 0–1 (1 once it is done)."""
        if self.done:
            return 1.0
        spans = [self.expected_s(i, now) for i in range(len(self.jobs))]
        if None in spans:  # epochs x steps without a measured pace: count steps
            done = sum(j.total_steps if j.end is not None else j.steps_done for j in self.jobs)
            total = sum(j.total_steps for j in self.jobs)
            return min(1.0, done / total) if total else 0.0
        total = sum(spans)
        done = sum(j.elapsed(now) for j in self.jobs)
        return min(1.0, done / total) if total > 0 else 0.0

    def seconds_left(self, now: float) -> float | None:
        """Time left for the whole run (None: not known yet)."""
        if self.done:
            return 0.0
        left = 0.0
        for i, job in enumerate(self.jobs):
            if job.end is not None:
                continue
            span = self.expected_s(i, now)
            if span is None:
                return None
            left += max(0.0, span - job.elapsed(now))
        return left

    def epoch_text(self) -> str:
        """``epoch 3/12`` of the running job (empty before its first batch)."""
        job = self.jobs[self.current]
        if not job.epoch:
            return ""
        return f"epoch {job.epoch}/{max(job.epochs, job.epoch)}"

    @property
    def phase(self) -> str:
        return self.jobs[self.current].phase

    def percent(self, now: float) -> int:
        return int(math.floor(100 * self.fraction(now) + 1e-9))
