"""Model folders are claimed atomically and a trained model is never overwritten."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from napari_care_losses.models.folder import META_FILE, WEIGHTS_BEST
from napari_care_losses.training import trainer
from napari_care_losses.training.trainer import Failed, train

from ..conftest import tiny_config
from ..models.fake import old_format_folder


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    n = 8
    gate = threading.Barrier(n)

    def claim(_):
        gate.wait()  # all at once
        return trainer.new_model_dir(tmp_path, tiny_config("laplace"))

    with ThreadPoolExecutor(n) as pool:
        dirs = list(pool.map(claim, range(n)))
    assert len(set(dirs)) == n, sorted(d.name for d in dirs)
    assert all(d.is_dir() and d.parent == tmp_path for d in dirs)


def test_training_into_a_finished_model_is_refused_and_leaves_it_as_it_was(
        tiny_patches, tmp_path):
    model = old_format_folder(tmp_path / "laplace_20261125-140312", loss="mae")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    events = list(train(tiny_patches, tiny_config("mae"), tmp_path, model_dir=model))
    assert len(events) == 1 and isinstance(events[0], Failed), events
    assert events[0].error == (f"model folder {model}: already holds a trained model; it is "
                               "never overwritten (choose another folder, or delete it first)")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_training_into_a_folder_of_other_files_is_refused(tiny_patches, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    events = list(train(tiny_patches, tiny_config("mae"), tmp_path / "x", model_dir=tmp_path))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert "is not empty" in events[0].error and "\n" not in events[0].error
    assert not (tmp_path / META_FILE).exists() and not (tmp_path / WEIGHTS_BEST).exists()
