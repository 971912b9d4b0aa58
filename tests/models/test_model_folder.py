"""The typed model record: old folders keep loading, records are checked as a whole, and a
damaged record or CSBDeep config is refused naming the file and the key."""

from __future__ import annotations

import json
import shutil

import pytest

from napari_care_losses.models.folder import (
    CSBDEEP_CONFIG,
    META_FILE,
    ModelFolder,
    ModelFolderError,
    list_models,
    write_meta,
)
from napari_care_losses.models.meta import DataInfo, ModelMeta, Status

from ..conftest import tiny_config
from .fake import old_format_folder


def test_a_folder_in_the_old_format_loads_with_every_entry(tmp_path):
    folder = ModelFolder.open(old_format_folder(tmp_path / "laplace_20261125-140312"))
    assert folder.status is Status.FINISHED and folder.complete
    assert folder.config == tiny_config("laplace")
    assert folder.history == {"loss": [0.5, 0.4], "val_loss": [0.6, 0.45]}
    assert folder.epochs_done == 2 and folder.best_val_loss == 0.45
    assert folder.data_info == DataInfo(low="/data/low.tif", high="/data/high.tif", frames=6,
                                        n_train=307, n_val=77)
    assert folder.precision == "float32" and folder.budget == {"epochs": 3,
                                                               "steps_per_epoch": 10}
    assert folder.versions["csbdeep"] == "0.8.2" and folder.axes == "YX"
    assert folder.created.strftime("%Y%m%d-%H%M%S") == "20261125-140312"  # from its name
    assert folder.model_id  # derived: the record has none


def test_an_old_folder_keeps_its_model_id_when_copied_or_its_data_paths_change(tmp_path):
    first = ModelFolder.open(old_format_folder(tmp_path / "a"))
    copy = shutil.copytree(first.path, tmp_path / "b")
    raw = json.loads((copy / META_FILE).read_text())
    write_meta(copy, {**raw, "data": {"low": "low.tif", "high": "high.tif"}})
    assert ModelFolder.open(copy).model_id == first.model_id
    other = ModelFolder.open(old_format_folder(tmp_path / "c", best_val_loss=0.44))
    assert other.model_id != first.model_id


def test_a_new_record_round_trips_with_id_time_and_axes(tmp_path):
    path = old_format_folder(tmp_path / "m")
    meta = ModelMeta.new(tiny_config("laplace"), {"low": "l.tif", "run_id": "r1",
                                                   "note": "kept"})
    done = meta.but(status=Status.STOPPED, history={"loss": [1.0]}, best_val_loss=1.0)
    write_meta(path, done)
    folder = ModelFolder.open(path)
    assert folder.meta == done and folder.status is Status.STOPPED
    assert folder.data_info.extra == {"note": "kept"} and folder.data_info.run_id == "r1"
    assert len(folder.model_id) == 32 and folder.created == done.created_time
    assert ModelMeta.new(tiny_config()).model_id != meta.model_id


DAMAGED = [
    ({"history": [0.5, 0.4]}, "'history'"),
    ({"history": {"loss": "0.5"}}, "'history.loss'"),
    ({"history": {"loss": [0.5, None]}}, "'history.loss'"),
    ({"best_val_loss": "low"}, "'best_val_loss'"),
    ({"data": ["low.tif"]}, "'data'"),
    ({"data": {"frames": "six"}}, "'data.frames'"),
    ({"data": {"low": {"path": "x"}}}, "'data.low'"),
    ({"versions": {"csbdeep": 8}}, "'versions'"),
    ({"error": 3}, "'error'"),
    ({"budget": 5}, "'budget'"),
    ({"status": "done"}, "'status'"),
    ({"weights": "mine.h5"}, "'weights'"),  # unknown key
    ({"axes": "ZYX"}, "'axes'"),
    ({"train": {"loss": "laplace", "patch_size": "big"}}, "'train'"),
]


@pytest.mark.parametrize(("damage", "key"), DAMAGED)
def test_a_damaged_record_is_refused_naming_file_and_key(tmp_path, damage, key):
    path = old_format_folder(tmp_path / "m", **damage)
    with pytest.raises(ModelFolderError) as err:
        ModelFolder.open(path)
    message = str(err.value)
    assert message.startswith(f"model folder {path}: {META_FILE}: {key}"), message
    assert "\n" not in message


def test_an_unknown_key_in_csbdeeps_config_is_refused_naming_it(tmp_path):
    path = old_format_folder(tmp_path / "m")
    config = json.loads((path / CSBDEEP_CONFIG).read_text())
    (path / CSBDEEP_CONFIG).write_text(json.dumps({**config, "unet_bogus": 1}))
    with pytest.raises(ModelFolderError, match=f"{CSBDEEP_CONFIG}: unknown key 'unet_bogus'"):
        ModelFolder.open(path)


def test_csbdeeps_config_keys_are_the_ones_csbdeep_writes():
    pytest.importorskip("csbdeep")
    from csbdeep.models import Config

    from napari_care_losses.models.folder import CSBDEEP_KEYS

    assert set(vars(Config("YX", probabilistic=True))) == CSBDEEP_KEYS


def test_listing_skips_a_damaged_folder_and_says_why(tmp_path):
    good = old_format_folder(tmp_path / "good")
    bad = old_format_folder(tmp_path / "bad", history="not a dict")
    (tmp_path / "not_a_model").mkdir()
    problems: list[str] = []
    assert [m.path for m in list_models(tmp_path, problems)] == [good]
    assert problems == [f"model folder {bad}: {META_FILE}: 'history': expected an object of "
                        "lists, got str"]


@pytest.mark.parametrize("where", [CSBDEEP_CONFIG, META_FILE])
def test_the_cli_refuses_a_damaged_folder_in_one_line(tmp_path, capsys, where):
    import numpy as np
    import tifffile

    from napari_care_losses.cli import main

    path = old_format_folder(tmp_path / "m")
    raw = json.loads((path / where).read_text())
    (path / where).write_text(json.dumps({**raw, "surplus": 1}))
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((32, 32), np.float32))
    assert main(["predict", str(path), str(tmp_path / "in.tif"), "-o",
                 str(tmp_path / "out.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and where in err and "'surplus'" in err, err
    assert not (tmp_path / "out.tif").exists()
