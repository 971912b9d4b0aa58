"""The docks' model registry: model folders (never predictors), distinct display names, one
entry per model (a copy or a package of a listed model is that model), damaged folders said
in one line and never listed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from napari_care_losses._widgets._compare_jobs import panel_title
from napari_care_losses._widgets.model_registry import ModelRegistry
from napari_care_losses.models.folder import META_FILE, WEIGHTS_BEST
from napari_care_losses.restore.engine import MethodSpec

from ..models.fake import old_format_folder


def test_two_models_of_one_loss_in_one_minute_get_distinct_names(tmp_path):
    reg = ModelRegistry()
    a = reg.add(old_format_folder(tmp_path / "laplace_20261125-140312"))
    b = reg.add(old_format_folder(tmp_path / "laplace_20261125-140350", best_val_loss=0.4))
    c = reg.add(old_format_folder(tmp_path / "fft_20261125-140312", loss="fft"))
    names = [m.display_name for m in (a, b, c)]
    assert len(set(names)) == 3, names
    assert names[0].startswith(a.label) and names[1].startswith(a.label)
    assert "14:03" in names[0] and names[1] != names[0]
    specs = [MethodSpec.for_model(m.model_dir, m.display_name) for m in (a, b, c)]
    assert [panel_title(s) for s in specs] == names == [s.name for s in specs]


def test_a_model_loaded_twice_or_copied_is_listed_once(tmp_path):
    reg = ModelRegistry()
    first = reg.add(old_format_folder(tmp_path / "models" / "laplace_20261125-140312"))
    assert reg.add(first.model_dir) is first
    # a package unpacked into the cache holds the model's record as it was exported
    copy = shutil.copytree(first.model_dir, tmp_path / "cache" / "abc" / first.name)
    assert reg.add(copy) is first and len(reg) == 1


def test_a_models_folder_is_listed_newest_first_and_the_oldest_keeps_the_plain_name(
        tmp_path):
    models = tmp_path / "models"
    older = old_format_folder(models / "laplace_20261125-140312")
    newer = old_format_folder(models / "laplace_20261125-140350", best_val_loss=0.4)
    os.utime(older / WEIGHTS_BEST, (2e9, 2e9))  # newer weights, yet trained first
    reg = ModelRegistry()
    assert reg.load_folder(models) == 2
    first, second = reg.models()
    assert first.model_dir == newer and second.model_dir == older
    alone = ModelRegistry().add(older)  # its name when listed alone
    assert second.display_name == alone.display_name != first.display_name


def test_a_damaged_folder_is_never_listed_and_said_in_one_line(tmp_path):
    models = tmp_path / "models"
    good = old_format_folder(models / "laplace_20261125-140312")
    bad = old_format_folder(models / "mae_20261125-140400", loss="mae")
    raw = json.loads((bad / META_FILE).read_text())
    (bad / META_FILE).write_text(json.dumps({**raw, "history": "broken"}))
    reg = ModelRegistry()
    assert reg.load_folder(models) == 1
    assert [m.model_dir for m in reg.models()] == [good]
    (line,) = reg.problems
    assert str(bad) in line and META_FILE in line and "'history'" in line
    with pytest.raises(ValueError, match="'history'"):
        reg.add(bad)
    assert len(reg) == 1


SCRIPT = textwrap.dedent("""
    import sys
    import napari
    from napari_care_losses._widgets.compare_widget import CompareWidget
    from napari_care_losses._widgets.model_registry import REGISTRY
    from napari_care_losses._widgets.training_widget import TrainingWidget

    viewer = napari.Viewer(show=False)
    train, compare = TrainingWidget(viewer), CompareWidget(viewer)
    train.models.load_model_dir(sys.argv[1])
    compare.load_model(sys.argv[2])
    print("LISTED", len(REGISTRY), compare.method_list.count(), train.models.titles())
    print("LOADED", [m for m in ("napari_care_losses.restore.predict", "tensorflow", "keras",
                                 "csbdeep") if m in sys.modules])
    compare.close(); train.close(); viewer.close()
""")


def test_napari_never_imports_prediction_or_tensorflow_when_docks_list_models(tmp_path):
    home = tmp_path / "home"
    old_format_folder(home / "models" / "laplace_20261125-140312")
    one = old_format_folder(tmp_path / "elsewhere" / "fft_20261125-150000", loss="fft")
    two = old_format_folder(tmp_path / "elsewhere" / "mae_20261125-150000", loss="mae")
    env = {**os.environ, "NAPARI_CARE_LOSSES_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(one), str(two)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(li.split(" ", 1) for li in out.stdout.splitlines() if " " in li)
    assert lines["LISTED"].startswith("3 5 "), out.stdout  # 3 models + TV and NL-means
    assert lines["LOADED"] == "[]", out.stdout


def test_the_model_list_ends_its_export_process_when_it_goes(qtbot, monkeypatch):
    from qtpy.QtCore import QCoreApplication, QEvent

    from napari_care_losses._widgets.model_list import ModelList
    from napari_care_losses.workers import restore_runs

    closed: list[bool] = []

    class Process:
        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(restore_runs, "RestoreProcess", Process)
    widget = ModelList()
    widget._restore_process()  # as the first export or package import starts it
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qtbot.waitUntil(lambda: closed == [True], timeout=5000)


def test_the_model_list_says_a_damaged_folder_in_one_line(qtbot, tmp_path):
    from napari_care_losses._widgets.model_list import ModelList
    from napari_care_losses._widgets.model_registry import REGISTRY

    models = tmp_path / "models"
    old_format_folder(models / "laplace_20261125-140312")
    old_format_folder(models / "mae_20261125-140400", loss="mae", history=[1, 2])
    widget = ModelList()
    qtbot.addWidget(widget)
    REGISTRY.clear()
    try:
        assert REGISTRY.load_folder(models) == 1
        assert len(widget.titles()) == 1 and widget.titles()[0].startswith("Laplace ")
        assert not widget.problems.isHidden()
        line = widget.problems.text()
        assert "\n" not in line and "'history'" in widget.problems.toolTip()
        assert line.startswith("skipped a damaged model folder")
    finally:
        REGISTRY.clear()


def test_loading_a_copy_of_a_listed_model_says_which_model_it_is(qtbot, tmp_path,
                                                                  monkeypatch):
    from napari_care_losses._widgets import model_list
    from napari_care_losses._widgets.model_registry import REGISTRY

    said: list[str] = []
    monkeypatch.setattr(model_list, "show_info", said.append)
    widget = model_list.ModelList()
    qtbot.addWidget(widget)
    REGISTRY.clear()
    try:
        first = widget.load_model_dir(old_format_folder(tmp_path / "laplace_20261125-140312"))
        copy = shutil.copytree(first.model_dir, tmp_path / "copied" / first.name)
        assert widget.load_model_dir(copy) is first and len(widget.titles()) == 1
        assert said == [f"{first.name} is the model listed as {first.display_name!r} "
                        f"({first.model_dir})"]
    finally:
        REGISTRY.clear()
