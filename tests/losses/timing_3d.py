"""Timing check of the 3D losses (not a unit test; not collected by pytest).

One evaluation (forward, and forward + gradient) of each loss's 3D Keras form on a
16×16×64×64×1 batch (CSBDeep's 3D layout), CPU, median of ``--repeat`` runs after a warm-up
(graph mode, as in training)::

    PYTHONPATH=src python tests/losses/timing_3d.py [--repeat 5] [--voxel DZ DY DX]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--voxel", type=float, nargs=3, default=(0.5, 0.16, 0.16),
                        metavar=("DZ", "DY", "DX"))
    args = parser.parse_args()

    import tensorflow as tf

    from napari_care_losses.losses import loss_records
    from napari_care_losses.losses.keras_losses import make_loss

    shape = (16, 16, 64, 64, 1)
    rng = np.random.default_rng(0)
    y_true = tf.constant(rng.uniform(size=shape).astype(np.float32))
    noisy = rng.uniform(size=shape).astype(np.float32)
    print(f"TensorFlow {tf.__version__}, {tf.config.threading.get_inter_op_parallelism_threads()}"
          f" inter-op threads; batch {'×'.join(map(str, shape))}, voxel {tuple(args.voxel)}")
    print(f"{'loss':14s} {'forward ms':>11s} {'fwd+grad ms':>12s}")
    for record in loss_records():
        pred = np.concatenate([noisy, np.full(shape, 0.2, np.float32)], -1) \
            if record.probabilistic else noisy
        y_pred = tf.Variable(pred)
        fn = make_loss(record.name, patch_size=shape[1:4], ndim=3, voxel_size=args.voxel)
        forward = tf.function(lambda t, p, fn=fn: fn(t, p))

        @tf.function
        def with_grad(t, fn=fn, y_pred=y_pred):
            with tf.GradientTape() as tape:
                value = fn(t, y_pred)
            return value, tape.gradient(value, y_pred)

        times = {}
        calls = (("fwd", lambda f=forward, p=y_pred: f(y_true, p)),
                 ("grad", lambda g=with_grad: g(y_true)))
        for label, call in calls:
            call()  # trace and warm up
            runs = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = call()
                np.asarray(out[0] if isinstance(out, tuple) else out)
                runs.append(time.perf_counter() - t0)
            times[label] = 1e3 * float(np.median(runs))
        print(f"{record.name:14s} {times['fwd']:11.1f} {times['grad']:12.1f}")


if __name__ == "__main__":
    main()
