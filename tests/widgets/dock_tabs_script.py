"""Both docks in a shown napari window at 1280×800 (run by test_training_widget.py in its own
process: a window that draws must not share a process with TensorFlow, which the test
process may have loaded while collecting). Exits 0 and prints the heights, or raises."""

from __future__ import annotations

import time

import napari
from qtpy.QtWidgets import QApplication

from napari_care_losses._widgets import training_widget as tw
from napari_care_losses._widgets._dock_tabs import dock_of
from napari_care_losses._widgets.compare_widget import CompareWidget
from napari_care_losses.sample_data import load_sample


def wait_until(check, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(getattr(check, "__name__", "condition"))
        QApplication.processEvents()
        time.sleep(0.02)


viewer = napari.Viewer(show=True)
viewer.add_image(load_sample(0, "train")[0][:2], name="W2S low")
window = viewer.window._qt_window
window.resize(1280, 800)
training = tw.TrainingWidget(viewer)
viewer.window.add_dock_widget(training, name="Train CARE", area="right")
compare = CompareWidget(viewer)
viewer.window.add_dock_widget(compare, name="Compare restorations", area="right")
wait_until(lambda: dock_of(compare) in window.tabifiedDockWidgets(dock_of(training)))
wait_until(compare.isVisible)  # the dock just opened is in front
dock_of(training).raise_()
wait_until(training.isVisible)
height, central = training.height(), window.centralWidget().height()
assert height >= 0.8 * central, (height, central)
# the model list (with Export…) is reachable: the dock scrolls to it
training._scroll.ensureWidgetVisible(training.models)
wait_until(lambda: training.models.visibleRegion().boundingRect().height() > 40)
print(f"OK training dock {height} px of {central} px")
training.shutdown()
compare.close()
viewer.close()
