"""Fitting a CARE training into a time budget (``TrainConfig.minutes``).

A few real training steps and a bit of validation are timed first (the warm-up), then epochs
x steps are planned to fill what is left, with a cosine learning-rate decay whose length can
be changed after the training function was traced: the progress callback of :mod:`.training`
re-plans it after every epoch and stops at the deadline. Keras (and so TensorFlow) is
imported only inside the functions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..config.train import TrainConfig
from ..io.data import PatchData

#: Lowest learning rate of the budget's cosine decay, as a fraction of the initial one.
COSINE_ALPHA = 0.05
#: Steps timed (after one compiling step) to plan a time budget.
WARMUP_STEPS = 3
#: Seconds kept at the end of a budget for its end phases (saving the weights, writing the
#: model record; measured 0.05–0.2 s on 2 busy cores), plus a fraction of the budget.
END_RESERVE_S = 0.5
END_RESERVE_FRACTION = 0.02


@dataclass(frozen=True)
class BudgetPlan:
    """How a time budget is spent: measured step/validation times and the fitted plan."""

    epochs: int
    steps_per_epoch: int
    step_s: float
    val_s: float
    warmup_s: float  # from the start of ``train`` to the end of the warm-up

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def needed_s(self) -> float:
        """Seconds the plan needs from the budget's start: warm-up, epochs with their
        validations, end phases."""
        return (self.warmup_s + self.epochs * (self.steps_per_epoch * self.step_s + self.val_s)
                + END_RESERVE_S)

    def expected_s(self, budget_s: float) -> float:
        """How long the run takes: its budget, or what the plan needs when that is more."""
        return max(budget_s, self.needed_s())

    def overrun_note(self, budget_s: float) -> str:
        """One line when the budget cannot be met (else empty), with the measured warm-up."""
        if self.needed_s() <= budget_s:
            return ""
        what = "the warm-up alone took" if self.warmup_s >= budget_s else "the warm-up took"
        steps = f"{self.steps_per_epoch} step{'s' * (self.steps_per_epoch > 1)}"
        return (f"the time budget of {duration(budget_s)} cannot be met: {what} "
                f"{self.warmup_s:.1f} s (building, compiling and timing the network); "
                f"training {self.epochs} epoch{'s' * (self.epochs > 1)} of {steps} instead, "
                f"about {duration(self.needed_s())} in all")


def duration(seconds: float) -> str:
    """``0.6 s``, ``45 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f} s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def end_reserve(budget_s: float) -> float:
    """Seconds a budget keeps for its end phases."""
    return END_RESERVE_S + END_RESERVE_FRACTION * budget_s


def cosine_schedule(lr0: float, total_steps: int):
    """Cosine decay from ``lr0`` to ``COSINE_ALPHA * lr0`` over ``total``, which can be set
    after the training function was traced (``schedule.total.assign``)."""
    import keras
    from keras import ops

    class BudgetCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self) -> None:
            self.total = keras.Variable(float(total_steps), trainable=False, dtype="float32",
                                        name="budget_total_steps")

        def __call__(self, step):
            frac = ops.minimum(ops.cast(step, "float32") / self.total, 1.0)
            cos = 0.5 * (1.0 + ops.cos(math.pi * frac))
            return lr0 * (COSINE_ALPHA + (1.0 - COSINE_ALPHA) * cos)

        def get_config(self):
            return {"lr0": lr0, "total_steps": total_steps}

    return BudgetCosine()


def plan_budget(model, patches: PatchData, cfg: TrainConfig, t0: float):
    """Compile, time a few real training steps and a bit of validation, then fit epochs x
    steps (at most ``cfg.steps_per_epoch`` per epoch, at least 4 epochs when possible) and the
    cosine learning-rate decay into what is left of ``cfg.minutes``.

    Returns ``(BudgetPlan, schedule)``."""
    import keras

    schedule = cosine_schedule(cfg.learning_rate, cfg.epochs * cfg.steps_per_epoch)
    model.prepare_for_training(optimizer=keras.optimizers.Adam(learning_rate=schedule))
    net, bs = model.keras_model, cfg.batch_size
    rng = np.random.default_rng(cfg.seed)

    def step() -> None:
        idx = rng.choice(len(patches.X), bs, replace=False)
        net.train_on_batch(patches.X[idx], patches.Y[idx])

    step()  # traces and compiles
    t = time.perf_counter()
    for _ in range(WARMUP_STEPS):
        step()
    step_s = (time.perf_counter() - t) / WARMUP_STEPS
    n_val, vb = len(patches.X_val), 32  # Keras' default evaluation batch
    net.evaluate(patches.X_val[:vb], patches.Y_val[:vb], batch_size=vb, verbose=0)  # traces
    k = min(n_val, 2 * vb)
    t = time.perf_counter()
    net.evaluate(patches.X_val[:k], patches.Y_val[:k], batch_size=vb, verbose=0)
    val_s = (time.perf_counter() - t) * n_val / max(k, 1)
    now = time.perf_counter()
    budget = 60.0 * cfg.minutes
    left = budget - (now - t0) - end_reserve(budget)  # keep time for the end phases
    steps = cfg.steps_per_epoch
    epochs = int(left // (steps * step_s + val_s))
    if epochs < 4:  # shorter epochs: keep a few validations (and best-model checkpoints)
        steps = max(1, int((left / 4 - val_s) // step_s))
        epochs = int(left // (steps * step_s + val_s))
    epochs = max(1, epochs)
    schedule.total.assign(float(WARMUP_STEPS + 1 + epochs * steps))
    return BudgetPlan(epochs, steps, step_s, val_s, now - t0), schedule
