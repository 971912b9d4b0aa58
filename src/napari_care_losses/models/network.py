"""The CARE network with a loss from our registry: CSBDeep's config, the ``CARE`` subclass
and how to build or load one. Shared by training and prediction (so prediction never
imports the training module); TensorFlow is imported only when a network is built."""

from __future__ import annotations

from pathlib import Path

from ..config.train import TrainConfig


def care_config(cfg: TrainConfig):
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
        # with a time budget the learning rate follows a cosine decay instead
        train_reduce_lr=({"factor": 0.5, "patience": cfg.reduce_lr_patience, "verbose": 0}
                         if cfg.reduce_lr_patience and not cfg.minutes else None),
    )


def _unet(c, policy: str):
    """CSBDeep's ``custom_unet`` (same layers in the same order, so weights load in any
    precision), with the U-Net body in Keras dtype ``policy`` and the head (last 1x1
    convolution, residual, activation, Laplace scale) in float32."""
    import keras
    import numpy as np
    from csbdeep.internals.blocks import unet_block
    from keras import layers

    f32 = "float32"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:  # layers take the global policy when they are created
        inp = layers.Input(c.unet_input_shape, name="input")
        body = unet_block(c.unet_n_depth, c.unet_n_first, (c.unet_kern_size,) * c.n_dim,
                          activation="relu", dropout=0.0, batch_norm=False,
                          n_conv_per_depth=2, pool=(2,) * c.n_dim)(inp)
    finally:
        keras.config.set_dtype_policy(previous)
    final = layers.Conv2D(c.n_channel_out, (1, 1), activation="linear", dtype=f32)(body)
    if c.unet_residual:
        final = layers.Add(dtype=f32)([final, inp])
    final = layers.Activation(c.unet_last_activation, dtype=f32)(final)
    if c.probabilistic:
        scale = layers.Conv2D(c.n_channel_out, (1, 1), activation="softplus", dtype=f32)(body)
        scale = layers.Lambda(lambda x: x + np.float32(1e-3), dtype=f32)(scale)
        final = layers.Concatenate(axis=-1, dtype=f32)([final, scale])
    return keras.Model(inputs=inp, outputs=final)


def _float32_metric(metric):
    def fn(y_true, y_pred):
        from keras import ops

        return metric(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))

    fn.__name__ = metric.__name__
    return fn


def _lean_predict(net):
    """Let CSBDeep's per-tile ``keras_model.predict(x)`` run ``predict_on_batch``: the same
    compiled function without Keras' per-call data pipeline, which costs ~0.1 s per call on
    a 2-core CPU (a third of the time of a 512² tile; measured in benchmarks/train_step.py)."""
    import weakref

    ref = weakref.ref(net)  # no reference cycle: the model is freed as soon as it is unused

    def predict(x, batch_size=None, verbose=None, **_):
        return ref().predict_on_batch(x)

    net.predict = predict
    return net


def loss_care_class():
    """Build the CARE subclass lazily so importing this module does not import TensorFlow."""
    from .._tf import ensure_tensorflow

    ensure_tensorflow()  # before CSBDeep imports TensorFlow: see ._tf
    from csbdeep.internals.losses import loss_mae, loss_mse
    from csbdeep.models import CARE

    from ..config.settings import KERAS_POLICY
    from ..losses.keras_losses import make_loss

    class LossCARE(CARE):
        """CSBDeep ``CARE`` compiled with a loss from our registry, in a given precision
        (``float32``, ``bfloat16`` or ``float16``: the U-Net body; head and loss float32)."""

        train_config: TrainConfig | None = None

        def __init__(self, config, name=None, basedir=".", precision: str = "float32"):
            self.precision = precision
            super().__init__(config, name=name, basedir=basedir)

        def _build(self):
            return _lean_predict(_unet(self.config, KERAS_POLICY[self.precision]))

        def prepare_for_training(self, optimizer=None, **kwargs):
            super().prepare_for_training(optimizer, **kwargs)
            cfg = self.train_config
            if cfg is not None:
                import keras

                loss = make_loss(cfg.loss.name, cfg.loss.params, cfg.patch_size)
                opt = self.keras_model.optimizer
                if self.precision == "float16" and not isinstance(
                        opt, keras.optimizers.LossScaleOptimizer):  # float16 gradients underflow
                    opt = keras.optimizers.LossScaleOptimizer(opt)
                self.keras_model.compile(
                    optimizer=opt, loss=loss,
                    metrics=[_float32_metric(loss_mse()), _float32_metric(loss_mae())])

    return LossCARE


def build_care(cfg: TrainConfig | None, name: str, basedir: Path, precision: str | None = None):
    """A CARE model with our loss; ``cfg=None`` loads an existing folder for prediction.

    ``precision`` (float32, bfloat16, float16 or auto) defaults to the config's for training
    and to float32 for prediction; a model trained in one precision loads in any.
    """
    from ..config.settings import resolve_precision

    cls = loss_care_class()
    if precision is None:
        precision = cfg.precision if cfg is not None else "float32"
    precision = resolve_precision(precision)
    if cfg is not None:  # Keras draws the initial weights when the layers are built
        import keras

        keras.utils.set_random_seed(cfg.seed)
    model = cls(care_config(cfg) if cfg is not None else None, name=name, basedir=str(basedir),
                precision=precision)
    model.train_config = cfg
    return model
