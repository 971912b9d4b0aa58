"""The compare dock's event pacer: order kept, the first batch at once, later batches spaced
in time, a batch ends when its handling budget is spent, flush hands over the rest."""

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


def test_first_batch_at_once_then_spaced_and_flush(qtbot):
    times: list[float] = []
    pacer = EventPacer(lambda ev: times.append(time.monotonic()), interval_ms=80,
                       budget_ms=0)  # one event per batch
    t0 = time.monotonic()
    for i in range(3):
        pacer.push(i)
    qtbot.waitUntil(lambda: len(times) == 3, timeout=2000)
    assert times[0] - t0 < 0.05  # not held back
    assert float(np.diff(times).min()) >= 0.07
    got: list = []
    pacer = EventPacer(got.append, interval_ms=10_000, budget_ms=0)
    for i in range(4):
        pacer.push(i)
    pacer.flush()
    assert got == [0, 1, 2, 3] and pacer.pending() == 0
