"""The compare dock's event pacer: order kept, the first batch at once, later batches spaced
in time, a batch ends when its handling budget is spent, the last event comes after the rest
(at once when nothing waits)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("qtpy")

from napari_care_losses._widgets._event_pacer import EventPacer  # noqa: E402


def test_batches_keep_order_and_end_when_the_budget_is_spent(qtbot):
    batches: list[list] = [[]]

    def handle(ev: str) -> None:
        batches[-1].append(ev)
        if ev.startswith("slow"):
            time.sleep(0.03)

    pacer = EventPacer(handle, interval_ms=40, budget_ms=20)
    pacer._timer.timeout.connect(lambda: batches.append([]))  # runs after each delivery
    events = ["a", "b", "slow c", "d", "slow e", "slow f", "g"]
    for ev in events:
        pacer.push(ev)
    assert batches == [[]]  # nothing is handled inside push
    qtbot.waitUntil(lambda: pacer.pending() == 0, timeout=2000)
    delivered = [b for b in batches if b]
    assert [ev for b in delivered for ev in b] == events
    # fast events ride along; a batch ends with the event that used up its budget
    assert delivered == [["a", "b", "slow c"], ["d", "slow e"], ["slow f"], ["g"]]


def test_first_batch_at_once_then_spaced(qtbot):
    times: list[float] = []
    pacer = EventPacer(lambda ev: times.append(time.monotonic()), interval_ms=80,
                       budget_ms=0)  # one event per batch
    t0 = time.monotonic()
    for i in range(3):
        pacer.push(i)
    qtbot.waitUntil(lambda: len(times) == 3, timeout=2000)
    assert times[0] - t0 < 0.05  # not held back
    assert float(np.diff(times).min()) >= 0.07


def test_finish_waits_for_the_queue_in_pace_and_is_immediate_when_idle(qtbot):
    got: list = []
    pacer = EventPacer(got.append, interval_ms=60, budget_ms=0)  # one event per batch
    for i in range(3):
        pacer.push(i)
    pacer.finish("end")
    assert got == []  # a backlog is not handed over in one go
    qtbot.waitUntil(lambda: got == [0, 1, 2, "end"], timeout=2000)
    pacer.finish("again")  # nothing waits: handed over at once
    assert got[-1] == "again" and pacer.pending() == 0
