"""Restore files… (issue 17): one distinct output per (input file, method), never an
overwritten file, and the count of FileWritten events is the count of files on disk."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from napari_care_losses.restore.engine import MethodSpec  # noqa: E402
from napari_care_losses.restore.files import (  # noqa: E402
    FileWritten,
    plan_outputs,
    restore_files,
)


def two_of_one_kind() -> list[MethodSpec]:
    """Two methods with the same short name (as two models of one loss have)."""
    tv = MethodSpec.for_baseline("tv", 1.0)
    return [tv, dataclasses.replace(tv, key="baseline:tv#2", name="TV (stronger)",
                                    factor=2.0)]


def laplace(folder: str) -> MethodSpec:
    return MethodSpec(f"/models/{folder}", f"Laplace ({folder})", "Laplace",
                      model_dir=f"/models/{folder}", loss="laplace", probabilistic=True)


def written(events) -> list[FileWritten]:
    return [e for e in events if isinstance(e, FileWritten)]


def test_plan_gives_every_file_and_method_its_own_names(tmp_path):
    specs = [laplace("laplace_20261125-101500"), laplace("laplace_20261125-111500"),
             MethodSpec.for_baseline("tv")]
    files = [tmp_path / "a.tif", tmp_path / "a.tiff", tmp_path / "d1" / "x.tif",
             tmp_path / "d2" / "x.tif", tmp_path / "A.TIF"]
    plans = plan_outputs(specs, files, tmp_path / "out")
    paths = [p.image for p in plans.values()] + [p.scale for p in plans.values() if p.scale]
    assert len(plans) == len(specs) * len(files)
    assert len({str(p).lower() for p in paths}) == len(paths)  # case-insensitive too
    assert all(p.parent == tmp_path / "out" for p in paths)
    # a unique method keeps its short name; the two Laplace models are told apart
    assert plans[("baseline:tv", files[2])].image.name == "d1_x_TV.tif"
    lap = {plans[(s.key, files[0])].image.name for s in specs[:2]}
    assert all("laplace_20261125" in n for n in lap)


def test_two_methods_of_one_kind_write_two_files(sample_pair, tmp_path):
    low, _ = sample_pair
    tifffile.imwrite(tmp_path / "field.tif", low, photometric="minisblack")
    specs = two_of_one_kind()
    events = list(restore_files(specs, [tmp_path / "field.tif"], tmp_path / "out"))
    done = written(events)
    files = sorted((tmp_path / "out").glob("*.tif"))
    assert len(done) == 2 == len(files)
    assert {e.image for e in done} == {str(f) for f in files}
    a, b = (tifffile.imread(e.image) for e in done)
    assert not np.array_equal(a, b)  # each file holds its own method's restoration


@pytest.mark.parametrize("names", [("a.tif", "a.tiff"), ("d1/x.tif", "d2/x.tif")])
def test_same_stem_sources_get_distinct_outputs(sample_pair, tmp_path, names):
    low, _ = sample_pair
    sources = []
    for i, name in enumerate(names):
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, low[i:i + 1], photometric="minisblack")
        sources.append(path)
    done = written(restore_files([MethodSpec.for_baseline("tv", 1.0)], sources,
                                 tmp_path / "out"))
    assert len(done) == 2 == len(list((tmp_path / "out").glob("*.tif")))
    for event, source in zip(done, sources, strict=True):
        assert event.source == str(source)
        np.testing.assert_array_equal(tifffile.imread(event.image).shape, low[0].shape)


def test_an_existing_file_is_never_overwritten(sample_pair, tmp_path):
    low, _ = sample_pair
    tifffile.imwrite(tmp_path / "field.tif", low, photometric="minisblack")
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "field_TV.tif"
    mine.write_bytes(b"the user's own file")
    (done,) = written(restore_files([MethodSpec.for_baseline("tv", 1.0)],
                                    [tmp_path / "field.tif"], out))
    assert mine.read_bytes() == b"the user's own file"
    assert done.image != str(mine) and tifffile.imread(done.image).shape == low.shape
    assert "field_TV.tif exists" in done.note and "never overwritten" in done.note
