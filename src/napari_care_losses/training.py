"""CARE training with any registered loss, as one generator of typed events.

The CLI prints the events, tests collect them and the napari widget runs the same generator
in a ``thread_worker``. Stopping is a flag checked after every batch; the best weights (on
validation loss) are always kept and the model folder stays loadable.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .config import TrainConfig, versions, write_meta
from .data import PatchData

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


def _care_config(cfg: TrainConfig):
    from csbdeep.models import Config

    probabilistic = cfg.loss.probabilistic
    return Config(
        "YXC", n_channel_in=1, n_channel_out=1, probabilistic=probabilistic,
        # CSBDeep needs one of its own loss names here; we recompile with ours afterwards.
        train_loss="laplace" if probabilistic else "mae",
        unet_n_depth=cfg.unet_n_depth, unet_n_first=cfg.unet_n_first,
        unet_kern_size=cfg.unet_kern_size, train_batch_size=cfg.batch_size,
        train_learning_rate=cfg.learning_rate, train_epochs=cfg.epochs,
        train_steps_per_epoch=cfg.steps_per_epoch, train_tensorboard=False,
        train_reduce_lr=({"factor": 0.5, "patience": cfg.reduce_lr_patience, "verbose": 0}
                         if cfg.reduce_lr_patience else None),
    )


def _loss_care_class():
    """Build the CARE subclass lazily so importing this module does not import TensorFlow."""
    from ._tf import ensure_tensorflow

    ensure_tensorflow()  # before CSBDeep imports TensorFlow: see ._tf
    from csbdeep.internals.losses import loss_mae, loss_mse
    from csbdeep.models import CARE

    from .losses.keras_losses import make_loss

    class LossCARE(CARE):
        """CSBDeep ``CARE`` compiled with a loss from our registry."""

        train_config: TrainConfig | None = None

        def prepare_for_training(self, optimizer=None, **kwargs):
            super().prepare_for_training(optimizer, **kwargs)
            cfg = self.train_config
            if cfg is not None:
                loss = make_loss(cfg.loss.name, cfg.loss.params, cfg.patch_size)
                self.keras_model.compile(optimizer=self.keras_model.optimizer, loss=loss,
                                         metrics=[loss_mse(), loss_mae()])

    return LossCARE


def build_care(cfg: TrainConfig | None, name: str, basedir: Path):
    """A CARE model with our loss; ``cfg=None`` loads an existing folder for prediction."""
    cls = _loss_care_class()
    if cfg is not None:  # Keras draws the initial weights when the layers are built
        import keras

        keras.utils.set_random_seed(cfg.seed)
    model = cls(_care_config(cfg) if cfg is not None else None, name=name, basedir=str(basedir))
    model.train_config = cfg
    return model


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

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.t0 = epoch, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            loss = float((logs or {}).get("loss", float("nan")))
            if not math.isfinite(loss) and self.nonfinite is None:
                self.nonfinite = (self.epoch + 1, batch + 1, loss)
            events.put(BatchEnd(self.epoch, batch + 1, cfg.steps_per_epoch, loss))
            if stop.is_set():
                self.model.stop_training = self.stopped = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            events.put(EpochEnd(epoch + 1, cfg.epochs, float(logs.get("loss", float("nan"))),
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
    stop = stop or StopFlag()
    model_dir = Path(model_dir) if model_dir else new_model_dir(Path(outdir), cfg)
    info = {"data": data_info or {}}
    try:
        if cfg.batch_size > len(patches.X):
            raise ValueError(f"batch size {cfg.batch_size} is larger than the "
                             f"{len(patches.X)} training patches")
        if patches.patch_size != cfg.patch_size:
            raise ValueError(f"patches are {patches.patch_size}px but the config says "
                             f"{cfg.patch_size}px")
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        model = build_care(cfg, model_dir.name, model_dir.parent)
        write_meta(model_dir, _meta(cfg, patches, "training", **info))
    except Exception as exc:
        yield Failed(str(exc), None, traceback.format_exc())
        return

    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    callback = _progress_callback(events, stop, cfg)

    def work() -> None:
        try:
            outcome["history"] = _fit(model, patches, cfg, callback)
        except BaseException as exc:  # noqa: BLE001 - reported as a Failed event
            outcome["error"] = (exc, traceback.format_exc())
        finally:
            _save_weights(model)
            events.put(None)

    thread = threading.Thread(target=work, name=f"care-train-{model_dir.name}", daemon=True)
    thread.start()
    try:
        yield Started(model_dir, cfg.loss.name.value, len(patches.X), len(patches.X_val),
                      cfg.epochs, cfg.steps_per_epoch)
        while (event := events.get()) is not None:
            yield event
    finally:  # also on generator close: stop, wait for the saved weights, write metadata
        if thread.is_alive():
            stop.set()
        thread.join()
        final = _conclude(model_dir, cfg, patches, outcome, callback, info)
    yield final


def _conclude(model_dir: Path, cfg: TrainConfig, patches: PatchData, outcome: dict,
              callback, info: dict) -> Finished | Failed:
    """Write the final metadata and build the last event."""
    history, stopped = outcome.get("history", {}), callback.stopped
    if "error" in outcome:
        exc, details = outcome["error"]
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


def _save_weights(model) -> None:
    """Keep the best weights; if none were checkpointed yet, keep the last ones as best."""
    logdir = Path(model.logdir)
    try:
        model.keras_model.save_weights(str(logdir / "weights_last.h5"))
        best = logdir / "weights_best.h5"
        if not best.exists():
            model.keras_model.save_weights(str(best))
        else:
            model.load_weights("weights_best.h5")
    except Exception:  # noqa: BLE001 - saving must never mask the training outcome
        traceback.print_exc()


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
