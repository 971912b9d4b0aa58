"""Compare dock (issue #4): grid order, per-panel metrics, table, CSV, uncertainty, Stop."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("tensorflow")

from napari_care_losses._widgets import _compare_layers as L  # noqa: E402
from napari_care_losses._widgets._compare_jobs import panel_title  # noqa: E402
from napari_care_losses._widgets._overlays import panel_text  # noqa: E402
from napari_care_losses._widgets.compare_widget import CompareWidget  # noqa: E402
from napari_care_losses._widgets.model_registry import REGISTRY  # noqa: E402
from napari_care_losses.io.data import make_patches  # noqa: E402
from napari_care_losses.restore.engine import MethodSpec, MethodStarted  # noqa: E402
from napari_care_losses.restore.metrics import score  # noqa: E402
from napari_care_losses.restore.predict import RestorationModel  # noqa: E402
from napari_care_losses.sample_data import load_sample  # noqa: E402
from napari_care_losses.training.trainer import run_training  # noqa: E402

from ..conftest import tiny_config  # noqa: E402

LOW, HIGH = "W2S test low", "W2S test high"


def fmt(s) -> str:
    return f"PSNR {s.psnr:.2f} dB\nSSIM {s.ssim:.3f}"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, RestorationModel]:
    """A tiny Laplace and a tiny FFT model, trained once for the module."""
    low, high = load_sample(0, "train")
    patches = make_patches(low[:2], high[:2], patch_size=32, patches_per_image=16, seed=0)
    out = tmp_path_factory.mktemp("models")
    return {loss: RestorationModel(run_training(
        patches, tiny_config(loss, epochs=1, steps_per_epoch=2, batch_size=4), out).model_dir)
        for loss in ("laplace", "fft")}


@pytest.fixture
def registry(models):
    REGISTRY.clear()
    for model in models.values():
        REGISTRY.add(model)
    yield models
    REGISTRY.clear()


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    """Viewer with the 2-frame held-out pair and the compare dock docked."""
    viewer = make_napari_viewer()
    low, high = load_sample(0, "test")
    viewer.add_image(low[:2], name=LOW)
    viewer.add_image(high[:2], name=HIGH)
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare")
    yield viewer, widget, low[:2], high[:2]
    widget.stop()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=30000)


def run(widget, qtbot, methods: list[str]) -> None:
    widget.set_checked_methods(methods)
    with qtbot.waitSignal(widget.run_finished, timeout=120000):
        widget.restore()


def names(models) -> tuple[str, str]:
    """The registry's display names of the two models (the compare dock's method names)."""
    listed = {m.model_dir: m.display_name for m in REGISTRY.models()}
    return tuple(listed[models[k].model_dir] for k in ("laplace", "fft"))


@pytest.mark.slow
def test_restore_grid_overlays_table_csv_uncertainty(dock, registry, qtbot, tmp_path):
    viewer, widget, low, high = dock
    lap, fft = names(registry)
    assert widget.input_combo.currentText() == LOW  # guessed from the layer names
    assert widget.gt_combo.currentText() == HIGH
    grid = viewer.canvas.grid
    shapes = []  # the grid's shape whenever a result layer arrives in grid mode
    viewer.layers.events.inserted.connect(
        lambda e: shapes.append(grid.actual_shape(viewer.layers)) if grid.enabled else None)
    run(widget, qtbot, [fft, "TV", lap])  # ticking order does not matter

    # grid mode, panels in the fixed order (layers[0] is the top-left panel); the grid had
    # its final shape from the first result on (napari rebuilds every panel on a change)
    # and napari sizes it again after the run
    assert viewer.canvas.grid.enabled
    assert shapes and set(shapes) == {(2, 3)} and grid.shape == (-1, -1)
    assert grid.actual_shape(viewer.layers) == (2, 3)
    assert L.grid_panels(viewer) == [LOW, HIGH, lap, fft, "TV"]
    assert [lyr.name for lyr in viewer.layers] == [LOW, HIGH, lap, fft, "TV"]
    assert viewer.layers[lap].data.shape == low.shape

    # one shared camera: zoom/pan in one panel moves all of them
    cams = viewer.window._qt_viewer.canvas.grid_cameras
    assert len(cams) >= 5  # one per grid cell (3 x 2 here), all views of one camera
    viewer.camera.zoom *= 2
    viewer.camera.center = (0, 100, 90)
    assert len({round(c.zoom, 6) for c in cams}) == 1
    assert all(np.allclose(c.center, cams[0].center) for c in cams)

    # per-panel text = method name + the core's score for the current frame
    expected = {t: {n: score(np.asarray(viewer.layers[n].data)[t], high[t])
                    for n in (lap, fft, "TV")} for t in range(2)}
    expected_in = [score(low[t], high[t]) for t in range(2)]
    viewer.dims.set_current_step(0, 0)
    lap_title = panel_title(MethodSpec.for_model(registry["laplace"].model_dir, lap))
    fft_title = panel_title(MethodSpec.for_model(registry["fft"].model_dir, fft))
    assert lap_title.startswith("Laplace ") and fft_title.startswith("FFT ")
    assert panel_text(viewer.layers[lap]) == f"{lap_title}\n{fmt(expected[0][lap])}"
    assert panel_text(viewer.layers["TV"]) == f"TV\n{fmt(expected[0]['TV'])}"
    assert panel_text(viewer.layers[LOW]) == f"Input\n{fmt(expected_in[0])}"
    assert panel_text(viewer.layers[HIGH]) == "Ground truth"
    viewer.dims.set_current_step(0, 1)
    assert panel_text(viewer.layers[fft]) == f"{fft_title}\n{fmt(expected[1][fft])}"
    assert panel_text(viewer.layers[LOW]).endswith(fmt(expected_in[1]))

    # table: per frame and mean, best of each column highlighted
    table = widget.table
    rows = {f"Input ({LOW})": expected_in, **{n: [expected[t][n] for t in range(2)]
                                                for n in (lap, fft, "TV")}}
    for name, scores in rows.items():
        for t, s in enumerate(scores):
            assert table.cell_text(name, f"PSNR t{t}") == f"{s.psnr:.2f}"
            assert table.cell_text(name, f"SSIM t{t}") == f"{s.ssim:.4f}"
        assert table.cell_text(name, "PSNR mean") == f"{np.mean([s.psnr for s in scores]):.2f}"
    best = table.best_cells()
    assert best["PSNR mean"] == max(rows, key=lambda n: np.mean([s.psnr for s in rows[n]]))
    assert best["SSIM t1"] == max(rows, key=lambda n: rows[n][1].ssim)

    # CSV export: method, frame, psnr, ssim; per frame then the mean
    path = tmp_path / "metrics.csv"
    widget.export_csv(path)
    lines = list(csv.reader(path.open()))
    assert lines[0] == ["method", "frame", "psnr_db", "ssim"]
    assert [lap, "1", f"{expected[1][lap].psnr:.4f}", f"{expected[1][lap].ssim:.6f}"] in lines
    mean_tv = np.mean([expected[t]["TV"].ssim for t in range(2)])
    assert any(r[:2] == ["TV", "mean"] and r[3] == f"{mean_tv:.6f}" for r in lines)
    assert len(lines) == 1 + 4 * 3

    # uncertainty: only the Laplace model has a scale map; it follows its method
    widget.uncertainty_check.setChecked(True)
    unc = lap + L.UNCERTAINTY_SUFFIX
    assert unc in viewer.layers and fft + L.UNCERTAINTY_SUFFIX not in viewer.layers
    assert [lyr.name for lyr in viewer.layers] == [LOW, HIGH, lap, unc, fft, "TV"]
    assert np.all(np.asarray(viewer.layers[unc].data) > 0)
    assert "uncertainty" in panel_text(viewer.layers[unc])

    # error map toggle: |fit - gt| layer right after its method, with a panel text
    table.set_error_map_checked("TV", True)
    err = "TV" + L.ERROR_SUFFIX
    assert L.grid_panels(viewer)[-2:] == ["TV", err]
    assert "|error|" in panel_text(viewer.layers[err])
    table.set_error_map_checked("TV", False)
    assert err not in viewer.layers

    # power spectrum of the current frame, for every method and the ground truth
    widget.spectrum_check.setChecked(True)
    assert set(widget.view.spectrum.lines) == {"Ground truth", f"Input ({LOW})", lap, fft, "TV"}


@pytest.mark.slow
def test_rerun_replaces_and_no_ground_truth(dock, registry, qtbot):
    viewer, widget, low, high = dock
    lap, _ = names(registry)
    widget.set_ground_truth(None)
    run(widget, qtbot, ["TV", lap])
    run(widget, qtbot, ["TV"])  # same name: replaced, not duplicated; the unticked goes
    # the unused high layer is not part of the comparison: after it, hidden in the grid
    assert [lyr.name for lyr in viewer.layers] == [LOW, "TV", HIGH]
    assert L.grid_panels(viewer) == [LOW, "TV"]
    assert not viewer.layers[HIGH].visible
    assert panel_text(viewer.layers[HIGH]) is None
    assert panel_text(viewer.layers["TV"]) == "TV\nno ground truth"
    assert panel_text(viewer.layers[LOW]).endswith("no ground truth")
    assert widget.table.cell_text("TV", "PSNR / SSIM") == "no ground truth"
    # choosing a ground truth afterwards scores the existing results (and shows it)
    with qtbot.waitSignal(widget.run_finished, timeout=60000):
        widget.set_ground_truth(HIGH)
    assert L.grid_panels(viewer) == [LOW, HIGH, "TV"]
    widget.grid_check.setChecked(False)  # grid off: every layer visible again
    assert all(lyr.visible for lyr in viewer.layers)
    tv = score(np.asarray(viewer.layers["TV"].data)[0], high[0])
    assert widget.table.cell_text("TV", "PSNR t0") == f"{tv.psnr:.2f}"
    assert panel_text(viewer.layers["TV"]) == f"TV\n{fmt(tv)}"
    assert widget.status.text().endswith(f"scored against {HIGH!r}")


def test_stop_discards_the_method_in_progress(dock, qtbot):
    """Stop as NL-means starts (in the child process): TV is kept, NL-means is dropped."""
    viewer, widget, low, high = dock
    REGISTRY.clear()
    viewer.add_image(np.concatenate([low] * 6), name="long low")  # 12 frames
    widget.set_input("long low")
    widget.set_ground_truth(None)
    original = widget.control._on_event

    def stop_in_nlm(ev):
        original(ev)
        if isinstance(ev, MethodStarted) and ev.name == "NL-means":
            widget.stop()

    widget.control._on_event = stop_in_nlm
    run(widget, qtbot, ["TV", "NL-means"])
    assert "TV" in viewer.layers and "NL-means" not in viewer.layers
    assert viewer.layers["TV"].data.shape == (12, *low.shape[1:])
    assert list(widget.results) == ["TV"]
    assert "discarded the partial NL-means" in widget.status.text()
    # the grid planned for input + TV + NL-means; napari sizes it for the two panels shown
    assert viewer.canvas.grid.shape == (-1, -1)
    assert viewer.canvas.grid.actual_shape(viewer.layers) == (1, 2)


def test_new_results_are_inserted_in_panel_order(dock, qtbot):
    """With another layer open after the pair, each new result goes straight to its place
    in the layer list: napari redraws the canvas on every reorder, so none is needed."""
    viewer, widget, low, high = dock
    REGISTRY.clear()
    viewer.add_image(low, name="other")
    reorders = []
    viewer.layers.events.reordered.connect(lambda e: reorders.append(1))
    run(widget, qtbot, ["NL-means", "TV"])
    assert [lyr.name for lyr in viewer.layers] == [LOW, HIGH, "TV", "NL-means", "other"]
    assert L.grid_panels(viewer) == [LOW, HIGH, "TV", "NL-means"]  # "other" hidden
    assert reorders == []


def test_restore_files_from_the_dock(dock, qtbot, tmp_path):
    """Files on disk restored through the same child process, written whole."""
    import tifffile

    viewer, widget, low, high = dock
    REGISTRY.clear()
    src = tmp_path / "field.tif"
    tifffile.imwrite(src, low, photometric="minisblack")
    widget.set_checked_methods(["TV"])
    with qtbot.waitSignal(widget.run_finished, timeout=120000):
        widget.restore_files([str(src)], str(tmp_path / "out"))
    out = tmp_path / "out" / "field_TV.tif"
    assert out.is_file(), widget.message()
    assert tifffile.imread(out).shape == low.shape
    assert widget.status.text().startswith("wrote 1 of 1 restored file(s)")
    assert not widget.results  # files are not added to the comparison


@pytest.mark.slow
def test_load_a_bioimageio_package_in_the_dock(dock, registry, qtbot, tmp_path):
    """A package exported by this plugin loads in the dock; it is unpacked in the restore
    process (rebuilding its weights needs TensorFlow, never in napari's process)."""
    pytest.importorskip("bioimageio.core")
    from napari_care_losses.export.bioimageio import export_package

    viewer, widget, low, high = dock
    package = export_package(registry["fft"].model_dir, tmp_path / "fft.zip").path
    REGISTRY.clear()
    assert widget.load_model(str(package)) is None  # unpacking in the background
    qtbot.waitUntil(lambda: len(REGISTRY) == 1, timeout=120000)
    (model,) = REGISTRY.models()
    assert model.loss.name.value == "fft" and model.model_dir != registry["fft"].model_dir
    assert any(s.model_dir == str(model.model_dir) for s in widget.checked_specs())
    # the model it was exported from is the same model (same id): listed once
    assert REGISTRY.add(registry["fft"].model_dir) is model and len(REGISTRY) == 1
