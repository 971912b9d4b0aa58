"""Restoration quality on the W2S validation fields: CARE (per loss) vs input and baselines.

Trains one model per loss on ``train_ch{C}`` (fields 001-080) at a modest CPU budget and
scores the 20 validation fields ``val_ch{C}`` (081-100) with CARE-style PSNR/SSIM.
Baseline strengths are calibrated on training fields, never on the validation fields.

Usage:
    python benchmarks/w2s_validation.py --data ../shared/data/w2s --channel 0 \
        --loss laplace --loss fft --loss bandpass --epochs 20 --steps 40

Prints a Markdown table and writes ``benchmarks/results/w2s_val_ch{C}.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from napari_care_losses.config.train import TrainConfig  # noqa: E402
from napari_care_losses.io.data import FrameStack, make_patches  # noqa: E402
from napari_care_losses.losses import LossSpec  # noqa: E402
from napari_care_losses.restore.engine import (  # noqa: E402
    Calibration,
    MethodSpec,
    restore_all_or_raise,
)
from napari_care_losses.restore.metrics import score_stack  # noqa: E402
from napari_care_losses.restore.score_tables import to_markdown  # noqa: E402
from napari_care_losses.training.trainer import run_training  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with the W2S stacks")
    ap.add_argument("--channel", type=int, default=0)
    ap.add_argument("--loss", action="append", default=None)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--patches-per-image", type=int, default=16)
    ap.add_argument("--unet-first", type=int, default=16)
    ap.add_argument("--unet-kernel", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    losses = args.loss or ["laplace"]
    c = args.channel
    train_low, train_high = (args.data / f"train_ch{c}_{k}.tif" for k in ("low", "high"))
    val_low = FrameStack.open(args.data / f"val_ch{c}_low.tif").to_array()
    val_high = FrameStack.open(args.data / f"val_ch{c}_high.tif").to_array()

    t0 = time.perf_counter()
    patches = make_patches(train_low, train_high, 64, args.patches_per_image, seed=0)
    print(f"{patches} from {train_low.name} in {time.perf_counter() - t0:.1f} s", flush=True)
    base_cfg = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps,
                           unet_n_first=args.unet_first, unet_kern_size=args.unet_kernel)
    runs, specs = {}, []
    for name in losses:
        cfg = replace(base_cfg, loss=LossSpec.create(name))
        t = time.perf_counter()
        done = run_training(patches, cfg, args.out / "models")
        train_s = time.perf_counter() - t
        specs.append(MethodSpec.for_model(done.model_dir))
        runs[specs[-1].short] = {"model_dir": str(done.model_dir), "train_seconds": train_s,
                                 "best_val_loss": done.best_val_loss}
        print(f"{name}: trained in {train_s:.0f} s, best val loss {done.best_val_loss:.4f}",
              flush=True)
    specs += [MethodSpec.for_baseline(name) for name in ("gaussian", "tv", "nlm")]
    calibration = Calibration(train_low, train_high, (0, 20, 40), "training fields")
    results = restore_all_or_raise(specs, val_low, val_high, calibration=calibration,
                                   log=lambda m: print(m, flush=True))
    scores = {"Input": score_stack(val_low, val_high)}
    for spec in specs:
        res = results[spec.name]
        scores[spec.short] = res.scores
        if res.factor is not None:
            runs[spec.short] = {"factor": res.factor}
    table = to_markdown(scores)
    print(f"\nW2S val_ch{c} ({len(val_high)} fields), CARE-style PSNR/SSIM\n\n{table}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "channel": c, "budget": {"epochs": args.epochs, "steps": args.steps,
                                 "patches_per_image": args.patches_per_image,
                                 "unet_n_first": args.unet_first,
                                 "unet_kern_size": args.unet_kernel},
        "runs": runs,
        "scores": {m: {"psnr": [s.psnr for s in v], "ssim": [s.ssim for s in v],
                       "mean_psnr": float(np.mean([s.psnr for s in v])),
                       "mean_ssim": float(np.mean([s.ssim for s in v]))}
                   for m, v in scores.items()},
    }
    path = args.out / f"w2s_val_ch{c}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path} ({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
