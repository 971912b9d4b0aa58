"""CARE training with any registered loss, as one generator of typed events.

The CLI prints the events, tests collect them and the napari widget runs the same generator
in a ``thread_worker``. Stopping is a flag checked after every batch; the best weights (on
validation loss) are always kept and the model folder stays loadable.

Weights are written under a temporary name and renamed (:mod:`..models.weights`), so a full disk
(or a killed run) never leaves a truncated ``weights_best.h5`` that looks valid; a failed
save ends the run with one :class:`Failed` event naming the model folder. A time budget is
planned by :mod:`.budget`. Once a model is done, the graph state TensorFlow would
keep for it forever is released (:mod:`.memory`), so training many models in one
process does not grow its memory.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config.train import TrainConfig
from ..io.data import PatchData, dihedral_augmenter
from ..models.folder import (
    META_FILE,
    check_new_model_dir,
    claim_model_dir,
    model_dir_name,
    release_claim,
    write_meta,
)
from ..models.meta import DataInfo, ModelMeta, Status
from ..models.network import build_care
from ..models.weights import atomic_weight_saves, disk_full, os_error_message, save_weights
from .budget import WARMUP_STEPS, plan_budget
from .memory import training_ended, training_started

# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Started:
    model_dir: Path
    loss: str
    n_train: int
    n_val: int
    epochs: int
    steps_per_epoch: int


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
class Finished:
    model_dir: Path
    stopped: bool
    epochs_done: int
    best_val_loss: float
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    error: str
    model_dir: Path | None
    details: str = ""


TrainingEvent = Started | BatchEnd | EpochEnd | Finished | Failed


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


# ----------------------------------------------------------------------------- model


def new_model_dir(outdir: Path, cfg: TrainConfig) -> Path:
    """A fresh folder, claimed atomically: loss + time stamp (``_2``, … within a second)."""
    return claim_model_dir(outdir, model_dir_name(cfg))


# ----------------------------------------------------------------------------- training


def _progress_callback(events: queue.Queue, stop: StopFlag, cfg: TrainConfig):
    import keras

    class Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.t0 = time.perf_counter()
            self.stopped = False  # True once a stop request ended training early
            self.nonfinite: tuple[int, int, float] | None = None  # first NaN/inf batch loss
            self.epochs, self.steps = cfg.epochs, cfg.steps_per_epoch  # the plan
            self.deadline: float | None = None  # perf_counter time to stop at (time budget)
            self.step_s = 0.0  # measured seconds per step
            self.schedule = None  # the budget's cosine decay (its total follows the plan)
            self.warmup_steps = 0

        def on_train_begin(self, logs=None):
            self.fit_t0 = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.t0 = epoch, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            loss = float((logs or {}).get("loss", float("nan")))
            if not math.isfinite(loss) and self.nonfinite is None:
                self.nonfinite = (self.epoch + 1, batch + 1, loss)
            events.put(BatchEnd(self.epoch, batch + 1, self.steps, loss))
            if stop.is_set():
                self.model.stop_training = self.stopped = True
            elif self.deadline is not None and time.perf_counter() + self.step_s > self.deadline:
                self.model.stop_training = True  # time is up: a normal end

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if self.deadline is not None:  # re-plan the budget from the measured epochs
                now = time.perf_counter()
                left = self.deadline - now
                per_epoch = max((now - self.fit_t0) / (epoch + 1), 1e-6)
                self.epochs = epoch + 1 + max(0, int(left // per_epoch))
                if self.schedule is not None:
                    self.schedule.total.assign(
                        float(self.warmup_steps + self.epochs * self.steps))
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            events.put(EpochEnd(epoch + 1, self.epochs, float(logs.get("loss", float("nan"))),
                                float(logs.get("val_loss", float("nan"))), lr,
                                time.perf_counter() - self.t0))

    return Progress()


def _fit(model, patches: PatchData, cfg: TrainConfig, callback) -> dict[str, list[float]]:
    """CARE.train without its console progress bar, plus our callback."""
    import keras
    from csbdeep.internals.train import DataWrapper

    keras.utils.set_random_seed(cfg.seed)
    if not model._model_prepared:
        model.prepare_for_training()
    augmenter = dihedral_augmenter(cfg.seed) if cfg.augment == "flips" else None
    data = DataWrapper(patches.X, patches.Y, cfg.batch_size,
                       length=cfg.epochs * cfg.steps_per_epoch, augmenter=augmenter)
    history = model.keras_model.fit(
        iter(data), validation_data=(patches.X_val, patches.Y_val), epochs=cfg.epochs,
        steps_per_epoch=cfg.steps_per_epoch, callbacks=[*model.callbacks, callback], verbose=0,
        shuffle=False,  # DataWrapper shuffles its own batches
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _meta(cfg: TrainConfig, patches: PatchData, data_info: DataInfo | dict | None
          ) -> ModelMeta:
    """The record a run starts with (status ``training``, a fresh model id)."""
    data = data_info if isinstance(data_info, DataInfo) else DataInfo.from_dict(data_info)
    return ModelMeta.new(cfg, data.but(n_train=len(patches.X), n_val=len(patches.X_val)))


def train(
    patches: PatchData, cfg: TrainConfig, outdir: str | Path, stop: StopFlag | None = None,
    model_dir: str | Path | None = None, data_info: DataInfo | dict | None = None,
) -> Iterator[TrainingEvent]:
    """Train one CARE model; yield :data:`TrainingEvent` objects until Finished or Failed.

    The model goes into a new folder claimed in ``outdir``, or into ``model_dir`` (refused if
    it holds a trained model: a model is never overwritten). Closing the generator early
    (``gen.close()``) stops training after the current batch and still saves the model.
    """
    t0 = time.perf_counter()  # a time budget counts from here
    stop = stop or StopFlag()
    given, model_dir = model_dir, Path(model_dir or outdir)  # the folder once claimed
    claimed = False
    try:
        if cfg.batch_size > len(patches.X):
            raise ValueError(f"batch size {cfg.batch_size} is larger than the "
                             f"{len(patches.X)} training patches")
        if patches.patch_size != cfg.patch_size:
            raise ValueError(f"patches are {patches.patch_size}px but the config says "
                             f"{cfg.patch_size}px")
        meta = _meta(cfg, patches, data_info)
        model_dir = check_new_model_dir(given) if given else new_model_dir(Path(outdir), cfg)
        claimed = not given
        with warnings.catch_warnings():  # CSBDeep: the folder we just claimed "exists"
            warnings.filterwarnings("ignore", "output path for model already exists")
            model = build_care(cfg, model_dir.name, model_dir.parent)
        info: dict = {"meta": meta.but(precision=model.precision)}  # + the budget's plan
        atomic_weight_saves(model.keras_model)
        write_meta(model_dir, info["meta"])
    except Exception as exc:
        if claimed:
            release_claim(model_dir)  # a folder we claimed and left empty
        if isinstance(exc, OSError):
            yield Failed(os_error_message(model_dir, "creating it", exc), None)
        else:
            yield Failed(str(exc), None, traceback.format_exc())
        return

    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    callback = _progress_callback(events, stop, cfg)

    def work() -> None:
        try:
            run_cfg = cfg
            if cfg.minutes:
                plan, callback.schedule = plan_budget(model, patches, cfg, t0)
                info["budget"] = plan.to_dict()
                callback.epochs, callback.steps = plan.epochs, plan.steps_per_epoch
                callback.step_s, callback.warmup_steps = plan.step_s, WARMUP_STEPS + 1
                # room for more epochs than planned: the deadline ends the run
                run_cfg = replace(cfg, epochs=2 * plan.epochs + 2,
                                  steps_per_epoch=plan.steps_per_epoch)
                # stop in time for the last validation and for saving the weights
                callback.deadline = t0 + 60 * cfg.minutes - plan.val_s - 0.5
            events.put(Started(model_dir, cfg.loss.name.value, len(patches.X),
                               len(patches.X_val), callback.epochs, callback.steps))
            if not stop.is_set():
                outcome["history"] = _fit(model, patches, run_cfg, callback)
        except BaseException as exc:  # noqa: BLE001 - reported as a Failed event
            outcome["error"] = (exc, traceback.format_exc())
        finally:  # after a full disk, keep the best weights: writing more cannot work
            error = outcome.get("error", (None,))[0]
            save_error = None if disk_full(error) else save_weights(model)
            if save_error is not None and "error" not in outcome:
                outcome["error"] = (save_error, "")
            events.put(None)

    thread = threading.Thread(target=work, name=f"care-train-{model_dir.name}", daemon=True)
    training_started()
    thread.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:  # also on generator close: stop, wait for the saved weights, write metadata
        if thread.is_alive():
            stop.set()
        thread.join()
        try:
            final = _conclude(model_dir, cfg, patches, outcome, callback, info)
        finally:  # the model is saved: let it go, with the graph state TensorFlow keeps
            model = callback = thread = None
            training_ended()
    yield final


def _conclude(model_dir: Path, cfg: TrainConfig, patches: PatchData, outcome: dict,
              callback, info: dict) -> Finished | Failed:
    """Write the final metadata and build the last event (a failure to write the metadata,
    e.g. a full disk, is a :class:`Failed` naming the folder, which then keeps the status
    ``training``: incomplete for every reader)."""
    try:
        return _conclude_meta(model_dir, cfg, patches, outcome, callback, info)
    except OSError as exc:
        return Failed(os_error_message(model_dir, f"writing {META_FILE}", exc), model_dir)


def _conclude_meta(model_dir: Path, cfg: TrainConfig, patches: PatchData, outcome: dict,
                   callback, info: dict) -> Finished | Failed:
    history, stopped = outcome.get("history", {}), callback.stopped
    meta: ModelMeta = info["meta"].but(budget=info.get("budget"))
    if "error" in outcome:
        exc, details = outcome["error"]
        if isinstance(exc, OSError):  # saving weights (our save or CSBDeep's checkpoint)
            msg = os_error_message(model_dir, "saving weights", exc)
            write_meta(model_dir, meta.but(status=Status.FAILED, error=msg))
            return Failed(msg, model_dir)
        write_meta(model_dir, meta.but(status=Status.FAILED, error=str(exc)))
        return Failed(f"training {cfg.loss.name.value} failed: {exc}", model_dir, details)
    if callback.nonfinite is not None:  # CSBDeep's TerminateOnNaN ended it
        epoch, step, loss = callback.nonfinite
        msg = (f"training {cfg.loss.name.value} diverged: the loss became {loss} at step "
               f"{step} of epoch {epoch}; try a lower learning rate")
        write_meta(model_dir, meta.but(status=Status.FAILED, error=msg, history=history))
        return Failed(msg, model_dir)
    if not history:  # generator closed before fit returned
        write_meta(model_dir, meta.but(status=Status.STOPPED))
        return Finished(model_dir, True, 0, float("nan"), {})
    val = [v for v in history.get("val_loss", []) if math.isfinite(v)]
    best = min(val) if val else float("nan")
    write_meta(model_dir, meta.but(status=Status.STOPPED if stopped else Status.FINISHED,
                                   history=history, best_val_loss=best))
    return Finished(model_dir, stopped, len(history.get("loss", [])), best, history)


def run_training(patches: PatchData, cfg: TrainConfig, outdir: str | Path,
                 stop: StopFlag | None = None,
                 on_event: Callable[[TrainingEvent], None] | None = None, **kwargs) -> Finished:
    """Train to the end (``on_event`` sees every event); raise ``RuntimeError`` on failure."""
    last = None
    for last in train(patches, cfg, outdir, stop, **kwargs):
        if on_event is not None:
            on_event(last)
        if isinstance(last, Failed):
            raise RuntimeError(last.error)
    assert isinstance(last, Finished)
    return last
