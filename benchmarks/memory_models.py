"""Resident memory while training several models in one process (issue 9, class 7).

Trains ``--models`` tiny-but-real CARE models one after the other in this process, as
``napari-care-losses train --loss A --loss B …``, a serial experiment run or the training
dock's child process do, and prints the resident memory (VmRSS) after each model.

``--via train`` (default) drives :func:`napari_care_losses.training.trainer.train` directly (the CLI
and experiments); ``--via jobs`` drives :func:`napari_care_losses.training.jobs.run_jobs`
with a live preview every epoch (the dock's child process).

Usage: python benchmarks/memory_models.py [--models 6 --via train|jobs --label NAME]
Prints a table and writes ``benchmarks/results/memory_models_<via>[_<label>].json``.
Target: at most +50 MB in total after the first model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MB = 1024**2
LOSSES = ("mae", "laplace", "fft", "bandpass", "ssim", "fft+bandpass", "mse", "msssim_l1")


def rss_mb() -> float:
    """This process's resident memory in MB, from /proc/self/status (psutil elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / MB


def tiny_config(loss: str, epochs: int, steps: int, seed: int):
    from napari_care_losses.config.train import TrainConfig
    from napari_care_losses.losses import LossSpec

    return TrainConfig(loss=LossSpec.create(loss, patch_size=32), patch_size=32,
                       patches_per_image=16, epochs=epochs, steps_per_epoch=steps,
                       batch_size=4, learning_rate=2e-3, unet_n_depth=2, unet_n_first=8,
                       unet_kern_size=3, reduce_lr_patience=0, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--via", choices=("train", "jobs"), default="train")
    ap.add_argument("--same-loss", action="store_true",
                    help="train every model with the MAE loss (default: cycle through losses)")
    ap.add_argument("--label", default="", help="suffix of the JSON file (e.g. before/after)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path("benchmarks/results") / (
        f"memory_models_{args.via}" + (f"_{args.label}" if args.label else "") + ".json")

    from napari_care_losses._tf import ensure_tensorflow
    from napari_care_losses.io.data import FrameStack, make_patches
    from napari_care_losses.sample_data import load_sample
    from napari_care_losses.training.trainer import Failed, Finished, StopFlag, train

    ensure_tensorflow()
    low, high = load_sample(0, "train")
    low, high = low[:2], high[:2]
    patches = make_patches(low, high, patch_size=32, patches_per_image=16, seed=0)
    losses = ["mae"] * args.models if args.same_loss else [
        LOSSES[k % len(LOSSES)] for k in range(args.models)]
    configs = [tiny_config(loss, args.epochs, args.steps, seed=k + 1)
               for k, loss in enumerate(losses)]
    rows: list[dict] = []
    start = rss_mb()
    print(f"RSS before the first model (TensorFlow imported, patches cut): {start:.0f} MB",
          flush=True)

    def record(k: int, loss: str, t: float, last) -> None:
        gc.collect()
        rss = rss_mb()
        if not isinstance(last, Finished):
            raise SystemExit(f"model {k + 1} ({loss}) did not finish: {last}")
        rows.append({"model": k + 1, "loss": loss, "rss_mb": rss,
                     "seconds": time.perf_counter() - t})
        print(f"  model {k + 1} ({loss}): RSS {rss:.0f} MB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        if args.via == "train":
            for k, cfg in enumerate(configs):
                t, last = time.perf_counter(), None
                for last in train(patches, cfg, Path(tmp) / "models"):
                    if isinstance(last, Failed):
                        break
                record(k, losses[k], t, last)
        else:
            from napari_care_losses.training.jobs import PreviewRequest, run_jobs

            k, t, last = 0, time.perf_counter(), None
            for item in run_jobs(FrameStack.from_array(low, "low"),
                                 FrameStack.from_array(high, "high"),
                                 configs, Path(tmp) / "models", StopFlag(),
                                 PreviewRequest(every=1, frame=0)):
                if isinstance(item.event, Finished | Failed):
                    record(item.job, losses[item.job], t, item.event)
                    k, t = k + 1, time.perf_counter()
    first = rows[0]["rss_mb"]
    print("\n| model | loss | RSS (MB) | added since model 1 (MB) | seconds |\n"
          "| ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['loss']} | {r['rss_mb']:.0f} | "
              f"{r['rss_mb'] - first:+.0f} | {r['seconds']:.1f} |")
    growth = rows[-1]["rss_mb"] - first
    per_model = growth / max(len(rows) - 1, 1)
    print(f"\ngrowth after the first model: {growth:+.0f} MB in total, "
          f"{per_model:+.1f} MB per model (target: at most +50 MB in total)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "via": args.via, "models": args.models, "epochs": args.epochs, "steps": args.steps,
        "rss_before_first_mb": start, "rows": rows, "growth_after_first_mb": growth,
        "growth_per_model_mb": per_model}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
