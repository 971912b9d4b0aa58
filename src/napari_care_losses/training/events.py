"""The events of a training run (:func:`.trainer.train` yields them) and its stop flag.

Plain frozen dataclasses: they cross process boundaries (the dock's training process) and
are what the CLI prints, the dock shows (:mod:`.progress`) and tests collect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Started:
    model_dir: Path
    loss: str
    n_train: int
    n_val: int
    epochs: int
    steps_per_epoch: int


@dataclass(frozen=True)
class Planned:
    """How a time budget is spent, fitted after the measured warm-up (only with a budget).

    ``elapsed_s`` is how long the budget had been running when the plan was made and
    ``expected_s`` how long the whole run is expected to take from the budget's start (end
    phases included): the budget, or more when it cannot be met (``note`` then says so)."""

    epochs: int
    steps_per_epoch: int
    seconds_per_step: float
    val_s: float  # one validation pass
    budget_s: float
    elapsed_s: float
    expected_s: float
    note: str = ""


@dataclass(frozen=True)
class BatchEnd:
    epoch: int  # 0-based
    step: int  # 1-based within the epoch
    steps_per_epoch: int
    loss: float


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 1-based: epochs completed
    epochs: int
    loss: float
    val_loss: float
    learning_rate: float
    seconds: float


@dataclass(frozen=True)
class Finishing:
    """The end of a run: what it is doing now (see :data:`END_PHASES`)."""

    what: str


#: The end phases of a run, in order, as :class:`Finishing` names them.
END_PHASES = ("final validation", "saving the weights", "writing the model record",
              "releasing memory")


@dataclass(frozen=True)
class Finished:
    model_dir: Path
    stopped: bool
    epochs_done: int
    best_val_loss: float
    history: dict[str, list[float]] = field(default_factory=dict)
    end_s: dict[str, float] = field(default_factory=dict)  # seconds of each end phase


@dataclass(frozen=True)
class Failed:
    error: str
    model_dir: Path | None
    details: str = ""


TrainingEvent = (Started | Planned | BatchEnd | EpochEnd | Finishing | Finished
                 | Failed)


class StopFlag:
    """Stop request shared between a UI/CLI and the training thread.

    Wraps a ``threading.Event``, or any event with ``set``/``is_set`` (e.g. a worker's
    control channel, when the request comes from another process). :meth:`when_set`
    callbacks run in the thread that calls :meth:`set` (a worker process is told at once,
    even while nobody reads its events).
    """

    def __init__(self, event=None) -> None:
        self._event = event if event is not None else threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        self._event.set()
        for callback in list(self._callbacks):
            callback()

    def when_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` on every :meth:`set`; returns a function that removes it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def is_set(self) -> bool:
        return self._event.is_set()
