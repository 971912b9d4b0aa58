"""Seconds per training step for each loss, and the plugin's overhead over plain CSBDeep.

Part 1 times ``train_on_batch`` on the same U-Net and batch (64x64 patches, batch 16) for
every registered loss; losses are interleaved over repeats (median reported) so machine
drift hits all of them alike. Overhead is relative to ``mae``.

Part 2 trains the same configuration with plain ``csbdeep.models.CARE.train`` and with this
package's event generator ``training.train`` (which adds a Keras callback, an event queue
and a worker thread) and compares the median epoch time per step; the two alternate over
``--rounds`` runs and the first epoch of each run (tracing) is left out.

Usage:  python benchmarks/train_step.py [--steps 10 --repeats 3 --epochs 4 --rounds 2]
Prints tables and writes ``benchmarks/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from napari_care_losses.config import TrainConfig, versions  # noqa: E402
from napari_care_losses.data import PatchData  # noqa: E402
from napari_care_losses.losses import LossName, LossSpec  # noqa: E402
from napari_care_losses.training import EpochEnd, _care_config, build_care, train  # noqa: E402


def synthetic_patches(n: int, size: int, seed: int = 0) -> PatchData:
    rng = np.random.default_rng(seed)
    y = rng.random((n, size, size, 1), dtype=np.float32)
    x = y + rng.normal(0, 0.3, y.shape).astype(np.float32)
    k = max(1, n // 5)
    return PatchData(x[k:], y[k:], x[:k], y[:k])


def time_losses(cfg: TrainConfig, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds per ``train_on_batch`` step for each loss (same net, same batch)."""
    rng = np.random.default_rng(0)
    x = rng.random((cfg.batch_size, cfg.patch_size, cfg.patch_size, 1), dtype=np.float32)
    y = x + rng.normal(0, 0.1, x.shape).astype(np.float32)
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in LossName:
            m = build_care(replace(cfg, loss=LossSpec.create(name)), name.value.replace("+", "_"),
                           Path(tmp))
            m.prepare_for_training()
            for _ in range(3):  # trace and warm up
                m.keras_model.train_on_batch(x, y)
            models[name.value] = m
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(repeats):
            for name, m in models.items():
                t = time.perf_counter()
                for _ in range(steps):
                    m.keras_model.train_on_batch(x, y)
                times[name].append((time.perf_counter() - t) / steps)
    return {k: float(np.median(v)) for k, v in times.items()}


def _epoch_timer_class():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Appends each epoch's wall time (seconds) to ``out``."""

        def __init__(self, out: list[float]) -> None:
            super().__init__()
            self.out = out

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.out.append(time.perf_counter() - self.t)

    return EpochTimer


def time_plain_vs_plugin(cfg: TrainConfig, epochs: int, rounds: int
                         ) -> dict[str, dict[str, float]]:
    """Median seconds/step (epochs 2..N) of plain CSBDeep ``CARE.train`` vs our generator.

    The two are run alternately ``rounds`` times per loss, so machine drift hits both alike.
    """
    import contextlib
    import io

    import keras
    from csbdeep.models import CARE

    timer = _epoch_timer_class()
    patches = synthetic_patches(256, cfg.patch_size)
    out: dict[str, dict[str, float]] = {}
    for loss in ("mae", "laplace"):
        c = replace(cfg, loss=LossSpec.create(loss), epochs=epochs)
        plain_s: list[float] = []
        ours_s: list[float] = []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                plain = CARE(_care_config(c), "plain", basedir=tmp)
                plain.prepare_for_training()
                epoch_s: list[float] = []
                plain.callbacks.append(timer(epoch_s))
                keras.utils.set_random_seed(c.seed)
                with contextlib.redirect_stdout(io.StringIO()):  # its progress bar
                    plain.train(patches.X, patches.Y, (patches.X_val, patches.Y_val),
                                epochs=epochs, steps_per_epoch=c.steps_per_epoch)
                plain_s += epoch_s[1:]
                ours = [e.seconds for e in train(patches, c, tmp) if isinstance(e, EpochEnd)]
                ours_s += ours[1:]
        out[loss] = {"csbdeep": float(np.median(plain_s)) / c.steps_per_epoch,
                     "plugin": float(np.median(ours_s)) / c.steps_per_epoch}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run in part 2")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs in part 2")
    ap.add_argument("--unet-first", type=int, default=32)
    ap.add_argument("--kernel", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    args = ap.parse_args()
    cfg = TrainConfig(patch_size=64, batch_size=16, unet_n_first=args.unet_first,
                      unet_kern_size=args.kernel, steps_per_epoch=args.steps,
                      reduce_lr_patience=0)
    print(f"U-Net depth {cfg.unet_n_depth}, {cfg.unet_n_first} first filters, kernel "
          f"{cfg.unet_kern_size}; batch {cfg.batch_size} of {cfg.patch_size}x{cfg.patch_size}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n", flush=True)
    per_loss = time_losses(cfg, args.steps, args.repeats)
    ref = per_loss["mae"]
    print("| loss | s/step | overhead vs mae |\n| --- | ---: | ---: |")
    for name, s in per_loss.items():
        print(f"| {name} | {s:.4f} | {100 * (s / ref - 1):+.1f} % |")
    plain = time_plain_vs_plugin(cfg, args.epochs, args.rounds)
    print("\n| loss | CSBDeep CARE.train s/step | plugin s/step | difference |")
    print("| --- | ---: | ---: | ---: |")
    for name, d in plain.items():
        print(f"| {name} | {d['csbdeep']:.4f} | {d['plugin']:.4f} | "
              f"{100 * (d['plugin'] / d['csbdeep'] - 1):+.1f} % |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "config": cfg.to_dict(), "steps": args.steps, "repeats": args.repeats,
        "epochs": args.epochs, "rounds": args.rounds,
        "cpus": os.cpu_count(), "versions": versions(),
        "seconds_per_step": per_loss,
        "overhead_vs_mae_percent": {k: 100 * (v / ref - 1) for k, v in per_loss.items()},
        "plain_vs_plugin_seconds_per_step": plain,
    }, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
