"""Real (tiny) trainings with a time budget: the plan is an event, the end of a run says
what it does and how long each part took, and a budget that cannot be met is said."""

from __future__ import annotations

import time

import pytest

from napari_care_losses.training.trainer import (
    END_PHASES,
    BatchEnd,
    EpochEnd,
    Finished,
    Finishing,
    Planned,
    Started,
    train,
)

from ..conftest import tiny_config


@pytest.mark.slow
def test_budget_run_emits_its_plan_and_announces_every_end_phase(tiny_patches, tmp_path):
    cfg = tiny_config("mae", minutes=0.25, epochs=1000, steps_per_epoch=20)
    t0 = time.perf_counter()
    events, at = [], []
    for event in train(tiny_patches, cfg, tmp_path, started=t0):
        events.append(event)
        at.append(time.perf_counter() - t0)
    kinds = [type(e) for e in events]
    assert kinds[:2] == [Planned, Started] and kinds[-1] is Finished, kinds
    plan, done = events[0], events[-1]
    assert plan.budget_s == 15.0 and plan.expected_s == 15.0 and plan.note == ""
    assert 0 < plan.elapsed_s < 15.0 and plan.seconds_per_step > 0
    assert events[1].epochs == plan.epochs and events[1].steps_per_epoch == plan.steps_per_epoch
    # after the last batch, every end phase is announced in order, then timed
    last_batch = max(i for i, e in enumerate(events) if isinstance(e, BatchEnd))
    tail = [e.what for e in events[last_batch:] if isinstance(e, Finishing)]
    assert tail == list(END_PHASES), tail
    assert list(done.end_s) == list(END_PHASES) and all(s >= 0 for s in done.end_s.values())
    # no silent stretch at the end: from the last batch on, something is said at least every
    # 5 s, except while memory is released (announced; 0.6–36 s on a busy 2-core machine)
    release = events.index(Finishing("releasing memory"))
    slow = [(type(events[i]).__name__, round(at[i] - at[i - 1], 1))
            for i in range(last_batch + 1, len(events))
            if at[i] - at[i - 1] > 5.0 and i - 1 != release]
    assert not slow, slow
    # the epochs re-planned after each epoch never fall behind the epoch that ran
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert epochs and all(e.epochs >= e.epoch for e in epochs)
    assert epochs[-1].epochs == epochs[-1].epoch  # the last one says it is the last
    # the budget holds the end phases before the release of memory (which only callers that
    # go on in the same process pay): within 10 % of 15 s
    assert at[release] <= 15.0 * 1.1, at[release]


@pytest.mark.slow
def test_a_budget_shorter_than_the_warmup_is_said_in_one_line(tiny_patches, tmp_path, capsys):
    from napari_care_losses.cli import main
    from napari_care_losses.sample_data import sample_path

    low, high = sample_path(0, "train", "low"), sample_path(0, "train", "high")
    rc = main(["train", str(low), str(high), "--minutes", "0.01", "--out", str(tmp_path),
               "--patch-size", "32", "--patches-per-image", "8", "--unet-first", "8",
               "--unet-depth", "1", "--batch-size", "4"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if "cannot be met" in line]
    assert len(warnings) == 1, err
    line = warnings[0]
    assert line.startswith("napari-care-losses train: warning: the time budget of 0.6 s")
    assert "warm-up alone took" in line and "1 epoch of 1 step" in line
    assert "end: final validation" in out
