"""The main job on the bundled sample: train Laplace, FFT and bandpass briefly, restore a
held-out crop, run TV and NL-means, and write a side-by-side figure and a PSNR/SSIM table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .config.train import TrainConfig
from .io.data import as_stack, make_patches
from .io.tiff import atomic_path
from .losses import LossSpec
from .restore.engine import Calibration, MethodSpec, restore_all_or_raise
from .restore.metrics import Score, affine_fit, normalize_gt, score_stack
from .restore.score_tables import to_markdown, write_csv
from .sample_data import CITATION, sample_path
from .training.trainer import BatchEnd, EpochEnd, Failed, Finished, Started, StopFlag, train

DEMO_LOSSES = ("laplace", "fft", "bandpass")


@dataclass(frozen=True)
class DemoBudget:
    epochs: int
    steps_per_epoch: int
    patches_per_image: int


BUDGETS = {
    "default": DemoBudget(epochs=12, steps_per_epoch=25, patches_per_image=48),
    "quick": DemoBudget(epochs=2, steps_per_epoch=4, patches_per_image=16),
}

#: A CPU-friendly U-Net (the study's CSBDeep default is n_first=32, kernel 5).
DEMO_CONFIG = TrainConfig(patch_size=64, batch_size=16, learning_rate=4e-4, unet_n_depth=2,
                          unet_n_first=16, unet_kern_size=3, reduce_lr_patience=0)


def _print_event(event, log: Callable[[str], None]) -> None:
    if isinstance(event, Started):
        log(f"  training {event.loss}: {event.n_train} train / {event.n_val} val patches, "
            f"{event.epochs} epochs x {event.steps_per_epoch} steps -> {event.model_dir}")
    elif isinstance(event, EpochEnd):
        log(f"    epoch {event.epoch:3d}/{event.epochs}  loss {event.loss:.4f}  "
            f"val {event.val_loss:.4f}  ({event.seconds:.1f} s)")
    elif isinstance(event, Finished):
        log(f"  done{' (stopped)' if event.stopped else ''}: best val loss "
            f"{event.best_val_loss:.4f}")
    elif isinstance(event, Failed):
        log(f"  FAILED: {event.error}")


def run_demo(out: str | Path = "demo_output", budget: str = "default", channel: int = 0,
             log: Callable[[str], None] = print, stop: StopFlag | None = None) -> dict:
    """Run the demo; return ``{"scores": {method: [Score]}, "figure": path, ...}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    b = BUDGETS[budget]
    t0 = time.perf_counter()
    log(f"Sample data: W2S channel {channel} crops ({CITATION})")
    patches = make_patches(sample_path(channel, "train", "low"),
                           sample_path(channel, "train", "high"),
                           patch_size=DEMO_CONFIG.patch_size,
                           patches_per_image=b.patches_per_image, seed=0)
    test_low = sample_path(channel, "test", "low")
    test_high = sample_path(channel, "test", "high")
    low, high = (as_stack(p).to_array() for p in (test_low, test_high))
    specs = []
    for name in DEMO_LOSSES:
        cfg = replace(DEMO_CONFIG, loss=LossSpec.create(name), epochs=b.epochs,
                      steps_per_epoch=b.steps_per_epoch)
        finished = None
        for event in train(patches, cfg, out / "models", stop):
            if not isinstance(event, BatchEnd):
                _print_event(event, log)
            if isinstance(event, Failed):
                raise RuntimeError(event.error)
            if isinstance(event, Finished):
                finished = event
        specs.append(MethodSpec.for_model(finished.model_dir))
    # classical baselines, strength calibrated on a training pair (never on the test crop)
    specs += [MethodSpec.for_baseline(name) for name in ("tv", "nlm")]
    calibration = Calibration(sample_path(channel, "train", "low"),
                              sample_path(channel, "train", "high"), (0,), "a training pair")
    results = restore_all_or_raise(specs, low, high, calibration=calibration, log=log)
    labels = {spec.name: spec.short for spec in specs}  # "Laplace", "TV", …
    methods = {"Input": low.astype(np.float32),
               **{labels[n]: r.image for n, r in results.items()}}
    scores: dict[str, list[Score]] = {"Input": score_stack(low, high),
                                      **{labels[n]: r.scores for n, r in results.items()}}
    csv_path = write_csv(out / "scores.csv", scores)
    table = to_markdown(scores)
    with atomic_path(out / "scores.md") as tmp:
        tmp.write_text(
            f"# Demo: W2S channel {channel}, held-out crops\n\nMean over {len(high)} images; "
            "CARE-style metrics (percentile-normalised ground truth, affine fit).\n\n" + table)
    fig_path = comparison_figure(methods, high, scores, out / "comparison.png")
    log("\n" + table)
    log(f"Wrote {fig_path}, {csv_path} and {out / 'scores.md'} "
        f"in {time.perf_counter() - t0:.0f} s")
    return {"scores": scores, "figure": fig_path, "csv": csv_path}


def comparison_figure(methods: dict[str, np.ndarray], gt: np.ndarray,
                      scores: dict[str, list[Score]], path: Path, frame: int = 0,
                      crop: int = 160) -> Path:
    """Side-by-side crops (frame ``frame``) of ground truth and every method, PSNR/SSIM in
    the titles; each panel affine-fitted to the ground truth so they share one grey scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = normalize_gt(gt[frame])
    h, w = g.shape
    c = min(crop, h, w)
    sl = (slice((h - c) // 2, (h - c) // 2 + c), slice((w - c) // 2, (w - c) // 2 + c))
    panels = [("Ground truth", g, "")] + [
        (m, affine_fit(img[frame], g), f"{scores[m][frame].psnr:.2f} dB / "
                                        f"{scores[m][frame].ssim:.3f}")
        for m, img in methods.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.9), dpi=120)
    for ax, (title, img, sub) in zip(axes, panels, strict=True):
        ax.imshow(img[sl], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\n{sub}" if sub else f"{title}\n(reference)", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Held-out field {frame + 1} of {len(gt)} (centre {c} px shown): PSNR / SSIM "
                 "of the whole field vs ground truth (affine fit)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path)
    plt.close(fig)
    return path
