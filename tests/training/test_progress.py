"""The training dock's progress arithmetic (Qt-free): bar, epochs and time left from the
plans in the events, fed with made-up arrival times."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_care_losses.training.jobs import JobEvent, Preparing
from napari_care_losses.training.progress import RunProgress
from napari_care_losses.training.trainer import (
    BatchEnd,
    EpochEnd,
    Finished,
    Finishing,
    Planned,
    Started,
)

from ..conftest import tiny_config


def feed(run: RunProgress, job: int, event, now: float) -> None:
    run.update(JobEvent(job, len(run.jobs), run.jobs[job].label, event), now)


def budget_job(run: RunProgress, job: int, start: float, budget: float, *, warmup=4.0,
               epochs=4, steps=10, expected=None) -> dict[str, float]:
    """The events of one budget job starting at ``start``; returns the times of its
    milestones (events arrive ``warmup`` s after the start with the plan)."""
    feed(run, job, Preparing("building the network …", begins_job=True), start)
    planned = start + warmup
    feed(run, job, Planned(epochs, steps, 0.5, 1.0, budget, warmup, expected or budget),
         planned)
    feed(run, job, Started(Path("m"), "mae", 100, 20, epochs, steps), planned)
    per_step = (budget - warmup - 1.0) / (epochs * steps)
    t = planned
    for epoch in range(epochs):
        for step in range(1, steps + 1):
            t += per_step
            feed(run, job, BatchEnd(epoch, step, steps, 0.1), t)
        feed(run, job, EpochEnd(epoch + 1, epochs, 0.1, 0.1, 1e-3, 1.0), t)
    feed(run, job, Finishing("saving the weights"), t + 0.2)
    end = start + (expected or budget)
    feed(run, job, Finished(Path("m"), False, epochs, 0.1), end)
    return {"planned": planned, "end": end}


def test_budget_jobs_count_their_budget_until_they_start_and_reach_100_percent():
    configs = [tiny_config(loss, minutes=0.5) for loss in ("laplace", "fft", "bandpass")]
    run = RunProgress(configs)
    assert run.seconds_left(0.0) == pytest.approx(90.0) and run.fraction(0.0) == 0.0
    # the first job starts 5 s in (the process and TensorFlow before it are in no budget)
    feed(run, 0, Preparing("loading TensorFlow …"), 1.0)
    assert run.seconds_left(4.0) == pytest.approx(90.0)
    feed(run, 0, Preparing("cutting 32 px patches …", begins_job=True), 5.0)
    assert run.seconds_left(11.0) == pytest.approx(84.0)
    feed(run, 0, Planned(3, 10, 0.5, 1.0, 30.0, 7.0, 30.0), 12.0)
    assert run.jobs[0].start == pytest.approx(5.0)  # from the plan's elapsed time
    feed(run, 0, BatchEnd(1, 4, 10, 0.2), 20.0)
    assert run.epoch_text() == "epoch 2/3"
    assert run.seconds_left(20.0) == pytest.approx(15.0 + 60.0)
    assert run.fraction(20.0) == pytest.approx(15.0 / 90.0)
    feed(run, 0, EpochEnd(2, 4, 0.2, 0.2, 1e-3, 5.0), 24.0)  # re-planned: one more epoch
    feed(run, 0, BatchEnd(2, 1, 10, 0.2), 24.5)
    assert run.epoch_text() == "epoch 3/4"
    feed(run, 0, Finishing("final validation"), 33.5)
    assert run.phase == "final validation"
    feed(run, 0, Finished(Path("m"), False, 4, 0.1), 35.0)
    feed(run, 1, Preparing("building the network …", begins_job=True), 35.0)
    feed(run, 1, Planned(4, 10, 0.5, 1.0, 30.0, 4.0, 30.0), 39.0)
    feed(run, 1, BatchEnd(1, 3, 10, 0.2), 50.0)
    # mid-run: the time left is the running job's rest plus the budget of the last one
    assert run.seconds_left(50.0) == pytest.approx(95.0 - 50.0)
    assert run.fraction(50.0) == pytest.approx(45.0 / 90.0)
    feed(run, 1, Finished(Path("m"), False, 4, 0.1), 65.0)
    budget_job(run, 2, 65.0, 30.0)
    assert run.fraction(95.0) == pytest.approx(1.0)
    run.finish(95.5)
    assert run.fraction(96.0) == 1.0 and run.seconds_left(96.0) == 0.0 and run.percent(96) == 100


def test_a_budget_that_cannot_be_met_counts_what_the_plan_needs():
    run = RunProgress([tiny_config("mae", minutes=0.01), tiny_config("fft", minutes=0.01)])
    feed(run, 0, Preparing("building the network …", begins_job=True), 0.0)
    note = "the time budget of 0.6 s cannot be met: the warm-up alone took 5.6 s"
    feed(run, 0, Planned(1, 1, 0.1, 0.5, 0.6, 5.6, 6.7, note), 5.6)
    assert run.jobs[0].note == note
    # this job: 6.7 s in all; the next one still counts its 0.6 s budget
    assert run.seconds_left(5.6) == pytest.approx(6.7 - 5.6 + 0.6)
    assert run.seconds_left(9.0) == pytest.approx(0.6)  # overran: nothing left of it


def test_epochs_x_steps_jobs_are_timed_from_their_batches_then_by_that_pace():
    run = RunProgress([tiny_config("mae", epochs=2, steps_per_epoch=10),
                       tiny_config("fft", epochs=2, steps_per_epoch=10)])
    assert run.seconds_left(0.0) is None  # no pace measured yet
    feed(run, 0, Preparing("building …", begins_job=True), 0.0)
    feed(run, 0, Started(Path("m"), "mae", 100, 20, 2, 10), 2.0)
    assert run.seconds_left(2.0) is None and run.fraction(2.0) == 0.0
    for step in range(1, 11):
        feed(run, 0, BatchEnd(0, step, 10, 0.1), 2.0 + step)
    # 1 s a step after the first: 10 steps to go in job 1, 20 in job 2 at that pace
    assert run.seconds_left(12.0) == pytest.approx(30.0)
    assert run.fraction(12.0) == pytest.approx(12 / (22 + 20))  # time done / time in all
    for step in range(1, 11):
        feed(run, 0, BatchEnd(1, step, 10, 0.1), 12.0 + step)
    feed(run, 0, Finished(Path("m"), False, 2, 0.1), 23.0)
    # job 1 took 23 s for 20 steps: job 2 is expected to take as long
    assert run.seconds_left(23.0) == pytest.approx(23.0)
    assert run.fraction(23.0) == pytest.approx(0.5)
    feed(run, 1, Preparing("building …", begins_job=True), 23.0)
    for step in range(1, 6):
        feed(run, 1, BatchEnd(0, step, 10, 0.1), 25.0 + 2 * step)
    # its own pace now: 2 s a step, 15 steps to go
    assert run.seconds_left(35.0) == pytest.approx(30.0)
    assert run.epoch_text() == "epoch 1/2"
