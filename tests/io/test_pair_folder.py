"""Folders of paired low/high images: both layouts, clear errors, and the napari reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_care_losses._reader import get_reader
from napari_care_losses.io.data import DataError
from napari_care_losses.io.pair_folder import find_pairs, read_pairs

RNG = np.random.default_rng(0)


def _img(*shape, dtype=np.uint16) -> np.ndarray:
    return RNG.integers(0, 1000, shape).astype(dtype)


def _subfolders(root: Path, high_name: str = "GT") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    data = {"b.tif": (_img(32, 40), _img(32, 40)), "a.tif": (_img(2, 32, 40), _img(2, 32, 40))}
    for sub in ("low", high_name):
        (root / sub).mkdir(parents=True)
    for name, (lo, hi) in data.items():
        tifffile.imwrite(root / "low" / name, lo)
        tifffile.imwrite(root / high_name / name, hi)
    return data


def test_subfolder_layout_stacks_pairs_in_name_order(tmp_path):
    data = _subfolders(tmp_path, "GT")
    (tmp_path / "notes.txt").write_text("not an image")
    pairs = find_pairs(tmp_path)
    assert pairs.names == ["a.tif", "b.tif"]
    low, high = read_pairs(pairs)
    assert low.shape == high.shape == (3, 32, 40)
    np.testing.assert_array_equal(low[:2], data["a.tif"][0])
    np.testing.assert_array_equal(high[2], data["b.tif"][1])


def test_flat_layout_pairs_by_name(tmp_path):
    lo, hi = _img(24, 24, dtype=np.uint8), _img(24, 24, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cell1_low.tif", lo)
    tifffile.imwrite(tmp_path / "cell1-HIGH.TIF", hi)
    tifffile.imwrite(tmp_path / "overview.tif", lo)  # untagged files are ignored
    low, high = read_pairs(find_pairs(tmp_path))
    np.testing.assert_array_equal(low[0], lo)
    np.testing.assert_array_equal(high[0], hi)


@pytest.mark.parametrize("case, message", [
    ("empty", "no paired TIFF images"),
    ("unmatched", "no partner for c.tif"),
    ("two_high", "need one low and one high subfolder"),
    ("sizes", "frames differ in size"),
    ("pair_shape", "do not pair"),
])
def test_bad_folders_say_what_is_wrong(tmp_path, case, message):
    if case == "empty":
        tifffile.imwrite(tmp_path / "image.tif", _img(16, 16))
    elif case == "unmatched":
        _subfolders(tmp_path)
        tifffile.imwrite(tmp_path / "low" / "c.tif", _img(32, 40))
    elif case == "two_high":
        _subfolders(tmp_path)
        (tmp_path / "target").mkdir()
    elif case == "sizes":
        for name, side in (("x", 16), ("y", 20)):
            tifffile.imwrite(tmp_path / f"{name}_low.tif", _img(side, side))
            tifffile.imwrite(tmp_path / f"{name}_high.tif", _img(side, side))
    else:
        tifffile.imwrite(tmp_path / "x_low.tif", _img(16, 16))
        tifffile.imwrite(tmp_path / "x_high.tif", _img(16, 24))
    with pytest.raises(DataError, match=message) as err:
        read_pairs(find_pairs(tmp_path))
    assert str(tmp_path) in str(err.value)  # names the folder or file


def test_reader_declines_what_it_cannot_read(tmp_path):
    tifffile.imwrite(tmp_path / "image.tif", _img(16, 16))
    assert get_reader(str(tmp_path)) is None  # a plain folder: napari's own reader
    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader([str(tmp_path)]) is None


def test_napari_opens_a_pair_folder_as_low_and_high_layers(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    folder = tmp_path / "session1"
    _subfolders(folder)
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-care-losses")
    assert [layer.name for layer in viewer.layers] == ["session1 low", "session1 high"]
    assert viewer.layers["session1 low"].data.shape == (3, 32, 40)
    assert viewer.layers["session1 high"].metadata["care_pair_files"] == ["a.tif", "b.tif"]


def test_names_are_matched_loosely_but_never_silently_dropped(tmp_path):
    for name in ("img10", "img2"):
        tifffile.imwrite(tmp_path / f"{name}_low.ome.tif", _img(16, 16))
        tifffile.imwrite(tmp_path / f"{name}_Ground_Truth.TIFF", _img(16, 16))
    (tmp_path / "._img2_low.tif").write_bytes(b"macOS metadata, not a TIFF")
    (tmp_path / "raw").mkdir()  # a lone tagged subfolder does not hide the flat pairs
    pairs = find_pairs(tmp_path)
    assert pairs.names == ["img2_low.ome.tif", "img10_low.ome.tif"]  # natural order
    tifffile.imwrite(tmp_path / "img2-low.tif", _img(16, 16))
    with pytest.raises(DataError, match="img2"):
        find_pairs(tmp_path)


def test_mixed_pixel_types_stack_into_a_common_type(tmp_path):
    tifffile.imwrite(tmp_path / "a_low.tif", _img(16, 16, dtype=np.uint8))
    tifffile.imwrite(tmp_path / "a_high.tif", _img(16, 16, dtype=np.uint8))
    tifffile.imwrite(tmp_path / "b_low.tif", _img(16, 16, dtype=np.uint16))
    tifffile.imwrite(tmp_path / "b_high.tif", np.full((16, 16), 0.5, np.float32))
    low, high = read_pairs(find_pairs(tmp_path))
    assert (low.dtype, high.dtype) == (np.uint16, np.float32)
    assert high[1].max() == 0.5


def test_reader_takes_near_misses_so_napari_shows_the_error(tmp_path):
    _subfolders(tmp_path)
    tifffile.imwrite(tmp_path / "low" / "c.tif", _img(32, 40))
    reader = get_reader(str(tmp_path))
    assert reader is not None
    with pytest.raises(DataError, match="no partner for c.tif"):
        reader(str(tmp_path))
