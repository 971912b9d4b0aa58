"""The npe2 manifest: commands resolve, the docks open from the menu, samples load."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")
pytest.importorskip("napari")

import napari_care_losses  # noqa: E402

MANIFEST = Path(napari_care_losses.__file__).parent / "napari.yaml"


def test_manifest_commands_resolve():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-care-losses"
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Train CARE", "Compare restorations"}


@pytest.mark.parametrize("key", ["w2s_ch0", "w2s_ch1", "w2s_ch2", "w2s_test_ch0"])
def test_sample_data_opens_as_low_high_pair(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-care-losses", key)
    low, high = viewer.layers
    assert low.name.endswith("low") and high.name.endswith("high")
    assert low.data.shape == high.data.shape and low.data.shape[1:] == (256, 256)
    assert low.data.dtype == np.uint8 and "W2S" in low.metadata["source"]


def test_docks_open_from_the_plugin_menu(make_napari_viewer):
    from napari_care_losses._widgets.compare_widget import CompareWidget
    from napari_care_losses._widgets.training_widget import TrainingWidget

    viewer = make_napari_viewer()
    for name, cls in (("Train CARE", TrainingWidget), ("Compare restorations", CompareWidget)):
        _, widget = viewer.window.add_plugin_dock_widget("napari-care-losses", name)
        assert isinstance(widget, cls)
