"""Screenshot of the training dock while it trains: live loss curves, progress, preview.

Run headless with::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_training.py
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_training.py \
        --size 1280x800 --out docs/screenshots/training_widget_1280x800.png

Opens the bundled W2S channel-0 training pairs and both docks (the compare dock becomes a
tab beside the training dock), trains a small Laplace and then a small FFT model in the
dock for ``--minutes`` each (a time budget: bar, epochs and time left come from the plan)
with a live preview every epoch, takes the screenshot while the second loss is half-way,
then stops, and saves ``docs/screenshots/training_widget.png``. ``--theme light`` shows
the light theme.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/screenshots/training_widget.png")
    parser.add_argument("--theme", default="dark", choices=("dark", "light"))
    parser.add_argument("--minutes", type=float, default=0.5, help="budget of each loss")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--size", default="1600x1000", help="window size, WxH")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_care_losses._widgets._dock_tabs import dock_of
    from napari_care_losses._widgets.compare_widget import CompareWidget
    from napari_care_losses._widgets.training_widget import TrainingWidget
    from napari_care_losses.sample_data import load_sample

    low, high = load_sample(0, "train")
    viewer = napari.Viewer(title="napari-care-losses: train CARE")
    viewer.theme = args.theme
    viewer.add_image(low, name="W2S ch0 low")
    viewer.add_image(high, name="W2S ch0 high", visible=False)
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train CARE", area="right")
    compare = CompareWidget(viewer)
    viewer.window.add_dock_widget(compare, name="Compare restorations", area="right")
    width, height = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(width, height)

    f = widget.form
    f.set_losses("laplace", "fft")
    f.patches_per_image.setValue(32)
    f.epochs.setValue(1000)  # the most: the budget decides
    f.steps.setValue(args.steps)
    f.minutes.setValue(args.minutes)
    f.unet_n_first.setValue(16)
    f.unet_kernel.setCurrentText("3")
    f.learning_rate.setText("1e-3")
    f.preview_every.setValue(1)
    f.outdir.setText(tempfile.mkdtemp(prefix="care_shot_"))

    loop = QEventLoop()

    def check() -> None:  # the second loss is half-way: take the picture
        run = widget.run_progress
        series = widget.plot.epoch_counts()
        half = run is not None and run.fraction(time.perf_counter()) >= 0.75
        if (half and len(series) >= 2 and series[-1] >= 2) or not widget.is_running:
            loop.quit()

    settle = QEventLoop()
    QTimer.singleShot(300, settle.quit)  # the docks are placed (and made tabs) first
    settle.exec_()
    dock_of(widget).raise_()  # the training tab in front (the compare dock is the other)
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
