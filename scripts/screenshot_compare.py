"""Screenshot of the compare dock: grid of restorations with PSNR/SSIM on every panel.

Run headless with::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_compare.py

Trains small Laplace, FFT and bandpass models on the bundled W2S training crops (a minute or
two on a laptop CPU) unless model folders are given with ``--models``, opens the training pair
and the held-out pair (as File ▸ Open Sample does), restores the held-out pair with the models
plus TV and NL-means, and saves ``docs/screenshots/compare_grid.png`` (1600×1000 window) and
``docs/screenshots/compare_grid_1280x800.png`` (the same session at 1280×800), with the
training dock docked beside the compare dock (``--no-training-dock``: the compare dock
alone).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_models(outdir: Path, epochs: int, steps: int) -> list[Path]:
    from napari_care_losses.config.train import TrainConfig
    from napari_care_losses.io.data import make_patches
    from napari_care_losses.losses import LossSpec
    from napari_care_losses.sample_data import load_sample
    from napari_care_losses.training.trainer import run_training

    low, high = load_sample(0, "train")
    patches = make_patches(low, high, patch_size=64, patches_per_image=32, seed=0)
    dirs = []
    for loss in ("laplace", "fft", "bandpass"):
        cfg = TrainConfig(loss=LossSpec.create(loss), patch_size=64, epochs=epochs,
                          steps_per_epoch=steps, batch_size=16, learning_rate=1e-3,
                          unet_n_depth=2, unet_n_first=16, unet_kern_size=3,
                          reduce_lr_patience=0)
        print(f"training {loss} ({epochs} x {steps} steps)…", flush=True)
        dirs.append(run_training(patches, cfg, outdir).model_dir)
    return dirs


def failure_screenshot(viewer, widget, loop, out: Path) -> None:
    """A run that fails: the held-out input with one NaN pixel, restored with TV and
    NL-means (every method fails; panels, rows and the status line say why)."""
    import numpy as np
    from qtpy.QtCore import QTimer

    low = np.asarray(widget.input_layer().data, np.float32).copy()
    low[0, 100, 100] = np.nan
    viewer.add_image(low, name="W2S ch0 test low (NaN pixel)")
    widget.set_input("W2S ch0 test low (NaN pixel)")
    widget.set_checked_methods(["TV", "NL-means"])
    widget.restore()
    for _ in range(3):
        QTimer.singleShot(400, loop.quit)
        loop.exec_()
    viewer.window._qt_window.resize(1280, 800)
    QTimer.singleShot(600, loop.quit)
    loop.exec_()
    viewer.screenshot(str(out), canvas_only=False)
    print(f"saved {out}: {widget.status.text()!r}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", type=Path, default=None,
                        help="model folders (default: train Laplace, FFT, bandpass models)")
    parser.add_argument("--outdir", type=Path, default=ROOT / "docs/screenshots")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--frame", type=int, default=0, help="frame shown (held-out field)")
    parser.add_argument("--no-training-dock", action="store_true",
                        help="only the compare dock (default: the training dock too)")
    parser.add_argument("--no-failure", action="store_true",
                        help="skip compare_failed_1280x800.png (a run on a NaN input)")
    parser.add_argument("--sizes", nargs="+", default=["1600x1000", "1280x800"],
                        help="window sizes, WxH (the first is compare_grid.png)")
    args = parser.parse_args(argv)
    # a home of its own: the docks list the models of the remembered models folder, which
    # would add the user's own models to the screenshot
    os.environ["NAPARI_CARE_LOSSES_HOME"] = tempfile.mkdtemp(prefix="care_shot_home_")

    # napari's OpenGL (Mesa) must be loaded before TensorFlow: the other way round, Mesa's
    # LLVM binds to TensorFlow's and the first draw crashes (napari_care_losses._tf).
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_care_losses._widgets.compare_widget import CompareWidget
    from napari_care_losses._widgets.model_registry import REGISTRY
    from napari_care_losses.sample_data import napari_sample_ch0, napari_sample_test_ch0

    viewer = napari.Viewer(title="napari-care-losses: compare restorations")
    model_dirs = args.models or train_models(Path(tempfile.mkdtemp(prefix="care_cmp_")),
                                             args.epochs, args.steps)
    # as File ▸ Open Sample does: the training pair, then the held-out pair
    for data, kwargs, _ in napari_sample_ch0() + napari_sample_test_ch0():
        viewer.add_image(data, **kwargs)
    REGISTRY.clear()
    for path in model_dirs:
        REGISTRY.add(path)
    if not args.no_training_dock:  # both docks, as a user who trained and compares has them
        from napari_care_losses._widgets.training_widget import TrainingWidget

        viewer.window.add_dock_widget(TrainingWidget(viewer), name="Train CARE", area="right")
    widget = CompareWidget(viewer)
    compare_dock = viewer.window.add_dock_widget(widget, name="Compare restorations",
                                                 area="right")
    window = viewer.window._qt_window
    width, height = (int(v) for v in args.sizes[0].split("x"))
    window.resize(width, height)
    print(f"input {widget.input_combo.currentText()!r}, "
          f"ground truth {widget.gt_combo.currentText()!r}", flush=True)

    loop = QEventLoop()
    widget.run_finished.connect(loop.quit)
    widget.restore()
    loop.exec_()
    print(widget.status.text(), flush=True)

    viewer.dims.set_current_step(0, args.frame)
    widget.spectrum_check.setChecked(True)
    args.outdir.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(args.sizes):
        width, height = (int(v) for v in size.split("x"))
        window.resize(width, height)
        compare_dock.raise_()  # the two docks share the right area as tabs: compare in front
        for _ in range(3):  # let Qt lay out the window, then the canvas the grid and labels
            QTimer.singleShot(300, loop.quit)
            loop.exec_()
            QApplication.processEvents()
        viewer.reset_view()
        QTimer.singleShot(300, loop.quit)
        loop.exec_()
        out = args.outdir / ("compare_grid.png" if i == 0 else f"compare_grid_{size}.png")
        viewer.screenshot(str(out), canvas_only=False)
        print(f"saved {out} (window {window.width()}x{window.height()})", flush=True)
    if not args.no_failure:
        failure_screenshot(viewer, widget, loop, args.outdir / "compare_failed_1280x800.png")
    viewer.close()
    sys.stdout.flush()
    # TensorFlow and Mesa's software GL both bundle LLVM and crash in their C++ exit
    # handlers; the work is done, so leave without them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
