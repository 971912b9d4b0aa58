"""Real (tiny) CARE training runs: every loss learns, Stop keeps a loadable model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_care_losses.config.train import TrainConfig
from napari_care_losses.losses import LossName
from napari_care_losses.models.folder import META_FILE
from napari_care_losses.restore.predict import load_model
from napari_care_losses.training.trainer import (
    BatchEnd,
    EpochEnd,
    Failed,
    Finished,
    Started,
    StopFlag,
    run_training,
    train,
)

from ..conftest import tiny_config


@pytest.mark.slow
@pytest.mark.parametrize("loss", [n.value for n in LossName])
def test_every_loss_trains_and_validation_loss_goes_down(tiny_patches, tmp_path, loss):
    cfg = tiny_config(loss, epochs=4, steps_per_epoch=4)
    events = list(train(tiny_patches, cfg, tmp_path))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished), events[-1]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4]
    assert len(batches) == 16
    assert all(np.isfinite(e.loss) and np.isfinite(e.val_loss) for e in epochs)
    assert epochs[-1].val_loss < epochs[0].val_loss, [e.val_loss for e in epochs]
    done = events[-1]
    assert not done.stopped and done.best_val_loss == min(e.val_loss for e in epochs)
    meta = json.loads((done.model_dir / META_FILE).read_text())
    assert meta["status"] == "finished" and meta["train"]["loss"]["name"] == loss


@pytest.mark.slow
def test_stop_keeps_best_model_that_reloads_and_predicts(tiny_patches, sample_pair, tmp_path):
    cfg = tiny_config("laplace", epochs=50, steps_per_epoch=3)
    stop = StopFlag()
    events = []
    for event in train(tiny_patches, cfg, tmp_path, stop):
        events.append(event)
        if isinstance(event, BatchEnd) and event.epoch == 1 and event.step == 2:
            stop.set()
    done = events[-1]
    assert isinstance(done, Finished) and done.stopped
    assert done.epochs_done == 2  # stopped inside epoch 2, after its current batch
    assert json.loads((done.model_dir / META_FILE).read_text())["status"] == "stopped"
    model = load_model(done.model_dir)
    assert model.probabilistic and model.config == cfg
    res = model.restore(sample_pair[0][:1])
    assert res.image.shape == (1, 256, 256) and res.scale is not None
    assert np.all(res.scale > 0) and np.all(np.isfinite(res.image))


@pytest.mark.slow
def test_closing_the_generator_stops_and_saves(tiny_patches, tmp_path):
    gen = train(tiny_patches, tiny_config("mae", epochs=50), tmp_path)
    started = next(gen)
    assert isinstance(next(gen), BatchEnd)
    gen.close()
    assert (started.model_dir / "weights_best.h5").exists()
    meta = json.loads((started.model_dir / META_FILE).read_text())
    assert meta["status"] == "stopped"
    load_model(started.model_dir).restore(np.zeros((32, 32), np.float32) + np.eye(32))


def test_failures_are_events_not_exceptions(tiny_patches, tmp_path):
    events = list(train(tiny_patches, tiny_config(batch_size=1000), tmp_path))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert "batch size 1000 is larger than the 26 training patches" in events[0].error
    with pytest.raises(RuntimeError, match="batch size"):
        run_training(tiny_patches, tiny_config(batch_size=1000), tmp_path)


def test_config_validation_and_roundtrip():
    cfg = tiny_config("bandpass").with_loss("bandpass", {"sigma2": 3})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="batch_size=0"):
        tiny_config(batch_size=0)
    with pytest.raises(ValueError, match="larger than the 32 px patches"):
        tiny_config().with_loss("bandpass", {"sigma2": 9})
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": 1})


def test_the_seed_fixes_the_initial_weights(tmp_path):
    from napari_care_losses.models.network import build_care

    def weights(seed: int) -> list[np.ndarray]:
        cfg = tiny_config("mae", seed=seed)
        return build_care(cfg, f"s{seed}_{len(list(tmp_path.iterdir()))}",
                          tmp_path).keras_model.get_weights()

    a, b, c = weights(3), weights(3), weights(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.slow
def test_a_diverging_run_fails_with_a_clear_message(tiny_patches, tmp_path):
    from napari_care_losses.io.data import PatchData

    bad = PatchData(tiny_patches.X, np.full_like(tiny_patches.Y, np.nan), tiny_patches.X_val,
                    tiny_patches.Y_val)
    events = list(train(bad, tiny_config("mae"), tmp_path))
    assert isinstance(events[-1], Failed)
    assert "diverged" in events[-1].error and "lower learning rate" in events[-1].error
    meta = json.loads((events[-1].model_dir / META_FILE).read_text())
    assert meta["status"] == "failed"


@pytest.mark.slow
def test_a_finished_model_leaves_no_graph_state_behind(tiny_patches, tmp_path):
    """Keras' optimizer registers a custom gradient per traced training function in
    TensorFlow's global registry, which holds the whole graph: released after each model
    (else every model trained in one process adds 20-35 MB)."""
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    before = {k for k in registry if k.startswith("CustomGradient-")}
    for loss in ("mae", "laplace"):
        done = run_training(tiny_patches, tiny_config(loss, epochs=1), tmp_path)
        assert {k for k in registry if k.startswith("CustomGradient-")} <= before
        load_model(done.model_dir)  # still a complete model
    assert not list(tmp_path.rglob("*.saving.h5"))


def test_tiles_skip_keras_predict_pipeline_with_the_same_output(tmp_path):
    """CSBDeep calls ``keras_model.predict`` per tile; ours runs ``predict_on_batch``."""
    from napari_care_losses.models.network import build_care

    care = build_care(tiny_config("laplace"), "lean", tmp_path)
    net = care.keras_model
    x = np.random.default_rng(0).random((1, 48, 40, 1), dtype=np.float32)
    assert getattr(net.predict, "__self__", None) is None  # not Keras' bound method
    reference = type(net).predict(net, x, verbose=0)  # Keras' own predict
    np.testing.assert_allclose(net.predict(x, verbose=0), reference, rtol=1e-5, atol=1e-6)
    restored = care.predict(x[0, ..., 0], "YX")
    assert restored.shape == (48, 40) and np.isfinite(restored).all()
