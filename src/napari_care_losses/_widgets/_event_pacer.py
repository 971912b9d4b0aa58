"""Deliver a worker's events to the dock in paced batches, so napari repaints less often.

Where napari draws with software OpenGL (Mesa's llvmpipe: VMs, remote desktops, Xvfb),
every repaint of the main window recomposites the whole window with the GL canvas, which
costs tens of milliseconds each time, whatever changed: a progress bar or a new result
layer. Handled one by one as they arrive, the events of a restore (method started, frame
done, method done …) would each cost such a repaint. The pacer hands them over in batches:
at most one batch per :data:`INTERVAL_MS` (the first one at once), each batch taking what
has arrived until :data:`BUDGET_MS` of handling is spent, so one repaint covers everything
that changed since the last one and no pass of the event loop does many layers' work.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer

#: Least milliseconds between the starts of two batches.
INTERVAL_MS = 150
#: A batch ends once its handling took this long (the event that crossed it included).
BUDGET_MS = 10


class EventPacer(QObject):
    """Queue events (any objects) and pass them to ``handle`` in paced batches.

    :meth:`push` is the slot for the worker's signals; :meth:`finish` queues the last event
    (the end of a run), handed over at once when nothing else waits.
    """

    def __init__(self, handle: Callable[[object], None], interval_ms: int = INTERVAL_MS,
                 budget_ms: float = BUDGET_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._handle, self._interval, self._budget = handle, interval_ms, budget_ms / 1000
        self._queue: deque = deque()
        self._last = time.monotonic() - interval_ms / 1000  # start of the last batch
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._deliver)

    def push(self, event: object) -> None:
        self._queue.append(event)
        if not self._timer.isActive():
            # 0 ms: at the next pass of the event loop, with whatever arrives until then
            wait = self._interval - 1000 * (time.monotonic() - self._last)
            self._timer.start(max(0, int(wait)))

    def pending(self) -> int:
        return len(self._queue)

    def _deliver(self) -> None:
        self._last = start = time.monotonic()
        while self._queue:
            self._handle(self._queue.popleft())
            if time.monotonic() - start >= self._budget:
                break
        if self._queue:
            self._timer.start(self._interval)

    def finish(self, event: object) -> None:
        """Hand over ``event`` after everything queued: at once if nothing waits, else in
        the batches' pace (handing a backlog over in one go would stall napari: a first
        result layer costs napari half a second)."""
        if self._queue:
            self.push(event)
        else:  # the timer only runs while events wait
            self._handle(event)
