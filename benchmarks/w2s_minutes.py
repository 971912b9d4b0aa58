"""PSNR/SSIM on W2S after N minutes of training: the ``study`` preset against ``fast``.

Trains a Laplace CARE model with ``--minutes`` budgets (the whole run counts: warm-up,
training, validation, saving) on ``train_ch{C}_{low,high}.tif`` and scores a few W2S
validation fields (``val_ch{C}_*.tif``) with CARE-style PSNR/SSIM via
``napari_care_losses.restore.predict.RestorationModel`` and ``metrics.score_stack``. If the
validation stacks are missing, the last ``--fields`` training fields are held out instead
(and left out of training); the JSON says which.

Usage:
    python benchmarks/w2s_minutes.py --data ../shared/data/w2s --minutes 2 --minutes 4

Prints a Markdown table and writes ``benchmarks/results/w2s_minutes_ch{C}.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from napari_care_losses.config.settings import resolve_precision  # noqa: E402
from napari_care_losses.config.train import TrainConfig  # noqa: E402
from napari_care_losses.io.data import FrameStack, make_patches  # noqa: E402
from napari_care_losses.losses import LossSpec  # noqa: E402
from napari_care_losses.restore.metrics import score_stack  # noqa: E402
from napari_care_losses.restore.predict import RestorationModel  # noqa: E402
from napari_care_losses.training.trainer import run_training  # noqa: E402


def load(path: Path) -> np.ndarray:
    return FrameStack.open(path).to_array()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with the W2S stacks")
    ap.add_argument("--channel", type=int, default=0)
    ap.add_argument("--minutes", type=float, action="append", help="budgets (repeatable)")
    ap.add_argument("--preset", action="append", choices=("study", "fast"))
    ap.add_argument("--fields", type=int, default=4, help="validation fields scored")
    ap.add_argument("--train-fields", type=int, default=0, help="0 = all")
    ap.add_argument("--patches-per-image", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--models", type=Path, default=None,
                    help="where to keep the trained models (default: a temporary folder)")
    args = ap.parse_args()
    budgets, presets, c = args.minutes or [2.0, 4.0], args.preset or ["study", "fast"], args.channel
    low, high = load(args.data / f"train_ch{c}_low.tif"), load(args.data / f"train_ch{c}_high.tif")
    val_low_p, val_high_p = (args.data / f"val_ch{c}_{k}.tif" for k in ("low", "high"))
    if val_low_p.exists() and val_high_p.exists():
        val_low, val_high = load(val_low_p)[:args.fields], load(val_high_p)[:args.fields]
        val_source = f"val_ch{c} fields 1-{args.fields}"
    else:  # hold out the last training fields
        val_low, val_high = low[-args.fields:], high[-args.fields:]
        low, high = low[:-args.fields], high[:-args.fields]
        val_source = f"train_ch{c} fields {len(low) + 1}-{len(low) + args.fields} (held out)"
    if args.train_fields:
        low, high = low[:args.train_fields], high[:args.train_fields]
    print(f"training on {len(low)} fields, scoring {val_source}; precision auto = "
          f"{resolve_precision('auto')}", flush=True)
    t = time.perf_counter()
    patches = make_patches(low, high, 64, args.patches_per_image, seed=0)
    print(f"{patches} in {time.perf_counter() - t:.1f} s", flush=True)
    models_dir = args.models or Path(tempfile.mkdtemp(prefix="w2s_minutes_"))
    results: dict = {"Input": {"psnr": float(np.mean([s.psnr for s in
                                                       score_stack(val_low, val_high)])),
                               "ssim": float(np.mean([s.ssim for s in
                                                      score_stack(val_low, val_high)]))}}
    for minutes in budgets:
        for preset in presets:
            cfg = TrainConfig.preset(preset, loss=LossSpec.create("laplace"), minutes=minutes,
                                     epochs=10_000, steps_per_epoch=50,
                                     patches_per_image=args.patches_per_image)
            t = time.perf_counter()
            done = run_training(patches, cfg, models_dir)
            train_s = time.perf_counter() - t
            model = RestorationModel(done.model_dir)
            scores = score_stack(model.restore(val_low).image, val_high)
            key = f"{preset} {minutes:g} min"
            results[key] = {
                "psnr": float(np.mean([s.psnr for s in scores])),
                "ssim": float(np.mean([s.ssim for s in scores])),
                "train_seconds": train_s, "epochs": done.epochs_done,
                "precision": model.folder.precision, "budget": model.folder.budget,
                "kernel": cfg.unet_kern_size, "best_val_loss": done.best_val_loss}
            print(f"{key}: {train_s:.0f} s wall, {done.epochs_done} epochs, PSNR "
                  f"{results[key]['psnr']:.2f} dB, SSIM {results[key]['ssim']:.3f}", flush=True)
    print(f"\nW2S ch{c}, {val_source}, CARE-style PSNR/SSIM (mean)\n")
    print("| method | minutes | precision | kernel | epochs done | PSNR (dB) | SSIM |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for key, r in results.items():
        print(f"| {key} | {r.get('train_seconds', 0) / 60:.2f} | {r.get('precision', '-')} | "
              f"{r.get('kernel', '-')} | {r.get('epochs', '-')} | {r['psnr']:.2f} | "
              f"{r['ssim']:.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"w2s_minutes_ch{c}.json"
    path.write_text(json.dumps({"channel": c, "validation": val_source,
                                "train_fields": len(low), "results": results}, indent=2,
                               default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
