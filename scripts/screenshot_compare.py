"""Screenshot of the compare dock: grid of restorations with PSNR/SSIM on every panel.

Run headless with::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_compare.py

Trains a small Laplace and a small FFT model on the bundled W2S training crops (a minute on
a laptop CPU) unless model folders are given with ``--models``, restores the held-out pair
with them plus TV and NL-means, and saves ``docs/screenshots/compare_grid.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_models(outdir: Path, epochs: int, steps: int) -> list[Path]:
    from napari_care_losses.config import TrainConfig
    from napari_care_losses.data import make_patches
    from napari_care_losses.losses import LossSpec
    from napari_care_losses.sample_data import load_sample
    from napari_care_losses.training import run_training

    low, high = load_sample(0, "train")
    patches = make_patches(low, high, patch_size=64, patches_per_image=32, seed=0)
    dirs = []
    for loss in ("laplace", "fft"):
        cfg = TrainConfig(loss=LossSpec.create(loss), patch_size=64, epochs=epochs,
                          steps_per_epoch=steps, batch_size=16, learning_rate=1e-3,
                          unet_n_depth=2, unet_n_first=16, unet_kern_size=3,
                          reduce_lr_patience=0)
        print(f"training {loss} ({epochs} x {steps} steps)…", flush=True)
        dirs.append(run_training(patches, cfg, outdir).model_dir)
    return dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", type=Path, default=None,
                        help="existing model folders (default: train a Laplace and an FFT model)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/screenshots/compare_grid.png")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--frame", type=int, default=0, help="frame shown (held-out field)")
    parser.add_argument("--size", default="1600x1000", help="window size, WxH")
    args = parser.parse_args(argv)

    # napari's OpenGL (Mesa) must be loaded before TensorFlow: the other way round, Mesa's
    # LLVM binds to TensorFlow's and the first draw crashes (napari_care_losses._tf).
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_care_losses._widgets.compare_widget import CompareWidget
    from napari_care_losses._widgets.model_registry import REGISTRY
    from napari_care_losses.sample_data import load_sample

    low, high = load_sample(0, "test")
    viewer = napari.Viewer(title="napari-care-losses: compare restorations")
    model_dirs = args.models or train_models(Path(tempfile.mkdtemp(prefix="care_cmp_")),
                                             args.epochs, args.steps)
    viewer.add_image(low, name="W2S ch0 test low")
    viewer.add_image(high, name="W2S ch0 test high")
    for path in model_dirs:
        REGISTRY.add(path)
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare restorations", area="right")
    width, height = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(width, height)

    loop = QEventLoop()
    widget.run_finished.connect(loop.quit)
    widget.restore()
    loop.exec_()
    print(widget.status.text(), flush=True)

    viewer.dims.set_current_step(0, args.frame)
    widget.spectrum_check.setChecked(True)
    viewer.reset_view()
    for _ in range(3):  # let the canvas lay out the grid and the overlays
        QTimer.singleShot(300, loop.quit)
        loop.exec_()
        QApplication.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"saved {args.out}", flush=True)
    viewer.close()
    sys.stdout.flush()
    # TensorFlow and Mesa's software GL both bundle LLVM and crash in their C++ exit
    # handlers; the work is done, so leave without them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
