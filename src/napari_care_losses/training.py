"""CARE training with any registered loss, as one generator of typed events.

The CLI prints the events, tests collect them and the napari widget runs the same generator
in a ``thread_worker``. Stopping is a flag checked after every batch; the best weights (on
validation loss) are always kept and the model folder stays loadable.

Weights are written under a temporary name and renamed, so a full disk (or a killed run)
never leaves a truncated ``weights_best.h5`` that looks valid; a failed save ends the run
with one :class:`Failed` event naming the model folder. Once a model is done, the graph
state TensorFlow would keep for it forever is released (see :func:`_release_graphs`), so
training many models in one process does not grow its memory.
"""

from __future__ import annotations

import errno
import gc
import math
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from .care_model import build_care
from .config import TrainConfig, versions
from .data import PatchData
from .model_folder import META_FILE, write_meta

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

    Wraps a ``threading.Event``, or any event with ``set``/``is_set`` (e.g. a
    ``multiprocessing`` event, when the request comes from another process).
    """

    def __init__(self, event=None) -> None:
        self._event = event if event is not None else threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


# ----------------------------------------------------------------------------- model


def new_model_dir(outdir: Path, cfg: TrainConfig) -> Path:
    """A fresh folder name: loss + time stamp (unique even within the same second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{cfg.loss.name.value.replace('+', '_')}_{stamp}"
    path, n = Path(outdir) / base, 1
    while path.exists():
        n += 1
        path = Path(outdir) / f"{base}_{n}"
    return path


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


#: Lowest learning rate of the budget's cosine decay, as a fraction of the initial one.
COSINE_ALPHA = 0.05
#: Steps timed (after one compiling step) to plan a time budget.
WARMUP_STEPS = 3


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


def _cosine_schedule(lr0: float, total_steps: int):
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


def _plan_budget(model, patches: PatchData, cfg: TrainConfig, t0: float):
    """Compile, time a few real training steps and a bit of validation, then fit epochs x
    steps (at most ``cfg.steps_per_epoch`` per epoch, at least 4 epochs when possible) and the
    cosine learning-rate decay into what is left of ``cfg.minutes``."""
    import keras

    schedule = _cosine_schedule(cfg.learning_rate, cfg.epochs * cfg.steps_per_epoch)
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
    left = budget - (now - t0) - 0.5 - 0.02 * budget  # keep time for saving the weights
    steps = cfg.steps_per_epoch
    epochs = int(left // (steps * step_s + val_s))
    if epochs < 4:  # shorter epochs: keep a few validations (and best-model checkpoints)
        steps = max(1, int((left / 4 - val_s) // step_s))
        epochs = int(left // (steps * step_s + val_s))
    epochs = max(1, epochs)
    schedule.total.assign(float(WARMUP_STEPS + 1 + epochs * steps))
    return BudgetPlan(epochs, steps, step_s, val_s, now - t0), schedule


def _fit(model, patches: PatchData, cfg: TrainConfig, callback) -> dict[str, list[float]]:
    """CARE.train without its console progress bar, plus our callback."""
    import keras
    from csbdeep.internals.train import DataWrapper

    keras.utils.set_random_seed(cfg.seed)
    if not model._model_prepared:
        model.prepare_for_training()
    data = DataWrapper(patches.X, patches.Y, cfg.batch_size,
                       length=cfg.epochs * cfg.steps_per_epoch)
    history = model.keras_model.fit(
        iter(data), validation_data=(patches.X_val, patches.Y_val), epochs=cfg.epochs,
        steps_per_epoch=cfg.steps_per_epoch, callbacks=[*model.callbacks, callback], verbose=0,
        shuffle=False,  # DataWrapper shuffles its own batches
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _meta(cfg: TrainConfig, patches: PatchData, status: str, **extra) -> dict:
    return {"format": 1, "status": status, "train": cfg.to_dict(),
            "data": {"n_train": len(patches.X), "n_val": len(patches.X_val),
                     **extra.pop("data", {})},
            "versions": versions(), **extra}


def train(
    patches: PatchData, cfg: TrainConfig, outdir: str | Path, stop: StopFlag | None = None,
    model_dir: str | Path | None = None, data_info: dict | None = None,
) -> Iterator[TrainingEvent]:
    """Train one CARE model; yield :data:`TrainingEvent` objects until Finished or Failed.

    Closing the generator early (``gen.close()``) stops training after the current batch and
    still saves the model.
    """
    t0 = time.perf_counter()  # a time budget counts from here
    stop = stop or StopFlag()
    model_dir = Path(model_dir) if model_dir else new_model_dir(Path(outdir), cfg)
    info: dict = {"data": data_info or {}}
    try:
        if cfg.batch_size > len(patches.X):
            raise ValueError(f"batch size {cfg.batch_size} is larger than the "
                             f"{len(patches.X)} training patches")
        if patches.patch_size != cfg.patch_size:
            raise ValueError(f"patches are {patches.patch_size}px but the config says "
                             f"{cfg.patch_size}px")
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        model = build_care(cfg, model_dir.name, model_dir.parent)
        info["precision_used"] = model.precision
        _atomic_weight_saves(model.keras_model)
        write_meta(model_dir, _meta(cfg, patches, "training", **info))
    except Exception as exc:
        if isinstance(exc, OSError):
            yield Failed(_os_error_message(model_dir, "creating it", exc), None)
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
                plan, callback.schedule = _plan_budget(model, patches, cfg, t0)
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
        finally:
            save_error = _save_weights(model)
            if save_error is not None and "error" not in outcome:
                outcome["error"] = (save_error, "")
            events.put(None)

    thread = threading.Thread(target=work, name=f"care-train-{model_dir.name}", daemon=True)
    _training_started()
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
            _training_ended()
    yield final


def _conclude(model_dir: Path, cfg: TrainConfig, patches: PatchData, outcome: dict,
              callback, info: dict) -> Finished | Failed:
    """Write the final metadata and build the last event (a failure to write the metadata,
    e.g. a full disk, is a :class:`Failed` naming the folder, which then keeps the status
    ``training``: incomplete for every reader)."""
    try:
        return _conclude_meta(model_dir, cfg, patches, outcome, callback, info)
    except OSError as exc:
        return Failed(_os_error_message(model_dir, f"writing {META_FILE}", exc), model_dir)


def _conclude_meta(model_dir: Path, cfg: TrainConfig, patches: PatchData, outcome: dict,
                   callback, info: dict) -> Finished | Failed:
    history, stopped = outcome.get("history", {}), callback.stopped
    if "error" in outcome:
        exc, details = outcome["error"]
        if isinstance(exc, OSError):  # saving weights (our save or CSBDeep's checkpoint)
            msg = _os_error_message(model_dir, "saving weights", exc)
            write_meta(model_dir, _meta(cfg, patches, "failed", error=msg, **info))
            return Failed(msg, model_dir)
        write_meta(model_dir, _meta(cfg, patches, "failed", error=str(exc), **info))
        return Failed(f"training {cfg.loss.name.value} failed: {exc}", model_dir, details)
    if callback.nonfinite is not None:  # CSBDeep's TerminateOnNaN ended it
        epoch, step, loss = callback.nonfinite
        msg = (f"training {cfg.loss.name.value} diverged: the loss became {loss} at step "
               f"{step} of epoch {epoch}; try a lower learning rate")
        write_meta(model_dir, _meta(cfg, patches, "failed", error=msg, history=history, **info))
        return Failed(msg, model_dir)
    if not history:  # generator closed before fit returned
        write_meta(model_dir, _meta(cfg, patches, "stopped", **info))
        return Finished(model_dir, True, 0, float("nan"), {})
    val = [v for v in history.get("val_loss", []) if math.isfinite(v)]
    best = min(val) if val else float("nan")
    write_meta(model_dir, _meta(cfg, patches, "stopped" if stopped else "finished",
                                history=history, best_val_loss=best, **info))
    return Finished(model_dir, stopped, len(history.get("loss", [])), best, history)


def _save_weights(model) -> OSError | None:
    """Keep the best weights; if none were checkpointed yet, keep the last ones as best.

    Returns the error of a failed save (a full disk, …) instead of raising: saving must never
    mask the training outcome, and the caller reports it as one line.
    """
    logdir = Path(model.logdir)
    try:
        model.keras_model.save_weights(str(logdir / "weights_last.h5"))
        best = logdir / "weights_best.h5"
        if not best.exists():
            model.keras_model.save_weights(str(best))
        else:
            model.load_weights("weights_best.h5")
    except OSError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - h5py/Keras wrap some I/O errors
        return OSError(f"{type(exc).__name__}: {exc}")
    return None


#: How a weights file is written before it is renamed into place (Keras wants ``.h5``).
_PARTIAL_SUFFIX = ".saving.h5"


def _atomic_weight_saves(net) -> None:
    """Make every ``save_weights`` of ``net`` (ours and CSBDeep's ``ModelCheckpoint``) write
    a temporary file and rename it: a failed or interrupted save leaves the previous file
    (or none), never a truncated one, and no temporary file."""
    save = net.save_weights

    def save_weights(filepath, *args, **kwargs):
        path = Path(filepath)
        tmp = path.with_name(path.stem + _PARTIAL_SUFFIX)
        try:
            save(str(tmp), *args, **kwargs)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    object.__setattr__(net, "save_weights", save_weights)


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left" in text or "errno = 28" in text or "Disk quota" in text


def _os_error_message(model_dir: Path, what: str, exc: BaseException) -> str:
    """One line naming the model folder: "model folder X: disk full while saving weights …"."""
    reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    reason = " ".join(reason.split()) or type(exc).__name__
    prefix = f"model folder {model_dir}: "
    if reason.startswith(prefix):
        reason = reason[len(prefix):]
    if _disk_full(exc):
        return (f"{prefix}disk full while {what} ({reason}); free some space and train "
                "again")
    return f"{prefix}cannot finish {what} ({reason})"


# ----------------------------------------------------------------------------- memory

#: Trainings running in this process, and the gradient registrations that predate them.
_RUNNING: dict = {"count": 0, "baseline": frozenset()}
_RUNNING_LOCK = threading.Lock()


def _gradient_registry() -> dict | None:
    """TensorFlow's global gradient registry (private API: None if it moved)."""
    if "tensorflow" not in sys.modules:
        return None
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except Exception:  # noqa: BLE001 - a TensorFlow without it: nothing to release
        return None
    return registry if isinstance(registry, dict) else None


def _training_started() -> None:
    with _RUNNING_LOCK:
        if _RUNNING["count"] == 0:
            _RUNNING["baseline"] = frozenset(_gradient_registry() or ())
        _RUNNING["count"] += 1


def _training_ended() -> None:
    """When the last running training of this process ends, release its graphs."""
    with _RUNNING_LOCK:
        _RUNNING["count"] -= 1
        if _RUNNING["count"] == 0:
            _release_graphs(_RUNNING["baseline"])


def _release_graphs(baseline: frozenset) -> None:
    """Free what TensorFlow keeps of finished models' training graphs.

    Keras' optimizer sums gradients with the default strategy's ``all_reduce``, which wraps
    them in a ``tf.custom_gradient``: every traced training function registers a
    ``CustomGradient-N`` in TensorFlow's global gradient registry, whose closure holds the
    whole training ``FuncGraph`` (its functions and constants) forever — 20-35 MB per model
    (TensorFlow issues 27492 and 97697). ``keras.utils.clear_session`` does not remove them.
    Those entries are only needed while a graph is being differentiated, i.e. while it is
    traced: once no training runs here, the ones registered since the first of them started
    go, then the garbage is collected and freed heap given back to the system.
    """
    registry = _gradient_registry()
    if registry is not None:
        for key in [k for k in list(registry) if isinstance(k, str)
                    and k.startswith("CustomGradient-") and k not in baseline]:
            registry.pop(key, None)
    gc.collect()
    _trim_heap()


def _trim_heap() -> None:
    """Give freed heap back to the system (glibc keeps it otherwise; RSS would not drop)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, …)
        pass


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
