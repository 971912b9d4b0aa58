"""Compare dock tells the truth (issue 17), on the real canvas (run under xvfb-run):
a killed worker, pair A then pair B, an unticked method, a NaN input."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_care_losses._widgets import _compare_layers as L  # noqa: E402
from napari_care_losses._widgets._overlays import panel_text  # noqa: E402
from napari_care_losses._widgets.compare_widget import CompareWidget  # noqa: E402
from napari_care_losses._widgets.model_registry import REGISTRY  # noqa: E402
from napari_care_losses.restore.engine import MethodStarted  # noqa: E402
from napari_care_losses.restore.metrics import score  # noqa: E402
from napari_care_losses.sample_data import load_sample  # noqa: E402

A_LOW, A_HIGH, B_LOW, B_HIGH = "A low", "A high", "B low", "B high"


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    """Two pairs of the same shape (ch0 and ch1 held-out fields) and the compare dock."""
    REGISTRY.clear()
    viewer = make_napari_viewer()
    for ch, (low_name, high_name) in ((0, (A_LOW, A_HIGH)), (1, (B_LOW, B_HIGH))):
        low, high = load_sample(ch, "test")
        viewer.add_image(low, name=low_name)
        viewer.add_image(high, name=high_name)
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare")
    widget.set_input(A_LOW)
    widget.set_ground_truth(A_HIGH)
    yield viewer, widget
    widget.stop()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=30000)


def run(widget, qtbot, methods: list[str], timeout: int = 120000) -> None:
    widget.set_checked_methods(methods)
    with qtbot.waitSignal(widget.run_finished, timeout=timeout):
        widget.restore()


def rows(widget) -> list[str]:
    return list(widget.table._methods)


def test_a_killed_worker_stays_visible_and_the_next_run_works(dock, qtbot, monkeypatch):
    viewer, widget = dock
    notified = []
    import napari.utils.notifications as notifications

    monkeypatch.setattr(notifications, "show_error", lambda text: notified.append(text))
    low, _ = load_sample(0, "test")
    viewer.add_image(np.concatenate([low] * 6), name="long low")  # 12 frames
    viewer.add_image(np.concatenate([load_sample(0, "test")[1]] * 6), name="long high")
    widget.set_input("long low")
    widget.set_ground_truth("long high")
    process = widget._process
    original = process.run

    def kill_in_nlm(*args):  # in the worker thread, as soon as the child starts NL-means
        for ev in original(*args):
            if isinstance(ev, MethodStarted) and ev.name == "NL-means":
                os.kill(process.pid, signal.SIGKILL)
            yield ev

    monkeypatch.setattr(process, "run", kill_in_nlm)
    run(widget, qtbot, ["TV", "NL-means"])
    monkeypatch.setattr(process, "run", original)
    status = widget.status.text()
    assert "NL-means failed: the restore process was ended by signal 9" in status, status
    assert widget.table.row_note("NL-means").startswith("failed: the restore process")
    assert panel_text(viewer.layers["NL-means"]).startswith("NL-means\nfailed: ")
    assert L.role(viewer.layers["NL-means"]) == "failed"
    assert notified and "ended by signal 9" in notified[0]
    assert list(widget.results) == ["TV"]  # TV finished before the kill and is kept
    # automatic re-scoring after a ground-truth change does not replace the error
    high2 = np.asarray(viewer.layers["long high"].data)[:, ::-1].copy()
    viewer.add_image(high2, name="long high 2")
    widget.set_ground_truth(None)
    with qtbot.waitSignal(widget.run_finished, timeout=60000):
        widget.set_ground_truth("long high 2")
    assert "scored against 'long high 2'" in widget.status.text()
    assert "ended by signal 9" in widget.status.text(), widget.status.text()
    assert widget.table.row_note("NL-means").startswith("failed: ")
    # the next run starts a new child and replaces the failure
    run(widget, qtbot, ["TV", "NL-means"], timeout=180000)
    assert "signal 9" not in widget.message()
    assert "restored with 2 of 2" in widget.message()
    assert widget.table.row_note("NL-means") is None
    assert L.role(viewer.layers["NL-means"]) == "result"
    assert viewer.layers["NL-means"].data.shape == (12, 256, 256)


def test_pair_a_then_pair_b_shows_and_scores_nothing_of_a(dock, qtbot):
    viewer, widget = dock
    run(widget, qtbot, ["TV", "NL-means"])
    tv_a = np.array(viewer.layers["TV"].data)
    # B picked but not restored yet: A's results are not scored against B
    widget.set_input(B_LOW)
    widget.set_ground_truth(B_HIGH)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=30000)
    assert widget.scores("TV") == []
    assert widget.table.row_note("TV") == f"restored from {A_LOW!r}, not the current input"
    assert "restored from" in panel_text(viewer.layers["TV"])
    # restoring B with TV only: NL-means of A goes, TV is B's, scored against B
    run(widget, qtbot, ["TV"])
    _, b_high = load_sample(1, "test")
    tv_b = np.asarray(viewer.layers["TV"].data)
    assert not np.array_equal(tv_a, tv_b)
    assert "NL-means" not in viewer.layers
    assert rows(widget) == [f"Input ({B_LOW})", "TV"]
    want = score(tv_b[0], b_high[0])
    assert widget.table.cell_text("TV", "PSNR t0") == f"{want.psnr:.2f}"
    assert panel_text(viewer.layers["TV"]) == (
        f"TV\nPSNR {want.psnr:.2f} dB\nSSIM {want.ssim:.3f}")
    assert L.grid_panels(viewer) == [B_LOW, B_HIGH, "TV"]


def test_an_unticked_method_loses_its_panel_row_and_curve(dock, qtbot):
    viewer, widget = dock
    widget.spectrum_check.setChecked(True)
    run(widget, qtbot, ["TV", "NL-means"])
    assert {"TV", "NL-means"} <= set(widget.view.spectrum.lines)
    table_error = "NL-means" + L.ERROR_SUFFIX
    widget.table.set_error_map_checked("NL-means", True)
    assert table_error in viewer.layers
    run(widget, qtbot, ["TV"])
    assert "NL-means" not in viewer.layers and table_error not in viewer.layers
    assert "NL-means" not in rows(widget) and "NL-means" not in widget.results
    assert "NL-means" not in widget.view.spectrum.lines
    assert all(panel_text(lyr) is None or "NL-means" not in panel_text(lyr)
               for lyr in viewer.layers)


def test_a_nan_input_fails_visibly_and_shows_no_old_result(dock, qtbot):
    viewer, widget = dock
    run(widget, qtbot, ["TV"])
    low, _ = load_sample(0, "test")
    bad = low.astype(np.float32)
    bad[1, 10, 10] = np.nan
    viewer.add_image(bad, name="nan low")
    widget.spectrum_check.setChecked(True)
    widget.set_input("nan low")
    viewer.dims.set_current_step(0, 1)  # the frame with the NaN pixel
    run(widget, qtbot, ["TV"])
    assert "Input (nan low)" not in widget.view.spectrum.lines  # no curve, no crash
    status = widget.status.text()
    assert "'nan low' has NaN or infinite pixels in frame 1" in status, status
    assert widget.table.row_note("TV").startswith("failed: input 'nan low' has NaN")
    assert L.role(viewer.layers["TV"]) == "failed"
    assert not np.asarray(viewer.layers["TV"].data).any()  # A's TV result is gone
    assert panel_text(viewer.layers["TV"]).startswith("TV\nfailed: input 'nan low'")
    assert widget.table.row_note("Input (nan low)") == (
        "the input has NaN or infinite pixels in frame 1")
    widget.set_ground_truth(None)  # a picker change keeps the error
    assert "NaN" in widget.status.text()


def test_the_pickers_say_why_a_layer_is_left_out(dock):
    viewer, widget = dock
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="colour", rgb=True)
    viewer.add_image(np.zeros((2, 2, 8, 8), np.float32), name="volume")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="masks")
    for combo in (widget.input_combo, widget.gt_combo):
        items = {combo.itemText(i): combo.model().item(i) for i in range(combo.count())}
        why = {text.split(" (left out")[0]: item.toolTip() for text, item in items.items()
               if not item.isEnabled()}
        assert set(why) == {"colour", "volume", "masks"}
        assert "RGB" in why["colour"] and "4D" in why["volume"] and "labels" in why["masks"]
    assert widget.input_combo.currentText() == A_LOW  # the choice is kept


def test_layers_the_grid_hides_are_named(dock, qtbot):
    viewer, widget = dock
    run(widget, qtbot, ["TV"])
    viewer.add_image(np.zeros((2, 256, 256), np.float32), name="added later")
    assert not viewer.layers["added later"].visible
    assert "added later" in widget.hidden_label.text() and widget.hidden_label.isVisibleTo(
        widget)
    widget.grid_check.setChecked(False)
    assert viewer.layers["added later"].visible and not widget.hidden_label.text()


def test_the_private_overlay_warning_is_not_printed():
    """napari hands plugins proxies that warn on private access (678 lines in a session)."""
    import warnings

    from napari.layers import Image
    from napari.utils._proxies import PublicOnlyProxy

    from napari_care_losses._widgets._overlays import set_panel_text

    layer = PublicOnlyProxy(Image(np.zeros((4, 4), np.float32)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            set_panel_text(layer, f"text {i}")
    assert not [w for w in caught if "_overlays" in str(w.message)]


def test_restore_files_writes_one_file_per_file_and_method(dock, qtbot, tmp_path):
    """a.tif and a.tiff with two methods: four files, "wrote 4 of 4"; an existing output
    is kept and the dock says which name it wrote instead."""
    import tifffile

    viewer, widget = dock
    low, _ = load_sample(0, "test")
    for name in ("a.tif", "a.tiff"):
        tifffile.imwrite(tmp_path / name, low[:1], photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_tif_TV.tif").write_bytes(b"mine")
    widget.set_checked_methods(["TV", "NL-means"])
    with qtbot.waitSignal(widget.run_finished, timeout=120000):
        widget.restore_files([str(tmp_path / "a.tif"), str(tmp_path / "a.tiff")], str(out))
    written = sorted(p.name for p in out.glob("*.tif"))
    assert len(written) == 5 and (out / "a_tif_TV.tif").read_bytes() == b"mine"
    status = widget.status.text()
    assert status.startswith("wrote 4 of 4 restored file(s)"), status
    assert "a_tif_TV.tif exists" in status and "a_tif_TV_2.tif" in status


@pytest.mark.slow
def test_two_models_of_one_loss_get_two_panels_rows_and_files(dock, qtbot, tmp_path):
    """Two Laplace models: distinct method names, a panel and a row each, and Restore
    files… writes one file per model (the count said is the count on disk)."""
    import tifffile

    from napari_care_losses._tf import ensure_tensorflow
    from napari_care_losses.io.data import make_patches
    from napari_care_losses.training.trainer import run_training

    from ..conftest import tiny_config

    viewer, widget = dock
    ensure_tensorflow()  # after napari's OpenGL (RTLD_DEEPBIND): see napari_care_losses._tf
    low, high = load_sample(0, "train")
    patches = make_patches(low[:2], high[:2], patch_size=32, patches_per_image=16, seed=0)
    for seed in (1, 2):
        REGISTRY.add(run_training(patches, tiny_config("laplace", epochs=1, steps_per_epoch=2,
                                                       seed=seed), tmp_path / "m").model_dir)
    names = [s.name for s in widget.checked_specs() if s.loss == "laplace"]
    assert len(names) == 2 and len(set(names)) == 2
    run(widget, qtbot, names, timeout=240000)
    assert set(names) <= set(widget.results) and set(names) <= set(rows(widget))
    assert set(names) <= {lyr.name for lyr in viewer.layers}
    src = tmp_path / "field.tif"
    tifffile.imwrite(src, load_sample(0, "test")[0][:1], photometric="minisblack")
    with qtbot.waitSignal(widget.run_finished, timeout=240000):
        widget.restore_files([str(src)], str(tmp_path / "out"))
    images = [p for p in (tmp_path / "out").glob("*.tif") if not p.stem.endswith("_scale")]
    assert len(images) == 2, sorted(p.name for p in (tmp_path / "out").iterdir())
    assert widget.status.text().startswith("wrote 2 of 2 restored file(s)")
