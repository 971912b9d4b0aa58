"""Screenshot of the training dock while it trains: live loss curves, progress, preview.

Run headless with::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_training.py

Opens the bundled W2S channel-0 training pairs, trains a small Laplace and then a small FFT
model in the dock (a couple of minutes on a laptop CPU) with a live preview every epoch,
takes the screenshot while the second loss is half-way, then stops, and saves
``docs/screenshots/training_widget.png``. ``--theme light`` shows the light theme.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/screenshots/training_widget.png")
    parser.add_argument("--theme", default="dark", choices=("dark", "light"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--size", default="1600x1000", help="window size, WxH")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_care_losses._widgets.training_widget import TrainingWidget
    from napari_care_losses.sample_data import load_sample

    low, high = load_sample(0, "train")
    viewer = napari.Viewer(title="napari-care-losses: train CARE")
    viewer.theme = args.theme
    viewer.add_image(low, name="W2S ch0 low")
    viewer.add_image(high, name="W2S ch0 high", visible=False)
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train CARE", area="right")
    width, height = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(width, height)

    f = widget.form
    f.set_losses("laplace", "fft")
    f.patches_per_image.setValue(32)
    f.epochs.setValue(args.epochs)
    f.steps.setValue(args.steps)
    f.unet_n_first.setValue(16)
    f.unet_kernel.setCurrentText("3")
    f.learning_rate.setText("1e-3")
    f.preview_every.setValue(1)
    f.outdir.setText(tempfile.mkdtemp(prefix="care_shot_"))

    loop = QEventLoop()
    half = args.epochs // 2 + 1

    def check() -> None:  # the second loss has a few epochs: take the picture
        series = widget.plot.epoch_counts()
        if (len(series) >= 2 and series[-1] >= half) or not widget.is_running:
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(200)
    if not widget.start_training():
        print(f"cannot train: {widget.data_label.text()}", file=sys.stderr)
        return 1
    loop.exec_()
    timer.stop()
    viewer.reset_view()
    QTimer.singleShot(500, loop.quit)  # let the plot redraw
    loop.exec_()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"saved {args.out}: {widget.status_label.text()}", flush=True)
    widget.stop_training()
    finished = QEventLoop()
    QTimer.singleShot(60_000, finished.quit)
    done = QTimer()
    done.timeout.connect(lambda: None if widget.is_running else finished.quit())
    done.start(200)
    finished.exec_()
    viewer.close()
    sys.stdout.flush()
    # TensorFlow and Mesa's software GL both bundle LLVM and crash in their C++ exit
    # handlers; the work is done, so leave without them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
