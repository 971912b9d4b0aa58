"""Time of the 3D losses against their 2D (slice-wise) forms.

One evaluation (forward, and forward + gradient) of each loss's 3D Keras form on a
16×16×64×64×1 batch (CSBDeep's 3D layout), CPU, median of ``--repeat`` runs after a warm-up
(graph mode, as in training); beside it the 2D form on the same voxels as 256 planes of
64×64 (the slice-wise cost)::

    .venv/bin/python benchmarks/losses_3d.py [--repeat 5] [--voxel DZ DY DX]

Prints a table and writes ``benchmarks/results/losses_3d.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def _median_ms(call, repeat: int) -> float:
    call()  # trace and warm up
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = call()
        np.asarray(out[0] if isinstance(out, tuple) else out)
        runs.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(runs))


def _time(fn, y_true, pred: np.ndarray, repeat: int) -> tuple[float, float]:
    """Median ms of forward and of forward + gradient (graph mode)."""
    import tensorflow as tf

    y_pred = tf.Variable(pred)
    forward = tf.function(lambda t, p: fn(t, p))

    @tf.function
    def with_grad(t):
        with tf.GradientTape() as tape:
            value = fn(t, y_pred)
        return value, tape.gradient(value, y_pred)

    return (_median_ms(lambda: forward(y_true, y_pred), repeat),
            _median_ms(lambda: with_grad(y_true), repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--voxel", type=float, nargs=3, default=(0.5, 0.16, 0.16),
                        metavar=("DZ", "DY", "DX"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/losses_3d.json"))
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
    print(f"{'loss':14s} {'3D fwd ms':>10s} {'3D fwd+grad':>12s} {'2D fwd ms':>10s} "
          f"{'2D fwd+grad':>12s}")
    planes = (shape[0] * shape[1], *shape[2:])
    rows = {}
    for record in loss_records():
        pred = np.concatenate([noisy, np.full(shape, 0.2, np.float32)], -1) \
            if record.probabilistic else noisy
        fn3 = make_loss(record.name, patch_size=shape[1:4], ndim=3, voxel_size=args.voxel)
        fn2 = make_loss(record.name, patch_size=shape[2])
        t3 = _time(fn3, y_true, pred, args.repeat)
        t2 = _time(fn2, tf.reshape(y_true, planes), pred.reshape(*planes[:-1], -1), args.repeat)
        print(f"{record.name:14s} {t3[0]:10.1f} {t3[1]:12.1f} {t2[0]:10.1f} {t2[1]:12.1f}")
        rows[record.name] = {"3d_forward_ms": t3[0], "3d_forward_grad_ms": t3[1],
                             "2d_forward_ms": t2[0], "2d_forward_grad_ms": t2[1]}
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "batch": shape, "voxel_um": list(args.voxel), "repeat": args.repeat, "losses": rows,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "avx512_bf16": "avx512_bf16" in flags,
                    "tensorflow": tf.__version__}}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
